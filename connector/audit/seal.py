"""Signing batch statements with the connector's key, and checking those signatures.

The signature bytes are stored as openssl writes and reads them, so an auditor can run
``openssl dgst -sha256 -verify KEY.pub -signature batch.sig batch.statement`` on an exported
bundle: PKCS#1 v1.5 or PSS bytes for RSA (PSS: MGF1-SHA-256, 32-byte salt), and for ECDSA the
DER ``ECDSA-Sig-Value`` (the key sources return XMLDSig's raw ``r || s``; it is converted here).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ..signing.keys import (
    ALGORITHMS,
    ECDSA_SHA256,
    PSS_SALT_LENGTH,
    SigningKey,
    raw_to_der,
)

#: Algorithm names as stored in ``audit_batches.algorithm`` (the key sources' configuration names).
RSA_SHA256_NAME = "rsa-sha256"
RSA_PSS_NAME = "rsa-pss-sha256"
ECDSA_NAME = "ecdsa-sha256"
_NAME_BY_URI = {uri: name for name, uri in ALGORITHMS.items()}

#: Extra ``openssl dgst`` options an auditor needs per algorithm.
OPENSSL_OPTIONS = {
    RSA_SHA256_NAME: "",
    RSA_PSS_NAME: "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 ",
    ECDSA_NAME: "",
}


class SealError(Exception):
    """The key could not produce a usable seal signature."""


class Sealer:
    """Signs batch statements with the connector's key (any key source of ``connector.signing``)."""

    def __init__(self, key: SigningKey) -> None:
        try:
            self.algorithm: str = _NAME_BY_URI[key.algorithm]
        except KeyError:
            raise SealError(f"signing algorithm {key.algorithm} cannot seal the audit log") from None
        self.key = key
        self.certificate: x509.Certificate = key.certificate
        self.certificate_pem: str = "".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in [key.certificate, *key.chain])

    def sign(self, data: bytes) -> bytes:
        """Sign ``data``; the result verifies with :func:`verify_signature` (checked before use)."""
        value = self.key.sign(data)
        if self.key.algorithm == ECDSA_SHA256:
            value = raw_to_der(value)
        if not verify_signature(self.certificate, self.algorithm, value, data):
            raise SealError(f"the signing key ({getattr(self.key, 'source', 'key')}) produced a signature "
                            "that does not verify against its certificate")
        return value


def verify_signature(cert: x509.Certificate, algorithm: str, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` (openssl form) over ``data`` verifies with ``cert``'s key."""
    public = cert.public_key()
    try:
        if algorithm == RSA_SHA256_NAME and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == RSA_PSS_NAME and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                       salt_length=PSS_SALT_LENGTH), hashes.SHA256())
        elif algorithm == ECDSA_NAME and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def load_pem_chain(pem: str | bytes) -> list[x509.Certificate]:
    """The certificates of a stored ``signer_cert`` (leaf first); ValueError when unreadable."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    certs = x509.load_pem_x509_certificates(data)
    if not certs:
        raise ValueError("no certificate")
    return certs
