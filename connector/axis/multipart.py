"""Streaming SOAP-with-Attachments bodies: ``multipart/related; type="text/xml"``.

Both directions stream: :func:`generate` yields the body in chunks, reading each attachment
from its :class:`~connector.edxml.model.AttachmentData` as it goes; :func:`parse` reads a body
from a binary stream in chunks, finds boundaries even when they straddle two chunks, and
spools each part to a :class:`~connector.edxml.model.SpooledData` (memory while small, a
temporary file beyond), so no large part is ever held whole in memory. The hub contract's
shapes are both here: raw bytes (``Content-Transfer-Encoding: binary``) for SendDocument, and
the unlabelled base64 TEXT parts of GetDocument responses (:func:`generate` with
``encoding="base64"``; :func:`decode_base64` on the reading side).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from email.message import Message as _HeaderMessage
from pathlib import Path
from typing import BinaryIO, Iterator, Literal

from connector.edxml.model import AttachmentData, BytesData, SpooledData, bare_content_id

CHUNK = 1 << 16
CRLF = b"\r\n"
ROOT_CID = "root"
ENVELOPE_TYPE = "text/xml; charset=UTF-8"
Encoding = Literal["binary", "base64"]


class MultipartError(ValueError):
    """The body is not a well-formed multipart/related message, or is over a limit."""


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


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type`` value into its lower-case type and its parameters."""
    message = _HeaderMessage()
    message["content-type"] = value
    params = {k.lower(): v for k, v in (message.get_params() or [])[1:]}
    return message.get_content_type(), params


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

    Raises :class:`MultipartError` on a missing boundary, a truncated body, a part without a
    usable Content-ID, or a limit exceeded. Spooled parts are closed on error.
    """
    ctype, params = header_params(content_type_value)
    boundary = params.get("boundary")
    if not ctype.startswith("multipart/") or not boundary:
        raise MultipartError(f"not a multipart body with a boundary: {content_type_value[:200]!r}")
    if len(boundary) > 200:
        raise MultipartError("boundary longer than 200 characters")
    start = bare_content_id(params.get("start", "")) or None
    received: list[InPart] = []
    try:
        for part in _iter_parts(stream, boundary.encode("latin-1"), limits, spool_dir, chunk):
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


class _Reader:
    """A chunked reader with a look-ahead buffer."""

    def __init__(self, stream: BinaryIO, chunk: int, max_total: int):
        self.stream, self.chunk, self.max_total = stream, chunk, max_total
        self.buffer = bytearray(CRLF)  # so a delimiter at the very start is found like the others
        self.total = 0
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        block = self.stream.read(self.chunk)
        if not block:
            self.eof = True
            return False
        self.total += len(block)
        if self.total > self.max_total:
            raise MultipartError(f"body over {self.max_total} bytes")
        self.buffer += block
        return True


def _iter_parts(
    stream: BinaryIO, boundary: bytes, limits: MultipartLimits, spool_dir: str | Path | None, chunk: int
) -> Iterator[InPart]:
    delimiter = CRLF + b"--" + boundary
    reader = _Reader(stream, chunk, limits.max_total)
    # Preamble: skip up to the first delimiter.
    while (at := reader.buffer.find(delimiter)) < 0:
        del reader.buffer[: max(0, len(reader.buffer) - len(delimiter))]
        if not reader.fill():
            raise MultipartError("no boundary found in the body")
    del reader.buffer[: at + len(delimiter)]
    count = 0
    while True:
        while len(reader.buffer) < 2 and reader.fill():
            pass
        if reader.buffer[:2] == b"--":
            return  # close delimiter; the epilogue is ignored
        # Rest of the delimiter line (transport padding), then the headers.
        headers = _read_headers(reader, limits.max_header_bytes)
        count += 1
        if count > limits.max_parts:
            raise MultipartError(f"more than {limits.max_parts} parts")
        data = SpooledData(limits.spool_memory, spool_dir)
        try:
            _read_body(reader, delimiter, data, limits.max_part_size)
        except BaseException:
            data.close()
            raise
        data.finish()
        yield InPart(
            headers,
            bare_content_id(headers.get("content-id", "")),
            headers.get("content-type", "application/octet-stream"),
            data,
        )


def _read_headers(reader: _Reader, max_bytes: int) -> dict[str, str]:
    while (end := reader.buffer.find(b"\r\n\r\n")) < 0:
        if len(reader.buffer) > max_bytes:
            raise MultipartError(f"part headers over {max_bytes} bytes")
        if not reader.fill():
            raise MultipartError("body ends inside part headers")
    if end > max_bytes:
        raise MultipartError(f"part headers over {max_bytes} bytes")
    block = bytes(reader.buffer[:end])
    del reader.buffer[: end + 4]
    first, _, rest = block.partition(CRLF)
    if first.strip(b" \t"):
        raise MultipartError("garbage after a boundary delimiter")
    headers: dict[str, str] = {}
    for line in rest.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        if line[0] in " \t" and headers:  # folded header line
            last = next(reversed(headers))
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _read_body(reader: _Reader, delimiter: bytes, out: SpooledData, max_size: int) -> None:
    keep = len(delimiter) - 1
    while True:
        at = reader.buffer.find(delimiter)
        if at >= 0:
            _emit(out, reader.buffer[:at], max_size)
            del reader.buffer[: at + len(delimiter)]
            return
        if len(reader.buffer) > keep:
            cut = len(reader.buffer) - keep
            _emit(out, reader.buffer[:cut], max_size)
            del reader.buffer[:cut]
        if not reader.fill():
            raise MultipartError("body ends inside a part (no closing boundary)")


def _emit(out: SpooledData, data: bytearray, max_size: int) -> None:
    if out.size + len(data) > max_size:
        raise MultipartError(f"a part is over {max_size} bytes")
    if data:
        out.write(bytes(data))


# --------------------------------------------------------------------------- base64 parts


def decode_base64(data: AttachmentData, *, spool_memory: int = 1 << 20, spool_dir: str | Path | None = None) -> SpooledData:
    """Decode a part whose body is base64 TEXT (GetDocument) into a new spooled file, streaming.

    Whitespace is ignored; anything else outside the base64 alphabet raises
    :class:`MultipartError`.
    """
    out = SpooledData(spool_memory, spool_dir)
    pending = b""
    try:
        with data.open() as fh:
            while block := fh.read(CHUNK):
                pending += block.translate(None, b" \t\r\n")
                cut = len(pending) - len(pending) % 4
                if cut:
                    out.write(base64.b64decode(pending[:cut], validate=True))
                    pending = pending[cut:]
        if pending:
            raise MultipartError("base64 part is truncated (length not a multiple of 4)")
    except binascii.Error as exc:
        out.close()
        raise MultipartError(f"part is not valid base64: {exc}") from None
    except BaseException:
        out.close()
        raise
    out.finish()
    return out


__all__ = [
    "OutPart", "InPart", "Related", "MultipartLimits", "MultipartError", "new_boundary", "content_type",
    "body_length", "generate", "parse", "header_params", "is_multipart", "decode_base64", "ROOT_CID",
    "ENVELOPE_TYPE", "BytesData",
]
