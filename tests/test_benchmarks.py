"""The benchmarks under bench/ still run and still print their verdict lines.

Each runs once at a toy size (seconds, not minutes): this checks that the scripts work end to
end against the current code (a benchmark also exits non-zero when the work itself is wrong,
such as a signature xmlsec1 does not verify) and that their last lines keep the machine-readable
form bench/README.md promises. It asserts nothing about speed: timings on this shared machine
belong in the benchmarks' own output, never in the test suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERDICT = re.compile(r"^(ratio|peak_rss_mb) (\S+) (\d+(?:\.\d+)?) (target|limit) (\d+(?:\.\d+)?)$")


def run_bench(script: str, *args: str) -> list[tuple[str, str, float, str, float]]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    verdicts = []
    for line in reversed(lines):
        match = VERDICT.match(line)
        if match is None:
            break
        kind, name, value, word, bound = match.groups()
        assert (kind, word) in (("ratio", "target"), ("peak_rss_mb", "limit")), line
        verdicts.append((kind, name, float(value), word, float(bound)))
    assert verdicts, f"{script} printed no verdict lines:\n{proc.stdout}"
    return verdicts[::-1]


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("signing.py", ["--size-mb", "1", "--runs", "2", "--seconds", "0.05"],
         {("ratio", "sign", 0.8), ("ratio", "verify", 1.0), ("peak_rss_mb", "sign-1MB", 200)}),
        ("attachments.py", ["--size-mb", "1"],
         {("ratio", "build-zip", 0.5), ("ratio", "parse-zip", 0.5),
          ("peak_rss_mb", "build-1MB", 200), ("peak_rss_mb", "parse-1MB", 200)}),
        ("engine.py", ["--documents", "4"], {("ratio", "engine-exchange", 0.3)}),
    ],
)
def test_benchmark_runs_and_prints_its_verdicts(tmp_path, script, args, expected):
    verdicts = run_bench(script, *args, *(["--workdir", str(tmp_path)] if script != "engine.py" else []))
    assert {(kind, name, bound) for kind, name, _value, _word, bound in verdicts} == expected
    for kind, name, value, _word, _bound in verdicts:
        assert value > 0, f"{kind} {name} is {value}"
