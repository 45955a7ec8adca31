"""Interoperability: our signatures verify with xmlsec1 and signxml; theirs verify with ours.

And a one-byte change anywhere in signed content fails all three verifiers. xmlsec1 is the
Debian binary (CI installs it); without it these tests skip, which CI turns into failures.
"""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from lxml import etree

from connector.edxml.build import to_bytes
from connector.edxml.model import Attachment, BytesData
from connector.edxml.samples import sample_edoc
from connector.signing.dsig import ECDSA_SHA256, RSA_PSS_SHA256, RSA_SHA256
from connector.signing.policy import SenderRule, SignaturePolicy
from connector.signing.sign import sign
from connector.signing.trust import TrustStore
from connector.signing.verify import TrustOptions, verify
from tests.support.dsig_tools import (
    DSIG,
    EXC,
    H16,
    READ_MODES,
    agency_key,
    ec_agency_key,
    header,
    one_byte_changed,
    pem,
    require_xmlsec1,
    signed_bytes,
    to_xml,
    tree,
    xmlsec1_verify,
)

signxml = pytest.importorskip("signxml")
from signxml import XMLSigner, XMLVerifier, methods  # noqa: E402
from signxml.exceptions import InvalidSignature  # noqa: E402

REQUIRE = SignaturePolicy(SenderRule("require"))

TEMPLATE = f"""<Signature xmlns="{DSIG}">
<SignedInfo>
<CanonicalizationMethod Algorithm="{EXC}"/>
<SignatureMethod Algorithm="{RSA_SHA256}"/>
<Reference URI="">
<Transforms>
<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<Transform Algorithm="{EXC}"/>
</Transforms>
<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<DigestValue></DigestValue>
</Reference>
</SignedInfo>
<SignatureValue/>
<KeyInfo><X509Data><X509Certificate/></X509Data></KeyInfo>
</Signature>"""


@pytest.fixture(scope="module")
def message():
    return sample_edoc()


@pytest.fixture(scope="module")
def signed(message, dev_pki):
    return signed_bytes(message, agency_key(dev_pki))


@pytest.fixture
def trust(trust_store):
    return TrustOptions(trust_store)


def _ours(data, trust, limits=READ_MODES["memory"]):
    with verify(data, trust, policy=REQUIRE, limits=limits) as result:
        return result


def _signxml_verify(data: bytes, cert_pem: str):
    return XMLVerifier().verify(data, x509_cert=cert_pem, expect_references=2)


def _template_document(message) -> bytes:
    """An unsigned build with a Signature template as the last child of edXMLHeader."""
    root = tree(to_bytes(message))
    head = header(root)
    template = etree.fromstring(TEMPLATE)
    last = head[-1]
    template.tail = last.tail
    last.tail = "\n      "
    head.append(template)
    return to_xml(root)


# --------------------------------------------------------------------------- ours -> theirs


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ecdsa-sha256"])
def test_xmlsec1_verifies_our_signature(message, dev_pki, tmp_path, algorithm):
    key = agency_key(dev_pki) if algorithm == "rsa-sha256" else ec_agency_key(dev_pki)
    data = signed_bytes(message, key)
    run = xmlsec1_verify(data, tmp_path, dev_pki)
    assert run.returncode == 0, run.stderr
    assert "OK" in run.stdout + run.stderr
    assert "SignedInfo References (ok/all): 2/2" in run.stdout + run.stderr


def test_signxml_verifies_our_signature(signed, dev_pki):
    results = _signxml_verify(signed, pem(dev_pki.agencies[H16].certificate))
    assert len(results) == 2
    # The first reference is the whole document (minus the Signature): signxml hands back its root.
    whole = results[0].signed_xml
    assert etree.QName(whole).localname == "edXML"
    assert not list(whole.iter(f"{{{DSIG}}}Signature"))


@pytest.mark.parametrize("algorithm", [RSA_PSS_SHA256, ECDSA_SHA256])
def test_signxml_verifies_our_other_algorithms(message, dev_pki, algorithm):
    key = ec_agency_key(dev_pki) if algorithm == ECDSA_SHA256 else agency_key(dev_pki, algorithm="rsa-pss-sha256")
    data = signed_bytes(message, key)
    results = _signxml_verify(data, pem(key.certificate))
    assert len(results) == 2


