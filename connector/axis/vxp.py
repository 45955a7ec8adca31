"""The national axis binding: :class:`VxpAxis` implements AxisTransport over VXP (HTTP + JSON).

The protocol as implemented is documented in :mod:`connector.axis.vxp_wire`. A send streams
the .edxml file as the request body after hashing it (the digest is signed in the headers);
getEdoc streams the answer to the caller's destination while hashing it and, when the server
sends ``content-sha256``, checks it. Safe reads (list, get, directory) are retried with
backoff; sendEdoc and updateStatus are sent once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import requests

from connector.edxml.build import build
from connector.edxml.model import Edoc, Message, Status
from connector.neterrors import short as _short

from . import vxp_wire as wire
from ._disk import saving_to, spooling
from ._http import call_with_retries, is_html, new_session, raise_for_http, read_limited, request, retry_policy
from .errors import AxisError, NotFoundError, ProtocolError, RetryableAxisError, ValidationError, http_error_class
from .transport import Agency, FetchedInfo, Kind, PendingItem

log = logging.getLogger("connector.axis")

MAX_JSON_ANSWER = 32 * 1024**2
CHUNK = 1 << 16


class VxpAxis:
    """A client of the national axis (or the sandbox) at ``base_url`` as system ``system_id``."""

    #: how the engine reads statuses: statuses are edXML items: pending('status') + fetch + acknowledge
    status_feed = "items"

    def __init__(
        self,
        base_url: str,
        system_id: str,
        secret: str,
        *,
        timeout: float | tuple[float, float] = (10.0, 120.0),
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        session: requests.Session | None = None,
        spool_dir: str | Path | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.system_id = system_id
        self.secret = secret
        self.timeout = timeout
        self.policy = retry_policy(retries, backoff)
        self.session = session or new_session(verify, cert)
        self.spool_dir = spool_dir
        self._kinds: dict[str, Kind] = {}

    # ------------------------------------------------------------------ plumbing

    def _request(
        self,
        operation: str,
        *,
        query: dict[str, str] | None = None,
        data: Any = None,
        content_sha256: str = wire.EMPTY_SHA256,
        extra: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> requests.Response:
        path = wire.PATHS[operation]
        method = wire.METHODS[operation]
        headers = wire.sign_request(
            method, path, system_id=self.system_id, secret=self.secret, query=query,
            content_sha256=content_sha256, extra=extra,
        )
        if content_type:
            headers["Content-Type"] = content_type
        response = request(
            self.session, method, self.base_url + path, operation=operation, timeout=self.timeout,
            params=query, data=data, headers=headers,
        )
        return response

    def _json(self, response: requests.Response, operation: str) -> dict[str, Any]:
        """The decoded OK answer; a FAIL answer, an HTTP error, a web page (a proxy's error page:
        retryable) or anything but a JSON object with ``status`` raises the matching AxisError."""
        ctype = response.headers.get("Content-Type", "").lower()
        if "json" not in ctype:
            raise_for_http(response, operation)
            response.close()
            if is_html(response):
                raise RetryableAxisError(
                    f"answered {ctype[:80]} instead of JSON (a proxy's or server's error page?)", operation=operation
                )
            raise ProtocolError(f"expected a JSON answer, got {ctype[:80] or 'no Content-Type'}", operation=operation)
        body = read_limited(response, MAX_JSON_ANSWER, operation)
        status = response.status_code
        if status < 400:
            return wire.parse_answer(body, operation)
        try:
            wire.parse_answer(body, operation)  # a FAIL answer raises its own class
        except ProtocolError as exc:
            detail = "empty body" if not body.strip() else exc.text
            raise http_error_class(status)(f"HTTP {status} ({detail})", code=str(status), operation=operation) from None
        raise http_error_class(status)(f"HTTP {status} with an OK answer", code=str(status), operation=operation)

    def _call_json(self, operation: str, *, safe: bool, **kwargs) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            return self._json(self._request(operation, **kwargs), operation)

        return call_with_retries(self.policy, attempt, safe=safe)

    # ------------------------------------------------------------------ AxisTransport

    def send(self, message: Message, *, edxml_path: Path | None = None) -> str:
        """sendEdoc: messagetype ``edoc`` or ``status``; returns the axis's DocId. Never retried.

        Without ``edxml_path`` the message is built into a temporary file under ``spool_dir``
        first; a full disk there is :class:`~connector.durable.DiskFull` naming the folder
        (nothing is sent, no temporary file is left)."""
        kind = "status" if isinstance(message, Status) else "edoc"
        if kind == "edoc" and not isinstance(message, Edoc):
            raise ValidationError(f"cannot send a {type(message).__name__}", operation="sendEdoc")
        if kind == "edoc":
            recipients = [o.organ_id for o in message.to if o.organ_id]  # type: ignore[union-attr]
        else:
            recipients = [r.organ_id for r in message.response_for if r.organ_id]  # type: ignore[union-attr]
        if not recipients:
            raise ValidationError("the message names no recipient", code="INVALID", operation="sendEdoc")
        extra = {
            wire.H_FROM: message.from_.organ_id or self.system_id,
            wire.H_TO: ",".join(dict.fromkeys(recipients)),
            wire.H_SERVICE: wire.SERVICE_TYPE,
            wire.H_MESSAGE: kind,
        }
        temp: str | None = None
        try:
            if edxml_path is None:
                with spooling(self.spool_dir):  # closing flushes: inside, so it names the folder too
                    fd, temp = tempfile.mkstemp(suffix=".edxml", dir=self.spool_dir)
                    with os.fdopen(fd, "wb") as fh:
                        build(message, fh)
                edxml_path = Path(temp)
            with open(edxml_path, "rb") as fh:
                digest = wire.body_sha256(fh)
            with open(edxml_path, "rb") as fh:
                response = self._request(
                    "sendEdoc", data=fh, content_sha256=digest, extra=extra, content_type=wire.EDXML_TYPE
                )
                answer = self._json(response, "sendEdoc")
        finally:
            if temp:
                os.unlink(temp)
        return _doc_id(answer.get("DocId"), "sendEdoc", "DocId")

    def pending(self, kind: Kind = "edoc") -> list[PendingItem]:
        answer = self._call_json("getReceivedEdocList", safe=True, query={"messagetype": kind})
        items = []
        for raw in _records(answer, "getReceivedEdocList", "docId", _RECEIVED_TEXTS):
            entry = wire.ReceivedItem.from_json(raw)
            self._kinds[entry.docId] = kind
            items.append(
                PendingItem(entry.docId, kind, sender=entry.from_ or None, created=entry.created_time or None,
                            extra={"status": entry.status, "to": entry.to})
            )
        return items

    def fetch(self, item_id: str, dest: BinaryIO) -> FetchedInfo:
        """getEdoc, streamed into ``dest``. A retry after a transfer broke part-way rewinds a
        seekable ``dest`` to where it started (and truncates it); a non-seekable one cannot be
        taken back, so the failure is raised (retryable) for the caller to restart.

        A full disk under ``dest`` is not the transfer's failure: it is raised at once (never
        retried), as :class:`~connector.durable.DiskFull` naming ``dest``'s file when it has
        one, else as the ``OSError`` itself for the caller, who knows where ``dest`` is.
        ``dest`` is flushed, so what is returned was written."""
        written = [0]
        start = dest.tell() if _seekable(dest) else None

        def attempt() -> FetchedInfo:
            if written[0]:
                if start is None:
                    raise RetryableAxisError(
                        "getEdoc broke after writing part of the document to a stream that cannot be "
                        "rewound; fetch again into an empty destination", operation="getEdoc"
                    )
                dest.seek(start)
                dest.truncate()
                written[0] = 0
            response = self._request("getEdoc", query={"docid": item_id})
            ctype = response.headers.get("Content-Type", "").lower()
            if "json" in ctype or response.status_code >= 400:
                self._json(response, "getEdoc")  # raises for FAIL / HTTP errors
                raise ProtocolError("getEdoc answered JSON OK instead of the document", operation="getEdoc")
            if is_html(response):
                response.close()
                raise RetryableAxisError(
                    f"answered {ctype[:80]} instead of the document (a proxy's or server's error page?)", operation="getEdoc"
                )
            digest = hashlib.sha256()
            try:
                with saving_to(dest):
                    for chunk in response.iter_content(CHUNK):
                        digest.update(chunk)
                        dest.write(chunk)
                        written[0] += len(chunk)
                    if hasattr(dest, "flush"):
                        dest.flush()
            except requests.RequestException as exc:
                raise RetryableAxisError(f"connection broke during getEdoc: {_short(exc)}", operation="getEdoc") from None
            finally:
                response.close()
            declared = response.headers.get(wire.H_CONTENT_SHA256)
            if declared and declared.lower() != digest.hexdigest():
                raise ProtocolError("getEdoc body does not match its content-sha256", operation="getEdoc")
            return FetchedInfo(item_id, written[0], digest.hexdigest(), self._kinds.get(item_id, "edoc"))

        return call_with_retries(self.policy, attempt, safe=True)

    def acknowledge(self, item_id: str, ok: bool = True, reason: str | None = None) -> None:
        """updateStatus(done|fail); the reason travels as JSON ``{"reason": ...}``. Not retried."""
        body = wire.encode_answer({"reason": reason}) if reason else b""
        self._call_json(
            "updateStatus",
            safe=False,
            query={"docid": item_id, "status": "done" if ok else "fail"},
            data=body or None,
            content_sha256=wire.body_sha256(body),
            content_type=wire.JSON_TYPE if body else None,
        )

    def statuses_since(self, when: datetime | None = None) -> list[Status]:
        """VXP delivers statuses as edXML files (``pending("status")`` + ``fetch``), not as a
        time query: this lists the unacknowledged status messages, parses them, and does NOT
        acknowledge them. ``when`` filters by the status's own Timestamp. An item that is not a
        readable edXML status is left out with a warning in the log (it stays pending). A full
        disk under ``spool_dir`` (where each is fetched to be read) is
        :class:`~connector.durable.DiskFull` naming the folder."""
        from connector.edxml.errors import EdxmlError
        from connector.edxml.parse import parse

        out: list[Status] = []
        for item in self.pending("status"):
            with spooling(self.spool_dir), tempfile.TemporaryFile(dir=self.spool_dir) as fh:
                self.fetch(item.item_id, fh)
                fh.seek(0)
                try:
                    with parse(fh, validate=False, spool_dir=self.spool_dir) as parsed:
                        message = parsed.message
                except EdxmlError as exc:  # one unreadable item must not hide the others; said, not dropped
                    log.warning("getEdoc %s: status message cannot be read, left out of statuses_since: %s",
                                item.item_id, "; ".join(str(p) for p in exc.problems[:3]))
                    continue
            if isinstance(message, Status) and (when is None or (message.timestamp and message.timestamp >= when)):
                out.append(message)
        return out

    def directory(self) -> list[Agency]:
        answer = self._call_json("getAgenciesList", safe=True)
        out = []
        for raw in _records(answer, "getAgenciesList", "code", _AGENCY_TEXTS):
            record = wire.AgencyRecord.from_json(raw)
            out.append(Agency(code=record.code, name=record.name or None, parent=record.pid or None,
                              email=record.mail or None, telephone=record.mobile or None, fax=record.fax or None))
        return out

    def sent(self, doc_id: str | None = None) -> list[wire.SentItem]:
        """getSentEdocList: per-recipient send/receive state of what we sent."""
        answer = self._call_json("getSentEdocList", safe=True, query={"docid": doc_id} if doc_id else None)
        return [wire.SentItem.from_json(raw) for raw in _records(answer, "getSentEdocList", "docId", _SENT_TEXTS)]

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "VxpAxis":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _seekable(dest: BinaryIO) -> bool:
    try:
        return bool(dest.seekable()) and dest.tell() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _doc_id(value: Any, operation: str, what: str) -> str:
    """A document id from a JSON answer: a non-empty string or an integer, as a string."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ProtocolError(f"{what} must be a non-empty string or integer, got {str(value)[:40]!r}", operation=operation)
    return str(value).strip()


