"""The provincial eDoc hub's SOAP 1.1 envelopes, quirks included; shared by client and sandbox.

Follows ``soap-hub-contract.md`` exactly: SOAP 1.1 only; the operation is the ``SOAPAction``
value; the ``edXML`` prefix is ``http://www.e-doc.vn/Schema/``; request wrappers
(``GetPendingDocumentIdsRequest``, ``GetDocumentRequest``, ``ConfirmReceived``, ``GetTraces``,
``GetOrganizations``, the UpdateTraces ``Status`` and the ``CheckPermission`` header) and their
children are in NO namespace; every response is wrapped in ``edXML:<Operation>Response``
except GetDocument, whose answer is the document itself (Manifest references with
``xlink:href``, parts carrying base64 text) or a bare ``edXML:Report``.

Builders return envelope bytes (UTF-8, with an XML declaration); parsers take the envelope's
root element from :func:`parse_envelope`, which refuses DTDs/entities and bounds the input
(the codec's :func:`connector.edxml.reader.read` does the safe parse). Readers are lenient
where the hub is: they match elements by local name in the edXML namespace or none, accept
``Business``/``Bussiness``, ``OrganizationInCharge``/``OrganInCharge``, and both
``yyyy/MM/dd`` and ``dd/MM/yyyy`` dates.

Model mapping: an :class:`~connector.edxml.model.Edoc` travels as the MessageHeader +
TraceHeaderList; its attachments become parts with raw file bytes (the hub never ZIP-wraps:
``Attachment.packaging`` is ignored on the way out and ``"plain"`` on the way in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from lxml import etree

from connector.edxml.errors import EdxmlError
from connector.edxml.model import (
    VN_TZ,
    XLINK_NS,
    Attachment,
    AttachmentData,
    Business,
    BusinessDocumentInfo,
    Code,
    DocumentType,
    Edoc,
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
from connector.edxml.parse import guess_type
from connector.edxml.reader import Limits, read

from .errors import AxisError, ProtocolError, RetryableAxisError, UnknownRecipientError, ValidationError, hub_error_class
from .multipart import MultipartError, OutPart, decode_base64

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
EDXML_NS = "http://www.e-doc.vn/Schema/"
SOAP_CONTENT_TYPE = "text/xml; charset=UTF-8"

OPERATIONS = (
    "SendDocument",
    "GetPendingDocumentIds",
    "GetDocument",
    "ConfirmReceived",
    "UpdateTraces",
    "GetTraces",
    "GetOrganizations",
    "CheckPermission",
)
# The no-namespace request element each simple operation carries in its Body.
REQUEST_ELEMENTS = {
    "GetPendingDocumentIds": "GetPendingDocumentIdsRequest",
    "GetDocument": "GetDocumentRequest",
    "ConfirmReceived": "ConfirmReceived",
    "GetTraces": "GetTraces",
    "GetOrganizations": "GetOrganizations",
}
_WITH_DOCUMENT_ID = ("GetDocument", "ConfirmReceived")
ENVELOPE_LIMITS = Limits(max_bytes=64 * 1024**2, max_depth=30, max_elements=200_000, in_memory_below=64 * 1024**2)

_S = "{%s}" % SOAP_NS
_E = "{%s}" % EDXML_NS
_NSMAP_SOAP = {"soapenv": SOAP_NS}
_NSMAP_EDXML = {"edXML": EDXML_NS}


class SoapWireError(ProtocolError):
    """An envelope is not well-formed, hostile, or not the contract's shape."""


# --------------------------------------------------------------------------- small types


@dataclass
class Credentials:
    organ_id: str = ""
    token: str = ""


@dataclass
class HubReport:
    """``edXML:Report``: success flag and the (code, description) errors."""

    is_success: bool = True
    errors: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def failure(cls, code: str | None = None, description: str = "") -> "HubReport":
        return cls(False, [(code, description)] if code else [])


@dataclass
class SimpleRequest:
    """A parsed request of a simple operation (everything except SendDocument/UpdateTraces)."""

    operation: str
    credentials: Credentials
    document_id: int | None = None
    timestamp: datetime | None = None


@dataclass
class SendDocumentRequest:
    edoc: Edoc
    credentials: Credentials


@dataclass
class UpdateTracesRequest:
    status: Status
    credentials: Credentials


# --------------------------------------------------------------------------- parsing


def parse_envelope(data: bytes, *, limits: Limits = ENVELOPE_LIMITS) -> etree._Element:
    """Safely parse envelope bytes (no DTD, no entities, bounded) and check it is SOAP 1.1."""
    try:
        raw = read(data, limits=limits)
    except EdxmlError as exc:
        raise SoapWireError(f"unreadable SOAP envelope: {exc}") from None
    raw.close()
    root = raw.root
    if root.tag != _S + "Envelope":
        raise SoapWireError(f"root element is {root.tag!r}, not a SOAP 1.1 Envelope")
    return root


