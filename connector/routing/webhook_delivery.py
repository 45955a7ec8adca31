"""Webhook delivery: a multipart POST of each inbound item to the DMS's HTTP endpoint.

The request (``multipart/form-data``, with ``Content-Length``)::

    POST <url>
    Idempotency-Key: <delivery id>        the DMS de-duplicates on it
    X-Edoc-Kind: edoc | status
    Authorization: Bearer <token>  |  Basic ...   (auth = bearer | basic; tls: a client certificate)

    part "metadata"    application/json: document JSON + signature + axis_id + received_at
                       + "delivery": {id, destination, attachments: [{content_id, name, file}], raw_file}
    part "attachment"  one per attachment, in the order of delivery.attachments, filename = its safe name
    part "edxml"       the raw signed envelope (include_raw = true), filename message.edxml

Files are streamed from disk on every attempt. ``timeout_s`` (plus the body's size at
:data:`MIN_SEND_RATE`, so a large document is not cut off on a slow link) is the deadline of one
attempt as a whole (connecting, sending the body and reading the answer together), not a limit
per socket read: a DMS that trickles its answer a byte at a time is cut off when it passes (a
watchdog shuts the connection down) and the attempt is retryable, saying so. Answers: 2xx
delivered (the ``Location`` header, made absolute, if any, else the URL, is returned); 408,
409, 425, 429 and 5xx, a timeout or a refused
connection are retried ``retries`` times with exponential backoff and full jitter, then
raised as retryable; another 4xx (or a redirect, which is not followed) is permanent, with
the DMS's own answer quoted (as one line of text: an HTML error page loses its markup, and the
token or password sent is never repeated even if the DMS echoes it). A ``Retry-After`` of up to
10 s is waited in the call; a longer one ends the call at once (retryable, the wait quoted) and
leaves the wait to the engine's retry schedule rather than knocking again within seconds. An
attachment that cannot be read while it is sent is named (retryable), not taken for a network
failure. TLS failures are permanent too: retrying cannot fix a certificate.

409 Conflict is retryable, not permanent: the request carries an ``Idempotency-Key`` (the same
delivery id, with the same content, on every attempt), and a DMS that de-duplicates on it
answers 409 while a request with that key is still being processed (or, depending on the
DMS, for one it already took). Another attempt then gets the stored 2xx; giving up at once
would dead-letter a document the DMS may already have. The retries stay bounded: ``retries``
in the call, then the engine's retry schedule (``[retry] max_attempts / max_age_h``), after
which the item is dead with the DMS's own 409 text quoted, for a conflict that never clears.
"""

from __future__ import annotations

import base64
import html
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from connector.neterrors import short as _short
from connector.neterrors import tls_cause as _tls_cause
from connector.redact import redact_url
from connector.retry import RetryPolicy

from .config import SecretError, WebhookDestinationConfig, resolve_secret
from .delivery import Delivery, DeliveryError
from .formdata import FormBody, FormField, FormFile
from .naming import RAW_FILE, attachment_file_names, metadata_bytes

__all__ = ["WebhookDestination"]

RETRYABLE_STATUS = {408, 409, 425, 429}
MAX_INLINE_RETRY_AFTER_S = 10.0
#: The slowest upload an attempt's deadline allows for: the deadline is ``timeout_s`` plus the
#: body's size at this rate (2 Mbit/s), so a large document to a DMS over a slow link is not cut
#: off forever, while a DMS that trickles is still cut off in bounded time.
MIN_SEND_RATE = 256 * 1024
_ANSWER_LIMIT = 2000


class _TryAgain(Exception):
    """One attempt failed in a way another attempt may fix; the message says how.
    ``wait`` is the DMS's ``Retry-After`` (seconds), if it gave one."""

    def __init__(self, message: str, wait: float = 0.0):
        super().__init__(message)
        self.wait = wait


class _ReadFailed(Exception):
    """A file could not be read while the body was sent (not an OSError, so the HTTP
    client does not mistake it for a broken connection)."""


class _Body(FormBody):
    """The form body, with a read failure of a file reported as :class:`_ReadFailed`."""

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from super().__iter__()
        except OSError as exc:
            raise _ReadFailed(str(exc)) from None


