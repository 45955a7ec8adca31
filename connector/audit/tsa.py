"""RFC 3161 time-stamps for sealed batches, with rfc3161-client.

:class:`TsaClient` builds a request (SHA-256 imprint, a nonce, the TSA's certificate asked
for), POSTs it as ``application/timestamp-query``, and checks the answer before returning the
token: granted, same nonce, same imprint, signed by a certificate with the critical
``timeStamping`` extended key usage that chains to ``ca_certs``. What is kept is the token
(DER ``ContentInfo``), which ``openssl ts -verify -token_in`` reads as it is.

Without ``ca_certs`` the chain cannot be checked (rfc3161-client needs a root); the answer's
status, nonce, imprint and the certificate's key usage are still checked, and a warning says
the TSA is not authenticated. Configure the TSA's CA certificates in production.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

log = logging.getLogger("connector.audit")

QUERY_TYPE = "application/timestamp-query"
_MAX_RESPONSE = 1 << 20
_GRANTED = (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS)


class TsaError(Exception):
    """No usable time-stamp: the TSA is unreachable, refused, or its answer does not verify."""


@dataclass(frozen=True)
class StampInfo:
    """What a verified token says."""

    gen_time: dt.datetime
    serial: int
    tsa_subject: str
    imprint: bytes  # the digest the token covers


def load_ca_certs(source: str | Path | Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates from a PEM bundle file (or a ready list); TsaError names a bad file."""
    if not isinstance(source, (str, Path)):
        return list(source)
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TsaError(f"TSA CA certificates {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise TsaError(f"TSA CA certificates {path}: no readable certificate (PEM or DER)") from None
    if not certs:
        raise TsaError(f"TSA CA certificates {path}: no certificate in the file")
    return certs


def _builder(ca_certs: Sequence[x509.Certificate]) -> VerifierBuilder:
    roots = [c for c in ca_certs if c.subject == c.issuer]
    others = [c for c in ca_certs if c.subject != c.issuer]
    # rfc3161-client needs at least one root; a bundle of intermediates only is trusted as is.
    return VerifierBuilder(roots=roots or others, intermediates=others if roots else [])


def wrap_token(token: bytes) -> bytes:
    """A granted TimeStampResp around a stored token (rfc3161-client reads responses only)."""
    body = b"\x30\x03\x02\x01\x00" + token  # status PKIStatusInfo { granted }
    return b"\x30" + _der_length(len(body)) + body


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _signer_certificate(response: TimeStampResponse) -> x509.Certificate | None:
    signer_infos = list(response.signed_data.signer_infos)
    if len(signer_infos) != 1:
        return None
    info = signer_infos[0]
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == info.issuer and cert.serial_number == info.serial_number:
            return cert
    return None


def _info(response: TimeStampResponse) -> StampInfo:
    cert = _signer_certificate(response)
    subject = cert.subject.rfc4514_string() if cert is not None else "(certificate not included)"
    info = response.tst_info
    return StampInfo(info.gen_time, info.serial_number, subject, info.message_imprint.message)


def _check_without_ca(response: TimeStampResponse, data: bytes, nonce: int | None) -> None:
    """The checks possible without a trust anchor (no signature check: see the module doc)."""
    info = response.tst_info
    if info.message_imprint.message != hashlib.sha256(data).digest():
        raise VerificationError("Mismatch between messages")
    if nonce is not None and info.nonce != nonce:
        raise VerificationError("Nonce mismatch")
    cert = _signer_certificate(response)
    if cert is None:
        raise VerificationError("the TSA's certificate is not included")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise VerificationError("the TSA certificate has no extended key usage") from None
    if not eku.critical or ExtendedKeyUsageOID.TIME_STAMPING not in eku.value:
        raise VerificationError("the TSA certificate lacks the critical timeStamping key usage")


def verify_token(token: bytes, data: bytes, ca_certs: Sequence[x509.Certificate]) -> StampInfo:
    """Check a stored token over ``data`` against the TSA's CA certificates; TsaError says why not."""
    try:
        response = decode_timestamp_response(wrap_token(token))
    except ValueError as exc:
        raise TsaError(f"not a readable time-stamp token ({exc})") from None
    if response.tst_info.message_imprint.hash_algorithm.dotted_string not in (
            "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.2", "2.16.840.1.101.3.4.2.3"):
        raise TsaError("the token uses an unsupported imprint hash")
    try:
        _builder(ca_certs).build().verify_message(response, data)
    except (VerificationError, ValueError) as exc:
        raise TsaError(f"the time-stamp does not verify: {exc}") from None
    return _info(response)


def token_info(token: bytes) -> StampInfo:
    """Read (without verifying) what a token says: its time, serial, TSA."""
    try:
        return _info(decode_timestamp_response(wrap_token(token)))
    except ValueError as exc:
        raise TsaError(f"not a readable time-stamp token ({exc})") from None


class TsaClient:
    """An RFC 3161 time-stamping authority at ``url``."""

    def __init__(self, url: str, timeout: float = 10.0,
                 ca_certs: str | Path | Sequence[x509.Certificate] | None = None,
                 *, session: requests.Session | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise TsaError(f"TSA URL {url!r} must start with http:// or https://")
        self.url = url
        self.timeout = timeout
        self.ca_certs: list[x509.Certificate] | None = load_ca_certs(ca_certs) if ca_certs is not None else None
        if self.ca_certs is not None and not self.ca_certs:
            raise TsaError(f"TSA {url}: the list of CA certificates is empty")
        self._session = session or requests.Session()
        if self.ca_certs is None:
            log.warning("time-stamps from %s are not checked against a CA: configure the TSA's CA certificates", url)

    def stamp(self, data: bytes) -> bytes:
        """A verified time-stamp token (DER) over SHA-256(``data``)."""
        request = (TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256)
                   .nonce(nonce=True).cert_request(cert_request=True).build())
        try:
            answer = self._session.post(self.url, data=request.as_bytes(), timeout=self.timeout,
                                        headers={"Content-Type": QUERY_TYPE}, stream=True)
            try:
                body = answer.raw.read(_MAX_RESPONSE + 1, decode_content=True)
            finally:
                answer.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TsaError(f"TSA {self.url}: cannot reach it ({_reason(exc)})") from None
        if answer.status_code != 200:
            raise TsaError(f"TSA {self.url}: answered HTTP {answer.status_code}")
        if len(body) > _MAX_RESPONSE:
            raise TsaError(f"TSA {self.url}: the answer is larger than {_MAX_RESPONSE} bytes")
        try:
            response = decode_timestamp_response(body)
        except ValueError as exc:
            raise TsaError(f"TSA {self.url}: the answer is not a time-stamp response ({exc})") from None
        if response.status not in _GRANTED:
            text = "; ".join(response.status_string) if response.status_string else ""
            raise TsaError(f"TSA {self.url}: refused the request (status {response.status}{': ' + text if text else ''})")
        try:
            if self.ca_certs is not None:
                builder = _builder(self.ca_certs)
                if request.nonce is not None:
                    builder = builder.nonce(request.nonce)
                builder.build().verify_message(response, data)
            else:
                _check_without_ca(response, data, request.nonce)
        except (VerificationError, ValueError) as exc:
            raise TsaError(f"TSA {self.url}: the time-stamp does not verify: {exc}") from None
        return response.time_stamp_token()

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"TsaClient({self.url!r})"


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, (requests.ConnectionError, urllib3.exceptions.HTTPError, OSError)):
        return "connection failed"
    return type(exc).__name__
