"""The daemon as users run it (``python cli.py run --config``), in a real subprocess: documents
in through the local HTTP intake API, tracked to delivery; health and metrics endpoints;
SIGHUP reloads routing; SIGTERM stops it with exit 0; a bad configuration is a clear error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import requests

from connector.daemon.devsite import write_site_config
from connector.edxml.jsonform import to_json
from connector.edxml.samples import make_pdf, sample_edoc
from connector.sandbox.server import SandboxServer
from connector.signing.devpki import create_dev_pki
from tests.support.sites import ROOT, DaemonProcess, inbox_document_ids, wait_for

H16, G22 = "000.00.00.H16", "000.00.00.G22"
TOKEN = "intake-token-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pair(tmp_path):
    pki = create_dev_pki(tmp_path / "pki")
    with SandboxServer(tmp_path / "sandbox", seed=3) as sandbox:
        creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
        (tmp_path / "intake.token").write_text(TOKEN)
        ops, api = free_port(), free_port()
        h16 = write_site_config(
            tmp_path / H16, code=H16, name="UBND tỉnh Đắk Nông", binding="soap", sandbox_url=sandbox.url,
            credentials=creds[H16], pki=pki, ops_port=ops,
            extra=f'\n[routing.intake.http]\nport = {api}\ntoken_file = "{tmp_path / "intake.token"}"\n',
        )
        g22 = write_site_config(tmp_path / G22, code=G22, name="Văn phòng Chính phủ", binding="vxp",
                                sandbox_url=sandbox.url, credentials=creds[G22], pki=pki)
        daemons = [DaemonProcess(h16), DaemonProcess(g22)]
        for d in daemons:
            d.start()
        for d in daemons:
            assert d.wait_running(60), d.log_tail()
        try:
            yield {"h16": h16, "g22": g22, "daemons": daemons, "ops": ops, "api": api}
        finally:
            codes = [d.terminate() for d in daemons]
            assert codes == [0, 0], [d.log_tail() for d in daemons]


def post_document(api: int, number: int) -> requests.Response:
    doc = sample_edoc(H16, G22, number)
    data = to_json(doc)
    data["attachments"], data["manifest"] = [], []
    return requests.post(
        f"http://127.0.0.1:{api}/documents",
        headers={"Authorization": f"Bearer {TOKEN}"},
        files=[("metadata", (None, json.dumps(data, ensure_ascii=False), "application/json")),
               ("file", (f"cong-van-{number}.pdf", make_pdf(f"So {number}"), "application/pdf"))],
        timeout=30,
    )


def test_http_intake_to_delivery_with_health_metrics_reload_and_clean_stop(pair, tmp_path):
    answer = post_document(pair["api"], 1)
    assert answer.status_code == 202, answer.text
    tracking = answer.json()["tracking_id"]

    def delivered() -> bool:
        r = requests.get(f"http://127.0.0.1:{pair['api']}/documents/{tracking}",
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        return r.status_code == 200 and r.json()["recipients"][0]["status_code"] == "01"

    assert wait_for(delivered, 60), pair["daemons"][0].log_tail()
    assert len(inbox_document_ids(pair["g22"])) == 1

    health = requests.get(f"http://127.0.0.1:{pair['ops']}/healthz", timeout=10)
    assert health.status_code == 200, health.text
    assert set(health.json()["checks"]) >= {"database", "axis", "last_poll", "signing_certificate"}
    metrics = requests.get(f"http://127.0.0.1:{pair['ops']}/metrics", timeout=10).text
    assert "documents_sent_total" in metrics
    sent = [line for line in metrics.splitlines() if line.startswith("documents_sent_total")]
    assert sent and float(sent[0].split()[-1]) >= 1

    # bad input through the API: a precise 422, nothing queued
    bad = requests.post(f"http://127.0.0.1:{pair['api']}/documents", headers={"Authorization": f"Bearer {TOKEN}"},
                        files=[("metadata", (None, '{"kind": "edoc", "to": []}', "application/json"))], timeout=10)
    assert bad.status_code == 422 and bad.json()["problems"]
    assert requests.get(f"http://127.0.0.1:{pair['api']}/documents/{tracking}", timeout=10).status_code == 401

    # SIGHUP: G22 now routes documents to a second folder
    g22 = pair["g22"]
    text = g22.config_path.read_text(encoding="utf-8").replace('default = ["inbox"]', 'default = ["archive"]')
    text += '\n[routing.destinations.archive]\ntype = "folder"\npath = "dms/archive"\n'
    g22.config_path.write_text(text, encoding="utf-8")
    (g22.dms / "archive").mkdir()
    pair["daemons"][1].proc.send_signal(1)  # SIGHUP
    assert wait_for(lambda: "routing rules reloaded" in pair["daemons"][1].log_tail(200), 20)
    assert post_document(pair["api"], 2).status_code == 202
    assert wait_for(lambda: list((g22.dms / "archive").glob("*/metadata.json")), 60), pair["daemons"][1].log_tail()
    assert len(inbox_document_ids(g22)) == 1


def test_bad_configuration_is_one_clear_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[connector]\nagency = "000.00.00.H16"\nbogus = 1\n[axis]\nbinding = "soap"\nurl = "http://x"\n', encoding="utf-8")
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "connector.bogus: unknown key" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
