"""Streaming SOAP-with-Attachments bodies: ``multipart/related; type="text/xml"``.

Both directions stream: :func:`generate` yields the body in chunks, reading each attachment
from its :class:`~connector.edxml.model.AttachmentData` as it goes; :func:`parse` reads a body
from a binary stream in chunks with the shared :class:`connector.multipart.PartReader` (which
finds boundaries even when they straddle two chunks and enforces the limits), and spools each
part to a :class:`~connector.edxml.model.SpooledData` (memory while small, a temporary file
beyond), so no large part is ever held whole in memory. The hub contract's
shapes are both here: raw bytes (``Content-Transfer-Encoding: binary``) for SendDocument, and
the unlabelled base64 TEXT parts of GetDocument responses (:func:`generate` with
``encoding="base64"``; :func:`decode_base64` on the reading side).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from connector.edxml.model import AttachmentData, BytesData, SpooledData, bare_content_id
from connector.multipart import CHUNK, CRLF, MultipartError, PartReader, TruncatedBodyError, split_content_type

from ._disk import spooling

ROOT_CID = "root"
ENVELOPE_TYPE = "text/xml; charset=UTF-8"
Encoding = Literal["binary", "base64"]


@dataclass
class OutPart:
    """A part to send: its Content-ID (bare), type and content (streamed from ``data``)."""

    content_id: str
    content_type: str
    data: AttachmentData
    encoding: Encoding = "binary"


@dataclass(frozen=True)
class MultipartLimits:
    """Bounds for :func:`parse`: count and size of parts, header size, spooling threshold."""

    max_parts: int = 1000
    max_part_size: int = 2 * 1024**3
    max_total: int = 4 * 1024**3
    max_header_bytes: int = 16 * 1024
    max_root_size: int = 64 * 1024**2
    spool_memory: int = 1 << 20


@dataclass
class InPart:
    """A part received: headers (lower-case names), bare Content-ID, and spooled content."""

    headers: dict[str, str]
    content_id: str
    content_type: str
    data: SpooledData

    def close(self) -> None:
        self.data.close()


@dataclass
class Related:
    """A parsed multipart/related body: the root part (the envelope) and the others by id."""

    root: InPart
    parts: dict[str, InPart] = field(default_factory=dict)

    def root_bytes(self) -> bytes:
        with self.root.data.open() as fh:
            return fh.read()

    def close(self) -> None:
        self.root.close()
        for part in self.parts.values():
            part.close()

    def __enter__(self) -> "Related":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- writing


def new_boundary() -> str:
    return "MIMEBoundary_" + secrets.token_hex(24)


def content_type(boundary: str, start: str = ROOT_CID) -> str:
    """The ``Content-Type`` header value of a SwA body with this boundary."""
    return f'multipart/related; type="text/xml"; start="<{start}>"; boundary="{boundary}"'


def _part_head(boundary: str, content_id: str, ctype: str, encoding: str, first: bool) -> bytes:
    lead = b"" if first else CRLF
    return (
        lead
        + b"--"
        + boundary.encode("ascii")
        + CRLF
        + f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {encoding}\r\nContent-ID: <{content_id}>\r\n\r\n".encode(
            "utf-8"
        )
    )


def _b64_size(size: int) -> int:
    return 4 * ((size + 2) // 3)


def body_length(envelope_size: int, parts: list[OutPart], boundary: str, root_cid: str = ROOT_CID) -> int:
    """The exact byte length :func:`generate` will produce (for a Content-Length header)."""
    total = len(_part_head(boundary, root_cid, ENVELOPE_TYPE, "8bit", True)) + envelope_size
    for part in parts:
        total += len(_part_head(boundary, bare_content_id(part.content_id), part.content_type, part.encoding, False))
        total += _b64_size(part.data.size) if part.encoding == "base64" else part.data.size
    return total + len(CRLF + b"--" + boundary.encode("ascii") + b"--" + CRLF)


def generate(
    envelope: bytes, parts: list[OutPart], boundary: str, *, root_cid: str = ROOT_CID, chunk: int = CHUNK
) -> Iterator[bytes]:
    """Yield the body: the envelope part, then each part streamed from its data, then the close.

    ``encoding="base64"`` parts are written as unbroken base64 text (GetDocument responses).
    """
    yield _part_head(boundary, root_cid, ENVELOPE_TYPE, "8bit", True) + envelope
    for part in parts:
        yield _part_head(boundary, bare_content_id(part.content_id), part.content_type, part.encoding, False)
        with part.data.open() as fh:
            if part.encoding == "base64":
                step = (chunk // 3) * 3 or 3
                pending = b""
                while block := fh.read(step):
                    pending += block
                    cut = len(pending) - len(pending) % 3
                    if cut:
                        yield base64.b64encode(pending[:cut])
                        pending = pending[cut:]
                if pending:
                    yield base64.b64encode(pending)
            else:
                while block := fh.read(chunk):
                    yield block
    yield CRLF + b"--" + boundary.encode("ascii") + b"--" + CRLF


# --------------------------------------------------------------------------- reading


def is_multipart(content_type_value: str | None) -> bool:
    return bool(content_type_value) and content_type_value.strip().lower().startswith("multipart/")  # type: ignore[union-attr]


def parse(
    stream: BinaryIO,
    content_type_value: str,
    *,
    limits: MultipartLimits = MultipartLimits(),
    spool_dir: str | Path | None = None,
    chunk: int = CHUNK,
) -> Related:
    """Read a multipart/related body from ``stream``; the root is the ``start`` part (else the first).

    Raises :class:`MultipartError` on a missing boundary, a part without a usable Content-ID,
    or a limit exceeded, and its subclass :class:`TruncatedBodyError` when the body ends inside
    a part; :class:`~connector.durable.DiskFull` naming the spool folder when a part cannot be
    spooled for lack of space (errors reading ``stream`` are left as they are). Spooled parts
    are closed on error.
    """
    ctype, params = split_content_type(content_type_value)
    boundary = params.get("boundary")
    if not ctype.startswith("multipart/") or not boundary:
        raise MultipartError(f"not a multipart body with a boundary: {content_type_value[:200]!r}")
    start = bare_content_id(params.get("start", "")) or None
    received: list[InPart] = []
    try:
        for part in _iter_parts(stream, boundary, limits, spool_dir, chunk):
            received.append(part)
        if not received:
            raise MultipartError("multipart body has no parts")
        root = next((p for p in received if start and p.content_id == start), None)
        if start and root is None:
            raise MultipartError(f"no part has the start Content-ID <{start}>")
        root = root or received[0]
        if root.data.size > limits.max_root_size:
            raise MultipartError(f"root part is {root.data.size} bytes (limit {limits.max_root_size})")
        parts: dict[str, InPart] = {}
        for index, part in enumerate(received):
            if part is root:
                continue
            cid = part.content_id or f"part{index}"
            if cid in parts:
                raise MultipartError(f"two parts have the Content-ID <{cid}>")
            parts[cid] = part
        return Related(root, parts)
    except BaseException:
        for part in received:
            part.close()
        raise


def _iter_parts(
    stream: BinaryIO, boundary: str, limits: MultipartLimits, spool_dir: str | Path | None, chunk: int
) -> Iterator[InPart]:
    reader = PartReader(
        stream, boundary, max_total=limits.max_total, max_parts=limits.max_parts,
        max_header_bytes=limits.max_header_bytes, chunk=chunk, unfold_headers=True,
    )
    while (headers := reader.next_part()) is not None:
        data = SpooledData(limits.spool_memory, spool_dir)
        try:
            with spooling(spool_dir):  # a full spool disk is DiskFull, not a broken transfer
                reader.read_body(data.write, limits.max_part_size)
                data.finish()
        except BaseException:
            data.close()
            raise
        yield InPart(
            headers,
            bare_content_id(headers.get("content-id", "")),
            headers.get("content-type", "application/octet-stream"),
            data,
        )


# --------------------------------------------------------------------------- base64 parts


def decode_base64(data: AttachmentData, *, spool_memory: int = 1 << 20, spool_dir: str | Path | None = None) -> SpooledData:
    """Decode a part whose body is base64 TEXT (GetDocument) into a new spooled file, streaming.

    Whitespace is ignored; anything else outside the base64 alphabet raises
    :class:`MultipartError`. A full disk under ``spool_dir`` raises
    :class:`~connector.durable.DiskFull` naming it.
    """
    out = SpooledData(spool_memory, spool_dir)
    pending = b""
    try:
        with spooling(spool_dir):
            with data.open() as fh:
                while block := fh.read(CHUNK):
                    pending += block.translate(None, b" \t\r\n")
                    cut = len(pending) - len(pending) % 4
                    if cut:
                        out.write(base64.b64decode(pending[:cut], validate=True))
                        pending = pending[cut:]
            if pending:
                raise MultipartError("base64 part is truncated (length not a multiple of 4)")
            out.finish()
    except binascii.Error as exc:
        out.close()
        raise MultipartError(f"part is not valid base64: {exc}") from None
    except BaseException:
        out.close()
        raise
    return out


__all__ = [
    "OutPart", "InPart", "Related", "MultipartLimits", "MultipartError", "TruncatedBodyError", "new_boundary", "content_type",
    "body_length", "generate", "parse", "is_multipart", "decode_base64", "ROOT_CID",
    "ENVELOPE_TYPE", "BytesData",
]
