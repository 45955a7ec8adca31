"""Validate an edXML tree: structure (the XSD) and meaning (codes, dates, manifest), all at once.

``validate_tree`` returns every problem it finds, each with a path, a line, a severity and a
short code, so a clerk or an operator sees the whole list in one pass instead of fixing one
error at a time.

How unknown elements are handled. ``schemas/edxml.xsd`` names the QCVN 102:2016 vocabulary;
it is closed for its own namespace and open (lax) for other namespaces. This module reads that
same XSD as its vocabulary: walking the tree, any element the XSD does not name at that place
(in the edXML namespace or any other one; the Signature subtree aside) is reported as a
*warning* and left out of a copy of the tree, and the copy is what the XSD validates. So an
unknown element never becomes an opaque fatal XSD error, never hides the structural errors
of its siblings, and the list of known elements lives in one place (the XSD). Unknown
attributes are handled the same way.

Agreement with the parser. A value counts as readable exactly when :mod:`connector.edxml.parse`
reads it (dates, timestamps, booleans and content ids go through its functions); a readable
value in a form other than the standard's gets a warning. Elements in no namespace whose name
the standard knows are read by the parser, so they are validated as edXML elements here too,
with a warning.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from typing import Callable, Mapping, Union

from lxml import etree

from .errors import Problem, Severity
from .model import BUSINESS_DOC_TYPES, DSIG_NS, HUB_STATUS_CODES, HUB_STATUS_MEANINGS, NS, PRIORITIES, STATUS_CODES, XLINK_NS
from .parse import bare_cid, parse_bool, parse_date, parse_timestamp
from .names import check_attachment_name
from .reader import element_path
from .wire_dates import standard_date, standard_timestamp

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "edxml.xsd"

XSD_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

#: The agency identification code (mã định danh): ``V1V2V3.Z1Z2.Y1Y2.MX1X2``.
AGENCY_CODE_RE = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")

STEERING_TYPES: dict[int, str] = {0: "không chỉ đạo", 1: "chỉ đạo", 2: "báo cáo chỉ đạo"}
PAPER: dict[int, str] = {0: "no paper copy", 1: "a paper copy follows"}
FLAG: dict[int, str] = {0: "no", 1: "yes"}

_NS_LABELS = {NS: "", DSIG_NS: "ds:", XLINK_NS: "xlink:", XSI_NS: "xsi:"}
_DSIG_SIGNATURE = f"{{{DSIG_NS}}}Signature"
_XLINK_HREF = f"{{{XLINK_NS}}}href"
_EDXML_NAMESPACES = (NS, None)  # the parser reads unqualified elements as edXML
_MAX_SHOWN = 80

Check = Callable[["_Context", etree._Element, str], None]


# --------------------------------------------------------------------------- the XSD


@dataclass(frozen=True)
class _Child:
    """A child element the XSD names inside some type."""

    type: str
    repeats: bool  # maxOccurs="unbounded" on its declaration
    counted_here: bool  # the XSD cannot count it (it sits in a repeating choice): we do


@dataclass(frozen=True)
class _Type:
    """What the XSD allows inside one element type."""

    name: str
    children: Mapping[str, _Child]
    attributes: frozenset[str]
    required: tuple[str, ...]
    opaque: bool  # anything goes inside (the edXML-namespace Signature)


_LEAF = _Type("Text", {}, frozenset(), (), False)


def _safe_parser() -> etree.XMLParser:
    """A parser that never expands entities, never loads a DTD and never touches the network."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@lru_cache(maxsize=1)
def _schema_tree() -> etree._ElementTree:
    return etree.parse(str(SCHEMA_PATH), _safe_parser())


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    """The compiled XSD, loaded once per process."""
    return etree.XMLSchema(_schema_tree())


@lru_cache(maxsize=1)
def _vocabulary() -> tuple[str, dict[str, _Type]]:
    """The root element's type and, per complex type, the children and attributes it allows.

    Read from ``schemas/edxml.xsd``, so the XSD stays the one list of known elements.
    """
    xsd = _schema_tree().getroot()
    groups = {g.get("name"): g for g in xsd.iterfind(f"{{{XSD_NS}}}group")}
    types: dict[str, _Type] = {}
    for ct in xsd.iterfind(f"{{{XSD_NS}}}complexType"):
        decls: list[tuple[etree._Element, bool]] = []
        _collect(ct, False, groups, decls)
        types[ct.get("name")] = _type_from(ct, decls)
    root = xsd.find(f"{{{XSD_NS}}}element")
    return root.get("type"), types


