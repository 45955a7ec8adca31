"""Typed model of the two edXML messages: the document (edoc) and the status message.

Field names follow the QCVN 102:2016 element names in snake_case (``Bussiness`` keeps the
standard's spelling in the XML, the model calls it ``business``). Optional text is ``None``
when the element is absent or empty; dates are ``datetime.date``; timestamps are
timezone-aware ``datetime`` in Vietnam time (UTC+7), the zone the wire format implies.

Attachments are never held as whole byte strings: an attachment points at its content
through an :class:`AttachmentData` (a file on disk or a spooled temporary file).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, Union

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
XLINK_NS = "http://www.w3.org/1999/xlink"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

VN_TZ = timezone(timedelta(hours=7), "ICT")

STATUS_CODES: dict[str, str] = {
    "01": "Đã đến",
    "02": "Từ chối tiếp nhận",
    "03": "Đã tiếp nhận",
    "04": "Phân công",
    "05": "Đang xử lý",
    "06": "Hoàn thành",
    "13": "Lấy lại",
    "15": "Đồng ý lấy lại / cập nhật",
    "16": "Từ chối lấy lại / cập nhật",
}

#: Status codes seen on the wire that QCVN 102:2016 does not list, with their meaning: the
#: provincial hub records 999 ("Gui that bai") when it could not forward a document to the
#: national axis (soap-hub-contract.md). Shown by name; validation still reports them.
HUB_STATUS_CODES: dict[str, str] = {
    "999": "Gửi thất bại",
}

#: What each of the provincial hub's own codes means, in words for an operator.
HUB_STATUS_MEANINGS: dict[str, str] = {
    "999": "forwarding to the national axis failed",
}

#: Codes that say the document did not reach the recipient (rejected, or never forwarded).
NOT_DELIVERED_CODES: tuple[str, ...] = ("02", "999")


def status_label(code: str | None) -> str:
    """A status code's name as users know it: QCVN 102:2016's, or the provincial hub's own
    (999, with what it means); "(unknown code)" for any other."""
    if code in STATUS_CODES:
        return STATUS_CODES[code]
    if code in HUB_STATUS_CODES:
        return f"{HUB_STATUS_CODES[code]} (provincial hub: {HUB_STATUS_MEANINGS[code]})"
    return "(unknown code)"

PRIORITIES: dict[int, str] = {
    0: "Thường",
    1: "Khẩn",
    2: "Thượng khẩn",
    3: "Hỏa tốc",
    4: "Hỏa tốc hẹn giờ",
}

BUSINESS_DOC_TYPES: dict[int, str] = {
    0: "Văn bản mới",
    1: "Thu hồi",
    2: "Cập nhật",
    3: "Thay thế",
}

CHUNK = 1 << 16


# --------------------------------------------------------------------------- attachments


class AttachmentData(Protocol):
    """Where an attachment's bytes live; opened as a stream, never loaded whole."""

    size: int
    sha256: str

    def open(self) -> BinaryIO: ...


@dataclass(eq=False)
class FileData:
    """Attachment content that is a file on disk (for example a clerk's PDF)."""

    path: Path
    size: int = -1
    sha256: str = ""

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.size < 0 or not self.sha256:
            digest = hashlib.sha256()
            size = 0
            with self.path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            self.size, self.sha256 = size, digest.hexdigest()

    def open(self) -> BinaryIO:
        return self.path.open("rb")


