"""Hypothesis strategies for the edXML model: documents, status messages, either.

Shared by the JSON-form tests and the XML round-trip tests, so every generated value is one an
XML round trip can carry unchanged:

- text is ``None`` or a non-empty string equal to its own ``strip()``, made of XML-legal
  characters only (no C0/C1 controls at all, not even tab/newline/CR; no surrogates; no
  U+FFFE/U+FFFF), mixing Vietnamese, XML-special characters and characters outside the BMP;
- dates lie in 1900..2100; timestamps are in Vietnam time (``VN_TZ``) to the second;
- the fields the JSON schema requires (document id, sender id and name, recipients' ids, số /
  ký hiệu, trích yếu, place and date of issue, type name; for a status: code, description,
  timestamp, the answered document's id) are always set, so every message is schema-valid;
- an optional compound part (staff info, business info, ...) and every list entry of compound
  type carry at least one value, so "absent" and "present but empty" never need telling apart;
- attachments have unique bare content ids (``"209"``: the model's form, the wire adds
  ``cid:``) and unique, file-system-safe names, small ``BytesData`` content; they travel zipped
  only when the name does not end in ``.zip`` (a receiver does not unwrap those), and then
  their content type is the one guessed from the name, as a receiver does; the manifest is the
  one the builder derives (``Edoc.with_manifest()``).

Unknown elements are off by default (``with_unknown=True`` adds a few, as well-formed XML).
"""

from __future__ import annotations

import mimetypes
import unicodedata
from datetime import date, datetime
from functools import cache
from typing import Any, Iterable, TypeVar

from hypothesis import strategies as st

