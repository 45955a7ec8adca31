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
from operator import attrgetter
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
    Message,
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
    out.write(DECLARATION)
    write_canonical(message, out, signature=signature)


def to_bytes(message: Message, *, signature: SignatureWriter | None = None) -> bytes:
    """The edXML bytes of a small message (tests, status messages); attachments read whole."""
    buffer = io.BytesIO()
    build(message, buffer, signature=signature)
    return buffer.getvalue()


def write_canonical(message: Message, out: BinaryIO, *, signature: SignatureWriter | None = None) -> None:
    """Write the document element only (no XML declaration): its exc-C14N form.

    The text between attachment contents is rendered, encoded and written in one piece; each
    attachment's content streams from its file through a base64 encoder.
    """
    if isinstance(message, Status):
        out.write(_render(_status, message))
        return
    doc = message
    head = _render(_edoc_head, doc)
    if signature is not None:
        out.write(head)
        signature(out)
        pending = [_render(_edoc_body, doc)]
    else:
        pending = [head, _render(_edoc_body, doc)]
    for index, attachment in enumerate(doc.attachments):
        if index:  # the first attachment's head is rendered with the body
            pending.append(_render(_attachment_head, attachment))
        if attachment.data is None:
            raise BuildError(f"Attachment {attachment.name!r}: no content to attach (data is missing)")
        out.write(b"".join(pending))
        _attachment_content(attachment, out)
        pending = [_ATTACHMENT_END]
    pending.append(_EDOC_END)
    out.write(b"".join(pending))


# --------------------------------------------------------------------------- rendering
#
# A message is rendered as a few segments (the header up to the signature slot; the rest of the
# envelope with the first attachment's metadata; each further attachment's metadata), each a
# list of byte pieces joined once: the markup is
# encoded once, at import, and only the values are encoded per document. A segment function
# takes ``(pieces, values, obj)``. With ``values`` a list it runs the fast pass: every value is
# encoded unescaped and also appended to ``values``, which ``_render`` then checks in one go.
# When that check finds anything to escape or refuse (``& < > CR``, a control character,
# U+FFFE/U+FFFF, a surrogate), or a value cannot be converted, the segment is rendered again in
# the careful pass (``values`` None), which escapes each value and names the first offending
# field in document order.

_INDENT = ["\n" + "  " * depth for depth in range(12)]

_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# Bytes the UTF-8 form of a value may not hold unescaped: controls (tab and LF are fine), CR,
# ``& < >``. The table maps each of them to NUL (itself one of them) and every other byte to
# itself, so one translate and one search find any. U+FFFE/U+FFFF (EF BF BE/BF) are looked
# for only when a lead byte EF is there at all (U+F000..U+FFFF are rare in documents).
_FLAG_BAD = bytes(
    0 if byte in b"&<>\r" or (byte < 0x20 and byte not in b"\t\n") else byte for byte in range(256)
)
_FLAG_SUSPECT = bytes(0 if byte == 0xEF else flag for byte, flag in enumerate(_FLAG_BAD))

Segment = Callable[[list, "list | None", object], None]


def _render(segment: Segment, obj: object) -> bytes:
    """The UTF-8 bytes of one segment: fast pass, or the careful pass when a value needs it."""
    pieces: list[bytes] = []
    values: list[bytes] = []
    try:
        segment(pieces, values, obj)
    except (BuildError, UnicodeEncodeError):
        pass  # the careful pass reports the first problem in document order
    else:
        text = b"".join(values)
        if b"\0" not in text.translate(_FLAG_SUSPECT) or not (
            b"\0" in text.translate(_FLAG_BAD) or b"\xef\xbf\xbe" in text or b"\xef\xbf\xbf" in text
        ):
            return b"".join(pieces)
    pieces = []
    segment(pieces, None, obj)
    return b"".join(pieces)


