"""Inbound edges: malformed bytes are quarantined with a precise reason (never dropped), a
status that matches none of our documents is kept as unmatched, and hostile XML never
reaches a DMS."""

from __future__ import annotations

from connector.edxml.build import to_bytes
from connector.edxml.samples import sample_edoc, sample_status

from .conftest import G22, H16, inbox_docs


def _arrive(side, data: bytes, item: str, kind: str = "edoc", sender: str | None = None) -> str:
    kept = side.rt.evidence.put_bytes(data)
    in_id, _ = side.store.insert_inbound(axis_item=item, kind=kind, sender=sender, document_id=None,
                                         sha256=kept.sha256, size=kept.size)
    side.engine.process_due()
    return in_id


def test_malformed_document_is_quarantined_with_the_reason(make_side):
    g22 = make_side(G22, "vxp")
    in_id = _arrive(g22, b"<edXML><broken>", "999001")
    row = g22.store.inbound(in_id)
    assert row["state"] == "rejected"
    assert row["reason"].startswith("not a readable edXML document:")
    assert inbox_docs(g22) == []
    # the bytes stay as evidence
    assert g22.rt.evidence.has(row["sha256"])


def test_hostile_xml_is_quarantined_not_expanded(make_side):
    g22 = make_side(G22, "vxp")
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><edXML>&b;</edXML>'
    in_id = _arrive(g22, bomb, "999002")
    row = g22.store.inbound(in_id)
    assert row["state"] == "rejected" and "DOCTYPE" in row["reason"]


def test_status_matching_nothing_is_kept_as_unmatched(make_side):
    h16 = make_side(H16, "soap")
    stranger = sample_status(sample_edoc(H16, G22, 77), "03", by=G22)
    in_id = _arrive(h16, to_bytes(stranger), "status-digest:" + "0" * 64, kind="status", sender=G22)
    row = h16.store.inbound(in_id)
    assert row["state"] == "unmatched"
    assert row["reason"] == "no document of ours matches this status"
    assert h16.store.summary().inbound == {"unmatched": 1}
