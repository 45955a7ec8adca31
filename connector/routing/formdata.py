"""``multipart/form-data`` both ways, streamed: what the webhook sends and the intake API reads.

Writing (:class:`FormBody`): the parts are described up front (small in-memory values and
files opened only while they are sent), the exact length is known before the first byte, so
the request carries ``Content-Length`` (some DMS servers refuse chunked bodies) and each
attempt of a retry streams the files again from disk.

Reading (:func:`parse_form`): chunks from a stream, boundaries found even when they straddle
two reads, each file part written straight to a file in a folder the caller gives, small
fields kept in memory; limits on part count, header size, field and file size and the total.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message as _Headers
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 16
CRLF = b"\r\n"

__all__ = [
    "FormBody",
    "FormError",
    "FormField",
    "FormFile",
    "FormLimits",
    "ParsedForm",
    "ReceivedFile",
    "parse_form",
]


# --------------------------------------------------------------------------- writing


@dataclass
class FormField:
    """A small part held in memory (the ``metadata`` JSON)."""

    name: str
    value: bytes
    content_type: str = "text/plain; charset=utf-8"
    filename: str | None = None


@dataclass
class FormFile:
    """A file part streamed from ``open()``; ``size`` must be exact."""

    name: str
    filename: str
    size: int
    open: Callable[[], BinaryIO]
    content_type: str = "application/octet-stream"


def _quote(value: str) -> str:
    """A quoted header parameter as browsers write it (RFC 7578: UTF-8, ``"`` and CR/LF escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A") + '"'


class FormBody:
    """A form-data body of known length that can be iterated (sent) more than once."""

    def __init__(self, parts: list[FormField | FormFile], boundary: str | None = None):
        self.parts = parts
        self.boundary = boundary or "----edoc-connector-" + secrets.token_hex(16)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _head(self, part: FormField | FormFile) -> bytes:
        disposition = f"form-data; name={_quote(part.name)}"
        if part.filename is not None:
            disposition += f"; filename={_quote(part.filename)}"
        return (
            f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {part.content_type}\r\n\r\n"
        ).encode()

    def __len__(self) -> int:
        total = 0
        for part in self.parts:
            size = len(part.value) if isinstance(part, FormField) else part.size
            total += len(self._head(part)) + size + len(CRLF)
        return total + len(f"--{self.boundary}--\r\n")

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            yield self._head(part)
            if isinstance(part, FormField):
                yield part.value
            else:
                sent = 0
                with part.open() as fh:
                    while block := fh.read(CHUNK):
                        sent += len(block)
                        yield block
                if sent != part.size:
                    raise OSError(f"file part {part.filename!r} changed while sending: {sent} bytes, expected {part.size}")
            yield CRLF
        yield f"--{self.boundary}--\r\n".encode("ascii")


# --------------------------------------------------------------------------- reading


