"""The provincial hub's SOAP binding, server side, on :mod:`connector.axis.soap_wire`.

Follows the contract's quirks (``soap-hub-contract.md``): the operation comes from the bare
``SOAPAction``; failures are a normal envelope with a ``Report`` (``IsSuccess`` false), never a
SOAP Fault; wrong OrganId/Token gives a failed Report with an EMPTY ErrorList; an unknown
SOAPAction, a missing request element or a SendDocument failing the structural check gives an
empty envelope. Hostile XML (DOCTYPE, entities, over-deep or over-large input) is refused
with a failed Report (``M.<Operation>``) before anything is stored.

SendDocument bodies (``multipart/related``) are parsed straight from ``wsgi.input`` in
chunks, each part spooled to a file under the store's ``tmp/``; the document is rebuilt as a
QCVN 102:2016 edXML file (attachments streamed into its base64) and kept on disk before the
answer, as the real hub rebuilds a national file to forward. GetDocument streams the stored
file's attachments back as base64-text parts (``multipart.generate``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterator

from connector.axis import multipart
from connector.axis import soap_wire as wire
from connector.axis.errors import AxisError
from connector.edxml.build import BuildError, build
from connector.edxml.errors import EdxmlError
from connector.edxml.model import Edoc, Status, now_vn
from connector.edxml.parse import parse

from .vxp_app import edoc_meta

if TYPE_CHECKING:
    from .app import Core, Request, Response

log = logging.getLogger("connector.sandbox")

MAX_ENVELOPE = 64 * 1024**2
_REFUSED_CODES = {
    "no-recipient": "N.MessageHeader.To",
    "duplicate-recipient": "MessageHeader.To.OrganId",
    "unknown-recipient": "R.MessageHeader.To.OrganId",
    "duplicate": "M.Exist",
    "invalid": "M.SendDocument",
}


def xml(body: bytes, status: str = "200 OK") -> "Response":
    return status, [("Content-Type", wire.SOAP_CONTENT_TYPE), ("Content-Length", str(len(body)))], [body]


def report(operation: str, code: str | None = None, description: str = "") -> "Response":
    return xml(wire.report_response(operation, wire.HubReport.failure(code, description)))


def denied(operation: str) -> "Response":
    """Wrong OrganId/Token: IsSuccess false, EMPTY ErrorList."""
    return xml(wire.report_response(operation, wire.HubReport(False, [])))


def empty() -> "Response":
    return xml(wire.empty_envelope())


class HubApp:
    """Handlers for ``POST /soap``."""

    def __init__(self, core: "Core"):
        self.core = core
        self.store = core.store

    def injected_failure(self) -> "Response":
        return xml(wire.empty_envelope(), "500 Internal Server Error")

    def internal_error(self) -> "Response":
        return xml(wire.empty_envelope(), "500 Internal Server Error")

    def handle(self, request: "Request") -> "Response":
        from .app import BodyTooLarge

        operation = wire.operation_of(request.headers.get("soapaction"))
        if operation is None:
            return empty()
        related = None
        try:
            ctype = request.headers.get("content-type", "")
            if multipart.is_multipart(ctype):
                related = multipart.parse(
                    request.body_stream(),
                    ctype,
                    spool_dir=self.store.tmp_dir,
                    limits=multipart.MultipartLimits(max_root_size=MAX_ENVELOPE),
                )
                envelope = related.root_bytes()
            else:
                envelope = request.small_body(MAX_ENVELOPE)
            root = wire.parse_envelope(envelope)
        except (multipart.MultipartError, wire.SoapWireError, BodyTooLarge) as exc:
            if related is not None:
                related.close()
            return report(operation, f"M.{operation}", f"refused: {exc}")
        try:
            handler = getattr(self, "op_" + operation)
            return handler(root, related.parts if related is not None else {})
        except wire.SoapWireError as exc:
            log.info("hub %s: %s", operation, exc)
            return empty()
        finally:
            if related is not None:
                related.close()

    def _auth(self, credentials: wire.Credentials):
        return self.store.authenticate_token(credentials.organ_id, credentials.token)

    # ------------------------------------------------------------------ operations

    def op_SendDocument(self, root, parts) -> "Response":
        from .app import Refused

        op = "SendDocument"
        try:
            request = wire.send_document_to_edoc(root, parts)
        except AxisError as exc:
            if isinstance(exc, wire.SoapWireError):
                raise
            return report(op, exc.code or "M.SendDocument", exc.text)
        agency = self._auth(request.credentials)
        if agency is None:
            return denied(op)
        edoc = request.edoc
        problem = check_edoc(edoc, parts)
        if problem:
            return report(op, *problem)
        spool = self.store.spool()
        try:
            try:
                build(edoc, spool)
            except (BuildError, ValueError) as exc:
                return report(op, "M.SendDocument", f"the document cannot be stored: {exc}")
            spool.finish()
            try:
                doc_id = self.core.accept_edoc(
                    spool,
                    sender=agency.organ_id,
                    recipients=[t.organ_id or "" for t in edoc.to],
                    sender_doc_id=edoc.document_id,
                    binding="hub",
                    meta=edoc_meta(edoc),
                )
            except Refused as exc:
                return report(op, _REFUSED_CODES.get(exc.kind, "M.SendDocument"), exc.text)
        finally:
            spool.discard()
        return xml(wire.send_document_response(doc_id))

    def op_GetPendingDocumentIds(self, root, parts) -> "Response":
        op = "GetPendingDocumentIds"
        request = wire.parse_request(op, root)
        agency = self._auth(request.credentials)
        if agency is None:
            return denied(op)
        return xml(wire.pending_ids_response(doc.id for doc in self.store.pending(agency.organ_id, "edoc")))

    def op_GetDocument(self, root, parts) -> "Response":
        op = "GetDocument"
        request = wire.parse_request(op, root)
        agency = self._auth(request.credentials)
        if agency is None:
            return denied(op)
        if not request.document_id:
            return report(op, "M.DocumentId", "DocumentId is missing or not an integer")
        doc = self.core.readable(request.document_id, agency.organ_id)
        if doc is None or doc.kind != "edoc":
            return report(op, "M.GetDocumentCheckAllow", f"document {request.document_id} was not sent to {agency.organ_id}")
        try:
            parsed = parse(doc.path, spool_dir=self.store.tmp_dir, validate=False)
        except EdxmlError as exc:
            return report(op, "M.GetDocument", f"stored document unreadable: {exc}")
        try:
            message = parsed.message
            if not isinstance(message, Edoc):
                raise ValueError("not a document")
            envelope, out_parts = wire.edoc_to_get_document_response(message)
        except (AxisError, ValueError) as exc:
            parsed.close()
            return report(op, "M.GetDocument", str(exc))
        boundary = multipart.new_boundary()
        length = multipart.body_length(len(envelope), out_parts, boundary)
        headers = [("Content-Type", multipart.content_type(boundary)), ("Content-Length", str(length))]
        return "200 OK", headers, _closing(multipart.generate(envelope, out_parts, boundary), parsed)

    def op_ConfirmReceived(self, root, parts) -> "Response":
        op = "ConfirmReceived"
        request = wire.parse_request(op, root)
        agency = self._auth(request.credentials)
        if agency is None:
            return denied(op)
        if not request.document_id:
            return report(op, "M.DocumentId", "DocumentId is missing or not an integer")
        if self.store.document(request.document_id) is None:
            return report(op, "M.UpdateStatusDoc", f"no document {request.document_id}")
        if not self.core.acknowledge(request.document_id, agency, "done", "hub"):
            return report(op, "M.GetDocumentCheckAllow", f"document {request.document_id} was not sent to {agency.organ_id}")
        return xml(wire.report_response(op, wire.HubReport()))

    def op_UpdateTraces(self, root, parts) -> "Response":
        from .app import Refused

        op = "UpdateTraces"
        request = wire.update_traces_to_status(root)
        agency = self._auth(request.credentials)
        if agency is None:
            return denied(op)
        status = request.status
        if status.timestamp is None:
            status.timestamp = now_vn()
        if not status.status_code:
            return report(op, "M.UpdateStatus", "StatusCode is missing")
        try:
            self.core.new_status(status, sender=agency.organ_id, binding="hub", dedupe=True)
        except Refused as exc:
            code = "M.UpdateTraces" if exc.kind == "duplicate" else "M.UpdateStatus"
            return report(op, code, exc.text)
        except (BuildError, ValueError) as exc:
            return report(op, "M.UpdateStatus", f"the status cannot be stored: {exc}")
        return xml(wire.report_response(op, wire.HubReport()))

    def op_GetTraces(self, root, parts) -> "Response":
        op = "GetTraces"
        request = wire.parse_request(op, root)
        agency = self._auth(request.credentials)
        if agency is None:
            return denied(op)
        if request.timestamp is not None:
            rows = self.store.received_since(agency.organ_id, request.timestamp.timestamp(), "status")
        else:
            rows = self.store.take_pending(agency.organ_id, "status")
        statuses: list[Status] = []
        for row in rows:
            try:
                with parse(row.path, validate=False) as parsed:
                    if isinstance(parsed.message, Status):
                        statuses.append(parsed.message)
            except EdxmlError as exc:
                log.warning("status %s unreadable: %s", row.id, exc)
        return xml(wire.traces_response(statuses))

    def op_GetOrganizations(self, root, parts) -> "Response":
        from .app import organization_of

        op = "GetOrganizations"
        request = wire.parse_request(op, root)
        if self._auth(request.credentials) is None:
            return denied(op)
        return xml(wire.organizations_response(organization_of(a) for a in self.store.agencies() if a.active))

    def op_CheckPermission(self, root, parts) -> "Response":
        op = "CheckPermission"
        request = wire.parse_request(op, root)
        if self._auth(request.credentials) is None:
            return denied(op)
        return xml(wire.report_response(op, wire.HubReport()))


def check_edoc(edoc: Edoc, parts) -> tuple[str, str] | None:
    """The hub's SendDocument field checks that matter to a client (code, description)."""
    if not edoc.to:
        return "N.MessageHeader.To", "no recipient"
    ids = [t.organ_id for t in edoc.to]
    if any(not i for i in ids):
        return "N.MessageHeader.To.OrganId", "a recipient has no OrganId"
    if len(set(ids)) != len(ids):
        return "MessageHeader.To.OrganId", "a recipient appears twice"
    if not edoc.from_.organ_id:
        return "N.MessageHeader.From.OrganId", "From has no OrganId"
    if not edoc.document_id:
        return "N.MessageHeader.DocumentId", "DocumentId is missing"
    if edoc.document_type.type not in (None, "1", "2"):
        return "M.MessageHeader.DocumentType.Type", "DocumentType/Type must be 1 or 2"
    day = edoc.promulgation.date
    if day is not None and day > now_vn().date():
        return "PromulgationDate", "PromulgationDate is in the future"
    for a in edoc.attachments:
        if a.data is None or a.data.size == 0:
            return "R.AttachmentName", f"attachment {a.name!r} is empty"
    return None


def _closing(body: Iterator[bytes], parsed) -> Iterator[bytes]:
    try:
        yield from body
    finally:
        parsed.close()


__all__ = ["HubApp", "check_edoc"]
