"""The typed model to edXML bytes, laid out as the VNPT builder lays them out.

Root ``edXML`` with the default namespace, the envelope and its content under the ``edXML:``
prefix (declared again on ``edXMLEnvelope``), elements in the order of the facts document,
``AttachmentEncoded`` after the envelope, base64 on one line. Receivers built on the VNPT
library read these files.

The bytes after the XML declaration are already in exclusive-C14N form (attribute order,
escaping, ``<a></a>`` for empty elements, namespace declarations where exc-C14N renders them),
so a signer can digest the document while it streams instead of re-parsing it: that is how a
500 MB attachment gets signed in constant memory. Attachments stream from their files.
"""

from __future__ import annotations

import io
import re
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO, Callable

import pybase64

from .model import (
    CHUNK,
    NS,
    VN_TZ,
    XLINK_NS,
    Attachment,
    Business,
    Edoc,
    ManifestReference,
    Message,
    Organization,
    ResponseFor,
    StaffInfo,
    Status,
    manifest_for,
    wire_content_type,
)
from .packaging import write_zipped

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


class BuildError(ValueError):
    """The model holds something edXML cannot carry (say, a control character)."""


# A hook that writes the Signature element; given the output stream and the indentation.
SignatureWriter = Callable[[BinaryIO], None]


def build(message: Message, out: BinaryIO | str | Path, *, signature: SignatureWriter | None = None) -> None:
    """Write ``message`` as edXML to a binary stream or a file path.

    ``signature`` (edocs only) writes the ``Signature`` element as the last child of
    ``edXMLHeader``; without it the slot holds only whitespace, which is exactly what the
    enveloped-signature transform leaves, so a digest over an unsigned build equals the
    digest a verifier computes over the signed one.
    """
    if isinstance(out, (str, Path)):
        with open(out, "wb") as fh:
            build(message, fh, signature=signature)
        return
    writer = _Writer(out)
    writer.raw(DECLARATION)
    write_canonical(message, out, signature=signature)


def to_bytes(message: Message, *, signature: SignatureWriter | None = None) -> bytes:
    """The edXML bytes of a small message (tests, status messages); attachments read whole."""
    buffer = io.BytesIO()
    build(message, buffer, signature=signature)
    return buffer.getvalue()


def write_canonical(message: Message, out: BinaryIO, *, signature: SignatureWriter | None = None) -> None:
    """Write the document element only (no XML declaration): its exc-C14N form."""
    writer = _Writer(out)
    if isinstance(message, Status):
        _status(writer, message)
    else:
        _edoc(writer, message, signature)
    writer.flush()


# --------------------------------------------------------------------------- writer