def _reader(label: str, opener: Callable[[], object]) -> Callable[[], object]:
    """``opener`` with a failure to open or read the file reported as :class:`_ReadFailed` naming it."""

    class _Named:
        def __init__(self) -> None:
            try:
                self._fh = opener()
            except OSError as exc:
                raise _ReadFailed(f"cannot read {label}: {exc.strerror or exc}") from None

        def read(self, size: int = -1) -> bytes:
            try:
                return self._fh.read(size)  # type: ignore[attr-defined]
            except OSError as exc:
                raise _ReadFailed(f"cannot read {label}: {exc.strerror or exc}") from None

        def __enter__(self):
            return self

        def __exit__(self, *exc_info) -> None:
            self._fh.close()  # type: ignore[attr-defined]

    return _Named


class _Deadline:
    """The overall time limit of one attempt: when ``seconds`` have passed, a watchdog timer
    shuts down the connection the attempt uses (whatever it is blocked on: sending the body,
    waiting for the status line, reading a trickled answer), and
    :attr:`fired` says why the attempt then failed. The HTTP client's own timeouts only bound
    each socket operation, so a DMS sending a byte now and then would never meet them.

    Used as a context manager around one attempt, in the thread that makes it: connections
    opened or reused in that thread meanwhile register their socket with :func:`_watch`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.fired = False
        self._twin: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def left(self) -> float:
        """Seconds left (a little more than none once it has passed: the HTTP client refuses 0)."""
        return max(self.end - time.monotonic(), 0.001)

    def over(self) -> bool:
        """Whether the deadline has passed (the watchdog may be a moment late)."""
        return self.fired or time.monotonic() >= self.end

    def message(self) -> str:
        """The reason of an attempt the deadline ended."""
        return (f"timed out: no complete answer within the deadline of {_seconds(self.seconds)} s "
                "(timeout_s, plus the time the item takes to send at "
                f"{MIN_SEND_RATE // 1024} KiB/s, bounds connecting, sending and reading the answer together)")

    def watch(self, sock: socket.socket) -> None:
        """Cut ``sock``'s connection at the deadline (at once if it has passed). A duplicate of
        its descriptor is kept: shutting that down reaches the connection even after a TLS
        layer took the socket over, and never another socket that got a closed descriptor's
        number."""
        try:
            twin = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:  # already closed: nothing to cut
            return
        with self._lock:
            old, self._twin = self._twin, twin
            if self.fired:
                _cut(twin)
        if old is not None:
            old.close()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._twin is not None:
                _cut(self._twin)

    def __enter__(self) -> _Deadline:
        self._timer.start()  # first: a timer that cannot start leaves no deadline behind
        _attempt.deadline = self
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()
        _attempt.deadline = None
        with self._lock:
            twin, self._twin = self._twin, None
        if twin is not None:
            twin.close()


_attempt = threading.local()  # .deadline: the _Deadline of the attempt this thread is making


def _cut(sock: socket.socket) -> None:
    """Shut the connection down both ways: a read or write blocked on it returns at once."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # not connected any more
        pass


