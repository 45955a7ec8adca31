"""The national axis binding: :class:`VxpAxis` implements AxisTransport over VXP (HTTP + JSON).

The protocol as implemented is documented in :mod:`connector.axis.vxp_wire`. A send streams
the .edxml file as the request body after hashing it (the digest is signed in the headers);
getEdoc streams the answer to the caller's destination while hashing it and, when the server
sends ``content-sha256``, checks it. Safe reads (list, get, directory) are retried with
backoff; sendEdoc and updateStatus are sent once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import requests

from connector.edxml.build import build
from connector.edxml.model import Edoc, Message, Status

from . import vxp_wire as wire
from ._http import call_with_retries, new_session, raise_for_http, read_limited, request, retry_policy
from .errors import AxisError, NotFoundError, ProtocolError, RetryableAxisError, ValidationError
from .transport import Agency, FetchedInfo, Kind, PendingItem

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
        ctype = response.headers.get("Content-Type", "").lower()
        if "json" not in ctype:
            raise_for_http(response, operation)
            response.close()
            raise ProtocolError(f"expected a JSON answer, got {ctype or 'no Content-Type'}", operation=operation)
        body = read_limited(response, MAX_JSON_ANSWER, operation)
        if response.status_code >= 500 and not body.strip():
            raise RetryableAxisError(f"HTTP {response.status_code}", code=str(response.status_code), operation=operation)
        return wire.parse_answer(body, operation)

    def _call_json(self, operation: str, *, safe: bool, **kwargs) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            return self._json(self._request(operation, **kwargs), operation)

        return call_with_retries(self.policy, attempt, safe=safe)

    # ------------------------------------------------------------------ AxisTransport

    def send(self, message: Message, *, edxml_path: Path | None = None) -> str:
        """sendEdoc: messagetype ``edoc`` or ``status``; returns the axis's DocId. Never retried."""
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
        doc_id = answer.get("DocId")
        if not doc_id:
            raise ProtocolError("sendEdoc answered OK without a DocId", operation="sendEdoc")
        return str(doc_id)

    def pending(self, kind: Kind = "edoc") -> list[PendingItem]:
        answer = self._call_json("getReceivedEdocList", safe=True, query={"messagetype": kind})
        items = []
        for raw in answer.get("data") or []:
            entry = wire.ReceivedItem.from_json(raw)
            self._kinds[entry.docId] = kind
            items.append(
                PendingItem(entry.docId, kind, sender=entry.from_ or None, created=entry.created_time or None,
                            extra={"status": entry.status, "to": entry.to})
            )
        return items

    def fetch(self, item_id: str, dest: BinaryIO) -> FetchedInfo:
        """getEdoc, streamed into ``dest``. Retried only when nothing was written to ``dest`` yet."""
        written = [0]

        def attempt() -> FetchedInfo:
            if written[0]:
                raise AxisError("getEdoc broke after writing part of the document", operation="getEdoc")
            response = self._request("getEdoc", query={"docid": item_id})
            ctype = response.headers.get("Content-Type", "").lower()
            if "json" in ctype or response.status_code >= 400:
                self._json(response, "getEdoc")  # raises for FAIL / HTTP errors
                raise ProtocolError("getEdoc answered JSON OK instead of the document", operation="getEdoc")
            digest = hashlib.sha256()
            try:
                for chunk in response.iter_content(CHUNK):
                    digest.update(chunk)
                    dest.write(chunk)
                    written[0] += len(chunk)
            except requests.RequestException as exc:
                raise RetryableAxisError(f"connection broke during getEdoc: {exc}", operation="getEdoc") from None
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
        acknowledge them. ``when`` filters by the status's own Timestamp."""
        from connector.edxml.errors import EdxmlError
        from connector.edxml.parse import parse

        out: list[Status] = []
        for item in self.pending("status"):
            with tempfile.TemporaryFile(dir=self.spool_dir) as fh:
                self.fetch(item.item_id, fh)
                fh.seek(0)
                try:
                    with parse(fh, validate=False) as parsed:
                        message = parsed.message
                except EdxmlError:
                    continue
            if isinstance(message, Status) and (when is None or (message.timestamp and message.timestamp >= when)):
                out.append(message)
        return out

    def directory(self) -> list[Agency]:
        answer = self._call_json("getAgenciesList", safe=True)
        out = []
        for raw in answer.get("data") or []:
            record = wire.AgencyRecord.from_json(raw)
            out.append(Agency(code=record.code, name=record.name or None, parent=record.pid or None,
                              email=record.mail or None, telephone=record.mobile or None, fax=record.fax or None))
        return out

    def sent(self, doc_id: str | None = None) -> list[wire.SentItem]:
        """getSentEdocList: per-recipient send/receive state of what we sent."""
        answer = self._call_json("getSentEdocList", safe=True, query={"docid": doc_id} if doc_id else None)
        return [wire.SentItem.from_json(raw) for raw in answer.get("data") or []]

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "VxpAxis":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["VxpAxis", "NotFoundError"]
