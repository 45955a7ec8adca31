"""Helpers for the signature tests: signed bytes, tree surgery, hand-made SignedInfo, tools.

Why: the verdict, interop and wrapping tests all need to take a signed document apart, change
one thing, and sometimes re-sign SignedInfo with the real key so that only the change under
test is wrong. Doing that by hand (lxml, the key's ``sign``) keeps the attacks independent of
the code under test.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import io
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from connector.edxml.model import Edoc
from connector.edxml.reader import Limits
from connector.signing.devpki import DOCUMENT_SIGNING_EKU, DevPki, agency_name, issue_certificate
from connector.signing.dsig import RSA_SHA1
from connector.signing.keys import PemKey, SoftwareKey
from connector.signing.sign import sign

DSIG = "http://www.w3.org/2000/09/xmldsig#"
NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
D = f"{{{DSIG}}}"
E = f"{{{NS}}}"

#: In-memory (libxml2) and streamed (expat + streaming canonicalizer) reading paths.
READ_MODES = {"memory": Limits(), "stream": Limits(in_memory_below=0)}

H16 = "000.00.00.H16"


# --------------------------------------------------------------------------- keys


def agency_key(pki: DevPki, code: str = H16, algorithm: str | None = None) -> PemKey:
    agency = pki.agencies[code]
    return PemKey(agency.key_path, agency.cert_path, chain=pki.chain_path, algorithm=algorithm)


def credential_key(pki: DevPki, credential) -> PemKey:
    """A key for one of the PKI's other leaf credentials (revoked, expired)."""
    return PemKey(credential.key_path, credential.cert_path, chain=pki.chain_path)


def ec_agency_key(pki: DevPki, code: str = "000.00.00.H14") -> SoftwareKey:
    """An EC P-256 agency key with a certificate from the dev issuing CA."""
    now = dt.datetime.now(dt.timezone.utc)
    private = ec.generate_private_key(ec.SECP256R1())
    cert = issue_certificate(
        agency_name(code, "UBND tỉnh Cao Bằng"), private.public_key(), pki.issuing_ca.certificate,
        pki.issuing_ca.private_key(), not_before=now - dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=90), key_usage=("digital_signature", "content_commitment"),
        extended_key_usage=[DOCUMENT_SIGNING_EKU])
    return SoftwareKey(private, cert, [pki.issuing_ca.certificate], source="test EC key")


@dataclass
class WeakKey:
    """A duck-typed SigningKey that signs with RSA-SHA1 (the key sources refuse to)."""

    private: rsa.RSAPrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)
    algorithm: str = RSA_SHA1

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data, padding.PKCS1v15(), hashes.SHA1())

    def public_key(self):
        return self.certificate.public_key()


def weak_key(pki: DevPki, code: str = H16) -> WeakKey:
    agency = pki.agencies[code]
    return WeakKey(agency.private_key(), agency.certificate, [pki.issuing_ca.certificate])


# --------------------------------------------------------------------------- documents


def signed_bytes(message: Edoc, key, **kwargs) -> bytes:
    out = io.BytesIO()
    sign(message, key, out, **kwargs)
    return out.getvalue()


def tree(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(remove_blank_text=False, resolve_entities=False))


def to_xml(root: etree._Element) -> bytes:
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def header(root: etree._Element) -> etree._Element:
    return root.find(f"{E}edXMLEnvelope/{E}edXMLHeader")


def message_header(root: etree._Element) -> etree._Element:
    return header(root).find(f"{E}MessageHeader")


def signature(root: etree._Element) -> etree._Element:
    found = list(root.iter(f"{D}Signature"))
    assert len(found) == 1, f"{len(found)} signatures"
    return found[0]


def one_byte_changed(data: bytes, anchor: bytes, offset: int = 0) -> bytes:
    """``data`` with one ASCII letter or digit, the first at or after ``anchor`` + ``offset``,
    replaced by another one."""
    at = data.index(anchor) + len(anchor) + offset
    while not data[at:at + 1].isalnum():
        at += 1
    old = data[at:at + 1]
    new = b"B" if old != b"B" else b"C"
    return data[:at] + new + data[at + 1:]


def detach(element: etree._Element) -> None:
    """Remove ``element`` from its parent, keeping its tail text in place."""
    parent = element.getparent()
    tail = element.tail
    previous = element.getprevious()
    parent.remove(element)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail


def document_digest(root: etree._Element, sig: etree._Element, hash_name: str = "sha256") -> bytes:
    """The enveloped + exc-C14N digest of the document ``sig`` sits in (computed on a copy)."""
    clone = copy.deepcopy(root)
    detach(next(c for o, c in zip(root.iter(), clone.iter()) if o is sig))
    return hashlib.new(hash_name, etree.tostring(clone.getroottree(), method="c14n", exclusive=True,
                                                 with_comments=False)).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def reference(uri: str, digest: bytes, transforms: list[str]) -> etree._Element:
    ref = etree.Element(f"{D}Reference", URI=uri, nsmap={None: DSIG})
    if transforms:
        holder = etree.SubElement(ref, f"{D}Transforms")
        for algorithm in transforms:
            etree.SubElement(holder, f"{D}Transform", Algorithm=algorithm)
    etree.SubElement(ref, f"{D}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    etree.SubElement(ref, f"{D}DigestValue").text = b64(digest)
    return ref


def element_digest(element: etree._Element) -> bytes:
    return hashlib.sha256(etree.tostring(element, method="c14n", exclusive=True, with_comments=False)).digest()


def resign(sig: etree._Element, key) -> None:
    """Recompute SignatureValue over SignedInfo (exc-C14N, in place) with ``key``."""
    signed_info = sig.find(f"{D}SignedInfo")
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    sig.find(f"{D}SignatureValue").text = b64(key.sign(canonical))


# --------------------------------------------------------------------------- tools


def require_xmlsec1() -> str:
    """The xmlsec1 binary, or skip (the suite's conftest turns the skip into a failure in CI)."""
    path = shutil.which("xmlsec1")
    if path is None:
        pytest.skip("xmlsec1 not installed (apt-get install xmlsec1)")
    return path


def xmlsec1_verify(data: bytes, workdir: Path, pki: DevPki) -> subprocess.CompletedProcess:
    """``xmlsec1 --verify`` with the dev root trusted and the issuing CA as untrusted helper."""
    binary = require_xmlsec1()
    target = workdir / f"verify-{os.urandom(4).hex()}.edxml"
    target.write_bytes(data)
    return subprocess.run(
        [binary, "--verify", "--trusted-pem", str(pki.root_ca.cert_path),
         "--untrusted-pem", str(pki.issuing_ca.cert_path),
         "--id-attr:Id", f"{DSIG}:SignatureProperties", str(target)],
        capture_output=True, text=True, timeout=60)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
