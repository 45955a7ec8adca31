"""The streaming canonicalizer (large documents) agrees byte for byte with libxml2's C14N."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from lxml import etree

from connector.edxml.build import to_bytes
from connector.edxml.reader import Limits, read
from connector.edxml.samples import sample_edoc
from connector.signing.dsig import SHA256
from connector.signing.stream_c14n import StreamingCanonicalizer
from tests.conftest import real_world_dir
from tests.edxml.strategies import messages

STREAMING = Limits(in_memory_below=0)


def _streamed_digest(data: bytes, exclusive: bool) -> bytes:
    observer = StreamingCanonicalizer(exclusive=exclusive, digest_method=SHA256)
    read(data, limits=STREAMING, observer=observer).close()
    return observer.result()


def _libxml_digest(data: bytes, exclusive: bool) -> bytes:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    tree = etree.fromstring(data, parser).getroottree()
    return hashlib.sha256(etree.tostring(tree, method="c14n", exclusive=exclusive, with_comments=False)).digest()


@pytest.mark.parametrize("exclusive", [True, False])
def test_fixtures_canonicalize_like_libxml2(exclusive):
    for path in sorted(real_world_dir().glob("*.edxml")):
        data = path.read_bytes()
        try:
            expected = _libxml_digest(data, exclusive)
        except etree.XMLSyntaxError:
            continue
        assert _streamed_digest(data, exclusive) == expected, path.name


@pytest.mark.parametrize("exclusive", [True, False])
@pytest.mark.parametrize(
    "variant",
    [
        lambda d: d,
        lambda d: d.replace(b"\n", b"\r\n"),
        lambda d: d.replace(b"<edXML:Subject>", b'<edXML:Subject xml:lang="vi" b="1&amp;&lt;&#9;&#10;&#13;&quot;" a="z">'),
        lambda d: d.replace(b"<edXML:Content>", b"<edXML:Content><?pi some data?>a&#13;b&gt;<![CDATA[<x>&]]>", 1),
        lambda d: d.replace(b"<edXML:Description>", b'<edXML:Description xmlns:q="urn:q" xmlns="urn:other"><q:x q:y="1"/><z xmlns=""/>', 1),
        lambda d: d.replace(b"\n</edXML>", b"\n</edXML>\n<?after x?>").replace(b"?>\n<edXML", b"?>\n<?before y?><!-- c --><edXML"),
    ],
    ids=["plain", "crlf", "attributes", "pi-cdata-refs", "namespaces", "outside-pis"],
)
def test_variants_canonicalize_like_libxml2(exclusive, variant):
    data = variant(to_bytes(sample_edoc()))
    if b"<edXML:Description xmlns:q" in data:
        data = data.replace(b"</edXML:Description>", b"</edXML:Description>", 1)
    assert _streamed_digest(data, exclusive) == _libxml_digest(data, exclusive)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_generated_documents_canonicalize_like_libxml2(message):
    data = to_bytes(message)
    for exclusive in (True, False):
        assert _streamed_digest(data, exclusive) == _libxml_digest(data, exclusive)


def _key(dev_pki):
    from connector.signing.keys import load_signing_key

    agency = dev_pki.agencies["000.00.00.H16"]
    return load_signing_key(
        {"type": "pem", "key": str(agency.key_path), "cert": str(agency.cert_path), "chain": str(dev_pki.chain_path)}
    )


def test_large_documents_verify_while_streaming(tmp_path, dev_pki, trust_store):
    from connector.edxml.model import FileData
    from connector.signing.sign import sign
    from connector.signing.verify import TrustOptions, verify

    payload = tmp_path / "scan.pdf"
    payload.write_bytes(bytes(range(256)) * 40_000)
    doc = sample_edoc()
    doc.attachments[0].data = FileData(payload)
    doc.with_manifest()
    signed = tmp_path / "signed.edxml"
    sign(doc, _key(dev_pki), signed)
    trust = TrustOptions(trust_store)
    with verify(signed, trust, limits=STREAMING) as result:
        assert result.parsed.raw.streamed
        assert result.verdict.status == "valid", result.verdict.describe()
        assert result.parsed.message.attachments[0].sha256 == hashlib.sha256(payload.read_bytes()).hexdigest()
    data = signed.read_bytes()
    position = data.index(b"ContentTransferEncoded") + 200
    flipped = data[:position] + (b"B" if data[position:position + 1] != b"B" else b"C") + data[position + 1:]
    with verify(flipped, trust, limits=STREAMING) as result:
        assert result.verdict.status == "invalid"
        assert "digest mismatch" in result.verdict.reason


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
@pytest.mark.parametrize("exclusive", [True, False])
def test_wrapped_large_payload_canonicalizes_like_libxml2(newline, exclusive):
    """Base64 wrapped at 76 columns (as many producers write it), large enough to stream past
    several read chunks, so the payload bypass of the reader is exercised."""
    from connector.edxml.model import BytesData

    doc = sample_edoc()
    doc.attachments[0].data = BytesData(bytes(range(256)) * 6000)
    doc.attachments[0].packaging = "plain"
    doc.with_manifest()
    data = to_bytes(doc)
    start = data.index(b">", data.index(b"<edXML:ContentTransferEncoded")) + 1
    end = data.index(b"</edXML:ContentTransferEncoded>")
    payload = data[start:end]
    wrapped = newline.join(payload[i : i + 76] for i in range(0, len(payload), 76))
    data = data[:start] + newline + wrapped + newline + data[end:]
    assert _streamed_digest(data, exclusive) == _libxml_digest(data, exclusive)
    with parse_both(data) as (fast, slow):
        assert fast.message.attachments[0].sha256 == slow.message.attachments[0].sha256
        assert [p.line for p in fast.report.problems] == [p.line for p in slow.report.problems]


class parse_both:
    def __init__(self, data: bytes):
        from connector.edxml.parse import parse

        self.fast = parse(data)
        self.slow = parse(data, limits=STREAMING)

    def __enter__(self):
        return self.fast, self.slow

    def __exit__(self, *exc):
        self.fast.close()
        self.slow.close()
