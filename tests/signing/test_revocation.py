"""Revocation over real HTTP on loopback: OCSP, CRL fallback, soft/hard-fail, cache, freshness."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connector.signing.devpki import DevPki, agency_name, issue_certificate
from connector.signing.revocation import RevocationChecker
from tests.support.pki_servers import PkiServer

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(autouse=True)
def _fresh_now():
    """NOW is read at each test's start: the responders answer with the real time, and a long
    suite must not leave a time taken at import outside their responses' clock-skew window."""
    global NOW
    NOW = dt.datetime.now(dt.timezone.utc)
H16 = "000.00.00.H16"


def agency(dev_pki: DevPki) -> x509.Certificate:
    return dev_pki.agencies[H16].certificate


def test_good_via_ocsp(dev_pki: DevPki, pki_server: PkiServer) -> None:
    result = RevocationChecker("hard-fail").check(agency(dev_pki), dev_pki.issuing_ca.certificate,
                                                  NOW)
    assert (result.status, result.ok, result.source) == ("good", True, "ocsp")
    assert result.serial == format(agency(dev_pki).serial_number, "x")
    assert result.next_update is not None and result.next_update > NOW
    assert pki_server.counts == {"ocsp": 1}  # no CRL download when OCSP answered


def test_revoked_via_ocsp(dev_pki: DevPki, pki_server: PkiServer) -> None:
    revoked = dev_pki.revoked.certificate
    result = RevocationChecker("soft-fail").check(revoked, dev_pki.issuing_ca.certificate, NOW)
    assert (result.status, result.ok, result.source) == ("revoked", False, "ocsp")
    assert result.revocation_reason == "cessationOfOperation"
    assert result.revocation_time is not None and result.revocation_time < NOW
    assert pki_server.counts == {"ocsp": 1}


def test_revoked_after_signing_time_is_good_at_signing_time(dev_pki: DevPki,
                                                            pki_server: PkiServer) -> None:
    revoked = dev_pki.revoked.certificate
    signed_at = NOW - dt.timedelta(days=2)  # revocation happened an hour before NOW
    result = RevocationChecker("hard-fail").check(revoked, dev_pki.issuing_ca.certificate,
                                                  signed_at)
    assert (result.status, result.ok) == ("good", True)
    assert "after the signing time" in result.detail
    assert result.revocation_time is not None and result.revocation_time > signed_at
    assert any("revoked at" in w for w in result.warnings)


def test_key_compromise_revokes_even_earlier_signatures(dev_pki: DevPki,
                                                        pki_server: PkiServer) -> None:
    cert = agency(dev_pki)
    pki_server.ocsp_overrides[cert.serial_number] = {
        "status": "revoked", "revocation_time": NOW.isoformat(), "reason": "keyCompromise"}
    result = RevocationChecker("hard-fail").check(cert, dev_pki.issuing_ca.certificate,
                                                  NOW - dt.timedelta(days=30))
    assert (result.status, result.ok, result.revocation_reason) == \
        ("revoked", False, "keyCompromise")


def test_revoked_via_crl_when_ocsp_fails(dev_pki: DevPki, pki_server: PkiServer) -> None:
    pki_server.ocsp_error = True
    result = RevocationChecker("hard-fail").check(dev_pki.revoked.certificate,
                                                  dev_pki.issuing_ca.certificate, NOW)
    assert (result.status, result.ok, result.source) == ("revoked", False, "crl")
    assert result.revocation_reason == "cessationOfOperation"
    assert any("HTTP 500" in w for w in result.warnings)
    assert pki_server.counts == {"ocsp": 1, "crl": 1}


def test_good_via_crl_when_ocsp_fails(dev_pki: DevPki, pki_server: PkiServer) -> None:
    pki_server.ocsp_error = True
    result = RevocationChecker("hard-fail").check(agency(dev_pki), dev_pki.issuing_ca.certificate,
                                                  NOW)
    assert (result.status, result.ok, result.source) == ("good", True, "crl")


def test_forged_ocsp_response_is_ignored_and_crl_decides(dev_pki: DevPki,
                                                         pki_server: PkiServer) -> None:
    pki_server.ocsp_signer = "rogue"
    result = RevocationChecker("hard-fail").check(dev_pki.revoked.certificate,
                                                  dev_pki.issuing_ca.certificate, NOW)
    assert (result.status, result.source) == ("revoked", "crl")
    assert any("not issued by the issuer" in w for w in result.warnings)


def test_ocsp_response_signed_by_the_issuer_itself_is_accepted(dev_pki: DevPki,
                                                              pki_server: PkiServer) -> None:
    pki_server.ocsp_signer = "issuer"
    result = RevocationChecker("hard-fail").check(agency(dev_pki), dev_pki.issuing_ca.certificate,
                                                  NOW)
    assert (result.status, result.source, result.warnings) == ("good", "ocsp", ())


