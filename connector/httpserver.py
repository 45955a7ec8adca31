"""The one HTTP server stack the project serves with: a threaded ``wsgiref`` server.

``wsgiref`` (stdlib) with :class:`socketserver.ThreadingMixIn`, one thread per connection,
HTTP/1.0 (one request per connection). The sandbox axis, the daemon's health and metrics
endpoint and the local intake API all run on it. What ``wsgiref`` lacks is added:

- request bodies sent with ``Transfer-Encoding: chunked`` (what ``requests`` does for a
  streamed body of unknown length) are de-chunked before the app reads them;
- ``Expect: 100-continue`` (curl, for a body over 1 MB) is answered ``100 Continue`` when the
  app starts reading the body, so the client does not wait a second first; an app that answers
  without reading (401, 413) gets its answer out before any body is sent;
- an app that answers before reading the whole body (413, 401, a 503 on a full disk) has the
  rest read and discarded for up to ``linger_timeout`` seconds while it keeps coming (unless
  the client was never told to send it), so a client that reads the answer only after sending everything gets it instead
  of a reset connection; a ``Content-Length`` body cannot be read past its end;
- the app can drop a connection without answering (fault injection) by raising
  :class:`DropConnection`: the socket is reset, nothing is written;
- every error the server answers itself (a malformed request line, an over-long URL or header,
  an exception in the app) is a short JSON ``{"error": ...}`` like the apps' own errors, never
  the standard library's HTML page or a bare traceback;
- resources are bounded: at most ``max_connections`` connections are served at once (the next
  ones wait in the listen backlog: no thread, no descriptor each), the request line and headers
  must arrive within ``head_timeout`` seconds, and a connection that sends or reads nothing for
  ``idle_timeout`` seconds is closed.

:class:`WsgiServer` starts an app on ``host:port`` (0: a free port) in a background thread,
or in the foreground with :meth:`WsgiServer.serve_forever`.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import socket
import ssl
import struct
import sys
import threading
import time
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


class _LengthReader:
    """The request body of a known ``Content-Length``: reads end at its last byte (an app
    cannot read into what follows), and :attr:`left` says how much of it was not read."""

    def __init__(self, raw, length: int):
        self.raw = raw
        self.left = length

    @property
    def done(self) -> bool:
        return self.left <= 0

    def read(self, size: int = -1) -> bytes:
        want = self.left if size is None or size < 0 else min(size, self.left)
        data = self.raw.read(want) if want > 0 else b""
        self.left -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        want = self.left if size is None or size < 0 else min(size, self.left)
        data = self.raw.readline(want) if want > 0 else b""
        self.left -= len(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


class _ContinueReader:
    """The request body's stream, sending ``100 Continue`` before its first read.

    The client asked (``Expect: 100-continue``) to be told before it sends the body; it is told
    only when the app actually reads the body, so an early refusal (401, 413) goes out first
    and the body is never sent (RFC 9110, section 10.1.1)."""

    def __init__(self, raw, send_continue):
        self.raw = raw
        self._send_continue = send_continue

    def _go_ahead(self) -> None:
        send, self._send_continue = self._send_continue, None
        if send is not None:
            send()

    def read(self, size: int = -1) -> bytes:
        if size != 0:
            self._go_ahead()
        return self.raw.read(size)

    def readline(self, size: int = -1) -> bytes:
        if size != 0:
            self._go_ahead()
        return self.raw.readline(size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        self._go_ahead()
        return self.raw.readlines(hint)

    def __iter__(self):
        self._go_ahead()
        return iter(self.raw)


class _TimedSocketIO(socket.SocketIO):
    """The connection's reads, under the idle timeout and, while the request line and headers
    are read, under the handler's ``head_deadline`` too: a client trickling a byte now and then
    (each one within the idle timeout) cannot hold a connection for ever before its request
    has even arrived."""

    def __init__(self, sock: socket.socket, handler: "_RequestHandler"):
        super().__init__(sock, "rb")
        self._handler = handler

    def readinto(self, b) -> int | None:
        server, deadline = self._handler.server, self._handler.head_deadline
        head_bound = False
        if deadline is not None:
            left = deadline - time.monotonic()
            head_bound = server.idle_timeout is None or left <= server.idle_timeout
            if left <= 0:
                raise TimeoutError(f"the request line and headers did not arrive within {server.head_timeout:g} s")
            self._sock.settimeout(left if head_bound else server.idle_timeout)
        try:
            return super().readinto(b)
        except TimeoutError:
            if head_bound:
                raise TimeoutError(f"the request line and headers did not arrive within {server.head_timeout:g} s") from None
            raise TimeoutError(f"nothing received for {server.idle_timeout:g} s") from None


def _content_length(environ: dict) -> int:
    """The request's Content-Length (0 when absent or not a number: no body is read then)."""
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def _json_error(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")


class _Handler(ServerHandler):
    dropped = False
    # An exception in the app (a bug): a one-line JSON answer like the apps' own errors; the
    # traceback goes to the log, never to the client.
    error_status = "500 Internal Server Error"
    error_body = _json_error("internal error in the connector; the operator finds the detail in its log")
    error_headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(error_body)))]

    def log_exception(self, exc_info) -> None:
        environ = self.environ or {}
        log.error("%s %s failed in the app", environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "?"),
                  exc_info=exc_info)

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
    _continue: _ContinueReader | None = None  # the body's stream when the client expects 100-continue
    head_deadline: float | None = None  # time.monotonic() by which the request line and headers must be in

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            # The handshake runs here, in the connection's thread, not in the accept loop.
            self.request.settimeout(self.server.tls_handshake_timeout)
            self.request.do_handshake()
        # A client that stops sending (a body shorter than its Content-Length, headers never
        # finished) or stops reading is cut off after this long, not given a thread for ever.
        self.request.settimeout(self.server.idle_timeout)
        super().setup()
        if self.server.head_timeout is not None:
            self.head_deadline = time.monotonic() + self.server.head_timeout
        self.rfile.close()  # the plain socket file from StreamRequestHandler, replaced by a timed one
        self.rfile = io.BufferedReader(_TimedSocketIO(self.connection, self))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer an error the server finds itself (the request line or headers cannot be
        read) with a short JSON body, like the apps' errors, instead of the standard library's
        HTML page; always with a status line, even to a request line that named no version."""
        phrase = self.responses.get(code, ("Error",))[0]
        if message and explain:
            text = f"{message}: {explain}"
        else:
            text = message or explain or phrase
        text = text if len(text) <= 300 else text[:300] + "..."
        self.log_error("code %d, message %s", code, text)
        if self.request_version in ("", "HTTP/0.9"):
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        body = _json_error(text)
        self.send_response(code, phrase)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

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
            self.send_error(414, explain="the request line is longer than 65536 bytes")
            return
        if not self.parse_request():
            return
        if self.request_version == "HTTP/0.9":  # "GET /path" alone: the answer would carry no status line
            self.send_error(505, explain="HTTP/0.9 requests are not served; send HTTP/1.0 or HTTP/1.1")
            return
        self.head_deadline = None  # the head is in: from here on only the idle timeout applies
        self.connection.settimeout(self.server.idle_timeout)
        environ = self.get_environ()
        rfile = self.rfile
        self._continue = None
        if self._expects_continue():
            rfile = self._continue = _ContinueReader(rfile, self._send_continue)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            rfile = body = _ChunkedReader(rfile)
            environ.pop("CONTENT_LENGTH", None)
            environ["connector.chunked"] = True
        else:
            rfile = body = _LengthReader(rfile, _content_length(environ))
        handler = self._wsgi_handler = _Handler(rfile, self.wfile, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())
        if handler.dropped:
            try:
                # RST instead of FIN: the client sees the connection reset, no answer.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close_connection = True
        elif not body.done and not self._continue_withheld():
            self._drain(body)

    def _drain(self, body) -> None:
        """Read and discard what the app left of the request body (it answered early: 413, 401,
        a 503 on a full disk), for up to ``linger_timeout`` seconds, while it keeps coming
        (a pause of ``linger_idle`` ends it). A client such as
        ``requests`` reads the answer only once it has sent the whole body; closing with body
        bytes unread would reset the connection, and the client would see "connection reset"
        instead of the answer."""
        until = time.monotonic() + self.server.linger_timeout
        # Raw bytes as they arrive (read1: one socket read at most), never a read that waits to
        # fill a block: a client trickling a byte now and then must not outlast linger_timeout.
        # A Content-Length body is read to its end; a chunked one until the client stops.
        left = body.left if isinstance(body, _LengthReader) else None
        try:
            while left is None or left > 0:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return
                self.connection.settimeout(min(remaining, self.server.linger_idle))
                data = self.rfile.read1(1 << 16 if left is None else min(1 << 16, left))
                if not data:
                    return
                if left is not None:
                    left -= len(data)
        except (OSError, ValueError):  # gone quiet, gone away: nothing more to wait for
            return

    def _continue_withheld(self) -> bool:
        """Whether the client was never told to send its body (``Expect: 100-continue`` and the
        app answered without reading): it will not send it, so there is nothing to drain."""
        return self._continue is not None and self._continue._send_continue is not None

    def _expects_continue(self) -> bool:
        # An HTTP/1.0 client cannot be sent a 1xx answer (RFC 9110, section 10.1.1).
        return (self.headers.get("Expect", "").strip().lower() == "100-continue"
                and self.request_version >= "HTTP/1.1")

    def _send_continue(self) -> None:
        if not self._wsgi_handler.headers_sent:  # an answer already on its way makes it moot
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per connection, at most ``max_connections`` at once."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64
    ssl_context: ssl.SSLContext | None = None
    tls_handshake_timeout = 10.0
    idle_timeout: float | None = 60.0  # seconds a connection may send or read nothing
    head_timeout: float | None = 30.0  # seconds for the request line and headers, in all
    max_connections = 100
    linger_timeout = 30.0  # seconds spent reading the rest of a body the app did not read
    linger_idle = 2.0  # ... and stopped when none of it arrives for this long (the client stopped sending)

    def __init__(self, server_address, handler_class, bind_and_activate: bool = True):
        host = server_address[0]
        if ":" in host:  # an IPv6 literal such as "::1"
            self.address_family = socket.AF_INET6
        super().__init__(server_address, handler_class, bind_and_activate)
        self._slots: threading.BoundedSemaphore | None = None
        self._closing = threading.Event()
        self.waiting_for_slot = False  # the accept loop holds a connection until one ends
        self._full_logged_at = -60.0

    def process_request(self, request, client_address):
        """Serve ``request`` in a thread of its own once fewer than ``max_connections`` are being
        served. Until then the accept loop waits, so the next clients wait in the listen backlog
        (the kernel's, bounded) instead of each getting a thread and a descriptor: a flood of
        connections, or slow clients holding theirs, cannot exhaust threads or descriptors."""
        if self._slots is None:
            self._slots = threading.BoundedSemaphore(self.max_connections)
        if not self._slots.acquire(blocking=False):
            now = time.monotonic()
            if now - self._full_logged_at >= 60:  # once a minute at most, however many wait
                self._full_logged_at = now
                log.warning("%s:%s: %d connections are being served (the limit); new connections wait until one "
                            "ends", *self.server_address[:2], self.max_connections)
            self.waiting_for_slot = True
            try:
                while not self._slots.acquire(timeout=0.1):
                    if self._closing.is_set():
                        self.shutdown_request(request)
                        return
            finally:
                self.waiting_for_slot = False
        try:
            thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                      name=f"http-{self.server_address[1]}", daemon=True)
            thread.start()
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def shutdown(self) -> None:
        self._closing.set()  # an accept loop waiting for a free slot gives up
        super().shutdown()

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
            log.info("connection from %s closed: %s", client_address[0], exc or type(exc).__name__)
            return
        super().handle_error(request, client_address)


def tls_context(cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> ssl.SSLContext:
    """A server context (TLS 1.2+) with ``cert``/``key``; with ``client_ca`` a client certificate
    issued under that CA bundle is REQUIRED (mutual TLS), without it none is asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key), password=_no_passphrase(key))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _no_passphrase(key: str | Path):
    """The ``password`` callback for a key that must not be encrypted: without one, OpenSSL
    would ask for the passphrase on the terminal (a daemon would hang, or fail obscurely)."""

    def refuse() -> str:
        raise ValueError(f"the TLS key {key} is encrypted (a passphrase is asked for): give an unencrypted key, "
                         "readable only by the connector's user")

    return refuse


class WsgiServer:
    """A WSGI app served on ``host:port`` (port 0: a free one; an IPv6 literal such as ``::1``
    works too), optionally over TLS. A connection that sends or reads nothing for
    ``idle_timeout`` seconds, or has not sent its request line and headers within
    ``head_timeout`` seconds, is closed; at most ``max_connections`` are served at once."""

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None,
                 idle_timeout: float | None = 60.0, head_timeout: float | None = 30.0, max_connections: int = 100):
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.httpd = ThreadingWSGIServer((host, port), _RequestHandler)
        self.httpd.ssl_context = ssl_context
        self.httpd.idle_timeout = idle_timeout
        self.httpd.head_timeout = head_timeout
        self.httpd.max_connections = max_connections
        self.httpd.set_app(app)
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.httpd.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def loopback_only(self) -> bool:
        """True when the bound address is a loopback one (reachable from this machine only)."""
        try:
            return ipaddress.ip_address(self.httpd.server_address[0]).is_loopback
        except ValueError:
            return False

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