def test_xmlsec1_verifies_a_large_document_signed_in_two_streaming_passes(dev_pki, trust, tmp_path):
    """Attachments above the signer's in-memory threshold take the streaming two-pass path."""
    message = sample_edoc()
    message.attachments = [Attachment("big", "ho-so.pdf", "application/pdf", None, "plain",
                                      data=BytesData(bytes(range(256)) * (4_300_000 // 256)))]
    message.with_manifest()
    out = tmp_path / "large.edxml"
    sign(message, agency_key(dev_pki), out)
    run = xmlsec1_verify(out.read_bytes(), tmp_path, dev_pki)
    assert run.returncode == 0, run.stderr
    for limits in READ_MODES.values():
        result = _ours(out, trust, limits)
        assert result.verdict.status == "valid", result.verdict.reason
        assert result.parsed.message == message


def test_signxml_refuses_our_signature_for_another_certificate(signed, dev_pki):
    with pytest.raises(InvalidSignature):
        _signxml_verify(signed, pem(dev_pki.agencies["000.00.00.G22"].certificate))


# --------------------------------------------------------------------------- theirs -> ours


@pytest.mark.parametrize("with_chain", [True, False], ids=["key-cert-chain", "key-cert"])
def test_xmlsec1_template_signature_verifies_with_ours(message, dev_pki, trust, tmp_path, with_chain):
    binary = require_xmlsec1()
    template = tmp_path / "template.edxml"
    template.write_bytes(_template_document(message))
    out = tmp_path / "xmlsec1-signed.edxml"
    agency = dev_pki.agencies[H16]
    keys = [agency.key_path, agency.cert_path] + ([dev_pki.issuing_ca.cert_path] if with_chain else [])
    run = subprocess.run([binary, "--sign", "--privkey-pem", ",".join(map(str, keys)), "--output", str(out), str(template)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr

    result = _ours(out, trust)
    if with_chain:
        assert result.verdict.status == "valid", result.verdict.reason
        assert result.verdict.signer_serial == format(agency.certificate.serial_number, "x")
        assert result.verdict.algorithm == RSA_SHA256
        assert result.verdict.signing_time is None  # xmlsec1 signs no time
        assert result.parsed.message == message
        assert result.decision.accepted
    else:
        # Only the leaf travels: the chain stops at the issuing CA unless that CA is pinned.
        assert result.verdict.status == "untrusted", result.verdict.reason
        pinned = TrustOptions(TrustStore.from_certificates([dev_pki.issuing_ca.certificate,
                                                            dev_pki.root_ca.certificate]))
        assert _ours(out, pinned).verdict.status == "valid"
    # The signed file still verifies with xmlsec1 itself, and a changed subject fails ours.
    assert xmlsec1_verify(out.read_bytes(), tmp_path, dev_pki).returncode == 0
    tampered = one_byte_changed(out.read_bytes(), b"<edXML:Subject>")
    assert _ours(tampered, trust).verdict.status == "invalid"


def test_python_xmlsec_signature_verifies_with_ours(message, dev_pki, trust):
    xmlsec = pytest.importorskip("xmlsec")
    root = tree(_template_document(message))
    sig = root.find(f".//{{{DSIG}}}Signature")
    agency = dev_pki.agencies[H16]
    key = xmlsec.Key.from_file(str(agency.key_path), xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_file(str(agency.cert_path), xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_file(str(dev_pki.issuing_ca.cert_path), xmlsec.constants.KeyDataFormatPem)
    context = xmlsec.SignatureContext()
    context.key = key
    context.sign(sig)
    data = to_xml(root)
    result = _ours(data, trust)
    assert result.verdict.status == "valid", result.verdict.reason
    assert result.parsed.message == message
    assert _ours(one_byte_changed(data, b"<edXML:OrganName>"), trust).verdict.status == "invalid"


def test_signxml_enveloped_signature_is_misplaced_for_ours(message, dev_pki, trust):
    """signxml appends the Signature to the root; receivers look in edXMLHeader, so we refuse it."""
    agency = dev_pki.agencies[H16]
    signer = XMLSigner(method=methods.enveloped, c14n_algorithm=EXC)
    root = signer.sign(tree(to_bytes(message)), key=agency.key_path.read_bytes(),
                       cert=[pem(agency.certificate), pem(dev_pki.issuing_ca.certificate)])
    data = to_xml(root)
    assert etree.QName(root[-1]).localname == "Signature"
    XMLVerifier().verify(data, x509_cert=pem(agency.certificate))  # a sound signature, for signxml
    result = _ours(data, trust)
    assert result.verdict.status == "invalid"
    assert "not in edXMLHeader" in result.verdict.reason
    assert not result.decision.accepted


# --------------------------------------------------------------------------- one byte, three verifiers


def _attachment_anchor(data: bytes) -> bytes:
    start = data.index(b"<edXML:ContentTransferEncoded")
    return data[start:data.index(b">", start) + 1]


CHANGES = {
    "header text": lambda d: one_byte_changed(d, b"<edXML:Subject>"),
    "sender code": lambda d: one_byte_changed(d, b"<edXML:OrganId>", offset=12),
    "attribute": lambda d: one_byte_changed(d, b'<edXML:edXMLManifest version="'),
    "attachment base64": lambda d: one_byte_changed(d, _attachment_anchor(d), offset=40),
    "manifest": lambda d: one_byte_changed(d, b"<edXML:AttachmentName>"),
    "trace header": lambda d: one_byte_changed(d, b"<edXML:Timestamp>", offset=3),
    "signing time": lambda d: one_byte_changed(d, b'<SigningTime xmlns="urn:edoc-connector:signature:1">', offset=3),
    "digest value": lambda d: one_byte_changed(d, b"<DigestValue>", offset=5),
}


@pytest.mark.parametrize("where", sorted(CHANGES))
def test_one_byte_change_fails_every_verifier(signed, dev_pki, trust, tmp_path, where):
    data = CHANGES[where](signed)
    assert data != signed and len(data) == len(signed)
    for mode, limits in READ_MODES.items():
        result = _ours(data, trust, limits)
        assert result.verdict.status == "invalid", (mode, result.verdict.reason)
        assert not result.decision.accepted
    assert xmlsec1_verify(data, tmp_path, dev_pki).returncode != 0
    with pytest.raises(InvalidSignature):
        _signxml_verify(data, pem(dev_pki.agencies[H16].certificate))


def test_unchanged_document_passes_every_verifier(signed, dev_pki, trust, tmp_path):
    """The control for the test above: the same three verifiers accept the untouched bytes."""
    for limits in READ_MODES.values():
        assert _ours(signed, trust, limits).verdict.status == "valid"
    assert xmlsec1_verify(signed, tmp_path, dev_pki).returncode == 0
    assert len(_signxml_verify(signed, pem(dev_pki.agencies[H16].certificate))) == 2
    assert dt.datetime.now(dt.timezone.utc) < dev_pki.agencies[H16].certificate.not_valid_after_utc
