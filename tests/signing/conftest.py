"""Shared PKI material for the signing tests, generated once per session (RSA keys are slow).

The loopback CRL/OCSP server is started first, on a random 127.0.0.1 port, so that the dev PKI's
certificates embed its real URLs; `pki_server` resets its switches and counters around each test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from connector.signing.devpki import DevPki, agency_name, create_dev_pki, issue_certificate
from connector.signing.trust import TrustStore
from tests.support.pki_servers import PkiServer

SHA256_RSA = bytes.fromhex("2a864886f70d01010b")  # OID 1.2.840.113549.1.1.11, DER contents
SHA1_RSA = bytes.fromhex("2a864886f70d010105")    # OID 1.2.840.113549.1.1.5, same length


@pytest.fixture(scope="session")
def pki_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiServer]:
    server = PkiServer(tmp_path_factory.mktemp("devpki")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dev_pki(pki_server_session: PkiServer) -> DevPki:
    return create_dev_pki(pki_server_session.directory, ocsp_url=pki_server_session.ocsp_url,
                          crl_url=pki_server_session.crl_url)


@pytest.fixture
def pki_server(pki_server_session: PkiServer, dev_pki: DevPki) -> Iterator[PkiServer]:
    pki_server_session.reset()
    yield pki_server_session
    pki_server_session.reset()


@pytest.fixture(scope="session")
def trust_store(dev_pki: DevPki) -> TrustStore:
    return TrustStore.from_directory(dev_pki.trust_dir)


@dataclass(frozen=True)
class OddCerts:
    """Certificates the dev PKI deliberately does not make."""

    foreign_root: x509.Certificate
    foreign_leaf: x509.Certificate       # a good-looking agency cert under another root
    sha1_leaf: x509.Certificate          # agency cert signed by the issuing CA with SHA-1
    rsa1024_leaf: x509.Certificate       # agency cert with a 1024-bit RSA key
    no_digital_signature: x509.Certificate  # keyUsage keyEncipherment only
    sha1_no_digital_signature: x509.Certificate  # both of the above faults
    forged_leaf: x509.Certificate        # names the dev issuing CA, signed by another key


@pytest.fixture(scope="session")
def odd_certs(dev_pki: DevPki) -> OddCerts:
    now = dt.datetime.now(dt.timezone.utc)
    issuing, issuing_key = dev_pki.issuing_ca.certificate, dev_pki.issuing_ca.private_key()
    signing = dict(not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=90),
                   key_usage=("digital_signature", "content_commitment"))

    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some Other Root CA")])
    foreign_root = issue_certificate(
        root_name, foreign_key.public_key(), None, foreign_key, ca=True,
        key_usage=("key_cert_sign", "crl_sign"), not_before=now - dt.timedelta(days=10),
        not_after=now + dt.timedelta(days=365))
    leaf_key = dev_pki.agencies["000.00.00.H16"].private_key()  # any 2048-bit key will do
    foreign_leaf = issue_certificate(agency_name("000.00.00.H16", "UBND tỉnh Đắk Nông"),
                                     leaf_key.public_key(), foreign_root, foreign_key, **signing)

    strong = issue_certificate(agency_name("000.00.00.H14", "UBND tỉnh Cao Bằng"),
                               leaf_key.public_key(), issuing, issuing_key, **signing)
    small_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    rsa1024 = issue_certificate(agency_name("000.00.00.H14", "UBND tỉnh Cao Bằng"),
                                small_key.public_key(), issuing, issuing_key, **signing)
    no_ds = issue_certificate(agency_name("000.00.00.H14", "UBND tỉnh Cao Bằng"),
                              leaf_key.public_key(), issuing, issuing_key,
                              not_before=signing["not_before"], not_after=signing["not_after"],
                              key_usage=("key_encipherment",))
    forged = issue_certificate(agency_name("000.00.00.G22", "Văn phòng Chính phủ"),
                               leaf_key.public_key(), issuing, foreign_key, **signing)
    return OddCerts(foreign_root, foreign_leaf, resign_sha1(strong, issuing_key), rsa1024, no_ds,
                    resign_sha1(no_ds, issuing_key), forged)


def resign_sha1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate, signed with sha1WithRSAEncryption.

    cryptography (>= 50) refuses to create SHA-1 signatures with CertificateBuilder, so the TBS is
    patched (the two algorithm OIDs have the same length) and signed by hand.
    """
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(SHA256_RSA) == 1
    tbs = tbs.replace(SHA256_RSA, SHA1_RSA)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = _der(0x30, _der(0x06, SHA1_RSA) + b"\x05\x00")
    return x509.load_der_x509_certificate(
        _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature)))


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + body


@pytest.fixture
def small_pki_dir(tmp_path: Path) -> Path:
    """A fresh folder for tests that generate their own (one-agency) PKI."""
    return tmp_path / "pki"
