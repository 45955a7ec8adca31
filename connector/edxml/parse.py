"""edXML bytes, file or stream to the typed model.

Tolerant where real producers differ: any prefix or none, any element order, surrounding
whitespace, a UTF-8 BOM, CRLF line ends, ``cid:`` or bare content ids, ``xlink:href`` on
manifest references, empty optional elements. Unknown elements are kept in
``message.unknown`` (and reported by validation), never dropped silently.

Strict where safety demands: reading goes through :mod:`connector.edxml.reader` (no DTD,
no entities, no network, bounded size, depth and element count).
"""

from __future__ import annotations

import logging
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Callable, TypeVar

from lxml import etree

from . import fastpath
from .errors import EdxmlError, Problem, Report
from .model import (
    DSIG_NS,
    NS,
    VN_TZ,
    XLINK_NS,
    Attachment,
    bare_content_id,
    Business,
    BusinessDocumentInfo,
    Code,
    DocumentType,
    Edoc,
    ManifestReference,
    Message,
    Organization,
    OtherInfo,
    PromulgationInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    Status,
    TraceHeader,
    UnknownElement,
)
from .packaging import UnwrapError, unwrap
from .reader import Limits, RawDocument, Source, TreeHook, XmlObserver, element_path, read

T = TypeVar("T")

# Element names the standard defines, per parent; anything else is "unknown".
_KNOWN: dict[str, set[str]] = {
    "edXML": {"edXMLEnvelope", "AttachmentEncoded"},
    "edXMLEnvelope": {"edXMLHeader", "edXMLBody"},
    "edXMLHeader": {"MessageHeader", "TraceHeaderList", "Signature"},
    "edXMLBody": {"edXMLManifest"},
    "edXMLManifest": {"Reference"},
    "Reference": {"ContentId", "ContentType", "Description", "AttachmentName"},
    "AttachmentEncoded": {"Attachment"},
    "Attachment": {"ContentId", "AttachmentName", "Description", "ContentType", "ContentTransferEncoded"},
    "From": {"OrganId", "OrganizationInCharge", "OrganName", "OrganAdd", "Email", "Telephone", "Fax", "Website"},
    "To": {"OrganId", "OrganizationInCharge", "OrganName", "OrganAdd", "Email", "Telephone", "Fax", "Website"},
    "Code": {"CodeNumber", "CodeNotation"},
    "PromulgationInfo": {"Place", "PromulgationDate"},
    "DocumentType": {"Type", "TypeDetail", "TypeName"},
    "SignerInfo": {"Competence", "Position", "FullName"},
    "OtherInfo": {
        "Priority",
        "SphereOfPromulgation",
        "TyperNotation",
        "PromulgationAmount",
        "PageAmount",
        "Direction",
        "Appendixes",
    },
    "Appendixes": {"Appendix"},
    "ToPlaces": {"Place"},
    "ResponseFor": {"OrganId", "Code", "PromulgationDate", "DocumentId"},
    "TraceHeaderList": {"TraceHeader", "Bussiness"},
    "TraceHeader": {"OrganId", "Timestamp"},
    "Bussiness": {
        "DocumentId",
        "BussinessDocType",
        "BussinessDocReason",
        "Paper",
        "BussinessDocumentInfo",
        "ReplacementInfoList",
        "StaffInfo",
    },
    "BussinessDocumentInfo": {"DocumentInfo", "DocumentReceiver", "ReceiverList"},
    "ReceiverList": {"Receiver"},
    "Receiver": {"OrganId", "ReceiverType"},
    "ReplacementInfoList": {"ReplacementInfo"},
    "ReplacementInfo": {"DocumentId", "OrganIdList"},
    "OrganIdList": {"OrganId"},
    "StaffInfo": {"Department", "Staff", "Email", "Mobile"},
}
_EDOC_HEADER = {
    "From",
    "To",
    "DocumentId",
    "Code",
    "PromulgationInfo",
    "DocumentType",
    "Subject",
    "Content",
    "SignerInfo",
    "DueDate",
    "OtherInfo",
    "SteeringType",
    "ToPlaces",
    "ResponseFor",
}
_STATUS_HEADER = {"From", "ResponseFor", "StaffInfo", "StatusCode", "Description", "Timestamp"}


