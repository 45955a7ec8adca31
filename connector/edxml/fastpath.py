"""The parser's fast path: clean documents validated by a strict schema and read in one lean pass.

:func:`connector.edxml.parse.parse` normally validates by walking every element in Python
(:mod:`connector.edxml.validate`) and then reads the model through per-element indexes
(``parse._Extractor``): careful, precise, and about five times dearer per element than C.
Most documents are clean: every element known, qualified, in the standard's order, every
value in the standard's form. For those, :func:`extract`

1. lets libxml2 check the structure against the strict schema
   (:mod:`connector.edxml.strict_schema`), and screens in C what a schema cannot see
   (processing instructions and comments, which split text; ``xsi:`` attributes, which
   libxml2 allows anywhere; an ``edXML`` element nested inside the Signature, which the
   lenient schema would validate and the strict one skips);
2. reads the model in one pass over the known shape, running on the values the same leaf,
   message and manifest checks the careful path runs (same predicates, same conversions).

Any doubt ends the fast path: :func:`extract` returns None the moment anything would give a
problem (an error *or* a warning) or a conversion could fail, and the caller runs the careful
path from scratch on the same, untouched tree. So the fast path only ever returns documents on
which the careful path reports nothing, with an equal model (tests/edxml/test_fastpath.py
checks both on a broad corpus). Attachments are the one step taken after the decision: both
paths unwrap them through the same code (``parse._Extractor.attachments_from``), whose
problems (a broken ZIP; content declared a ZIP that is no one-entry ZIP, a warning) are the
parser's, not validation's.

``ENABLED = False`` turns the fast path off (the careful path then runs for every document).
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import TypeVar

from lxml import etree

from .model import (
    BUSINESS_DOC_TYPES,
    NS,
    PRIORITIES,
    STATUS_CODES,
    XLINK_NS,
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
    bare_content_id,
)
from .names import check_attachment_name
from .reader import RawDocument
from .strict_schema import strict_schema
from .wire_dates import standard_date, standard_timestamp

#: Set to False to send every document down the careful path (tests compare the two).
ENABLED = True

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


T = TypeVar("T")


class _Doubt(Exception):
    """Something the careful path would have a word about: leave the document to it."""


def _t(local: str) -> str:
    return f"{{{NS}}}{local}"


_EDXML = _t("edXML")

# What the strict schema lets through but the careful path would remark on (see the module
# docstring): ``xsi:`` attributes anywhere; processing instructions or comments (they split
# text); an edXML element other than the root (it can only sit inside the Signature).
_XSI_ATTRIBUTES = etree.XPath("boolean(descendant-or-self::*/@xsi:*)", namespaces={"xsi": XSI_NS})


def _screened(root: etree._Element) -> bool:
    """True when the tree holds nothing of the above (each test runs in C)."""
    odd = root.iter(etree.PI, etree.Comment, _EDXML)
    next(odd)  # the root itself
    return next(odd, None) is None and not _XSI_ATTRIBUTES(root)


# --------------------------------------------------------------------------- records


class _Shape:
    """The children of a record type: their tags and positions, in the strict schema's order
    when it fixes one (``ordered``; a record of leaves only may come in any order)."""

    __slots__ = ("ordered", "position", "size")

    def __init__(self, *locals_: str, ordered: bool = False) -> None:
        self.position = {_t(name): index for index, name in enumerate(locals_)}
        self.size = len(locals_)
        self.ordered = ordered


def _values(el: etree._Element, shape: _Shape, absent: object = None) -> list:
    """A record's values in the shape's order; ``None`` for an empty element, ``absent`` for
    a missing one. (A value is the text without surrounding whitespace, as the careful path
    reads it.)

    The strict schema allows each child at most once: where it also fixes their order, a
    record with as many children as its shape has them all, in order, and needs no tag read.
    """
    if shape.ordered:
        values = [(text.strip() or None) if (text := child.text) else None for child in el]
        if len(values) == shape.size:
            return values
    values = [absent] * shape.size
    position = shape.position
    for child in el:
        text = child.text
        values[position[child.tag]] = (text.strip() or None) if text else None
    return values


def _leaves_and_others(el: etree._Element, leaves: _Shape, absent: object = None) -> tuple[list, list]:
    """For a record that mixes leaves and records (MessageHeader, Bussiness): the values of
    the leaves named in ``leaves`` (``absent`` for a missing one), and the other children."""
    values = [absent] * leaves.size
    position = leaves.position
    others = []
    for child in el:
        at = position.get(child.tag)
        if at is None:
            others.append(child)
        else:
            text = child.text
            values[at] = (text.strip() or None) if text else None
    return values, others


def _text(el: etree._Element) -> str | None:
    text = el.text
    return (text.strip() or None) if text else None


def _texts(el: etree._Element | None) -> list[str]:
    """The non-empty values of a list of leaves (Appendix, Place, OrganId)."""
    if el is None:
        return []
    return [value for child in el if (text := child.text) and (value := text.strip())]


_ORGANIZATION = _Shape("OrganId", "OrganizationInCharge", "OrganName", "OrganAdd", "Email", "Telephone", "Fax",
                       "Website")
_CODE = _Shape("CodeNumber", "CodeNotation")
_PROMULGATION = _Shape("Place", "PromulgationDate")
_DOCUMENT_TYPE = _Shape("Type", "TypeDetail", "TypeName")
_SIGNER = _Shape("Competence", "Position", "FullName")
_RESPONSE = _Shape("OrganId", "Code", "PromulgationDate", "DocumentId")
_STAFF = _Shape("Department", "Staff", "Email", "Mobile")
_TRACE = _Shape("OrganId", "Timestamp")
_RECEIVER = _Shape("OrganId", "ReceiverType")
_REFERENCE = _Shape("ContentId", "ContentType", "Description", "AttachmentName")
_ATTACHMENT = _Shape("ContentId", "AttachmentName", "Description", "ContentType", "ContentTransferEncoded")
# Records that also hold a list or a record (last): its value is whitespace, read and dropped.
_OTHER_INFO = _Shape("Priority", "SphereOfPromulgation", "TyperNotation", "PromulgationAmount", "PageAmount",
                     "Direction", "Appendixes", ordered=True)
_BUSINESS_INFO = _Shape("DocumentInfo", "DocumentReceiver", "ReceiverList", ordered=True)
_REPLACEMENT = _Shape("DocumentId", "OrganIdList", ordered=True)


# --------------------------------------------------------------------------- values
#
# Each function accepts only values on which the careful path's leaf check (validate.py
# ``_LEAF_CHECKS``) is silent and for which its conversion (parse.py) succeeds, and converts
# them as parse.py does; any other value raises _Doubt (a few the careful path would pass
# quietly too, such as dates in full-width digits). ``None`` is an absent or empty element,
# on which the checks are silent.


def _agency(value: str | None) -> str | None:
    if value is not None and not _is_agency_code(value):
        raise _Doubt
    return value


@lru_cache(maxsize=256)
def _is_agency_code(value: str) -> bool:
    from .validate import AGENCY_CODE_RE

    return AGENCY_CODE_RE.match(value) is not None


def _date(value: str | None) -> date | None:
    """A real date written ``yyyy/MM/dd`` in ASCII digits, as ``parse_date`` reads it."""
    return None if value is None else _standard(standard_date(value))


def _timestamp(value: str | None) -> datetime | None:
    """A real time written ``yyyy/MM/dd HH:mm:ss`` in ASCII digits, in Vietnam time as
    ``parse_timestamp`` reads it."""
    return None if value is None else _standard(standard_timestamp(value))


def _standard(read: T | None) -> T:
    """What a value in the standard form reads as; any other form is the careful path's."""
    if read is None:
        raise _Doubt
    return read


