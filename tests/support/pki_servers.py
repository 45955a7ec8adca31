"""Loopback CRL and OCSP responders over a development PKI directory, for tests.

One real HTTP server (`http.server.ThreadingHTTPServer`, 127.0.0.1, random port) serves:

- GET  /crl/issuing-ca.crl  the DER file `DIR/crl/issuing-ca.crl`, read on each request;
- POST /ocsp                real OCSP responses signed by `DIR/ocsp/responder.*` (or, by switch,
                            by the issuing CA or by a rogue key), statuses from
                            `DIR/ocsp/index.json` plus `ocsp_overrides`; serials it does not know
                            are answered "unknown". The request nonce is echoed.

The server is started before the PKI exists, so the PKI's certificates can embed its URLs (see
tests/signing/conftest.py). Switches for failure tests: `ocsp_error` / `crl_error` make the
path answer HTTP 500; `down()` closes the listening socket (connection refused) and reopens it
on the same port afterwards; `ocsp_signer` picks who signs responses; `ocsp_nonce` echoes,
omits or falsifies the nonce; `crl_body` replaces the served CRL bytes. `counts` records
requests per path ("ocsp", "crl").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

Signer = Literal["responder", "issuer", "rogue"]
IssuerKey = CertificateIssuerPrivateKeyTypes
NonceMode = Literal["echo", "omit", "wrong"]


class PkiServer:
    """CRL distribution point and OCSP responder for the dev PKI in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.counts: Counter[str] = Counter()
        self.ocsp_error = False
        self.crl_error = False
        self.ocsp_signer: Signer = "responder"
        self.ocsp_nonce: NonceMode = "echo"
        self.ocsp_overrides: dict[int, dict[str, str | None]] = {}
        self.crl_body: bytes | None = None
        self.port = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._rogue: tuple[IssuerKey, x509.Certificate] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/ocsp"

    @property
    def crl_url(self) -> str:
        return f"{self.base_url}/crl/issuing-ca.crl"

    def start(self) -> PkiServer:
        handler = type("Handler", (_Handler,), {"pki_server": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """Nothing listens on the port inside the block (connection refused)."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def reset(self) -> None:
        """Back to normal behaviour, with zeroed counters."""
        self.counts.clear()
        self.ocsp_error = self.crl_error = False
        self.ocsp_signer = "responder"
        self.ocsp_nonce = "echo"
        self.ocsp_overrides.clear()
        self.crl_body = None

    def __enter__(self) -> PkiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- OCSP -----------------------------------------------------------------------------------

    def answer_ocsp(self, body: bytes) -> bytes:
        """A DER OCSP response to a DER OCSP request."""
        try:
            request = ocsp.load_der_ocsp_request(body)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER)
        issuer = _load_cert(self.directory / "issuing-ca.pem")
        algo = request.hash_algorithm
        ours = (request.issuer_name_hash == _digest(algo, issuer.subject.public_bytes())
                and request.issuer_key_hash == _digest(algo, _key_bits(issuer)))
        entry = self._index().get(request.serial_number) if ours else None
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
        if entry is not None and entry.get("status") == "revoked":
            status = ocsp.OCSPCertStatus.REVOKED
            revoked_at = dt.datetime.fromisoformat(str(entry["revocation_time"]))
            reason = x509.ReasonFlags(entry["reason"]) if entry.get("reason") else None
        elif entry is not None and entry.get("status") == "good":
            status = ocsp.OCSPCertStatus.GOOD
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            request.issuer_name_hash, request.issuer_key_hash, request.serial_number, algo,
            status, now - dt.timedelta(minutes=1), now + dt.timedelta(hours=1), revoked_at, reason)
        key, cert = self._signer(issuer)
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, cert)
        if cert is not issuer:
            builder = builder.certificates([cert])
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
            if self.ocsp_nonce == "wrong":
                nonce = x509.OCSPNonce(bytes(16))
            if self.ocsp_nonce != "omit":
                builder = builder.add_extension(nonce, critical=False)
        except x509.ExtensionNotFound:
            pass
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def _index(self) -> dict[int, dict[str, str | None]]:
        raw = json.loads((self.directory / "ocsp" / "index.json").read_text())
        index = {int(serial, 16): entry for serial, entry in raw.items()}
        index.update(self.ocsp_overrides)
        return index

    def _signer(self, issuer: x509.Certificate) -> tuple[IssuerKey, x509.Certificate]:
        if self.ocsp_signer == "issuer":
            return _load_key(self.directory / "private" / "issuing-ca.key"), issuer
        if self.ocsp_signer == "rogue":
            if self._rogue is None:  # names the real responder and issuer, but signs itself
                responder = _load_cert(self.directory / "ocsp" / "responder.pem")
                key = ec.generate_private_key(ec.SECP256R1())
                now = dt.datetime.now(dt.timezone.utc)
                cert = (x509.CertificateBuilder().subject_name(responder.subject)
                        .issuer_name(issuer.subject).public_key(key.public_key())
                        .serial_number(x509.random_serial_number())
                        .not_valid_before(now - dt.timedelta(days=1))
                        .not_valid_after(now + dt.timedelta(days=30))
                        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                                       critical=False)
                        .sign(key, hashes.SHA256()))
                self._rogue = (key, cert)
            return self._rogue
        return (_load_key(self.directory / "ocsp" / "responder.key"),
                _load_cert(self.directory / "ocsp" / "responder.pem"))


class _Handler(BaseHTTPRequestHandler):
    pki_server: PkiServer
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if self.path != "/crl/issuing-ca.crl":
            return self._send(404, b"not found", "text/plain")
        self.pki_server.counts["crl"] += 1
        if self.pki_server.crl_error:
            return self._send(500, b"CRL distribution point failure (test switch)", "text/plain")
        data = self.pki_server.crl_body
        if data is None:
            data = (self.pki_server.directory / "crl" / "issuing-ca.crl").read_bytes()
        self._send(200, data, "application/pkix-crl")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/ocsp":
            return self._send(404, b"not found", "text/plain")
        self.pki_server.counts["ocsp"] += 1
        if self.pki_server.ocsp_error:
            return self._send(500, b"OCSP responder failure (test switch)", "text/plain")
        self._send(200, self.pki_server.answer_ocsp(body), "application/ocsp-response")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _load_key(path: Path) -> IssuerKey:
    return cast(IssuerKey, serialization.load_pem_private_key(path.read_bytes(), password=None))


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    return hashlib.new(algorithm.name, data).digest()


def _key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (what an OCSP CertID's issuerKeyHash covers)."""
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.PKCS1)
