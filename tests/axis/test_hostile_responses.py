"""The CLIENT side of both axis bindings against bad or hostile RESPONSES.

A real loopback HTTP server (:class:`connector.httpserver.WsgiServer`) answers every request
with one crafted response (proxy error pages, empty or truncated bodies, malformed or hostile
XML, broken multipart, wrong JSON shapes, redirects, oversized answers). Each case checks that
the client raises an :class:`AxisError` subclass of the right family (retryable vs permanent)
whose message names the operation and the problem, never leaks the credentials, and is never
an unclassified exception or a silent wrong result.
"""

from __future__ import annotations

import io
import json

import pytest

from connector.axis import multipart, soap_hub, soap_wire, vxp
from connector.axis.errors import AxisError, PermanentAxisError, RetryableAxisError
from connector.axis.soap_hub import SoapHubAxis
from connector.axis.vxp import VxpAxis
from connector.edxml.samples import sample_edoc
from connector.httpserver import WsgiServer

from .conftest import G22, H16

TOKEN = "TOKEN-s3cret-do-not-leak"
ENV_OPEN = f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{soap_wire.SOAP_NS}">'
HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


class FakePeer:
    """One canned HTTP response for every request; ``declared_length`` lies to simulate truncation."""

    def __init__(self):
        self.status = "200 OK"
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.declared_length: int | None = None
        self.requests = 0

    def respond(self, status: str, content_type: str | None, body: bytes, *, declared_length=None, headers=()):
        self.status, self.body, self.declared_length = status, body, declared_length
        self.headers = ([("Content-Type", content_type)] if content_type else []) + list(headers)

    def __call__(self, environ, start_response):
        self.requests += 1
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        size = self.declared_length if self.declared_length is not None else len(self.body)
        start_response(self.status, self.headers + [("Content-Length", str(size))])
        return [self.body]


@pytest.fixture
def peer():
    app = FakePeer()
    with WsgiServer(app) as server:
        app.url = server.url
        yield app


@pytest.fixture
def hub(peer, tmp_path):
    client = SoapHubAxis(f"{peer.url}/soap", H16, TOKEN, timeout=5, retries=0, spool_dir=tmp_path)
    yield client
    client.close()


@pytest.fixture
def vxp_peer(peer, tmp_path):
    client = VxpAxis(peer.url, H16, TOKEN, timeout=5, retries=0, spool_dir=tmp_path)
    yield client
    client.close()


def expect(family, call, operation: str, *words: str) -> AxisError:
    """``call`` raises an AxisError of ``family`` naming ``operation`` and ``words``, without the token."""
    with pytest.raises(AxisError) as info:
        call()
    exc = info.value
    assert isinstance(exc, family), f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, RetryableAxisError) != isinstance(exc, PermanentAxisError), f"unclassified: {exc!r}"
    text = str(exc)
    assert operation in text, text
    for word in words:
        assert word.lower() in text.lower(), text
    assert TOKEN not in text
    return exc


def envelope(body: str, header: str = "") -> bytes:
    return (ENV_OPEN + f"<soapenv:Header>{header}</soapenv:Header><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>").encode()


# =========================================================================== SOAP hub, plain answers


def test_hub_pins_a_good_answer_even_with_an_unusual_xml_content_type(peer, hub):
    peer.respond("200 OK", "application/soap+xml", soap_wire.pending_ids_response([7, 9]))
    assert [p.item_id for p in hub.pending()] == ["7", "9"]


@pytest.mark.parametrize(
    "status, ctype, body, words",
    [
        ("200 OK", "text/html", HTML, ("text/html",)),  # a proxy's page with 200
        ("502 Bad Gateway", "text/html", HTML, ("502",)),
        ("503 Service Unavailable", None, b"", ("503",)),
        ("200 OK", "text/xml; charset=UTF-8", b"", ("empty",)),
        ("500 Internal Server Error", "text/xml", b"<oops>internal error</oops>", ("500",)),
        ("500 Internal Server Error", "text/xml", b"<<<not xml", ("500",)),
    ],
    ids=["html-200", "html-502", "empty-503", "empty-200", "xml-500-not-soap", "garbage-500"],
)
def test_hub_transient_garbage_is_retryable(peer, hub, status, ctype, body, words):
    peer.respond(status, ctype, body)
    expect(RetryableAxisError, hub.pending, "GetPendingDocumentIds", *words)