class _Writer:
    """Small buffered writer of canonical XML pieces."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.parts: list[str] = []

    def raw(self, data: bytes) -> None:
        self.flush()
        self.out.write(data)

    def text(self, s: str) -> None:
        self.parts.append(s)

    def flush(self) -> None:
        if self.parts:
            self.out.write("".join(self.parts).encode("utf-8"))
            self.parts = []

    def leaf(self, indent: int, tag: str, value: object, field: str) -> None:
        self.parts.append(f"{_INDENT[indent]}<edXML:{tag}>{_text(value, field)}</edXML:{tag}>")

    def open(self, indent: int, tag: str, attrs: str = "") -> None:
        self.parts.append(f"{_INDENT[indent]}<{tag}{attrs}>")

    def close(self, indent: int, tag: str) -> None:
        self.parts.append(f"{_INDENT[indent]}</{tag}>")


_INDENT = ["\n" + "  " * depth for depth in range(12)]


_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _text(value: object, field: str) -> str:
    if value is None:
        return ""
    if type(value) is str and _SPECIAL.search(value) is None:
        return value  # the common case: nothing to escape, nothing to refuse
    if isinstance(value, bool):
        s = "true" if value else "false"
    elif isinstance(value, datetime):
        s = format_timestamp(value)
    elif isinstance(value, date):
        s = format_date(value)
    else:
        s = str(value)
    bad = _ILLEGAL.search(s)
    if bad:
        raise BuildError(f"{field}: character U+{ord(bad.group()):04X} cannot be carried in XML")
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")


def _attr(value: str, field: str) -> str:
    s = _text(value, field)
    return s.replace('"', "&quot;").replace("\t", "&#x9;").replace("\n", "&#xA;")


def format_date(value: date) -> str:
    """The wire form of a date: ``yyyy/MM/dd``."""
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"


def format_timestamp(value: datetime) -> str:
    """The wire form of a time: ``yyyy/MM/dd HH:mm:ss`` in Vietnam time."""
    if value.tzinfo is None:
        raise BuildError(f"timestamp {value.isoformat()} has no time zone")
    local = value.astimezone(VN_TZ)
    return f"{format_date(local)} {local.hour:02d}:{local.minute:02d}:{local.second:02d}"


# --------------------------------------------------------------------------- messages


def _edoc(w: _Writer, doc: Edoc, signature: SignatureWriter | None) -> None:
    w.text(f'<edXML xmlns="{NS}">')
    w.open(1, "edXML:edXMLEnvelope", f' xmlns:edXML="{NS}"')
    w.open(2, "edXML:edXMLHeader")
    _edoc_header(w, doc)
    _trace_headers(w, doc)
    w.text("\n      ")
    if signature is not None:
        w.flush()
        signature(w.out)
    w.close(2, "edXML:edXMLHeader")
    w.open(2, "edXML:edXMLBody")
    w.open(3, "edXML:edXMLManifest", ' version="1.0"')
    for ref in doc.manifest or manifest_for(doc.attachments):
        _reference(w, ref)
    w.close(3, "edXML:edXMLManifest")
    w.close(2, "edXML:edXMLBody")
    w.close(1, "edXML:edXMLEnvelope")
    w.open(1, "AttachmentEncoded")
    for attachment in doc.attachments:
        _attachment(w, attachment)
    w.close(1, "AttachmentEncoded")
    w.text("\n</edXML>")


def _edoc_header(w: _Writer, doc: Edoc) -> None:
    w.open(3, "edXML:MessageHeader")
    _organization(w, "From", doc.from_, with_in_charge=True)
    for index, organization in enumerate(doc.to):
        _organization(w, "To", organization, with_in_charge=True, label=f"To[{index}]")
    w.leaf(4, "DocumentId", doc.document_id, "DocumentId")
    w.open(4, "edXML:Code")
    w.leaf(5, "CodeNumber", doc.code.number, "Code.CodeNumber")
    w.leaf(5, "CodeNotation", doc.code.notation, "Code.CodeNotation")
    w.close(4, "edXML:Code")
    w.open(4, "edXML:PromulgationInfo")
    w.leaf(5, "Place", doc.promulgation.place, "PromulgationInfo.Place")
    w.leaf(5, "PromulgationDate", doc.promulgation.date, "PromulgationInfo.PromulgationDate")
    w.close(4, "edXML:PromulgationInfo")
    w.open(4, "edXML:DocumentType")
    w.leaf(5, "Type", doc.document_type.type, "DocumentType.Type")
    w.leaf(5, "TypeDetail", doc.document_type.type_detail, "DocumentType.TypeDetail")
    w.leaf(5, "TypeName", doc.document_type.type_name, "DocumentType.TypeName")
    w.close(4, "edXML:DocumentType")
    w.leaf(4, "Subject", doc.subject, "Subject")
    w.leaf(4, "Content", doc.content, "Content")
    w.open(4, "edXML:SignerInfo")
    w.leaf(5, "Competence", doc.signer_info.competence, "SignerInfo.Competence")
    w.leaf(5, "Position", doc.signer_info.position, "SignerInfo.Position")
    w.leaf(5, "FullName", doc.signer_info.full_name, "SignerInfo.FullName")
    w.close(4, "edXML:SignerInfo")
    w.leaf(4, "DueDate", doc.due_date, "DueDate")
    _other_info(w, doc)
    w.leaf(4, "SteeringType", doc.steering_type, "SteeringType")
    w.open(4, "edXML:ToPlaces")
    for place in doc.to_places:
        w.leaf(5, "Place", place, "ToPlaces.Place")
    w.close(4, "edXML:ToPlaces")
    for response in doc.response_for:
        _response_for(w, response)
    w.close(3, "edXML:MessageHeader")


def _other_info(w: _Writer, doc: Edoc) -> None:
    info = doc.other_info
    w.open(4, "edXML:OtherInfo")
    w.leaf(5, "Priority", info.priority, "OtherInfo.Priority")
    w.leaf(5, "SphereOfPromulgation", info.sphere_of_promulgation, "OtherInfo.SphereOfPromulgation")
    w.leaf(5, "TyperNotation", info.typer_notation, "OtherInfo.TyperNotation")
    w.leaf(5, "PromulgationAmount", info.promulgation_amount, "OtherInfo.PromulgationAmount")
    w.leaf(5, "PageAmount", info.page_amount, "OtherInfo.PageAmount")
    w.leaf(5, "Direction", info.direction, "OtherInfo.Direction")
    w.open(5, "edXML:Appendixes")
    for appendix in info.appendixes:
        w.leaf(6, "Appendix", appendix, "OtherInfo.Appendixes.Appendix")
    w.close(5, "edXML:Appendixes")
    w.close(4, "edXML:OtherInfo")


def _organization(w: _Writer, tag: str, org: Organization, *, with_in_charge: bool, label: str = "") -> None:
    label = label or tag
    w.open(4, f"edXML:{tag}")
    w.leaf(5, "OrganId", org.organ_id, f"{label}.OrganId")
    if with_in_charge:
        w.leaf(5, "OrganizationInCharge", org.organization_in_charge, f"{label}.OrganizationInCharge")
    w.leaf(5, "OrganName", org.organ_name, f"{label}.OrganName")
    w.leaf(5, "OrganAdd", org.organ_add, f"{label}.OrganAdd")
    w.leaf(5, "Email", org.email, f"{label}.Email")
    w.leaf(5, "Telephone", org.telephone, f"{label}.Telephone")
    w.leaf(5, "Fax", org.fax, f"{label}.Fax")
    w.leaf(5, "Website", org.website, f"{label}.Website")
    w.close(4, f"edXML:{tag}")


def _response_for(w: _Writer, response: ResponseFor) -> None:
    w.open(4, "edXML:ResponseFor")
    w.leaf(5, "OrganId", response.organ_id, "ResponseFor.OrganId")
    w.leaf(5, "Code", response.code, "ResponseFor.Code")
    w.leaf(5, "PromulgationDate", response.promulgation_date, "ResponseFor.PromulgationDate")
    w.leaf(5, "DocumentId", response.document_id, "ResponseFor.DocumentId")
    w.close(4, "edXML:ResponseFor")


def _staff_info(w: _Writer, indent: int, staff: StaffInfo) -> None:
    w.open(indent, "edXML:StaffInfo")
    w.leaf(indent + 1, "Department", staff.department, "StaffInfo.Department")
    w.leaf(indent + 1, "Staff", staff.staff, "StaffInfo.Staff")
    w.leaf(indent + 1, "Email", staff.email, "StaffInfo.Email")
    w.leaf(indent + 1, "Mobile", staff.mobile, "StaffInfo.Mobile")
    w.close(indent, "edXML:StaffInfo")


def _trace_headers(w: _Writer, doc: Edoc) -> None:
    w.open(3, "edXML:TraceHeaderList")
    if doc.business is not None:
        _business(w, doc.business)
    for trace in doc.trace_headers:
        w.open(4, "edXML:TraceHeader")
        w.leaf(5, "OrganId", trace.organ_id, "TraceHeader.OrganId")
        w.leaf(5, "Timestamp", trace.timestamp, "TraceHeader.Timestamp")
        w.close(4, "edXML:TraceHeader")
    w.close(3, "edXML:TraceHeaderList")


def _business(w: _Writer, b: Business) -> None:
    w.open(4, "edXML:Bussiness")
    w.leaf(5, "DocumentId", b.document_id, "Bussiness.DocumentId")
    w.leaf(5, "BussinessDocType", b.business_doc_type, "Bussiness.BussinessDocType")
    w.leaf(5, "BussinessDocReason", b.business_doc_reason, "Bussiness.BussinessDocReason")
    w.leaf(5, "Paper", b.paper, "Bussiness.Paper")
    info = b.business_document_info
    if info is not None:
        w.open(5, "edXML:BussinessDocumentInfo")
        w.leaf(6, "DocumentInfo", info.document_info, "BussinessDocumentInfo.DocumentInfo")
        w.leaf(6, "DocumentReceiver", info.document_receiver, "BussinessDocumentInfo.DocumentReceiver")
        w.open(6, "edXML:ReceiverList")
        for receiver in info.receivers:
            w.open(7, "edXML:Receiver")
            w.leaf(8, "OrganId", receiver.organ_id, "Receiver.OrganId")
            w.leaf(8, "ReceiverType", receiver.receiver_type, "Receiver.ReceiverType")
            w.close(7, "edXML:Receiver")
        w.close(6, "edXML:ReceiverList")
        w.close(5, "edXML:BussinessDocumentInfo")
    if b.replacement_info:
        w.open(5, "edXML:ReplacementInfoList")
        for replacement in b.replacement_info:
            w.open(6, "edXML:ReplacementInfo")
            w.leaf(7, "DocumentId", replacement.document_id, "ReplacementInfo.DocumentId")
            w.open(7, "edXML:OrganIdList")
            for organ_id in replacement.organ_ids:
                w.leaf(8, "OrganId", organ_id, "ReplacementInfo.OrganIdList.OrganId")
            w.close(7, "edXML:OrganIdList")
            w.close(6, "edXML:ReplacementInfo")
        w.close(5, "edXML:ReplacementInfoList")
    if b.staff_info is not None:
        _staff_info(w, 5, b.staff_info)
    w.close(4, "edXML:Bussiness")


def _reference(w: _Writer, ref: ManifestReference) -> None:
    attrs = f' xmlns:xlink="{XLINK_NS}" xlink:href="{_attr(ref.href, "Reference/@href")}"' if ref.href else ""
    w.open(4, "edXML:Reference", attrs)
    w.leaf(5, "ContentId", _cid(ref.content_id), "Reference.ContentId")
    w.leaf(5, "ContentType", ref.content_type, "Reference.ContentType")
    w.leaf(5, "Description", ref.description, "Reference.Description")
    w.leaf(5, "AttachmentName", ref.attachment_name, "Reference.AttachmentName")
    w.close(4, "edXML:Reference")


def _cid(content_id: str) -> str:
    return content_id if content_id.lower().startswith("cid:") else f"cid:{content_id}"


def _attachment(w: _Writer, a: Attachment) -> None:
    label = f"Attachment {a.name!r}"
    w.open(2, "Attachment")
    w.text(f"\n      <ContentId>{_text(_cid(a.content_id), label)}</ContentId>")
    w.text(f"\n      <AttachmentName>{_text(a.name, label)}</AttachmentName>")
    w.text(f"\n      <Description>{_text(a.description, label)}</Description>")
    w.text(f"\n      <ContentType>{_text(wire_content_type(a), label)}</ContentType>")
    w.text(f'\n      <edXML:ContentTransferEncoded xmlns:edXML="{NS}">')
    w.flush()
    if a.data is None:
        raise BuildError(f"{label}: no content to attach (data is missing)")
    encoder = Base64Stream(w.out)
    if a.packaging == "zip":
        write_zipped(a.name, a.data, encoder)
    else:
        with a.data.open() as src:
            while chunk := src.read(CHUNK * 3):
                encoder.write(chunk)
    encoder.close()
    w.text("</edXML:ContentTransferEncoded>")
    w.close(2, "Attachment")


class Base64Stream(io.RawIOBase):
    """A write-only stream that base64-encodes what it is given, on one line, as it goes."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._pending = b""
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        size = len(data)
        self._position += size
        if self._pending:
            data = self._pending + data
        whole = len(data) - len(data) % 3
        if whole:
            self._out.write(pybase64.b64encode(data[:whole]))
        self._pending = data[whole:]
        return size

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            if self._pending:
                self._out.write(pybase64.b64encode(self._pending))
                self._pending = b""
        super().close()


# --------------------------------------------------------------------------- status


def _status(w: _Writer, status: Status) -> None:
    w.text(f'<edXML xmlns="{NS}">')
    w.open(1, "edXML:edXMLEnvelope", f' xmlns:edXML="{NS}"')
    w.open(2, "edXML:edXMLHeader")
    w.open(3, "edXML:MessageHeader")
    _organization(w, "From", status.from_, with_in_charge=True)
    for response in status.response_for:
        _response_for(w, response)
    if status.staff_info is not None:
        _staff_info(w, 4, status.staff_info)
    w.leaf(4, "StatusCode", status.status_code, "StatusCode")
    w.leaf(4, "Description", status.description, "Description")
    w.leaf(4, "Timestamp", status.timestamp, "Timestamp")
    w.close(3, "edXML:MessageHeader")
    w.close(2, "edXML:edXMLHeader")
    w.close(1, "edXML:edXMLEnvelope")
    w.text("\n</edXML>")

