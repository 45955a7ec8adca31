"""Revocation checking of a signer certificate: OCSP first, CRL as fallback, with a cache.

`RevocationChecker.check(cert, issuer, at)` returns a `RevocationResult` whose `status` is
"good", "revoked", "unknown" (the responder does not know the certificate and no CRL settled it),
"unavailable" (no answer could be fetched or trusted) or "skipped" (mode "off"), and whose `ok`
says whether the check passes under the checker's mode:

- "off":        nothing is fetched, status "skipped", ok.
- "soft-fail":  "unavailable"/"unknown" pass, with a warning in the result (today's default for
                peers whose CA responders are unreachable from a ministry's network).
- "hard-fail":  "unavailable"/"unknown" fail.

OCSP (RFC 6960): the request is POSTed as application/ocsp-request to the AIA OCSP URL, with a
nonce (checked when echoed). The CertID uses SHA-1, as RFC 5019 profiles and most responders
require; it is an identifier, not a signature. The response must be signed by the issuer itself
or by a responder certificate issued by the issuer with EKU OCSPSigning and valid now; its
thisUpdate/nextUpdate must be fresh (`clock_skew` tolerance; without nextUpdate, no older than
`max_age`). The responder certificate's own revocation is not checked (id-pkix-ocsp-nocheck).

CRL (RFC 5280): fetched from the CRL distribution point (DER or PEM), issued by the issuer's
name, signed by its key, fresh by the same rule. Delta, indirect and reason-partitioned CRLs are
not supported (the CRL is then unusable, hence "unavailable"). certificateHold counts as revoked.

Signing time rule: a certificate revoked at or before `at` is "revoked". A certificate revoked
AFTER `at` is "good" for a signature made at `at`, with a note in `detail` and `warnings`,
unless the reason is keyCompromise, cACompromise or aACompromise: then the key may have been
abused before anyone noticed, so the result is "revoked". With a CRL entry's invalidityDate the
earlier of the two dates counts. `at` must be a trusted time (axis receipt, timestamp).

Cache: definite answers (good, revoked) are cached in memory per (issuer key, serial) until the
earlier of nextUpdate and `cache_ttl`; fetched CRLs are cached per URL the same way. Failures are
not cached. Fetching goes through a `Fetcher` (default: urllib, http/https only, size-capped),
so the daemon can inject its own HTTP stack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from connector.signing.trust import pss_parameters, signature_is_valid

Mode = Literal["off", "soft-fail", "hard-fail"]
Status = Literal["good", "revoked", "unknown", "unavailable", "skipped"]
Source = Literal["ocsp", "crl", "none"]
Fetcher = Callable[[str, "bytes | None", "str | None", float], bytes]
"""fetch(url, body, content_type, timeout) -> response body; POST when body is not None.
Raises `FetchError` (or OSError) when nothing usable came back."""

MAX_RESPONSE_BYTES = 20 * 1024 * 1024
COMPROMISE_REASONS = frozenset({x509.ReasonFlags.key_compromise, x509.ReasonFlags.ca_compromise,
                                x509.ReasonFlags.aa_compromise})
_MODES = ("off", "soft-fail", "hard-fail")


class FetchError(Exception):
    """The responder or distribution point could not be reached or answered an error."""


class _Unusable(Exception):
    """An answer arrived but cannot be trusted (signature, freshness, wrong certificate)."""


@dataclass(frozen=True)
class RevocationResult:
    """The revocation status of one certificate, for a signature made at a given time."""

    status: Status
    ok: bool  # passes under the checker's mode
    detail: str
    serial: str  # lowercase hex
    source: Source = "none"
    checked_at: dt.datetime | None = None
    revocation_time: dt.datetime | None = None
    revocation_reason: str | None = None
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    warnings: tuple[str, ...] = ()
    from_cache: bool = False


@dataclass(frozen=True)
class _Observation:
    """What a responder or CRL said, independent of the signing time (this is what is cached)."""

    status: Literal["good", "revoked", "unknown"]
    source: Literal["ocsp", "crl"]
    where: str
    this_update: dt.datetime
    next_update: dt.datetime | None
    revocation_time: dt.datetime | None = None
    revocation_reason: x509.ReasonFlags | None = None
    warnings: tuple[str, ...] = ()


@dataclass
class _Entry:
    value: object
    expires: dt.datetime


def urllib_fetch(url: str, body: bytes | None, content_type: str | None, timeout: float) -> bytes:
    """Default fetcher: one HTTP(S) GET or POST with urllib, body capped at 20 MiB."""
    if not url.lower().startswith(("http://", "https://")):
        raise FetchError("unsupported URL scheme (only http and https)")
    headers = {"Content-Type": content_type} if content_type else {}
    if content_type == "application/ocsp-request":
        headers["Accept"] = "application/ocsp-response"
    request = urllib.request.Request(url, data=body, headers=headers,
                                     method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"unreachable: {reason}") from None
    if len(data) > MAX_RESPONSE_BYTES:
        raise FetchError(f"answer exceeds {MAX_RESPONSE_BYTES} bytes")
    return data


class RevocationChecker:
    """Checks certificates against OCSP and CRLs under one failure mode, with a shared cache."""

    def __init__(
        self,
        mode: Mode = "soft-fail",
        *,
        timeout: float = 10.0,
        cache_ttl: dt.timedelta = dt.timedelta(hours=1),
        max_age: dt.timedelta = dt.timedelta(days=7),
        clock_skew: dt.timedelta = dt.timedelta(minutes=5),
        fetch: Fetcher | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        max_cache_entries: int = 10_000,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"revocation mode must be one of {', '.join(_MODES)}, not {mode!r}")
        self.mode: Mode = mode
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.max_age = max_age
        self.clock_skew = clock_skew
        self._fetch: Fetcher = fetch or urllib_fetch
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._max_entries = max_cache_entries
        self._results: dict[tuple[bytes, int], _Entry] = {}
        self._crls: dict[tuple[str, bytes], _Entry] = {}
        self._lock = threading.Lock()

    def clear_cache(self) -> None:
        with self._lock:
            self._results.clear()
            self._crls.clear()

    def check(self, cert: x509.Certificate, issuer: x509.Certificate,
              at: dt.datetime | None = None) -> RevocationResult:
        """Revocation status of `cert` (issued by `issuer`) for a signature made at `at`.

        Never raises for network or data problems: they become "unavailable" with a reason.
        """
        now = _utc(self._clock())
        at = _utc(at) if at is not None else now
        serial = format(cert.serial_number, "x")
        if self.mode == "off":
            return RevocationResult("skipped", True, "revocation checking is off", serial,
                                    checked_at=now)
        key = (_key_id(issuer), cert.serial_number)
        cached = self._cache_get(self._results, key, now)
        if isinstance(cached, _Observation):
            return self._interpret(cached, at, now, serial, (), from_cache=True)

        problems: list[str] = []
        observed: _Observation | None = None
        for url in _ocsp_urls(cert):
            try:
                observed = self._ocsp(url, cert, issuer, now)
                break
            except (FetchError, OSError, ValueError, _Unusable) as exc:
                problems.append(f"OCSP {url}: {exc}")
        if observed is None or observed.status == "unknown":
            for url in _crl_urls(cert):
                try:
                    observed = self._crl(url, cert, issuer, now)
                    break
                except (FetchError, OSError, ValueError, _Unusable) as exc:
                    problems.append(f"CRL {url}: {exc}")
        if observed is None:
            detail = "; ".join(problems) or "the certificate names no OCSP responder or CRL"
            return self._not_settled("unavailable", f"revocation status unavailable: {detail}",
                                     serial, now)
        if observed.status != "unknown":
            expires = now + self.cache_ttl
            if observed.next_update is not None:
                expires = min(expires, observed.next_update)
            self._cache_put(self._results, key, observed, expires, now)
        return self._interpret(observed, at, now, serial, tuple(problems), from_cache=False)

    # --- interpretation -------------------------------------------------------------------------

    def _interpret(self, obs: _Observation, at: dt.datetime, now: dt.datetime, serial: str,
                   problems: tuple[str, ...], *, from_cache: bool) -> RevocationResult:
        common = dict(serial=serial, source=obs.source, checked_at=now,
                      this_update=obs.this_update, next_update=obs.next_update,
                      from_cache=from_cache)
        warnings = problems + obs.warnings
        if obs.status == "unknown":
            result = self._not_settled("unknown", f"{obs.where} does not know this certificate",
                                       serial, now)
            return replace(result, source=obs.source, this_update=obs.this_update,
                           next_update=obs.next_update, warnings=warnings + result.warnings)
        if obs.status == "good":
            return RevocationResult("good", True, f"not revoked according to {obs.where}",
                                    warnings=warnings, **common)  # type: ignore[arg-type]
        assert obs.revocation_time is not None
        reason = obs.revocation_reason.value if obs.revocation_reason else None
        when = f"revoked at {obs.revocation_time.isoformat()}" + (f" ({reason})" if reason else "")
        if obs.revocation_time > at and obs.revocation_reason not in COMPROMISE_REASONS:
            note = (f"{when} according to {obs.where}, after the signing time {at.isoformat()}: "
                    "good at signing time")
            return RevocationResult("good", True, note, revocation_time=obs.revocation_time,
                                    revocation_reason=reason, warnings=warnings + (note,),
                                    **common)  # type: ignore[arg-type]
        return RevocationResult("revoked", False, f"{when} according to {obs.where}",
                                revocation_time=obs.revocation_time, revocation_reason=reason,
                                warnings=warnings, **common)  # type: ignore[arg-type]

    def _not_settled(self, status: Status, detail: str, serial: str,
                     now: dt.datetime) -> RevocationResult:
        if self.mode == "soft-fail":
            warning = f"{detail} (accepted: soft-fail)"
            return RevocationResult(status, True, detail, serial, checked_at=now,
                                    warnings=(warning,))
        return RevocationResult(status, False, f"{detail} (refused: hard-fail)", serial,
                                checked_at=now)

    # --- OCSP -----------------------------------------------------------------------------------

    def _ocsp(self, url: str, cert: x509.Certificate, issuer: x509.Certificate,
              now: dt.datetime) -> _Observation:
        nonce = os.urandom(16)
        request = (ocsp.OCSPRequestBuilder()
                   .add_certificate(cert, issuer, hashes.SHA1())  # CertID hash, see module doc
                   .add_extension(x509.OCSPNonce(nonce), critical=False)
                   .build())
        data = self._fetch(url, request.public_bytes(serialization.Encoding.DER),
                           "application/ocsp-request", self.timeout)
        try:
            response = ocsp.load_der_ocsp_response(data)
        except ValueError:
            raise _Unusable("the answer is not an OCSP response") from None
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise _Unusable(f"responder answered {response.response_status.name}")
        warnings = self._check_ocsp_signer(response, issuer, now)
        single = next((s for s in response.responses
                       if s.serial_number == request.serial_number
                       and s.issuer_key_hash == request.issuer_key_hash
                       and s.issuer_name_hash == request.issuer_name_hash), None)
        if single is None:
            raise _Unusable("the response does not cover the requested certificate")
        try:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
            if echoed != nonce:
                raise _Unusable("the response nonce does not match the request (replay?)")
        except x509.ExtensionNotFound:
            pass
        self._check_fresh(single.this_update_utc, single.next_update_utc, now, "OCSP response")
        status = {ocsp.OCSPCertStatus.GOOD: "good", ocsp.OCSPCertStatus.REVOKED: "revoked",
                  ocsp.OCSPCertStatus.UNKNOWN: "unknown"}[single.certificate_status]
        return _Observation(status, "ocsp", f"OCSP {url}", single.this_update_utc,  # type: ignore[arg-type]
                            single.next_update_utc, single.revocation_time_utc,
                            single.revocation_reason, warnings)

    def _check_ocsp_signer(self, response: ocsp.OCSPResponse, issuer: x509.Certificate,
                           now: dt.datetime) -> tuple[str, ...]:
        algo = response.signature_hash_algorithm
        params = pss_parameters(response.signature_algorithm_oid, algo)
        warnings = (f"OCSP response signed with {algo.name.upper()}",) \
            if isinstance(algo, (hashes.SHA1, hashes.MD5)) else ()

        def signed_by(key: object) -> bool:
            return signature_is_valid(key, response.signature, response.tbs_response_bytes,
                                      algo, params)

        if signed_by(issuer.public_key()):
            return warnings
        for responder in response.certificates:
            if not signed_by(responder.public_key()):
                continue
            if responder.issuer != issuer.subject or not signature_is_valid(
                    issuer.public_key(), responder.signature, responder.tbs_certificate_bytes,
                    responder.signature_hash_algorithm, responder.signature_algorithm_parameters):
                raise _Unusable("the responder certificate was not issued by the issuer")
            try:
                eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                eku = None
            if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                raise _Unusable("the responder certificate lacks EKU OCSPSigning")
            if not (responder.not_valid_before_utc <= now <= responder.not_valid_after_utc):
                raise _Unusable("the responder certificate is not valid now")
            return warnings
        raise _Unusable("the response signature verifies neither with the issuer's key nor "
                        "with an authorised responder certificate")

    # --- CRL ------------------------------------------------------------------------------------

    def _crl(self, url: str, cert: x509.Certificate, issuer: x509.Certificate,
             now: dt.datetime) -> _Observation:
        crl_key = (url, _key_id(issuer))
        crl = self._cache_get(self._crls, crl_key, now)
        if not isinstance(crl, x509.CertificateRevocationList):
            data = self._fetch(url, None, None, self.timeout)
            try:
                crl = (x509.load_pem_x509_crl(data) if b"-----BEGIN" in data[:200]
                       else x509.load_der_x509_crl(data))
            except ValueError:
                raise _Unusable("the answer is not a CRL") from None
            if crl.issuer != issuer.subject:
                raise _Unusable(f"the CRL is issued by {crl.issuer.rfc4514_string()}, "
                                "not by the certificate's issuer")
            if not signature_is_valid(issuer.public_key(), crl.signature, crl.tbs_certlist_bytes,
                                      crl.signature_hash_algorithm,
                                      crl.signature_algorithm_parameters):
                raise _Unusable("the CRL signature does not verify with the issuer's key")
            _check_crl_scope(crl, cert)
        self._check_fresh(crl.last_update_utc, crl.next_update_utc, now, "CRL")
        expires = min(now + self.cache_ttl, crl.next_update_utc or now + self.cache_ttl)
        self._cache_put(self._crls, crl_key, crl, expires, now)
        where = f"CRL {url}"
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            return _Observation("good", "crl", where, crl.last_update_utc, crl.next_update_utc)
        revoked_at, reason = entry.revocation_date_utc, None
        for ext in entry.extensions:
            if isinstance(ext.value, x509.CRLReason):
                reason = ext.value.reason
            elif isinstance(ext.value, x509.InvalidityDate):
                revoked_at = min(revoked_at, _utc(ext.value.invalidity_date))
        return _Observation("revoked", "crl", where, crl.last_update_utc, crl.next_update_utc,
                            revoked_at, reason)

    # --- shared ---------------------------------------------------------------------------------

    def _check_fresh(self, this_update: dt.datetime, next_update: dt.datetime | None,
                     now: dt.datetime, what: str) -> None:
        if this_update > now + self.clock_skew:
            raise _Unusable(f"{what} thisUpdate {this_update.isoformat()} is in the future")
        if next_update is not None:
            if now > next_update + self.clock_skew:
                raise _Unusable(f"{what} is stale: nextUpdate {next_update.isoformat()} passed")
        elif now - this_update > self.max_age:
            raise _Unusable(f"{what} has no nextUpdate and is older than {self.max_age}")

    def _cache_get(self, cache: dict, key: object, now: dt.datetime) -> object | None:
        with self._lock:
            entry = cache.get(key)
            if entry is None:
                return None
            if entry.expires <= now:
                del cache[key]
                return None
            return entry.value

    def _cache_put(self, cache: dict, key: object, value: object, expires: dt.datetime,
                   now: dt.datetime) -> None:
        if expires <= now:
            return
        with self._lock:
            if len(cache) >= self._max_entries:
                for stale in [k for k, e in cache.items() if e.expires <= now]:
                    del cache[stale]
                while len(cache) >= self._max_entries:
                    del cache[next(iter(cache))]  # oldest insertion first
            cache[key] = _Entry(value, expires)


def _check_crl_scope(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> None:
    """Refuse delta, indirect and partial CRLs, and CRLs scoped away from this certificate."""
    for ext in crl.extensions:
        if isinstance(ext.value, x509.DeltaCRLIndicator):
            raise _Unusable("delta CRLs are not supported")
        if isinstance(ext.value, x509.IssuingDistributionPoint):
            idp = ext.value
            if idp.indirect_crl or idp.only_some_reasons or idp.only_contains_attribute_certs:
                raise _Unusable("indirect or reason-partitioned CRLs are not supported")
            try:
                is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if (idp.only_contains_ca_certs and not is_ca) or (idp.only_contains_user_certs
                                                              and is_ca):
                raise _Unusable("the CRL's scope does not cover this certificate")


def _ocsp_urls(cert: x509.Certificate) -> list[str]:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):  # absent, or malformed extensions
        return []
    return [d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]


def _crl_urls(cert: x509.Certificate) -> list[str]:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [name.value for point in points for name in (point.full_name or [])
            if isinstance(name, x509.UniformResourceIdentifier)]


def _key_id(cert: x509.Certificate) -> bytes:
    """Identifies an issuer by its key and name (what a CertID identifies)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki + cert.subject.public_bytes()).digest()


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)