def test_hub_truncated_plain_answer_is_retryable(peer, hub):
    full = soap_wire.pending_ids_response([1, 2, 3])
    peer.respond("200 OK", "text/xml", full[:60], declared_length=len(full))
    expect(RetryableAxisError, hub.pending, "GetPendingDocumentIds")


def test_hub_soap_fault_from_a_server_is_retryable_and_quoted(peer, hub):
    fault = "<soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>mediator exploded</faultstring></soapenv:Fault>"
    peer.respond("500 Internal Server Error", "text/xml", envelope(fault))
    expect(RetryableAxisError, hub.pending, "GetPendingDocumentIds", "mediator exploded")


def test_hub_soap_fault_blaming_the_client_is_permanent(peer, hub):
    fault = "<soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>bad request</faultstring></soapenv:Fault>"
    peer.respond("200 OK", "text/xml", envelope(fault))
    expect(PermanentAxisError, hub.pending, "GetPendingDocumentIds", "bad request")


@pytest.mark.parametrize(
    "body, words",
    [
        (ENV_OPEN.encode() + b"<soapenv:Body><edXML:Get", ("envelope",)),
        (b'<?xml version="1.0"?><html><body>hi</body></html>', ("Envelope",)),
        (
            envelope('<edXML:GetOrganizationsResponse xmlns:edXML="http://www.e-doc.vn/Schema/"/>'),
            ("GetPendingDocumentIdsResponse",),
        ),
        (
            envelope(
                '<edXML:GetPendingDocumentIdsResponse xmlns:edXML="http://www.e-doc.vn/Schema/"><edXML:DocumentIds>'
                "<edXML:DocumentId>12abc</edXML:DocumentId></edXML:DocumentIds></edXML:GetPendingDocumentIdsResponse>"
            ),
            ("DocumentId", "12abc"),
        ),
        (ENV_OPEN.encode() + b"<soapenv:Body>\xff\xfe\x00</soapenv:Body></soapenv:Envelope>", ("envelope",)),
        (b'{"status": "OK"}', ("envelope",)),
    ],
    ids=["malformed", "not-soap", "wrong-element", "non-integer-id", "bad-utf8", "json"],
)
def test_hub_well_delivered_nonsense_is_a_permanent_protocol_error(peer, hub, body, words):
    peer.respond("200 OK", "text/xml", body)
    expect(PermanentAxisError, hub.pending, "GetPendingDocumentIds", *words)


def test_hub_wrong_content_type_with_unreadable_body_is_refused(peer, hub):
    peer.respond("200 OK", "application/json", b'{"status": "OK"}')
    expect(PermanentAxisError, hub.pending, "GetPendingDocumentIds", "application/json")


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        '<!DOCTYPE x [<!ENTITY leak SYSTEM "file:///etc/hostname">]>',
        '<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">',
    ],
    ids=["entity-bomb", "external-entity", "external-dtd"],
)
def test_hub_doctype_and_entities_are_refused_not_resolved(peer, hub, doctype):
    body = (
        f'<?xml version="1.0"?>{doctype}<soapenv:Envelope xmlns:soapenv="{soap_wire.SOAP_NS}"><soapenv:Body>'
        '<edXML:GetOrganizationsResponse xmlns:edXML="http://www.e-doc.vn/Schema/"><edXML:Organizations><edXML:Organization>'
        "<edXML:OrganId>&b;&leak;</edXML:OrganId></edXML:Organization></edXML:Organizations>"
        "</edXML:GetOrganizationsResponse></soapenv:Body></soapenv:Envelope>"
    )
    peer.respond("200 OK", "text/xml", body.encode())
    expect(PermanentAxisError, hub.directory, "GetOrganizations", "DOCTYPE")


def test_hub_deeply_nested_answer_is_refused_by_the_envelope_limits(peer, hub):
    depth = 200
    peer.respond("200 OK", "text/xml", envelope("<a>" * depth + "</a>" * depth))
    expect(PermanentAxisError, hub.pending, "GetPendingDocumentIds", "envelope")


def test_hub_redirect_is_not_followed_and_is_permanent(peer, hub):
    peer.respond("302 Found", "text/html", HTML, headers=[("Location", "http://elsewhere.example/soap?token=x")])
    exc = expect(PermanentAxisError, hub.pending, "GetPendingDocumentIds", "302", "redirect", "elsewhere.example")
    assert "token=x" not in str(exc)
    assert peer.requests == 1


