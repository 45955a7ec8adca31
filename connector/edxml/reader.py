"""Safe, streaming reading of edXML bytes into an element tree plus attachment files.

Why not ``lxml.etree.parse``: an attachment's base64 text can be hundreds of megabytes, and
lxml keeps every text node whole in memory. Here expat reads the input in chunks; the text of
each ``ContentTransferEncoded`` element is decoded as it arrives into a spooled file (with its
size and SHA-256), and every other element lands in a small lxml tree that keeps source line
numbers, so validation can say exactly where a problem is.

Safety: a DOCTYPE or any entity declaration stops the read (no DTD, no entities, nothing is
ever fetched); input size, nesting depth, element count, text and attribute sizes are bounded.
"""

from __future__ import annotations

import binascii
import functools
import re
import itertools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Protocol, Union
from xml.parsers import expat

import pybase64
from lxml import etree

from .errors import EdxmlError, Problem
from .model import SpooledData

Source = Union[bytes, bytearray, memoryview, str, Path, BinaryIO]

_SEP = "\x01"
_PAYLOAD = "ContentTransferEncoded"
_READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    """Bounds that keep hostile or broken input from exhausting the machine."""

    max_bytes: int = 2 * 1024**3
    max_depth: int = 40
    max_elements: int = 100_000
    max_text: int = 1 << 20
    max_attribute: int = 1 << 16
    spool_memory: int = 1 << 20
    in_memory_below: int = 8 << 20