def _plain(value: object) -> str:
    """A value that is not a ``str`` as text (unescaped); None is the empty element."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return format_date(value)
    return str(value)


def _plain_bytes(value: object) -> bytes:
    """A value as UTF-8 text, unescaped (the fast pass): :func:`_plain` for what is not a
    ``str``."""
    return _ENCODE[type(value)](value)


def _plain_any_bytes(value: object) -> bytes:
    return _plain(value).encode("utf-8")


def _date_bytes(value: date) -> bytes:
    return b"%04d/%02d/%02d" % (value.year, value.month, value.day)


def _datetime_bytes(value: datetime) -> bytes:
    if value.tzinfo is None:
        format_timestamp(value)  # raises the BuildError
    local = value.astimezone(VN_TZ)
    return b"%04d/%02d/%02d %02d:%02d:%02d" % (
        local.year, local.month, local.day, local.hour, local.minute, local.second
    )


class _Encoders(dict):
    """Type -> function giving a value's UTF-8 text. Exact types only: anything else (a str
    subclass, an IntEnum) takes the general path, as it always did."""

    def __missing__(self, kind: type) -> Callable[[object], bytes]:
        return _plain_any_bytes


# Built-in callables where possible: no Python frame per value.
_ENCODE: dict[type, Callable[[object], bytes]] = _Encoders({
    str: str.encode,
    type(None): {None: b""}.__getitem__,
    bool: {True: b"true", False: b"false"}.__getitem__,
    int: b"%d".__mod__,
    date: _date_bytes,
    datetime: _datetime_bytes,
})


def _text(value: object, field: str) -> str:
    """A value as escaped element text; BuildError naming ``field`` if XML cannot carry it."""
    if value is None:
        return ""
    if type(value) is str and _SPECIAL.search(value) is None:
        return value  # the common case: nothing to escape, nothing to refuse
    s = value if type(value) is str else _plain(value)
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


def _open(indent: int, tag: str, attrs: str = "") -> str:
    return f"{_INDENT[indent]}<{tag}{attrs}>"


def _close(indent: int, tag: str) -> str:
    return f"{_INDENT[indent]}</{tag}>"


class _Run:
    """Consecutive leaf elements ``<edXML:Tag>value</edXML:Tag>`` and the markup between them.

    Built once per layout from items that are either markup (a ``str``) or a leaf
    ``(indent, attribute path, tag, field label)``; the markup is merged into the pieces
    around the values. The fast pass is a small function generated here, straight-line code
    that reads each value, converts and encodes it, and appends all pieces at once: a loop
    over the leaves costs several times more per value.
    """

    __slots__ = ("fast", "get", "heads", "labels", "tail")

    def __init__(self, *items: str | tuple[int, str, str, str]):
        heads: list[bytes] = []
        paths: list[str] = []
        labels: list[str] = []
        pending = ""
        for item in items:
            if isinstance(item, str):
                pending += item
                continue
            indent, path, tag, label = item
            heads.append(f"{pending}{_INDENT[indent]}<edXML:{tag}>".encode())
            pending = f"</edXML:{tag}>"
            paths.append(path)
            labels.append(label)
        getter = attrgetter(*paths)
        self.get: Callable[[object], tuple] = getter if len(paths) > 1 else (lambda obj: (getter(obj),))
        self.heads = tuple(heads)
        self.labels = tuple(labels)
        self.tail = pending.encode("utf-8")
        self.fast: Callable[[list[bytes], list[bytes], object], None] = _compile_run(paths, self.heads, self.tail)


def _compile_run(paths: list[str], heads: tuple[bytes, ...], tail: bytes) -> Callable[[list[bytes], list[bytes], object], None]:
    """The fast-pass emitter of a run: ``fast(pieces, values, obj)``; the markup is in it as
    constants, each value goes through :data:`_ENCODE`."""
    names = [f"x{i}" for i in range(len(paths))]
    lines = ["def fast(pieces, values, obj):"]
    for name, path in zip(names, paths):
        if not all(part.isidentifier() for part in path.split(".")):
            raise ValueError(f"not an attribute path: {path!r}")
        lines.append(f"    {name} = obj.{path}")
        lines.append(f"    {name} = encode[type({name})]({name})")
    lines.append(f"    values += ({', '.join(names)},)")
    pieces = [item for head, name in zip(heads, names) for item in (repr(head), name)]
    lines.append(f"    pieces += ({', '.join(pieces)}, {tail!r})")
    namespace: dict[str, object] = {"encode": _ENCODE}
    exec(compile("\n".join(lines), f"<edXML run {paths[0]}..>", "exec"), namespace)  # noqa: S102 - our own constant layout
    return namespace["fast"]  # type: ignore[return-value]


def _put(pieces: list[bytes], values: list[bytes] | None, run: _Run, obj: object, prefix: str = "") -> None:
    """Emit ``run`` over ``obj``; ``prefix`` goes before the field labels (careful pass)."""
    if values is not None:
        run.fast(pieces, values, obj)
        return
    add = pieces.append
    for head, value, label in zip(run.heads, run.get(obj), run.labels):
        add(head)
        add(_text(value, prefix + label).encode("utf-8"))
    add(run.tail)


def _put_each(pieces: list[bytes], values: list[bytes] | None, items: list, head: bytes, tail: bytes, label: str) -> None:
    """Emit one leaf ``head value tail`` per item of a list of plain values."""
    add = pieces.append
    if values is None:
        for value in items:
            add(head)
            add(_text(value, label).encode("utf-8"))
            add(tail)
    else:
        keep = values.append
        for value in items:
            value = _ENCODE[type(value)](value)
            add(head)
            add(value)
            add(tail)
            keep(value)


def _put_one(pieces: list[bytes], values: list[bytes] | None, head: bytes, value: object, label: str) -> None:
    if values is None:
        encoded = _text(value, label).encode("utf-8")
    else:
        encoded = _ENCODE[type(value)](value)
        values.append(encoded)
    pieces.append(head)
    pieces.append(encoded)


def _leaf(indent: int, path: str, tag: str, label: str | None = None) -> tuple[int, str, str, str]:
    return (indent, path, tag, tag if label is None else label)


def _b(text: str) -> bytes:
    return text.encode("utf-8")


# --------------------------------------------------------------------------- layouts


def _organization_run(tag: str) -> _Run:
    """``From`` / ``To`` with its contact details; labels are ``.OrganId`` etc. after a prefix."""
    return _Run(
        _open(4, f"edXML:{tag}"),
        _leaf(5, "organ_id", "OrganId", ".OrganId"),
        _leaf(5, "organization_in_charge", "OrganizationInCharge", ".OrganizationInCharge"),
        _leaf(5, "organ_name", "OrganName", ".OrganName"),
        _leaf(5, "organ_add", "OrganAdd", ".OrganAdd"),
        _leaf(5, "email", "Email", ".Email"),
        _leaf(5, "telephone", "Telephone", ".Telephone"),
        _leaf(5, "fax", "Fax", ".Fax"),
        _leaf(5, "website", "Website", ".Website"),
        _close(4, f"edXML:{tag}"),
    )


def _staff_run(indent: int) -> _Run:
    return _Run(
        _open(indent, "edXML:StaffInfo"),
        _leaf(indent + 1, "department", "Department", "StaffInfo.Department"),
        _leaf(indent + 1, "staff", "Staff", "StaffInfo.Staff"),
        _leaf(indent + 1, "email", "Email", "StaffInfo.Email"),
        _leaf(indent + 1, "mobile", "Mobile", "StaffInfo.Mobile"),
        _close(indent, "edXML:StaffInfo"),
    )


_ROOT_OPEN = _b(
    f'<edXML xmlns="{NS}">'
    + _open(1, "edXML:edXMLEnvelope", f' xmlns:edXML="{NS}"')
    + _open(2, "edXML:edXMLHeader")
    + _open(3, "edXML:MessageHeader")
)
_FROM = _organization_run("From")
_TO = _organization_run("To")

# DocumentId .. OtherInfo/Direction, ending inside the open Appendixes element.
_DOCUMENT = _Run(
    _leaf(4, "document_id", "DocumentId"),
    _open(4, "edXML:Code"),
    _leaf(5, "code.number", "CodeNumber", "Code.CodeNumber"),
    _leaf(5, "code.notation", "CodeNotation", "Code.CodeNotation"),
    _close(4, "edXML:Code"),
    _open(4, "edXML:PromulgationInfo"),
    _leaf(5, "promulgation.place", "Place", "PromulgationInfo.Place"),
    _leaf(5, "promulgation.date", "PromulgationDate", "PromulgationInfo.PromulgationDate"),
    _close(4, "edXML:PromulgationInfo"),
    _open(4, "edXML:DocumentType"),
    _leaf(5, "document_type.type", "Type", "DocumentType.Type"),
    _leaf(5, "document_type.type_detail", "TypeDetail", "DocumentType.TypeDetail"),
    _leaf(5, "document_type.type_name", "TypeName", "DocumentType.TypeName"),
    _close(4, "edXML:DocumentType"),
    _leaf(4, "subject", "Subject"),
    _leaf(4, "content", "Content"),
    _open(4, "edXML:SignerInfo"),
    _leaf(5, "signer_info.competence", "Competence", "SignerInfo.Competence"),
    _leaf(5, "signer_info.position", "Position", "SignerInfo.Position"),
    _leaf(5, "signer_info.full_name", "FullName", "SignerInfo.FullName"),
    _close(4, "edXML:SignerInfo"),
    _leaf(4, "due_date", "DueDate"),
    _open(4, "edXML:OtherInfo"),
    _leaf(5, "other_info.priority", "Priority", "OtherInfo.Priority"),
    _leaf(5, "other_info.sphere_of_promulgation", "SphereOfPromulgation", "OtherInfo.SphereOfPromulgation"),
    _leaf(5, "other_info.typer_notation", "TyperNotation", "OtherInfo.TyperNotation"),
    _leaf(5, "other_info.promulgation_amount", "PromulgationAmount", "OtherInfo.PromulgationAmount"),
    _leaf(5, "other_info.page_amount", "PageAmount", "OtherInfo.PageAmount"),
    _leaf(5, "other_info.direction", "Direction", "OtherInfo.Direction"),
    _open(5, "edXML:Appendixes"),
)
_APPENDIX = (_b(_INDENT[6] + "<edXML:Appendix>"), b"</edXML:Appendix>")
# Closes Appendixes and OtherInfo; SteeringType; opens ToPlaces.
_STEERING = _Run(
    _close(5, "edXML:Appendixes"),
    _close(4, "edXML:OtherInfo"),
    _leaf(4, "steering_type", "SteeringType"),
    _open(4, "edXML:ToPlaces"),
)
_PLACE = (_b(_INDENT[5] + "<edXML:Place>"), b"</edXML:Place>")
_TO_PLACES_END = _b(_close(4, "edXML:ToPlaces"))
_RESPONSE_FOR = _Run(
    _open(4, "edXML:ResponseFor"),
    _leaf(5, "organ_id", "OrganId", "ResponseFor.OrganId"),
    _leaf(5, "code", "Code", "ResponseFor.Code"),
    _leaf(5, "promulgation_date", "PromulgationDate", "ResponseFor.PromulgationDate"),
    _leaf(5, "document_id", "DocumentId", "ResponseFor.DocumentId"),
    _close(4, "edXML:ResponseFor"),
)
_TRACE_OPEN = _b(_close(3, "edXML:MessageHeader") + _open(3, "edXML:TraceHeaderList"))
_BUSINESS = _Run(
    _open(4, "edXML:Bussiness"),
    _leaf(5, "document_id", "DocumentId", "Bussiness.DocumentId"),
    _leaf(5, "business_doc_type", "BussinessDocType", "Bussiness.BussinessDocType"),
    _leaf(5, "business_doc_reason", "BussinessDocReason", "Bussiness.BussinessDocReason"),
    _leaf(5, "paper", "Paper", "Bussiness.Paper"),
)
_BUSINESS_INFO = _Run(
    _open(5, "edXML:BussinessDocumentInfo"),
    _leaf(6, "document_info", "DocumentInfo", "BussinessDocumentInfo.DocumentInfo"),
    _leaf(6, "document_receiver", "DocumentReceiver", "BussinessDocumentInfo.DocumentReceiver"),
    _open(6, "edXML:ReceiverList"),
)
_RECEIVER = _Run(
    _open(7, "edXML:Receiver"),
    _leaf(8, "organ_id", "OrganId", "Receiver.OrganId"),
    _leaf(8, "receiver_type", "ReceiverType", "Receiver.ReceiverType"),
    _close(7, "edXML:Receiver"),
)
_BUSINESS_INFO_END = _b(_close(6, "edXML:ReceiverList") + _close(5, "edXML:BussinessDocumentInfo"))
_REPLACEMENT_LIST_OPEN = _b(_open(5, "edXML:ReplacementInfoList"))
_REPLACEMENT = _Run(
    _open(6, "edXML:ReplacementInfo"),
    _leaf(7, "document_id", "DocumentId", "ReplacementInfo.DocumentId"),
    _open(7, "edXML:OrganIdList"),
)
_REPLACED_ORGAN = (_b(_INDENT[8] + "<edXML:OrganId>"), b"</edXML:OrganId>")
_REPLACEMENT_END = _b(_close(7, "edXML:OrganIdList") + _close(6, "edXML:ReplacementInfo"))
_REPLACEMENT_LIST_END = _b(_close(5, "edXML:ReplacementInfoList"))
_BUSINESS_END = _b(_close(4, "edXML:Bussiness"))
_STAFF_5 = _staff_run(5)
_STAFF_4 = _staff_run(4)
_TRACE_HEADER = _Run(
    _open(4, "edXML:TraceHeader"),
    _leaf(5, "organ_id", "OrganId", "TraceHeader.OrganId"),
    _leaf(5, "timestamp", "Timestamp", "TraceHeader.Timestamp"),
    _close(4, "edXML:TraceHeader"),
)
# The end of TraceHeaderList and the whitespace of the signature slot.
_HEAD_END = _b(_close(3, "edXML:TraceHeaderList") + "\n      ")
_BODY_OPEN = _b(
    _close(2, "edXML:edXMLHeader") + _open(2, "edXML:edXMLBody") + _open(3, "edXML:edXMLManifest", ' version="1.0"')
)
_REFERENCE_OPEN = _b(_open(4, "edXML:Reference") + _open(5, "edXML:ContentId"))
_REFERENCE = _Run(
    "</edXML:ContentId>",
    _leaf(5, "content_type", "ContentType", "Reference.ContentType"),
    _leaf(5, "description", "Description", "Reference.Description"),
    _leaf(5, "attachment_name", "AttachmentName", "Reference.AttachmentName"),
    _close(4, "edXML:Reference"),
)
_BODY_END = _b(
    _close(3, "edXML:edXMLManifest") + _close(2, "edXML:edXMLBody") + _close(1, "edXML:edXMLEnvelope")
    + _open(1, "AttachmentEncoded")
)
_ATTACHMENT_PARTS = tuple(
    _b(part)
    for part in (
        f"{_INDENT[2]}<Attachment>{_INDENT[3]}<ContentId>",
        f"</ContentId>{_INDENT[3]}<AttachmentName>",
        f"</AttachmentName>{_INDENT[3]}<Description>",
        f"</Description>{_INDENT[3]}<ContentType>",
        f'</ContentType>{_INDENT[3]}<edXML:ContentTransferEncoded xmlns:edXML="{NS}">',
    )
)
_ATTACHMENT_END = _b("</edXML:ContentTransferEncoded>" + _close(2, "Attachment"))
_EDOC_END = _b(_close(1, "AttachmentEncoded") + "\n</edXML>")


def _edoc_head(p: list[bytes], v: list[bytes] | None, doc: Edoc) -> None:
    """From the root to the signature slot (the whitespace after ``TraceHeaderList``)."""
    p.append(_ROOT_OPEN)
    _put(p, v, _FROM, doc.from_, "From")
    if v is None:
        for index, organization in enumerate(doc.to):
            _put(p, v, _TO, organization, f"To[{index}]")
    else:
        recipient = _TO.fast
        for organization in doc.to:
            recipient(p, v, organization)
    _put(p, v, _DOCUMENT, doc)
    _put_each(p, v, doc.other_info.appendixes, *_APPENDIX, "OtherInfo.Appendixes.Appendix")
    _put(p, v, _STEERING, doc)
    _put_each(p, v, doc.to_places, *_PLACE, "ToPlaces.Place")
    p.append(_TO_PLACES_END)
    for response in doc.response_for:
        _put(p, v, _RESPONSE_FOR, response)
    p.append(_TRACE_OPEN)
    if doc.business is not None:
        _business(p, v, doc.business)
    for trace in doc.trace_headers:
        _put(p, v, _TRACE_HEADER, trace)
    p.append(_HEAD_END)


def _business(p: list[bytes], v: list[bytes] | None, b: Business) -> None:
    _put(p, v, _BUSINESS, b)
    info = b.business_document_info
    if info is not None:
        _put(p, v, _BUSINESS_INFO, info)
        for receiver in info.receivers:
            _put(p, v, _RECEIVER, receiver)
        p.append(_BUSINESS_INFO_END)
    if b.replacement_info:
        p.append(_REPLACEMENT_LIST_OPEN)
        for replacement in b.replacement_info:
            _put(p, v, _REPLACEMENT, replacement)
            _put_each(p, v, replacement.organ_ids, *_REPLACED_ORGAN, "ReplacementInfo.OrganIdList.OrganId")
            p.append(_REPLACEMENT_END)
        p.append(_REPLACEMENT_LIST_END)
    if b.staff_info is not None:
        _put(p, v, _STAFF_5, b.staff_info)
    p.append(_BUSINESS_END)


def _edoc_body(p: list[bytes], v: list[bytes] | None, doc: Edoc) -> None:
    """From the end of ``edXMLHeader`` to the opening of ``AttachmentEncoded``, and on to the
    content of the first attachment, if there is one."""
    p.append(_BODY_OPEN)
    for ref in doc.manifest or manifest_for(doc.attachments):
        if ref.href:
            href = _attr(ref.href, "Reference/@href")
            head = _b(_open(4, "edXML:Reference", f' xmlns:xlink="{XLINK_NS}" xlink:href="{href}"')
                      + _open(5, "edXML:ContentId"))
        else:
            head = _REFERENCE_OPEN
        _put_one(p, v, head, _cid(ref.content_id), "Reference.ContentId")
        _put(p, v, _REFERENCE, ref)
    p.append(_BODY_END)
    if doc.attachments:
        _attachment_head(p, v, doc.attachments[0])


def _cid(content_id: str) -> str:
    return content_id if content_id.lower().startswith("cid:") else f"cid:{content_id}"


def _attachment_head(p: list[bytes], v: list[bytes] | None, a: Attachment) -> None:
    """``Attachment`` up to its content: ids, name, description, type, the encoded element."""
    fields = (_cid(a.content_id), a.name, a.description, wire_content_type(a))
    if v is None:
        label = f"Attachment {a.name!r}"
        encoded = [_text(value, label).encode("utf-8") for value in fields]
    else:
        encoded = [_ENCODE[type(value)](value) for value in fields]
        v += encoded
    parts = _ATTACHMENT_PARTS
    p += (parts[0], encoded[0], parts[1], encoded[1], parts[2], encoded[2], parts[3], encoded[3], parts[4])


def _attachment_content(a: Attachment, out: BinaryIO) -> None:
    """The attachment's content (zipped if so packaged), base64 on one line, streamed."""
    encoder = _Base64Sink(out)
    if a.packaging == "zip":
        write_zipped(a.name, a.data, encoder)  # type: ignore[arg-type]
    else:
        with a.data.open() as src:  # type: ignore[union-attr]
            while chunk := src.read(CHUNK * 3):
                encoder.write(chunk)
    encoder.close()


