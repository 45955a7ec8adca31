"""The one HTTP server stack the project serves with: a threaded ``wsgiref`` server.

``wsgiref`` (stdlib) with :class:`socketserver.ThreadingMixIn`, one thread per connection,
HTTP/1.0 (one request per connection). The sandbox axis, the daemon's health and metrics
endpoint and the local intake API all run on it. Two things ``wsgiref`` lacks are added:

- request bodies sent with ``Transfer-Encoding: chunked`` (what ``requests`` does for a
  streamed body of unknown length) are de-chunked before the app reads them;
- the app can drop a connection without answering (fault injection) by raising
  :class:`DropConnection`: the socket is reset, nothing is written.

:class:`WsgiServer` starts an app on ``host:port`` (0: a free port) in a background thread,
or in the foreground with :meth:`WsgiServer.serve_forever`.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import sys
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

log = logging.getLogger("connector.http")


class DropConnection(Exception):
    """Raised by an app: the server closes the connection with no answer at all."""


class _ChunkedReader:
    """A file-like view that de-chunks an HTTP/1.1 chunked body (trailers are skipped)."""

    def __init__(self, raw, max_line: int = 4096):
        self.raw = raw
        self.left = 0
        self.done = False
        self.max_line = max_line

    def _next_chunk(self) -> None:
        line = self.raw.readline(self.max_line)
        if not line:
            raise ConnectionError("chunked body ends early")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers up to the empty line
                trailer = self.raw.readline(self.max_line)
                if not trailer or trailer in (b"\r\n", b"\n"):
                    break
            self.done = True
        self.left = size

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while not self.done and (size < 0 or len(out) < size):
            if self.left == 0:
                self._next_chunk()
                if self.done:
                    break
            want = self.left if size < 0 else min(self.left, size - len(out))
            data = self.raw.read(want)
            if not data:
                raise ConnectionError("chunked body ends early")
            out += data
            self.left -= len(data)
            if self.left == 0:
                self.raw.readline(self.max_line)  # CRLF after the chunk
        return bytes(out)

    def readline(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            c = self.read(1)
            if not c:
                break
            out += c
            if c == b"\n":
                break
        return bytes(out)


class _Handler(ServerHandler):
    dropped = False

    def handle_error(self):
        exc = sys.exc_info()[1]
        if isinstance(exc, DropConnection):
            self.dropped = True
            return
        if isinstance(exc, (TimeoutError, ConnectionError)):
            # The client went quiet past the idle timeout, or away: nobody to answer.
            log.info("connection from %s closed: %s", self.environ.get("REMOTE_ADDR", "?"), exc or type(exc).__name__)
            self.dropped = True
            return
        super().handle_error()


class _RequestHandler(WSGIRequestHandler):
    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            # The handshake runs here, in the connection's thread, not in the accept loop.
            self.request.settimeout(self.server.tls_handshake_timeout)
            self.request.do_handshake()
        # A client that stops sending (a body shorter than its Content-Length, headers never
        # finished) or stops reading is cut off after this long, not given a thread for ever.
        self.request.settimeout(self.server.idle_timeout)
        super().setup()

    def get_environ(self):
        environ = super().get_environ()
        if isinstance(self.request, ssl.SSLSocket):
            environ["HTTPS"] = "on"
            environ["wsgi.url_scheme"] = "https"
            peer = self.request.getpeercert()
            if peer:
                environ["SSL_CLIENT_VERIFY"] = "SUCCESS"
                environ["connector.client_cert"] = peer
        return environ

    def handle(self):
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        environ = self.get_environ()
        rfile = self.rfile
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            rfile = _ChunkedReader(self.rfile)
            environ.pop("CONTENT_LENGTH", None)
            environ["connector.chunked"] = True
        handler = _Handler(rfile, self.wfile, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())
        if handler.dropped:
            try:
                # RST instead of FIN: the client sees the connection reset, no answer.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64
    ssl_context: ssl.SSLContext | None = None
    tls_handshake_timeout = 10.0
    idle_timeout: float | None = 60.0  # seconds a connection may send or read nothing

    def get_request(self):
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):
            # A refused handshake (no client certificate, an untrusted CA) is the client's
            # problem: one log line, not a traceback.
            log.info("connection from %s refused: %s", client_address[0], exc)
            return
        super().handle_error(request, client_address)


def tls_context(cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> ssl.SSLContext:
    """A server context (TLS 1.2+) with ``cert``/``key``; with ``client_ca`` a client certificate
    issued under that CA bundle is REQUIRED (mutual TLS), without it none is asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class WsgiServer:
    """A WSGI app served on ``host:port`` (port 0: a free one), optionally over TLS. A
    connection that sends or reads nothing for ``idle_timeout`` seconds is closed."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None,
                 idle_timeout: float | None = 60.0):
        self.httpd = ThreadingWSGIServer((host, port), _RequestHandler)
        self.httpd.ssl_context = ssl_context
        self.httpd.idle_timeout = idle_timeout
        self.httpd.set_app(app)
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.httpd.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> "WsgiServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> "WsgiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
