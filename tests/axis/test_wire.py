"""The hub's SOAP envelopes and the VXP signing: round trips, quirks asserted on the XML."""

from __future__ import annotations

import dataclasses
import io
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lxml import etree

from connector.axis import errors, multipart, soap_wire as w, vxp_wire as v
from connector.axis.soap_hub import WSDL_PATH, SoapHubAxis
from connector.axis.vxp import VxpAxis
from connector.edxml.model import VN_TZ, BytesData, Organization
from connector.edxml.samples import sample_edoc, sample_status

SOAP = w.SOAP_NS
ED = w.EDXML_NS


def _root(data: bytes) -> etree._Element:
    return w.parse_envelope(data)


def _body_child(data: bytes) -> etree._Element:
    return _root(data).find(f"{{{SOAP}}}Body")[0]


# --------------------------------------------------------------------------- simple requests


@pytest.mark.parametrize("operation", ["GetPendingDocumentIds", "GetDocument", "ConfirmReceived", "GetTraces", "GetOrganizations"])
def test_simple_requests_are_no_namespace_and_round_trip(operation):
    stamp = datetime(2024, 5, 6, 7, 8, 9, tzinfo=VN_TZ) if operation == "GetTraces" else None
    data = w.build_request(operation, "000.00.07.H16", "tok", document_id=48211, timestamp=stamp)
    child = _body_child(data)
    assert child.tag == w.REQUEST_ELEMENTS[operation]  # no namespace at all
    assert child.nsmap.get(None) is None
    assert all(c.tag in ("OrganId", "Token", "DocumentId", "TimeStamp") for c in child)
    parsed = w.parse_request(operation, _root(data))
    assert (parsed.credentials.organ_id, parsed.credentials.token) == ("000.00.07.H16", "tok")
    if operation in ("GetDocument", "ConfirmReceived"):
        assert parsed.document_id == 48211
    if operation == "GetTraces":
        assert parsed.timestamp == stamp
        assert b"<TimeStamp>2024/05/06 07:08:09</TimeStamp>" in data


def test_get_traces_without_timestamp_has_no_element():
    data = w.build_request("GetTraces", "A", "t")
    assert b"TimeStamp" not in data
    assert w.parse_request("GetTraces", _root(data)).timestamp is None


def test_check_permission_goes_in_the_header():
    data = w.build_request("CheckPermission", "A", "t")
    root = _root(data)
    assert root.find(f"{{{SOAP}}}Header/CheckPermission/OrganId").text == "A"
    assert len(root.find(f"{{{SOAP}}}Body")) == 0
    assert w.parse_request("CheckPermission", root).credentials.token == "t"


def test_hub_document_id_rule():
    data = b'<s:Envelope xmlns:s="%s"><s:Body><X><documentID>12</documentID><DocumentId>9</DocumentId></X></s:Body></s:Envelope>' % SOAP.encode()
    assert w.hub_document_id(_root(data)) == 12
    bad = data.replace(b">12<", b">x12<")
    assert w.hub_document_id(_root(bad)) == 0
    prefixed = b'<s:Envelope xmlns:s="%s" xmlns:e="%s"><s:Body><e:DocumentId>5</e:DocumentId></s:Body></s:Envelope>' % (SOAP.encode(), ED.encode())
    assert w.hub_document_id(_root(prefixed)) == 0


def test_missing_request_element_is_an_error():
    with pytest.raises(w.SoapWireError):
        w.parse_request("GetDocument", _root(w.empty_envelope()))


def test_doctype_is_refused():
    hostile = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><s:Envelope xmlns:s="%s"><s:Body/></s:Envelope>' % SOAP.encode()
    with pytest.raises(w.SoapWireError):
        w.parse_envelope(hostile)


