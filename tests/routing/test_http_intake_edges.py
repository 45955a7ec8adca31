"""Hostile and malformed requests against the local HTTP intake API on a real WsgiServer.

Each request must get a precise JSON error with the right status (never a 500 or a traceback
for a client's mistake), leave nothing in the spool folder and queue nothing."""

from __future__ import annotations

import json
import logging
import socket

import pytest
import requests

from connector.httpserver import WsgiServer
from connector.routing.http_intake import intake_app

from .conftest import document_json
from .test_http_intake import AUTH, PDF, TOKEN, FakeEngine, _post

BOUNDARY = "xYzBoundary42"


@pytest.fixture
def api(tmp_path):
    engine = FakeEngine()
    spool = tmp_path / "spool"
    app = intake_app(engine.submit, engine.track, engine.report_status, TOKEN, spool_dir=spool,
                     max_body_bytes=200_000, max_file_bytes=50_000)
    with WsgiServer(app) as server:
        yield server, engine, spool


def _raw(server: WsgiServer, data: bytes, *, shut: bool = True) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as-is on a fresh connection; the status, headers and body of the answer."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while block := sock.recv(65536):
            received += block
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def _request(path: str, body: bytes, headers: dict[str, str], method: str = "POST") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


def _form(*parts: tuple[str, bytes]) -> bytes:
    """A form-data body from (Content-Disposition value, content) pairs."""
    out = b""
    for disposition, content in parts:
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def _metadata(document: dict | None = None) -> tuple[str, bytes]:
    return 'form-data; name="metadata"', json.dumps(document or document_json()).encode()


FORM_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _chunked(body: bytes, size: int = 1000) -> bytes:
    out = b""
    for at in range(0, len(body), size):
        block = body[at:at + size]
        out += f"{len(block):x}\r\n".encode() + block + b"\r\n"
    return out + b"0\r\n\r\n"


def _clean(engine: FakeEngine, spool) -> None:
    assert engine.submitted == [] and engine.reports == []
    assert list(spool.iterdir()) == []


# ------------------------------------------------------------------ authorization, routing


@pytest.mark.parametrize("value", ["", "Bearer", "Bearer ", f"bearer{TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
                                   f"Token {TOKEN}", "Bearer ünïcödé", f"Bearer {TOKEN} extra"])
def test_bad_authorization_is_401_and_never_logged(api, value, caplog):
    server, engine, spool = api
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": value} if value else {}
    status, got, body = _raw(server, _request("/documents", _form(_metadata()), {**headers, "Content-Length": "0"}))
    assert status == 401 and got["www-authenticate"].startswith("Bearer")
    assert json.loads(body) == {"error": "missing or wrong bearer token"}
    assert TOKEN not in caplog.text
    _clean(engine, spool)


def test_scheme_is_case_insensitive(api):
    server, _, _ = api
    r = requests.get(f"{server.url}/documents/trk-1", headers={"Authorization": f"BEARER   {TOKEN}"}, timeout=10)
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/documents/..%2F..%2Fetc%2Fpasswd", 404, "no document has the tracking id '../../etc/passwd'"),
        ("/documents/a%00b", 404, "no document has the tracking id 'a\\x00b'"),
        ("/documents/", 405, "method GET not allowed here; use POST"),
        ("/../../etc/passwd", 404, "no such resource '/../../etc/passwd'"),
    ],
)
def test_odd_paths_are_404_json(api, path, status, error):
    server, engine, spool = api
    got, headers, body = _raw(server, _request(path, b"", {"Authorization": f"Bearer {TOKEN}"}, method="GET"))
    assert got == status and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"].startswith(error)
    _clean(engine, spool)


@pytest.mark.parametrize(("method", "path", "allow"), [("GET", "/documents", "POST"), ("PUT", "/statuses", "POST"),
                                                       ("POST", "/documents/trk-1", "GET")])
def test_wrong_method_is_405_with_allow(api, method, path, allow):
    server, engine, spool = api
    r = requests.request(method, f"{server.url}{path}", headers=AUTH, timeout=10)
    assert (r.status_code, r.headers["Allow"]) == (405, allow)
    assert r.json()["error"] == f"method {method} not allowed here; use {allow}"
    _clean(engine, spool)


def test_huge_headers_are_refused(api):
    server, engine, spool = api
    status, _, _ = _raw(server, _request("/documents/trk-1", b"", {"Authorization": f"Bearer {TOKEN}",
                                                                    "X-Big": "a" * 70_000}, method="GET"))
    assert status == 431
    _clean(engine, spool)


# ------------------------------------------------------------------ lengths, chunking, disconnects