@pytest.mark.parametrize("mode, ok", [("soft-fail", True), ("hard-fail", False)])
@pytest.mark.parametrize("failure", ["http-500", "connection-refused"])
def test_both_sources_failing(mode: str, ok: bool, failure: str, dev_pki: DevPki,
                              pki_server: PkiServer) -> None:
    checker = RevocationChecker(mode, timeout=2)  # type: ignore[arg-type]
    if failure == "http-500":
        pki_server.ocsp_error = pki_server.crl_error = True
        result = checker.check(agency(dev_pki), dev_pki.issuing_ca.certificate, NOW)
        assert pki_server.counts == {"ocsp": 1, "crl": 1}
    else:
        with pki_server.down():
            result = checker.check(agency(dev_pki), dev_pki.issuing_ca.certificate, NOW)
        assert pki_server.counts == {}
    assert (result.status, result.ok) == ("unavailable", ok)
    assert "OCSP http://127.0.0.1" in result.detail and "CRL http://127.0.0.1" in result.detail
    assert bool(result.warnings) is ok  # soft-fail passes, but says so
    assert ("soft-fail" in result.warnings[0]) if ok else ("hard-fail" in result.detail)


@pytest.mark.parametrize("mode, ok", [("soft-fail", True), ("hard-fail", False)])
def test_unknown_to_the_responder_and_no_crl(mode: str, ok: bool, dev_pki: DevPki,
                                             pki_server: PkiServer) -> None:
    cert = agency(dev_pki)
    pki_server.ocsp_overrides[cert.serial_number] = {"status": "unknown"}
    pki_server.crl_error = True
    result = RevocationChecker(mode).check(cert, dev_pki.issuing_ca.certificate, NOW)
    assert (result.status, result.ok, result.source) == ("unknown", ok, "ocsp")


def test_result_is_cached_per_issuer_and_serial(dev_pki: DevPki, pki_server: PkiServer) -> None:
    checker = RevocationChecker("hard-fail")
    issuer = dev_pki.issuing_ca.certificate
    first = checker.check(agency(dev_pki), issuer, NOW)
    second = checker.check(agency(dev_pki), issuer, NOW)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.status == "good" and pki_server.counts == {"ocsp": 1}
    # the cached observation is re-read for each signing time
    revoked = dev_pki.revoked.certificate
    assert checker.check(revoked, issuer, NOW).status == "revoked"
    assert checker.check(revoked, issuer, NOW - dt.timedelta(days=2)).status == "good"
    assert pki_server.counts == {"ocsp": 2}
    checker.clear_cache()
    checker.check(agency(dev_pki), issuer, NOW)
    assert pki_server.counts == {"ocsp": 3}


def test_cache_expires_with_ttl(dev_pki: DevPki, pki_server: PkiServer) -> None:
    clock = [NOW]
    checker = RevocationChecker("hard-fail", cache_ttl=dt.timedelta(minutes=10),
                                clock=lambda: clock[0])
    issuer = dev_pki.issuing_ca.certificate
    checker.check(agency(dev_pki), issuer, NOW)
    clock[0] = NOW + dt.timedelta(minutes=11)
    assert checker.check(agency(dev_pki), issuer, NOW).from_cache is False
    assert pki_server.counts == {"ocsp": 2}


def test_failures_are_not_cached(dev_pki: DevPki, pki_server: PkiServer) -> None:
    checker = RevocationChecker("soft-fail")
    pki_server.ocsp_error = pki_server.crl_error = True
    assert checker.check(agency(dev_pki), dev_pki.issuing_ca.certificate).status == "unavailable"
    pki_server.reset()
    result = checker.check(agency(dev_pki), dev_pki.issuing_ca.certificate)
    assert (result.status, result.from_cache) == ("good", False)


def test_stale_ocsp_answer_falls_back_to_fresh_crl(dev_pki: DevPki,
                                                   pki_server: PkiServer) -> None:
    # two days from now the responder's answers (nextUpdate +1 h) are stale, the CRL is not
    later = NOW + dt.timedelta(days=2)
    checker = RevocationChecker("hard-fail", clock=lambda: later)
    result = checker.check(dev_pki.revoked.certificate, dev_pki.issuing_ca.certificate, later)
    assert (result.status, result.source) == ("revoked", "crl")
    assert any("stale" in w for w in result.warnings)
    # forty days on, the CRL (nextUpdate +30 d) is stale too
    much_later = NOW + dt.timedelta(days=40)
    stale = RevocationChecker("hard-fail", clock=lambda: much_later).check(
        agency(dev_pki), dev_pki.issuing_ca.certificate, much_later)
    assert (stale.status, stale.ok) == ("unavailable", False) and "CRL is stale" in stale.detail


def test_crl_from_another_issuer_is_refused(dev_pki: DevPki, pki_server: PkiServer,
                                           odd_certs) -> None:
    # the revoked cert checked against a wrong issuer: neither OCSP nor CRL can vouch for it
    pki_server.ocsp_error = True
    result = RevocationChecker("hard-fail").check(dev_pki.revoked.certificate,
                                                  odd_certs.foreign_root, NOW)
    assert (result.status, result.ok) == ("unavailable", False)
    assert "not by the certificate's issuer" in result.detail


