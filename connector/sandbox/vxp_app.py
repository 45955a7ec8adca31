"""The national axis's VXP binding, server side, on :mod:`connector.axis.vxp_wire`.

Every request is authenticated by :func:`vxp_wire.verify_request` (systemid, timestamp,
nonce, body digest, HMAC over the canonical string, replay cache); a body is streamed to
disk while its SHA-256 is computed, and compared with the signed ``content-sha256`` before
anything is acted on. Answers are the wire's JSON (``status``/``ErrorCode``/``ErrorDesc``),
with an HTTP status that matches the error class (401 auth, 404 not found, 409 duplicate,
400 invalid, 503 busy, 500 internal), except ``getEdoc``'s success: the raw .edxml file.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from connector.axis import vxp_wire as wire
from connector.edxml.errors import EdxmlError
from connector.edxml.model import VN_TZ, Edoc, Status
from connector.edxml.parse import parse

from .store import iter_file

if TYPE_CHECKING:
    from .app import Core, Request, Response

log = logging.getLogger("connector.sandbox")

_HTTP = {
    "AUTH": "401 Unauthorized",
    "SIGNATURE": "401 Unauthorized",
    "SKEW": "401 Unauthorized",
    "REPLAY": "401 Unauthorized",
    "INVALID": "400 Bad Request",
    "TOO_LARGE": "413 Payload Too Large",
    "UNKNOWN_RECIPIENT": "400 Bad Request",
    "NOT_FOUND": "404 Not Found",
    "DUPLICATE": "409 Conflict",
    "BUSY": "503 Service Unavailable",
    "INTERNAL": "500 Internal Server Error",
}
_REFUSED = {
    "no-recipient": "UNKNOWN_RECIPIENT",
    "duplicate-recipient": "INVALID",
    "unknown-recipient": "UNKNOWN_RECIPIENT",
    "duplicate": "DUPLICATE",
    "invalid": "INVALID",
}


class Fail(Exception):
    def __init__(self, code: str, desc: str):
        super().__init__(desc)
        self.code, self.desc = code, desc


def answer(data: dict, status: str = "200 OK") -> "Response":
    body = wire.encode_answer(data)
    return status, [("Content-Type", wire.JSON_TYPE), ("Content-Length", str(len(body)))], [body]


def failure(code: str, desc: str) -> "Response":
    return answer(wire.fail(code, desc), _HTTP.get(code, "400 Bad Request"))


def _iso(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, VN_TZ).isoformat(timespec="seconds") if epoch else ""


class VxpApp:
    """Handlers for ``/vxp/<operation>``."""

    def __init__(self, core: "Core"):
        self.core = core
        self.store = core.store
        self.nonces = wire.NonceCache()
        self._ops = {
            "sendEdoc": self.send_edoc,
            "getReceivedEdocList": self.received_list,
            "getEdoc": self.get_edoc,
            "updateStatus": self.update_status,
            "getAgenciesList": self.agencies_list,
            "getSentEdocList": self.sent_list,
        }

    def injected_failure(self) -> "Response":
        return failure("BUSY", "sandbox: injected failure")

    def internal_error(self) -> "Response":
        return failure("INTERNAL", "sandbox: internal error")

    def handle(self, request: "Request") -> "Response":
        from .app import BodyTooLarge

        name = request.path.rstrip("/").rsplit("/", 1)[-1]
        op = self._ops.get(name)
        if op is None or wire.PATHS.get(name) != request.path.rstrip("/"):
            return failure("NOT_FOUND", f"no VXP operation {name!r}")
        if request.method != wire.METHODS[name]:
            return failure("INVALID", f"{name} takes {wire.METHODS[name]}")
        try:
            system_id = wire.verify_request(
                request.method,
                request.environ.get("PATH_INFO", request.path),
                request.query,
                request.headers,
                self._secret_for,
                nonces=self.nonces,
            )
            agency = self.store.agency_by_system_id(system_id)
            if agency is None or not agency.active:
                raise Fail("AUTH", f"system {system_id!r} is not active")
            return op(request, agency)
        except wire.VerifyError as exc:
            return failure(exc.code, exc.desc)
        except Fail as exc:
            return failure(exc.code, exc.desc)
        except BodyTooLarge as exc:
            return failure("TOO_LARGE", str(exc))

    def _secret_for(self, system_id: str):
        agency = self.store.agency_by_system_id(system_id)
        return agency.secret if agency is not None and agency.active else None

    def _body_digest(self, request: "Request", actual: str) -> None:
        try:
            wire.check_body_digest(request.headers.get(wire.H_CONTENT_SHA256, ""), actual)
        except wire.VerifyError as exc:
            raise Fail(exc.code, exc.desc) from None

    # ------------------------------------------------------------------ operations

    def send_edoc(self, request: "Request", agency) -> "Response":
        from .app import Refused

        messagetype = (request.headers.get(wire.H_MESSAGE) or "edoc").lower()
        if messagetype not in wire.MESSAGE_TYPES:
            raise Fail("INVALID", f"messagetype must be edoc or status, not {messagetype!r}")
        service = request.headers.get(wire.H_SERVICE) or wire.SERVICE_TYPE
        if service != wire.SERVICE_TYPE:
            raise Fail("INVALID", f"servicetype must be {wire.SERVICE_TYPE}")
        sender = request.headers.get(wire.H_FROM) or agency.organ_id
        if sender != agency.organ_id:
            raise Fail("AUTH", f"from {sender!r} is not the authenticated system's agency {agency.organ_id}")
        spool = request.spool_body(self.store)
        try:
            self._body_digest(request, spool.sha256)
            try:
                parsed = parse(spool.path, spool_dir=self.store.tmp_dir, validate=False)
            except EdxmlError as exc:
                raise Fail("INVALID", f"not a readable edXML file: {exc}") from None
            try:
                message = parsed.message
                if messagetype == "edoc":
                    if not isinstance(message, Edoc):
                        raise Fail("INVALID", "messagetype is edoc but the file is a status message")
                    header_to = [t.strip() for t in (request.headers.get(wire.H_TO) or "").split(",") if t.strip()]
                    recipients = header_to or [t.organ_id for t in message.to if t.organ_id]
                    doc_id = self.core.accept_edoc(
                        spool,
                        sender=agency.organ_id,
                        recipients=recipients,
                        sender_doc_id=message.document_id,
                        binding="vxp",
                        meta=edoc_meta(message),
                    )
                else:
                    if not isinstance(message, Status):
                        raise Fail("INVALID", "messagetype is status but the file is a document")
                    doc_id = self.core.accept_status(spool, message, sender=agency.organ_id, binding="vxp", dedupe=False)
            finally:
                parsed.close()
        except Refused as exc:
            raise Fail(_REFUSED.get(exc.kind, "INVALID"), exc.text) from None
        finally:
            spool.discard()
        return answer(wire.ok(DocId=str(doc_id)))

    def received_list(self, request: "Request", agency) -> "Response":
        messagetype = (request.arg("messagetype") or "edoc").lower()
        if messagetype not in wire.MESSAGE_TYPES:
            raise Fail("INVALID", f"messagetype must be edoc or status, not {messagetype!r}")
        items = [
            wire.ReceivedItem(
                docId=str(doc.id),
                messagetype=doc.kind,
                to=agency.organ_id,
                status="new",
                created_time=_iso(doc.created_at),
                updated_time=_iso(doc.created_at),
                from_=doc.sender,
            ).to_json()
            for doc in self.store.pending(agency.organ_id, messagetype)
        ]
        return answer(wire.ok(data=items))

    def _doc_id(self, request: "Request") -> int:
        value = request.arg("docid") or request.arg("docId") or ""
        try:
            return int(value)
        except ValueError:
            raise Fail("INVALID", f"docid {value[:40]!r} is not a document id") from None

    def get_edoc(self, request: "Request", agency) -> "Response":
        doc_id = self._doc_id(request)
        doc = self.core.readable(doc_id, agency.organ_id)
        if doc is None or not doc.path.is_file():
            raise Fail("NOT_FOUND", f"no document {doc_id} for {agency.organ_id}")
        headers = [
            ("Content-Type", wire.EDXML_TYPE),
            ("Content-Length", str(doc.size)),
            (wire.H_CONTENT_SHA256, doc.sha256),
            ("messagetype", doc.kind),
            ("from", doc.sender),
        ]
        return "200 OK", headers, iter_file(doc.path)

    def update_status(self, request: "Request", agency) -> "Response":
        body = request.small_body(1 << 16)
        self._body_digest(request, wire.body_sha256(body))
        doc_id = self._doc_id(request)
        status = (request.arg("status") or "").lower()
        if status not in wire.UPDATE_STATUSES:
            raise Fail("INVALID", f"status must be one of {', '.join(wire.UPDATE_STATUSES)}")
        if status == "processing":
            if self.core.readable(doc_id, agency.organ_id) is None:
                raise Fail("NOT_FOUND", f"no document {doc_id} for {agency.organ_id}")
            return answer(wire.ok())
        if not self.core.acknowledge(doc_id, agency, status, "vxp"):
            raise Fail("NOT_FOUND", f"no document {doc_id} for {agency.organ_id}")
        return answer(wire.ok())

    def agencies_list(self, request: "Request", agency) -> "Response":
        records = []
        for a in self.store.agencies():
            if not a.active:
                continue
            e = a.extra
            records.append(
                wire.AgencyRecord(
                    code=a.organ_id,
                    name=a.name,
                    pid=str(e.get("parent") or ""),
                    mail=str(e.get("email") or ""),
                    mobile=str(e.get("telephone") or ""),
                    fax=str(e.get("fax") or ""),
                    extra={k: v for k, v in e.items() if k not in ("parent", "email", "telephone", "fax")},
                ).to_json()
            )
        return answer(wire.ok(data=records))

    def sent_list(self, request: "Request", agency) -> "Response":
        doc_id = None
        if request.arg("docid") or request.arg("docId"):
            doc_id = self._doc_id(request)
        items = []
        for doc in self.store.sent_by(agency.organ_id, doc_id):
            for r in self.store.recipients_of(doc.id):
                items.append(
                    wire.SentItem(
                        docId=str(doc.id),
                        to=r.organ_id,
                        sendStatus="sent",
                        receiveStatus="pending" if r.pending else (r.outcome or "done"),
                        sendTime=_iso(doc.created_at),
                        receiveTime="" if r.pending else _iso(r.updated_at),
                    ).to_json()
                )
        return answer(wire.ok(data=items))


def edoc_meta(doc: Edoc) -> dict:
    """What the store keeps beside the file: enough to answer with a status 01 later."""
    code = "/".join(x for x in (doc.code.number, doc.code.notation) if x) or None
    return {
        "code": code,
        "promulgation_date": doc.promulgation.date.isoformat() if doc.promulgation.date else None,
        "subject": doc.subject,
        "attachments": len(doc.attachments),
    }


__all__ = ["VxpApp", "edoc_meta"]