@pytest.mark.parametrize("length", ["-5", "1_0", "+10", "0x10", "ten"])
def test_malformed_content_length_is_400(api, length):
    server, engine, spool = api
    status, _, body = _raw(server, _request("/documents", b"x" * 10, {**FORM_HEADERS, "Content-Length": length}))
    assert status == 400
    assert json.loads(body) == {"error": f"Content-Length {length!r} is not a number"}
    _clean(engine, spool)


def test_missing_content_length_is_411(api):
    server, engine, spool = api
    status, _, body = _raw(server, _request("/documents", _form(_metadata()), FORM_HEADERS))
    assert status == 411 and "Content-Length" in json.loads(body)["error"]
    _clean(engine, spool)


def test_declared_oversize_is_413_before_reading(api):
    server, engine, spool = api
    # Only the headers are sent: the answer must come without waiting for the 10 MB body.
    status, _, body = _raw(server, _request("/documents", b"", {**FORM_HEADERS, "Content-Length": str(10 * 1024**2)}),
                           shut=False)
    assert status == 413 and json.loads(body)["error"] == "the body is 10485760 bytes, over the limit of 200000"
    _clean(engine, spool)


def test_content_length_shorter_than_the_body_is_400(api):
    server, engine, spool = api
    form = _form(_metadata(), ('form-data; name="file"; filename="cong-van.pdf"', PDF))
    status, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form) - 30)}))
    assert status == 400 and json.loads(body)["error"].startswith("cannot read the multipart body: body ends inside a part")
    _clean(engine, spool)


def test_client_gone_mid_upload_leaves_nothing(api):
    server, engine, spool = api
    form = _form(_metadata(), ('form-data; name="file"; filename="cong-van.pdf"', b"x" * 40_000))
    status, _, body = _raw(server, _request("/documents", form[:20_000], {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert status == 400 and "body ends inside a part" in json.loads(body)["error"]
    _clean(engine, spool)


def test_chunked_upload_over_the_limit_is_413(api):
    server, engine, spool = api
    form = _form(_metadata(), *[(f'form-data; name="f"; filename="f{i}.pdf"', b"x" * 40_000) for i in range(6)])
    status, _, body = _raw(server, _request("/documents", _chunked(form, 8192),
                                            {**FORM_HEADERS, "Transfer-Encoding": "chunked"}))
    assert status == 413 and json.loads(body)["error"] == "the body is over the limit of 200000 bytes"
    _clean(engine, spool)


@pytest.mark.parametrize(
    ("tail", "error"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", "the chunked body is malformed: a chunk size line is not a hexadecimal number"),
        (b"ffff\r\nabc", "the chunked body ends early (the client stopped sending)"),
    ],
)
def test_malformed_or_cut_chunked_body_is_400_not_500(api, tail, error, caplog):
    server, engine, spool = api
    form = _form(_metadata())
    data = _request("/documents", f"{len(form):x}\r\n".encode() + form + b"\r\n" + tail,
                    {**FORM_HEADERS, "Transfer-Encoding": "chunked"})
    status, _, body = _raw(server, data)
    assert (status, json.loads(body)) == (400, {"error": error})
    assert "Traceback" not in caplog.text
    _clean(engine, spool)


def test_cut_chunked_status_report_is_400(api):
    server, engine, spool = api
    data = _request("/statuses", b"40\r\n{\"document_id\"", {"Authorization": f"Bearer {TOKEN}",
                                                              "Content-Type": "application/json",
                                                              "Transfer-Encoding": "chunked"})
    status, _, body = _raw(server, data)
    assert (status, json.loads(body)) == (400, {"error": "the chunked body ends early (the client stopped sending)"})
    _clean(engine, spool)


def test_expect_100_continue_body_sent_anyway_is_read(api):
    """A client that sends the body without waiting for the ``100 Continue`` it asked for gets
    the interim ``100 Continue`` (sent when the API starts reading the body), then the answer."""
    server, engine, spool = api
    form = _form(_metadata(), ('form-data; name="file"; filename="cong-van.pdf"', PDF))
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(_request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form)),
                                                   "Expect": "100-continue"}))
        received = bytearray()
        while block := sock.recv(65536):
            received += block
    interim, _, final = bytes(received).partition(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue"
    head, _, body = final.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 202 ")
    assert json.loads(body) == {"tracking_id": "trk-1", "url": "/documents/trk-1"}
    assert len(engine.submitted) == 1 and list(spool.iterdir()) == []


# ------------------------------------------------------------------ multipart structure and file names


@pytest.mark.parametrize(
    ("content_type", "status", "error"),
    [
        ("application/json", 415, "expected Content-Type multipart/form-data with a boundary"),
        ("multipart/form-data", 415, "expected Content-Type multipart/form-data with a boundary"),
        ("multipart/form-data; boundary=" + "b" * 300, 400, "boundary longer than 200 characters"),
        ("multipart/form-data; boundary=other", 400, "no boundary found in the body"),
    ],
)
def test_content_type_problems(api, content_type, status, error):
    server, engine, spool = api
    form = _form(_metadata())
    got, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Type": content_type,
                                                              "Content-Length": str(len(form))}))
    assert got == status and error in json.loads(body)["error"]
    _clean(engine, spool)


