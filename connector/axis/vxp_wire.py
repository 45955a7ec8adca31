"""The VXP protocol (national axis) as this project implements it; shared by client and sandbox.

There is no public specification of VXP; the VNPT SDK's behaviour (HTTP + JSON answers,
``systemid`` + timestamp + HMAC-SHA256 keyed by a shared secret) is the model. Our choices,
which the client (:mod:`connector.axis.vxp`) and the sandbox server both follow:

Endpoints (under a base URL, e.g. ``http://127.0.0.1:8080``; see :data:`PATHS`):

=========================  ======  ==========================================================
``/vxp/sendEdoc``          POST    body: the .edxml file, raw (``application/xml``), streamed.
                                   headers ``from``, ``to`` (comma-separated OrganIds),
                                   ``servicetype`` (``eDoc``), ``messagetype`` (``edoc`` or
                                   ``status``). Answer ``{"DocId": "..."}``.
``/vxp/getReceivedEdocList`` GET   query ``messagetype=edoc|status``. Answer ``{"data": [...]}``
                                   of :class:`ReceivedItem` dicts (not yet acknowledged).
``/vxp/getEdoc``           GET     query ``docid``. Answer: the raw .edxml (``application/xml``,
                                   header ``content-sha256``), or a JSON FAIL answer.
``/vxp/updateStatus``      POST    query ``docid``, ``status=processing|done|fail``; optional
                                   JSON body ``{"reason": "..."}``. Answer OK/FAIL.
``/vxp/getAgenciesList``   GET     Answer ``{"data": [...]}`` of :class:`AgencyRecord` dicts.
``/vxp/getSentEdocList``   GET     query ``docid`` (optional). Answer ``{"data": [...]}`` of
                                   :class:`SentItem` dicts, one per (document, recipient).
=========================  ======  ==========================================================

Every JSON answer has ``status`` (``"OK"``/``"FAIL"``), ``ErrorCode`` (``"0"`` on success,
else one of :data:`ERROR_CODES`) and ``ErrorDesc``.

Request authentication (every request): headers

- ``systemid``: the caller's system id (agency code);
- ``timestamp``: Unix time in whole seconds (decimal);
- ``nonce``: 16..64 random hex characters, never reused (replay protection);
- ``content-sha256``: lowercase hex SHA-256 of the request body (of ``b""`` when there is
  none). A streamed body is hashed from its file BEFORE sending, so the header is known up
  front; the server recomputes the digest while receiving and compares at the end;
- ``signature``: base64 (standard alphabet, padded) HMAC-SHA256, keyed by the UTF-8 shared
  secret, over the canonical string::

      METHOD \\n PATH \\n CANONICAL-QUERY \\n systemid \\n timestamp \\n nonce \\n
      content-sha256 \\n from \\n to \\n servicetype \\n messagetype

  (joined by ``\\n``, no trailing newline). METHOD is upper case, PATH the URL path as sent
  (percent-encoded form), CANONICAL-QUERY the query parameters sorted by name then value,
  each ``urlencode``-d (``quote_via=quote``, ``safe="-_.~"``) and joined by ``&``; absent
  ``from``/``to``/... headers count as empty strings.

The server accepts a timestamp within :data:`MAX_SKEW` seconds of its clock and refuses a
nonce it has seen within that window (:class:`NonceCache`), so a captured request cannot be
replayed. Signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, BinaryIO, Callable, Iterable, Mapping
from urllib.parse import quote, urlencode

from .errors import AxisError, ProtocolError, vxp_error_class

PREFIX = "/vxp"
PATHS: dict[str, str] = {
    name: f"{PREFIX}/{name}"
    for name in ("sendEdoc", "getReceivedEdocList", "getEdoc", "updateStatus", "getAgenciesList", "getSentEdocList")
}
METHODS: dict[str, str] = {
    "sendEdoc": "POST",
    "getReceivedEdocList": "GET",
    "getEdoc": "GET",
    "updateStatus": "POST",
    "getAgenciesList": "GET",
    "getSentEdocList": "GET",
}

H_SYSTEM = "systemid"
H_TIMESTAMP = "timestamp"
H_NONCE = "nonce"
H_CONTENT_SHA256 = "content-sha256"
H_SIGNATURE = "signature"
H_FROM = "from"
H_TO = "to"
H_SERVICE = "servicetype"
H_MESSAGE = "messagetype"
SIGNED_EXTRA = (H_FROM, H_TO, H_SERVICE, H_MESSAGE)

SERVICE_TYPE = "eDoc"
MESSAGE_TYPES = ("edoc", "status")
UPDATE_STATUSES = ("processing", "done", "fail")
MAX_SKEW = 300
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
JSON_TYPE = "application/json; charset=UTF-8"
EDXML_TYPE = "application/xml"

ERROR_CODES: dict[str, str] = {
    "0": "success",
    "AUTH": "unknown systemid or missing authentication headers",
    "SIGNATURE": "signature or body digest does not match",
    "SKEW": "timestamp outside the accepted window",
    "REPLAY": "nonce already used",
    "INVALID": "missing or malformed parameter or body",
    "TOO_LARGE": "body over the server's limit",
    "UNKNOWN_RECIPIENT": "a recipient is not registered on the axis",
    "NOT_FOUND": "no such document for this system",
    "DUPLICATE": "already received",
    "BUSY": "server busy, retry later",
    "INTERNAL": "server error, retry later",
}


# --------------------------------------------------------------------------- signing


def body_sha256(data: bytes | BinaryIO | Iterable[bytes], chunk: int = 1 << 16) -> str:
    """Hex SHA-256 of bytes, of a binary stream (read to its end), or of an iterable of chunks."""
    digest = hashlib.sha256()
    if isinstance(data, (bytes, bytearray, memoryview)):
        digest.update(data)
    elif hasattr(data, "read"):
        while block := data.read(chunk):  # type: ignore[union-attr]
            digest.update(block)
    else:
        for block in data:
            digest.update(block)
    return digest.hexdigest()


def canonical_query(params: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> str:
    """Query parameters in signing form: sorted pairs, RFC 3986 percent-encoding, ``&``-joined."""
    if not params:
        return ""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    pairs = sorted((str(k), str(v)) for k, v in pairs)
    return urlencode(pairs, quote_via=quote, safe="-_.~")


def canonical_string(method: str, path: str, query: str, headers: Mapping[str, str]) -> str:
    """The exact string that is HMAC'd (see the module docstring)."""
    h = _lower(headers)
    parts = [
        method.upper(),
        path,
        query,
        h.get(H_SYSTEM, ""),
        h.get(H_TIMESTAMP, ""),
        h.get(H_NONCE, ""),
        h.get(H_CONTENT_SHA256, ""),
        *(h.get(name, "") for name in SIGNED_EXTRA),
    ]
    return "\n".join(parts)


