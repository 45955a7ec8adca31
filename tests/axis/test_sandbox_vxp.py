"""The VXP binding of the sandbox, over real HTTP on loopback, with the VxpAxis client and with
hand-signed requests where the protocol's raw shape matters."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
import requests

from connector.axis import vxp_wire
from connector.axis.errors import AuthenticationError, DuplicateError, NotFoundError, UnknownRecipientError, ValidationError
from connector.edxml.build import build
from connector.edxml.parse import parse
from connector.edxml.samples import sample_edoc, sample_status

from .conftest import G22, H14, H16, H41


def fetch_model(client, item_id):
    out = io.BytesIO()
    info = client.fetch(item_id, out)
    assert info.sha256 == hashlib.sha256(out.getvalue()).hexdigest()
    return parse(out.getvalue(), validate=False).message, out.getvalue()


def test_send_list_get_ack_and_statuses(vxp_client, tmp_path):
    sender, receiver = vxp_client(H16), vxp_client(G22)
    doc = sample_edoc(H16, G22, 11)
    path = tmp_path / "doc.edxml"
    build(doc, path)
    doc_id = sender.send(doc, edxml_path=path)
    items = receiver.pending("edoc")
    assert [(i.item_id, i.sender) for i in items] == [(doc_id, H16)]
    got, raw = fetch_model(receiver, doc_id)
    assert raw == path.read_bytes()  # the axis serves the file as sent
    assert got == parse(path.read_bytes(), validate=False).message
    receiver.acknowledge(doc_id)
    assert receiver.pending("edoc") == []
    sent = sender.sent(doc_id)
    assert [(s.to, s.receiveStatus) for s in sent] == [(G22, "done")]
    # status 01 recorded by the acknowledgement, then a business status sent with sendEdoc
    receiver.send(sample_status(doc, "03", by=G22))
    statuses = sender.statuses_since(None)
    assert [(s.status_code, s.from_.organ_id) for s in statuses] == [("01", G22), ("03", G22)]
    for item in sender.pending("status"):
        sender.acknowledge(item.item_id)
    assert sender.pending("status") == []


def test_fail_acknowledgement_clears_pending_without_status(vxp_client):
    sender, receiver = vxp_client(H16), vxp_client(G22)
    doc_id = sender.send(sample_edoc(H16, G22, 12))
    receiver.acknowledge(doc_id, ok=False, reason="không đọc được tệp")
    assert receiver.pending() == []
    assert sender.pending("status") == []
    assert [(s.to, s.receiveStatus) for s in sender.sent(doc_id)] == [(G22, "fail")]


def test_get_only_for_recipients_and_unknown_ids(vxp_client):
    doc_id = vxp_client(H16).send(sample_edoc(H16, G22, 13))
    with pytest.raises(NotFoundError):
        vxp_client(H41).fetch(doc_id, io.BytesIO())
    with pytest.raises(NotFoundError):
        vxp_client(H41).acknowledge(doc_id)
    with pytest.raises(NotFoundError):
        vxp_client(G22).fetch("999999", io.BytesIO())


def test_authentication(vxp_client, raw_vxp, sandbox):
    with pytest.raises(AuthenticationError):
        vxp_client(H16, secret="0" * 64).pending()
    with pytest.raises(AuthenticationError):
        vxp_client(H16, secret="0" * 64).send(sample_edoc(H16, G22, 14))
    # replay: the same signed headers twice
    raw = raw_vxp(H16)
    headers = vxp_wire.sign_request("GET", vxp_wire.PATHS["getAgenciesList"], system_id=H16, secret=raw.secret)
    url = f"{sandbox.url}{vxp_wire.PATHS['getAgenciesList']}"
    assert requests.get(url, headers=headers, timeout=5).json()["status"] == "OK"
    again = requests.get(url, headers=headers, timeout=5)
    assert again.status_code == 401 and again.json()["ErrorCode"] == "REPLAY"
    # stale timestamp
    old = vxp_wire.sign_request("GET", vxp_wire.PATHS["getAgenciesList"], system_id=H16, secret=raw.secret, now=1_000_000)
    assert requests.get(url, headers=old, timeout=5).json()["ErrorCode"] == "SKEW"
    # unsigned
    assert requests.get(url, timeout=5).json()["ErrorCode"] == "AUTH"


def test_body_digest_must_match(raw_vxp, sandbox, tmp_path):
    raw = raw_vxp(H16)
    path = tmp_path / "d.edxml"
    build(sample_edoc(H16, G22, 15), path)
    data = path.read_bytes()
    extra = {"from": H16, "to": G22, "servicetype": "eDoc", "messagetype": "edoc"}
    headers = vxp_wire.sign_request(
        "POST", vxp_wire.PATHS["sendEdoc"], system_id=H16, secret=raw.secret,
        content_sha256=vxp_wire.body_sha256(data), extra=extra,
    )
    tampered = data.replace(b"15", b"16", 1)
    r = requests.post(f"{sandbox.url}{vxp_wire.PATHS['sendEdoc']}", data=tampered, headers=headers, timeout=5)
    assert r.json()["status"] == "FAIL" and r.json()["ErrorCode"] == "SIGNATURE"
    assert sandbox.store.counts()["documents"] == {}


def test_send_refusals(vxp_client, raw_vxp, tmp_path):
    client = vxp_client(H16)
    doc = sample_edoc(H16, "000.00.00.X99", 16)
    with pytest.raises(UnknownRecipientError):
        client.send(doc)
    doc = sample_edoc(H16, G22, 17)
    client.send(doc)
    with pytest.raises(DuplicateError):
        client.send(doc)
    # hostile XML body: refused, FAIL INVALID
    hostile = tmp_path / "hostile.edxml"
    hostile.write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY x SYSTEM "file:///etc/passwd">]><edXML>&x;</edXML>'
    )
    with pytest.raises(ValidationError) as err:
        raw_vxp(H16).send_file(hostile, to=[G22])
    assert err.value.code == "INVALID"
    # a from header that is not the authenticated system
    with pytest.raises(AuthenticationError):
        raw_vxp(H41).answer(
            "sendEdoc", body=b"<x/>", extra={"from": H16, "to": G22, "servicetype": "eDoc", "messagetype": "edoc"}
        )


def test_directory(vxp_client):
    agencies = {a.code: a for a in vxp_client(H14).directory()}
    assert set(agencies) == {H16, G22, H41, H14}
    assert agencies[G22].name == "Văn phòng Chính phủ"


def test_concurrent_clients(vxp_client):
    organs = [H16, G22, H41, H14]
    errors: list[BaseException] = []
    expected: dict[str, set[str]] = {o: set() for o in organs}
    lock = threading.Lock()

    def worker(sender: str, n0: int):
        try:
            client = vxp_client(sender)
            for k in range(3):
                recipient = organs[(organs.index(sender) + 1 + k) % len(organs)]
                doc_id = client.send(sample_edoc(sender, recipient, n0 + k))
                with lock:
                    expected[recipient].add(doc_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(o, 200 * (i + 1))) for i, o in enumerate(organs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors

    def drain(organ: str):
        try:
            client = vxp_client(organ)
            for item in client.pending():
                message, _ = fetch_model(client, item.item_id)
                assert message.to[0].organ_id == organ
                client.acknowledge(item.item_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    assert all({p.item_id for p in vxp_client(o).pending()} == expected[o] for o in organs)
    threads = [threading.Thread(target=drain, args=(o,)) for o in organs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert all(vxp_client(o).pending() == [] for o in organs)
    assert sum(len(vxp_client(o).pending("status")) for o in organs) == 12


def test_agencies_file_sets_credentials_and_system_ids(tmp_path):
    import json

    from connector.axis.soap_hub import SoapHubAxis
    from connector.axis.vxp import VxpAxis
    from connector.sandbox.server import SandboxServer

    listing = [
        {"organ_id": "001.01.01.H01", "name": "Sở A", "token": "tok-a", "secret": "sec-a", "system_id": "sys-a"},
        {"organ_id": "001.01.02.H01", "name": "Sở B", "token": "tok-b", "secret": "sec-b", "email": "b@example.vn"},
    ]
    path = tmp_path / "agencies.json"
    path.write_text(json.dumps(listing, ensure_ascii=False), encoding="utf-8")
    with SandboxServer(tmp_path / "data", agencies_file=path) as server:
        assert not (tmp_path / "data" / "agencies.json").exists()
        with VxpAxis(server.url, "sys-a", "sec-a", retries=0) as a, SoapHubAxis(
            f"{server.url}/soap", "001.01.01.H01", "tok-a", retries=0
        ) as hub_a:
            assert {x.code for x in a.directory()} == {"001.01.01.H01", "001.01.02.H01"}
            hub_a.check_permission()
            doc = sample_edoc("001.01.01.H01", "001.01.02.H01", 1)
            doc_id = a.send(doc)
        with VxpAxis(server.url, "001.01.02.H01", "sec-b", retries=0) as b:
            assert [p.item_id for p in b.pending()] == [doc_id]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"organ_id": "x", "name": "y"}]), encoding="utf-8")
    with pytest.raises(ValueError):
        SandboxServer(tmp_path / "data2", agencies_file=bad)
