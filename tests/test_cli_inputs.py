"""Inputs that are not regular files (a FIFO, a device) are refused at once, naming the path;
reading one would block forever (a FIFO without a writer) or never end (/dev/zero).

Each command runs in a child process with a timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.edxml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "{fifo}"],
        ["inspect", "{fifo}"],
        ["build", "{json}", "--attach", "{fifo}", "-o", "{out}"],
        ["verify", "{fifo}"],
        ["audit", "verify-bundle", "{fifo}"],
    ],
    ids=["validate", "inspect", "build --attach", "verify", "audit verify-bundle"],
)
def test_a_fifo_argument_is_a_usage_error_naming_it(tmp_path, fifo, args):
    json_file = tmp_path / "doc.json"
    json_file.write_text("{}", encoding="utf-8")
    filled = [a.format(fifo=fifo, json=json_file, out=tmp_path / "out.edxml") for a in args]
    result = run_cli(*filled)
    assert result.returncode == 2, result.stderr
    assert f"'{fifo}' is a named pipe (FIFO), not a regular file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.edxml").exists()


def test_a_device_is_named_as_one():
    result = run_cli("validate", "/dev/zero")
    assert result.returncode == 2
    assert "'/dev/zero' is a character device, not a regular file" in result.stderr


def test_a_fifo_configuration_file_is_refused(fifo):
    result = run_cli("status", "--config", str(fifo))
    assert result.returncode != 0
    assert f"configuration file {fifo} is a named pipe (FIFO)" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_symbolic_link_to_a_regular_file_is_still_read(tmp_path):
    target = tmp_path / "doc.edxml"
    target.write_text("<not-edxml/>", encoding="utf-8")
    link = tmp_path / "link.edxml"
    link.symlink_to(target)
    result = run_cli("validate", str(link))
    assert result.returncode == 1  # read and judged, not refused as a path
    assert "not a regular file" not in result.stderr + result.stdout