def test_part_without_a_name_is_400_naming_the_part(api):
    server, engine, spool = api
    form = _form(_metadata(), ('form-data; filename="cong-van.pdf"', PDF))
    status, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert (status, json.loads(body)) == (400, {"error": "cannot read the multipart body: part 2 has no Content-Disposition name"})
    _clean(engine, spool)


@pytest.mark.parametrize(
    ("filename", "problem"),
    [
        ('="/etc/passwd"', "file part 2 '/etc/passwd': not a safe file name: it contains a path separator (/ or \\)"),
        ('="..\\..\\win.ini"', "file part 2 '..\\\\..\\\\win.ini': not a safe file name: it contains a path separator"),
        ("*=UTF-8''a%00b.pdf", "file part 2 'a\\x00b.pdf': not a safe file name: it contains control characters (U+0000)"),
        ("*=UTF-8''hoa-don%E2%80%AEfdp.exe", "file part 2 'hoa-don\\u202efdp.exe': not a safe file name: it contains "
                                            "bidirectional override characters"),
        ('=""', "file part 2 '': not a safe file name: it is empty"),
        ('=".."', "file part 2 '..': not a safe file name: it is the path component '.' or '..'"),
    ],
)
def test_unsafe_file_names_are_422_and_nothing_is_written_outside(api, tmp_path, filename, problem):
    server, engine, spool = api
    form = _form(_metadata(), (f'form-data; name="file"; filename{filename}', PDF))
    status, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert status == 422, body
    assert json.loads(body)["problems"][0].startswith(problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool"]
    _clean(engine, spool)


def test_same_name_differing_in_case_or_composition_is_422(api):
    server, engine, spool = api
    r = _post(server.url, document_json([]), [("Công văn.pdf", PDF), ("CÔNG VĂN.pdf".replace("Ô", "O\u0302"), PDF)])
    assert r.status_code == 422
    assert r.json()["problems"][0].endswith("two file parts have this name")
    _clean(engine, spool)


def test_file_named_like_the_rejected_part_placeholder_is_not_a_500(api):
    server, engine, spool = api
    form = _form(_metadata(), ('form-data; name="file"; filename=".rejected-part-3"', PDF),
                 ('form-data; name="file"; filename="../x.pdf"', PDF))
    status, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert status == 422, body
    assert json.loads(body)["problems"] == ["file part 3 '../x.pdf': not a safe file name: it contains a path separator (/ or \\)"]
    _clean(engine, spool)


def test_file_name_too_long_is_422(api):
    server, engine, spool = api
    name = "đ" * 200 + ".pdf"
    r = _post(server.url, document_json([]), [(name, PDF)])
    assert r.status_code == 422 and r.json()["problems"][0].startswith(f"file part 2 {name!r}: not a safe file name")
    _clean(engine, spool)


def test_empty_file_part_is_422(api):
    server, engine, spool = api
    r = _post(server.url, document_json(), [("cong-van.pdf", b"")])
    assert r.status_code == 422
    assert r.json()["problems"] == ["file 'cong-van.pdf': is empty (0 bytes); expected the attachment's content"]
    _clean(engine, spool)


def test_unexpected_form_fields_are_422_not_dropped(api):
    server, engine, spool = api
    form = _form(_metadata(), ('form-data; name="file"; filename="cong-van.pdf"', PDF),
                 ('form-data; name="note"', b"hello"))
    status, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert status == 422, body
    assert json.loads(body)["problems"] == [
        "field 'note': unexpected form field; send the document JSON as the field \"metadata\" and each "
        "file as a part with a filename"]
    _clean(engine, spool)


def test_metadata_sent_as_a_file_is_explained(api):
    server, engine, spool = api
    form = _form(('form-data; name="metadata"; filename="document.json"', json.dumps(document_json()).encode()),
                 ('form-data; name="file"; filename="cong-van.pdf"', PDF))
    status, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert status == 422
    assert json.loads(body)["problems"][0] == (
        'metadata: expected exactly one form field named "metadata" holding the document JSON, got 0 (part 1 named '
        "\"metadata\" is a file 'document.json'; send it as a plain field, without a filename)")
    _clean(engine, spool)


# ------------------------------------------------------------------ metadata content


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        (b"\xff\xfe{}", "metadata: not UTF-8 text (byte 0xff at offset 0); save the file as UTF-8"),
        (b"<xml/>", "metadata: not valid JSON at line 1, column 1: Expecting value"),
        (b"[" * 60_000 + b"]" * 60_000, "metadata: not valid document JSON: nested too deeply"),
        (b"[1, 2]", "metadata: expected a JSON object {...} at the top level, got an array"),
        (b"", "metadata: is empty; expected a JSON object"),
    ],
)
def test_bad_metadata_is_422(api, metadata, problem):
    server, engine, spool = api
    r = _post(server.url, None, [("cong-van.pdf", PDF)], raw_metadata=metadata)
    assert r.status_code == 422, r.text
    assert r.json()["problems"][0].startswith(problem)
    _clean(engine, spool)