@dataclass
class RawDocument:
    """What the reader produced: the tree, the attachment payloads and non-fatal problems."""

    root: etree._Element
    payloads: list[tuple[etree._Element, SpooledData]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    streamed: bool = False

    def payload_for(self, element: etree._Element) -> SpooledData | None:
        for owner, data in self.payloads:
            if owner is element:
                return data
        return None

    def replace_payload(self, element: etree._Element, data: SpooledData) -> None:
        """Swap an element's payload (after unwrapping), closing the one it replaces."""
        for index, (owner, old) in enumerate(self.payloads):
            if owner is element:
                if getattr(data, "parent", None) is not old:
                    old.close()
                self.payloads[index] = (owner, data)
                return
        self.payloads.append((element, data))

    def close(self) -> None:
        for _, data in self.payloads:
            data.close()


TreeHook = Callable[[etree._Element], None]


class XmlObserver(Protocol):
    """Sees every event of a streamed read, in document order (signature digests use it).

    Names are ``(namespace or "", local name, prefix or None)``; attributes likewise, with
    their value; ``declarations`` are the namespace declarations made on this element.
    """

    def start(self, name: tuple[str, str, str | None], attributes: list[tuple[str, str, str | None, str]],
              declarations: dict[str | None, str]) -> None: ...

    def end(self) -> None: ...

    def text(self, data: str) -> None: ...

    def raw_text(self, data: bytes) -> None: ...

    def processing_instruction(self, target: str, data: str) -> None: ...


def read(
    source: Source,
    *,
    limits: Limits = Limits(),
    spool_dir: str | Path | None = None,
    on_tree: TreeHook | None = None,
    observer: XmlObserver | None = None,
) -> RawDocument:
    """Read edXML from bytes, a file path or a binary stream.

    Raises :class:`EdxmlError` (with the line and cause) when the input is not well-formed,
    hostile, or over a limit; returns problems that leave the document readable (such as
    broken base64) in ``RawDocument.problems``.

    Inputs below ``limits.in_memory_below`` are parsed by libxml2 in one call (fast, C);
    larger ones stream through expat so that no text node is ever held whole.

    ``on_tree`` (used by signature verification) sees the complete tree of a small input,
    attachment text included, before the text is moved out to spooled files. It is not called
    for streamed inputs, which a caller recognises by ``RawDocument.streamed``; those are
    shown, event by event, to ``observer`` instead.
    """
    small, rest = _small_input(source, limits.in_memory_below)
    if small is not None:
        return _read_small(small, limits, spool_dir, on_tree)
    raw = _read_streaming(rest, limits, spool_dir, observer)
    raw.streamed = True
    return raw


def _small_input(source: Source, threshold: int) -> tuple[bytes | None, Iterator[bytes]]:
    """The whole input when it is small, else an iterator over all of its chunks."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) <= threshold:
            return bytes(source), iter(())
        return None, _chunks(source)
    if isinstance(source, (str, Path)):
        if os.path.getsize(source) <= threshold:
            with open(source, "rb") as fh:
                return fh.read(), iter(())
        return None, _chunks(source)
    head = source.read(threshold + 1)
    if len(head) <= threshold:
        return head, iter(())
    return None, itertools.chain([head], _stream_chunks(source))


def _read_streaming(
    chunks: Iterator[bytes], limits: Limits, spool_dir: str | Path | None, observer: XmlObserver | None = None
) -> RawDocument:
    builder = _TreeBuilder(limits, spool_dir, observer)
    parser = builder.make_parser()
    total = 0
    bypass = None
    try:
        for chunk in chunks:
            total += len(chunk)
            if total > limits.max_bytes:
                raise EdxmlError(
                    Problem(
                        f"input is larger than the limit of {limits.max_bytes} bytes",
                        line=parser.CurrentLineNumber,
                        code="limit",
                    )
                )
            if bypass is None:
                bypass = _PayloadBypass(builder, parser, chunk)
            bypass.feed(chunk)
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        builder.discard()
        message = _expat_message(exc)
        if exc.code == expat.errors.codes[expat.errors.XML_ERROR_TAG_MISMATCH] and builder.stack:
            open_el = builder.stack[-1]
            message += (
                f"; the element {etree.QName(open_el).localname} opened at line "
                f"{open_el.sourceline} is still open here"
            )
        raise EdxmlError(
            Problem(message, line=exc.lineno, code="not-well-formed", path=builder.path())
        ) from None
    except EdxmlError:
        builder.discard()
        raise
    except RecursionError:
        builder.discard()
        raise EdxmlError(Problem("document nests too deeply", code="limit")) from None
    if builder.root is None:
        raise EdxmlError(Problem("no root element: the input is empty", code="not-well-formed"))
    return RawDocument(builder.root, builder.payloads, builder.problems)


class _PayloadBypass:
    """Feeds expat, but hands the bulk of attachment base64 straight to the decoder.

    Scanning hundreds of megabytes of base64 character by character through expat (and
    building Python strings of it) costs more than decoding it. When expat itself reports
    that the input it was given ends in plain payload text (its last event is character data
    of a ``ContentTransferEncoded`` element, outside any CDATA section, ending exactly at the
    last byte fed; so no comment, reference or markup is left open), then the next bytes up to
    the next ``<`` are payload text by the XML grammar, and go to the decoder (and the
    observer) directly. Expat then sees as many newlines as were skipped, muted, so line
    numbers stay right, and the markup that follows. Anything else (a character reference,
    an encoding other than UTF-8) leaves the work to expat.
    """

    def __init__(self, builder: "_TreeBuilder", parser, first_chunk: bytes):
        self.builder = builder
        self.parser = parser
        self.enabled = _ascii_compatible(first_chunk)
        self.in_text = False
        self.fed = 0  # bytes expat has been given, synthetic newlines included

    def feed(self, chunk: bytes) -> None:
        if self.in_text and self.builder.sink is not None:
            lt = chunk.find(b"<")
            text = chunk if lt < 0 else chunk[:lt]
            if b"&" not in text:
                self._flush_expat_text()
                self.builder.sink.feed_bytes(text)
                if self.builder.observer is not None:
                    self.builder.observer.raw_text(text)
                if b"\n" in text:
                    self._keep_line_count(text.count(b"\n"))
                if lt < 0:
                    return
                chunk = chunk[lt:]
        self.parser.Parse(chunk, False)
        self.fed += len(chunk)
        self.in_text = self.enabled and self.builder.in_payload_text(self.fed)

    def _keep_line_count(self, newlines: int) -> None:
        self.builder.muted = True
        try:
            self.parser.Parse(b"\n" * newlines, False)
            self.fed += newlines
            self._flush_expat_text()
        finally:
            self.builder.muted = False

    def _flush_expat_text(self) -> None:
        # Toggling buffer_text makes pyexpat deliver the text it has buffered, so the
        # decoder receives the text in document order.
        self.parser.buffer_text = False
        self.parser.buffer_text = True


def _ascii_compatible(head: bytes) -> bool:
    """True when the document is UTF-8 (or ASCII), so raw bytes can be scanned for '<'."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00", b"<\x00")):
        return False
    if head.startswith(b"<?xml"):
        declaration = head[: head.find(b"?>") + 2].lower()
        match = re.search(rb"encoding\s*=\s*[\"']([a-z0-9._-]+)", declaration)
        if match and match.group(1) not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
            return False
    return True


