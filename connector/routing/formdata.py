"""``multipart/form-data`` both ways, streamed: what the webhook sends and the intake API reads.

Writing (:class:`FormBody`): the parts are described up front (small in-memory values and
files opened only while they are sent), the exact length is known before the first byte, so
the request carries ``Content-Length`` (some DMS servers refuse chunked bodies) and each
attempt of a retry streams the files again from disk.

Reading (:func:`parse_form`): the parts come from the shared streaming reader
(:class:`connector.multipart.PartReader`: boundaries found even when they straddle two reads,
limits on part count, header size, part size and the total); each file part is written
straight to a file in a folder the caller gives, small fields are kept in memory.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message as _Headers
from pathlib import Path
from typing import BinaryIO

from connector.multipart import CHUNK, CRLF, MultipartError, PartReader, split_content_type

__all__ = [
    "FormBody",
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


@dataclass(frozen=True)
class FormLimits:
    max_parts: int = 1000
    max_header_bytes: int = 16 * 1024
    max_field_bytes: int = 16 * 1024**2
    max_file_bytes: int = 2 * 1024**3
    max_total: int = 4 * 1024**3
    max_fields_total: int | None = None  # all non-file fields together (they are held in memory)


@dataclass
class ReceivedFile:
    """A file part written to ``path``; ``filename`` is the name the client gave (unchecked)."""

    field: str
    filename: str
    content_type: str
    path: Path | None  # None: ``file_path`` declined it, the content was read and discarded
    size: int
    index: int = 0  # the part's 1-based number in the body


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
    file_path: Callable[[int, str], Path | None] | None = None,
) -> ParsedForm:
    """Read a form-data body; file parts (those with a ``filename``) go to files under
    ``target_dir`` (``file_path(index, filename)`` picks the path, default ``part-<index>``;
    when it returns None the part is read, within the limits, and discarded).

    Raises :class:`~connector.multipart.MultipartError` (its ``status`` 400, 413 or 415 fits
    the HTTP answer); files written before the error are left for the caller to
    remove with ``target_dir``.
    """
    ctype, params = split_content_type(content_type)
    boundary = params.get("boundary")
    if ctype != "multipart/form-data" or not boundary:
        raise MultipartError(
            f"expected Content-Type multipart/form-data with a boundary, got {content_type[:200]!r}", 415
        )
    choose = file_path or (lambda index, filename: target_dir / f"part-{index}")
    form = ParsedForm()
    reader = PartReader(
        stream, boundary, max_total=limits.max_total, max_parts=limits.max_parts, max_header_bytes=limits.max_header_bytes
    )
    fields_size = 0

    def keep(value: bytearray, name: str) -> Callable[[bytes], None]:
        def sink(data: bytes) -> None:
            nonlocal fields_size
            fields_size += len(data)
            if limits.max_fields_total is not None and fields_size > limits.max_fields_total:
                raise MultipartError(f"the form fields (parts without a filename) are together over "
                                     f"{limits.max_fields_total} bytes, at field {name!r} (part {reader.count})", 413)
            value.extend(data)
        return sink

    while (headers := reader.next_part()) is not None:
        name, filename = _disposition(headers.get("content-disposition", ""))
        if name is None:
            raise MultipartError(f"part {reader.count} has no Content-Disposition name")
        if filename is None:
            value = bytearray()
            reader.read_body(keep(value, name), limits.max_field_bytes, f"field {name!r}")
            form.fields.setdefault(name, []).append(bytes(value))
            continue
        path = choose(reader.count, filename)
        if path is None:
            size = reader.read_body(lambda data: None, limits.max_file_bytes, f"file {filename!r}")
        else:
            with open(path, "xb") as out:
                size = reader.read_body(out.write, limits.max_file_bytes, f"file {filename!r}")
                out.flush()
                os.fsync(out.fileno())
        form.files.append(ReceivedFile(name, filename, headers.get("content-type", "application/octet-stream"), path,
                                       size, reader.count))
    return form


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
