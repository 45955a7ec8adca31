"""`make run` runs the demo: the sandbox and two connector daemons exchange documents both ways
(SOAP hub and VXP bindings) and statuses flow back; `--once` exits 0 with a JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
H16, G22 = "000.00.00.H16", "000.00.00.G22"


def test_demo_once_delivers_every_sample_both_ways(tmp_path):
    result = subprocess.run(
        [sys.executable, "cli.py", "demo", "--workdir", str(tmp_path), "--once"], cwd=ROOT, capture_output=True,
        text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["documents"] == 4
    assert summary["delivered"] == summary["acknowledged"] == 4
    assert {(s["from"], s["to"]) for s in summary["samples"]} == {(H16, G22), (G22, H16)}
    assert all(s["status"] == "01" for s in summary["samples"])
    for code, sender in ((G22, H16), (H16, G22)):
        (folder, *_), = [list((tmp_path / code / "dms" / "inbox").glob("*/metadata.json"))[:1]]
        metadata = json.loads(folder.read_text(encoding="utf-8"))
        assert metadata["from"]["organ_id"] == sender
        assert any(p.suffix == ".pdf" and p.read_bytes().startswith(b"%PDF") for p in folder.parent.iterdir())
    # the clerks' folders show what was sent
    assert len(list((tmp_path / H16 / "dms" / "sent").iterdir())) == 2
    assert "Đã đến" in result.stderr
    # the exchange log of each side verifies, found through the daemon's configuration
    for code in (H16, G22):
        audit = subprocess.run([sys.executable, "cli.py", "audit", "--config", str(tmp_path / code / "connector.toml"), "verify"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert audit.returncode == 0, audit.stderr + audit.stdout
        assert "OK: the log is intact" in audit.stdout


def test_demo_reruns_in_the_same_folder(tmp_path):
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "cli.py", "demo", "--workdir", str(tmp_path), "--once", "--documents", "1"], cwd=ROOT,
            capture_output=True, text=True, timeout=240,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["ok"] is True
