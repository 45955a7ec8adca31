"""End to end through the real sandbox: intake, sign, send, poll, verify, deliver, acknowledge,
status 01 back; both bindings; duplicates, quarantine with status 02, retries and dead letters."""

from __future__ import annotations

import json

import pytest

from connector.engine.outbox import IntakeError

from .conftest import G22, H16, inbox_docs, rounds, submit_sample


def test_documents_flow_both_ways_and_status_01_comes_back(make_side):
    h16, g22 = make_side(H16, "soap"), make_side(G22, "vxp")
    t1, d1 = submit_sample(h16, G22, 1)
    t2, d2 = submit_sample(g22, H16, 2)
    rounds(h16, g22)

    got_g22 = [json.loads((p / "metadata.json").read_text(encoding="utf-8")) for p in inbox_docs(g22)]
    got_h16 = [json.loads((p / "metadata.json").read_text(encoding="utf-8")) for p in inbox_docs(h16)]
    assert [m["document_id"] for m in got_g22] == [d1]
    assert [m["document_id"] for m in got_h16] == [d2]
    # the hub carries fields, not the signed XML: what arrives through it has no signature to check
    assert got_g22[0]["signature"]["status"] == "absent"
    assert any(p.suffix == ".pdf" for p in inbox_docs(g22)[0].iterdir())

    for side, tracking, recipient in ((h16, t1, G22), (g22, t2, H16)):
        track = side.engine.track(tracking)
        assert track["state"] == "sent"
        assert track["recipients"] == [{"agency": recipient, "state": "delivered", "status_code": "01",
                                        "status_name": "Đã đến", "description": "Đã đến"}]
    # nothing left pending on either side
    for side in (h16, g22):
        s = side.store.summary()
        assert set(s.inbound) <= {"done"}, s.inbound
        assert set(s.outbound) == {"sent"}, s.outbound
    # the statuses were delivered to the senders' status folders too
    assert list(h16.site.statuses.glob("*/metadata.json"))


def test_unknown_recipient_is_refused_at_intake(make_side):
    h16 = make_side(H16, "soap")
    with pytest.raises(IntakeError) as err:
        submit_sample(h16, "000.00.00.Z99", 3)
    assert "000.00.00.Z99 is not in the axis's agency directory" in str(err.value)
    assert h16.store.summary().outbound == {}


def test_same_document_twice_is_delivered_once(make_side, sandbox):
    h16, g22 = make_side(H16, "soap"), make_side(G22, "vxp")
    submit_sample(h16, G22, 4)
    rounds(h16, g22, times=2)
    assert len(inbox_docs(g22)) == 1
    # the poll again sees nothing new; re-processing is a no-op
    g22.engine.run_once()
    assert len(inbox_docs(g22)) == 1


H41 = "000.00.00.H41"
REQUIRE = '\n[signing.senders]\n"*" = "require"\n'


def test_vxp_to_vxp_keeps_the_signature_and_require_passes(make_side):
    g22, h41 = make_side(G22, "vxp", extra=REQUIRE), make_side(H41, "vxp", extra=REQUIRE)
    submit_sample(g22, H41, 5)
    rounds(g22, h41)
    (meta,) = [json.loads((p / "metadata.json").read_text(encoding="utf-8")) for p in inbox_docs(h41)]
    assert meta["signature"]["status"] == "valid"
    assert "G22" in meta["signature"]["signer_subject"] or meta["signature"]["signer_subject"]
    assert g22.store.summary().recipients == {"delivered": 1}


def test_refused_signature_is_quarantined_acknowledged_and_answered_with_02(make_side):
    # H16 sends over the hub: no signature survives; H41 requires one.
    h16, h41 = make_side(H16, "soap"), make_side(H41, "vxp", extra=REQUIRE)
    tracking, document_id = submit_sample(h16, H41, 6)
    rounds(h16, h41)
    assert inbox_docs(h41) == []
    summary = h41.store.summary()
    assert summary.inbound == {"rejected": 1}
    (row,) = [f for f in summary.recent_failures] or [None]
    track = h16.engine.track(tracking)
    (recipient,) = track["recipients"]
    assert recipient["status_code"] == "02"
    assert "refused under policy 'require'" in recipient["description"]


def test_axis_down_retries_then_dead_then_resend(make_side, sandbox):
    h16 = make_side(H16, "soap")
    h16.engine.refresh_directory()
    sandbox.faults.update({"failure_rate": 1.0})
    tracking, _ = submit_sample(h16, G22, 7)
    for _ in range(3):
        h16.engine.send_due()
    row = h16.store.outbound(tracking)
    assert row["state"] == "dead" and row["attempts"] == 3
    assert "gave up after 3 attempt(s)" in row["last_error"]
    sandbox.faults.update({"failure_rate": 0.0})
    assert h16.engine.resend(tracking)
    h16.engine.send_due()
    assert h16.store.outbound(tracking)["state"] == "sent"


def test_cancel_stops_a_queued_document(make_side):
    h16 = make_side(H16, "soap")
    tracking, _ = submit_sample(h16, G22, 8)
    assert h16.engine.cancel(tracking)
    assert h16.engine.send_due() == 0
    assert h16.store.outbound(tracking)["state"] == "cancelled"


def test_postgresql_store(make_side, pg_url):
    h16, g22 = make_side(H16, "soap", database_url=pg_url), make_side(G22, "vxp")
    tracking, document_id = submit_sample(h16, G22, 9)
    rounds(h16, g22)
    assert h16.engine.track(tracking)["recipients"][0]["state"] == "delivered"