class SpooledData:
    """Attachment content received from the wire: memory while small, a temp file beyond.

    The SHA-256 is computed when first asked for, so content that is only a wrapper (the
    VNPT ZIP around the real file) is never hashed. Content still in memory can be read
    whole without a file handle (:meth:`memory`): most attachments are small, and opening
    handles on them cost more than the rest of reading them.
    """

    def __init__(self, max_memory: int = 1 << 20, directory: str | Path | None = None):
        self._max_memory = max_memory
        self._directory = directory
        self._buffer: io.BytesIO | None = io.BytesIO()
        self._file: BinaryIO | None = None
        self._sha256 = ""
        self.size = 0

    def write(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer is not None:
            if self.size + len(data) <= self._max_memory:
                buffer.write(data)
                self.size += len(data)
                return
            self._roll_over(buffer)
        self._file.write(data)  # type: ignore[union-attr]
        self.size += len(data)

    def _roll_over(self, buffer: io.BytesIO) -> None:
        """Move what memory holds into a temporary file (deleted when closed)."""
        self._file = tempfile.TemporaryFile(dir=self._directory)
        self._file.write(buffer.getbuffer())
        self._buffer = None

    def finish(self) -> None:
        if self._file is not None:
            self._file.flush()

    def memory(self) -> bytes | None:
        """The whole content while it is held in memory, else None (it is in a file)."""
        return self._buffer.getvalue() if self._buffer is not None else None

    @property
    def sha256(self) -> str:
        if not self._sha256:
            held = self.memory()
            if held is not None:
                self._sha256 = hashlib.sha256(held).hexdigest()
                return self._sha256
            digest = hashlib.sha256()
            with self.open() as fh:
                while chunk := fh.read(CHUNK * 4):
                    digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def open(self) -> BinaryIO:
        """A fresh read handle; concurrent readers of one SpooledData are not supported."""
        return self.read_range(0, self.size)

    def read_range(self, offset: int, length: int) -> BinaryIO:
        """A read handle over ``length`` bytes from ``offset`` (a stored ZIP entry, say)."""
        held = self.handle()
        held.seek(offset)
        return _NonClosing(held, length)

    def handle(self) -> BinaryIO:
        """The handle that holds the content (memory or file), for readers that seek around
        in it (zipfile). Shared: the same concurrency rule as :meth:`open` applies."""
        return self._buffer if self._buffer is not None else self._file  # type: ignore[return-value]

    def close(self) -> None:
        """Discard the content. A temporary file's last buffered bytes are dropped, not written:
        flushing them could only fail again on a full disk and hide the error that ended the
        reading (the file is deleted on close either way)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the descriptor is closed even when the final flush fails
        if self._buffer is not None:
            self._buffer.close()


class SliceData:
    """A byte range of a spooled file: the inner file of a stored (uncompressed) ZIP entry."""

    def __init__(self, parent: SpooledData, offset: int, size: int, sha256: str):
        self.parent, self.offset, self.size, self.sha256 = parent, offset, size, sha256

    def open(self) -> BinaryIO:
        return self.parent.read_range(self.offset, self.size)

    def close(self) -> None:
        self.parent.close()


class _NonClosing(io.RawIOBase):
    """A bounded read view whose close() leaves the spooled file open for later readers."""

    def __init__(self, fh: BinaryIO, limit: int):
        self._fh = fh
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = self._fh.read(size)
        self._left -= len(data)
        return data


class BytesData:
    """Small in-memory content (tests, generated samples); same interface as the others."""

    def __init__(self, data: bytes):
        self._data = bytes(data)
        self.size = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()

    def open(self) -> BinaryIO:
        return io.BytesIO(self._data)


Packaging = Literal["plain", "zip"]


@dataclass
class Attachment:
    """One attached file as the clerk sees it.

    ``content_type``, ``size`` and ``sha256`` describe the file itself. ``packaging`` says how
    it travels: ``"zip"`` wraps it in a one-entry ZIP (as the VNPT builder does; the wire then
    says ``application/zip`` and receivers take the type from the name), ``"plain"`` sends
    the bytes as they are.
    """

    content_id: str
    name: str
    content_type: str = "application/octet-stream"
    description: str | None = None
    packaging: Packaging = "plain"
    size: int | None = None
    sha256: str | None = None
    data: AttachmentData | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.content_id = bare_content_id(self.content_id)
        if self.packaging == "zip" and self.name.lower().endswith(".zip"):
            # Receivers do not unwrap a file whose own name ends in .zip: send it as is.
            self.packaging = "plain"
        if self.data is not None:
            self.size = self.data.size
            self.sha256 = self.data.sha256


@dataclass
class ManifestReference:
    """An entry of ``edXMLManifest``: what the envelope says is attached."""

    content_id: str
    attachment_name: str | None = None
    content_type: str | None = None
    description: str | None = None
    href: str | None = None

    def __post_init__(self) -> None:
        self.content_id = bare_content_id(self.content_id)


# --------------------------------------------------------------------------- header parts


@dataclass
class Organization:
    """``From`` / ``To``: an agency and its contact details."""

    organ_id: str | None = None
    organization_in_charge: str | None = None
    organ_name: str | None = None
    organ_add: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    website: str | None = None


@dataclass
class Code:
    """Số và ký hiệu văn bản."""

    number: str | None = None
    notation: str | None = None


@dataclass
class PromulgationInfo:
    place: str | None = None
    date: date | None = None


@dataclass
class DocumentType:
    type: str | None = None
    type_detail: str | None = None
    type_name: str | None = None


@dataclass
class SignerInfo:
    competence: str | None = None
    position: str | None = None
    full_name: str | None = None


@dataclass
class OtherInfo:
    priority: int | None = None
    sphere_of_promulgation: str | None = None
    typer_notation: str | None = None
    promulgation_amount: int | None = None
    page_amount: int | None = None
    direction: bool | None = None
    appendixes: list[str] = field(default_factory=list)


@dataclass
class ResponseFor:
    """The document this message answers."""

    organ_id: str | None = None
    code: str | None = None
    promulgation_date: date | None = None
    document_id: str | None = None


@dataclass
class TraceHeader:
    organ_id: str | None = None
    timestamp: datetime | None = None


@dataclass
class StaffInfo:
    department: str | None = None
    staff: str | None = None
    email: str | None = None
    mobile: str | None = None


@dataclass
class Receiver:
    organ_id: str | None = None
    receiver_type: int | None = None


@dataclass
class BusinessDocumentInfo:
    """What an update (BussinessDocType 2) changes."""

    document_info: int | None = None
    document_receiver: int | None = None
    receivers: list[Receiver] = field(default_factory=list)


@dataclass
class ReplacementInfo:
    """A document a replacement (BussinessDocType 3) supersedes, and for whom."""

    document_id: str | None = None
    organ_ids: list[str] = field(default_factory=list)


@dataclass
class Business:
    """``TraceHeaderList/Bussiness``: new, revoke, update or replace."""

    document_id: str | None = None
    business_doc_type: int | None = None
    business_doc_reason: str | None = None
    paper: int | None = None
    business_document_info: BusinessDocumentInfo | None = None
    replacement_info: list[ReplacementInfo] = field(default_factory=list)
    staff_info: StaffInfo | None = None


@dataclass
class UnknownElement:
    """An element the standard does not name; kept (as XML text) and reported."""

    path: str
    line: int | None
    xml: str


# --------------------------------------------------------------------------- messages


@dataclass
class Edoc:
    """The document message (văn bản điện tử)."""

    from_: Organization = field(default_factory=Organization)
    to: list[Organization] = field(default_factory=list)
    document_id: str | None = None
    code: Code = field(default_factory=Code)
    promulgation: PromulgationInfo = field(default_factory=PromulgationInfo)
    document_type: DocumentType = field(default_factory=DocumentType)
    subject: str | None = None
    content: str | None = None
    signer_info: SignerInfo = field(default_factory=SignerInfo)
    due_date: date | None = None
    other_info: OtherInfo = field(default_factory=OtherInfo)
    steering_type: int | None = None
    to_places: list[str] = field(default_factory=list)
    response_for: list[ResponseFor] = field(default_factory=list)
    trace_headers: list[TraceHeader] = field(default_factory=list)
    business: Business | None = None
    manifest: list[ManifestReference] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    unknown: list[UnknownElement] = field(default_factory=list, compare=False)

    kind = "edoc"

    def with_manifest(self) -> "Edoc":
        """Fill the manifest from the attachments, as a sender's builder does."""
        self.manifest = manifest_for(self.attachments)
        return self


@dataclass
class Status:
    """The status message (thông điệp trạng thái) answering a document."""

    from_: Organization = field(default_factory=Organization)
    response_for: list[ResponseFor] = field(default_factory=list)
    staff_info: StaffInfo | None = None
    status_code: str | None = None
    description: str | None = None
    timestamp: datetime | None = None
    unknown: list[UnknownElement] = field(default_factory=list, compare=False)

    kind = "status"


Message = Union[Edoc, Status]


def bare_content_id(value: str) -> str:
    """A content id without the ``cid:`` scheme or angle brackets; producers use both forms."""
    value = (value or "").strip()
    if value[:4].lower() == "cid:":
        value = value[4:]
    return value.strip("<>")


def manifest_for(attachments: list[Attachment]) -> list[ManifestReference]:
    """The manifest the VNPT builder writes for these attachments."""
    return [
        ManifestReference(
            content_id=a.content_id,
            attachment_name=a.name,
            content_type=wire_content_type(a),
            description=a.description,
        )
        for a in attachments
    ]


def wire_content_type(attachment: Attachment) -> str:
    """The ContentType written on the wire: the ZIP type when the file travels zipped."""
    return "application/zip" if attachment.packaging == "zip" else attachment.content_type


def now_vn() -> datetime:
    """The current time in Vietnam, to the second (the wire's precision). Read as whole
    seconds of the clock: ``replace(microsecond=0)`` costs more than the clock read itself,
    and every signature asks for the time."""
    return datetime.fromtimestamp(int(time.time()), VN_TZ)