def _repeats(node: etree._Element) -> bool:
    return node.get("maxOccurs", "1") not in ("0", "1")


def _collect(node: etree._Element, repeating: bool, groups: dict, out: list) -> None:
    """Gather element declarations below ``node``, noting those inside a repeating particle."""
    for child in node:
        if child.tag == f"{{{XSD_NS}}}element":
            out.append((child, repeating))
        elif child.tag == f"{{{XSD_NS}}}group":
            _collect(groups[child.get("ref")], repeating or _repeats(child), groups, out)
        elif child.tag in (f"{{{XSD_NS}}}sequence", f"{{{XSD_NS}}}choice"):
            _collect(child, repeating or _repeats(child), groups, out)


def _type_from(ct: etree._Element, decls: list[tuple[etree._Element, bool]]) -> _Type:
    children: dict[str, _Child] = {}
    required: list[str] = []
    for decl, repeating in decls:
        name = decl.get("name")
        old = children.get(name)
        children[name] = _Child(
            type=decl.get("type"),
            repeats=_repeats(decl) or (old is not None and old.repeats),
            counted_here=repeating or (old is not None and old.counted_here),
        )
        if not repeating and decl.get("minOccurs", "1") != "0":
            required.append(name)
    attributes = frozenset(a.get("name") for a in ct.iter(f"{{{XSD_NS}}}attribute"))
    opaque = any(a.get("namespace") == "##any" for a in ct.iter(f"{{{XSD_NS}}}any"))
    return _Type(ct.get("name"), children, attributes, tuple(required), opaque)


def _type(name: str) -> _Type:
    return _vocabulary()[1].get(name, _LEAF)


# --------------------------------------------------------------------------- helpers


def _show(value: str) -> str:
    """A value quoted for a message, cut when long so a message never echoes a whole file."""
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "…"
    return repr(value)


def _local(el: etree._Element) -> str:
    tag = el.tag
    return tag[tag.find("}") + 1 :]


def _name(tag: str) -> str:
    """A tag for humans: no namespace for edXML, a short prefix or the URI for the others."""
    q = etree.QName(tag)
    if q.namespace is None:
        return q.localname
    label = _NS_LABELS.get(q.namespace)
    return f"{label}{q.localname}" if label is not None else f"{{{q.namespace}}}{q.localname}"


def _text(el: etree._Element) -> str:
    """The element's own text (comments skipped), without surrounding whitespace."""
    if not len(el):
        return (el.text or "").strip()
    return ((el.text or "") + "".join(c.tail or "" for c in el)).strip()


def _is_element(node: etree._Element) -> bool:
    return isinstance(node.tag, str)


_NS_OPEN = "{" + NS + "}"


def _namespace(el: etree._Element) -> str | None:
    tag = el.tag
    return tag[1 : tag.find("}")] if tag[0] == "{" else None


def _is_edxml(el: etree._Element) -> bool:
    return _namespace(el) in _EDXML_NAMESPACES


@cache
def _edxml_tags(name: str) -> tuple[str, str]:
    """The two tags an edXML element of this local name may carry: qualified, or in no namespace."""
    return f"{{{NS}}}{name}", name


def _find(el: etree._Element | None, *names: str) -> list[etree._Element]:
    """Children (then grandchildren, ...) with these local names, edXML elements only.

    lxml matches the tags in C (``name`` alone matches only the element in no namespace) and
    yields the children in document order.
    """
    found = [el] if el is not None else []
    for name in names:
        tags = _edxml_tags(name)
        found = [c for p in found for c in p.iterchildren(*tags)]
    return found