def _chunks(source: Source):
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        for start in range(0, len(view), _READ_CHUNK * 16):
            yield bytes(view[start : start + _READ_CHUNK * 16])
        return
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fh:
            yield from _stream_chunks(fh)
        return
    yield from _stream_chunks(source)


def _stream_chunks(fh: BinaryIO):
    while True:
        chunk = fh.read(_READ_CHUNK * 4)
        if not chunk:
            return
        yield chunk


def _expat_message(exc: expat.ExpatError) -> str:
    text = expat.ErrorString(exc.code) if exc.code else str(exc)
    hints = {
        "unbound prefix": "a namespace prefix is used without being declared (xmlns:...)",
        "mismatched tag": "an element is closed by the wrong end tag (an element opened twice or not closed?)",
        "not well-formed (invalid token)": "invalid character or bad markup (is the file UTF-8?)",
        "no element found": "the document ends before its root element is closed (truncated?)",
        "junk after document element": "content after the root element",
    }
    hint = hints.get(text)
    detail = f"{text}: {hint}" if hint else text
    return f"not well-formed XML at column {exc.offset + 1}: {detail}"


class _TreeBuilder:
    """Expat callbacks that build a light lxml tree and stream attachment payloads."""

    def __init__(self, limits: Limits, spool_dir: str | Path | None, observer: XmlObserver | None = None):
        self.limits = limits
        self.spool_dir = spool_dir
        self.observer = observer
        self.sink_element: etree._Element | None = None
        self.muted = False
        self.last_event = ""
        self.last_text_end = -1
        self.in_cdata = False
        self.root: etree._Element | None = None
        self.stack: list[etree._Element] = []
        self.texts: list[list[str]] = []
        self.text_sizes: list[int] = []
        self.payloads: list[tuple[etree._Element, SpooledData]] = []
        self.problems: list[Problem] = []
        self.pending_ns: dict[str | None, str] = {}
        self.pending_decl: dict[str | None, str] = {}
        self.count = 0
        self.sink: _Base64Sink | None = None
        self.parser: expat.XMLParserType | None = None

    def make_parser(self) -> expat.XMLParserType:
        parser = expat.ParserCreate(namespace_separator=_SEP)
        parser.namespace_prefixes = True
        parser.buffer_text = True
        parser.buffer_size = _READ_CHUNK
        parser.ordered_attributes = False
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._entity
        parser.UnparsedEntityDeclHandler = self._entity
        parser.ExternalEntityRefHandler = self._external
        parser.StartNamespaceDeclHandler = self._ns
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.ProcessingInstructionHandler = self._pi
        parser.CommentHandler = self._comment
        parser.StartCdataSectionHandler = self._cdata_start
        parser.EndCdataSectionHandler = self._cdata_end
        self.parser = parser
        return parser

    # -- hostile constructs ------------------------------------------------------------

    def _line(self) -> int | None:
        return self.parser.CurrentLineNumber if self.parser else None

    def _doctype(self, name, sysid, pubid, has_internal_subset) -> None:
        raise EdxmlError(
            Problem(
                "a DOCTYPE declaration is not allowed in edXML (DTDs and entities are refused for safety)",
                line=self._line(),
                code="hostile",
            )
        )

    def _entity(self, name, *args) -> None:
        raise EdxmlError(Problem(f"entity declaration {name!r} is not allowed", line=self._line(), code="hostile"))

    def _external(self, context, base, system_id, public_id) -> int:
        raise EdxmlError(
            Problem(f"reference to an external entity ({system_id!r}) is not allowed", line=self._line(), code="hostile")
        )

    # -- where expat is (for the payload bypass) -------------------------------------------

    def in_payload_text(self, fed: int) -> bool:
        """True when expat's last event was payload text reaching the last byte it was fed."""
        return (
            self.sink is not None
            and not self.in_cdata
            and self.last_event == "text"
            and self.last_text_end == fed
        )

    def _pi(self, target: str, data: str) -> None:
        self.last_event = "pi"
        if self.observer is not None:
            self.observer.processing_instruction(target, data)

    def _comment(self, data: str) -> None:
        self.last_event = "comment"

    def _cdata_start(self) -> None:
        self.last_event, self.in_cdata = "cdata", True

    def _cdata_end(self) -> None:
        self.last_event, self.in_cdata = "cdata", False

    # -- structure ------------------------------------------------------------------------

    def _ns(self, prefix: str | None, uri: str | None) -> None:
        # ``xmlns=""`` (uri None) undeclares the default namespace: lxml expresses that by
        # the tag alone, the observer needs to see it.
        self.pending_decl[prefix or None] = uri or ""
        if uri:
            self.pending_ns[prefix or None] = uri

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.last_event = "start"
        self.count += 1
        if self.count > self.limits.max_elements:
            raise EdxmlError(
                Problem(f"more than {self.limits.max_elements} elements", line=self._line(), code="limit",
                        path=self.child_path(name))
            )
        if len(self.stack) >= self.limits.max_depth:
            raise EdxmlError(
                Problem(f"elements nest deeper than {self.limits.max_depth} levels", line=self._line(), code="limit",
                        path=self.child_path(name))
            )
        tag = _clark(name)
        nsmap, self.pending_ns = self.pending_ns, {}
        declarations, self.pending_decl = self.pending_decl, {}
        if self.stack:
            element = etree.SubElement(self.stack[-1], tag, nsmap=nsmap or None)
        else:
            element = etree.Element(tag, nsmap=nsmap or None)
            self.root = element
        element.sourceline = self._line()
        for key, value in attrs.items():
            if len(value) > self.limits.max_attribute:
                raise EdxmlError(
                    Problem(
                        f"attribute {_local(key)!r} is longer than {self.limits.max_attribute} characters",
                        line=self._line(),
                        code="limit",
                        path=self.path(),
                    )
                )
            element.set(_clark(key), value)
        self.stack.append(element)
        self.texts.append([])
        self.text_sizes.append(0)
        if self.observer is not None:
            self.observer.start(_triple(name), [(*_triple(k), v) for k, v in attrs.items()], declarations)
        if self.sink is None and etree.QName(element).localname == _PAYLOAD:
            data = SpooledData(self.limits.spool_memory, self.spool_dir)
            self.payloads.append((element, data))
            self.sink = _Base64Sink(data)
            self.sink_element = element
            # Unbuffered inside the payload: each text event then carries its own offset.
            self.parser.buffer_text = False

    def _end(self, name: str) -> None:
        self.last_event = "end"
        element = self.stack.pop()
        parts = self.texts.pop()
        self.text_sizes.pop()
        if self.observer is not None:
            self.observer.end()
        if element is self.sink_element:
            error = self.sink.close()
            if error:
                self.problems.append(
                    Problem(
                        f"attachment content is not valid base64: {error}",
                        path=_path_of(element),
                        line=element.sourceline,
                        code="base64",
                    )
                )
            self.sink = self.sink_element = None
            self.parser.buffer_text = True
        elif parts and len(element) == 0:
            element.text = "".join(parts)

    def _text(self, data: str) -> None:
        self.last_event = "text"
        if self.sink is not None:
            self.last_text_end = self.parser.CurrentByteIndex + len(data)
        if self.muted:
            return
        if self.observer is not None:
            self.observer.text(data)
        if not self.stack:
            return
        if self.sink is not None:
            self.sink.feed(data)
            return
        size = self.text_sizes[-1] + len(data)
        if size > self.limits.max_text:
            raise EdxmlError(
                Problem(
                    f"text content longer than {self.limits.max_text} characters",
                    line=self._line(),
                    code="limit",
                    path=self.path(),
                )
            )
        self.text_sizes[-1] = size
        self.texts[-1].append(data)

    def path(self) -> str:
        """Where the reader is: the open element's path, indexed as in the in-memory reader's
        errors (among the same-named siblings read so far)."""
        return _path_of(self.stack[-1]) if self.stack else ""

    def child_path(self, name: str) -> str:
        """The path the element ``name`` (an expat name) starting now would have."""
        tag, local = _clark(name), _local(name)
        same = sum(1 for child in self.stack[-1] if child.tag == tag) if self.stack else 0
        return f"{self.path()}/{local}[{same + 1}]" if same else f"{self.path()}/{local}"

    def discard(self) -> None:
        for _, data in self.payloads:
            data.close()