def test_off_mode_fetches_nothing(dev_pki: DevPki, pki_server: PkiServer) -> None:
    result = RevocationChecker("off").check(dev_pki.revoked.certificate,
                                            dev_pki.issuing_ca.certificate, NOW)
    assert (result.status, result.ok) == ("skipped", True)
    assert pki_server.counts == {}


def test_certificate_without_revocation_pointers(dev_pki: DevPki, pki_server: PkiServer) -> None:
    root = dev_pki.root_ca.certificate  # the issuing CA names no OCSP/CRL
    result = RevocationChecker("hard-fail").check(dev_pki.issuing_ca.certificate, root, NOW)
    assert (result.status, result.ok) == ("unavailable", False)
    assert "names no OCSP responder or CRL" in result.detail
    with pytest.raises(ValueError, match="mode"):
        RevocationChecker("sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("nonce, source", [("echo", "ocsp"), ("omit", "ocsp"), ("wrong", "crl")])
def test_nonce_must_match_when_echoed(nonce: str, source: str, dev_pki: DevPki,
                                      pki_server: PkiServer) -> None:
    pki_server.ocsp_nonce = nonce  # type: ignore[assignment]
    result = RevocationChecker("hard-fail").check(dev_pki.revoked.certificate,
                                                  dev_pki.issuing_ca.certificate, NOW)
    assert (result.status, result.source) == ("revoked", source)
    assert any("nonce" in w for w in result.warnings) is (nonce == "wrong")


Entry = tuple[int, dt.datetime, dt.datetime | None]


def _crl(issuer_name: x509.Name, key: object,
         entries: list[Entry]) -> x509.CertificateRevocationList:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer_name)
               .last_update(NOW - dt.timedelta(minutes=5))
               .next_update(NOW + dt.timedelta(days=1)))
    for serial, revoked_at, invalid_since in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        if invalid_since is not None:
            entry = entry.add_extension(x509.InvalidityDate(invalid_since), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def test_pem_crl_and_invalidity_date(dev_pki: DevPki, pki_server: PkiServer) -> None:
    issuing = dev_pki.issuing_ca
    cert = agency(dev_pki)
    revoked_at = (NOW - dt.timedelta(days=1)).replace(microsecond=0, tzinfo=None)
    invalid_since = revoked_at - dt.timedelta(days=10)
    crl = _crl(issuing.certificate.subject, issuing.private_key(),
               [(cert.serial_number, revoked_at, invalid_since)])
    pki_server.crl_body = crl.public_bytes(serialization.Encoding.PEM)
    pki_server.ocsp_error = True
    # signed 5 days ago: after the key became invalid, before the revocation was published
    result = RevocationChecker("hard-fail").check(cert, issuing.certificate,
                                                  NOW - dt.timedelta(days=5))
    assert (result.status, result.source) == ("revoked", "crl")
    assert result.revocation_time == invalid_since.replace(tzinfo=dt.timezone.utc)
    # signed before the invalidity date: good at signing time
    earlier = RevocationChecker("hard-fail").check(cert, issuing.certificate,
                                                   NOW - dt.timedelta(days=20))
    assert (earlier.status, earlier.ok) == ("good", True)


def test_crl_with_a_forged_signature_is_refused(dev_pki: DevPki, pki_server: PkiServer) -> None:
    rogue = ec.generate_private_key(ec.SECP256R1())
    # same issuer name, no entries: if believed, the revoked certificate would look good
    pki_server.crl_body = _crl(dev_pki.issuing_ca.certificate.subject, rogue, []).public_bytes(
        serialization.Encoding.DER)
    pki_server.ocsp_error = True
    result = RevocationChecker("hard-fail").check(dev_pki.revoked.certificate,
                                                  dev_pki.issuing_ca.certificate, NOW)
    assert (result.status, result.ok) == ("unavailable", False)
    assert "CRL signature does not verify" in result.detail


def test_only_http_urls_are_fetched(dev_pki: DevPki, pki_server: PkiServer,
                                    tmp_path: Path) -> None:
    secret = tmp_path / "secret.crl"
    secret.write_bytes(dev_pki.crl_der_path.read_bytes())  # would parse if it were read
    issuing = dev_pki.issuing_ca
    cert = issue_certificate(agency_name("000.00.00.H14", "UBND tỉnh Cao Bằng"),
                             agency(dev_pki).public_key(), issuing.certificate,
                             issuing.private_key(), not_before=NOW - dt.timedelta(days=1),
                             not_after=NOW + dt.timedelta(days=1), crl_url=secret.as_uri())
    result = RevocationChecker("hard-fail").check(cert, issuing.certificate, NOW)
    assert (result.status, result.ok) == ("unavailable", False)
    assert "unsupported URL scheme" in result.detail