class _Context:
    """Problems found so far, and how the copy the XSD validates must differ from the input."""

    def __init__(self, indexes: Indexes | None = None) -> None:
        self.problems: list[Problem] = []
        self.drop_elements: list[etree._Element] = []
        self.drop_attributes: list[tuple[etree._Element, str]] = []
        self.qualify: list[etree._Element] = []  # unqualified edXML elements: give them the namespace
        # The walk records each walked element's edXML children here (the caller's dict, or one
        # of our own): the message and manifest checks read them instead of the tree.
        self.indexes: Indexes = indexes if indexes is not None else {}
        self.names: dict[str, tuple[list[str], list[str]]] = {}  # attachment name -> its verdict

    def add(self, el: etree._Element, code: str, message: str, severity: Severity = "error") -> None:
        self.problems.append(Problem(message, element_path(el), el.sourceline, severity, code))

    def find(self, el: etree._Element | None, *names: str) -> list[etree._Element]:
        """:func:`_find`, read from the walk's indexes where it built them."""
        found = [el] if el is not None else []
        indexes = self.indexes
        for name in names:
            step: list[etree._Element] = []
            for parent in found:
                index = indexes.get(parent)
                if index is not None:
                    step += index.get(name, ())
                else:
                    step += parent.iterchildren(*_edxml_tags(name))
            found = step
        return found

    @property
    def needs_copy(self) -> bool:
        return bool(self.drop_elements or self.drop_attributes or self.qualify)


# --------------------------------------------------------------------------- entry points


def validate_tree(root: Union[etree._Element, etree._ElementTree]) -> list[Problem]:
    """Every problem in an edXML document (edoc or status message), errors and warnings.

    ``root`` is the ``edXML`` element (or its tree). ``ContentTransferEncoded`` may be empty:
    a streaming reader moves the base64 out and checks it itself. The tree is not modified.
    Problems come sorted by line.
    """
    return validate_indexed(root, None)


Indexes = dict[etree._Element, dict[str, list[etree._Element]]]
"""Per element, its children in the edXML namespace or in none, by local name, in document order."""


def validate_indexed(root: etree._Element | etree._ElementTree, indexes: Indexes | None) -> list[Problem]:
    """:func:`validate_tree`, also filling ``indexes`` for every element the walk visits.

    The parser reads the model through the same indexes, so the tree is walked once
    (see :class:`connector.edxml.parse._Extractor`). An element the walk does not look
    inside (the Signature, a leaf without children) gets no entry.
    """
    if isinstance(root, etree._ElementTree):
        root = root.getroot()
    ctx = _Context(indexes)
    if root.tag != f"{{{NS}}}edXML":
        ns = etree.QName(root).namespace
        where = f"namespace {ns!r}" if ns else "no namespace"
        ctx.add(root, "root", f"root element is {_local(root)} in {where}; expected edXML in namespace {NS!r}")
        return ctx.problems
    _walk(ctx, root, _kinds()[0])
    _check_xsd(ctx, root)
    _check_message(ctx, root)
    _check_manifest(ctx, root)
    return sorted(ctx.problems, key=lambda p: (p.line is None, p.line or 0))


def validate_file(path: Union[str, Path]) -> list[Problem]:
    """Parse a file safely (no DTD, no entities, no network) and validate it.

    Input that is not well-formed XML, or that carries a DOCTYPE, gives one error and no
    further checks. Every problem names the file. (Real input goes through the streaming
    reader; this is for tools and tests.)
    """
    source = str(path)
    with open(path, "rb") as fh:
        try:
            tree = etree.parse(fh, _safe_parser())
        except etree.XMLSyntaxError as exc:
            return [Problem(f"not well-formed XML: {exc.msg}", "", exc.lineno, "error", "not-well-formed", source)]
    if tree.docinfo.doctype:
        message = "a DOCTYPE declaration is not accepted in edXML (entity and external-load risks)"
        return [Problem(message, "", _doctype_line(path), "error", "hostile", source)]
    return [p.located(source) for p in validate_tree(tree.getroot())]


def _doctype_line(path: Union[str, Path]) -> int | None:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    at = head.find(b"<!DOCTYPE")
    return head.count(b"\n", 0, at) + 1 if at >= 0 else None


# --------------------------------------------------------------------------- vocabulary walk


class _Kind:
    """One complex type as the walk uses it: its XSD facts and its children by tag.

    ``slots`` maps each tag a known child may carry (qualified, or unqualified and read as
    edXML) to a tuple ``(local name, child kind, plain, qualified, counted, check)``, where
    *plain* (qualified, no value check, counted by the XSD) means the child only needs
    indexing, and a walk of its own if it has attributes or children. (Walking an element
    with neither finds nothing, whatever its type.)
    """

    __slots__ = ("slots", "type")

    def __init__(self, t: _Type) -> None:
        self.type = t
        self.slots: dict[str, tuple] = {}