class _Base64Sink:
    """Decodes base64 text as it arrives, in whole quartets, into a spooled file."""

    _WS = b" \t\r\n"

    def __init__(self, out: SpooledData):
        self.out = out
        self.pending = b""
        self.error: str | None = None
        self.offset = 0
        self.padded = False

    def feed(self, text: str) -> None:
        if self.error:
            return
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError as exc:
            self.error = f"non-ASCII character {text[exc.start]!r} near encoded offset {self.offset + exc.start}"
            return
        self.feed_bytes(raw)

    def feed_bytes(self, raw: bytes) -> None:
        """Decode raw ASCII base64 bytes (whitespace allowed anywhere, as XML wraps lines)."""
        if self.error:
            return
        if b"\n" in raw or b" " in raw or b"\r" in raw or b"\t" in raw:
            raw = raw.translate(None, self._WS)
        if not raw:
            return
        if self.padded:
            self.error = f"data after the final padding '=' (at encoded offset {self.offset})"
            return
        raw = self.pending + raw if self.pending else raw
        whole = len(raw) - len(raw) % 4
        if whole:
            try:
                self.out.write(pybase64.b64decode(raw[:whole] if whole < len(raw) else raw, validate=True))
            except binascii.Error as exc:
                self.error = f"{exc} (within encoded characters {self.offset}..{self.offset + whole})"
                return
            self.offset += whole
            self.padded = raw[whole - 1 : whole] == b"="
        self.pending = raw[whole:]

    def close(self) -> str | None:
        if not self.error and self.pending:
            self.error = f"{len(self.pending)} trailing character(s) do not form a whole base64 quartet"
        self.out.finish()
        return self.error