def compute_signature(secret: str | bytes, canonical: str) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def sign_request(
    method: str,
    path: str,
    *,
    system_id: str,
    secret: str | bytes,
    query: Mapping[str, str] | None = None,
    content_sha256: str = EMPTY_SHA256,
    extra: Mapping[str, str] | None = None,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers to send: ``extra`` (from/to/servicetype/messagetype) plus the auth headers.

    ``content_sha256`` must be the hex digest of the exact body that will be sent.
    """
    headers = {k.lower(): str(v) for k, v in (extra or {}).items()}
    headers.update(
        {
            H_SYSTEM: system_id,
            H_TIMESTAMP: str(int(time.time() if now is None else now)),
            H_NONCE: nonce or secrets.token_hex(16),
            H_CONTENT_SHA256: content_sha256.lower(),
        }
    )
    headers[H_SIGNATURE] = compute_signature(secret, canonical_string(method, path, canonical_query(query), headers))
    return headers


class VerifyError(Exception):
    """A request failed authentication; ``code`` is the VXP ErrorCode to answer with."""

    def __init__(self, code: str, desc: str):
        super().__init__(desc)
        self.code, self.desc = code, desc


class NonceCache:
    """Nonces seen within the skew window (thread-safe); old entries expire."""

    def __init__(self, window: int = MAX_SKEW):
        self.window = window
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def check_and_add(self, system_id: str, nonce: str, now: float) -> bool:
        """True when the nonce is fresh (and records it); False on a replay."""
        with self._lock:
            if len(self._seen) > 1000:
                horizon = now - 2 * self.window
                self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
            key = (system_id, nonce)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True


def verify_request(
    method: str,
    path: str,
    query: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    headers: Mapping[str, str],
    secret_for: Callable[[str], str | bytes | None],
    *,
    nonces: NonceCache | None = None,
    now: float | None = None,
    max_skew: int = MAX_SKEW,
) -> str:
    """Check a request's auth headers; returns the authenticated system id.

    Raises :class:`VerifyError` (``AUTH``, ``SIGNATURE``, ``SKEW``, ``REPLAY``). The body
    digest is only taken from the header here: the server must also compare it with the
    digest of the body it received (:func:`check_body_digest`) before acting on the body.
    The nonce is recorded only after the signature verified, so forged requests cannot
    burn a legitimate nonce.
    """
    h = _lower(headers)
    system_id = h.get(H_SYSTEM, "")
    signature = h.get(H_SIGNATURE, "")
    stamp = h.get(H_TIMESTAMP, "")
    nonce = h.get(H_NONCE, "")
    digest = h.get(H_CONTENT_SHA256, "")
    if not (system_id and signature and stamp and nonce and digest):
        raise VerifyError("AUTH", "missing systemid, timestamp, nonce, content-sha256 or signature header")
    secret = secret_for(system_id)
    if secret is None:
        raise VerifyError("AUTH", f"unknown systemid {system_id!r}")
    if not (16 <= len(nonce) <= 64) or any(c not in "0123456789abcdefABCDEF" for c in nonce):
        raise VerifyError("AUTH", "nonce must be 16..64 hex characters")
    try:
        sent_at = int(stamp)
    except ValueError:
        raise VerifyError("SKEW", f"timestamp {stamp[:40]!r} is not Unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > max_skew:
        raise VerifyError("SKEW", f"timestamp is {int(current - sent_at)} s off (window {max_skew} s)")
    expected = compute_signature(secret, canonical_string(method, path, canonical_query(query), h))
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise VerifyError("SIGNATURE", "signature does not match the request")
    if nonces is not None and not nonces.check_and_add(system_id, nonce, current):
        raise VerifyError("REPLAY", "nonce already used (replayed request)")
    return system_id


def check_body_digest(declared: str, actual: str) -> None:
    """Compare the header's digest with the received body's (constant time)."""
    if not hmac.compare_digest(declared.lower().encode("ascii", "replace"), actual.lower().encode("ascii")):
        raise VerifyError("SIGNATURE", "content-sha256 does not match the body received")


# --------------------------------------------------------------------------- answers


def ok(**fields_: Any) -> dict[str, Any]:
    """A success answer with extra fields (``DocId=...``, ``data=[...]``)."""
    return {"status": "OK", "ErrorCode": "0", "ErrorDesc": "", **fields_}


def fail(code: str, desc: str) -> dict[str, Any]:
    """A failure answer."""
    return {"status": "FAIL", "ErrorCode": code, "ErrorDesc": desc}


def encode_answer(answer: Mapping[str, Any]) -> bytes:
    return json.dumps(answer, ensure_ascii=False).encode("utf-8")


def parse_answer(body: bytes, operation: str) -> dict[str, Any]:
    """Decode a JSON answer; a FAIL becomes the matching :class:`AxisError` subclass."""
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: hostile nesting
        raise ProtocolError(f"answer is not JSON: {body[:80]!r}", operation=operation) from None
    if not isinstance(answer, dict) or "status" not in answer:
        raise ProtocolError("answer has no 'status'", operation=operation)
    if answer.get("status") != "OK":
        code = str(answer.get("ErrorCode") or "") or None
        desc = str(answer.get("ErrorDesc") or "the axis answered FAIL")
        raise vxp_error_class(code)(desc, code=code, operation=operation)
    return answer


def raise_for_answer(answer: Mapping[str, Any], operation: str) -> None:
    """Raise the :class:`AxisError` for a FAIL answer already decoded."""
    parse_answer(encode_answer(answer), operation)


# --------------------------------------------------------------------------- records


@dataclass
class _Record:
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]):
        names = {f.name for f in fields(cls)}
        kwargs = {k: data[k] for k in names if k in data}
        return cls(**kwargs)


@dataclass
class ReceivedItem(_Record):
    """An entry of ``getReceivedEdocList``: a document or status waiting for us."""

    docId: str
    messagetype: str = "edoc"
    to: str = ""
    status: str = "new"
    created_time: str = ""
    updated_time: str = ""
    from_: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["from"] = data.pop("from_")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ReceivedItem":
        item = super().from_json({k: v for k, v in data.items() if k != "from"})
        item.from_ = str(data.get("from", data.get("from_", "")) or "")
        item.docId = str(item.docId)
        return item


@dataclass
class SentItem(_Record):
    """An entry of ``getSentEdocList``: one recipient of a document we sent."""

    docId: str
    to: str = ""
    sendStatus: str = ""
    receiveStatus: str = ""
    sendTime: str = ""
    receiveTime: str = ""


@dataclass
class AgencyRecord(_Record):
    """An entry of ``getAgenciesList``."""

    code: str
    name: str = ""
    pid: str = ""
    mail: str = ""
    mobile: str = ""
    fax: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


__all__ = [
    "PATHS", "METHODS", "MAX_SKEW", "SERVICE_TYPE", "MESSAGE_TYPES", "UPDATE_STATUSES", "ERROR_CODES",
    "H_SYSTEM", "H_TIMESTAMP", "H_NONCE", "H_CONTENT_SHA256", "H_SIGNATURE", "H_FROM", "H_TO", "H_SERVICE",
    "H_MESSAGE", "EMPTY_SHA256", "JSON_TYPE", "EDXML_TYPE",
    "body_sha256", "canonical_query", "canonical_string", "compute_signature", "sign_request", "verify_request",
    "check_body_digest", "VerifyError", "NonceCache", "ok", "fail", "encode_answer", "parse_answer",
    "raise_for_answer", "ReceivedItem", "SentItem", "AgencyRecord", "AxisError",
]
