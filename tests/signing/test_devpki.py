"""The development PKI: files, extensions, chain, CRL, PKCS#12, permissions, idempotence."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from connector.signing.devpki import (
    DEFAULT_AGENCIES,
    DOCUMENT_SIGNING_EKU,
    DevPki,
    _load_if_current,
    agency_code_of,
    create_dev_pki,
)
from connector.signing.trust import TrustStore, validate_chain

NOW = dt.datetime.now(dt.timezone.utc)


def ext(cert: x509.Certificate, kind: type) -> object:
    return cert.extensions.get_extension_for_class(kind)


def test_layout_is_complete_and_documented(dev_pki: DevPki) -> None:
    d = dev_pki.directory
    expected = ["pki.json", "README.txt", "root-ca.pem", "issuing-ca.pem", "chain.pem",
                "trust/root-ca.pem", "private/root-ca.key", "private/issuing-ca.key",
                "tls/server.key", "tls/server.pem", "tls/client.key", "tls/client.pem",
                "crl/issuing-ca.crl", "crl/issuing-ca.pem", "ocsp/responder.key",
                "ocsp/responder.pem", "ocsp/index.json", "revoked/key.pem", "revoked/cert.pem",
                "expired/key.pem", "expired/cert.pem"]
    for code in DEFAULT_AGENCIES:
        expected += [f"agencies/{code}/{n}" for n in
                     ("key.pem", "cert.pem", "bundle.p12", "p12-passphrase.txt")]
    missing = [p for p in expected if not (d / p).is_file()]
    assert missing == []
    readme = (d / "README.txt").read_text(encoding="utf-8")
    assert "NOT FOR PRODUCTION" in readme and "ocsp/index.json" in readme
    assert dev_pki.ocsp_url in readme
    chain = x509.load_pem_x509_certificates((d / "chain.pem").read_bytes())
    assert [c.subject for c in chain] == [dev_pki.issuing_ca.certificate.subject,
                                          dev_pki.root_ca.certificate.subject]


def test_private_keys_and_passphrases_are_owner_only(dev_pki: DevPki) -> None:
    secrets = [p for p in dev_pki.directory.rglob("*")
               if p.suffix == ".key" or p.name in ("key.pem", "p12-passphrase.txt", "bundle.p12")]
    assert len(secrets) == 2 + 3 + 3 * 3 + 2  # CA, tls+ocsp, agencies (3 files), revoked+expired
    assert {stat.S_IMODE(p.stat().st_mode) for p in secrets} == {0o600}
    assert stat.S_IMODE((dev_pki.directory / "root-ca.pem").stat().st_mode) != 0o600


def test_agency_certificates_carry_the_signing_profile(dev_pki: DevPki) -> None:
    assert set(dev_pki.agencies) == set(DEFAULT_AGENCIES)
    for code, agency in dev_pki.agencies.items():
        cert = agency.certificate
        name = DEFAULT_AGENCIES[code]
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == name
        assert agency_code_of(cert) == code
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        ku = ext(cert, x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
        assert not ku.value.key_cert_sign
        assert ext(cert, x509.BasicConstraints).value.ca is False
        eku = ext(cert, x509.ExtendedKeyUsage).value
        assert DOCUMENT_SIGNING_EKU in eku and ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
        cdp = ext(cert, x509.CRLDistributionPoints).value
        assert cdp[0].full_name[0].value == dev_pki.crl_url
        aia = ext(cert, x509.AuthorityInformationAccess).value
        assert [(a.access_method, a.access_location.value) for a in aia] == [
            (AuthorityInformationAccessOID.OCSP, dev_pki.ocsp_url)]
        # the certificate is the issuing CA's, and the key on disk belongs to it
        cert.verify_directly_issued_by(dev_pki.issuing_ca.certificate)
        signature = agency.private_key().sign(b"x", padding.PKCS1v15(), hashes.SHA256())
        key.verify(signature, b"x", padding.PKCS1v15(), hashes.SHA256())


def test_every_current_certificate_validates_to_the_root(dev_pki: DevPki,
                                                        trust_store: TrustStore) -> None:
    for agency in dev_pki.agencies.values():
        result = validate_chain(agency.certificate, dev_pki.intermediates, at=NOW,
                                store=trust_store)
        assert result.verdict == "trusted", result.reason
        assert [c.subject for c in result.chain][-1] == dev_pki.root_ca.certificate.subject
    dev_pki.issuing_ca.certificate.verify_directly_issued_by(dev_pki.root_ca.certificate)
    assert ext(dev_pki.root_ca.certificate, x509.BasicConstraints).value.ca


def test_pkcs12_bundle_opens_with_its_dev_passphrase(dev_pki: DevPki) -> None:
    agency = dev_pki.agencies["000.00.00.G22"]
    key, cert, extra = pkcs12.load_key_and_certificates(agency.p12_path.read_bytes(),
                                                        agency.p12_passphrase())
    assert cert == agency.certificate
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert [c.subject for c in extra] == [dev_pki.issuing_ca.certificate.subject,
                                          dev_pki.root_ca.certificate.subject]


def test_tls_and_ocsp_responder_certificates(dev_pki: DevPki) -> None:
    server = dev_pki.tls_server.certificate
    san = ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert ExtendedKeyUsageOID.SERVER_AUTH in ext(server, x509.ExtendedKeyUsage).value
    client = dev_pki.tls_client.certificate
    assert list(ext(client, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    responder = dev_pki.ocsp_responder.certificate
    assert list(ext(responder, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert ext(responder, x509.OCSPNoCheck) is not None
    responder.verify_directly_issued_by(dev_pki.issuing_ca.certificate)


def test_crl_lists_exactly_the_revoked_certificate(dev_pki: DevPki) -> None:
    crl = dev_pki.crl()
    issuing = dev_pki.issuing_ca.certificate
    assert crl.issuer == issuing.subject
    assert crl.is_signature_valid(issuing.public_key())
    assert [e.serial_number for e in crl] == [dev_pki.revoked.certificate.serial_number]
    entry = crl.get_revoked_certificate_by_serial_number(dev_pki.revoked.certificate.serial_number)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.cessation_of_operation
    assert crl.next_update_utc > NOW
    pem = x509.load_pem_x509_crl(dev_pki.crl_pem_path.read_bytes())
    assert pem.public_bytes(serialization.Encoding.DER) == dev_pki.crl_der_path.read_bytes()


def test_ocsp_index_and_expired_certificate(dev_pki: DevPki) -> None:
    index = json.loads(dev_pki.ocsp_index_path.read_text())
    revoked = index[format(dev_pki.revoked.certificate.serial_number, "x")]
    assert revoked["status"] == "revoked" and revoked["reason"] == "cessationOfOperation"
    assert dt.datetime.fromisoformat(revoked["revocation_time"]) < NOW
    for agency in dev_pki.agencies.values():
        assert index[format(agency.certificate.serial_number, "x")]["status"] == "good"
    expired = dev_pki.expired.certificate
    assert expired.not_valid_after_utc < NOW - dt.timedelta(days=29)


def test_idempotent_load_and_forced_regeneration(small_pki_dir: Path) -> None:
    one = {"000.00.00.H41": "UBND tỉnh Nghệ An"}
    first = create_dev_pki(small_pki_dir, agencies=one)
    assert first.created
    root_bytes = (small_pki_dir / "root-ca.pem").read_bytes()
    marker = small_pki_dir / "keep-me.txt"  # not ours: must survive regeneration
    marker.write_text("user file")

    again = create_dev_pki(small_pki_dir, agencies=one)
    assert not again.created
    assert again.root_ca.certificate == first.root_ca.certificate
    assert (small_pki_dir / "root-ca.pem").read_bytes() == root_bytes
    assert set(again.agencies) == set(one)

    forced = create_dev_pki(small_pki_dir, agencies=one, force=True)
    assert forced.created and forced.root_ca.certificate != first.root_ca.certificate
    assert marker.read_text() == "user file"

    # What makes an existing PKI unusable, checked without paying for another generation:
    params = {"format": 1, "agencies": one, "ocsp_url": None, "crl_url": None}
    # Each answer is (the PKI or None, why not), the reason naming the file or parameter.
    assert _load_if_current(small_pki_dir, params, NOW)[0] is not None
    assert _load_if_current(small_pki_dir, {**params, "ocsp_url": "http://x/ocsp"}, NOW) == (
        None, "the OCSP URL asked for differs from what pki.json records")
    assert _load_if_current(small_pki_dir, {**params, "agencies": DEFAULT_AGENCIES}, NOW)[0] is None
    assert _load_if_current(small_pki_dir, params, NOW + dt.timedelta(days=45)) == (  # CRL
        None, "crl/issuing-ca.crl is past its nextUpdate")
    (small_pki_dir / "agencies" / "000.00.00.H41" / "key.pem").unlink()
    assert _load_if_current(small_pki_dir, params, NOW) == (None, "agencies/000.00.00.H41/key.pem is missing")


def test_refuses_agency_codes_that_are_not_folder_names(small_pki_dir: Path) -> None:
    with pytest.raises(ValueError, match="folder name"):
        create_dev_pki(small_pki_dir, agencies={"../evil": "x"})
    assert not small_pki_dir.exists()