@dataclass
class Parsed:
    """A parsed message with the tree it came from and every problem found on the way."""

    message: Message
    raw: RawDocument
    report: Report = field(default_factory=Report)
    source: str = ""

    @property
    def root(self) -> etree._Element:
        return self.raw.root

    def close(self) -> None:
        """Release the spooled attachment files."""
        self.raw.close()

    def __enter__(self) -> "Parsed":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse(
    source: Source,
    *,
    limits: Limits = Limits(),
    spool_dir: str | Path | None = None,
    validate: bool = True,
    source_name: str | None = None,
    on_tree: TreeHook | None = None,
    observer: XmlObserver | None = None,
) -> Parsed:
    """Read, (optionally) validate and convert edXML into an :class:`Edoc` or :class:`Status`.

    Raises :class:`EdxmlError` only when the input cannot be read as edXML at all; every
    other problem is in ``parsed.report``, each with path and line.

    With validation, a clean document (every element known and in the standard's order,
    every value in the standard's form) takes :mod:`connector.edxml.fastpath`, which gives the
    same result at a fraction of the cost; anything else, or any doubt, takes the careful path.
    """
    name = source_name or (str(source) if isinstance(source, (str, Path)) else "")
    try:
        raw = read(source, limits=limits, spool_dir=spool_dir, on_tree=on_tree, observer=observer)
    except EdxmlError as exc:
        raise exc.located(name) if name else exc
    if validate and fastpath.ENABLED:
        try:
            fast = fastpath.extract(raw)
        except Exception:  # noqa: BLE001 - a surprise in the fast path: the careful path decides
            _log.debug("fast path failed on %s; the careful path reads it", name or "a document", exc_info=True)
            fast = None
        if fast is not None:
            return _fast_parsed(fast, raw, limits, spool_dir, name)
    try:
        problems = list(raw.problems)
        indexes: dict[etree._Element, dict[str, list[etree._Element]]] = {}
        if validate:
            from .validate import validate_indexed

            problems += validate_indexed(raw.root, indexes)
        # Unknown elements are looked for only where validation saw some (or did not run).
        look_for_unknown = not validate or any(p.code == "unknown-element" for p in problems)
        extractor = _Extractor(raw, limits, spool_dir, indexes)
        message = extractor.message(look_for_unknown)
        covered = {p.line for p in problems if p.severity == "error"}
        problems += [p for p in extractor.problems if p.line not in covered]
    except EdxmlError as exc:
        raw.close()
        raise exc.located(name) if name else exc
    if name:
        problems = [p.located(name) for p in problems]
    return Parsed(message, raw, Report(problems), name)


def _fast_parsed(fast: tuple, raw: RawDocument, limits: Limits, spool_dir: str | Path | None, name: str) -> Parsed:
    """The parse of a document the fast path took: its message, with attachments read (and
    unwrapped) by the same code as on the careful path. Only that step can find a problem
    here (a broken ZIP, or content declared a ZIP that is no one-entry ZIP); it is reported as
    the careful path reports it."""
    message, entries = fast
    problems: list[Problem] = []
    if isinstance(message, Edoc):
        extractor = _Extractor(raw, limits, spool_dir)
        try:
            message.attachments = extractor.attachments_from(entries, message.manifest)
        except EdxmlError as exc:
            raw.close()
            raise exc.located(name) if name else exc
        problems = [p.located(name) for p in extractor.problems] if name else extractor.problems
    return Parsed(message, raw, Report(problems), name)


# --------------------------------------------------------------------------- extraction


_log = logging.getLogger(__name__)
_NS_OPEN = "{" + NS + "}"


def _is_edxml(element: etree._Element) -> bool:
    tag = element.tag
    return tag[0] != "{" or tag.startswith(_NS_OPEN)


def _local(element: etree._Element) -> str:
    tag = element.tag
    return tag[tag.find("}") + 1 :]


_NO_VALUES: dict[str, str | None] = {}


