"""Operations: the CLI commands on a real configuration (status, send, poll, resend, cancel),
and a DMS that is down: retries, then a visible dead state that `resend` takes back."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from connector.edxml.jsonform import to_json
from connector.edxml.samples import sample_edoc

from .conftest import G22, H16, rounds, submit_sample

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, timeout=timeout)


def document_files(folder: Path, number: int) -> tuple[Path, Path]:
    """A document JSON (no embedded files) and its PDF, as a DMS hands them to `send`."""
    doc = sample_edoc(H16, G22, number)
    data = to_json(doc)
    data["attachments"], data["manifest"] = [], []
    document = folder / "doc.json"
    document.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    pdf = folder / f"cong-van-{number}.pdf"
    with doc.attachments[0].data.open() as src:
        pdf.write_bytes(src.read())
    return document, pdf


def test_cli_send_poll_status_cancel_resend(make_side, tmp_path):
    h16, g22 = make_side(H16, "soap"), make_side(G22, "vxp")
    # the commands take the data folder's lock: release the in-process runtimes first
    h16.rt.close(), g22.rt.close()
    document, pdf = document_files(tmp_path, 41)

    sent = cli("send", "--config", str(h16.site.config_path), str(document), "--attach", str(pdf))
    assert sent.returncode == 0, sent.stderr
    tracking = sent.stdout.strip()
    assert tracking.startswith("out-")

    status = json.loads(cli("status", "--config", str(h16.site.config_path), "--json").stdout)
    assert status["outbound"] == {"queued": 1}

    # cancel, then resend: back in the queue
    assert cli("cancel", "--config", str(h16.site.config_path), tracking).returncode == 0
    assert json.loads(cli("status", "--config", str(h16.site.config_path), "--json").stdout)["outbound"] == {"cancelled": 1}
    again = cli("cancel", "--config", str(h16.site.config_path), tracking)
    assert again.returncode == 1 and "no queued, retrying or dead document" in again.stderr
    assert cli("resend", "--config", str(h16.site.config_path), tracking).returncode == 0

    for config in (h16.site.config_path, g22.site.config_path, h16.site.config_path):
        done = cli("poll", "--config", str(config), "--once")
        assert done.returncode == 0, done.stderr
    status = json.loads(cli("status", "--config", str(h16.site.config_path), "--json").stdout)
    assert status["outbound"] == {"sent": 1} and status["recipients"] == {"delivered": 1}

    human = cli("status", "--config", str(h16.site.config_path))
    assert "outbound:   sent 1" in human.stdout and "recipients: delivered 1" in human.stdout


def test_send_cancel_resend_run_beside_a_running_instance(make_side, tmp_path):
    """An operator queues, cancels and resends while the daemon runs (it holds the data
    folder's lock); a document on the wire this moment cannot be cancelled under it."""
    h16 = make_side(H16, "soap")  # stays open: the running instance
    config = str(h16.site.config_path)
    document, pdf = document_files(tmp_path, 43)

    sent = cli("send", "--config", config, str(document), "--attach", str(pdf))
    assert sent.returncode == 0, sent.stderr
    tracking = sent.stdout.strip()

    worker = h16.engine.ctx.settings.worker_id
    claimed = h16.store.claim_outbound(worker, h16.engine.ctx.settings.lease)
    assert claimed is not None and claimed["id"] == tracking
    busy = cli("cancel", "--config", config, tracking)
    assert busy.returncode == 1 and "being sent this moment" in busy.stderr
    assert h16.store.outbound(tracking)["claimed_by"] == worker  # the running step keeps its claim
    h16.store.update_outbound(tracking, worker, {"claimed_by": None, "claimed_until": None})

    assert cli("cancel", "--config", config, tracking).returncode == 0
    assert h16.store.outbound(tracking)["state"] == "cancelled"
    assert cli("resend", "--config", config, tracking).returncode == 0
    assert h16.store.outbound(tracking)["state"] == "queued"
    h16.engine.run_once()
    assert h16.store.outbound(tracking)["state"] == "sent"


def test_cli_send_refuses_bad_input_precisely(make_side, tmp_path):
    h16 = make_side(H16, "soap")
    h16.rt.close()
    (tmp_path / "broken.json").write_text('{"kind": "edoc",\n  "to": [}', encoding="utf-8")
    broken = cli("send", "--config", str(h16.site.config_path), str(tmp_path / "broken.json"))
    assert broken.returncode == 1 and "broken.json: line 2 column" in broken.stderr
    doc = to_json(sample_edoc(H16, "000.00.00.Z99", 42))
    doc["attachments"], doc["manifest"] = [], []
    (tmp_path / "unknown.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    unknown = cli("send", "--config", str(h16.site.config_path), str(tmp_path / "unknown.json"))
    assert unknown.returncode == 1
    assert "to: 000.00.00.Z99 is not in the axis's agency directory" in unknown.stderr
    assert "Traceback" not in broken.stderr + unknown.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dms_down_retries_then_dead_then_resend_delivers(make_side, tmp_path):
    port = _closed_port()
    webhook = f'''
[routing.destinations.dms]
type = "webhook"
url = "http://127.0.0.1:{port}/edoc"
timeout_s = 2
retries = 0
'''
    h16 = make_side(H16, "soap")
    g22 = make_side(G22, "vxp", extra=webhook)
    g22.engine.set_routing(_router_to(g22, "dms"), g22.rt.destinations)
    submit_sample(h16, G22, 43)
    rounds(h16, g22, times=4)  # max_attempts = 3 in these sites
    (row,) = [r for r in _inbound(g22) if r["kind"] == "edoc"]
    assert row["state"] == "dead"
    assert "dms" in row["last_error"] and row["attempts"] == 3
    assert g22.store.summary().inbound.get("dead") == 1

    # the DMS comes back (a real HTTP server on that port): resend delivers it, once
    from connector.httpserver import WsgiServer

    received = []

    def dms(environ, start_response):
        received.append(environ.get("HTTP_IDEMPOTENCY_KEY"))
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("201 Created", [("Content-Type", "application/json")])
        return [b"{}"]

    with WsgiServer(dms, port=port):
        assert g22.engine.resend(row["id"])
        rounds(g22, h16, times=2)
    assert received == [row["id"]]
    assert g22.store.inbound(row["id"])["state"] == "done"


def _router_to(side, name: str):
    from connector.routing.rules import Router

    return Router(side.rt.config.routing.model_copy(update={"default": [name]}))


def _inbound(side) -> list[dict]:
    import sqlalchemy as sa

    from connector.store import tables as t

    with side.store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t.inbound)).mappings()]
