"""Raw HTTP on a socket, for stand-in servers that must misbehave in ways a WSGI app cannot
(cut a transfer, trickle an answer): reading one whole request off a connection."""

from __future__ import annotations

import socket


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