@lru_cache(maxsize=1)
def _kinds() -> tuple[_Kind, dict[str, _Kind]]:
    """The root element's kind and every complex type's kind, built once from the XSD."""
    root_type, types = _vocabulary()
    kinds = {name: _Kind(t) for name, t in types.items()}
    leaf = _Kind(_LEAF)
    for name, kind in kinds.items():
        for local, child in kind.type.children.items():
            child_kind = kinds.get(child.type, leaf)
            counted = child.counted_here and not child.repeats
            check = _LEAF_CHECKS.get((name, local))
            for qualified, tag in zip((True, False), _edxml_tags(local)):
                plain = qualified and not counted and check is None
                kind.slots[tag] = (local, child_kind, plain, qualified, counted, check)
    return kinds.get(root_type, leaf), kinds


def _walk(ctx: _Context, el: etree._Element, kind: _Kind) -> None:
    """Check attributes and children of ``el`` against the XSD vocabulary, then the leaf values.

    Children are looked up by tag in a table built once from the XSD (:func:`_kinds`), and
    recorded in ``ctx.indexes``; a leaf child with neither attributes nor children (the usual
    case) needs no walk of its own.
    """
    t = kind.type
    if el.attrib:
        _check_attributes(ctx, el, t)
    if t.opaque:
        return
    slots = kind.slots
    seen: set[str] | None = None
    index: dict[str, list[etree._Element]] = {}
    ctx.indexes[el] = index
    for child in el:
        tag = child.tag
        slot = slots.get(tag)
        if slot is None:
            if isinstance(tag, str):
                if not (t.name == "HeaderType" and tag == _DSIG_SIGNATURE):
                    _unknown_element(ctx, child, el, t)
                if tag[0] != "{" or tag.startswith(_NS_OPEN):
                    index.setdefault(tag[tag.find("}") + 1 :], []).append(child)
            continue
        local, child_kind, plain, qualified, counted, check = slot
        found = index.get(local)
        if found is None:
            index[local] = [child]
        else:
            found.append(child)
        if plain:
            if len(child) or child.attrib:
                _walk(ctx, child, child_kind)
            continue
        if not qualified:
            _note_unqualified(ctx, child, el)
        if counted:
            if seen is None:
                seen = {local}
            elif local in seen:
                ctx.add(child, "duplicate", f"{local} appears more than once in {_local(el)}; "
                        "QCVN 102:2016 allows one, so the document is ambiguous")
            else:
                seen.add(local)
        if check is not None:
            check(ctx, child, _text(child))
        if len(child) or child.attrib:
            _walk(ctx, child, child_kind)


def _note_unqualified(ctx: _Context, child: etree._Element, parent: etree._Element) -> None:
    """An edXML element written without the namespace: read as edXML, reported once per subtree."""
    if _namespace(child) is not None:
        return
    ctx.qualify.append(child)
    if _namespace(parent) is not None:
        ctx.add(child, "namespace", f"{_local(child)} (and anything unqualified inside it) is in no "
                f"namespace; read as the QCVN 102:2016 element, but it belongs in {NS!r}", "warning")


def _unknown_element(ctx: _Context, child: etree._Element, parent: etree._Element, t: _Type) -> None:
    q = etree.QName(child)
    if q.localname in t.children:  # a known name in a foreign namespace
        message = (f"element {q.localname} in {_local(parent)} is in namespace {q.namespace!r}, not the "
                   f"QCVN 102:2016 namespace {NS!r}: kept as an unknown element, not read")
    else:
        message = f"unknown element {_name(child.tag)} in {_local(parent)} kept, not part of QCVN 102:2016"
    ctx.add(child, "unknown-element", message, "warning")
    ctx.drop_elements.append(child)


def _check_attributes(ctx: _Context, el: etree._Element, t: _Type) -> None:
    for attr in el.attrib:
        if t.opaque or attr in t.attributes or (t.name == "ReferenceType" and attr == _XLINK_HREF):
            continue
        ctx.add(el, "unknown-attribute", f"unknown attribute {_name(attr)} on {_local(el)} kept, "
                "not part of QCVN 102:2016", "warning")
        ctx.drop_attributes.append((el, attr))


# --------------------------------------------------------------------------- XSD pass