def test_soap12_is_refused():
    with pytest.raises(w.SoapWireError):
        w.parse_envelope(b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>')


# --------------------------------------------------------------------------- responses


def test_every_response_is_wrapped_in_edxml_namespace():
    for data, op in [
        (w.pending_ids_response([1, 2]), "GetPendingDocumentIds"),
        (w.send_document_response(7), "SendDocument"),
        (w.report_response("ConfirmReceived", w.HubReport()), "ConfirmReceived"),
        (w.traces_response([]), "GetTraces"),
        (w.organizations_response([]), "GetOrganizations"),
    ]:
        child = _body_child(data)
        assert child.tag == f"{{{ED}}}{op}Response"
        assert child.prefix == "edXML"


def test_pending_ids_round_trip():
    assert w.parse_pending_ids_response(_root(w.pending_ids_response([48211, 3]))) == [48211, 3]
    assert w.parse_pending_ids_response(_root(w.pending_ids_response([]))) == []


def test_send_document_response_round_trip():
    assert w.parse_send_document_response(_root(w.send_document_response(99))) == 99


def test_report_failure_maps_codes():
    cases = {
        "M.Exist": errors.DuplicateError,
        "N.MessageHeader.To": errors.UnknownRecipientError,
        "M.GetDocumentCheckAllow": errors.NotFoundError,
        "CheckSignature": errors.AuthenticationError,
        "R.MessageHeader.DocumentType.TypeName": errors.ValidationError,
        "M.UpdateTrace": errors.RetryableAxisError,
        "M.SendDocument": errors.PermanentAxisError,
    }
    for code, cls in cases.items():
        data = w.report_response("SendDocument", w.HubReport.failure(code, "boom"))
        with pytest.raises(cls) as info:
            w.parse_send_document_response(_root(data))
        assert info.value.code == code and info.value.operation == "SendDocument"


def test_report_with_empty_error_list_is_authentication():
    data = w.report_response("ConfirmReceived", w.HubReport(False, []))
    assert b"<edXML:ErrorList/>" in data
    with pytest.raises(errors.AuthenticationError) as info:
        w.parse_report_response(_root(data), "ConfirmReceived")
    assert info.value.code is None


def test_empty_body_is_retryable():
    with pytest.raises(errors.RetryableAxisError):
        w.parse_pending_ids_response(_root(w.empty_envelope()))


def test_organizations_round_trip_omits_nulls():
    orgs = [Organization(organ_id="A", organ_name="Tên", email=None), Organization(organ_id="B", organization_in_charge="X")]
    data = w.organizations_response(orgs)
    assert b"Email" not in data
    assert w.parse_organizations_response(_root(data)) == orgs


def test_status_update_traces_round_trip_and_no_namespace():
    edoc = sample_edoc()
    status = sample_status(edoc, "03")
    data = w.status_to_update_traces(status, "000.00.00.G22", "tok")
    root = _root(data)
    body_status = root.find(f"{{{SOAP}}}Body/Status")
    assert body_status is not None and body_status.find("StatusCode").text == "3"
    assert root.find(f"{{{SOAP}}}Header/{{{ED}}}Signature/{{{ED}}}KeyInfo/{{{ED}}}Token").text == "tok"
    request = w.update_traces_to_status(root)
    assert request.credentials.organ_id == "000.00.00.G22"
    got = request.status
    assert got.status_code == "03"
    assert got.from_ == status.from_
    assert got.response_for == status.response_for
    assert got.timestamp == status.timestamp
    assert got.description == status.description


def test_traces_response_round_trip():
    edoc = sample_edoc()
    statuses = [sample_status(edoc, "01"), sample_status(edoc, "06")]
    data = w.traces_response(statuses)
    assert _body_child(data).find(f"{{{ED}}}Traces/{{{ED}}}Status/{{{ED}}}StatusCode").text == "1"
    got = w.parse_traces_response(_root(data))
    assert [s.status_code for s in got] == ["01", "06"]
    assert got[1].response_for == statuses[1].response_for


# --------------------------------------------------------------------------- documents


def _parts_map(parts):
    return {p.content_id: p.data for p in parts}


def test_send_document_envelope_shape():
    edoc = sample_edoc()
    data, parts = w.edoc_to_send_document(edoc, "000.00.00.H16", "tok")
    root = _root(data)
    header = root.find(f"{{{SOAP}}}Header")
    assert [etree.QName(c).localname for c in header] == ["MessageHeader", "TraceHeaderList", "Signature", "ErrorList"]
    assert all(etree.QName(c).namespace == ED for c in header)
    assert header.find(f"{{{ED}}}TraceHeaderList/{{{ED}}}Business") is not None
    ref = root.find(f"{{{SOAP}}}Body/{{{ED}}}Manifest/{{{ED}}}Reference")
    assert ref.get("href") == "cid:doc1" and ref.attrib.keys() == ["href"]
    assert ref.find(f"{{{ED}}}AttachmentName").text == "cong-van-1.pdf"
    assert [(p.content_id, p.content_type, p.encoding) for p in parts] == [("doc1", "application/pdf", "binary")]
    assert b"yyyy" not in data and edoc.promulgation.date.strftime("%Y/%m/%d").encode() in data


def test_send_document_round_trip():
    edoc = sample_edoc()
    data, parts = w.edoc_to_send_document(edoc, "000.00.00.H16", "tok")
    request = w.send_document_to_edoc(_root(data), _parts_map(parts))
    assert request.credentials.token == "tok"
    got = request.edoc
    # To carries no OrganizationInCharge in the hub contract
    assert [dataclasses.replace(o, organization_in_charge=None) for o in edoc.to] == got.to
    for name in ("from_", "document_id", "code", "promulgation", "subject", "content", "signer_info",
                 "due_date", "to_places", "steering_type", "trace_headers", "business"):
        assert getattr(got, name) == getattr(edoc, name), name
    assert got.document_type.type == "1" and got.document_type.type_name == "Công văn"
    assert got.other_info.appendixes == edoc.other_info.appendixes
    assert got.attachments[0].sha256 == edoc.attachments[0].data.sha256
    assert got.attachments[0].packaging == "plain"


def test_bussiness_misspelling_accepted():
    edoc = sample_edoc()
    data, parts = w.edoc_to_send_document(edoc, "A", "t")
    data = data.replace(b"edXML:Business>", b"edXML:Bussiness>")
    assert w.send_document_to_edoc(_root(data), _parts_map(parts)).edoc.business == edoc.business


def test_send_document_refuses_empty_part_and_no_recipient():
    edoc = sample_edoc()
    edoc.attachments[0].data = BytesData(b"")
    with pytest.raises(errors.ValidationError):
        w.edoc_to_send_document(edoc, "A", "t")
    edoc = sample_edoc()
    edoc.to = []
    with pytest.raises(errors.UnknownRecipientError):
        w.edoc_to_send_document(edoc, "A", "t")


@pytest.mark.parametrize("database_form", [False, True])
def test_get_document_response_round_trip(database_form):
    edoc = sample_edoc()
    data, parts = w.edoc_to_get_document_response(edoc, database_form=database_form)
    root = _root(data)
    assert etree.QName(root.find(f"{{{SOAP}}}Body")[0]).localname == "Manifest"  # no wrapper
    ref = root.find(f"{{{SOAP}}}Body/{{{ED}}}Manifest/{{{ED}}}Reference")
    assert ref.get("{http://www.w3.org/1999/xlink}href") == "cid:doc1"
    if database_form:
        assert edoc.promulgation.date.strftime("%d/%m/%Y").encode() in data
        assert b"OrganInCharge" in data and b"OrganizationInCharge" not in data
    boundary = multipart.new_boundary()
    body = b"".join(multipart.generate(data, parts, boundary))
    with multipart.parse(io.BytesIO(body), multipart.content_type(boundary)) as related:
        got = w.get_document_response_to_edoc(w.parse_envelope(related.root_bytes()), related.parts)
        assert got.from_ == edoc.from_
        assert got.promulgation == edoc.promulgation
        assert got.trace_headers == edoc.trace_headers
        with got.attachments[0].data.open() as fh, edoc.attachments[0].data.open() as want:
            assert fh.read() == want.read()


def test_get_document_bare_report_raises():
    data = w.report_response("GetDocument", w.HubReport.failure("M.GetDocumentCheckAllow", "not yours"))
    assert _body_child(data).tag == f"{{{ED}}}Report"
    with pytest.raises(errors.NotFoundError):
        w.get_document_response_to_edoc(_root(data), {})


def test_dates_both_orders():
    assert w.parse_hub_datetime("2024/01/31 08:09:10") == w.parse_hub_datetime("31/01/2024 08:09:10")
    with pytest.raises(w.SoapWireError):
        w.parse_hub_datetime("31/31/2024")


def test_operation_of():
    assert w.operation_of('"GetDocument"') == "GetDocument"
    assert w.operation_of("getdocument") is None


# --------------------------------------------------------------------------- WSDL / zeep


def test_zeep_loads_wsdl_with_forbid_settings_and_matches_soap_wire():
    import zeep

    client = zeep.Client(str(WSDL_PATH), settings=zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True))
    operations = client.service._binding._operations
    assert set(operations) == set(w.OPERATIONS)
    assert all(op.soapaction == name for name, op in operations.items())
    node = client.create_message(client.service, "GetDocument", OrganId="A", Token="t", DocumentId=5)
    ours = _root(w.build_request("GetDocument", "A", "t", document_id=5))
    theirs = node.find(f"{{{SOAP}}}Body")[0]
    mine = ours.find(f"{{{SOAP}}}Body")[0]
    assert etree.tostring(theirs, method="c14n", exclusive=True) == etree.tostring(mine, method="c14n", exclusive=True)


