"""connector.httpserver: a client that goes quiet is cut off after the idle timeout instead of
holding a server thread for ever, and the server goes on serving others."""

from __future__ import annotations

import socket

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