def test_hub_oversized_plain_answer_is_refused(peer, hub, monkeypatch):
    monkeypatch.setattr(soap_hub, "MAX_PLAIN_ANSWER", 1000)
    peer.respond("200 OK", "text/xml", soap_wire.pending_ids_response(range(1000)))
    expect(PermanentAxisError, hub.pending, "GetPendingDocumentIds", "larger than 1000")


def test_hub_empty_envelope_stays_retryable(peer, hub):
    peer.respond("200 OK", "text/xml", soap_wire.empty_envelope())
    expect(RetryableAxisError, hub.pending, "GetPendingDocumentIds", "empty SOAP Body")


def test_hub_send_document_without_an_id_is_permanent(peer, hub):
    peer.respond("200 OK", "text/xml", soap_wire._response("SendDocument", soap_wire.build_report(soap_wire.HubReport())))
    expect(PermanentAxisError, lambda: hub.send(sample_edoc(H16, G22, 1)), "SendDocument", "DocumentId")


# =========================================================================== SOAP hub, multipart (GetDocument)


def _get_document_body(boundary="MIMEBoundary_test", *, start="root", mutate=None):
    envelope_bytes, parts = soap_wire.edoc_to_get_document_response(sample_edoc(H16, G22, 5))
    body = b"".join(multipart.generate(envelope_bytes, parts, boundary, root_cid="root"))
    if mutate:
        body = mutate(body, parts)
    ctype = f'multipart/related; type="text/xml"; start="<{start}>"; boundary="{boundary}"'
    return ctype, body, parts


def test_hub_pins_a_good_get_document(peer, hub):
    ctype, body, _ = _get_document_body()
    peer.respond("200 OK", ctype, body)
    out = io.BytesIO()
    info = hub.fetch("5", out)
    assert info.size == len(out.getvalue()) > 0


def test_hub_multipart_without_boundary_is_permanent(peer, hub):
    _, body, _ = _get_document_body()
    peer.respond("200 OK", 'multipart/related; type="text/xml"; start="<root>"', body)
    expect(PermanentAxisError, lambda: hub.fetch("5", io.BytesIO()), "GetDocument", "boundary")


def test_hub_multipart_without_the_start_part_is_permanent(peer, hub):
    ctype, body, _ = _get_document_body(start="nowhere")
    peer.respond("200 OK", ctype, body)
    expect(PermanentAxisError, lambda: hub.fetch("5", io.BytesIO()), "GetDocument", "nowhere")