def _check_xsd(ctx: _Context, root: etree._Element) -> None:
    """Validate against the XSD: the input itself, or a copy adjusted as the walk decided."""
    target, pairs = root, []
    if ctx.needs_copy or root.getparent() is not None:
        target, pairs = _adjusted_copy(ctx, root)
    schema = _schema()
    if schema.validate(target):
        return
    original = {id(clone): orig for orig, clone in pairs}  # `pairs` keeps every proxy alive
    nsmap = {p: u for el in target.iter() if _is_element(el) for p, u in el.nsmap.items() if p}
    seen = set()
    for entry in schema.error_log:
        el = _locate(target, entry, nsmap)
        message = _xsd_message(entry, el)
        line = entry.line or el.sourceline
        if (line, message) not in seen:
            seen.add((line, message))
            ctx.problems.append(Problem(message, element_path(original.get(id(el), el)), line, "error", "xsd"))


def _adjusted_copy(ctx: _Context, root: etree._Element) -> tuple[etree._Element, list]:
    """A copy (line numbers kept) without unknown parts and with unqualified edXML qualified.

    Returns the copy and its (original, copy) node pairs, so that problems found in the copy
    are reported with the original's path.
    """
    clone = copy.deepcopy(root)
    pairs = list(zip(root.iter(), clone.iter()))
    twin = {id(orig): c for orig, c in pairs}
    for el in ctx.qualify:
        twin[id(el)].tag = f"{{{NS}}}{_local(el)}"
    for el, attr in ctx.drop_attributes:
        del twin[id(el)].attrib[attr]
    for el in ctx.drop_elements:
        _remove_keeping_tail(twin[id(el)])
    return clone, pairs


def _remove_keeping_tail(el: etree._Element) -> None:
    parent, tail = el.getparent(), el.tail or ""
    previous = el.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(el)


def _locate(tree: etree._Element, entry, nsmap: dict[str, str]) -> etree._Element:
    """The element an XSD error log entry is about (by its XPath, else by tag and line)."""
    try:
        hits = tree.getroottree().xpath(entry.path, namespaces=nsmap) if entry.path else []
    except etree.XPathError:
        hits = []
    if hits and _is_element(hits[0]):
        return hits[0]
    tag = re.match(r"Element '([^']+)'", entry.message or "")
    for el in tree.iter(tag.group(1) if tag else None):
        if el.sourceline == entry.line:
            return el
    return tree


def _xsd_message(entry, el: etree._Element) -> str:
    """libxml2's message without the ``{namespace}`` noise, and plainer for missing children."""
    message = entry.message or "XSD validation error"
    if "Missing child element" in message:
        missing = [r for r in _type(_type_of(el)).required if not _find(el, r)]
        if missing:
            return f"{_local(el)} lacks required element(s): {', '.join(missing)}"
    message = re.sub(r"##other\{[^}]*\}\*", "(an element of another namespace)", message)
    message = re.sub(r"\{([^}]*)\}", lambda m: _NS_LABELS.get(m.group(1), "{%s}" % m.group(1)), message)
    return re.sub(r"\( ([^)]*) \)", lambda m: "( " + ", ".join(dict.fromkeys(m.group(1).split(", "))) + " )", message)


def _type_of(el: etree._Element) -> str:
    """The XSD type of a known element, found by walking down from the root."""
    chain = []
    while el is not None:
        chain.append(_local(el))
        el = el.getparent()
    type_name = _vocabulary()[0]
    for name in reversed(chain[:-1]):
        child = _type(type_name).children.get(name)
        if child is None:
            return "Text"
        type_name = child.type
    return type_name


# --------------------------------------------------------------------------- leaf values


def _check_agency_code(ctx: _Context, el: etree._Element, value: str) -> None:
    if value and not AGENCY_CODE_RE.match(value):
        ctx.add(el, "agency-code", f"OrganId {_show(value)} is not in the standard form "
                "V1V2V3.Z1Z2.Y1Y2.MX1X2 (e.g. 000.00.00.G22); kept as given", "warning")


_STANDARD_DATE = re.compile(r"^\d{4}/\d{2}/\d{2}$")
_STANDARD_TIMESTAMP = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}$")
_DAY_FIRST = re.compile(r"^\d{1,2}[/.-]\d{1,2}[/.-]\d{4}")


