"""Raw sockets for stand-ins that must misbehave in ways a WSGI app cannot: reading one whole
request off a connection (to cut a transfer or trickle an answer), and a port that behaves like
a host that is down."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def read_request(conn: socket.socket) -> bytes:
    """One HTTP request with a Content-Length body (none without one), as received: head,
    blank line and body. ConnectionError when the client closes before it is complete."""
    data = b""
    while b"\r\n\r\n" not in data:
        block = conn.recv(65536)
        if not block:
            raise ConnectionError("the client closed before sending its request")
        data += block
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.split(b":", 1)[0].strip().lower() == b"content-length"), 0)
    while len(body) < length:
        block = conn.recv(65536)
        if not block:
            raise ConnectionError("the client closed inside its request")
        body += block
    return head + b"\r\n\r\n" + body


@contextmanager
def unreachable_port() -> Iterator[int]:
    """A loopback port that behaves like a host that is down: its listen queue is full, so
    further connection attempts get no answer at all (they time out, never "refused")."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        try:
            for s in fillers:
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for s in fillers:
                s.close()