def test_hub_multipart_truncated_in_transfer_is_retryable(peer, hub):
    ctype, body, _ = _get_document_body()
    peer.respond("200 OK", ctype, body[: len(body) // 2], declared_length=len(body))
    expect(RetryableAxisError, lambda: hub.fetch("5", io.BytesIO()), "GetDocument")


def test_hub_multipart_cut_before_its_closing_boundary_is_retryable(peer, hub):
    ctype, body, _ = _get_document_body()
    peer.respond("200 OK", ctype, body[: len(body) - 60])  # Content-Length matches: the sender cut it
    expect(RetryableAxisError, lambda: hub.fetch("5", io.BytesIO()), "GetDocument", "closing boundary")


def test_hub_manifest_part_missing_or_content_id_mismatch_is_permanent(peer, hub):
    def rename(body, parts):
        cid = parts[0].content_id
        return body.replace(f"Content-ID: <{cid}>".encode(), b"Content-ID: <other-id>")

    ctype, body, parts = _get_document_body(mutate=rename)
    peer.respond("200 OK", ctype, body)
    exc = expect(PermanentAxisError, lambda: hub.fetch("5", io.BytesIO()), "GetDocument", parts[0].content_id)
    assert "part" in str(exc)


def test_hub_invalid_base64_part_is_permanent_and_names_the_part(peer, hub):
    def corrupt(body, parts):
        head = f"Content-ID: <{parts[0].content_id}>\r\n\r\n".encode()
        at = body.index(head) + len(head)
        return body[:at] + b"!!!!" + body[at + 4 :]

    ctype, body, parts = _get_document_body(mutate=corrupt)
    peer.respond("200 OK", ctype, body)
    expect(PermanentAxisError, lambda: hub.fetch("5", io.BytesIO()), "GetDocument", "base64", parts[0].content_id)


def test_hub_multipart_over_the_part_limit_is_refused(peer, tmp_path):
    ctype, body, _ = _get_document_body()
    peer.respond("200 OK", ctype, body)
    limits = multipart.MultipartLimits(max_part_size=512)
    with SoapHubAxis(f"{peer.url}/soap", H16, TOKEN, timeout=5, retries=0, spool_dir=tmp_path, multipart_limits=limits) as client:
        expect(PermanentAxisError, lambda: client.fetch("5", io.BytesIO()), "GetDocument", "512")


def test_hub_multipart_root_that_is_not_xml_is_permanent(peer, hub):
    boundary = "b0undary"
    body = f"--{boundary}\r\nContent-ID: <root>\r\nContent-Type: text/xml\r\n\r\nnot xml at all\r\n--{boundary}--\r\n"
    peer.respond("200 OK", f'multipart/related; start="<root>"; boundary="{boundary}"', body.encode())
    expect(PermanentAxisError, lambda: hub.fetch("5", io.BytesIO()), "GetDocument", "envelope")


def test_hub_get_document_without_message_header_is_permanent(peer, hub):
    peer.respond("200 OK", "text/xml", envelope('<edXML:Manifest xmlns:edXML="http://www.e-doc.vn/Schema/"/>'))
    expect(PermanentAxisError, lambda: hub.fetch("5", io.BytesIO()), "GetDocument", "MessageHeader")


# =========================================================================== VXP


def _json(answer) -> bytes:
    return json.dumps(answer).encode()


@pytest.mark.parametrize(
    "status, ctype, body, words",
    [
        ("200 OK", "text/html", HTML, ("text/html",)),
        ("502 Bad Gateway", "text/html", HTML, ("502",)),
        ("500 Internal Server Error", "application/json", b"<html>oops</html>", ("500",)),
        ("503 Service Unavailable", "application/json", b"", ("503",)),
    ],
    ids=["html-200", "html-502", "json-500-garbage", "json-503-empty"],
)
def test_vxp_transient_garbage_is_retryable(peer, vxp_peer, status, ctype, body, words):
    peer.respond(status, ctype, body)
    expect(RetryableAxisError, vxp_peer.pending, "getReceivedEdocList", *words)


@pytest.mark.parametrize(
    "body, words",
    [
        (b"not json", ("not JSON",)),
        (b"\xff\xfe{}", ("not JSON",)),
        (_json([1, 2]), ("status",)),
        (_json({"status": "OK", "data": "x"}), ("data",)),
        (_json({"status": "OK", "data": [1]}), ("data",)),
        (_json({"status": "OK", "data": [{"from": "x"}]}), ("docId",)),
        (_json({"status": "OK", "data": [{"docId": None}]}), ("docId",)),
        (_json({"status": "OK", "data": [{"docId": {"a": 1}}]}), ("docId",)),
        (_json({"status": "FAIL", "ErrorCode": "WHATEVER", "ErrorDesc": "no"}), ("WHATEVER",)),
        (b"[" * 200_000, ("not JSON",)),
    ],
    ids=[
        "text", "bad-utf8", "list", "data-string", "data-ints", "no-docid", "null-docid", "dict-docid", "fail-unknown",
        "deeply-nested",
    ],
)
def test_vxp_wrong_json_is_a_permanent_error(peer, vxp_peer, body, words):
    peer.respond("200 OK", "application/json", body)
    expect(PermanentAxisError, vxp_peer.pending, "getReceivedEdocList", *words)


def test_vxp_directory_record_without_code_is_permanent(peer, vxp_peer):
    peer.respond("200 OK", "application/json", _json({"status": "OK", "data": [{"name": "x"}]}))
    expect(PermanentAxisError, vxp_peer.directory, "getAgenciesList", "code")


def test_vxp_list_entries_with_odd_text_fields_are_read_and_the_odd_fields_named(peer, vxp_peer, caplog):
    entries = [
        {"docId": "1", "from": {"code": H16}, "to": [G22], "status": True, "created_time": 20261127},
        {"docId": 2, "from": H16, "to": None, "status": "new", "created_time": "2026-11-27T08:00:00"},
    ]
    peer.respond("200 OK", "application/json", _json({"status": "OK", "data": entries}))
    with caplog.at_level("WARNING", logger="connector.axis"):
        items = vxp_peer.pending()
    assert [(i.item_id, i.sender, i.created) for i in items] == [
        ("1", None, "20261127"),  # a number is written as text; an object is no sender
        ("2", H16, "2026-11-27T08:00:00"),
    ]
    assert items[0].extra == {"status": "", "to": ""} and items[1].extra == {"status": "new", "to": ""}
    warned = [r.getMessage() for r in caplog.records]
    assert any("data[0].from is dict" in m for m in warned), warned
    assert any("data[0].to is list" in m for m in warned), warned
    assert any("data[0].status is bool" in m for m in warned), warned
    assert not any("data[1]" in m for m in warned), warned  # null is simply empty


def test_vxp_directory_and_sent_lists_with_odd_text_fields_are_read(peer, vxp_peer):
    peer.respond("200 OK", "application/json", _json({"status": "OK", "data": [
        {"code": G22, "name": ["Văn phòng Chính phủ"], "pid": 0, "mail": None, "extra": {"level": 1}}]}))
    [agency] = vxp_peer.directory()
    assert (agency.code, agency.name, agency.parent, agency.email) == (G22, None, "0", None)
    peer.respond("200 OK", "application/json", _json({"status": "OK", "data": [
        {"docId": "9", "to": G22, "sendStatus": {"x": 1}, "receiveStatus": 1, "sendTime": None}]}))
    [sent] = vxp_peer.sent("9")
    assert (sent.to, sent.sendStatus, sent.receiveStatus, sent.sendTime) == (G22, "", "1", "")


def test_vxp_error_status_with_an_ok_json_is_not_a_success(peer, vxp_peer):
    peer.respond("404 Not Found", "application/json", _json({"status": "OK", "data": []}))
    expect(PermanentAxisError, vxp_peer.pending, "getReceivedEdocList", "404")


def test_vxp_send_with_a_malformed_doc_id_is_permanent(peer, vxp_peer):
    peer.respond("200 OK", "application/json", _json({"status": "OK", "DocId": {"id": 1}}))
    expect(PermanentAxisError, lambda: vxp_peer.send(sample_edoc(H16, G22, 2)), "sendEdoc", "DocId")


def test_vxp_redirect_is_permanent(peer, vxp_peer):
    peer.respond("307 Temporary Redirect", None, b"", headers=[("Location", "https://axis.example/vxp/x?sig=abc")])
    exc = expect(PermanentAxisError, vxp_peer.pending, "getReceivedEdocList", "307", "redirect", "axis.example")
    assert "sig=abc" not in str(exc)


def test_vxp_oversized_json_is_refused(peer, vxp_peer, monkeypatch):
    monkeypatch.setattr(vxp, "MAX_JSON_ANSWER", 100)
    peer.respond("200 OK", "application/json", _json({"status": "OK", "data": [{"docId": str(i)} for i in range(50)]}))
    expect(PermanentAxisError, vxp_peer.pending, "getReceivedEdocList", "larger than 100")


def test_vxp_truncated_json_is_retryable(peer, vxp_peer):
    body = _json({"status": "OK", "data": [{"docId": "1"}]})
    peer.respond("200 OK", "application/json", body[:10], declared_length=len(body))
    expect(RetryableAxisError, vxp_peer.pending, "getReceivedEdocList")


def test_vxp_get_edoc_html_page_is_retryable_and_writes_nothing(peer, vxp_peer):
    peer.respond("200 OK", "text/html", HTML)
    out = io.BytesIO()
    expect(RetryableAxisError, lambda: vxp_peer.fetch("1", out), "getEdoc", "text/html")
    assert out.getvalue() == b""


def test_vxp_get_edoc_truncated_is_retryable_and_a_retry_starts_clean(peer, tmp_path):
    body = b"<edXML>" + b"x" * 200_000 + b"</edXML>"
    peer.respond("200 OK", "application/xml", body[:100_000], declared_length=len(body))
    out = io.BytesIO()
    with VxpAxis(peer.url, H16, TOKEN, timeout=5, retries=1, backoff=0.001, spool_dir=tmp_path) as client:
        expect(RetryableAxisError, lambda: client.fetch("1", out), "getEdoc")
        assert peer.requests == 2  # retried once from the start
        assert len(out.getvalue()) <= 100_000  # never two partial copies appended
        peer.respond("200 OK", "application/xml", body)
        out2 = io.BytesIO()
        assert client.fetch("1", out2).size == len(body) and out2.getvalue() == body


def test_vxp_get_edoc_digest_mismatch_is_permanent(peer, vxp_peer):
    peer.respond("200 OK", "application/xml", b"<x/>", headers=[("content-sha256", "0" * 64)])
    expect(PermanentAxisError, lambda: vxp_peer.fetch("1", io.BytesIO()), "getEdoc", "content-sha256")