def _check_when(ctx: _Context, el: etree._Element, value: str, read: Callable, standard: re.Pattern,
                expected: str) -> None:
    """A date or timestamp: readable by the parser, a real calendar date, in the standard form."""
    if not value:
        return
    name = _local(el)
    try:
        read(value)
    except (ValueError, OverflowError) as exc:
        reason = str(exc)
        if reason and reason != value:  # it has the shape of a date, but no such day or time
            ctx.add(el, "date", f"{name} {_show(value)} is not a real date/time ({reason}); expected {expected}")
        else:
            ctx.add(el, "date", f"{name} {_show(value)} is not a date/time in the form {expected}")
        return
    if not standard.match(value):
        found = "day-first dd/MM/yyyy" if _DAY_FIRST.match(value) else "ISO 8601" if "-" in value else "non-standard"
        ctx.add(el, "date-format", f"{name} {_show(value)} is read, but uses the {found} form; "
                f"QCVN 102:2016 writes {expected}", "warning")


def _check_date(ctx: _Context, el: etree._Element, value: str) -> None:
    if standard_date(value) is None:  # the common case needs no regular expression
        _check_when(ctx, el, value, parse_date, _STANDARD_DATE, "yyyy/MM/dd")


def _check_timestamp(ctx: _Context, el: etree._Element, value: str) -> None:
    if standard_timestamp(value) is None:
        _check_when(ctx, el, value, parse_timestamp, _STANDARD_TIMESTAMP, "yyyy/MM/dd HH:mm:ss")


def _check_status_code(ctx: _Context, el: etree._Element, value: str) -> None:
    if value in STATUS_CODES:
        return
    listed = ", ".join(f"{k} ({v})" for k, v in STATUS_CODES.items())
    found = "is empty" if not value else f"{_show(value)} is not a QCVN 102:2016 status code"
    if value in HUB_STATUS_CODES:
        found += f" (the provincial hub's \"{HUB_STATUS_CODES[value]}\": {HUB_STATUS_MEANINGS[value]})"
    ctx.add(el, "status-code", f"StatusCode {found}; expected one of {listed}")


def _enum(values: Mapping[int, str], code: str) -> Check:
    """A check that the value is one of the integer codes in ``values`` (empty: no value)."""

    def check(ctx: _Context, el: etree._Element, value: str) -> None:
        if not value or (value.isascii() and value.isdigit() and int(value) in values):
            return
        listed = ", ".join(f"{k} {v}" for k, v in values.items())
        ctx.add(el, code, f"{_local(el)} {_show(value)} is not one of {min(values)}..{max(values)} ({listed})")

    return check


def _check_integer(ctx: _Context, el: etree._Element, value: str) -> None:
    if value and not (value.isascii() and value.isdigit()):
        ctx.add(el, "integer", f"{_local(el)} {_show(value)} is not a non-negative whole number")


def _check_direction(ctx: _Context, el: etree._Element, value: str) -> None:
    if not value or value in ("true", "false", "0", "1"):
        return
    try:
        read = parse_bool(value)
    except ValueError:
        ctx.add(el, "direction", f"Direction {_show(value)} is not a boolean; expected true, false, 1 or 0")
        return
    ctx.add(el, "direction", f"Direction {_show(value)} is read as {str(read).lower()}, but is not "
            "an XML boolean (true, false, 1, 0)", "warning")


_VNPT_DOCUMENT_ID = re.compile(r"^[^,]+,(\d{4})/(\d{1,2})/(\d{1,2}),.+$")


def _check_document_id(ctx: _Context, el: etree._Element, value: str) -> None:
    """A DocumentId in the VNPT form ``OrganId,yyyy/MM/dd,Number/Notation`` with a false date."""
    m = _VNPT_DOCUMENT_ID.match(value)
    if m and not _real_date(*(int(g) for g in m.groups())):
        ctx.add(el, "document-id", f"DocumentId {_show(value)} carries the date {'/'.join(m.groups())}, "
                "which is not a real date; kept as an opaque identifier", "warning")


def _real_date(year: int, month: int, day: int) -> bool:
    """Whether the parser reads ``yyyy/MM/dd`` of these numbers (at most 4, 2 and 2 digits)
    as a date: it does exactly when the calendar has that day."""
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True




def _check_attachment_name(ctx: _Context, el: etree._Element, value: str) -> None:
    verdict = ctx.names.get(value)  # a name usually appears twice: in the manifest and the attachment
    if verdict is None:
        verdict = ctx.names[value] = check_attachment_name(value)
    errors, warnings = verdict
    if errors:
        ctx.add(el, "attachment-name", f"AttachmentName {_show(value)} is not a safe file name: "
                + "; ".join(errors + warnings))
    elif warnings:
        ctx.add(el, "attachment-name", f"AttachmentName {_show(value)} may not save as given: "
                + "; ".join(warnings), "warning")


