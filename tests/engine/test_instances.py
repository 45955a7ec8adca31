"""Several connector instances on one PostgreSQL database share the work: every document is
sent once and delivered once, whichever instance takes it (claims FOR UPDATE SKIP LOCKED, one
poller at a time by advisory lock). A named instance holds its name while it runs, so a
restarted one takes back at once what its killed run had claimed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connector.daemon.config import ConfigError, load_config
from connector.daemon.devsite import write_site_config
from connector.daemon.runtime import open_runtime

from .conftest import G22, H16, submit_sample


def test_two_instances_share_one_database_without_duplicates(make_side, pg_url_pair, sandbox, tmp_path):
    h16_url, g22_url = pg_url_pair
    # Instances of one agency share the database AND the data folder (evidence, staging).
    sender = [make_side(H16, "soap", database_url=h16_url, folder=f"h16-{i}", data_dir=tmp_path / "h16-data") for i in range(2)]
    shared = tmp_path / "shared-inbox"  # both receiving instances deliver into one DMS folder
    receiver = [make_side(G22, "vxp", database_url=g22_url, folder=f"g22-{i}", data_dir=tmp_path / "g22-data", inbox=shared)
                for i in range(2)]
    assert sender[0].rt.engine.ctx.settings.worker_id != sender[1].rt.engine.ctx.settings.worker_id
    documents = [submit_sample(sender[i % 2], G22, 100 + i)[1] for i in range(12)]

    errors: list[BaseException] = []

    def work(side, turns: int) -> None:
        try:
            for _ in range(turns):
                side.engine.run_once()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(side, 4)) for side in sender + receiver]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for side in receiver + sender:  # the receivers' last answers, then the senders read them
        side.engine.run_once()
    assert not errors, errors

    # the axis got each document once
    sent = [row for row in sandbox.store.sent_by(H16)]
    assert sorted(r.sender_doc_id for r in sent if r.kind == "edoc") == sorted(documents)
    # the shared DMS folder holds each document once
    inbox = shared
    delivered = [json.loads((p / "metadata.json").read_text(encoding="utf-8"))["document_id"]
                 for p in inbox.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert sorted(delivered) == sorted(documents)
    # and every sender saw status 01 for each
    summary = sender[0].store.summary()
    assert summary.recipients == {"delivered": 12}, summary
    assert set(summary.outbound) == {"sent"}


_CLAIM_AND_HANG = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from connector.daemon.runtime import open_runtime
from tests.engine.conftest import Side, submit_sample
from connector.daemon.devsite import SiteAgency

rt = open_runtime(sys.argv[1])
site = SiteAgency("000.00.00.H16", "H16", "soap", Path(sys.argv[1]).parent)
submit_sample(Side(site, rt), "000.00.00.G22", 501)
row = rt.store.claim_outbound(rt.engine.ctx.settings.worker_id, rt.engine.ctx.settings.lease)
print(row["id"], row["claimed_by"], flush=True)
time.sleep(600)
"""


def test_a_restarted_named_instance_takes_back_at_once_what_its_killed_run_claimed(sandbox, dev_pki, pg_url, tmp_path):
    creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
    site = write_site_config(tmp_path / "h16", code=H16, name=H16, binding="soap", sandbox_url=sandbox.url,
                             credentials=creds[H16], pki=dev_pki, database_url=pg_url, instance_id="h16-a",
                             extra="\n[audit]\nenabled = false\n")
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", _CLAIM_AND_HANG, str(site.config_path), str(root)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)
    try:
        line = child.stdout.readline().split()
        assert len(line) == 2, child.stderr.read() if child.poll() is not None else line
        out_id, claimed_by = line
        assert claimed_by == "h16-a"
        # While that run lives, its name is taken: a second process under it is refused, clearly.
        with pytest.raises(ConfigError, match="another running connector uses the name 'h16-a'"):
            open_runtime(load_config(site.config_path))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()

    deadline = time.monotonic() + 30
    while True:  # the server notices the dead connection (and drops its hold) within moments
        try:
            rt = open_runtime(load_config(site.config_path))
            break
        except ConfigError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        row = rt.store.outbound(out_id)
        assert row["claimed_by"] is None and row["claimed_until"] is None  # not left for its 300 s lease
        again = rt.store.claim_outbound(rt.engine.ctx.settings.worker_id, rt.engine.ctx.settings.lease)
        assert again is not None and again["id"] == out_id
        rt.store.update_outbound(out_id, "h16-a", {"claimed_by": None, "claimed_until": None})
        rt.engine.run_once()  # and the document goes out as if nothing had happened
        assert rt.store.outbound(out_id)["state"] in ("sent", "delivered")
    finally:
        rt.close()
    # a clean stop lets the name go at once
    open_runtime(load_config(site.config_path)).close()