# --------------------------------------------------------------------------- VXP signing


SECRET = "s3cret"


def _sign(**kw):
    return v.sign_request("POST", "/vxp/sendEdoc", system_id="H16", secret=SECRET, query={"b": "2", "a": "1 x"},
                          content_sha256=v.body_sha256(b"body"), extra={"from": "H16", "to": "G22", "messagetype": "edoc",
                                                                         "servicetype": "eDoc"}, **kw)


def _verify(headers, *, query=None, path="/vxp/sendEdoc", method="POST", **kw):
    return v.verify_request(method, path, query if query is not None else [("a", "1 x"), ("b", "2")], headers,
                            {"H16": SECRET}.get, **kw)


def test_sign_verify_ok():
    headers = _sign()
    assert _verify(headers) == "H16"
    v.check_body_digest(headers["content-sha256"], v.body_sha256(io.BytesIO(b"body")))


@pytest.mark.parametrize("change", ["to", "query", "path", "method", "digest", "signature", "systemid"])
def test_tampering_is_refused(change):
    headers = _sign()
    kwargs = {}
    if change == "to":
        headers["to"] = "X99"
    elif change == "query":
        kwargs["query"] = {"a": "1 x", "b": "3"}
    elif change == "path":
        kwargs["path"] = "/vxp/getEdoc"
    elif change == "method":
        kwargs["method"] = "GET"
    elif change == "digest":
        headers["content-sha256"] = v.body_sha256(b"other")
    elif change == "signature":
        headers["signature"] = headers["signature"][:-4] + "AAA="
    elif change == "systemid":
        headers["systemid"] = "nobody"
    with pytest.raises(v.VerifyError) as info:
        _verify(headers, **kwargs)
    assert info.value.code in ("SIGNATURE", "AUTH")


