"""Canonical XML (exclusive or inclusive C14N 1.0, without comments) computed as a document streams.

Large documents are read event by event (see ``connector.edxml.reader``), so the digest of
``Reference URI=""`` is computed from the same events: nothing is held whole. The Signature
that sits in ``edXMLHeader`` is cut out (the enveloped-signature transform), and its
document Reference (transforms, digest method) is read from the events on the way, which
decides the canonical form and the hash. Until then (the header is small) both canonical
forms are buffered; after it, only the chosen one is produced and hashed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..edxml.model import NS
from .dsig import C14N, C14N_METHODS, DIGESTS, DSIG_NS, ENVELOPED, new_digest

_BUFFER_LIMIT = 16 << 20


def _escape_text(s: str) -> str:
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    if "\r" in s:
        s = s.replace("\r", "&#xD;")
    return s


def _escape_attr(s: str) -> str:
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace('"', "&quot;")
        .replace("\t", "&#x9;")
        .replace("\n", "&#xA;")
        .replace("\r", "&#xD;")
    )


@dataclass
class _Frame:
    qname: str
    scope: dict  # prefix -> uri in scope after this element's declarations
    excl_rendered: dict  # exclusive: prefix -> uri rendered by output ancestors (incl. this)


@dataclass
class DocumentReference:
    """The document Reference read from the enveloped Signature while streaming."""

    transforms: list[str] = field(default_factory=list)
    digest_method: str = ""


class StreamingCanonicalizer:
    """An ``XmlObserver`` that digests the document minus its enveloped Signature."""

    def __init__(self, *, exclusive: bool | None = None, digest_method: str | None = None) -> None:
        """Without arguments the Signature decides; with them (tests) the form is fixed."""
        self.frames: list[_Frame] = []
        self.parts: dict[bool, list[str]] = {True: [], False: []}
        self.buffered = 0
        self.mode: bool | None = None  # None while undecided; True exclusive, False inclusive
        self.digest = None
        self.digest_method = ""
        self.reference: DocumentReference | None = None
        self.skip_depth = 0
        self.in_signature_ref: DocumentReference | None = None
        self.gave_up = ""
        self.root_done = False
        self._after_cr = False
        self._path: list[tuple[str, str]] = []
        if exclusive is not None and digest_method:
            self.mode = exclusive
            self.digest = new_digest(digest_method)
            self.digest_method = digest_method
            self.reference = DocumentReference([ENVELOPED], digest_method)

    # -- results --------------------------------------------------------------------------

    def result(self) -> bytes | None:
        """The digest of the document reference, or None when it could not be computed."""
        if self.digest is None:
            return None
        self._flush()
        return self.digest.digest()

    # -- observer -------------------------------------------------------------------------

    def start(self, name, attributes, declarations) -> None:
        uri, local, prefix = name
        parent = self._path[-1] if self._path else None
        self._path.append((uri, local))
        if self.skip_depth:
            self.skip_depth += 1
            self._watch_signature(uri, local, attributes)
            return
        if (
            uri == DSIG_NS
            and local == "Signature"
            and parent is not None
            and parent[1] == "edXMLHeader"
            and parent[0] in (NS, "")
            and self.reference is None
        ):
            self.skip_depth = 1
            self.in_signature_ref = None
            return
        self._open(uri, local, prefix, attributes, declarations)

    def end(self) -> None:
        uri, local = self._path.pop()
        if self.skip_depth:
            self.skip_depth -= 1
            if self.skip_depth == 0:
                self._signature_done()
            return
        frame = self.frames.pop()
        self._emit(f"</{frame.qname}>")
        if not self.frames:
            self.root_done = True
        if local == "edXMLHeader" and self.mode is None:
            self._decide(None)

    def text(self, data: str) -> None:
        if self.skip_depth or not self.frames:
            return
        self._emit(_escape_text(data))

    def raw_text(self, data: bytes) -> None:
        if self.skip_depth or not self.frames:
            return
        text = data.decode("ascii", "replace")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split between two chunks
        self._after_cr = text.endswith("\r")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self._emit(_escape_text(text))

    def processing_instruction(self, target: str, data: str) -> None:
        if self.skip_depth:
            return
        pi = f"<?{target} {data}?>" if data else f"<?{target}?>"
        if not self.frames:
            pi = "\n" + pi if self.root_done else pi + "\n"
        self._emit(pi)

    # -- the enveloped signature ------------------------------------------------------------

    def _watch_signature(self, uri: str, local: str, attributes) -> None:
        if uri != DSIG_NS:
            return
        attrs = {a[1]: a[3] for a in attributes if not a[0]}
        if local == "Reference":
            self.in_signature_ref = DocumentReference() if attrs.get("URI") == "" else None
        elif local == "Transform" and self.in_signature_ref is not None:
            self.in_signature_ref.transforms.append(attrs.get("Algorithm", ""))
        elif local == "DigestMethod" and self.in_signature_ref is not None:
            self.in_signature_ref.digest_method = attrs.get("Algorithm", "")
            if self.reference is None:
                self.reference = self.in_signature_ref

    def _signature_done(self) -> None:
        if self.mode is None:
            self._decide(self.reference)

    def _decide(self, reference: DocumentReference | None) -> None:
        """Pick the canonical form and hash from the document Reference; hash the buffer."""
        if reference is None:
            self._give_up("no XMLDSig Signature with a document Reference in edXMLHeader")
            return
        transforms = reference.transforms
        if not transforms or transforms[0] != ENVELOPED or len(transforms) > 2:
            self._give_up(f"unsupported transforms {transforms}")
            return
        method = transforms[1] if len(transforms) == 2 else C14N
        if method not in C14N_METHODS or reference.digest_method not in DIGESTS:
            self._give_up(f"unsupported canonicalization or digest ({method}, {reference.digest_method})")
            return
        self.mode = C14N_METHODS[method][0]
        self.digest = new_digest(reference.digest_method)
        self.digest_method = reference.digest_method
        self._flush()
        self.parts[not self.mode] = []

    def _give_up(self, why: str) -> None:
        self.gave_up = why
        self.mode = False
        self.digest = None
        self.parts = {True: [], False: []}

    # -- canonical output ---------------------------------------------------------------------

    def _open(self, uri: str, local: str, prefix, attributes, declarations) -> None:
        parent = self.frames[-1] if self.frames else None
        parent_scope = parent.scope if parent else {None: ""}
        scope = dict(parent_scope)
        for p, u in declarations.items():
            scope[p] = u
        qname = f"{prefix}:{local}" if prefix else local
        attrs = sorted(
            ((a_uri, a_local, f"{a_prefix}:{a_local}" if a_prefix else a_local, value) for a_uri, a_local, a_prefix, value in attributes),
            key=lambda a: (a[0], a[1]),
        )
        attr_text = "".join(f' {q}="{_escape_attr(v)}"' for _, _, q, v in attrs)
        excl_rendered = dict(parent.excl_rendered) if parent else {None: ""}
        if self.mode is None or self.mode:
            used = {prefix} | {a_prefix for _, _, a_prefix, _ in attributes if a_prefix}
            decls = []
            for p in used:
                value = scope.get(p, "")
                if excl_rendered.get(p, "") != value and not (p is None and value == "" and None not in excl_rendered):
                    decls.append((p, value))
                    excl_rendered[p] = value
            self._emit_mode(True, f"<{qname}{_ns_text(decls)}{attr_text}>")
        if self.mode is None or not self.mode:
            decls = [(p, u) for p, u in declarations.items() if parent_scope.get(p, "") != u]
            self._emit_mode(False, f"<{qname}{_ns_text(decls)}{attr_text}>")
        self.frames.append(_Frame(qname, scope, excl_rendered))

    def _emit(self, text: str) -> None:
        if self.mode is None:
            self.parts[True].append(text)
            self.parts[False].append(text)
            self.buffered += len(text)
            if self.buffered > _BUFFER_LIMIT:
                self._give_up("no Signature in the first 16 MB of the document")
            return
        self._emit_mode(self.mode, text)

    def _emit_mode(self, mode: bool, text: str) -> None:
        if self.mode is None:
            self.parts[mode].append(text)
            self.buffered += len(text)
            return
        if self.digest is None or mode != self.mode:
            return
        parts = self.parts[mode]
        parts.append(text)
        if len(parts) > 256:
            self._flush()

    def _flush(self) -> None:
        if self.digest is not None and self.mode is not None:
            parts = self.parts[self.mode]
            if parts:
                self.digest.update("".join(parts).encode("utf-8"))
                parts.clear()


def _ns_text(decls: list[tuple[str | None, str]]) -> str:
    ordered = sorted(decls, key=lambda d: "" if d[0] is None else d[0])
    return "".join(f' xmlns="{_escape_attr(u)}"' if p is None else f' xmlns:{p}="{_escape_attr(u)}"' for p, u in ordered)
