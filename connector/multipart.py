"""Reading MIME multipart bodies from a stream, part by part, never holding a part whole.

The shared core of the two multipart formats the connector speaks: the hub's
SOAP-with-Attachments bodies (``multipart/related``, :mod:`connector.axis.multipart`) and the
DMS side's ``multipart/form-data`` (:mod:`connector.routing.formdata`). Each format module
checks its own Content-Type, decides where each part's bytes go and what the parts mean; this
module finds the boundaries (even when one straddles two reads), reads and checks each part's
headers, streams each part's body to a sink, and enforces the limits every reader needs (part
count, header size, part size, total size).

Use::

    kind, params = split_content_type(content_type)
    reader = PartReader(stream, params["boundary"], max_total=..., max_parts=..., max_header_bytes=...)
    while (headers := reader.next_part()) is not None:
        reader.read_body(sink.write, max_size=..., what="file 'x.pdf'")
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message as _HeaderMessage
from typing import BinaryIO

__all__ = ["CHUNK", "CRLF", "MultipartError", "PartReader", "TruncatedBodyError", "split_content_type"]

CHUNK = 1 << 16
CRLF = b"\r\n"
MAX_BOUNDARY = 200


class MultipartError(ValueError):
    """The body is not a well-formed multipart message, or is over a limit.

    ``status`` is the HTTP status that fits when answering a client: 400 (malformed), 413 (over a
    limit) or 415 (not the expected Content-Type)."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


class TruncatedBodyError(MultipartError):
    """The body stopped inside a part or its headers (no closing boundary): a transfer cut
    short, which a new attempt may complete, unlike a malformed body."""


def split_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a ``Content-Type`` value into its lower-case type and its parameters (names
    lower-cased, values unquoted)."""
    message = _HeaderMessage()
    message["content-type"] = value
    params = {k.lower(): v for k, v in (message.get_params() or [])[1:]}
    return message.get_content_type(), params


class PartReader:
    """Walks the parts of one multipart body read from ``stream`` in ``chunk``-sized reads.

    Call :meth:`next_part` for the headers of the next part (``None`` after the close
    delimiter; the epilogue is ignored), then :meth:`read_body` to stream that part's body
    before asking for the next. The preamble before the first delimiter is skipped.
    ``unfold_headers`` joins folded (continued) header lines, as SOAP stacks may send them;
    without it such a line is a malformed header.
    """

    def __init__(
        self,
        stream: BinaryIO,
        boundary: str,
        *,
        max_total: int,
        max_parts: int,
        max_header_bytes: int,
        chunk: int = CHUNK,
        unfold_headers: bool = False,
    ):
        if len(boundary) > MAX_BOUNDARY:
            raise MultipartError(f"boundary longer than {MAX_BOUNDARY} characters")
        self._stream, self._chunk, self._max_total = stream, chunk, max_total
        self._max_parts, self._max_header_bytes = max_parts, max_header_bytes
        self._unfold = unfold_headers
        self._delimiter = CRLF + b"--" + boundary.encode("latin-1")
        self._buffer = bytearray(CRLF)  # so a delimiter at the very start is found like the others
        self._total = 0
        self._eof = False
        self._started = False
        self._count = 0

    @property
    def count(self) -> int:
        """How many parts :meth:`next_part` has begun so far (1-based number of the current one)."""
        return self._count

    def next_part(self) -> dict[str, str] | None:
        """The next part's headers (lower-case names), or ``None`` at the close delimiter."""
        if not self._started:
            self._skip_preamble()
            self._started = True
        while len(self._buffer) < 2 and self._fill():
            pass
        if self._buffer[:2] == b"--":
            return None
        headers = self._read_headers()
        self._count += 1
        if self._count > self._max_parts:
            raise MultipartError(f"more than {self._max_parts} parts", 413)
        return headers

    def read_body(self, sink: Callable[[bytes], None], max_size: int, what: str = "a part") -> int:
        """Stream the current part's body to ``sink`` up to the next delimiter; its size.

        Over ``max_size`` bytes is a :class:`MultipartError` naming ``what`` (``file 'a.pdf'``)."""
        delimiter = self._delimiter
        keep = len(delimiter) - 1
        size = 0

        def emit(data: bytearray) -> None:
            nonlocal size
            size += len(data)
            if size > max_size:
                raise MultipartError(f"{what} is over {max_size} bytes", 413)
            if data:
                sink(bytes(data))

        buffer = self._buffer
        while True:
            at = buffer.find(delimiter)
            if at >= 0:
                emit(buffer[:at])
                del buffer[: at + len(delimiter)]
                return size
            if len(buffer) > keep:
                cut = len(buffer) - keep
                emit(buffer[:cut])
                del buffer[:cut]
            if not self._fill():
                raise TruncatedBodyError("body ends inside a part (no closing boundary)")

    # ------------------------------------------------------------------ internals

    def _fill(self) -> bool:
        if self._eof:
            return False
        block = self._stream.read(self._chunk)
        if not block:
            self._eof = True
            return False
        self._total += len(block)
        if self._total > self._max_total:
            raise MultipartError(f"body over {self._max_total} bytes", 413)
        self._buffer += block
        return True

    def _skip_preamble(self) -> None:
        delimiter, buffer = self._delimiter, self._buffer
        while (at := buffer.find(delimiter)) < 0:
            del buffer[: max(0, len(buffer) - len(delimiter))]
            if not self._fill():
                raise MultipartError("no boundary found in the body")
        del buffer[: at + len(delimiter)]

    def _read_headers(self) -> dict[str, str]:
        buffer, max_bytes = self._buffer, self._max_header_bytes
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > max_bytes:
                raise MultipartError(f"part headers over {max_bytes} bytes", 413)
            if not self._fill():
                raise TruncatedBodyError("body ends inside part headers")
        if end > max_bytes:
            raise MultipartError(f"part headers over {max_bytes} bytes", 413)
        block = bytes(buffer[:end])
        del buffer[: end + 4]
        # The rest of the delimiter line (transport padding only), then the header lines.
        first, _, rest = block.partition(CRLF)
        if first.strip(b" \t"):
            raise MultipartError("garbage after a boundary delimiter")
        headers: dict[str, str] = {}
        for line in rest.decode("utf-8", "replace").split("\r\n"):
            if not line:
                continue
            if self._unfold and line[0] in " \t" and headers:  # folded header line
                last = next(reversed(headers))
                headers[last] += " " + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise MultipartError(f"malformed part header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        return headers