def test_body_digest_mismatch():
    with pytest.raises(v.VerifyError):
        v.check_body_digest(v.body_sha256(b"a"), v.body_sha256(b"b"))


def test_skew_and_replay():
    import time

    old = _sign(now=time.time() - 400)
    with pytest.raises(v.VerifyError) as info:
        _verify(old)
    assert info.value.code == "SKEW"
    cache = v.NonceCache()
    headers = _sign()
    assert _verify(headers, nonces=cache) == "H16"
    with pytest.raises(v.VerifyError) as info:
        _verify(headers, nonces=cache)
    assert info.value.code == "REPLAY"
    # a forged request does not burn the nonce of a legitimate one
    fresh = _sign()
    forged = dict(fresh, signature="AAAA")
    with pytest.raises(v.VerifyError):
        _verify(forged, nonces=cache)
    assert _verify(fresh, nonces=cache) == "H16"


def test_missing_headers():
    with pytest.raises(v.VerifyError) as info:
        _verify({})
    assert info.value.code == "AUTH"


def test_answers():
    assert v.parse_answer(v.encode_answer(v.ok(DocId="7")), "sendEdoc")["DocId"] == "7"
    with pytest.raises(errors.AuthenticationError) as info:
        v.parse_answer(v.encode_answer(v.fail("SIGNATURE", "bad")), "sendEdoc")
    assert info.value.code == "SIGNATURE" and info.value.text == "bad"
    with pytest.raises(errors.ProtocolError):
        v.parse_answer(b"<html>", "x")
    item = v.ReceivedItem("5", "edoc", to="G22", from_="H16")
    assert v.ReceivedItem.from_json(item.to_json()) == item
    assert item.to_json()["from"] == "H16"


# --------------------------------------------------------------------------- clients over HTTP (stub servers)


