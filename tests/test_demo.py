"""`make run` runs the demo: it must build, sign, verify, extract and answer, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, "cli.py", "demo", "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Verified: valid" in result.stdout
    assert "A tampered copy (document.tampered.edxml): invalid" in result.stdout
    extracted = next((tmp_path / "inbox").iterdir())
    pdf = extracted / "cong-van-1.pdf"
    assert pdf.read_bytes() == (tmp_path / "outbox" / "cong-van-1.pdf").read_bytes()
    metadata = json.loads((extracted / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["kind"] == "edoc" and metadata["from"]["organ_id"] == "000.00.00.H16"
    status = json.loads(result.stdout[result.stdout.index("{") :])
    assert status["status_code"] == "01" and status["response_for"][0]["document_id"] == metadata["document_id"]