def body(root: etree._Element) -> etree._Element:
    element = root.find(_S + "Body")
    if element is None:
        raise SoapWireError("the envelope has no Body")
    return element


def header(root: etree._Element) -> etree._Element | None:
    return root.find(_S + "Header")


def is_empty(root: etree._Element) -> bool:
    """True for the hub's failure signal: an envelope whose Body has no element."""
    b = root.find(_S + "Body")
    return b is None or len(b) == 0


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _ours(element: etree._Element) -> bool:
    ns = etree.QName(element).namespace if isinstance(element.tag, str) else "x"
    return ns in (None, EDXML_NS)


def _kids(parent: etree._Element | None, *names: str) -> list[etree._Element]:
    if parent is None:
        return []
    return [c for c in parent if isinstance(c.tag, str) and _local(c) in names and _ours(c)]


def _kid(parent: etree._Element | None, *names: str) -> etree._Element | None:
    found = _kids(parent, *names)
    return found[0] if found else None


def _text(parent: etree._Element | None, *names: str) -> str | None:
    element = _kid(parent, *names)
    if element is None or element.text is None:
        return None
    value = element.text.strip()
    return value or None


def _int(parent: etree._Element | None, name: str) -> int | None:
    value = _text(parent, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise SoapWireError(f"{name} must be an integer, got {value[:40]!r}") from None


_YMD = re.compile(r"^(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_DMY = re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def parse_hub_datetime(value: str) -> datetime:
    """``yyyy/MM/dd[ HH:mm:ss]`` or the database form ``dd/MM/yyyy[ HH:mm:ss]``, Vietnam time."""
    value = value.strip()
    m = _YMD.match(value)
    if m:
        y, mo, d, h, mi, s = m.groups()
    else:
        m = _DMY.match(value)
        if not m:
            raise SoapWireError(f"not a hub date: {value[:40]!r}")
        d, mo, y, h, mi, s = m.groups()
    try:
        return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=VN_TZ)
    except ValueError:
        raise SoapWireError(f"not a valid date: {value[:40]!r}") from None


def _date(parent: etree._Element | None, name: str) -> date | None:
    value = _text(parent, name)
    return parse_hub_datetime(value).date() if value else None


def _timestamp(parent: etree._Element | None, name: str) -> datetime | None:
    value = _text(parent, name)
    return parse_hub_datetime(value) if value else None


def format_date(value: date, *, database_form: bool = False) -> str:
    if database_form:
        return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"


def format_timestamp(value: datetime, *, database_form: bool = False) -> str:
    if value.tzinfo is None:
        raise ValidationError(f"timestamp {value.isoformat()} has no time zone")
    local = value.astimezone(VN_TZ)
    return f"{format_date(local.date(), database_form=database_form)} {local:%H:%M:%S}"


def hub_document_id(root: etree._Element) -> int:
    """The document id as the hub finds it: the first unprefixed element anywhere named
    ``documentId`` (any case) whose text is an integer, else 0."""
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.lower() == "documentid":
            try:
                return int((element.text or "").strip())
            except ValueError:
                return 0
    return 0


# --------------------------------------------------------------------------- building


def _envelope(header_items: Sequence[etree._Element] = (), body_items: Sequence[etree._Element] = ()) -> bytes:
    env = etree.Element(_S + "Envelope", nsmap=_NSMAP_SOAP)
    h = etree.SubElement(env, _S + "Header")
    for item in header_items:
        h.append(item)
    b = etree.SubElement(env, _S + "Body")
    for item in body_items:
        b.append(item)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def empty_envelope() -> bytes:
    """The hub's failure answer: empty Header and Body."""
    return _envelope()


def _plain(tag: str, text: object = None) -> etree._Element:
    element = etree.Element(tag)
    if text is not None:
        element.text = str(text)
    return element


def _add(parent: etree._Element, tag: str, text: object = None, *, ns: bool = True) -> etree._Element:
    element = etree.SubElement(parent, (_E if ns else "") + tag)
    if text is not None:
        element.text = str(text)
    return element


def _ed(tag: str) -> etree._Element:
    return etree.Element(_E + tag, nsmap=_NSMAP_EDXML)


def _credentials(parent: etree._Element, credentials: Credentials) -> None:
    _add(parent, "OrganId", credentials.organ_id, ns=False)
    _add(parent, "Token", credentials.token, ns=False)


def build_request(
    operation: str,
    organ_id: str,
    token: str,
    *,
    document_id: int | str | None = None,
    timestamp: datetime | None = None,
) -> bytes:
    """The envelope of a simple operation (not SendDocument/UpdateTraces), no-namespace elements.

    ``timestamp`` only for GetTraces (the non-destructive form); ``document_id`` for GetDocument
    and ConfirmReceived.
    """
    creds = Credentials(organ_id, token)
    if operation == "CheckPermission":
        check = _plain("CheckPermission")
        _credentials(check, creds)
        return _envelope([check], [])
    if operation not in REQUEST_ELEMENTS:
        raise ValueError(f"{operation!r} is not a simple hub operation")
    request = _plain(REQUEST_ELEMENTS[operation])
    _credentials(request, creds)
    if operation in _WITH_DOCUMENT_ID:
        if document_id is None:
            raise ValueError(f"{operation} needs a document id")
        _add(request, "DocumentId", int(document_id), ns=False)
    if operation == "GetTraces" and timestamp is not None:
        _add(request, "TimeStamp", format_timestamp(timestamp), ns=False)
    return _envelope([], [request])


def parse_request(operation: str, root: etree._Element) -> SimpleRequest:
    """Read a simple operation's request; raises :class:`SoapWireError` when the element is missing
    (the hub then answers with an empty envelope)."""
    if operation == "CheckPermission":
        container = next((c for c in (header(root) if header(root) is not None else []) if c.tag == "CheckPermission"), None)
    else:
        name = REQUEST_ELEMENTS.get(operation)
        if name is None:
            raise SoapWireError(f"{operation!r} is not a simple hub operation")
        container = next((c for c in body(root) if c.tag == name), None)
    if container is None:
        raise SoapWireError(f"{operation}: the no-namespace request element is missing")
    creds = Credentials(_plain_text(container, "OrganId"), _plain_text(container, "Token"))
    request = SimpleRequest(operation, creds)
    if operation in _WITH_DOCUMENT_ID:
        request.document_id = hub_document_id(root)
    if operation == "GetTraces":
        stamp = _plain_text(container, "TimeStamp")
        request.timestamp = parse_hub_datetime(stamp) if stamp else None
    return request


def _plain_text(parent: etree._Element, tag: str) -> str:
    element = parent.find(tag)
    return (element.text or "").strip() if element is not None else ""


# ----------------------------------------------------------------------- report


def build_report(report: HubReport) -> etree._Element:
    element = _ed("Report")
    _add(element, "IsSuccess", "true" if report.is_success else "false")
    errors = _add(element, "ErrorList")
    for code, description in report.errors:
        error = _add(errors, "Error")
        _add(error, "Code", code)
        _add(error, "Description", description)
    return element


def parse_report(element: etree._Element) -> HubReport:
    success = (_text(element, "IsSuccess") or "").lower() == "true"
    errors = [
        (_text(e, "Code") or "", _text(e, "Description") or "") for e in _kids(_kid(element, "ErrorList"), "Error")
    ]
    return HubReport(success, errors)


def raise_for_report(report: HubReport, operation: str) -> None:
    """Raise the :class:`AxisError` a failed report stands for (nothing on success)."""
    if report.is_success:
        return
    code, description = report.errors[0] if report.errors else (None, "")
    if not code and not description:
        description = "the hub refused the credentials (IsSuccess false, empty ErrorList)"
    raise hub_error_class(code)(description or "the hub reported a failure", code=code or None, operation=operation)


def _response(operation: str, *children: etree._Element) -> bytes:
    wrapper = _ed(f"{operation}Response")
    for child in children:
        wrapper.append(child)
    return _envelope([], [wrapper])


def report_response(operation: str, report: HubReport) -> bytes:
    """``edXML:<Operation>Response/Report`` (ConfirmReceived, UpdateTraces, CheckPermission, or any
    failure); for GetDocument a bare ``edXML:Report`` in the Body."""
    if operation == "GetDocument":
        return _envelope([], [build_report(report)])
    return _response(operation, build_report(report))


def _unwrap(root: etree._Element, operation: str) -> etree._Element:
    """The ``<Operation>Response`` element; raises on an empty Body (retryable) or failed Report."""
    if is_empty(root):
        raise EmptyBodyError(
            "the hub answered with an empty SOAP Body (unknown operation, missing request element or "
            "a structural check failed)",
            operation=operation,
        )
    b = body(root)
    raise_for_fault(b, operation)
    wrapper = _kid(b, f"{operation}Response")
    if wrapper is None:
        bare = _kid(b, "Report")
        if bare is not None:
            raise_for_report(parse_report(bare), operation)
        raise SoapWireError(f"no {operation}Response in the Body", operation=operation)
    report = _kid(wrapper, "Report")
    if report is not None:
        raise_for_report(parse_report(report), operation)
    return wrapper


def raise_for_fault(b: etree._Element, operation: str) -> None:
    """A SOAP Fault in the Body (the hub never sends one, but the ESB or a proxy in front of it
    may): ``soap:Server`` faults are retryable, any other fault code is permanent."""
    fault = b.find(_S + "Fault")
    if fault is None:
        return
    code = (fault.findtext("faultcode") or "").strip()
    reason = " ".join((fault.findtext("faultstring") or "").split())[:300] or "no faultstring"
    cls = RetryableAxisError if code.rpartition(":")[2] == "Server" else SoapWireError
    raise cls(f"the server answered with a SOAP Fault: {reason}", code=code or None, operation=operation)


class EmptyBodyError(RetryableAxisError):
    """The hub's empty-envelope failure. Retryable: see the package report for why."""


def parse_report_response(root: etree._Element, operation: str) -> HubReport:
    """Check a Report-only answer (ConfirmReceived, UpdateTraces, CheckPermission); raises on failure."""
    wrapper = _unwrap(root, operation)
    report = _kid(wrapper, "Report")
    if report is None:
        raise SoapWireError(f"{operation}Response has no Report", operation=operation)
    return parse_report(report)


# ----------------------------------------------------------------------- simple answers


def pending_ids_response(ids: Iterable[int]) -> bytes:
    container = _ed("DocumentIds")
    for value in ids:
        _add(container, "DocumentId", int(value))
    return _response("GetPendingDocumentIds", container)


def parse_pending_ids_response(root: etree._Element) -> list[int]:
    wrapper = _unwrap(root, "GetPendingDocumentIds")
    out = []
    for element in _kids(_kid(wrapper, "DocumentIds"), "DocumentId"):
        try:
            out.append(int((element.text or "").strip()))
        except ValueError:
            raise SoapWireError(f"DocumentId is not an integer: {(element.text or '')[:40]!r}") from None
    return out


def send_document_response(document_id: int, report: HubReport | None = None) -> bytes:
    return _response(
        "SendDocument",
        build_report(report or HubReport()),
        _with_text(_ed("DocumentId"), int(document_id)),
    )


def parse_send_document_response(root: etree._Element) -> int:
    wrapper = _unwrap(root, "SendDocument")
    value = _int(wrapper, "DocumentId")
    if value is None:
        raise SoapWireError("SendDocumentResponse has no DocumentId", operation="SendDocument")
    return value


def _with_text(element: etree._Element, text: object) -> etree._Element:
    element.text = str(text)
    return element


_ORG_FIELDS = (
    ("OrganId", "organ_id"),
    ("OrganizationInCharge", "organization_in_charge"),
    ("OrganName", "organ_name"),
    ("OrganAdd", "organ_add"),
    ("Email", "email"),
    ("Telephone", "telephone"),
    ("Fax", "fax"),
    ("Website", "website"),
)


def organizations_response(organizations: Iterable[Organization]) -> bytes:
    container = _ed("Organizations")
    for org in organizations:
        item = _add(container, "Organization")
        for tag, attr in _ORG_FIELDS:
            value = getattr(org, attr)
            if value is not None:  # null fields omitted
                _add(item, tag, value)
    return _response("GetOrganizations", container)


def parse_organizations_response(root: etree._Element) -> list[Organization]:
    wrapper = _unwrap(root, "GetOrganizations")
    return [_read_org(e) for e in _kids(_kid(wrapper, "Organizations"), "Organization")]


# ----------------------------------------------------------------------- status


def _status_code_out(code: str | None) -> str:
    try:
        return str(int(code or ""))
    except ValueError:
        raise ValidationError(f"status code must be an integer, got {code!r}") from None


def _status_code_in(value: str | None) -> str | None:
    if value is None:
        return None
    return value.zfill(2) if value.isdigit() and len(value) < 2 else value


def _status_element(status: Status, tag: str, *, ns: bool) -> etree._Element:
    element = _ed(tag) if ns else _plain(tag)
    sub = (lambda p, t, v=None: _add(p, t, v, ns=ns))
    org = status.from_
    frm = sub(element, "From")
    for t, attr in _ORG_FIELDS:
        sub(frm, t, getattr(org, attr))
    responses = status.response_for or [ResponseFor()]
    for rf in responses:
        r = sub(element, "ResponseFor")
        sub(r, "OrganId", rf.organ_id)
        sub(r, "Code", rf.code)
        sub(r, "PromulgationDate", format_date(rf.promulgation_date) if rf.promulgation_date else None)
        sub(r, "DocumentId", rf.document_id)
    staff = status.staff_info or StaffInfo()
    s = sub(element, "StaffInfo")
    sub(s, "Department", staff.department)
    sub(s, "DepartmentId")
    sub(s, "Staff", staff.staff)
    sub(s, "StaffId")
    sub(s, "Email", staff.email)
    sub(s, "Mobile", staff.mobile)
    sub(element, "StatusCode", _status_code_out(status.status_code))
    sub(element, "Description", status.description)
    sub(element, "Timestamp", format_timestamp(status.timestamp) if status.timestamp else None)
    return element


def _read_status(element: etree._Element) -> Status:
    staff_el = _kid(element, "StaffInfo")
    staff = None
    if staff_el is not None:
        staff = StaffInfo(
            _text(staff_el, "Department"), _text(staff_el, "Staff"), _text(staff_el, "Email"), _text(staff_el, "Mobile")
        )
    return Status(
        from_=_read_org(_kid(element, "From")),
        response_for=[_read_response_for(r) for r in _kids(element, "ResponseFor")],
        staff_info=staff,
        status_code=_status_code_in(_text(element, "StatusCode")),
        description=_text(element, "Description"),
        timestamp=_timestamp(element, "Timestamp"),
    )


def status_to_update_traces(status: Status, organ_id: str, token: str) -> bytes:
    """UpdateTraces request: ``edXML:Signature/KeyInfo`` in the Header, a no-namespace ``Status``."""
    return _envelope([_signature(Credentials(organ_id, token))], [_status_element(status, "Status", ns=False)])


def update_traces_to_status(root: etree._Element) -> UpdateTracesRequest:
    status_el = next((c for c in body(root) if c.tag == "Status"), None)
    if status_el is None:
        raise SoapWireError("UpdateTraces: the no-namespace Status element is missing")
    return UpdateTracesRequest(_read_status(status_el), _read_signature(root))


def traces_response(statuses: Iterable[Status]) -> bytes:
    container = _ed("Traces")
    for status in statuses:
        container.append(_status_element(status, "Status", ns=True))
    return _response("GetTraces", container)


def parse_traces_response(root: etree._Element) -> list[Status]:
    wrapper = _unwrap(root, "GetTraces")
    return [_read_status(e) for e in _kids(_kid(wrapper, "Traces"), "Status")]


# ----------------------------------------------------------------------- documents


def _signature(credentials: Credentials) -> etree._Element:
    signature = _ed("Signature")
    key_info = _add(signature, "KeyInfo")
    _add(key_info, "OrganId", credentials.organ_id)
    _add(key_info, "Token", credentials.token)
    return signature


def _read_signature(root: etree._Element) -> Credentials:
    key_info = _kid(_kid(header(root), "Signature"), "KeyInfo")
    if key_info is None:
        return Credentials()
    return Credentials(_text(key_info, "OrganId") or "", _text(key_info, "Token") or "")


def _org_element(parent: etree._Element, tag: str, org: Organization, *, in_charge: bool, db: bool) -> None:
    element = _add(parent, tag)
    for t, attr in _ORG_FIELDS:
        if attr == "organization_in_charge":
            if in_charge:
                _add(element, "OrganInCharge" if db else t, org.organization_in_charge)
            continue
        _add(element, t, getattr(org, attr))


def _read_org(element: etree._Element | None) -> Organization:
    if element is None:
        return Organization()
    return Organization(
        organ_id=_text(element, "OrganId"),
        organization_in_charge=_text(element, "OrganizationInCharge", "OrganInCharge"),
        organ_name=_text(element, "OrganName"),
        organ_add=_text(element, "OrganAdd"),
        email=_text(element, "Email"),
        telephone=_text(element, "Telephone"),
        fax=_text(element, "Fax"),
        website=_text(element, "Website"),
    )


def _read_response_for(element: etree._Element) -> ResponseFor:
    return ResponseFor(
        _text(element, "OrganId"), _text(element, "Code"), _date(element, "PromulgationDate"), _text(element, "DocumentId")
    )


def _message_header(edoc: Edoc, db: bool) -> etree._Element:
    h = _ed("MessageHeader")
    _org_element(h, "From", edoc.from_, in_charge=True, db=db)
    for to in edoc.to:
        _org_element(h, "To", to, in_charge=False, db=db)
    _add(h, "DocumentId", edoc.document_id)
    code = _add(h, "Code")
    _add(code, "CodeNumber", edoc.code.number)
    _add(code, "CodeNotation", edoc.code.notation)
    prom = _add(h, "PromulgationInfo")
    _add(prom, "Place", edoc.promulgation.place)
    day = edoc.promulgation.date
    _add(prom, "PromulgationDate", format_date(day, database_form=db) if day else None)
    dtype = _add(h, "DocumentType")
    _add(dtype, "Type", edoc.document_type.type)
    _add(dtype, "TypeName", edoc.document_type.type_name)
    _add(h, "Subject", edoc.subject)
    _add(h, "Content", edoc.content)
    signer = _add(h, "SignerInfo")
    _add(signer, "Competence", edoc.signer_info.competence)
    _add(signer, "Position", edoc.signer_info.position)
    _add(signer, "FullName", edoc.signer_info.full_name)
    _add(h, "DueDate", format_date(edoc.due_date) if edoc.due_date else None)
    places = _add(h, "ToPlaces")
    for place in edoc.to_places:
        _add(places, "Place", place)
    other = _add(h, "OtherInfo")
    o = edoc.other_info
    _add(other, "Priority", o.priority)
    _add(other, "SphereOfPromulgation", o.sphere_of_promulgation)
    _add(other, "TyperNotation", o.typer_notation)
    _add(other, "PromulgationAmount", o.promulgation_amount)
    _add(other, "PageAmount", o.page_amount)
    appendixes = _add(other, "Appendixes")
    for appendix in o.appendixes:
        _add(appendixes, "Appendix", appendix)
    if edoc.steering_type is not None:
        _add(h, "SteeringType", edoc.steering_type)
    for rf in edoc.response_for:
        r = _add(h, "ResponseFor")
        _add(r, "OrganId", rf.organ_id)
        _add(r, "Code", rf.code)
        _add(r, "PromulgationDate", format_date(rf.promulgation_date) if rf.promulgation_date else None)
        _add(r, "DocumentId", rf.document_id)
    return h


def _trace_header_list(edoc: Edoc, db: bool) -> etree._Element:
    element = _ed("TraceHeaderList")
    for trace in edoc.trace_headers:
        t = _add(element, "TraceHeader")
        _add(t, "OrganId", trace.organ_id)
        _add(t, "Timestamp", format_timestamp(trace.timestamp, database_form=db) if trace.timestamp else None)
    b = edoc.business
    if b is not None:
        business = _add(element, "Business")
        _add(business, "BusinessDocType", b.business_doc_type)
        _add(business, "BusinessDocReason", b.business_doc_reason)
        _add(business, "Paper", b.paper)
        if b.staff_info is not None:
            staff = _add(business, "StaffInfo")
            _add(staff, "Department", b.staff_info.department)
            _add(staff, "Staff", b.staff_info.staff)
            _add(staff, "Mobile", b.staff_info.mobile)
            _add(staff, "Email", b.staff_info.email)
        if b.business_document_info is not None:
            info = _add(business, "BusinessDocumentInfo")
            _add(info, "DocumentInfo", b.business_document_info.document_info)
            _add(info, "DocumentReceiver", b.business_document_info.document_receiver)
            receivers = _add(info, "ReceiverList")
            for receiver in b.business_document_info.receivers:
                r = _add(receivers, "Receiver")
                _add(r, "OrganId", receiver.organ_id)
                _add(r, "ReceiverType", receiver.receiver_type)
        if b.replacement_info:
            replacements = _add(business, "ReplacementInfoList")
            for replacement in b.replacement_info:
                r = _add(replacements, "ReplacementInfo")
                _add(r, "DocumentId", replacement.document_id)
                ids = _add(r, "OrganIdList")
                for organ in replacement.organ_ids:
                    _add(ids, "OrganId", organ)
    return element


def _manifest(attachments: Sequence[Attachment], *, xlink: bool) -> etree._Element:
    nsmap = dict(_NSMAP_EDXML, xlink=XLINK_NS) if xlink else _NSMAP_EDXML
    manifest = etree.Element(_E + "Manifest", nsmap=nsmap)
    for a in attachments:
        ref = _add(manifest, "Reference")
        ref.set("{%s}href" % XLINK_NS if xlink else "href", f"cid:{a.content_id}")
        _add(ref, "AttachmentName", a.name)
        if a.description:
            _add(ref, "Description", a.description)
    return manifest


def _parts(edoc: Edoc, encoding: str) -> list[OutPart]:
    parts = []
    seen: set[str] = set()
    for a in edoc.attachments:
        if a.data is None:
            raise ValidationError(f"attachment {a.name!r} has no content", code="R.AttachmentName")
        if a.data.size == 0:
            raise ValidationError(f"attachment {a.name!r} is empty; the hub refuses zero-byte parts", code="R.AttachmentName")
        if a.content_id in seen:
            raise ValidationError(f"two attachments share the Content-ID {a.content_id!r}")
        seen.add(a.content_id)
        parts.append(OutPart(a.content_id, a.content_type or guess_type(a.name), a.data, encoding))  # type: ignore[arg-type]
    return parts


def edoc_to_send_document(edoc: Edoc, organ_id: str, token: str) -> tuple[bytes, list[OutPart]]:
    """SendDocument: the envelope (Header: MessageHeader, TraceHeaderList, Signature, ErrorList;
    Body: Manifest with plain ``href="cid:…"``) and one raw-bytes part per attachment."""
    if not edoc.to:
        raise UnknownRecipientError("the document has no recipient", code="N.MessageHeader.To")
    parts = _parts(edoc, "binary")
    headers = [
        _message_header(edoc, False),
        _trace_header_list(edoc, False),
        _signature(Credentials(organ_id, token)),
        _ed("ErrorList"),
    ]
    return _envelope(headers, [_manifest(edoc.attachments, xlink=False)]), parts


def edoc_to_get_document_response(edoc: Edoc, *, database_form: bool = False) -> tuple[bytes, list[OutPart]]:
    """GetDocument's answer: no wrapper, Manifest with ``xlink:href``, base64-text parts.

    ``database_form`` reproduces the hub's rebuilt-from-database quirks (``dd/MM/yyyy`` dates,
    ``OrganInCharge``) so clients can be tested against them.
    """
    parts = _parts(edoc, "base64")
    headers = [_message_header(edoc, database_form), _trace_header_list(edoc, database_form)]
    return _envelope(headers, [_manifest(edoc.attachments, xlink=True)]), parts


def _edoc_from(
    root: etree._Element, parts: Mapping[str, object], *, base64_parts: bool,
    spool_dir: str | Path | None = None, spool_memory: int = 1 << 20,
) -> Edoc:
    """The document a SendDocument request or GetDocument answer carries; base64 parts are
    decoded into spooled data under ``spool_dir`` (memory up to ``spool_memory`` bytes)."""
    h = header(root)
    message = _kid(h, "MessageHeader")
    if message is None:
        raise SoapWireError("no MessageHeader in the SOAP Header")
    code = _kid(message, "Code")
    prom = _kid(message, "PromulgationInfo")
    dtype = _kid(message, "DocumentType")
    signer = _kid(message, "SignerInfo")
    other = _kid(message, "OtherInfo")
    steering = _int(message, "SteeringType")
    edoc = Edoc(
        from_=_read_org(_kid(message, "From")),
        to=[_read_org(e) for e in _kids(message, "To")],
        document_id=_text(message, "DocumentId"),
        code=Code(_text(code, "CodeNumber"), _text(code, "CodeNotation")),
        promulgation=PromulgationInfo(_text(prom, "Place"), _date(prom, "PromulgationDate")),
        document_type=DocumentType(type=_text(dtype, "Type"), type_name=_text(dtype, "TypeName")),
        subject=_text(message, "Subject"),
        content=_text(message, "Content"),
        signer_info=SignerInfo(_text(signer, "Competence"), _text(signer, "Position"), _text(signer, "FullName")),
        due_date=_date(message, "DueDate"),
        other_info=OtherInfo(
            priority=_int(other, "Priority"),
            sphere_of_promulgation=_text(other, "SphereOfPromulgation"),
            typer_notation=_text(other, "TyperNotation"),
            promulgation_amount=_int(other, "PromulgationAmount"),
            page_amount=_int(other, "PageAmount"),
            appendixes=[e.text.strip() for e in _kids(_kid(other, "Appendixes"), "Appendix") if e.text and e.text.strip()],
        ),
        steering_type=steering,
        to_places=[e.text.strip() for e in _kids(_kid(message, "ToPlaces"), "Place") if e.text and e.text.strip()],
        response_for=[_read_response_for(e) for e in _kids(message, "ResponseFor")],
    )
    traces = _kid(h, "TraceHeaderList")
    edoc.trace_headers = [
        TraceHeader(_text(t, "OrganId"), _timestamp(t, "Timestamp")) for t in _kids(traces, "TraceHeader")
    ]
    edoc.business = _read_business(_kid(traces, "Business", "Bussiness"))
    edoc.attachments = _attachments(root, parts, base64_parts, spool_dir, spool_memory)
    return edoc.with_manifest()


def _read_business(b: etree._Element | None) -> Business | None:
    if b is None:
        return None
    staff_el = _kid(b, "StaffInfo")
    info_el = _kid(b, "BusinessDocumentInfo", "BussinessDocumentInfo")
    info = None
    if info_el is not None:
        info = BusinessDocumentInfo(
            _int(info_el, "DocumentInfo"),
            _int(info_el, "DocumentReceiver"),
            [Receiver(_text(r, "OrganId"), _int(r, "ReceiverType")) for r in _kids(_kid(info_el, "ReceiverList"), "Receiver")],
        )
    return Business(
        document_id=_text(b, "DocumentId"),
        business_doc_type=_int(b, "BusinessDocType") if _kid(b, "BusinessDocType") is not None else _int(b, "BussinessDocType"),
        business_doc_reason=_text(b, "BusinessDocReason", "BussinessDocReason"),
        paper=_int(b, "Paper"),
        business_document_info=info,
        replacement_info=[
            ReplacementInfo(_text(r, "DocumentId"), [e.text.strip() for e in _kids(_kid(r, "OrganIdList"), "OrganId") if e.text])
            for r in _kids(_kid(b, "ReplacementInfoList"), "ReplacementInfo")
        ],
        staff_info=(
            StaffInfo(_text(staff_el, "Department"), _text(staff_el, "Staff"), _text(staff_el, "Email"), _text(staff_el, "Mobile"))
            if staff_el is not None
            else None
        ),
    )


def _attachments(
    root: etree._Element, parts: Mapping[str, object], base64_parts: bool,
    spool_dir: str | Path | None = None, spool_memory: int = 1 << 20,
) -> list[Attachment]:
    manifest = _kid(body(root), "Manifest")
    out: list[Attachment] = []
    try:
        for ref in _kids(manifest, "Reference"):
            out.append(_attachment(ref, parts, base64_parts, spool_dir, spool_memory))
    except BaseException:
        if base64_parts:  # the decoded copies are ours to release
            for attachment in out:
                attachment.data.close()  # type: ignore[union-attr]
        raise
    return out


def _attachment(
    ref: etree._Element, parts: Mapping[str, object], base64_parts: bool,
    spool_dir: str | Path | None = None, spool_memory: int = 1 << 20,
) -> Attachment:
    """One manifest Reference as an Attachment (its part decoded from base64 text for
    GetDocument, into a spooled file under ``spool_dir``: a full disk there is
    :class:`~connector.durable.DiskFull` naming it)."""
    href = ref.get("href") or ref.get("{%s}href" % XLINK_NS) or ""
    cid = bare_content_id(href)
    name = _text(ref, "AttachmentName") or cid
    part = parts.get(cid)
    if part is None:
        raise ValidationError(f"the manifest names cid:{cid} but no such part was sent", code="R.AttachmentName")
    data: AttachmentData = getattr(part, "data", part)  # an InPart or bare AttachmentData
    if base64_parts:
        try:
            data = decode_base64(data, spool_memory=spool_memory, spool_dir=spool_dir)
        except MultipartError as exc:
            raise SoapWireError(f"part <{cid}> (attachment {name!r}): {exc}") from None
    declared = getattr(part, "content_type", "") or ""
    ctype = declared.split(";")[0].strip() if declared else ""
    if not ctype or ctype in ("application/octet-stream", "text/plain"):
        ctype = guess_type(name)
    return Attachment(content_id=cid, name=name, content_type=ctype, description=_text(ref, "Description"), data=data)


def send_document_to_edoc(root: etree._Element, parts: Mapping[str, object]) -> SendDocumentRequest:
    """Read a SendDocument request (server side). ``parts`` maps bare Content-IDs to
    :class:`~connector.axis.multipart.InPart` (or plain AttachmentData)."""
    for name in ("MessageHeader", "TraceHeaderList", "Signature"):
        if _kid(header(root), name) is None:
            raise SoapWireError(f"SendDocument: {name} is missing from the Header")
    return SendDocumentRequest(_edoc_from(root, parts, base64_parts=False), _read_signature(root))


def get_document_response_to_edoc(
    root: etree._Element, parts: Mapping[str, object], *,
    spool_dir: str | Path | None = None, spool_memory: int = 1 << 20,
) -> Edoc:
    """Read GetDocument's answer (client side): raises for an empty Body or a bare failed Report;
    decodes the base64-text parts into spooled files under ``spool_dir`` (the client's spool
    folder, so a large document's decoded copies land where the operator configured, and a
    full disk there is :class:`~connector.durable.DiskFull` naming it)."""
    if is_empty(root):
        raise EmptyBodyError("the hub answered GetDocument with an empty SOAP Body", operation="GetDocument")
    raise_for_fault(body(root), "GetDocument")
    report = _kid(body(root), "Report")
    if report is not None:
        raise_for_report(parse_report(report), "GetDocument")
        raise SoapWireError("GetDocument answered with a successful Report but no document", operation="GetDocument")
    return _edoc_from(root, parts, base64_parts=True, spool_dir=spool_dir, spool_memory=spool_memory)


def operation_of(soap_action: str | None) -> str | None:
    """The operation a SOAPAction header names (quotes stripped; case-sensitive); None if unknown."""
    value = (soap_action or "").strip().strip('"')
    return value if value in OPERATIONS else None


__all__ = [
    "SOAP_NS", "EDXML_NS", "OPERATIONS", "REQUEST_ELEMENTS", "SOAP_CONTENT_TYPE", "SoapWireError", "EmptyBodyError",
    "Credentials", "HubReport", "SimpleRequest", "SendDocumentRequest", "UpdateTracesRequest",
    "parse_envelope", "body", "header", "is_empty", "hub_document_id", "parse_hub_datetime", "format_date",
    "format_timestamp", "empty_envelope", "build_request", "parse_request", "build_report", "parse_report",
    "raise_for_report", "raise_for_fault", "report_response", "parse_report_response", "pending_ids_response",
    "parse_pending_ids_response", "send_document_response", "parse_send_document_response",
    "organizations_response", "parse_organizations_response", "status_to_update_traces",
    "update_traces_to_status", "traces_response", "parse_traces_response", "edoc_to_send_document",
    "edoc_to_get_document_response", "send_document_to_edoc", "get_document_response_to_edoc", "operation_of",
    "AxisError",
]
