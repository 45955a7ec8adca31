"""A real RFC 3161 time-stamping authority for the tests: ``openssl ts -reply`` behind a small
WSGI app served by ``connector.httpserver.WsgiServer`` on loopback.

The TSA certificate is issued by the development PKI's issuing CA with the critical
``timeStamping`` extended key usage RFC 3161 requires. Switches for failure tests:
``mode`` = "ok" | "error" (HTTP 500) | "drop" (connection reset, no answer) | "garbage" (200 with
bytes that are no time-stamp response) | "rogue" (a valid answer signed by a TSA certificate
from another, untrusted CA). ``requests`` counts the queries answered.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connector.httpserver import DropConnection, WsgiServer

_CONFIG = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
other_policies = 1.3.6.1.4.1.99999.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class TsaCredential:
    cert_path: Path
    key_path: Path
    certificate: x509.Certificate


def issue_tsa_certificate(folder: Path, issuer: x509.Certificate | None, issuer_key: rsa.RSAPrivateKey | None,
                          name: str = "Dev TSA - NOT FOR PRODUCTION") -> TsaCredential:
    """A TSA certificate (EKU timeStamping, critical) issued by ``issuer`` (None: self-signed)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signing_key = issuer_key if issuer_key is not None else key
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tsa.pem", folder / "tsa.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return TsaCredential(cert_path, key_path, cert)


class TestTsa:
    """The WSGI app: answers time-stamp queries with ``openssl ts -reply``."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, good: TsaCredential, rogue: TsaCredential) -> None:
        self.folder = folder
        self.good = good
        self.rogue = rogue
        self.mode = "ok"
        self.requests = 0
        self._lock = threading.Lock()
        serial = folder / "serial"
        serial.write_text("01\n")
        self.config = folder / "tsa.cnf"
        self.config.write_text(_CONFIG.format(serial=serial))

    def __call__(self, environ, start_response):
        mode = self.mode
        if mode == "drop":
            raise DropConnection()
        if mode == "error":
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"the TSA is down for maintenance"]
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("CONTENT_TYPE") != "application/timestamp-query":
            start_response("415 Unsupported Media Type", [("Content-Type", "text/plain")])
            return [b"POST application/timestamp-query"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        query = environ["wsgi.input"].read(length)
        if mode == "garbage":
            start_response("200 OK", [("Content-Type", "application/timestamp-reply")])
            return [b"\x30\x03\x02\x01\x07 this is not a time-stamp response"]
        signer = self.rogue if mode == "rogue" else self.good
        with self._lock, tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            q.write_bytes(query)
            done = subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(self.config), "-queryfile", str(q),
                 "-signer", str(signer.cert_path), "-inkey", str(signer.key_path), "-out", str(r)],
                capture_output=True, check=False)
            if done.returncode != 0 or not r.is_file():
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [done.stderr]
            answer = r.read_bytes()
            self.requests += 1
        start_response("200 OK", [("Content-Type", "application/timestamp-reply"),
                                  ("Content-Length", str(len(answer)))])
        return [answer]


class TsaServer:
    """The test TSA on a free loopback port."""

    def __init__(self, app: TestTsa) -> None:
        self.app = app
        self.server = WsgiServer(app).start()
        self.url = f"{self.server.url}/tsa"

    def stop(self) -> None:
        self.server.stop()
