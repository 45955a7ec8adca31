"""Trust store loading and chain validation verdicts: trusted, untrusted, expired, weak."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from connector.signing.devpki import DevPki
from connector.signing.trust import TrustStore, TrustStoreError, validate_chain

NOW = dt.datetime.now(dt.timezone.utc)


def test_good_agency_certificate_is_trusted_with_details(dev_pki: DevPki,
                                                         trust_store: TrustStore) -> None:
    agency = dev_pki.agencies["000.00.00.H16"].certificate
    result = validate_chain(agency, dev_pki.intermediates, at=NOW, store=trust_store)
    assert result.verdict == "trusted" and result.trusted, result.reason
    assert "UID=000.00.00.H16" in result.subject and "Đắk Nông" in result.subject
    assert "Dev Issuing CA" in result.issuer
    assert result.serial == format(agency.serial_number, "x")
    assert result.not_before == agency.not_valid_before_utc
    assert result.not_after == agency.not_valid_after_utc
    assert list(result.chain) == [agency, dev_pki.issuing_ca.certificate,
                                  dev_pki.root_ca.certificate]
    assert result.warnings == ()


def test_missing_intermediate_is_untrusted(dev_pki: DevPki, trust_store: TrustStore) -> None:
    agency = dev_pki.agencies["000.00.00.G22"].certificate
    result = validate_chain(agency, [], at=NOW, store=trust_store)
    assert result.verdict == "untrusted"
    assert "Dev Issuing CA" in result.reason and result.chain == ()


def test_leaf_from_another_root_is_untrusted(odd_certs, dev_pki: DevPki,
                                             trust_store: TrustStore) -> None:
    result = validate_chain(odd_certs.foreign_leaf, [odd_certs.foreign_root], at=NOW,
                            store=trust_store)
    assert result.verdict == "untrusted"
    assert result.reason == "'Some Other Root CA' is a root that is not in the trust store"
    # ... and trusted once that root is an anchor: the refusal was about the anchor only
    other = TrustStore.from_certificates([odd_certs.foreign_root])
    assert validate_chain(odd_certs.foreign_leaf, [], at=NOW, store=other).verdict == "trusted"


def test_forged_certificate_naming_our_issuer_is_untrusted(odd_certs, dev_pki: DevPki,
                                                          trust_store: TrustStore) -> None:
    result = validate_chain(odd_certs.forged_leaf, dev_pki.intermediates, at=NOW,
                            store=trust_store)
    assert result.verdict == "untrusted"
    assert "does not verify with the key of 'Dev Issuing CA" in result.reason


def test_expired_at_signing_time_but_valid_earlier(dev_pki: DevPki,
                                                   trust_store: TrustStore) -> None:
    expired = dev_pki.expired.certificate
    now = validate_chain(expired, dev_pki.intermediates, at=NOW, store=trust_store)
    assert now.verdict == "expired" and "expired on" in now.reason
    earlier = NOW - dt.timedelta(days=60)
    then = validate_chain(expired, dev_pki.intermediates, at=earlier, store=trust_store)
    assert then.verdict == "trusted", then.reason
    too_early = expired.not_valid_before_utc - dt.timedelta(days=1)
    before = validate_chain(expired, dev_pki.intermediates, at=too_early, store=trust_store)
    assert before.verdict == "expired" and "not yet valid" in before.reason


def test_naive_signing_time_is_taken_as_utc(dev_pki: DevPki, trust_store: TrustStore) -> None:
    expired = dev_pki.expired.certificate
    naive = (expired.not_valid_after_utc + dt.timedelta(hours=1)).replace(tzinfo=None)
    assert validate_chain(expired, dev_pki.intermediates, at=naive,
                          store=trust_store).verdict == "expired"


def test_sha1_signed_certificate_is_weak_unless_allowed(odd_certs, dev_pki: DevPki,
                                                        trust_store: TrustStore) -> None:
    refused = validate_chain(odd_certs.sha1_leaf, dev_pki.intermediates, at=NOW,
                             store=trust_store)
    assert refused.verdict == "weak" and "SHA1" in refused.reason
    allowed = validate_chain(odd_certs.sha1_leaf, dev_pki.intermediates, at=NOW,
                             store=trust_store, allow_weak=True)
    assert allowed.verdict == "trusted", allowed.reason
    assert allowed.warnings and "SHA1" in allowed.warnings[0]
    assert allowed.chain[-1] == dev_pki.root_ca.certificate


def test_1024_bit_rsa_key_is_weak_unless_allowed(odd_certs, dev_pki: DevPki,
                                                 trust_store: TrustStore) -> None:
    refused = validate_chain(odd_certs.rsa1024_leaf, dev_pki.intermediates, at=NOW,
                             store=trust_store)
    assert refused.verdict == "weak" and "1024-bit RSA" in refused.reason
    allowed = validate_chain(odd_certs.rsa1024_leaf, dev_pki.intermediates, at=NOW,
                             store=trust_store, allow_weak=True)
    assert allowed.verdict == "trusted" and allowed.warnings


def test_allow_weak_still_enforces_anchor_and_extension_policy(odd_certs, dev_pki: DevPki,
                                                               trust_store: TrustStore) -> None:
    no_path = validate_chain(odd_certs.sha1_leaf, [], at=NOW, store=trust_store, allow_weak=True)
    assert no_path.verdict == "untrusted"
    bad_usage = validate_chain(odd_certs.sha1_no_digital_signature, dev_pki.intermediates,
                               at=NOW, store=trust_store, allow_weak=True)
    assert bad_usage.verdict == "untrusted" and "digitalSignature" in bad_usage.reason


def test_leaf_without_digital_signature_is_untrusted(odd_certs, dev_pki: DevPki,
                                                     trust_store: TrustStore) -> None:
    result = validate_chain(odd_certs.no_digital_signature, dev_pki.intermediates, at=NOW,
                            store=trust_store)
    assert result.verdict == "untrusted" and "digitalSignature" in result.reason


@pytest.mark.parametrize("which", ["tls_server", "tls_client", "ocsp_responder"])
def test_certificates_for_other_purposes_cannot_sign_documents(which: str, dev_pki: DevPki,
                                                               trust_store: TrustStore) -> None:
    cert = getattr(dev_pki, which).certificate
    result = validate_chain(cert, dev_pki.intermediates, at=NOW, store=trust_store)
    assert result.verdict == "untrusted"
    assert "extendedKeyUsage" in result.reason


def test_ca_certificate_is_not_a_document_signer(dev_pki: DevPki,
                                                 trust_store: TrustStore) -> None:
    result = validate_chain(dev_pki.issuing_ca.certificate, [], at=NOW, store=trust_store)
    assert result.verdict == "untrusted"


def test_empty_store_trusts_nothing(dev_pki: DevPki) -> None:
    result = validate_chain(dev_pki.agencies["000.00.00.H41"].certificate,
                            dev_pki.intermediates, at=NOW, store=TrustStore(()))
    assert result.verdict == "untrusted" and "no anchor" in result.reason


def test_store_loads_pem_and_der_and_names_skipped_files(dev_pki: DevPki, tmp_path: Path) -> None:
    root = dev_pki.root_ca.certificate
    (tmp_path / "root.pem").write_bytes((dev_pki.directory / "root-ca.pem").read_bytes())
    (tmp_path / "issuing.cer").write_bytes(
        dev_pki.issuing_ca.certificate.public_bytes(serialization.Encoding.DER))
    (tmp_path / "notes.dat").write_text("not a certificate")
    (tmp_path / "README.md").write_text("notes for the operator are not candidates")
    (tmp_path / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                        "-----END CERTIFICATE-----\n")
    (tmp_path / "leaf.pem").write_bytes((dev_pki.agencies["000.00.00.H16"].cert_path).read_bytes())
    (tmp_path / ".hidden").write_text("ignored")
    store = TrustStore.from_directory(tmp_path)
    assert set(store.anchors) == {root, dev_pki.issuing_ca.certificate}
    skipped = {s.path.name: s.reason for s in store.skipped}
    assert set(skipped) == {"notes.dat", "broken.pem", "leaf.pem"}
    assert "not a CA" in skipped["leaf.pem"]
    assert all(s.path.name in str(s) for s in store.skipped)


def test_missing_anchor_folder_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(TrustStoreError, match="does not exist"):
        TrustStore.from_directory(tmp_path / "nope")