def _records(answer: dict[str, Any], operation: str, key: str, texts: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``data`` of a list answer: a list of objects, each with an id field ``key``; the id is
    normalised to a string (so the record classes never see a wrong shape), and so are the
    text fields named in ``texts`` (see :func:`_text_fields`)."""
    data = answer.get("data")
    if data is None:
        return []
    if not isinstance(data, list):
        raise ProtocolError(f"'data' must be a list, got {type(data).__name__}", operation=operation)
    out = []
    for index, raw in enumerate(data):
        if not isinstance(raw, dict):
            raise ProtocolError(f"data[{index}] must be an object, got {type(raw).__name__}", operation=operation)
        item_id = _doc_id(raw.get(key), operation, f"data[{index}].{key}")
        fixed = _text_fields(raw, tuple(n for n in texts if n != key), operation, f"data[{index}]")
        out.append({**raw, **fixed, key: item_id})
    return out


def _text_fields(raw: dict[str, Any], names: tuple[str, ...], operation: str, where: str) -> dict[str, str]:
    """The text fields of one list entry as strings: a number is written as text, null is
    empty, and any other value (an object, a list, true/false) is dropped with a warning
    naming the field. These fields are advisory (the sender and time that count are those
    of the edXML itself), so one odd entry does not stop the list from being read."""
    fixed: dict[str, str] = {}
    for name in names:
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, str):
            continue
        if value is None:
            fixed[name] = ""
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            fixed[name] = str(value)
        else:
            log.warning("%s: %s.%s is %s, not text: ignored", operation, where, name, type(value).__name__)
            fixed[name] = ""
    return fixed


def _text_names(record: type) -> tuple[str, ...]:
    """The JSON names of a wire record's text fields (``from_`` is sent as ``from``)."""
    names = (f.name for f in dataclasses.fields(record) if f.type == "str")
    return tuple("from" if name == "from_" else name for name in names)


_RECEIVED_TEXTS = _text_names(wire.ReceivedItem)
_SENT_TEXTS = _text_names(wire.SentItem)
_AGENCY_TEXTS = _text_names(wire.AgencyRecord)


__all__ = ["VxpAxis", "NotFoundError"]
