"""connector.httpserver: a client that goes quiet is cut off after the idle timeout instead of
holding a server thread for ever, and the server goes on serving others; one that trickles its
headers is cut off at the head timeout; connections beyond ``max_connections`` wait their turn;
errors the server answers itself are short JSON; ``Expect: 100-continue`` is honoured."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time

import pytest
import requests

from connector.httpserver import WsgiServer


def _echo_length(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = str(len(body)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]


def _silent_client(port: int, request: bytes) -> bytes:
    """Send ``request`` and wait (up to 30 s) for the server to answer or close; what it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(4096):  # a socket.timeout here means the server never let go
            received += chunk
        return received


def test_a_body_shorter_than_its_content_length_is_cut_off_at_the_idle_timeout():
    with WsgiServer(_echo_length, idle_timeout=0.5) as server:
        got = _silent_client(server.port, b"POST / HTTP/1.0\r\nContent-Length: 100\r\n\r\n0123456789")
        assert b"200 OK" not in got  # nothing is answered to a request that never arrived whole
        assert requests.post(server.url, data=b"x" * 10, timeout=10).text == "10"  # others still served


def test_headers_never_finished_are_cut_off_too():
    with WsgiServer(_echo_length, idle_timeout=0.5) as server:
        got = _silent_client(server.port, b"POST / HTTP/1.0\r\nContent-Len")
        assert b"200 OK" not in got
        assert requests.get(server.url, timeout=10).status_code == 200


# --------------------------------------------------------------------------- errors the server answers itself


