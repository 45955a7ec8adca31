"""The SOAP hub binding of the sandbox, over real HTTP on loopback, with the SoapHubAxis client
and with hand-built requests (no zeep) where the contract's raw shape matters."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from datetime import datetime, timedelta

import pytest
import requests

from connector.axis import soap_wire
from connector.axis.errors import AuthenticationError, DuplicateError, NotFoundError
from connector.edxml.model import VN_TZ
from connector.edxml.samples import make_pdf, sample_edoc, sample_status
from connector.sandbox.server import SandboxServer

from .conftest import G22, H14, H16, H41, attachment_bytes, hub_view

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def test_send_pending_get_confirm_and_traces(hub_client):
    sender, receiver = hub_client(H16), hub_client(G22)
    doc = sample_edoc(H16, G22, 1)
    doc_id = sender.send(doc)
    assert doc_id.isdigit()
    assert [p.item_id for p in receiver.pending()] == [doc_id]
    got, related = receiver.get_document(doc_id)
    try:
        assert hub_view(got) == hub_view(doc)
        assert [hashlib.sha256(b).hexdigest() for b in attachment_bytes(got)] == [a.sha256 for a in doc.attachments]
    finally:
        related.close()
    out = io.BytesIO()
    info = receiver.fetch(doc_id, out)
    assert info.size == len(out.getvalue()) > 0
    # GetDocument does not clear pending; ConfirmReceived does, and records status 01.
    assert [p.item_id for p in receiver.pending()] == [doc_id]
    receiver.acknowledge(doc_id)
    assert receiver.pending() == []
    since = datetime.now(VN_TZ) - timedelta(minutes=5)
    statuses = sender.statuses_since(None)  # destructive read
    assert [(s.status_code, s.from_.organ_id, s.response_for[0].document_id) for s in statuses] == [
        ("01", G22, doc.document_id)
    ]
    assert sender.statuses_since(None) == []
    kept = sender.statuses_since(since)  # with a TimeStamp: nothing consumed
    assert [s.status_code for s in kept] == ["01"]
    assert [s.status_code for s in sender.statuses_since(since)] == ["01"]


def test_update_traces_reaches_sender_and_duplicates_are_refused(hub_client):
    sender, receiver = hub_client(H16), hub_client(G22)
    doc = sample_edoc(H16, G22, 2)
    doc_id = sender.send(doc)
    receiver.acknowledge(doc_id)
    receiver.send(sample_status(doc, "03", by=G22))
    with pytest.raises(DuplicateError):
        receiver.send(sample_status(doc, "03", by=G22))
    receiver.send(sample_status(doc, "05", by=G22))
    receiver.send(sample_status(doc, "05", by=G22))  # 05 may repeat
    codes = [s.status_code for s in sender.statuses_since(None)]
    assert codes == ["01", "03", "05", "05"]


def test_get_document_only_for_recipients(hub_client):
    doc_id = hub_client(H16).send(sample_edoc(H16, G22, 3))
    with pytest.raises(NotFoundError):
        hub_client(H41).get_document(doc_id)
    with pytest.raises(NotFoundError):
        hub_client(H41).acknowledge(doc_id)
    assert hub_client(H41).pending() == []


def test_bad_token_is_refused_with_an_empty_error_list(sandbox, hub_client, raw_hub):
    for call in (lambda c: c.check_permission(), lambda c: c.pending(), lambda c: c.directory()):
        with pytest.raises(AuthenticationError):
            call(hub_client(H16, token="wrong"))
    hub_client(H16).check_permission()
    r = raw_hub(H16, token="wrong").call("GetPendingDocumentIds", soap_wire.build_request("GetPendingDocumentIds", H16, "wrong"))
    root = soap_wire.parse_envelope(r.content)
    report = root.find(f".//{{{soap_wire.EDXML_NS}}}Report")
    assert report.findtext(f"{{{soap_wire.EDXML_NS}}}IsSuccess") == "false"
    assert len(report.find(f"{{{soap_wire.EDXML_NS}}}ErrorList")) == 0
    with pytest.raises(AuthenticationError):
        hub_client(H16, token="wrong").send(sample_edoc(H16, G22, 4))
    assert sandbox.store.counts()["documents"] == {}


def test_directory_lists_every_agency(hub_client):
    codes = {a.code for a in hub_client(H41).directory()}
    assert codes == {H16, G22, H41, H14}


def test_unknown_soapaction_gets_an_empty_envelope(sandbox):
    r = requests.post(f"{sandbox.url}/soap", data=b"<x/>", headers={"SOAPAction": "DeleteEverything"}, timeout=5)
    root = soap_wire.parse_envelope(r.content)
    assert soap_wire.is_empty(root)


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<soapenv:Envelope xmlns:soapenv="' + SOAP.encode() + b'"><soapenv:Body><GetPendingDocumentIdsRequest>'
        b"<OrganId>&lol2;</OrganId><Token>x</Token></GetPendingDocumentIdsRequest></soapenv:Body></soapenv:Envelope>",
        b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:1/evil.dtd">'
        b'<soapenv:Envelope xmlns:soapenv="' + SOAP.encode() + b'"><soapenv:Body/></soapenv:Envelope>',
        b"<a>" * 5000 + b"</a>" * 5000,
    ],
    ids=["entities", "external-dtd", "deep"],
)
def test_hostile_xml_is_refused_with_a_failed_report(sandbox, payload):
    r = requests.post(
        f"{sandbox.url}/soap", data=payload, headers={"SOAPAction": "GetPendingDocumentIds", "Content-Type": "text/xml"}, timeout=5
    )
    assert r.status_code == 200
    root = soap_wire.parse_envelope(r.content)
    report = root.find(f".//{{{soap_wire.EDXML_NS}}}Report")
    assert report is not None and report.findtext(f"{{{soap_wire.EDXML_NS}}}IsSuccess") == "false"
    assert "M.GetPendingDocumentIds" in r.text


def _hand_built_send_document(organ_id: str, token: str, to: str, pdf: bytes, boundary: str) -> bytes:
    today = datetime.now(VN_TZ)
    envelope = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:edXML="http://www.e-doc.vn/Schema/">
 <soapenv:Header>
  <edXML:MessageHeader>
   <edXML:From><edXML:OrganId>{organ_id}</edXML:OrganId><edXML:OrganName>UBND tỉnh Đắk Nông</edXML:OrganName>
    <edXML:OrganizationInCharge>UBND tỉnh Đắk Nông</edXML:OrganizationInCharge><edXML:OrganAdd/><edXML:Email/>
    <edXML:Telephone/><edXML:Fax/><edXML:Website/></edXML:From>
   <edXML:To><edXML:OrganId>{to}</edXML:OrganId><edXML:OrganName>Văn phòng Chính phủ</edXML:OrganName>
    <edXML:OrganAdd/><edXML:Email/><edXML:Telephone/><edXML:Fax/><edXML:Website/></edXML:To>
   <edXML:DocumentId>{organ_id},{today:%Y/%m/%d},99/UBND-VP</edXML:DocumentId>
   <edXML:Code><edXML:CodeNumber>99</edXML:CodeNumber><edXML:CodeNotation>UBND-VP</edXML:CodeNotation></edXML:Code>
   <edXML:PromulgationInfo><edXML:Place>Gia Nghĩa</edXML:Place>
    <edXML:PromulgationDate>{today:%Y/%m/%d}</edXML:PromulgationDate></edXML:PromulgationInfo>
   <edXML:DocumentType><edXML:Type>1</edXML:Type><edXML:TypeName>Công văn</edXML:TypeName></edXML:DocumentType>
   <edXML:Subject>V/v thử nghiệm gửi văn bản bằng tay</edXML:Subject><edXML:Content>Nội dung</edXML:Content>
   <edXML:SignerInfo><edXML:Competence/><edXML:Position>Chủ tịch</edXML:Position><edXML:FullName>Nguyễn Văn An</edXML:FullName></edXML:SignerInfo>
   <edXML:DueDate/><edXML:ToPlaces><edXML:Place>Như trên</edXML:Place></edXML:ToPlaces>
   <edXML:OtherInfo><edXML:Priority>0</edXML:Priority><edXML:SphereOfPromulgation/><edXML:TyperNotation/>
    <edXML:PromulgationAmount>1</edXML:PromulgationAmount><edXML:PageAmount>1</edXML:PageAmount><edXML:Appendixes/></edXML:OtherInfo>
  </edXML:MessageHeader>
  <edXML:TraceHeaderList>
   <edXML:TraceHeader><edXML:OrganId>{organ_id}</edXML:OrganId><edXML:Timestamp>{today:%Y/%m/%d %H:%M:%S}</edXML:Timestamp></edXML:TraceHeader>
   <edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType><edXML:BussinessDocReason/><edXML:Paper>0</edXML:Paper></edXML:Bussiness>
  </edXML:TraceHeaderList>
  <edXML:Signature><edXML:KeyInfo><edXML:OrganId>{organ_id}</edXML:OrganId><edXML:Token>{token}</edXML:Token></edXML:KeyInfo></edXML:Signature>
  <edXML:ErrorList/>
 </soapenv:Header>
 <soapenv:Body>
  <edXML:Manifest><edXML:Reference href="cid:att1"><edXML:AttachmentName>baocao.pdf</edXML:AttachmentName></edXML:Reference></edXML:Manifest>
 </soapenv:Body>
</soapenv:Envelope>""".encode("utf-8")
    return (
        f"--{boundary}\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        f"Content-ID: <env0>\r\n\r\n".encode()
        + envelope
        + f"\r\n--{boundary}\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: binary\r\n"
        f"Content-ID: <att1>\r\n\r\n".encode()
        + pdf
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_hand_built_multipart_send_document_is_accepted(sandbox, agencies, raw_hub):
    pdf = make_pdf("Bao cao gui bang tay", ["multipart/related built without zeep"])
    boundary = "----=_Part_0_hand.built"
    body = _hand_built_send_document(H16, agencies[H16].token, G22, pdf, boundary)
    r = requests.post(
        f"{sandbox.url}/soap",
        data=body,
        headers={
            "SOAPAction": "SendDocument",
            "Content-Type": f'multipart/related; type="text/xml"; start="<env0>"; boundary="{boundary}"',
        },
        timeout=10,
    )
    assert r.status_code == 200
    assert "<edXML:IsSuccess>true</edXML:IsSuccess>" in r.text
    root = soap_wire.parse_envelope(r.content)
    doc_id = soap_wire.parse_send_document_response(root)
    receiver = raw_hub(G22)
    assert receiver.pending() == [doc_id]
    got = receiver.get(doc_id)
    assert got.subject == "V/v thử nghiệm gửi văn bản bằng tay"
    assert got.business.business_doc_type == 0
    assert [a.name for a in got.attachments] == ["baocao.pdf"]
    assert attachment_bytes(got) == [pdf]


def test_zero_byte_part_fails_the_send(sandbox, agencies):
    boundary = "b0"
    body = _hand_built_send_document(H16, agencies[H16].token, G22, b"", boundary)
    r = requests.post(
        f"{sandbox.url}/soap",
        data=body,
        headers={"SOAPAction": "SendDocument", "Content-Type": f'multipart/related; type="text/xml"; boundary="{boundary}"'},
        timeout=10,
    )
    assert "<edXML:IsSuccess>false</edXML:IsSuccess>" in r.text and "R.AttachmentName" in r.text


def test_duplicate_document_id_is_m_exist(hub_client):
    doc = sample_edoc(H16, G22, 5)
    hub_client(H16).send(doc)
    with pytest.raises(DuplicateError) as err:
        hub_client(H16).send(doc)
    assert err.value.code == "M.Exist"


def test_wsdl_is_served_with_this_address(sandbox):
    r = requests.get(f"{sandbox.url}/soap?wsdl", timeout=5)
    assert r.status_code == 200 and b"definitions" in r.content
    assert f"{sandbox.url}/soap".encode() in r.content or b"location" not in r.content


def test_concurrent_clients_of_several_agencies(hub_client):
    organs = [H16, G22, H41, H14]
    errors: list[BaseException] = []
    sent: dict[str, list[str]] = {o: [] for o in organs}
    lock = threading.Lock()

    def worker(sender: str, n0: int):
        try:
            client = hub_client(sender)
            for k in range(3):
                recipient = organs[(organs.index(sender) + 1 + k) % len(organs)]
                doc_id = client.send(sample_edoc(sender, recipient, n0 + k))
                with lock:
                    sent[recipient].append(doc_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(o, 100 * (i + 1))) for i, o in enumerate(organs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    for organ in organs:
        assert sorted(p.item_id for p in hub_client(organ).pending()) == sorted(sent[organ])
    assert len({d for ids in sent.values() for d in ids}) == 12


def test_restart_keeps_documents_pending_lists_statuses_and_agencies(tmp_path):
    data = tmp_path / "data"
    from connector.axis.soap_hub import SoapHubAxis

    with SandboxServer(data) as first:
        creds = {a.organ_id: a.token for a in first.store.agencies()}
        url = f"{first.url}/soap"
        doc = sample_edoc(H16, G22, 6)
        doc2 = sample_edoc(H16, G22, 7)
        with SoapHubAxis(url, H16, creds[H16], retries=0) as sender, SoapHubAxis(url, G22, creds[G22], retries=0) as rcv:
            first_id = sender.send(doc)
            second_id = sender.send(doc2)
            rcv.acknowledge(first_id)
        listed = json.loads((data / "agencies.json").read_text(encoding="utf-8"))
    with SandboxServer(data) as second:
        assert {a.organ_id: a.token for a in second.store.agencies()} == creds
        assert json.loads((data / "agencies.json").read_text(encoding="utf-8")) == listed
        url = f"{second.url}/soap"
        with SoapHubAxis(url, H16, creds[H16], retries=0) as sender, SoapHubAxis(url, G22, creds[G22], retries=0) as rcv:
            assert [p.item_id for p in rcv.pending()] == [second_id]
            got, related = rcv.get_document(second_id)
            related.close()
            assert hub_view(got) == hub_view(doc2)
            assert [s.status_code for s in sender.statuses_since(None)] == ["01"]
            third = sender.send(sample_edoc(H16, G22, 8))
            assert int(third) > int(second_id)