class _Extractor:
    """Walks the tree once, by local name, into model objects."""

    def __init__(
        self,
        raw: RawDocument,
        limits: Limits,
        spool_dir: str | Path | None,
        indexes: dict[etree._Element, dict[str, list[etree._Element]]] | None = None,
    ):
        self.raw = raw
        self.raw_limits = limits
        self.spool_dir = spool_dir
        self.problems: list[Problem] = []
        self.unknown: list[UnknownElement] = []
        # Keyed by the element proxy itself, which the dict keeps alive (so no other element
        # can take its identity). Validation may hand over the indexes its walk built.
        self._indexes: dict[etree._Element, dict[str, list[etree._Element]]] = indexes if indexes is not None else {}
        self._values: dict[etree._Element, dict[str, str | None]] = {}

    # -- navigation ----------------------------------------------------------------------

    def _index(self, parent: etree._Element) -> dict[str, list[etree._Element]]:
        """The edXML children of ``parent`` by local name, built once per parent."""
        index = self._indexes.get(parent)
        if index is not None:
            return index
        index = {}
        for child in parent:
            tag = child.tag
            if isinstance(tag, str) and (tag[0] != "{" or tag.startswith(_NS_OPEN)):
                index.setdefault(tag[tag.find("}") + 1 :], []).append(child)
        self._indexes[parent] = index
        return index

    def children(self, parent: etree._Element | None, name: str) -> list[etree._Element]:
        if parent is None:
            return []
        return list(self._index(parent).get(name, ()))

    def child(self, parent: etree._Element | None, name: str) -> etree._Element | None:
        if parent is None:
            return None
        found = self._index(parent).get(name)
        return found[0] if found else None

    def text(self, parent: etree._Element | None, name: str) -> str | None:
        element = self.child(parent, name)
        if element is None or element.text is None:
            return None
        value = element.text.strip()
        return value or None

    def typed(self, parent: etree._Element | None, name: str, convert: Callable[[str], T], expected: str) -> T | None:
        return self.convert(parent, self.text(parent, name), name, convert, expected)

    def values(self, parent: etree._Element | None) -> dict[str, str | None]:
        """Per local name, what :meth:`text` gives for ``parent``: read once per parent.

        A record (an organisation, the header, ...) reads most of its children, so their
        texts are taken in one go instead of one lookup each.
        """
        if parent is None:
            return _NO_VALUES
        found = self._values.get(parent)
        if found is not None:
            return found
        values: dict[str, str | None] = {}
        for local, elements in self._index(parent).items():
            value = elements[0].text
            if value is not None:
                value = value.strip() or None
            values[local] = value
        self._values[parent] = values
        return values

    def convert(
        self, parent: etree._Element | None, value: str | None, name: str, convert: Callable[[str], T], expected: str
    ) -> T | None:
        """:meth:`typed` for a value already read (from :meth:`values`)."""
        if value is None:
            return None
        try:
            return convert(value)
        except ValueError:
            element = self.child(parent, name)
            self.problems.append(
                Problem(
                    f"{name} is {value!r}, expected {expected}",
                    path=element_path(element),
                    line=element.sourceline,
                    code="value",
                )
            )
            return None

    def note_unknown(self, parent: etree._Element, known: set[str]) -> None:
        for child in parent:
            if not isinstance(child.tag, str):
                continue
            if _is_edxml(child) and _local(child) in known:
                continue
            if _local(child) == "Signature" and etree.QName(child).namespace in (DSIG_NS, NS, None):
                continue
            xml = etree.tostring(child, encoding="unicode", with_tail=False)
            self.unknown.append(UnknownElement(element_path(child), child.sourceline, xml))

    def walk_unknown(self, element: etree._Element) -> None:
        """Record unknown children everywhere below ``element`` (Signature excluded)."""
        name = _local(element)
        if name == "Signature":
            return
        known = _KNOWN.get(name)
        if name == "MessageHeader":
            known = _EDOC_HEADER | _STATUS_HEADER | {"StaffInfo"}
        if known is None:
            return
        self.note_unknown(element, known)
        for child in element:
            if isinstance(child.tag, str) and _is_edxml(child) and _local(child) in known:
                self.walk_unknown(child)

    # -- messages ------------------------------------------------------------------------

    def message(self, look_for_unknown: bool = True) -> Message:
        root = self.raw.root
        if _local(root) != "edXML":
            raise EdxmlError(
                Problem(
                    f"root element is {_local(root)!r}, expected 'edXML'",
                    path=element_path(root),
                    line=root.sourceline,
                    code="structure",
                )
            )
        envelope = self.child(root, "edXMLEnvelope")
        header_el = self.child(self.child(envelope, "edXMLHeader"), "MessageHeader")
        if header_el is None:
            raise EdxmlError(
                Problem(
                    "no edXMLEnvelope/edXMLHeader/MessageHeader: this is not an edXML message",
                    path=element_path(root),
                    line=root.sourceline,
                    code="structure",
                )
            )
        if look_for_unknown:
            self.walk_unknown(root)
        if self.child(header_el, "StatusCode") is not None:
            message: Message = self.status(header_el)
        else:
            message = self.edoc(root, envelope, header_el)
        message.unknown = self.unknown
        return message

    def status(self, h: etree._Element) -> Status:
        v = self.values(h)
        return Status(
            from_=self.organization(self.child(h, "From")),
            response_for=[self.response_for(e) for e in self.children(h, "ResponseFor")],
            staff_info=self.staff_info(self.child(h, "StaffInfo")),
            status_code=v.get("StatusCode"),
            description=v.get("Description"),
            timestamp=self.convert(h, v.get("Timestamp"), "Timestamp", parse_timestamp, "a time as yyyy/MM/dd HH:mm:ss"),
        )

    def edoc(self, root: etree._Element, envelope: etree._Element, h: etree._Element) -> Edoc:
        header = self.child(envelope, "edXMLHeader")
        traces = self.child(header, "TraceHeaderList")
        code = self.values(self.child(h, "Code"))
        promulgation_el = self.child(h, "PromulgationInfo")
        promulgation = self.values(promulgation_el)
        doctype = self.values(self.child(h, "DocumentType"))
        signer = self.values(self.child(h, "SignerInfo"))
        v = self.values(h)
        manifest = [self.reference(e) for e in self.children(self.child(self.child(envelope, "edXMLBody"), "edXMLManifest"), "Reference")]
        return Edoc(
            from_=self.organization(self.child(h, "From")),
            to=[self.organization(e) for e in self.children(h, "To")],
            document_id=v.get("DocumentId"),
            code=Code(code.get("CodeNumber"), code.get("CodeNotation")),
            promulgation=PromulgationInfo(
                promulgation.get("Place"),
                self.convert(promulgation_el, promulgation.get("PromulgationDate"), "PromulgationDate", parse_date,
                             "a date as yyyy/MM/dd"),
            ),
            document_type=DocumentType(doctype.get("Type"), doctype.get("TypeDetail"), doctype.get("TypeName")),
            subject=v.get("Subject"),
            content=v.get("Content"),
            signer_info=SignerInfo(signer.get("Competence"), signer.get("Position"), signer.get("FullName")),
            due_date=self.convert(h, v.get("DueDate"), "DueDate", parse_date, "a date as yyyy/MM/dd"),
            other_info=self.other_info(self.child(h, "OtherInfo")),
            steering_type=self.convert(h, v.get("SteeringType"), "SteeringType", int, "an integer (0, 1 or 2)"),
            to_places=self.texts(self.child(h, "ToPlaces"), "Place"),
            response_for=[r for r in (self.response_for(e) for e in self.children(h, "ResponseFor")) if r != ResponseFor()],
            trace_headers=[self.trace_header(e) for e in self.children(traces, "TraceHeader")],
            business=self.business(self.child(traces, "Bussiness")),
            manifest=manifest,
            attachments=self.attachments(self.child(root, "AttachmentEncoded"), manifest),
        )

    # -- parts ---------------------------------------------------------------------------

    def texts(self, parent: etree._Element | None, name: str) -> list[str]:
        values = []
        for element in self.children(parent, name):
            value = (element.text or "").strip()
            if value:
                values.append(value)
        return values

    def organization(self, e: etree._Element | None) -> Organization:
        v = self.values(e)
        return Organization(
            organ_id=v.get("OrganId"),
            organization_in_charge=v.get("OrganizationInCharge"),
            organ_name=v.get("OrganName"),
            organ_add=v.get("OrganAdd"),
            email=v.get("Email"),
            telephone=v.get("Telephone"),
            fax=v.get("Fax"),
            website=v.get("Website"),
        )

    def other_info(self, e: etree._Element | None) -> OtherInfo:
        v = self.values(e)
        return OtherInfo(
            priority=self.convert(e, v.get("Priority"), "Priority", int, "an integer 0-4"),
            sphere_of_promulgation=v.get("SphereOfPromulgation"),
            typer_notation=v.get("TyperNotation"),
            promulgation_amount=self.convert(e, v.get("PromulgationAmount"), "PromulgationAmount", int, "an integer"),
            page_amount=self.convert(e, v.get("PageAmount"), "PageAmount", int, "an integer"),
            direction=self.convert(e, v.get("Direction"), "Direction", parse_bool, "true or false"),
            appendixes=self.texts(self.child(e, "Appendixes"), "Appendix"),
        )

    def response_for(self, e: etree._Element) -> ResponseFor:
        v = self.values(e)
        return ResponseFor(
            organ_id=v.get("OrganId"),
            code=v.get("Code"),
            promulgation_date=self.convert(e, v.get("PromulgationDate"), "PromulgationDate", parse_date,
                                           "a date as yyyy/MM/dd"),
            document_id=v.get("DocumentId"),
        )

    def trace_header(self, e: etree._Element) -> TraceHeader:
        v = self.values(e)
        return TraceHeader(
            organ_id=v.get("OrganId"),
            timestamp=self.convert(e, v.get("Timestamp"), "Timestamp", parse_timestamp, "a time as yyyy/MM/dd HH:mm:ss"),
        )

    def staff_info(self, e: etree._Element | None) -> StaffInfo | None:
        if e is None:
            return None
        v = self.values(e)
        return StaffInfo(department=v.get("Department"), staff=v.get("Staff"), email=v.get("Email"), mobile=v.get("Mobile"))

    def business(self, e: etree._Element | None) -> Business | None:
        if e is None:
            return None
        info = self.child(e, "BussinessDocumentInfo")
        v = self.values(e)
        iv = self.values(info)
        return Business(
            document_id=v.get("DocumentId"),
            business_doc_type=self.convert(e, v.get("BussinessDocType"), "BussinessDocType", int, "an integer 0-3"),
            business_doc_reason=v.get("BussinessDocReason"),
            paper=self.convert(e, v.get("Paper"), "Paper", int, "0 or 1"),
            business_document_info=None
            if info is None
            else BusinessDocumentInfo(
                document_info=self.convert(info, iv.get("DocumentInfo"), "DocumentInfo", int, "0 or 1"),
                document_receiver=self.convert(info, iv.get("DocumentReceiver"), "DocumentReceiver", int, "0 or 1"),
                receivers=[
                    Receiver(self.text(r, "OrganId"), self.typed(r, "ReceiverType", int, "an integer"))
                    for r in self.children(self.child(info, "ReceiverList"), "Receiver")
                ],
            ),
            replacement_info=[
                ReplacementInfo(self.text(r, "DocumentId"), self.texts(self.child(r, "OrganIdList"), "OrganId"))
                for r in self.children(self.child(e, "ReplacementInfoList"), "ReplacementInfo")
            ],
            staff_info=self.staff_info(self.child(e, "StaffInfo")),
        )

    def reference(self, e: etree._Element) -> ManifestReference:
        href = e.get(f"{{{XLINK_NS}}}href") or e.get("href")
        v = self.values(e)
        content_id = v.get("ContentId") or (href or "")
        return ManifestReference(
            content_id=bare_cid(content_id),
            attachment_name=v.get("AttachmentName"),
            content_type=v.get("ContentType"),
            description=v.get("Description"),
            href=href or None,
        )

    def attachments(self, container: etree._Element | None, manifest: list[ManifestReference]) -> list[Attachment]:
        entries = [(self.values(e), self.child(e, "ContentTransferEncoded")) for e in self.children(container, "Attachment")]
        return self.attachments_from(entries, manifest)

    def attachments_from(
        self, entries: list[tuple[dict[str, str | None], etree._Element | None]], manifest: list[ManifestReference]
    ) -> list[Attachment]:
        """The attachments, from each one's values (as :meth:`values` reads them) and payload
        element: shared with the fast path (:mod:`connector.edxml.fastpath`), so both unwrap
        and name attachments the same way."""
        by_cid = {m.content_id: m for m in manifest}
        result = []
        for v, payload_el in entries:
            cid = bare_cid(v.get("ContentId") or "")
            ref = by_cid.get(cid)
            name = v.get("AttachmentName") or (ref.attachment_name if ref else None) or cid or "attachment"
            wire_type = v.get("ContentType") or (ref.content_type if ref else None)
            data = self.raw.payload_for(payload_el) if payload_el is not None else None
            packaging, content_type = "plain", wire_type or guess_type(name)
            if data is not None and (wire_type or "").lower() in _ZIP_TYPES and not name.lower().endswith(".zip"):
                inner = self.unwrapped(data, payload_el, name, wire_type)
                if inner is not None:
                    data, packaging, content_type = inner, "zip", guess_type(name)
            result.append(
                Attachment(
                    content_id=cid,
                    name=name,
                    content_type=content_type,
                    description=v.get("Description") or (ref.description if ref else None),
                    packaging=packaging,
                    data=data,
                )
            )
        return result

    def unwrapped(self, data, payload_el: etree._Element, name: str, wire_type: str | None):
        """The inner file of a VNPT one-entry ZIP, or None when the content is not one.

        Content declared a ZIP that is not a one-entry ZIP (not a ZIP at all, an empty one,
        several entries, a folder) is kept as sent, with a warning: the receiver gets the
        bytes under the attachment's name, not the file the sender meant."""
        try:
            inner = unwrap(data, spool_memory=self.raw_limits.spool_memory, spool_dir=self.spool_dir)
        except UnwrapError as exc:
            self.problems.append(
                Problem(str(exc), path=element_path(payload_el), line=payload_el.sourceline, code="zip")
            )
            return None
        if inner is None:
            self.problems.append(
                Problem(
                    f"attachment {name!r} is declared {wire_type} but is not a one-entry ZIP: kept as sent",
                    path=element_path(payload_el),
                    line=payload_el.sourceline,
                    severity="warning",
                    code="zip",
                )
            )
            return None
        self.raw.replace_payload(payload_el, inner)
        return inner


_ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/x-zip"}


# --------------------------------------------------------------------------- value formats

_DATE_RE = re.compile(r"^(\d{4})[/-](\d{1,2})[/-](\d{1,2})$")
_TIME_RE = re.compile(
    r"^(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


_DMY_RE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")


def parse_date(value: str) -> date:
    """``yyyy/MM/dd`` (the wire format), ISO ``yyyy-MM-dd``, or Vietnamese ``dd/MM/yyyy``.

    Some producers (Bkav's samples) write ``dd/MM/yyyy``; it is read, and validation warns.
    A timestamp gives its date.
    """
    match = _DATE_RE.match(value)
    if match:
        return date(int(match[1]), int(match[2]), int(match[3]))
    match = _DMY_RE.match(value)
    if match:
        return date(int(match[3]), int(match[2]), int(match[1]))
    return parse_timestamp(value).date()


def parse_timestamp(value: str) -> datetime:
    """``yyyy/MM/dd HH:mm:ss`` in Vietnam time (the wire format), or ISO 8601 with an offset."""
    match = _TIME_RE.match(value)
    if not match:
        raise ValueError(value)
    year, month, day, hour, minute, second, zone = match.groups()
    moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    if zone:
        iso = datetime.fromisoformat(moment.isoformat() + ("+00:00" if zone == "Z" else _colon(zone)))
        return iso.astimezone(VN_TZ)
    return moment.replace(tzinfo=VN_TZ)


def _colon(zone: str) -> str:
    return zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError(value)


bare_cid = bare_content_id


@lru_cache(maxsize=1024)
def guess_type(name: str) -> str:
    """The content type a file name suggests (non-strict: .rar, .docm, ... too).

    Remembered per name: the lookup costs more than the rest of reading a small attachment,
    and the same names come back document after document."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


__all__ = ["Parsed", "parse", "parse_date", "parse_timestamp", "bare_cid", "guess_type"]