_LEAF_CHECKS: dict[tuple[str, str], Check] = {
    ("OrganizationType", "OrganId"): _check_agency_code,
    ("ResponseForType", "OrganId"): _check_agency_code,
    ("TraceHeaderType", "OrganId"): _check_agency_code,
    ("ReceiverEntryType", "OrganId"): _check_agency_code,
    ("OrganIdListType", "OrganId"): _check_agency_code,
    ("PromulgationInfoType", "PromulgationDate"): _check_date,
    ("MessageHeaderType", "DueDate"): _check_date,
    ("ResponseForType", "PromulgationDate"): _check_date,
    ("TraceHeaderType", "Timestamp"): _check_timestamp,
    ("MessageHeaderType", "Timestamp"): _check_timestamp,
    ("MessageHeaderType", "StatusCode"): _check_status_code,
    ("MessageHeaderType", "SteeringType"): _enum(STEERING_TYPES, "steering-type"),
    ("OtherInfoType", "Priority"): _enum(PRIORITIES, "priority"),
    ("OtherInfoType", "PromulgationAmount"): _check_integer,
    ("OtherInfoType", "PageAmount"): _check_integer,
    ("OtherInfoType", "Direction"): _check_direction,
    ("BussinessType", "BussinessDocType"): _enum(BUSINESS_DOC_TYPES, "business-doc-type"),
    ("BussinessType", "Paper"): _enum(PAPER, "paper"),
    ("BussinessDocumentInfoType", "DocumentInfo"): _enum(FLAG, "document-info"),
    ("BussinessDocumentInfoType", "DocumentReceiver"): _enum(FLAG, "document-receiver"),
    ("ReceiverEntryType", "ReceiverType"): _check_integer,
    ("MessageHeaderType", "DocumentId"): _check_document_id,
    ("ResponseForType", "DocumentId"): _check_document_id,
    ("BussinessType", "DocumentId"): _check_document_id,
    ("ReplacementInfoType", "DocumentId"): _check_document_id,
    ("ReferenceType", "AttachmentName"): _check_attachment_name,
    ("AttachmentType", "AttachmentName"): _check_attachment_name,
}


# --------------------------------------------------------------------------- the message as a whole


def _check_message(ctx: _Context, root: etree._Element) -> None:
    """What each kind of message needs: a sender; recipients (edoc); an answered document (status)."""
    for header in ctx.find(root, "edXMLEnvelope", "edXMLHeader", "MessageHeader")[:1]:
        for sender in ctx.find(header, "From")[:1]:
            _require_organ_id(ctx, sender, "the sender")
        if ctx.find(header, "StatusCode"):
            _check_status(ctx, header)
        else:
            _check_recipients(ctx, header)
        for response_for in ctx.find(header, "ResponseFor"):
            _check_response_for(ctx, response_for)


def _require_organ_id(ctx: _Context, org: etree._Element, role: str) -> None:
    ids = ctx.find(org, "OrganId")
    if not ids or not _text(ids[0]):
        ctx.add(ids[0] if ids else org, "required", f"{_local(org)} has {'an empty' if ids else 'no'} "
                f"OrganId: the agency code of {role} is required")


def _check_recipients(ctx: _Context, header: etree._Element) -> None:
    recipients = ctx.find(header, "To")
    if not recipients:
        ctx.add(header, "required", "an edoc needs at least one To (recipient); none found")
    for to in recipients:
        _require_organ_id(ctx, to, "a recipient")


def _check_status(ctx: _Context, header: etree._Element) -> None:
    if not any(_has_content(r) for r in ctx.find(header, "ResponseFor")):
        ctx.add(header, "required", "a status message must name the document it answers "
                "(ResponseFor with OrganId, Code, PromulgationDate, DocumentId); none found")
    if not ctx.find(header, "Timestamp"):
        ctx.add(header, "required", "the status message has no Timestamp (yyyy/MM/dd HH:mm:ss)", "warning")
    code = _text(ctx.find(header, "StatusCode")[0])
    descriptions = ctx.find(header, "Description")
    if code == "02" and not (descriptions and _text(descriptions[0])):
        ctx.add(descriptions[0] if descriptions else header, "description", "StatusCode 02 (Từ chối tiếp "
                "nhận, rejected) without a Description: the sender is not told why", "warning")


def _has_content(el: etree._Element) -> bool:
    return any(_text(c) for c in el if _is_element(c))


