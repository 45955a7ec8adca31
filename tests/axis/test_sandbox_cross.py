"""One sandbox, two bindings: a document sent on the SOAP hub is fetched on VXP and the other
way round, with identical fields and attachment bytes; statuses cross the same way."""

from __future__ import annotations

import hashlib
import io

from connector.edxml.parse import parse
from connector.edxml.samples import sample_edoc, sample_status

from .conftest import G22, H16, H41, attachment_bytes, hub_view


def _vxp_fetch(client, item_id):
    out = io.BytesIO()
    client.fetch(item_id, out)
    return parse(out.getvalue(), validate=False).message


def test_soap_send_is_fetched_on_vxp_identically(hub_client, vxp_client):
    doc = sample_edoc(H16, G22, 21)
    doc_id = hub_client(H16).send(doc)
    on_vxp = vxp_client(G22)
    assert [i.item_id for i in on_vxp.pending()] == [doc_id]
    via_vxp = _vxp_fetch(on_vxp, doc_id)
    via_soap, related = hub_client(G22).get_document(doc_id)
    try:
        assert hub_view(via_vxp) == hub_view(via_soap) == hub_view(doc)
        original = attachment_bytes(doc)
        assert attachment_bytes(via_vxp) == attachment_bytes(via_soap) == original
        assert [a.sha256 for a in via_vxp.attachments] == [hashlib.sha256(b).hexdigest() for b in original]
    finally:
        related.close()
    # acknowledged on VXP: gone from the hub's pending list too, status 01 readable on the hub
    on_vxp.acknowledge(doc_id)
    assert hub_client(G22).pending() == []
    assert [(s.status_code, s.from_.organ_id) for s in hub_client(H16).statuses_since(None)] == [("01", G22)]


def test_vxp_send_is_fetched_on_soap_identically(hub_client, vxp_client):
    doc = sample_edoc(G22, H16, 22)  # attachments ZIP-wrapped, as the VNPT builder sends them
    doc_id = vxp_client(G22).send(doc)
    on_hub = hub_client(H16)
    assert [p.item_id for p in on_hub.pending()] == [doc_id]
    via_soap, related = on_hub.get_document(doc_id)
    via_vxp = _vxp_fetch(vxp_client(H16), doc_id)
    try:
        assert hub_view(via_soap) == hub_view(via_vxp) == hub_view(doc)
        assert attachment_bytes(via_soap) == attachment_bytes(via_vxp) == attachment_bytes(doc)
    finally:
        related.close()
    on_hub.acknowledge(doc_id)
    assert vxp_client(H16).pending() == []
    statuses = vxp_client(G22).statuses_since(None)
    assert [(s.status_code, s.from_.organ_id, s.response_for[0].document_id) for s in statuses] == [
        ("01", H16, doc.document_id)
    ]


def test_statuses_cross_bindings(hub_client, vxp_client):
    # hub sender, VXP recipient answers with sendEdoc(messagetype=status)
    doc = sample_edoc(H16, H41, 23)
    doc_id = hub_client(H16).send(doc)
    vxp_client(H41).acknowledge(doc_id)
    vxp_client(H41).send(sample_status(doc, "06", by=H41))
    assert [s.status_code for s in hub_client(H16).statuses_since(None)] == ["01", "06"]
    # VXP sender, hub recipient answers with UpdateTraces
    doc2 = sample_edoc(G22, H41, 24)
    doc2_id = vxp_client(G22).send(doc2)
    hub_client(H41).acknowledge(doc2_id)
    hub_client(H41).send(sample_status(doc2, "02", by=H41))
    assert [s.status_code for s in vxp_client(G22).statuses_since(None)] == ["01", "02"]


def test_several_recipients_on_different_bindings(hub_client, vxp_client):
    doc = sample_edoc(H16, G22, 25)
    doc.to.append(type(doc.to[0])(organ_id=H41, organ_name="UBND tỉnh Nghệ An"))
    doc_id = hub_client(H16).send(doc)
    assert [p.item_id for p in hub_client(G22).pending()] == [doc_id]
    assert [p.item_id for p in vxp_client(H41).pending()] == [doc_id]
    hub_client(G22).acknowledge(doc_id)
    assert [p.item_id for p in vxp_client(H41).pending()] == [doc_id]  # per-recipient pending
    vxp_client(H41).acknowledge(doc_id)
    assert sorted(s.from_.organ_id for s in hub_client(H16).statuses_since(None)) == sorted([G22, H41])


def test_vxp_statuses_since_names_a_status_it_cannot_read(hub_client, vxp_client, monkeypatch, caplog):
    """One unreadable status file is left out with a warning naming it, not dropped silently,
    and the readable ones are still returned."""
    import logging

    doc = sample_edoc(G22, H41, 26)
    doc_id = vxp_client(G22).send(doc)
    hub_client(H41).acknowledge(doc_id)  # status 01 for G22
    hub_client(H41).send(sample_status(doc, "03", by=H41))
    client = vxp_client(G22)
    items = [p.item_id for p in client.pending("status")]
    assert len(items) == 2
    real_fetch = client.fetch

    def fetch(item_id, dest):
        if item_id == items[0]:
            dest.write(b"<not-edxml")  # what a damaged file on the axis would give
            return None
        return real_fetch(item_id, dest)

    monkeypatch.setattr(client, "fetch", fetch)
    with caplog.at_level(logging.WARNING, logger="connector.axis"):
        statuses = client.statuses_since(None)
    assert [s.status_code for s in statuses] == ["03"]
    (record,) = [r for r in caplog.records if items[0] in r.getMessage()]
    assert "cannot be read, left out of statuses_since" in record.getMessage()