def _watch(sock: socket.socket | None) -> None:
    """Register ``sock`` with the deadline of the attempt this thread is making, if any."""
    deadline = getattr(_attempt, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _Watched:
    """Mixed into urllib3's connections: each socket is registered with the current attempt's
    deadline once connected, and again when a kept-alive connection is reused for a new
    request. (Connecting, TLS handshake included, is bounded as a whole by the connect timeout,
    the time left: CPython's ssl gives the handshake one deadline, not one per read.)"""

    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _watch(self.sock)

    def request(self, *args, **kwargs):
        _watch(self.sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTP(_Watched, HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections that :class:`_Deadline` can cut."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WebhookDestination:
    """POSTs each item to ``config.url``."""

    def __init__(
        self,
        name: str,
        config: WebhookDestinationConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = name
        self.config = config
        self._sleep = sleep
        self._policy = RetryPolicy.exponential(config.backoff_s, retries=config.retries)
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy or netrc from the environment: the URL is explicit
        for prefix in ("http://", "https://"):
            self._session.mount(prefix, _DeadlineAdapter())
        self._session.verify = str(config.ca_bundle) if config.ca_bundle else True

    def deliver(self, delivery: Delivery) -> str:
        headers = {
            "Idempotency-Key": delivery.delivery_id,
            "X-Edoc-Kind": delivery.kind,
            "Accept": "application/json, */*;q=0.5",
        }
        secrets: list[str] = []
        cert = self._credentials(headers, secrets)
        body = self._body(delivery)
        headers["Content-Type"] = body.content_type
        tries = 0
        asked = [0.0]  # the DMS's last Retry-After: no in-call wait is shorter

        def attempt() -> str:
            nonlocal tries
            tries += 1
            try:
                return self._post(body, headers, cert, secrets)
            except _TryAgain as exc:
                asked[0] = exc.wait
                raise

        try:
            return self._policy.run(attempt, retry_on=_TryAgain, sleep=lambda s: self._sleep(max(s, asked[0])))
        except _TryAgain as exc:
            raise self._error(
                f"{exc} (after {tries} attempt{'s' if tries != 1 else ''} to {self.config.url})", retryable=True
            ) from None

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------ internals

    def _post(self, body: FormBody, headers: dict[str, str], cert: tuple[str, str] | None,
              secrets: list[str]) -> str:
        """One POST within the ``timeout_s`` deadline: the delivered URL, or :class:`_TryAgain`
        for an answer worth retrying; a permanent failure is a non-retryable
        :class:`DeliveryError` at once."""
        with _Deadline(self.config.timeout_s + len(body) / MIN_SEND_RATE) as deadline:
            try:
                response = self._session.post(
                    self.config.url,
                    data=body,
                    headers=headers,
                    cert=cert,
                    # each connect or read waits timeout_s at most (a DMS that is down is given up
                    # on after timeout_s); the deadline bounds them together
                    timeout=min(self.config.timeout_s, deadline.left()),
                    allow_redirects=False,
                    stream=True,
                )
            except (requests.RequestException, OSError, _ReadFailed) as exc:
                if deadline.over() and not isinstance(exc, _ReadFailed):
                    # the watchdog cut the connection: whatever the client made of it (even a
                    # TLS error from a cut TLS stream), the cause is the deadline
                    raise _TryAgain(deadline.message()) from None
                raise self._failed_request(exc) from None
            with response:
                status = response.status_code
                if 200 <= status < 300:
                    location = response.headers.get("Location")
                    return urljoin(self.config.url, location) if location else self.config.url
                answer = _answer(response, secrets)
                if deadline.fired:
                    answer += f" (the answer was cut off at the deadline of {_seconds(deadline.seconds)} s)"
        if 300 <= status < 400:
            where = response.headers.get("Location", "?")
            raise self._error(f"HTTP {status} redirect to {where} (not followed; fix the url){answer}", retryable=False)
        if status >= 500 or status in RETRYABLE_STATUS:
            text = f"HTTP {status} {response.reason or ''}".rstrip() + answer
            if status == 409:
                text += " (the DMS may still be processing a request with this Idempotency-Key)"
            wait = _retry_after(response.headers.get("Retry-After"))
            if wait > MAX_INLINE_RETRY_AFTER_S:
                raise self._error(f"{text} (Retry-After {wait:g} s: left to the retry schedule)", retryable=True)
            raise _TryAgain(text, wait)
        raise self._error(
            f"the DMS refused the item: HTTP {status} {response.reason or ''}".rstrip() + answer, retryable=False
        )

    def _failed_request(self, exc: Exception) -> Exception:
        """What a POST that raised ``exc`` (before any answer, within the deadline) means: a
        retryable :class:`_TryAgain`, or a :class:`DeliveryError` (retryable or not)."""
        if isinstance(exc, _ReadFailed):
            return self._error(f"{exc} (while sending to {self.config.url})", retryable=True)
        if isinstance(exc, requests.exceptions.SSLError):
            return self._error(f"TLS failure talking to {self.config.url}: {_short(exc)}", retryable=False)
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            if _tls_cause(exc):
                return self._error(f"TLS failure talking to {self.config.url}: {_short(exc)}", retryable=False)
            return _TryAgain(f"{'timed out' if isinstance(exc, requests.Timeout) else 'cannot connect'}: {_short(exc)}")
        if isinstance(exc, requests.RequestException):  # the connection broke mid-answer, and the like
            return _TryAgain(f"HTTP exchange failed: {_short(exc)}")
        # an OSError: a file changed or vanished while it was being sent
        return self._error(f"cannot read a file to send: {exc}", retryable=True)

    def _error(self, message: str, *, retryable: bool) -> DeliveryError:
        """The error, with secret query parameters of the URL (``?api_key=...``) hidden
        wherever the URL or its query appears (the HTTP client quotes the query too)."""
        url = self.config.url
        shown = redact_url(url)
        if shown != url:
            message = message.replace(url, shown)
            query, shown_query = urlsplit(url).query, urlsplit(shown).query
            if query and query != shown_query:
                message = message.replace(query, shown_query)
        return DeliveryError(message, destination=self.name, retryable=retryable)

    def _credentials(self, headers: dict[str, str], secrets: list[str]) -> tuple[str, str] | None:
        """The client certificate, if any; a bearer token or basic credentials go into
        ``headers`` (and the secret forms into ``secrets``, never to be quoted back).
        Secrets are read now, at each delivery, so rotating one needs no reload."""
        c = self.config
        try:
            if c.auth == "bearer":
                token = resolve_secret(c.token_env, c.token_file, f"bearer token of destination {self.name!r}")
                headers["Authorization"] = f"Bearer {token}"
                secrets.append(token)
            if c.auth == "basic":
                password = resolve_secret(c.password_env, c.password_file, f"password of destination {self.name!r}")
                # RFC 7617 with charset UTF-8 (requests would encode as Latin-1, losing Vietnamese)
                pair = f"{c.username or ''}:{password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
                secrets.extend((password, headers["Authorization"][6:]))
        except SecretError as exc:
            raise self._error(str(exc), retryable=False) from None
        if c.auth == "tls":
            for path in (c.client_cert, c.client_key):
                if not path or not path.is_file():
                    raise self._error(f"client certificate file {path} does not exist", retryable=False)
            return str(c.client_cert), str(c.client_key)
        return None

    def _body(self, delivery: Delivery) -> FormBody:
        attachments = delivery.attachments
        names = attachment_file_names(attachments)
        parts: list[FormField | FormFile] = []
        for attachment in attachments:
            if attachment.data is None:
                raise self._error(f"attachment {attachment.name!r} has no content to send", retryable=False)
        extra = {
            "id": delivery.delivery_id,
            "destination": self.name,
            "attachments": [{"content_id": a.content_id, "name": a.name, "file": f} for a, f in zip(attachments, names)],
            "raw_file": RAW_FILE if self.config.include_raw else None,
        }
        parts.append(FormField("metadata", metadata_bytes(delivery, extra), "application/json; charset=utf-8"))
        for attachment, file_name in zip(attachments, names):
            data = attachment.data
            opener = _reader(f"attachment {attachment.name!r}", data.open)  # type: ignore[union-attr]
            parts.append(FormFile("attachment", file_name, data.size, opener, attachment.content_type))  # type: ignore[union-attr,arg-type]
        if self.config.include_raw:
            raw = delivery.raw_path
            try:
                size = raw.stat().st_size
            except OSError as exc:
                raise self._error(f"cannot read the raw message {raw}: {exc.strerror}", retryable=True) from None
            opener = _reader(f"the raw message {raw}", lambda: open(raw, "rb"))  # noqa: SIM115 - opened by FormBody in a with
            parts.append(FormFile("edxml", RAW_FILE, size, opener, "application/xml"))  # type: ignore[arg-type]
        return _Body(parts)


_HIDDEN_HTML = re.compile(r"<(head|script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _answer(response: requests.Response, secrets: Sequence[str] = ()) -> str:
    """The start of the DMS's answer, for the error text (``: <text>``), never more than 2000
    chars: one line (an HTML page reduced to its visible text), with ``secrets`` masked. What
    arrived is kept when the rest never comes (the deadline cut a trickled answer)."""
    data = _read_some(response, _ANSWER_LIMIT + 1)
    text = data[:_ANSWER_LIMIT].decode(response.encoding or "utf-8", "replace")
    if "html" in response.headers.get("Content-Type", "").lower() or text.lstrip()[:14].lower().startswith(
        ("<!doctype html", "<html")
    ):
        text = html.unescape(_TAG.sub(" ", _HIDDEN_HTML.sub(" ", text)))
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    if not text:
        return ""
    return f": {text}{'…' if len(data) > _ANSWER_LIMIT else ''}"


def _seconds(value: float) -> str:
    """A deadline in seconds as said in messages: ``1``, ``0.5``, ``230``."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _read_some(response: requests.Response, limit: int) -> bytes:
    """Up to ``limit`` bytes of the answer's body, decoded, read as they arrive (so a read cut
    off midway keeps what came before); empty if none can be read."""
    raw = response.raw
    if raw is None:
        return b""
    read = getattr(raw, "read1", None) or raw.read  # read1 (urllib3 2): what has arrived, not a full block
    data = bytearray()
    try:
        while len(data) < limit:
            block = read(limit - len(data), decode_content=True)
            if not block:
                break
            data += block
    except Exception:  # noqa: BLE001 - an unreadable answer is only missing detail
        pass
    return bytes(data)


def _retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date); 0 if none or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
