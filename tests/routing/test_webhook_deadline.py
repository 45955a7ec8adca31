"""Webhook delivery against DMS stand-ins on loopback that misbehave slowly or answer 409:

- ``timeout_s`` is one deadline for the whole attempt (connect, send, answer), so a DMS that
  trickles its answer a byte at a time cannot hold a delivery for ever, over HTTP or HTTPS;
- 409 Conflict on a request carrying an ``Idempotency-Key`` is retried: the next attempt gets
  the DMS's stored 2xx instead of the document being dead-lettered.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time

import pytest

from connector.httpserver import WsgiServer
from connector.routing.delivery import DeliveryError

from tests.support.raw_http import read_request, unreachable_port

from .conftest import DmsStandIn, make_hook

TIMEOUT_S = 1.0
BOUND_S = 10 * TIMEOUT_S  # generous: without the deadline a trickle below lasts 30 s or more


class Trickler:
    """A DMS on loopback that reads each whole request, then sends ``answer``: its first
    ``fast`` bytes at once, the rest one byte every ``every`` seconds, until all is sent, the
    client hangs up or the test ends. Counts the connections and the answers sent in full."""

    def __init__(self, answer: bytes, *, fast: int = 0, every: float = 0.2,
                 tls: ssl.SSLContext | None = None):
        self.answer, self.fast, self.every, self.tls = answer, fast, every, tls
        self.connections = 0
        self.completed = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._listener.getsockname()[1]}/api"

    def __enter__(self) -> Trickler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the accept timeout: look at the stop flag again
                continue
            self.connections += 1
            try:
                conn.settimeout(5)
                if self.tls:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                with conn:
                    read_request(conn)
                    self._trickle(conn)
            except OSError:  # the client hung up (as it must, at its deadline)
                pass

    def _trickle(self, conn: socket.socket) -> None:
        conn.sendall(self.answer[: self.fast])
        for at in range(self.fast, len(self.answer)):
            if self._stop.wait(self.every):
                return
            conn.sendall(self.answer[at:at + 1])
        self.completed += 1


def _tls(pki, scheme: str) -> tuple[ssl.SSLContext | None, dict]:
    """The server context and the webhook settings for ``scheme``."""
    if scheme == "http":
        return None, {}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.tls_server.cert_path, pki.tls_server.key_path)
    return context, {"ca_bundle": pki.chain_path}


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_trickled_answer_is_cut_at_the_deadline(make_delivery, pki, scheme):
    """Even the status line trickles in: every byte comes well within timeout_s, so only an
    overall deadline ends the attempt. A TLS stream cut at the deadline is not a TLS failure."""
    answer = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 80
              + b"\r\nContent-Length: 2\r\n\r\n{}")
    context, settings = _tls(pki, scheme)
    with Trickler(answer, tls=context) as dms:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            make_hook(dms.url, retries=1, timeout_s=TIMEOUT_S, **settings).deliver(make_delivery())
        elapsed = time.monotonic() - started
    error = str(info.value)
    assert info.value.retryable, error
    assert "timed out: no complete answer within the deadline of 1 s" in error and "after 2 attempts" in error
    assert "TLS failure" not in error
    assert dms.connections == 2 and dms.completed == 0  # each attempt was cut before the answer was in
    assert elapsed < 2 * BOUND_S


def test_trickled_error_text_is_cut_at_the_deadline(make_delivery):
    """The status comes at once, the error page behind it trickles: the 503 decides (retryable),
    its text is what arrived before the deadline, and the error says it was cut off."""
    head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 150\r\n\r\n"
    with Trickler(head + b"busy " + b"." * 145, fast=len(head) + 5) as dms:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            make_hook(dms.url, retries=0, timeout_s=TIMEOUT_S).deliver(make_delivery())
        elapsed = time.monotonic() - started
    error = str(info.value)
    assert info.value.retryable, error
    assert "HTTP 503 Service Unavailable: busy" in error
    assert "(the answer was cut off at the deadline of 1 s)" in error
    assert dms.completed == 0 and elapsed < BOUND_S


def test_the_deadline_grows_with_the_item_so_a_large_upload_is_not_cut(make_delivery):
    """A large item gets ``timeout_s`` plus its size at MIN_SEND_RATE: with about 1 MB of
    attachments (random, so the ZIP packaging cannot shrink them) the deadline is some 10 s,
    not 1 s, and the message says which."""
    import os

    from connector.routing.webhook_delivery import MIN_SEND_RATE

    head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 150\r\n\r\n"
    delivery = make_delivery(attachments=[("big.pdf", os.urandom(1 << 20))])
    with Trickler(head + b"busy " + b"." * 145, fast=len(head) + 5) as dms:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            make_hook(dms.url, retries=0, timeout_s=TIMEOUT_S).deliver(delivery)
        elapsed = time.monotonic() - started
    error = str(info.value)
    said = re.search(r"\(the answer was cut off at the deadline of (\d+) s\)", error)
    assert said, error
    deadline = int(said.group(1))
    # the attachment twice (its part, and base64 inside the raw edXML) and the form around it
    assert TIMEOUT_S + 2 * (1 << 20) / MIN_SEND_RATE <= deadline <= TIMEOUT_S + 3 * (1 << 20) / MIN_SEND_RATE
    assert deadline - 1 <= elapsed < deadline + BOUND_S


def test_409_on_the_idempotency_key_is_retried_then_delivered(make_delivery):
    """The first attempt meets a DMS still processing the key (409); the next gets its 201."""
    dms = DmsStandIn(script=[409])
    sleeps: list[float] = []
    with WsgiServer(dms) as server:
        hook = make_hook(f"{server.url}/api", sleeps, retries=3, backoff_s=0.1)
        assert hook.deliver(make_delivery("axis-9:000.00.00.H16")) == f"{server.url}/dms/docs/77"
        hook.close()
    assert [r.headers["idempotency-key"] for r in dms.requests] == ["axis-9:000.00.00.H16"] * 2
    assert dms.requests[0].files == dms.requests[1].files and dms.requests[1].files  # the same item again
    assert len(sleeps) == 1


def test_409_that_never_clears_is_retryable_and_says_why(make_delivery):
    """Still 409 after every in-call retry: retryable (the engine's schedule bounds it), quoting
    the DMS and naming the Idempotency-Key."""
    dms = DmsStandIn(script=[409] * 3)
    with WsgiServer(dms) as server, pytest.raises(DeliveryError) as info:
        make_hook(f"{server.url}/api", retries=2).deliver(make_delivery())
    error = str(info.value)
    assert info.value.retryable
    assert "HTTP 409 Conflict" in error and '"detail": "Conflict"' in error and "Idempotency-Key" in error
    assert "after 3 attempts" in error and len(dms.requests) == 3


def test_connecting_to_a_dmss_host_that_is_down_is_given_up_after_timeout_s(make_delivery):
    """The deadline grows with the item, but each connect or read still waits timeout_s at
    most: a large item to a DMS whose host is down is not held for the whole deadline."""
    import os

    delivery = make_delivery(attachments=[("big.pdf", os.urandom(1 << 20))])  # deadline some 10 s
    with unreachable_port() as port:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            make_hook(f"http://127.0.0.1:{port}/api", retries=0, timeout_s=0.5).deliver(delivery)
        elapsed = time.monotonic() - started
    assert info.value.retryable
    assert elapsed < 5, f"connect waited {elapsed:.1f} s with timeout_s 0.5: {info.value}"