from connector.edxml.model import (
    BUSINESS_DOC_TYPES,
    PRIORITIES,
    STATUS_CODES,
    VN_TZ,
    Attachment,
    Business,
    BusinessDocumentInfo,
    BytesData,
    Code,
    DocumentType,
    Edoc,
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

__all__ = [
    "attachments",
    "dates",
    "edocs",
    "file_names",
    "guessed_type",
    "messages",
    "optional_texts",
    "organizations",
    "statuses",
    "texts",
    "timestamps",
]

T = TypeVar("T")

VIETNAMESE = "ĐđĂăÂâÊêÔôƠơƯư áàảãạ ấầẩẫậ Văn phòng Chính phủ ỀềỂểỄễỆệ ỨứỪừỬửỮữỰự"
XML_SPECIAL = "<>&\"'"
BEYOND_BMP = "𠀀𠜎😀𝔸𐍈🇻🇳"
_ASCII = "abcxyzABC0123456789 .,-/:;()_"

STEERING_TYPES = (0, 1, 2)  # none, directive (chỉ đạo), report on a directive

# Half the characters come from the interesting sets above, half from anywhere in Unicode that
# XML allows (exclusions given to ``characters`` directly: a filter there is much slower).
_alphabet = st.one_of(
    st.sampled_from(sorted(set(VIETNAMESE + _ASCII + XML_SPECIAL + BEYOND_BMP))),
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\ufffe\uffff"),
)


@cache
def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Non-empty text that survives XML: legal characters, no surrounding whitespace."""
    return (
        st.text(_alphabet, min_size=1, max_size=max_size)
        .map(str.strip)
        .filter(bool)
    )


@cache
def optional_texts(max_size: int = 40) -> st.SearchStrategy[str | None]:
    """``None`` or :func:`texts`."""
    return st.none() | texts(max_size)


@cache
def _optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | strategy


@cache
def dates() -> st.SearchStrategy[date]:
    """Calendar dates in 1900..2100."""
    return st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@cache
def timestamps() -> st.SearchStrategy[datetime]:
    """Vietnam-time datetimes to the second, 1900..2100."""
    return st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2100, 12, 31, 23, 59, 59),
        timezones=st.just(VN_TZ),
    ).map(lambda t: t.replace(microsecond=0))


@cache
def _small_ints(values: Iterable[int] = (), high: int = 9999) -> st.SearchStrategy[int]:
    """A listed code (when given) or another small non-negative integer."""
    listed = sorted(values)
    integers = st.integers(min_value=0, max_value=high)
    return st.sampled_from(listed) | integers if listed else integers


class _Part:
    """How to draw one field of a compound part: its value when set, and when it may be absent."""

    def __init__(self, present: st.SearchStrategy[Any], absent: Any = None):
        self.present = present
        # None for scalars, [] for lists; built once (building strategies per draw is slow).
        self.maybe = _optional(present) if absent is None else st.just([]) | present


@cache
def _lists(element: st.SearchStrategy[T], min_size: int = 0, max_size: int = 5) -> st.SearchStrategy[list[T]]:
    return st.lists(element, min_size=min_size, max_size=max_size)


@cache
def _list_part(strategy: st.SearchStrategy[T], max_size: int) -> _Part:
    """A list field: non-empty when set, ``[]`` when absent."""
    return _Part(st.lists(strategy, min_size=1, max_size=max_size), absent=[])


@st.composite
def _filled(draw: st.DrawFn, cls: type[T], **parts: _Part) -> T:
    """An instance of ``cls`` with at least one field set (one chosen field always is).

    Built, not filtered: a filter rejecting the all-absent case makes Hypothesis retry and
    abort whole examples, which made documents several times slower to generate.
    """
    forced = draw(st.sampled_from(sorted(parts)))
    return cls(**{name: draw(part.present if name == forced else part.maybe) for name, part in parts.items()})


# --------------------------------------------------------------------------- header parts


@cache
def organizations(*, organ_id: bool = False, organ_name: bool = False) -> st.SearchStrategy[Organization]:
    """An agency; ``organ_id`` / ``organ_name`` True make that field always set."""
    return st.builds(
        Organization,
        organ_id=texts(30) if organ_id else optional_texts(30),
        organization_in_charge=optional_texts(),
        organ_name=texts() if organ_name else optional_texts(),
        organ_add=optional_texts(),
        email=optional_texts(30),
        telephone=optional_texts(20),
        fax=optional_texts(20),
        website=optional_texts(30),
    )


@cache
def _response_fors(*, document_id: bool = False) -> st.SearchStrategy[ResponseFor]:
    """A ResponseFor; with ``document_id`` True (status messages) that id is always set."""
    if document_id:
        return st.builds(
            ResponseFor,
            organ_id=optional_texts(30),
            code=optional_texts(30),
            promulgation_date=_optional(dates()),
            document_id=texts(60),
        )
    return _filled(
        ResponseFor,
        organ_id=_Part(texts(30)),
        code=_Part(texts(30)),
        promulgation_date=_Part(dates()),
        document_id=_Part(texts(60)),
    )


@cache
def _staff_infos() -> st.SearchStrategy[StaffInfo]:
    return _filled(
        StaffInfo,
        department=_Part(texts()),
        staff=_Part(texts()),
        email=_Part(texts(30)),
        mobile=_Part(texts(20)),
    )


@cache
def _trace_headers() -> st.SearchStrategy[TraceHeader]:
    return _filled(TraceHeader, organ_id=_Part(texts(30)), timestamp=_Part(timestamps()))


@cache
def _text_lists(max_size: int = 5) -> st.SearchStrategy[list[str]]:
    return st.lists(texts(), max_size=max_size)


@cache
def _other_infos() -> st.SearchStrategy[OtherInfo]:
    return st.builds(
        OtherInfo,
        priority=_optional(_small_ints(tuple(PRIORITIES), high=9)),
        sphere_of_promulgation=optional_texts(),
        typer_notation=optional_texts(10),
        promulgation_amount=_optional(_small_ints()),
        page_amount=_optional(_small_ints()),
        direction=_optional(st.booleans()),
        appendixes=_text_lists(),
    )


@cache
def _businesses() -> st.SearchStrategy[Business]:
    receiver = _filled(Receiver, organ_id=_Part(texts(30)), receiver_type=_Part(_small_ints(high=9)))
    info = _filled(
        BusinessDocumentInfo,
        document_info=_Part(_small_ints(high=1)),
        document_receiver=_Part(_small_ints(high=1)),
        receivers=_list_part(receiver, 4),
    )
    replacement = _filled(
        ReplacementInfo, document_id=_Part(texts(60)), organ_ids=_list_part(texts(30), 4)
    )
    return _filled(
        Business,
        document_id=_Part(texts(60)),
        business_doc_type=_Part(_small_ints(tuple(BUSINESS_DOC_TYPES), high=9)),
        business_doc_reason=_Part(texts()),
        paper=_Part(_small_ints(high=1)),
        business_document_info=_Part(info),
        replacement_info=_list_part(replacement, 3),
        staff_info=_Part(_staff_infos()),
    )


@cache
def _unknown_elements() -> st.SearchStrategy[list[UnknownElement]]:
    """A few unknown elements, as well-formed XML (text escaped), with plausible paths."""
    def build(index: int, text: str, line: int | None) -> UnknownElement:
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        name = f"Extra{index}"
        return UnknownElement(
            path=f"/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/{name}",
            line=line,
            xml=f'<{name} xmlns="urn:example:extension">{escaped}</{name}>',
        )

    entry = st.tuples(texts(), _optional(st.integers(min_value=1, max_value=10_000)))
    return st.lists(entry, max_size=3).map(lambda items: [build(i, t, n) for i, (t, n) in enumerate(items)])


# --------------------------------------------------------------------------- attachments

_EXTENSIONS = [".pdf", ".doc", ".docx", ".xls", ".xlsx", ".odt", ".txt", ".jpg", ".png", ".zip", ".xml", ""]
_CONTENT_TYPES = ["application/pdf", "application/octet-stream", "text/plain; charset=utf-8", "image/png"]
_NAME_FORBIDDEN = set('/\\<>:"|?*')  # path separators and what Windows refuses in a file name
_PACKAGINGS = st.sampled_from(["plain", "zip"])
_CONTENTS = st.binary(max_size=256)


def _is_safe_name(name: str) -> bool:
    """A file name any receiver can write: no separators, no dots-only, no trailing dot."""
    return (
        0 < len(name) <= 100
        and name == name.strip()
        and name not in (".", "..")
        and not name.endswith(".")
        and not (set(name) & _NAME_FORBIDDEN)
    )


@cache
def file_names() -> st.SearchStrategy[str]:
    """Safe, varied file names: Vietnamese, '&' and quotes, beyond-BMP characters, extensions."""
    stems = texts(60).map(lambda s: "".join(c for c in s if c not in _NAME_FORBIDDEN).strip())
    return st.builds(lambda stem, ext: stem + ext, stems, st.sampled_from(_EXTENSIONS)).filter(_is_safe_name)


def guessed_type(name: str) -> str:
    """The content type a receiver infers from a file name (non-strict: .rar, .docm, ... too)."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


@st.composite
def _attachment(draw: st.DrawFn, content_id: str, name: str) -> Attachment:
    # A receiver unwraps a one-entry ZIP only when the name does not end in .zip.
    packaging = "plain" if name.lower().endswith(".zip") else draw(_PACKAGINGS)
    if packaging == "zip":
        content_type = guessed_type(name)
    else:
        content_type = draw(st.sampled_from([guessed_type(name), *_CONTENT_TYPES]))
    return Attachment(
        content_id=content_id,
        name=name,
        content_type=content_type,
        description=draw(optional_texts()),
        packaging=packaging,
        data=BytesData(draw(_CONTENTS)),
    )


def _name_key(name: str) -> str:
    """Names equal on a case-insensitive, normalizing file system count as the same."""
    return unicodedata.normalize("NFC", name).casefold()


@st.composite
def attachments(draw: st.DrawFn, max_size: int = 10) -> list[Attachment]:
    """Up to ``max_size`` attachments with unique content ids and unique safe names."""
    names = draw(_unique_names(max_size))
    first, step = draw(_ID_BASE), draw(_ID_STEP)  # unique by construction, still varied
    return [draw(_attachment(str(first + k * step), name)) for k, name in enumerate(names)]


_ID_BASE = st.integers(min_value=1, max_value=99_999)
_ID_STEP = st.integers(min_value=1, max_value=97)


@cache
def _unique_names(max_size: int) -> st.SearchStrategy[list[str]]:
    return st.lists(file_names(), max_size=max_size, unique_by=_name_key)


# --------------------------------------------------------------------------- messages

_STATUS_CODES = st.sampled_from(sorted(STATUS_CODES))


@st.composite
def edocs(
    draw: st.DrawFn,
    *,
    with_unknown: bool = False,
    max_recipients: int = 20,
    max_attachments: int = 10,
) -> Edoc:
    """A schema-valid document with its manifest derived from its attachments."""
    edoc = Edoc(
        from_=draw(organizations(organ_id=True, organ_name=True)),
        to=draw(_lists(organizations(organ_id=True), min_size=1, max_size=max_recipients)),
        document_id=draw(texts(60)),
        code=Code(number=draw(texts(10)), notation=draw(texts(30))),
        promulgation=PromulgationInfo(place=draw(texts(30)), date=draw(dates())),
        document_type=DocumentType(
            type=draw(optional_texts(5)), type_detail=draw(optional_texts(5)), type_name=draw(texts(30))
        ),
        subject=draw(texts(200)),
        content=draw(optional_texts(200)),
        signer_info=SignerInfo(
            competence=draw(optional_texts(30)),
            position=draw(optional_texts(30)),
            full_name=draw(optional_texts(30)),
        ),
        due_date=draw(_optional(dates())),
        other_info=draw(_other_infos()),
        steering_type=draw(_optional(_small_ints(STEERING_TYPES, high=9))),
        to_places=draw(_text_lists()),
        response_for=draw(_lists(_response_fors(), max_size=3)),
        trace_headers=draw(_lists(_trace_headers(), max_size=4)),
        business=draw(_optional(_businesses())),
        attachments=draw(attachments(max_attachments)),
        unknown=draw(_unknown_elements()) if with_unknown else [],
    )
    return edoc.with_manifest()


@st.composite
def statuses(draw: st.DrawFn, *, with_unknown: bool = False) -> Status:
    """A schema-valid status message answering one (rarely more) documents."""
    return Status(
        from_=draw(organizations(organ_id=True, organ_name=True)),
        response_for=draw(_lists(_response_fors(document_id=True), min_size=1, max_size=2)),
        staff_info=draw(_optional(_staff_infos())),
        status_code=draw(_STATUS_CODES),
        description=draw(texts(200)),
        timestamp=draw(timestamps()),
        unknown=draw(_unknown_elements()) if with_unknown else [],
    )


def messages(*, with_unknown: bool = False) -> st.SearchStrategy[Message]:
    """A document or a status message."""
    return st.one_of(edocs(with_unknown=with_unknown), statuses(with_unknown=with_unknown))