class FormError(ValueError):
    """The body is not well-formed multipart/form-data, or is over a limit (``status`` 400/413)."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class FormLimits:
    max_parts: int = 1000
    max_header_bytes: int = 16 * 1024
    max_field_bytes: int = 16 * 1024**2
    max_file_bytes: int = 2 * 1024**3
    max_total: int = 4 * 1024**3


@dataclass
class ReceivedFile:
    """A file part written to ``path``; ``filename`` is the name the client gave (unchecked)."""

    field: str
    filename: str
    content_type: str
    path: Path
    size: int


@dataclass
class ParsedForm:
    fields: dict[str, list[bytes]] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)


def parse_form(
    stream: BinaryIO,
    content_type: str,
    target_dir: Path,
    *,
    limits: FormLimits = FormLimits(),
    file_path: Callable[[int, str], Path] | None = None,
) -> ParsedForm:
    """Read a form-data body; file parts (those with a ``filename``) go to files under
    ``target_dir`` (``file_path(index, filename)`` picks the path, default ``part-<index>``).

    Raises :class:`FormError`; files written before the error are left for the caller to
    remove with ``target_dir``.
    """
    ctype, params = _header_params(content_type)
    boundary = params.get("boundary")
    if ctype != "multipart/form-data" or not boundary:
        raise FormError(f"expected Content-Type multipart/form-data with a boundary, got {content_type[:200]!r}", 415)
    if len(boundary) > 200:
        raise FormError("boundary longer than 200 characters")
    choose = file_path or (lambda index, filename: target_dir / f"part-{index}")
    form = ParsedForm()
    delimiter = CRLF + b"--" + boundary.encode("latin-1")
    reader = _Reader(stream, limits.max_total)
    while (at := reader.buffer.find(delimiter)) < 0:
        del reader.buffer[: max(0, len(reader.buffer) - len(delimiter))]
        if not reader.fill():
            raise FormError("no boundary found in the body")
    del reader.buffer[: at + len(delimiter)]
    count = 0
    while True:
        while len(reader.buffer) < 2 and reader.fill():
            pass
        if reader.buffer[:2] == b"--":
            return form
        headers = _read_headers(reader, limits.max_header_bytes)
        count += 1
        if count > limits.max_parts:
            raise FormError(f"more than {limits.max_parts} parts", 413)
        disposition = headers.get("content-disposition", "")
        name, filename = _disposition(disposition)
        if name is None:
            raise FormError(f"part {count} has no Content-Disposition name")
        part_type = headers.get("content-type", "application/octet-stream")
        if filename is None:
            buffer = bytearray()
            _read_body(reader, delimiter, buffer.extend, limits.max_field_bytes, f"field {name!r}")
            form.fields.setdefault(name, []).append(bytes(buffer))
            continue
        path = choose(count, filename)
        size = 0
        with open(path, "xb") as out:

            def write(data: bytes) -> None:
                nonlocal size
                size += len(data)
                out.write(data)

            _read_body(reader, delimiter, write, limits.max_file_bytes, f"file {filename!r}")
            out.flush()
            os.fsync(out.fileno())
        form.files.append(ReceivedFile(name, filename, part_type, path, size))


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    message = _Headers()
    message["content-type"] = value
    params = {k.lower(): v for k, v in (message.get_params() or [])[1:]}
    return message.get_content_type(), params


def _disposition(value: str) -> tuple[str | None, str | None]:
    """``name`` and ``filename`` of a Content-Disposition (``filename*=UTF-8''...`` understood)."""
    message = _Headers()
    message["content-disposition"] = value
    if message.get_content_disposition() != "form-data":
        return None, None
    name = message.get_param("name", header="content-disposition")
    filename = message.get_filename()
    if isinstance(name, tuple):
        name = name[2]
    return (str(name) if name is not None else None), filename


class _Reader:
    def __init__(self, stream: BinaryIO, max_total: int):
        self.stream, self.max_total = stream, max_total
        self.buffer = bytearray(CRLF)  # a delimiter at the very start is found like the others
        self.total = 0

    def fill(self) -> bool:
        block = self.stream.read(CHUNK)
        if not block:
            return False
        self.total += len(block)
        if self.total > self.max_total:
            raise FormError(f"body over {self.max_total} bytes", 413)
        self.buffer += block
        return True


def _read_headers(reader: _Reader, max_bytes: int) -> dict[str, str]:
    while (end := reader.buffer.find(b"\r\n\r\n")) < 0:
        if len(reader.buffer) > max_bytes:
            raise FormError(f"part headers over {max_bytes} bytes", 413)
        if not reader.fill():
            raise FormError("body ends inside part headers")
    if end > max_bytes:
        raise FormError(f"part headers over {max_bytes} bytes", 413)
    block = bytes(reader.buffer[:end])
    del reader.buffer[: end + 4]
    first, _, rest = block.partition(CRLF)
    if first.strip(b" \t"):
        raise FormError("garbage after a boundary delimiter")
    headers: dict[str, str] = {}
    for line in rest.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise FormError(f"malformed part header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _read_body(reader: _Reader, delimiter: bytes, emit: Callable[[bytes], None], max_size: int, what: str) -> None:
    keep = len(delimiter) - 1
    size = 0

    def out(data: bytearray) -> None:
        nonlocal size
        size += len(data)
        if size > max_size:
            raise FormError(f"{what} is over {max_size} bytes", 413)
        if data:
            emit(bytes(data))

    while True:
        at = reader.buffer.find(delimiter)
        if at >= 0:
            out(reader.buffer[:at])
            del reader.buffer[: at + len(delimiter)]
            return
        if len(reader.buffer) > keep:
            cut = len(reader.buffer) - keep
            out(reader.buffer[:cut])
            del reader.buffer[:cut]
        if not reader.fill():
            raise FormError("body ends inside a part (no closing boundary)")
