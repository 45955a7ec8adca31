"""A strict edXML schema, generated from the lenient one, that only the cleanest documents pass.

``schemas/edxml.xsd`` is lenient on purpose (any order, foreign elements and attributes
allowed), so :mod:`connector.edxml.validate` has to walk every element in Python to say
precisely what is odd. Most documents are not odd at all: every element known, qualified and
in the standard's order. This module builds, once per process, a schema that accepts exactly
that shape, so libxml2 (C) can vouch for the structure of such a document and the parser can
take its fast path (:mod:`connector.edxml.fastpath`); anything the strict schema refuses takes
the careful path, which then explains it.

How the strict schema is derived from the lenient vocabulary (``validate._vocabulary``), so
the list of known elements stays in one place:

- a record of leaves only, each at most once (an organisation, a reference, staff info...),
  becomes an ``xs:all``: any order, as producers differ there (the VNPT library writes
  ``OrganName`` before ``OrganizationInCharge``, ``Mobile`` before ``Email``);
- every other complex type becomes an ``xs:sequence`` of the children the lenient type names:
  the children the lenient type requires first, then the others, each group in the order the
  lenient XSD declares them (which is the order :mod:`connector.edxml.build` writes);
  ``TraceHeaderList`` takes ``Bussiness`` before or after the ``TraceHeader`` list, as
  producers differ there;
- a child that may repeat (``maxOccurs="unbounded"``) stays unbounded; every other child may
  appear at most once; required children stay required;
- no wildcards: no foreign element, no attribute but those the lenient schema declares
  (``version`` on ``edXMLManifest``, ``href`` and ``xlink:href`` on ``Reference``), except one
  optional ``Signature``, the last child of ``edXMLHeader``, whose content is skipped: the
  XMLDSig one (verified elsewhere), or the placeholder today's producers write in the edXML
  namespace (opaque in the lenient schema too);
- elements must be qualified (in the edXML namespace); leaves stay plain text.

By construction a document valid here is valid under the lenient schema (same names, same
types, fewer orders and counts, no more attributes), with two exceptions that libxml2 brings
and :mod:`connector.edxml.fastpath` screens out before trusting this schema: ``xsi:``
attributes, which a schema cannot forbid (libxml2 accepts ``xsi:schemaLocation`` anywhere and
validates by ``xsi:type``), and, inside the Signature (skipped here, lax in the lenient schema),
an ``xsi:type`` or an ``edXML`` element, which the lenient schema would validate. The tests
check the implication on a corpus.
"""

from __future__ import annotations

from functools import lru_cache
from xml.sax.saxutils import quoteattr

from lxml import etree

from .model import DSIG_NS, NS, XLINK_NS

XSD_NS = "http://www.w3.org/2001/XMLSchema"

#: Types whose single child and repeating child may come in either order (producers differ).
_EITHER_ORDER: dict[str, tuple[str, str]] = {"TraceHeaderListType": ("Bussiness", "TraceHeader")}

# The two foreign declarations the strict schema needs, served from memory (never fetched).
_XLINK_URL = "urn:edoc-connector:strict:xlink.xsd"
_DSIG_URL = "urn:edoc-connector:strict:xmldsig.xsd"
_XLINK_XSD = f"""<xs:schema xmlns:xs="{XSD_NS}" targetNamespace="{XLINK_NS}">
  <xs:attribute name="href" type="xs:string"/>
</xs:schema>"""
# The Signature element only: whatever it holds is skipped (verified by connector.signing).
_DSIG_XSD = f"""<xs:schema xmlns:xs="{XSD_NS}" targetNamespace="{DSIG_NS}" elementFormDefault="qualified">
  <xs:element name="Signature">
    <xs:complexType mixed="true">
      <xs:sequence>
        <xs:any namespace="##any" processContents="skip" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
      <xs:anyAttribute namespace="##any" processContents="skip"/>
    </xs:complexType>
  </xs:element>
</xs:schema>"""


# An opaque type (the edXML-namespace Signature): anything inside, skipped.
_OPAQUE = """  <xs:complexType name={name} mixed="true">
    <xs:sequence>
      <xs:any namespace="##any" processContents="skip" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence>
    <xs:anyAttribute namespace="##any" processContents="skip"/>
  </xs:complexType>"""


class _InMemory(etree.Resolver):
    """Serves the two helper schemas by their URNs; refuses anything else (no file, no network)."""

    def resolve(self, url, public_id, context):
        if url == _XLINK_URL:
            return self.resolve_string(_XLINK_XSD, context)
        if url == _DSIG_URL:
            return self.resolve_string(_DSIG_XSD, context)
        return self.resolve_string("", context)