def _check_response_for(ctx: _Context, response_for: etree._Element) -> None:
    if not _has_content(response_for):
        ctx.add(response_for, "response-for", "ResponseFor is empty (no OrganId, Code, "
                "PromulgationDate or DocumentId): it answers nothing and is ignored", "warning")
    elif not any(_text(o) for o in ctx.find(response_for, "OrganId")):
        ctx.add(response_for, "response-for", "ResponseFor has no OrganId: the agency of the "
                "answered document is unknown", "warning")


# --------------------------------------------------------------------------- manifest and attachments


def _first_text(ctx: _Context, el: etree._Element, name: str) -> str:
    found = ctx.find(el, name)
    return _text(found[0]) if found else ""


def _reference_keys(ctx: _Context, ref: etree._Element) -> list[str]:
    """The ids a manifest Reference answers to: ContentId, then xlink:href (or href), bare."""
    ids = [_first_text(ctx, ref, "ContentId"), ref.get(_XLINK_HREF) or ref.get("href") or ""]
    return list(dict.fromkeys(k for k in map(bare_cid, ids) if k))


def _check_manifest(ctx: _Context, root: etree._Element) -> None:
    """Manifest references and attachments must match one to one by ContentId."""
    refs = ctx.find(root, "edXMLEnvelope", "edXMLBody", "edXMLManifest", "Reference")
    by_id = _attachments_by_id(ctx, ctx.find(root, "AttachmentEncoded", "Attachment"))
    referenced: set[str] = set()
    first_ref: dict[str, etree._Element] = {}
    for ref in refs:
        keys = _reference_keys(ctx, ref)
        if not keys:
            ctx.add(ref, "manifest", "Reference has neither a ContentId nor an xlink:href: it names no attachment")
            continue
        _check_reference_keys(ctx, ref, keys)
        if keys[0] in first_ref:
            ctx.add(ref, "duplicate-content-id", f"ContentId {_show(keys[0])} is listed twice in the "
                    f"manifest (first at line {first_ref[keys[0]].sourceline})")
            continue
        first_ref[keys[0]] = ref
        referenced.update(keys)
        _match_reference(ctx, ref, keys, by_id)
    for key, att in by_id.items():
        if key not in referenced:
            ctx.add(att, "manifest", f"Attachment ContentId {_show(key)} is not listed in the "
                    "manifest (edXMLManifest/Reference)")


def _attachments_by_id(ctx: _Context, atts: list[etree._Element]) -> dict[str, etree._Element]:
    by_id: dict[str, etree._Element] = {}
    for att in atts:
        key = bare_cid(_first_text(ctx, att, "ContentId"))
        if not key:
            ctx.add(att, "manifest", "Attachment has no ContentId: no manifest Reference can name it")
        elif key in by_id:
            ctx.add(att, "duplicate-content-id", f"ContentId {_show(key)} is used by two attachments "
                    f"(first at line {by_id[key].sourceline})")
        else:
            by_id[key] = att
        if not ctx.find(att, "AttachmentName"):
            ctx.add(att, "required", "Attachment has no AttachmentName: the file has no name to be saved under")
        if not ctx.find(att, "ContentTransferEncoded"):
            name = _first_text(ctx, att, "AttachmentName")
            ctx.add(att, "required", f"Attachment {_show(name) + ' ' if name else ''}has no ContentTransferEncoded: "
                    "it carries no content, so there is no file to deliver")
    return by_id


def _check_reference_keys(ctx: _Context, ref: etree._Element, keys: list[str]) -> None:
    if len(keys) > 1:
        ctx.add(ref, "manifest", f"Reference ContentId {_show(keys[0])} and href {_show(keys[1])} "
                "disagree; either may name the attachment", "warning")


def _match_reference(ctx: _Context, ref: etree._Element, keys: list[str], by_id: dict) -> None:
    att = next((by_id[k] for k in keys if k in by_id), None)
    if att is None:
        ctx.add(ref, "manifest", f"Reference ContentId {_show(keys[0])} names no Attachment in AttachmentEncoded")
        return
    ref_name, att_name = _first_text(ctx, ref, "AttachmentName"), _first_text(ctx, att, "AttachmentName")
    if ref_name and att_name and ref_name != att_name:
        ctx.add(ref, "manifest", f"Reference AttachmentName {_show(ref_name)} differs from the "
                f"Attachment's {_show(att_name)} (line {att.sourceline})", "warning")
