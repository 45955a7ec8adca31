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

Files are streamed from disk on every attempt. Answers: 2xx delivered (the ``Location``
header, made absolute, if any, else the URL, is returned); 408, 425, 429 and 5xx, a timeout or a refused
connection are retried ``retries`` times with exponential backoff and full jitter, then
raised as retryable; another 4xx (or a redirect, which is not followed) is permanent, with
the DMS's own answer quoted (as one line of text: an HTML error page loses its markup, and the
token or password sent is never repeated even if the DMS echoes it). A ``Retry-After`` of up to
10 s is waited in the call; a longer one ends the call at once (retryable, the wait quoted) and
leaves the wait to the engine's retry schedule rather than knocking again within seconds. An
attachment that cannot be read while it is sent is named (retryable), not taken for a network
failure. TLS failures are permanent too: retrying cannot fix a certificate.
"""

from __future__ import annotations

import base64
import html
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import requests

from connector.neterrors import short as _short
from connector.neterrors import tls_cause as _tls_cause
from connector.redact import redact_url
from connector.retry import RetryPolicy

from .config import SecretError, WebhookDestinationConfig, resolve_secret
from .delivery import Delivery, DeliveryError
from .formdata import FormBody, FormField, FormFile
from .naming import RAW_FILE, attachment_file_names, metadata_bytes

__all__ = ["WebhookDestination"]

RETRYABLE_STATUS = {408, 425, 429}
MAX_INLINE_RETRY_AFTER_S = 10.0
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
        """One POST: the delivered URL, or :class:`_TryAgain` for an answer worth retrying;
        a permanent failure is a non-retryable :class:`DeliveryError` at once."""
        try:
            response = self._session.post(
                self.config.url,
                data=body,
                headers=headers,
                cert=cert,
                timeout=self.config.timeout_s,
                allow_redirects=False,
                stream=True,
            )
        except _ReadFailed as exc:
            raise self._error(f"{exc} (while sending to {self.config.url})", retryable=True) from None
        except requests.exceptions.SSLError as exc:
            raise self._error(f"TLS failure talking to {self.config.url}: {_short(exc)}", retryable=False) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            if _tls_cause(exc):
                raise self._error(f"TLS failure talking to {self.config.url}: {_short(exc)}", retryable=False) from None
            raise _TryAgain(
                f"{'timed out' if isinstance(exc, requests.Timeout) else 'cannot connect'}: {_short(exc)}"
            ) from None
        except requests.RequestException as exc:  # the connection broke mid-answer, and the like
            raise _TryAgain(f"HTTP exchange failed: {_short(exc)}") from None
        except OSError as exc:  # a file changed or vanished while it was being sent
            raise self._error(f"cannot read a file to send: {exc}", retryable=True) from None
        with response:
            status = response.status_code
            if 200 <= status < 300:
                location = response.headers.get("Location")
                return urljoin(self.config.url, location) if location else self.config.url
            answer = _answer(response, secrets)
        if 300 <= status < 400:
            where = response.headers.get("Location", "?")
            raise self._error(f"HTTP {status} redirect to {where} (not followed; fix the url){answer}", retryable=False)
        if status >= 500 or status in RETRYABLE_STATUS:
            text = f"HTTP {status} {response.reason or ''}".rstrip() + answer
            wait = _retry_after(response.headers.get("Retry-After"))
            if wait > MAX_INLINE_RETRY_AFTER_S:
                raise self._error(f"{text} (Retry-After {wait:g} s: left to the retry schedule)", retryable=True)
            raise _TryAgain(text, wait)
        raise self._error(
            f"the DMS refused the item: HTTP {status} {response.reason or ''}".rstrip() + answer, retryable=False
        )

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
    chars: one line (an HTML page reduced to its visible text), with ``secrets`` masked."""
    try:
        data = response.raw.read(_ANSWER_LIMIT + 1, decode_content=True) if response.raw else b""
    except Exception:  # noqa: BLE001 - an unreadable answer is only missing detail
        return ""
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