def _integer(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise _Doubt
    return int(value)


def _code(value: str | None, allowed) -> int | None:
    """One of the integer codes in ``allowed`` (validate.py ``_enum``)."""
    number = _integer(value)
    if number is not None and number not in allowed:
        raise _Doubt
    return number


_STEERING = (0, 1, 2)  # validate.STEERING_TYPES
_FLAGS = (0, 1)  # validate.PAPER, validate.FLAG
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _boolean(value: str | None) -> bool | None:
    if value is None:
        return None
    try:
        return _BOOLEANS[value]
    except KeyError:
        raise _Doubt from None


def _document_id(value: str | None) -> str | None:
    """A DocumentId; one in the VNPT form must carry a real date (else the careful path warns)."""
    if value is not None and "," in value and not _document_id_is_clean(value):
        raise _Doubt
    return value


@lru_cache(maxsize=256)
def _document_id_is_clean(value: str) -> bool:
    from .validate import _VNPT_DOCUMENT_ID, _real_date

    match = _VNPT_DOCUMENT_ID.match(value)
    return match is None or _real_date(*(int(g) for g in match.groups()))


def _attachment_name(value: str | None) -> str | None:
    """An AttachmentName that is there: safe, with nothing to warn about (empty is an error)."""
    if not _name_is_clean(value or ""):
        raise _Doubt
    return value


@lru_cache(maxsize=256)
def _name_is_clean(value: str) -> bool:
    errors, warnings = check_attachment_name(value)
    return not errors and not warnings


# --------------------------------------------------------------------------- the pass

Entries = list[tuple[dict[str, "str | None"], "etree._Element | None"]]


def extract(raw: RawDocument) -> tuple[Message, Entries] | None:
    """The message of a clean document, without its attachments, or None: take the careful path.

    Returns ``(message, attachment entries)``: each entry is an attachment's values (by local
    name, as ``parse._Extractor.values`` reads them) and its payload element, for
    ``parse._Extractor.attachments_from`` (edocs only; a status has none). Changes neither the
    tree nor the payloads.
    """
    root = raw.root
    if raw.problems or not strict_schema().validate(root) or not _screened(root):
        return None
    try:
        return _message(root)
    except _Doubt:
        return None


_ABSENT = object()  # an element that is not there (None: there, but empty)

# MessageHeader: its leaves, by tag, and its records.
_HEADER_LEAVES = _Shape("DocumentId", "Subject", "Content", "DueDate", "SteeringType", "StatusCode", "Description",
                        "Timestamp")
_FROM = _t("From")
_TO = _t("To")
_RESPONSE_FOR = _t("ResponseFor")
_CODE_TAG = _t("Code")
_PROMULGATION_TAG = _t("PromulgationInfo")
_DOCUMENT_TYPE_TAG = _t("DocumentType")
_SIGNER_TAG = _t("SignerInfo")
_OTHER_INFO_TAG = _t("OtherInfo")
_TO_PLACES_TAG = _t("ToPlaces")
_STAFF_INFO = _t("StaffInfo")
_TRACE_LIST = _t("TraceHeaderList")
_TRACE_HEADER = _t("TraceHeader")
_BUSINESS_LEAVES = _Shape("DocumentId", "BussinessDocType", "BussinessDocReason", "Paper")
_BUSINESS_INFO_TAG = _t("BussinessDocumentInfo")
_REPLACEMENT_LIST = _t("ReplacementInfoList")
_XLINK_HREF = f"{{{XLINK_NS}}}href"


def _message(root: etree._Element) -> tuple[Message, Entries]:
    # The strict schema fixes the frame: edXMLEnvelope, then AttachmentEncoded (optional); in
    # the envelope edXMLHeader, then edXMLBody (optional, holding edXMLManifest); in the
    # header MessageHeader, then TraceHeaderList (optional), then the Signature (optional).
    envelope = root[0]
    header = envelope[0]
    message_header = header[0]

    leaves, others = _leaves_and_others(message_header, _HEADER_LEAVES, _ABSENT)
    to: list[etree._Element] = []
    responses: list[etree._Element] = []
    records: dict[str, etree._Element] = {}
    for child in others:
        tag = child.tag
        if tag == _TO:
            to.append(child)
        elif tag == _RESPONSE_FOR:
            responses.append(child)
        else:
            records[tag] = child
    document_id, subject, content, due, steering, status_code, description, timestamp = (
        None if value is _ABSENT else value for value in leaves
    )

    # Every value is checked whatever the kind of message, as the careful path's walk does;
    # each kind then takes its own.
    document_id = _document_id(document_id)
    due_date = _date(due)
    steering_type = _code(steering, _STEERING)
    moment = _timestamp(timestamp)
    from_ = _organization(records[_FROM])
    if from_.organ_id is None:
        raise _Doubt  # the sender has no agency code
    recipients = [_organization(el) for el in to]
    response_for = [_response(el) for el in responses]
    el = records.get(_STAFF_INFO)
    staff_info = None if el is None else StaffInfo(*_values(el, _STAFF))
    el = records.get(_CODE_TAG)
    code = Code() if el is None else Code(*_values(el, _CODE))
    el = records.get(_PROMULGATION_TAG)
    if el is None:
        promulgation = PromulgationInfo()
    else:
        place, when = _values(el, _PROMULGATION)
        promulgation = PromulgationInfo(place, _date(when))
    el = records.get(_DOCUMENT_TYPE_TAG)
    document_type = DocumentType() if el is None else DocumentType(*_values(el, _DOCUMENT_TYPE))
    el = records.get(_SIGNER_TAG)
    signer_info = SignerInfo() if el is None else SignerInfo(*_values(el, _SIGNER))
    other_info = _other_info(records.get(_OTHER_INFO_TAG))
    to_places = _texts(records.get(_TO_PLACES_TAG))

    trace_headers: list[TraceHeader] = []
    business = None
    if len(header) > 1 and (traces := header[1]).tag == _TRACE_LIST:
        for child in traces:
            if child.tag == _TRACE_HEADER:
                organ_id, stamp = _values(child, _TRACE)
                trace_headers.append(TraceHeader(_agency(organ_id), _timestamp(stamp)))
            else:
                business = _business(child)

    manifest, keys = _manifest(envelope[1] if len(envelope) > 1 else None)
    entries = [_attachment(el) for el in root[1]] if len(root) > 1 else []
    _check_manifest(manifest, keys, entries)

    if leaves[5] is not _ABSENT:  # a StatusCode makes it a status message
        # It answers a document, has a time, and a rejection says why.
        if status_code not in STATUS_CODES or not response_for or leaves[7] is _ABSENT:
            raise _Doubt
        if status_code == "02" and description is None:
            raise _Doubt
        status = Status(
            from_=from_,
            response_for=response_for,
            staff_info=staff_info,
            status_code=status_code,
            description=description,
            timestamp=moment,
        )
        return status, []
    if not recipients or any(organization.organ_id is None for organization in recipients):
        raise _Doubt  # an edoc needs recipients, each with an agency code
    edoc = Edoc(
        from_=from_,
        to=recipients,
        document_id=document_id,
        code=code,
        promulgation=promulgation,
        document_type=document_type,
        subject=subject,
        content=content,
        signer_info=signer_info,
        due_date=due_date,
        other_info=other_info,
        steering_type=steering_type,
        to_places=to_places,
        response_for=response_for,
        trace_headers=trace_headers,
        business=business,
        manifest=manifest,
    )
    return edoc, entries


def _organization(el: etree._Element) -> Organization:
    values = _values(el, _ORGANIZATION)
    _agency(values[0])
    return Organization(*values)


def _response(el: etree._Element) -> ResponseFor:
    organ_id, code, when, document_id = _values(el, _RESPONSE)
    if organ_id is None:
        raise _Doubt  # empty, or no agency for the answered document: the careful path warns
    return ResponseFor(_agency(organ_id), code, _date(when), _document_id(document_id))


def _other_info(el: etree._Element | None) -> OtherInfo:
    if el is None:
        return OtherInfo()
    priority, sphere, typer, amount, pages, direction, _ = _values(el, _OTHER_INFO)
    appendixes: list[str] = []
    if len(el) and (last := el[-1]).tag == _APPENDIXES:  # Appendixes comes last
        appendixes = _texts(last)
    return OtherInfo(
        priority=_code(priority, PRIORITIES),
        sphere_of_promulgation=sphere,
        typer_notation=typer,
        promulgation_amount=_integer(amount),
        page_amount=_integer(pages),
        direction=_boolean(direction),
        appendixes=appendixes,
    )


def _business(el: etree._Element) -> Business:
    leaves, others = _leaves_and_others(el, _BUSINESS_LEAVES)
    info = None
    replacements: list[ReplacementInfo] = []
    staff_info = None
    for child in others:
        tag = child.tag
        if tag == _BUSINESS_INFO_TAG:
            info = _business_info(child)
        elif tag == _REPLACEMENT_LIST:
            replacements = [_replacement(r) for r in child]
        else:  # StaffInfo
            staff_info = StaffInfo(*_values(child, _STAFF))
    document_id, doc_type, reason, paper = leaves
    return Business(
        document_id=_document_id(document_id),
        business_doc_type=_code(doc_type, BUSINESS_DOC_TYPES),
        business_doc_reason=reason,
        paper=_code(paper, _FLAGS),
        business_document_info=info,
        replacement_info=replacements,
        staff_info=staff_info,
    )


def _business_info(el: etree._Element) -> BusinessDocumentInfo:
    document_info, document_receiver, _ = _values(el, _BUSINESS_INFO)
    receivers: list[Receiver] = []
    if len(el) and (last := el[-1]).tag == _RECEIVER_LIST:
        for receiver in last:
            organ_id, kind = _values(receiver, _RECEIVER)
            receivers.append(Receiver(_agency(organ_id), _integer(kind)))
    return BusinessDocumentInfo(_code(document_info, _FLAGS), _code(document_receiver, _FLAGS), receivers)


def _replacement(el: etree._Element) -> ReplacementInfo:
    document_id, _ = _values(el, _REPLACEMENT)
    organ_ids: list[str] = []
    if len(el) and (last := el[-1]).tag == _ORGAN_ID_LIST:
        organ_ids = [_agency(value) for value in _texts(last)]  # type: ignore[misc]
    return ReplacementInfo(_document_id(document_id), organ_ids)


def _manifest(body: etree._Element | None) -> tuple[list[ManifestReference], list[list[str]]]:
    """The manifest and, per reference, the ids it answers to (validate.py ``_reference_keys``:
    its ContentId, then its xlink:href or href; bare, non-empty, distinct)."""
    references: list[ManifestReference] = []
    keys: list[list[str]] = []
    if body is None:
        return references, keys
    for el in body[0]:
        content_id, content_type, description, name = _values(el, _REFERENCE, _ABSENT)
        content_id = None if content_id is _ABSENT else content_id
        if name is _ABSENT:
            name = None
        else:
            _attachment_name(name)
        href = el.get(_XLINK_HREF) or el.get("href")
        references.append(
            ManifestReference(
                content_id=bare_content_id(content_id or (href or "")),
                attachment_name=name,
                content_type=None if content_type is _ABSENT else content_type,
                description=None if description is _ABSENT else description,
                href=href or None,
            )
        )
        ids = (bare_content_id(content_id or ""), bare_content_id(href or ""))
        keys.append(list(dict.fromkeys(key for key in ids if key)))
    return references, keys


def _attachment(el: etree._Element) -> tuple[dict[str, str | None], etree._Element | None]:
    """An attachment's values by local name (what ``parse._Extractor.values`` gives for the
    names it reads) and its payload element."""
    content_id, name, description, content_type, _ = _values(el, _ATTACHMENT, _ABSENT)
    if name is _ABSENT:
        raise _Doubt  # no name to save the file under
    _attachment_name(name)
    payload = next(el.iterchildren(_PAYLOAD), None)
    if payload is None:
        raise _Doubt  # no content to deliver: an error on the careful path
    values = {
        "ContentId": None if content_id is _ABSENT else content_id,
        "AttachmentName": name,
        "Description": None if description is _ABSENT else description,
        "ContentType": None if content_type is _ABSENT else content_type,
    }
    return values, payload


def _check_manifest(manifest: list[ManifestReference], keys: list[list[str]], entries: Entries) -> None:
    """validate.py's manifest rules: references and attachments match one to one by id."""
    by_id: dict[str, dict] = {}
    for values, _payload in entries:
        key = bare_content_id(values["ContentId"] or "")
        if not key or key in by_id:
            raise _Doubt  # no id, or an id used twice
        by_id[key] = values
    referenced: set[str] = set()
    for ref, ids in zip(manifest, keys, strict=True):
        if len(ids) != 1 or ids[0] in referenced:
            raise _Doubt  # no id, two ids that disagree, or listed twice
        values = by_id.get(ids[0])
        if values is None:
            raise _Doubt  # it names no attachment
        referenced.add(ids[0])
        name = values["AttachmentName"]
        if ref.attachment_name and name and ref.attachment_name != name:
            raise _Doubt  # the two names differ
    if len(referenced) != len(by_id):
        raise _Doubt  # an attachment the manifest does not list


_APPENDIXES = _t("Appendixes")
_RECEIVER_LIST = _t("ReceiverList")
_ORGAN_ID_LIST = _t("OrganIdList")
_PAYLOAD = _t("ContentTransferEncoded")

__all__ = ["ENABLED", "extract"]