def test_deep_but_parsable_metadata_is_422_not_500(api):
    server, engine, spool = api
    depth = 900
    metadata = json.dumps(document_json())[:-1].encode() + b', "extra": ' + b"[" * depth + b"]" * depth + b"}"
    r = _post(server.url, None, [("cong-van.pdf", PDF)], raw_metadata=metadata)
    assert r.status_code == 422, r.text
    _clean(engine, spool)


def test_status_body_not_json_is_422(api):
    server, engine, spool = api
    r = requests.post(f"{server.url}/statuses", data=b"\xc3\x28", headers=AUTH, timeout=10)
    assert r.status_code == 422
    assert r.json()["problems"] == ["body: not UTF-8 text (byte 0xc3 at offset 0); save the file as UTF-8"]
    _clean(engine, spool)


def test_spool_is_clean_after_accepted_requests(api):
    server, engine, spool = api
    for _ in range(3):
        assert _post(server.url, document_json(), [("cong-van.pdf", PDF)]).status_code == 202
    assert len(engine.submitted) == 3 and list(spool.iterdir()) == []


def test_form_fields_held_in_memory_are_bounded_together(tmp_path):
    """Fields without a filename are kept in memory: together they may not pass the metadata limit
    (16 MiB), however large the body limit is."""
    engine = FakeEngine()
    spool = tmp_path / "spool"
    app = intake_app(engine.submit, engine.track, engine.report_status, TOKEN, spool_dir=spool,
                     max_body_bytes=64 * 1024**2, max_file_bytes=50_000)
    big = b"x" * (9 * 1024**2)
    form = _form(_metadata(), ('form-data; name="note1"', big), ('form-data; name="note2"', big))
    with WsgiServer(app) as server:
        status, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert status == 413
    assert json.loads(body) == {"error": "cannot read the multipart body: the form fields (parts without a filename) are "
                                         "together over 16777216 bytes, at field 'note2' (part 3)"}
    _clean(engine, spool)


def test_non_ascii_token_is_compared_on_the_bytes_sent(tmp_path):
    """WSGI gives header values decoded as ISO-8859-1 (PEP 3333): the token's UTF-8 bytes must
    still match, and a near miss must not."""
    engine = FakeEngine()
    app = intake_app(engine.submit, engine.track, engine.report_status, "mật-khẩu-7f3a", spool_dir=tmp_path / "spool")
    with WsgiServer(app) as server:
        for token, expected in (("mật-khẩu-7f3a", 200), ("mật-khẩu-7f3b", 401), ("mat-khau-7f3a", 401)):
            data = b"GET /documents/trk-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n\r\n"
            assert _raw(server, data)[0] == expected, token


def test_part_headers_and_part_count_are_bounded(api):
    server, engine, spool = api
    form = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nX-Pad: {'a' * 20_000}\r\n\r\n{{}}\r\n" \
           f"--{BOUNDARY}--\r\n"
    status, _, body = _raw(server, _request("/documents", form.encode(), {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert (status, json.loads(body)) == (413, {"error": "cannot read the multipart body: part headers over 16384 bytes"})
    form = _form(*[(f'form-data; name="f{i}"', b"1") for i in range(1001)])
    status, _, body = _raw(server, _request("/documents", form, {**FORM_HEADERS, "Content-Length": str(len(form))}))
    assert (status, json.loads(body)) == (413, {"error": "cannot read the multipart body: more than 1000 parts"})
    _clean(engine, spool)
