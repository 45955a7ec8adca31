"""Several connector instances on one PostgreSQL database share the work: every document is
sent once and delivered once, whichever instance takes it (claims FOR UPDATE SKIP LOCKED, one
poller at a time by advisory lock)."""

from __future__ import annotations

import json
import threading

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
