"""Sign and verify: every verdict, the policy's decision on it, and every kind of key.

Documents are signed with the session dev PKI (tests/signing/conftest.py); revocation goes
over real HTTP to its loopback OCSP responder and CRL distribution point.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509

from connector.edxml.build import to_bytes
from connector.edxml.model import VN_TZ
from connector.edxml.samples import sample_edoc, sample_status
from connector.signing.dsig import ECDSA_SHA256, RSA_PSS_SHA256, RSA_SHA1, RSA_SHA256
from connector.signing.keys import Pkcs11Key, SoftwareKey
from connector.signing.policy import MODES, SenderRule, SignaturePolicy, decide
from connector.signing.revocation import RevocationChecker
from connector.signing.sign import sign
from connector.signing.trust import TrustStore
from connector.signing.verdict import Verdict
from connector.signing.verify import TrustOptions, verify
from tests.conftest import real_world_dir
from tests.support.dsig_tools import (
    D,
    DSIG,
    EXC,
    H16,
    READ_MODES,
    agency_key,
    credential_key,
    ec_agency_key,
    element_digest,
    message_header,
    one_byte_changed,
    reference,
    resign,
    signature,
    signed_bytes,
    to_xml,
    tree,
    weak_key,
)
from tests.support.softhsm import shared_token

# A signing time inside the development certificates' validity (they start a day before now).
MOMENT = dt.datetime.now(VN_TZ).replace(microsecond=0) - dt.timedelta(minutes=5)


@pytest.fixture(scope="module")
def message():
    return sample_edoc()


@pytest.fixture(scope="module")
def key(dev_pki):
    return agency_key(dev_pki)


@pytest.fixture(scope="module")
def signed(message, key):
    """A document signed now (so that every certificate is inside its validity)."""
    return signed_bytes(message, key)


@pytest.fixture
def trust(trust_store):
    return TrustOptions(trust_store)


def _check(data, trust, mode="if-present", **kwargs):
    policy = SignaturePolicy(SenderRule(mode))
    result = verify(data, trust, policy=policy, **kwargs)
    result.close()
    return result


# --------------------------------------------------------------------------- valid


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
def test_valid_signature_names_signer_and_time(message, key, dev_pki, trust, tmp_path, read_mode):
    out = tmp_path / "signed.edxml"
    info = sign(message, key, out, signing_time=MOMENT)
    cert = dev_pki.agencies[H16].certificate

    result = verify(out, trust, policy=SignaturePolicy(SenderRule("require")), at=dt.datetime.now(dt.timezone.utc),
                    limits=READ_MODES[read_mode])
    with result:
        verdict = result.verdict
        assert verdict.status == "valid", verdict.reason
        assert verdict.signer_subject == cert.subject.rfc4514_string() == info.signer_subject
        assert verdict.signer_issuer == dev_pki.issuing_ca.certificate.subject.rfc4514_string()
        assert verdict.signer_serial == format(cert.serial_number, "x") == info.signer_serial
        assert verdict.signing_time == MOMENT
        assert verdict.algorithm == RSA_SHA256
        assert verdict.warnings == []
        assert result.decision.accepted and result.decision.mode == "require"
        assert result.parsed.report.errors == []
        # The model handed back is the model that was signed.
        assert result.parsed.message == message
        assert result.parsed.message.subject == message.subject
        assert [a.sha256 for a in result.parsed.message.attachments] == [a.sha256 for a in message.attachments]


def test_signing_time_defaults_to_now_and_is_reported(signed, trust):
    verdict = _check(signed, trust, "require").verdict
    assert verdict.status == "valid", verdict.reason
    assert abs(verdict.signing_time - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5)
    described = verdict.describe()
    assert described.startswith("valid:") and verdict.signer_serial in described
    assert verdict.to_dict()["signing_time"] == verdict.signing_time.isoformat()


def test_status_messages_are_not_signed(key, tmp_path):
    with pytest.raises(TypeError):
        sign(sample_status(sample_edoc()), key, tmp_path / "status.edxml")


# --------------------------------------------------------------------------- absent, placeholder, partial


def test_unsigned_document_is_absent(message, trust):
    data = to_bytes(message)
    decisions = {mode: _check(data, trust, mode) for mode in MODES}
    assert {r.verdict.status for r in decisions.values()} == {"absent"}
    assert not decisions["require"].decision.accepted
    assert decisions["if-present"].decision.accepted and decisions["if-present"].decision.warning
    assert decisions["record"].decision.accepted and decisions["record"].decision.warning
    assert decisions["if-present"].parsed.message == message


@pytest.mark.parametrize("name", ["bkav__edoc_new.edxml", "tltvbqn__edoc_new.edxml", "truclienthong__edoc_new.edxml"])
def test_real_world_placeholders(name, trust):
    path = real_world_dir() / name
    decisions = {mode: _check(path, trust, mode) for mode in MODES}
    assert {r.verdict.status for r in decisions.values()} == {"placeholder"}
    assert not decisions["require"].decision.accepted
    assert decisions["if-present"].decision.accepted and decisions["if-present"].decision.warning
    assert decisions["record"].decision.accepted


def test_truncated_certificate_in_dsig_namespace_is_placeholder(signed, trust):
    root = tree(signed)
    for element in signature(root).iter(f"{D}X509Certificate"):
        element.text = element.text[:11]  # as the real-world samples carry it: "MIIFqTCCBJG"
    data = to_xml(root)
    result = _check(data, trust, "require")
    assert result.verdict.status == "placeholder", result.verdict.reason
    assert not result.decision.accepted
    assert _check(data, trust, "if-present").decision.accepted


@pytest.mark.parametrize("transform", ["as-sent", "exc-c14n"])
def test_producer_placeholder_in_dsig_namespace_is_placeholder(transform, trust):
    """A producer's placeholder (stale SHA-1 digest, truncated certificate) declared in the XMLDSig
    namespace, as the VNPT library writes it, is still only a placeholder: nothing can be
    verified without a certificate, so it must not be refused as 'invalid' under if-present."""
    data = (real_world_dir() / "bkav__edoc_new.edxml").read_bytes()
    data = data.replace(b"<Signature>", f'<Signature xmlns="{DSIG}">'.encode(), 1)
    if transform == "exc-c14n":
        data = data.replace(b"http://www.w3.org/TR/xml-exc-c14n#", EXC.encode())
    result = _check(data, trust, "if-present")
    assert result.verdict.status == "placeholder", result.verdict.reason
    assert result.decision.accepted


def _header_only_signature(signed: bytes, key, keep_properties: bool) -> bytes:
    """A signature whose document reference is replaced by ``URI="#mh"`` on MessageHeader."""
    root = tree(signed)
    header = message_header(root)
    header.set("Id", "mh")
    sig = signature(root)
    signed_info = sig.find(f"{D}SignedInfo")
    references = signed_info.findall(f"{D}Reference")
    for ref in references:
        if ref.get("URI") == "" or not keep_properties:
            signed_info.remove(ref)
    signed_info.insert(2, reference("#mh", element_digest(header), [EXC]))
    resign(sig, key)
    return to_xml(root)


@pytest.mark.parametrize("keep_properties", [False, True], ids=["only-header", "header-and-properties"])
def test_reference_to_message_header_only_is_partial(signed, key, trust, keep_properties):
    data = _header_only_signature(signed, key, keep_properties)
    decisions = {mode: _check(data, trust, mode) for mode in MODES}
    assert {r.verdict.status for r in decisions.values()} == {"partial"}, decisions["require"].verdict.reason
    assert "#mh" in decisions["require"].verdict.reason
    assert not decisions["require"].decision.accepted
    assert not decisions["if-present"].decision.accepted
    assert decisions["record"].decision.accepted and decisions["record"].decision.warning


# --------------------------------------------------------------------------- trust, revocation, expiry


def test_empty_trust_store_is_untrusted(signed):
    result = _check(signed, TrustOptions(TrustStore.from_certificates([])), "require")
    assert result.verdict.status == "untrusted"
    assert result.verdict.signer_subject  # who signed is still reported
    assert not result.decision.accepted


def test_certificate_from_another_root_is_untrusted(message, dev_pki, odd_certs, trust):
    foreign = SoftwareKey(dev_pki.agencies[H16].private_key(), odd_certs.foreign_leaf, [odd_certs.foreign_root])
    data = signed_bytes(message, foreign)
    result = _check(data, trust, "require")
    assert result.verdict.status == "untrusted", result.verdict.reason
    assert not result.decision.accepted
    # The same bytes are valid for whoever trusts that other root: only the anchor differs.
    other = _check(data, TrustOptions(TrustStore.from_certificates([odd_certs.foreign_root])), "require")
    assert other.verdict.status == "valid", other.verdict.reason


def test_a_cached_chain_verdict_belongs_to_its_trust_store(signed, trust_store):
    """Chain verdicts are cached per certificate, store and minute: one store's verdict is
    never handed to another, whichever order the stores come in."""
    empty = TrustOptions(TrustStore.from_certificates([]))
    at = dt.datetime.now(dt.timezone.utc)
    statuses = [_check(signed, options, "require", at=at).verdict.status
                for options in (TrustOptions(trust_store), empty, TrustOptions(trust_store), empty)]
    assert statuses == ["valid", "untrusted", "valid", "untrusted"]
    # An equal store loaded again decides alike.
    again = TrustOptions(TrustStore.from_certificates(trust_store.anchors))
    assert _check(signed, again, "require", at=at).verdict.status == "valid"


@pytest.mark.parametrize("source", ["ocsp", "crl"])
def test_revoked_certificate(message, dev_pki, trust_store, pki_server, source):
    if source == "crl":
        pki_server.ocsp_error = True  # OCSP answers 500: the checker falls back to the CRL
    data = signed_bytes(message, credential_key(dev_pki, dev_pki.revoked))
    result = _check(data, TrustOptions(trust_store, RevocationChecker("hard-fail")), "require")
    assert result.verdict.status == "revoked", result.verdict.reason
    assert result.verdict.signer_serial == format(dev_pki.revoked.certificate.serial_number, "x")
    assert not result.decision.accepted
    assert pki_server.counts[source] >= 1


def test_good_certificate_passes_hard_fail_revocation(signed, trust_store, pki_server):
    result = _check(signed, TrustOptions(trust_store, RevocationChecker("hard-fail")), "require")
    assert result.verdict.status == "valid", result.verdict.reason
    assert pki_server.counts["ocsp"] >= 1


def test_unreachable_revocation_under_hard_fail_is_not_valid(signed, trust_store, pki_server):
    pki_server.ocsp_error = pki_server.crl_error = True
    result = _check(signed, TrustOptions(trust_store, RevocationChecker("hard-fail")), "require")
    assert result.verdict.status == "untrusted", result.verdict.reason
    assert not result.decision.accepted


def test_expired_certificate(message, dev_pki, trust):
    data = signed_bytes(message, credential_key(dev_pki, dev_pki.expired))
    now = dt.datetime.now(dt.timezone.utc)
    result = _check(data, trust, "require", at=now)
    assert result.verdict.status == "expired", result.verdict.reason
    assert not result.decision.accepted
    assert not _check(data, trust, "if-present", at=now).decision.accepted


# --------------------------------------------------------------------------- invalid


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
def test_one_byte_in_subject_is_a_digest_mismatch(signed, trust, read_mode):
    data = one_byte_changed(signed, b"<edXML:Subject>")
    result = _check(data, trust, "require", limits=READ_MODES[read_mode])
    assert result.verdict.status == "invalid"
    assert "digest" in result.verdict.reason
    assert not result.decision.accepted
    assert not _check(data, trust, "if-present", limits=READ_MODES[read_mode]).decision.accepted
    assert _check(data, trust, "record", limits=READ_MODES[read_mode]).decision.accepted


def test_changed_signature_value_is_invalid(signed, trust):
    data = one_byte_changed(signed, b"<SignatureValue>", offset=20)
    result = _check(data, trust, "require")
    assert result.verdict.status == "invalid"
    assert "signature value" in result.verdict.reason
    assert not result.decision.accepted


def test_changed_signing_time_is_invalid(signed, trust):
    root = tree(signed)
    moment = next(signature(root).iter("{*}SigningTime"))
    moment.text = "2020-01-01T00:00:00+07:00"
    result = _check(to_xml(root), trust, "require")
    assert result.verdict.status == "invalid"


@pytest.fixture(scope="module")
def weak_signed(message, dev_pki):
    return signed_bytes(message, weak_key(dev_pki))


def test_sha1_signature_method_is_refused_by_default(weak_signed, trust):
    result = _check(weak_signed, trust, "require")
    assert result.verdict.status == "invalid"
    assert "weak" in result.verdict.reason and "sha1" in result.verdict.reason
    assert not result.decision.accepted


def test_sha1_is_accepted_only_for_a_sender_allowed_weak(weak_signed, dev_pki, trust):
    policy = SignaturePolicy(SenderRule("require"), {"*.H16": SenderRule("require", allow_weak=True)})
    result = verify(weak_signed, trust, policy=policy)
    result.close()
    assert result.verdict.status == "valid", result.verdict.reason
    assert result.verdict.algorithm == RSA_SHA1
    assert any("weak" in w for w in result.verdict.warnings)
    assert result.decision.accepted
    # Another sender under the same policy gets no such allowance.
    other = signed_bytes(sample_edoc(sender="000.00.00.G22", recipient=H16), weak_key(dev_pki, "000.00.00.G22"))
    refused = verify(other, trust, policy=policy)
    refused.close()
    assert refused.verdict.status == "invalid"
    assert not refused.decision.accepted


# --------------------------------------------------------------------------- policy


STATUSES = ["valid", "invalid", "absent", "placeholder", "partial", "untrusted", "revoked", "expired"]
ACCEPTED = {
    "require": {"valid"},
    "if-present": {"valid", "absent", "placeholder"},
    "record": set(STATUSES),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", STATUSES)
def test_decision_for_every_verdict(mode, status):
    decision = decide(Verdict(status, "because"), mode)
    assert decision.accepted == (status in ACCEPTED[mode])
    assert decision.mode == mode
    assert status in decision.message
    assert decision.warning == (status != "valid" and decision.accepted)


def test_most_specific_sender_pattern_wins():
    policy = SignaturePolicy(
        SenderRule("require"),
        {
            "*": SenderRule("record"),
            "*.H16": SenderRule("if-present"),
            "000.00.00.H16": SenderRule("require", allow_weak=True),
        },
    )
    assert policy.rule_for("000.00.00.H16") == SenderRule("require", allow_weak=True)
    assert policy.rule_for("000.01.00.H16") == SenderRule("if-present")
    assert policy.rule_for("000.00.00.G22") == SenderRule("record")
    assert SignaturePolicy(SenderRule("require"), {"*.H16": SenderRule("record")}).rule_for("000.00.00.G22") == \
        SenderRule("require")
    assert policy.rule_for(None) == SenderRule("require")
    placeholder = Verdict("placeholder", "x")
    assert policy.decide(placeholder, "000.01.00.H16").accepted
    assert not policy.decide(placeholder, "000.00.00.H16").accepted
    with pytest.raises(ValueError):
        SenderRule("sometimes")


def test_policy_is_looked_up_by_the_documents_sender(trust):
    data = to_bytes(sample_edoc())  # absent, sent by H16
    relaxed = SignaturePolicy(SenderRule("require"), {"*.H16": SenderRule("if-present")})
    strict = SignaturePolicy(SenderRule("if-present"), {"*.H16": SenderRule("require")})
    with verify(data, trust, policy=relaxed) as accepted, verify(data, trust, policy=strict) as refused:
        assert accepted.decision.accepted and accepted.decision.mode == "if-present"
        assert not refused.decision.accepted and refused.decision.mode == "require"


# --------------------------------------------------------------------------- key types


def test_rsa_pss_signature_verifies(message, dev_pki, trust):
    data = signed_bytes(message, agency_key(dev_pki, algorithm="rsa-pss-sha256"))
    result = _check(data, trust, "require")
    assert result.verdict.status == "valid", result.verdict.reason
    assert result.verdict.algorithm == RSA_PSS_SHA256
    assert _check(one_byte_changed(data, b"<SignatureValue>", 30), trust).verdict.status == "invalid"


def test_ecdsa_p256_signature_verifies(message, dev_pki, trust):
    key = ec_agency_key(dev_pki, message.from_.organ_id)
    data = signed_bytes(message, key)
    result = _check(data, trust, "require")
    assert result.verdict.status == "valid", result.verdict.reason
    assert result.verdict.algorithm == ECDSA_SHA256
    assert result.verdict.signer_serial == format(key.certificate.serial_number, "x")
    assert result.parsed.message == message
    assert _check(one_byte_changed(data, b"<SignatureValue>", 10), trust).verdict.status == "invalid"


@pytest.mark.parametrize("label, algorithm", [("rsa-2048", RSA_SHA256), ("ec-p256", ECDSA_SHA256)])
def test_pkcs11_token_key_signs_a_valid_document(tmp_path_factory, monkeypatch, message, tmp_path, label, algorithm):
    token = shared_token(tmp_path_factory)
    monkeypatch.setenv("EDOC_TEST_TOKEN_PIN", token.pin)
    ca = x509.load_pem_x509_certificate(token.ca_cert_path.read_bytes())
    out = tmp_path / "token-signed.edxml"
    with Pkcs11Key(token.module, token.label, "env:EDOC_TEST_TOKEN_PIN", key_label=label) as key:
        info = sign(message, key, out)
        cert = key.certificate
    result = _check(out, TrustOptions(TrustStore.from_certificates([ca])), "require")
    assert result.verdict.status == "valid", result.verdict.reason
    assert result.verdict.algorithm == algorithm == info.algorithm
    assert result.verdict.signer_serial == format(cert.serial_number, "x")
    assert result.parsed.message == message
    # The token's CA is not the dev root: a verifier trusting only the dev PKI refuses it.
    assert _check(out, TrustOptions(TrustStore.from_certificates([])), "require").verdict.status == "untrusted"
    assert os.path.getsize(out) > 0


def test_claimed_signing_time_outside_the_certificate_is_expired(message, key, trust, tmp_path):
    """A signer cannot backdate around its certificate: the claimed time must be inside it."""
    backdated = key.certificate.not_valid_before_utc - dt.timedelta(days=30)
    out = tmp_path / "backdated.edxml"
    sign(message, key, out, signing_time=backdated.astimezone(VN_TZ))
    result = _check(out.read_bytes(), trust, "require")
    assert result.verdict.status == "expired"
    assert "outside the certificate's validity" in result.verdict.reason
    assert not result.decision.accepted


def test_certificate_of_another_agency_does_not_speak_for_the_sender(message, dev_pki, trust, tmp_path):
    """Signed with Văn phòng Chính phủ's valid key, but claiming to come from UBND Đắk Nông."""
    from connector.signing.keys import load_signing_key

    other = dev_pki.agencies["000.00.00.G22"]
    key = load_signing_key(
        {"type": "pem", "key": str(other.key_path), "cert": str(other.cert_path), "chain": str(dev_pki.chain_path)}
    )
    assert message.from_.organ_id == "000.00.00.H16"
    result = _check(signed_bytes(message, key), trust, "require")
    assert result.verdict.status == "untrusted"
    assert "belongs to agency 000.00.00.G22" in result.verdict.reason
    assert not result.decision.accepted