# --------------------------------------------------------------------------- in-memory path

_SMALL_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    collect_ids=False,
)


def _read_small(data: bytes, limits: Limits, spool_dir: str | Path | None, on_tree: TreeHook | None) -> RawDocument:
    """libxml2 parse of a small input, then the same limits and payload handling as streaming."""
    parser, refuser = _small_parser()
    if not data.strip():
        raise EdxmlError(Problem("no root element: the input is empty", line=1, code="not-well-formed"))
    _refuse_doctype(data)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        if "Excessive depth" in (exc.msg or ""):
            raise _too_deep(data, limits, exc.lineno) from None
        raise EdxmlError(
            Problem(f"not well-formed XML: {_libxml_message(exc)}", line=exc.lineno, code="not-well-formed")
        ) from None
    docinfo = root.getroottree().docinfo
    if refuser.refused or docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise EdxmlError(
            Problem(
                "a DOCTYPE declaration is not allowed in edXML (DTDs and entities are refused for safety)",
                line=1,
                code="hostile",
            )
        )
    raw = RawDocument(root)
    try:
        _check_tree(root, limits, len(data) if _one_char_per_byte(docinfo.encoding) else None)
        if on_tree is not None:
            on_tree(root)
        for element in root.iter(f"{{*}}{_PAYLOAD}", _PAYLOAD):
            data_out = SpooledData(limits.spool_memory, spool_dir)
            raw.payloads.append((element, data_out))
            sink = _Base64Sink(data_out)
            sink.feed(element.text or "")
            error = sink.close()
            element.text = None
            if error:
                raw.problems.append(
                    Problem(
                        f"attachment content is not valid base64: {error}",
                        path=_path_of(element),
                        line=element.sourceline,
                        code="base64",
                    )
                )
    except EdxmlError:
        raw.close()
        raise
    return raw