class _Stub:
    """A tiny threaded HTTP server answering from a handler function, on 127.0.0.1."""

    def __init__(self, handle):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, headers, payload = handle(self.command, self.path, dict(self.headers), body)
                stub.seen.append((self.command, self.path, dict(self.headers), body))
                self.send_response(status)
                for k, val in headers.items():
                    self.send_header(k, val)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _any

            def log_message(self, *a):
                pass

        self.seen: list = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_soap_client_send_pending_fetch_ack():
    edoc = sample_edoc()
    stored = {}

    def handle(method, path, headers, body):
        op = headers["SOAPAction"]
        if op == "SendDocument":
            with multipart.parse(io.BytesIO(body), headers["Content-Type"]) as related:
                stored["req"] = w.send_document_to_edoc(w.parse_envelope(related.root_bytes()), related.parts)
                with stored["req"].edoc.attachments[0].data.open() as fh:
                    stored["bytes"] = fh.read()
            return 200, {"Content-Type": "text/xml"}, w.send_document_response(41)
        if op == "GetPendingDocumentIds":
            return 200, {"Content-Type": "text/xml"}, w.pending_ids_response([41])
        if op == "GetDocument":
            env, parts = w.edoc_to_get_document_response(edoc, database_form=True)
            boundary = multipart.new_boundary()
            return 200, {"Content-Type": multipart.content_type(boundary)}, b"".join(multipart.generate(env, parts, boundary))
        if op == "ConfirmReceived":
            return 200, {"Content-Type": "text/xml"}, w.report_response(op, w.HubReport())
        if op == "GetOrganizations":
            return 200, {"Content-Type": "text/xml"}, w.organizations_response([edoc.from_])
        if op == "CheckPermission":
            return 200, {"Content-Type": "text/xml"}, w.report_response(op, w.HubReport(False, []))
        return 200, {"Content-Type": "text/xml"}, w.empty_envelope()

    stub = _Stub(handle)
    try:
        with SoapHubAxis(stub.url + "/services/eDoc", "000.00.00.H16", "tok", timeout=5, retries=1, backoff=0.01) as hub:
            assert hub.send(edoc) == "41"
            assert stored["req"].edoc.subject == edoc.subject
            with edoc.attachments[0].data.open() as fh:
                assert stored["bytes"] == fh.read()
            assert [p.item_id for p in hub.pending()] == ["41"]
            out = io.BytesIO()
            info = hub.fetch("41", out)
            assert info.size == len(out.getvalue()) > 0
            from connector.edxml.parse import parse

            with parse(out.getvalue()) as parsed:
                assert parsed.message.subject == edoc.subject
            hub.acknowledge("41")
            assert hub.directory()[0].code == "000.00.00.H16"
            with pytest.raises(errors.AuthenticationError):
                hub.check_permission()
            before = len(stub.seen)
            with pytest.raises(errors.RetryableAxisError):
                hub.statuses_since(datetime.now(VN_TZ) - timedelta(days=1))  # empty Body, retried once
            assert len(stub.seen) - before == 2
            before = len(stub.seen)
            with pytest.raises(errors.RetryableAxisError):
                hub.statuses_since(None)  # destructive read: never retried
            assert len(stub.seen) - before == 1
    finally:
        stub.close()


def test_vxp_client_round_trip(tmp_path):
    from connector.edxml.build import to_bytes

    edoc = sample_edoc()
    edxml = to_bytes(edoc)
    nonces = v.NonceCache()

    def handle(method, path, headers, body):
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(path)
        try:
            v.verify_request(method, parts.path, parse_qsl(parts.query), headers, {"H16": SECRET}.get, nonces=nonces)
            v.check_body_digest(headers["content-sha256"], v.body_sha256(body))
        except v.VerifyError as exc:
            return 401, {"Content-Type": v.JSON_TYPE}, v.encode_answer(v.fail(exc.code, exc.desc))
        js = {"Content-Type": v.JSON_TYPE}
        if parts.path == "/vxp/sendEdoc":
            assert body == edxml and headers["to"] == "000.00.00.G22"
            return 200, js, v.encode_answer(v.ok(DocId="D1"))
        if parts.path == "/vxp/getReceivedEdocList":
            return 200, js, v.encode_answer(v.ok(data=[v.ReceivedItem("D1", "edoc", from_="G22").to_json()]))
        if parts.path == "/vxp/getEdoc":
            return 200, {"Content-Type": v.EDXML_TYPE, "content-sha256": v.body_sha256(edxml)}, edxml
        if parts.path == "/vxp/updateStatus":
            return 200, js, v.encode_answer(v.ok())
        if parts.path == "/vxp/getAgenciesList":
            return 200, js, v.encode_answer(v.ok(data=[v.AgencyRecord("G22", "VPCP").to_json()]))
        return 404, js, v.encode_answer(v.fail("NOT_FOUND", "no"))

    stub = _Stub(handle)
    try:
        path = tmp_path / "doc.edxml"
        path.write_bytes(edxml)
        with VxpAxis(stub.url, "H16", SECRET, timeout=5, retries=0) as axis:
            assert axis.send(edoc, edxml_path=path) == "D1"
            assert axis.pending()[0].item_id == "D1"
            out = io.BytesIO()
            assert axis.fetch("D1", out).sha256 == v.body_sha256(edxml)
            assert out.getvalue() == edxml
            axis.acknowledge("D1", ok=False, reason="hỏng")
            assert axis.directory()[0].code == "G22"
        with VxpAxis(stub.url, "H16", "wrong", timeout=5, retries=0) as bad:
            with pytest.raises(errors.AuthenticationError):
                bad.pending()
    finally:
        stub.close()