def _answer(port: int, request: bytes, *, host: str = "127.0.0.1") -> tuple[bytes, dict[str, str], bytes]:
    """Send ``request`` on a fresh connection (then half-close); the status line, headers and body."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status.encode("latin-1"), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "error"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"HTTP/1.0 414 ",
         "the request line is longer than 65536 bytes"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"HTTP/1.0 431 ",
         "Line too long: got more than 65536 bytes when reading header line"),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
         b"HTTP/1.0 431 ", "Too many headers: got more than 100 headers"),
        (b"GET / HTTP/9.9\r\n\r\n", b"HTTP/1.0 505 ", "Invalid HTTP version (9.9)"),
        (b"GET / HTTQ/1.1\r\n\r\n", b"HTTP/1.0 400 ", "Bad request version ('HTTQ/1.1')"),
        (b"GET\r\n\r\n", b"HTTP/1.0 400 ", "Bad request syntax ('GET')"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\r\n\r\n", b"HTTP/1.0 400 ", "Bad request syntax"),  # TLS on plain HTTP
        (b"GET /\r\n\r\n", b"HTTP/1.0 505 ",
         "HTTP/0.9 requests are not served; send HTTP/1.0 or HTTP/1.1"),
    ],
    ids=["long-url", "long-header", "many-headers", "version-9.9", "not-http", "no-path", "tls-hello", "http-0.9"],
)
def test_malformed_requests_get_a_status_line_and_a_short_json_error(request_bytes, status, error):
    """The standard library answers these with an HTML page, and a request line without a valid
    version with no status line at all; the server answers like the apps do: JSON, one line."""
    with WsgiServer(_echo_length) as server:
        got_status, headers, body = _answer(server.port, request_bytes)
    assert got_status.startswith(status)  # the reason phrase is the standard library's
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert int(headers["content-length"]) == len(body) < 400
    assert json.loads(body)["error"].startswith(error)


def test_an_exception_in_the_app_is_a_json_500_and_a_log_record_not_a_traceback_to_the_client(caplog):
    def broken(environ, start_response):
        raise RuntimeError("bug in the app: token=abc")

    caplog.set_level(logging.ERROR, logger="connector.http")
    with WsgiServer(broken) as server:
        r = requests.get(f"{server.url}/documents/x", timeout=10)
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.json() == {"error": "internal error in the connector; the operator finds the detail in its log"}
    [record] = [rec for rec in caplog.records if rec.name == "connector.http"]
    assert record.getMessage() == "GET /documents/x failed in the app"
    assert record.exc_info[0] is RuntimeError


# --------------------------------------------------------------------------- Expect: 100-continue


def _reads_body(environ, start_response):
    if environ.get("HTTP_AUTHORIZATION") != "Bearer ok":  # refused before the body is read
        start_response("401 Unauthorized", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]
    return _echo_length(environ, start_response)


def test_expect_100_continue_is_answered_when_the_app_reads_the_body():
    """A client that waits for ``100 Continue`` before sending its body (curl does, for a
    second, then sends anyway) is told to go ahead as soon as the app reads the body."""
    with WsgiServer(_reads_body) as server, socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ok\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = sock.recv(1)  # a socket.timeout here: no 100 Continue came while we waited for it
            assert chunk, interim
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received.startswith(b"HTTP/1.0 200 OK\r\n") and received.endswith(b"\r\n\r\n5")


def test_no_100_continue_before_an_early_refusal_nor_to_an_http_1_0_client():
    with WsgiServer(_reads_body) as server:
        status, _, body = _answer(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                                               b"Expect: 100-continue\r\n\r\n")
        assert (status, body) == (b"HTTP/1.0 401 Unauthorized", b"{}")  # the body was never asked for
        status, _, body = _answer(server.port, b"POST / HTTP/1.0\r\nAuthorization: Bearer ok\r\nContent-Length: 5\r\n"
                                               b"Expect: 100-continue\r\n\r\nhello")
        assert (status, body) == (b"HTTP/1.0 200 OK", b"5")
        # The same request over HTTP/1.1 does get the interim answer first.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nAuthorization: Bearer ok\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
        assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n")


# --------------------------------------------------------------------------- bounded resources


def _wait_for(condition, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def test_at_most_max_connections_are_served_at_once_and_the_next_wait_their_turn():
    inside, release = [], threading.Event()

    def slow(environ, start_response):
        inside.append(environ["PATH_INFO"])
        release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    answers: dict[str, int] = {}

    def get(path: str) -> None:
        answers[path] = requests.get(f"{server.url}{path}", timeout=30).status_code

    with WsgiServer(slow, max_connections=2) as server:
        clients = [threading.Thread(target=get, args=(f"/{n}",)) for n in range(2)]
        for client in clients:
            client.start()
        _wait_for(lambda: len(inside) == 2, "two requests inside the app")
        third = threading.Thread(target=get, args=("/third",))
        third.start()
        clients.append(third)
        # Without a cap the third request reaches the app; with it, the accept loop holds it.
        _wait_for(lambda: len(inside) == 3 or server.httpd.waiting_for_slot, "the third connection to be held")
        assert sorted(inside) == ["/0", "/1"]
        release.set()
        for client in clients:
            client.join(30)
    assert answers == {"/0": 200, "/1": 200, "/third": 200}  # it was served once a slot was free


def test_a_client_trickling_its_headers_is_cut_off_at_the_head_timeout():
    """Each byte arrives well within the idle timeout, so only a deadline on the whole request
    head frees the connection (and its slot under ``max_connections``)."""
    with WsgiServer(_echo_length, idle_timeout=20, head_timeout=0.5) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        closed = False
        for _ in range(300):  # 30 s of trickling at most
            try:
                sock.sendall(b"X")
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable and sock.recv(4096) == b"":
                    closed = True
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            if closed:
                break
        assert closed, "the server kept a connection whose headers never ended"
        assert requests.get(server.url, timeout=10).status_code == 200


def test_an_ipv6_loopback_address_can_be_served():
    with WsgiServer(_echo_length, host="::1") as server:
        assert server.url == f"http://[::1]:{server.port}" and server.loopback_only
        assert requests.post(f"{server.url}/", data=b"abc", timeout=10).text == "3"


# --------------------------------------------------------------------------- early answers


def _refuses_unread(status: str):
    """An app that answers at once, reading none of the body (a 413 on the declared size, a
    503 on a full spool)."""

    def app(environ, start_response):
        body = json.dumps({"error": "refused before reading"}).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def _reads_some(environ, start_response):
    """Reads 64 KiB of the body, then answers 503 (a spool that filled up mid-upload)."""
    environ["wsgi.input"].read(65536)
    start_response("503 Service Unavailable", [("Content-Type", "application/json"), ("Retry-After", "30"),
                                               ("Content-Length", "2")])
    return [b"{}"]


def _post_whole_body(port: int, body_size: int, *, chunked: bool) -> bytes:
    """POST ``body_size`` bytes the way most clients do (the whole body first, then read the
    answer), on a raw socket that never half-closes; the answer. A reset while sending (the
    server closed with body bytes unread) raises ConnectionError: on Windows clients that reset
    also throws away the answer already received."""
    block = b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if chunked:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(body_size // len(block)):
                sock.sendall(b"%x\r\n" % len(block) + block + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % body_size)
            for _ in range(body_size // len(block)):
                sock.sendall(block)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("app, status", [(_refuses_unread("413 Content Too Large"), b"413"), (_reads_some, b"503")],
                         ids=["unread", "partly-read"])
def test_an_early_answer_reaches_a_client_still_sending_a_large_body(app, status, chunked):
    """The app answers before reading the whole body: the server reads and discards the rest,
    so a client sending it whole is never reset and reads the 413 or 503 afterwards."""
    with WsgiServer(app) as server:
        for _ in range(3):  # not a lucky race: every time
            answer = _post_whole_body(server.port, 32 << 20, chunked=chunked)
            assert answer.startswith(b"HTTP/1.0 " + status), answer[:100]
        assert requests.post(server.url, data=b"x" * (8 << 20), timeout=30).status_code == int(status)


def test_the_rest_of_a_body_is_read_for_linger_timeout_at_most():
    """A client that keeps a large body coming slower than the server will wait is cut off
    after ``linger_timeout``: draining cannot hold a connection for ever."""
    with WsgiServer(_refuses_unread("413 Content Too Large")) as server:
        server.httpd.linger_timeout = 0.5
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"POST / HTTP/1.0\r\nContent-Length: 100000000\r\n\r\n")
            started = time.monotonic()
            answer = b""
            try:
                while time.monotonic() - started < 20:
                    sock.sendall(b"x" * 1000)
                    time.sleep(0.01)
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        answer += chunk
            except OSError:  # reset once the server stopped reading: the end we wait for
                pass
            elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.0 413")
    assert elapsed < 15  # the server let go (after about 0.5 s), it did not read for ever


def test_a_body_never_asked_for_is_not_waited_for():
    """Expect: 100-continue, and the app refuses without reading: the client was never told to
    send the body, so the server does not wait for it before closing."""
    with WsgiServer(_refuses_unread("413 Content Too Large")) as server:
        server.httpd.linger_timeout = 20
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
            received = b""  # the connection stays open our side: only the server can end it
            while chunk := sock.recv(4096):
                received += chunk
        assert received.startswith(b"HTTP/1.0 413 Content Too Large")
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_trickling_its_body_is_let_go_after_linger_timeout(chunked):
    """One byte now and then, each well within linger_idle: the drain still ends once
    linger_timeout has passed (it reads what arrived, never waits to fill a block)."""
    with WsgiServer(_refuses_unread("401 Unauthorized")) as server:
        server.httpd.linger_timeout, server.httpd.linger_idle = 0.5, 1.0
        head = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000000\r\n" if chunked
                else b"POST / HTTP/1.0\r\nContent-Length: 100000000\r\n\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(head)
            started, closed, answer = time.monotonic(), False, b""
            while time.monotonic() - started < 8 and not closed:
                try:
                    sock.sendall(b"x")
                    time.sleep(0.2)
                    while select.select([sock], [], [], 0)[0]:
                        chunk = sock.recv(65536)
                        if not chunk:
                            closed = True
                            break
                        answer += chunk
                except OSError:  # reset: the server closed with our bytes unread, as it may now
                    closed = True
            elapsed = time.monotonic() - started
    assert closed, f"still draining after {elapsed:.1f} s (linger_timeout 0.5 s)"
    assert answer.startswith(b"HTTP/1.0 401")


def test_an_encrypted_tls_key_is_refused_with_a_reason_not_a_passphrase_prompt(tmp_path):
    """OpenSSL asks for the passphrase on the terminal when no callback is given: a daemon
    started by systemd or a test would hang there. The key is refused instead, by name."""
    import subprocess
    import sys
    from textwrap import dedent

    from pathlib import Path

    from cryptography.hazmat.primitives import serialization

    from connector.signing.devpki import create_dev_pki

    pki = create_dev_pki(tmp_path / "pki")
    key = serialization.load_pem_private_key(pki.tls_server.key_path.read_bytes(), None)
    encrypted = tmp_path / "server-encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"secret")))
    # In a child with a terminal-less stdin: a prompt would wait for input, the refusal returns at once.
    script = dedent(f"""
        from connector.httpserver import tls_context
        try:
            tls_context({str(pki.tls_server.cert_path)!r}, {str(encrypted)!r})
        except ValueError as exc:
            print("refused:", exc)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    assert run.stdout.strip() == (f"refused: the TLS key {encrypted} is encrypted (a passphrase is asked for): give an "
                                  "unencrypted key, readable only by the connector's user"), run.stdout + run.stderr