def _too_deep(data: bytes, limits: Limits, line: int | None) -> EdxmlError:
    """The error for an input libxml2 found nested too deeply to build a tree of: read again by
    the streaming reader, which stops at the configured depth and names the element there."""
    try:
        _read_streaming(iter((data,)), limits, None).close()
    except EdxmlError as exc:
        if any(p.code == "limit" for p in exc.problems):
            return exc
    return EdxmlError(Problem(f"elements nest deeper than {limits.max_depth} levels", line=line, code="limit"))


_PARSERS = threading.local()


def _small_parser() -> tuple[etree.XMLParser, "_RefuseAll"]:
    """This thread's parser for small inputs, with its refusing resolver emptied.

    Made once per thread (a parser is not for concurrent use), as setting one up costs a
    fifth of parsing a small document.
    """
    made = getattr(_PARSERS, "made", None)
    if made is None:
        parser = etree.XMLParser(**_SMALL_PARSER_OPTIONS)
        refuser = _RefuseAll()
        parser.resolvers.add(refuser)
        made = _PARSERS.made = (parser, refuser)
    made[1].refused.clear()
    return made


class _RefuseAll(etree.Resolver):
    """A second line of defence: whatever libxml2 asks to load (a DTD, an entity) is empty."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    def resolve(self, url, public_id, context):
        self.refused.append(str(url or public_id))
        return self.resolve_string("", context)


_ROOT_START = re.compile(rb"<[A-Za-z_:\x80-\xff]")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


_WIDE_ENCODINGS = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)


def _refuse_doctype(data: bytes) -> None:
    """Refuse a DOCTYPE in the prolog before libxml2 sees it (so the error says why).

    UTF-16 and UTF-32 inputs are decoded first, so the check cannot be dodged by encoding.
    """
    head = data[: 1 << 16]
    for mark, codec in _WIDE_ENCODINGS:
        if head.startswith(mark):
            head = head.decode(codec, errors="ignore").encode("utf-8")
            break
    root = _ROOT_START.search(head)
    match = _DOCTYPE.search(head, 0, root.start() if root else len(head))
    if match:
        raise EdxmlError(
            Problem(
                "a DOCTYPE declaration is not allowed in edXML (DTDs and entities are refused for safety)",
                line=head.count(b"\n", 0, match.start()) + 1,
                code="hostile",
            )
        )


def _libxml_message(exc: etree.XMLSyntaxError) -> str:
    message = exc.msg or str(exc)
    message = re.sub(r", line \d+, column \d+$", "", message)
    if "Namespace prefix" in message:
        message += " (a namespace prefix is used without being declared)"
    if "tag mismatch" in message:
        message += " (an element opened twice or not closed?)"
    if "Entity" in message or "entity" in message:
        message += " (entities are refused for safety)"
    return message


def _check_tree(root: etree._Element, limits: Limits, input_size: int | None = None) -> None:
    """Depth, element-count, text and attribute limits, as the streaming path enforces.

    A compiled XPath screens the tree in C; only a tree that breaks a limit is walked in
    Python, to name the element and line. ``input_size`` (the bytes parsed) leaves out of the
    screen the limits the input is too small to break: without a DTD nothing expands, so no
    text or attribute value has more characters than the input has bytes, and every element
    takes at least four bytes (``<a/>``). Screening a text length costs more than the rest
    together (libxml2 converts every text node), so a small document is spared it.
    """
    size = input_size if input_size is not None else -1
    screen = _limit_screen(
        limits,
        elements=size < 0 or size // 4 > limits.max_elements,
        text=size < 0 or size > limits.max_text,
        attributes=size < 0 or size > limits.max_attribute,
    )
    if not screen(root):
        return
    depth = count = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue
        depth += 1
        count += 1
        if count > limits.max_elements:
            raise EdxmlError(Problem(f"more than {limits.max_elements} elements", line=element.sourceline,
                                     code="limit", path=_path_of(element)))
        if depth > limits.max_depth:
            raise EdxmlError(
                Problem(f"elements nest deeper than {limits.max_depth} levels", line=element.sourceline, code="limit",
                        path=_path_of(element))
            )
        text = element.text
        if text is not None and len(text) > limits.max_text and etree.QName(element).localname != _PAYLOAD:
            raise EdxmlError(
                Problem(
                    f"text content longer than {limits.max_text} characters",
                    line=element.sourceline,
                    code="limit",
                    path=_path_of(element),
                )
            )
        for key, value in element.attrib.items():
            if len(value) > limits.max_attribute:
                raise EdxmlError(
                    Problem(
                        f"attribute {etree.QName(key).localname!r} is longer than {limits.max_attribute} characters",
                        line=element.sourceline,
                        code="limit",
                        path=_path_of(element),
                    )
                )


@functools.lru_cache(maxsize=64)
def _one_char_per_byte(encoding: str | None) -> bool:
    """True when the encoding never decodes one byte into more than one character.

    So the input's size bounds every text length. (A few legacy charsets, such as TSCII,
    decode one byte into several characters; those keep the full screen.)
    """
    name = (encoding or "utf-8").lower().replace("_", "-")
    return (
        name.startswith(("utf-", "utf8", "utf16", "utf32", "ucs-", "iso-8859-", "windows-125", "cp125"))
        or name in ("ascii", "us-ascii", "latin1", "latin-1")
    )


@functools.lru_cache(maxsize=32)
def _limit_screen(limits: Limits, *, elements: bool = True, text: bool = True, attributes: bool = True) -> etree.XPath:
    """An XPath that is true when any limit is broken (the caller then finds where).

    Depth is always screened; the element count, text and attribute lengths only when asked
    (the caller leaves out those the input is too small to break).
    """
    too_deep = "/".join(["*"] * limits.max_depth)
    tests = [f"boolean({too_deep})"]
    if elements:
        tests.append(f"count(descendant-or-self::*) > {limits.max_elements}")
    if text:
        tests.append(
            f"boolean(descendant-or-self::*[local-name() != '{_PAYLOAD}'][string-length(text()) > {limits.max_text}])"
        )
    if attributes:
        tests.append(f"boolean(descendant-or-self::*/@*[string-length(.) > {limits.max_attribute}])")
    return etree.XPath(" or ".join(tests), regexp=False, smart_strings=False)


def _clark(name: str) -> str:
    parts = name.split(_SEP)
    if len(parts) == 1:
        return parts[0]
    return "{%s}%s" % (parts[0], parts[1])


def _triple(name: str) -> tuple[str, str, str | None]:
    """An expat name as (namespace or "", local name, prefix or None)."""
    parts = name.split(_SEP)
    if len(parts) == 1:
        return "", parts[0], None
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def _local(name: str) -> str:
    parts = name.split(_SEP)
    return parts[1] if len(parts) > 1 else parts[0]


def _path_of(element: etree._Element) -> str:
    """``/edXML/.../To[2]/OrganId``: local names, with an index only among same-named siblings."""
    steps = []
    node = element
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if isinstance(c.tag, str) and c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


element_path = _path_of

__all__ = ["Limits", "RawDocument", "read", "element_path", "Source", "XmlObserver", "TreeHook"]