class _Base64Sink:
    """Base64 on one line of what is written, as it goes, in whole groups of three bytes.

    Small writes (a ZIP header, a small file) are held back, up to :data:`HOLD` bytes, and
    encoded together: a small attachment is one encode and one write. A large write is encoded
    at once from a view of it, as it comes, so a large attachment streams in bounded memory and
    without extra copies. A plain object (no ``io`` machinery): the builder only writes to it
    and closes it.
    """

    __slots__ = ("_out", "_pending")
    HOLD = 3 << 14  # 48 KiB

    def __init__(self, out: BinaryIO):
        self._out = out
        self._pending = b""

    def write(self, data) -> None:
        data = bytes(data)  # no copy for bytes
        if self._pending:
            data = self._pending + data
        size = len(data)
        if size < _Base64Sink.HOLD:
            self._pending = data
            return
        whole = size - size % 3
        self._out.write(pybase64.b64encode(memoryview(data)[:whole]))
        self._pending = data[whole:]

    def close(self) -> None:
        if self._pending:
            self._out.write(pybase64.b64encode(self._pending))
            self._pending = b""


class Base64Stream(io.RawIOBase):
    """A write-only stream that base64-encodes what it is given, on one line, as it goes."""

    def __init__(self, out: BinaryIO):
        self._sink = _Base64Sink(out)
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        size = memoryview(data).nbytes
        self._sink.write(data)
        self._position += size
        return size

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._sink.close()
        super().close()


# --------------------------------------------------------------------------- status

_STATUS = _Run(
    _leaf(4, "status_code", "StatusCode"),
    _leaf(4, "description", "Description"),
    _leaf(4, "timestamp", "Timestamp"),
    _close(3, "edXML:MessageHeader"),
    _close(2, "edXML:edXMLHeader"),
    _close(1, "edXML:edXMLEnvelope"),
    "\n</edXML>",
)


def _status(p: list[bytes], v: list[bytes] | None, status: Status) -> None:
    p.append(_ROOT_OPEN)
    _put(p, v, _FROM, status.from_, "From")
    for response in status.response_for:
        _put(p, v, _RESPONSE_FOR, response)
    if status.staff_info is not None:
        _put(p, v, _STAFF_4, status.staff_info)
    _put(p, v, _STATUS, status)