def strict_schema_text() -> str:
    """The strict XSD as text, generated from the lenient schema's vocabulary."""
    from .validate import _vocabulary

    root_type, types = _vocabulary()
    opaque = {name for name, t in types.items() if t.opaque}  # the edXML-namespace Signature
    lines = [
        f'<xs:schema xmlns:xs="{XSD_NS}" xmlns="{NS}" xmlns:xlink="{XLINK_NS}" xmlns:ds="{DSIG_NS}"',
        f'           targetNamespace="{NS}" elementFormDefault="qualified" attributeFormDefault="unqualified">',
        f'  <xs:import namespace="{XLINK_NS}" schemaLocation="{_XLINK_URL}"/>',
        f'  <xs:import namespace="{DSIG_NS}" schemaLocation="{_DSIG_URL}"/>',
        f'  <xs:element name="edXML" type={quoteattr(root_type)}/>',
        '  <xs:simpleType name="Text"><xs:restriction base="xs:string"/></xs:simpleType>',
    ]
    for name in sorted(opaque):  # kept whole, skipped, as the lenient schema does
        lines.append(_OPAQUE.format(name=quoteattr(name)))
    for name, t in types.items():
        if name in opaque:
            continue
        lines.append(f"  <xs:complexType name={quoteattr(name)}>")
        lines.extend(_all(t) if _any_order(name, t, types) else _content(name, t, opaque))
        for attribute in sorted(t.attributes):
            lines.append(f'    <xs:attribute name={quoteattr(attribute)} type="Text"/>')
        if name == "ReferenceType":
            lines.append('    <xs:attribute ref="xlink:href"/>')
        lines.append("  </xs:complexType>")
    lines.append("</xs:schema>")
    return "\n".join(lines)


def _any_order(name: str, t, types: dict) -> bool:
    """A record of leaves only, each at most once (an organisation, a reference...): its
    children may come in any order, as producers differ there (``xs:all``)."""
    return (
        name not in _EITHER_ORDER
        and bool(t.children)
        and all(not c.repeats and c.type not in types for c in t.children.values())
    )


def _all(t) -> list[str]:
    """The ``xs:all`` of a record of leaves: each child once at most, the required ones once."""
    out = ["    <xs:all>"]
    for local, c in t.children.items():
        low = "1" if local in t.required else "0"
        out.append(f'      <xs:element name={quoteattr(local)} type={quoteattr(c.type)} minOccurs="{low}" maxOccurs="1"/>')
    out.append("    </xs:all>")
    return out


def any_order_types() -> frozenset[str]:
    """The types whose children the strict schema takes in any order (``xs:all``)."""
    from .validate import _vocabulary

    _root_type, types = _vocabulary()
    return frozenset(name for name, t in types.items() if not t.opaque and _any_order(name, t, types))


def _content(name: str, t, opaque: set[str]) -> list[str]:
    """The ``xs:sequence`` of one complex type (see the module docstring for the order)."""
    children = {local: c for local, c in t.children.items() if c.type not in opaque}
    required = [local for local in children if local in t.required]
    ordered = required + [local for local in children if local not in required]

    def decl(local: str, optional: bool | None = None) -> str:
        c = children[local]
        low = "0" if (local not in required if optional is None else optional) else "1"
        high = "unbounded" if c.repeats else "1"
        return f'<xs:element name={quoteattr(local)} type={quoteattr(c.type)} minOccurs="{low}" maxOccurs="{high}"/>'

    out = ["    <xs:sequence>"]
    either = _EITHER_ORDER.get(name)
    if either is not None:
        single, repeated = either
        if set(children) != {single, repeated} or children[single].repeats or not children[repeated].repeats:
            raise ValueError(f"{name}: expected one {single} and repeated {repeated}")
        # ( single, repeated* ) | ( repeated+, single? ): deterministic, either order.
        out += [
            '      <xs:choice minOccurs="0">',
            "        <xs:sequence>",
            f"          {decl(single, optional=False)}",
            f"          {decl(repeated, optional=True)}",
            "        </xs:sequence>",
            "        <xs:sequence>",
            f"          {decl(repeated, optional=False)}",
            f"          {decl(single, optional=True)}",
            "        </xs:sequence>",
            "      </xs:choice>",
        ]
    else:
        out += [f"      {decl(local)}" for local in ordered]
    if name == "HeaderType":
        # Last, one Signature: the XMLDSig one, or the placeholder today's producers write in
        # the edXML namespace (its content skipped, as in the lenient schema).
        signatures = [local for local, c in t.children.items() if c.type in opaque]
        out.append('      <xs:choice minOccurs="0">')
        out += [f'        <xs:element name={quoteattr(local)} type={quoteattr(t.children[local].type)}/>'
                for local in signatures]
        out.append('        <xs:element ref="ds:Signature"/>')
        out.append("      </xs:choice>")
    out.append("    </xs:sequence>")
    return out


@lru_cache(maxsize=1)
def strict_schema() -> etree.XMLSchema:
    """The compiled strict schema, built at first use and kept for the process."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    parser.resolvers.add(_InMemory())
    doc = etree.fromstring(strict_schema_text().encode("utf-8"), parser)
    return etree.XMLSchema(doc)


__all__ = ["any_order_types", "strict_schema", "strict_schema_text"]
