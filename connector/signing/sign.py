"""Enveloped XMLDSig over a whole edXML document, computed while the document streams.

The builder writes the document in exclusive-C14N form, so the digest of ``Reference URI=""``
(transforms: enveloped-signature, exclusive C14N) is the hash of the unsigned build. Signing is
two streaming passes: one through a hash, one to the output with the ``Signature`` element as
the last child of ``edXMLHeader``. Attachments are read from their files twice and never held
in memory, so a 500 MB document signs in constant memory.

What we write (all of it verifies with xmlsec1 and signxml):
- SignedInfo: exclusive C14N, the key's signature method (RSA-SHA256 by default), a Reference
  ``URI=""`` with SHA-256, and a Reference to a signed ``SignatureProperties`` object carrying
  the signing time;
- KeyInfo/X509Data: the signer's subject name, its certificate and the chain.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import pybase64
from cryptography.hazmat.primitives.serialization import Encoding

from ..edxml.build import DECLARATION, build, write_canonical
from ..edxml.model import Edoc, now_vn
from .dsig import (
    DSIG_NS,
    ENVELOPED,
    EXC_C14N,
    PROPERTIES_TYPE,
    SHA256,
    SIGNING_TIME_NS,
    new_digest,
)
from .keys import SigningKey


@dataclass(frozen=True)
class SignatureInfo:
    """What was signed: for logs and the audit trail."""

    digest: str
    signature_id: str
    signing_time: datetime
    algorithm: str
    signer_subject: str
    signer_serial: str


class _HashSink:
    """A write-only binary stream that only hashes."""

    def __init__(self, digest: "hashlib._Hash"):
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass


def document_digest(message: Edoc, digest_uri: str = SHA256) -> bytes:
    """The digest of the document with its signature removed, in exclusive C14N form."""
    digest = new_digest(digest_uri)
    write_canonical(message, _HashSink(digest))  # type: ignore[arg-type]
    return digest.digest()


def sign(
    message: Edoc,
    key: SigningKey,
    out: BinaryIO | str | Path,
    *,
    signing_time: datetime | None = None,
) -> SignatureInfo:
    """Write ``message`` to ``out`` with an enveloped signature by ``key``."""
    if not isinstance(message, Edoc):
        raise TypeError("only document messages (edoc) carry a signature; status messages do not")
    moment = signing_time or now_vn()
    if moment.microsecond:
        moment = moment.replace(microsecond=0)
    if _attachment_bytes(message) > IN_MEMORY_BELOW:
        doc_digest = document_digest(message)
        element, info = signature_element(key, doc_digest, moment)
        build(message, out, signature=lambda fh: fh.write(element))
        return info
    # Small document: build once into a list of chunks (noting where the builder leaves the
    # signature slot), hash them, and join them with the Signature in the slot.
    sink = _Chunks()
    chunks = sink.chunks
    slot: list[int] = []
    write_canonical(message, sink, signature=lambda _: slot.append(len(chunks)))  # type: ignore[arg-type]
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    element, info = signature_element(key, digest.digest(), moment)
    chunks.insert(slot[0], element)
    chunks.insert(0, DECLARATION)
    signed = b"".join(chunks)
    if isinstance(out, (str, Path)):
        Path(out).write_bytes(signed)
    else:
        out.write(signed)
    return info


class _Chunks:
    """Where a small document is built: ``write`` keeps each bytes object the builder writes,
    in order. The builder writes only immutable ``bytes``, so keeping them needs no copy (and
    ``write`` is ``list.append`` itself, no Python call per write)."""

    __slots__ = ("chunks", "write")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.write = self.chunks.append


IN_MEMORY_BELOW = 4 << 20


def _attachment_bytes(message: Edoc) -> int:
    total = 0
    for attachment in message.attachments:
        total += attachment.size if attachment.size is not None else IN_MEMORY_BELOW + 1
    return total


def _new_token() -> str:
    """A random 16-hex-digit id for ``Signature/@Id`` (64 bits from the OS)."""
    return os.urandom(8).hex()


# The constant stretches of the Signature, between the values that change (ASCII, as bytes).
_SIGNATURE_OPEN = f'<Signature xmlns="{DSIG_NS}" Id="sig-'.encode("ascii")
_SIGNED_INFO_OPEN = b"<SignedInfo>"
_SIGNED_INFO_OPEN_C14N = f'<SignedInfo xmlns="{DSIG_NS}">'.encode("ascii")
_SIGNED_INFO_1 = (
    f'<CanonicalizationMethod Algorithm="{EXC_C14N}"></CanonicalizationMethod>'
    f'<SignatureMethod Algorithm="'
)
_SIGNED_INFO_2 = (
    f'"></SignatureMethod>'
    f'<Reference URI="">'
    f'<Transforms><Transform Algorithm="{ENVELOPED}"></Transform>'
    f'<Transform Algorithm="{EXC_C14N}"></Transform></Transforms>'
    f'<DigestMethod Algorithm="{SHA256}"></DigestMethod>'
    f"<DigestValue>"
)
_SIGNED_INFO_3 = f'</DigestValue></Reference><Reference Type="{PROPERTIES_TYPE}" URI="#props-'
_SIGNED_INFO_4 = (
    f'"><Transforms><Transform Algorithm="{EXC_C14N}"></Transform></Transforms>'
    f'<DigestMethod Algorithm="{SHA256}"></DigestMethod>'
    f"<DigestValue>"
)
_SIGNED_INFO_5 = "</DigestValue></Reference></SignedInfo>"
_PROPERTIES_OPEN = b'<SignatureProperties Id="props-'
_PROPERTIES_OPEN_C14N = f'<SignatureProperties xmlns="{DSIG_NS}" Id="props-'.encode("ascii")
_PROPERTIES_1 = '"><SignatureProperty Target="#sig-'
_PROPERTIES_2 = f'"><SigningTime xmlns="{SIGNING_TIME_NS}">'
_PROPERTIES_3 = "</SigningTime></SignatureProperty></SignatureProperties>"


def signature_element(key: SigningKey, doc_digest: bytes, moment: datetime) -> tuple[bytes, SignatureInfo]:
    """The complete ``Signature`` element (bytes) for a document digest.

    Everything but the private-key operation and the SignatureValue is prepared before it:
    the text after it is one join. All of the element but KeyInfo is ASCII, built as ``str``
    and encoded at memory speed; SignedInfo and SignatureProperties are encoded once each, for
    their digests (with the namespace exclusive C14N puts on them) and for the element.
    """
    token = _new_token()
    properties = f"{token}{_PROPERTIES_1}{token}{_PROPERTIES_2}{moment.isoformat()}{_PROPERTIES_3}".encode()
    props_digest = pybase64.b64encode(hashlib.sha256(_PROPERTIES_OPEN_C14N + properties).digest())
    algorithm = key.algorithm
    doc_digest_b64 = pybase64.b64encode(doc_digest).decode("ascii")
    signed_info = (
        f"{_SIGNED_INFO_1}{algorithm}{_SIGNED_INFO_2}{doc_digest_b64}{_SIGNED_INFO_3}{token}{_SIGNED_INFO_4}"
        f"{props_digest.decode('ascii')}{_SIGNED_INFO_5}"
    ).encode()
    signer = _signer(key.certificate, key.chain)
    # digest, signature_id, signing_time, algorithm, signer_subject, signer_serial
    info = SignatureInfo(doc_digest_b64, f"sig-{token}", moment, algorithm, signer.subject, signer.serial)
    value = key.sign(_SIGNED_INFO_OPEN_C14N + signed_info)
    element = b"".join((
        _SIGNATURE_OPEN, token.encode("ascii"), b'">', _SIGNED_INFO_OPEN, signed_info,
        b"<SignatureValue>", pybase64.b64encode(value), b"</SignatureValue>",
        signer.key_info,
        b"<Object>", _PROPERTIES_OPEN, properties, b"</Object></Signature>",
    ))
    return element, info


class _Signer:
    """What a signing certificate and its chain contribute to every signature: KeyInfo, the
    subject and serial for :class:`SignatureInfo`. Computed once per certificate and chain (a
    key signs thousands of documents with the same chain); looked up by identity, because
    hashing a certificate costs as much as building this."""

    __slots__ = ("certificate", "chain", "key_info", "serial", "subject")

    def __init__(self, certificate, chain: tuple):
        self.certificate = certificate
        self.chain = chain
        self.subject: str = certificate.subject.rfc4514_string()
        self.serial: str = format(certificate.serial_number, "x")
        self.key_info: bytes = _key_info(certificate, chain, self.subject).encode("utf-8")


_SIGNERS: dict[int, _Signer] = {}
_SIGNERS_MAX = 64


def _signer(certificate, chain) -> _Signer:
    entry = _SIGNERS.get(id(certificate))
    # Tuple equality checks identity first, so the usual case (the same objects) costs no
    # certificate comparison.
    if entry is not None and entry.certificate is certificate and entry.chain == tuple(chain):
        return entry
    entry = _Signer(certificate, tuple(chain))
    if len(_SIGNERS) >= _SIGNERS_MAX:
        _SIGNERS.clear()
    _SIGNERS[id(certificate)] = entry  # holds the certificate, so its id is not reused
    return entry


def _key_info(cert, chain: tuple, subject: str) -> str:
    """KeyInfo/X509Data: the signer first, then intermediates (a root is the verifier's to
    trust, never sent)."""
    carried = [cert, *(c for c in chain if c.subject != c.issuer and c != cert)]
    certificates = "".join(f"<X509Certificate>{_b64(c.public_bytes(Encoding.DER))}</X509Certificate>" for c in carried)
    return f"<KeyInfo><X509Data><X509SubjectName>{_escape(subject)}</X509SubjectName>{certificates}</X509Data></KeyInfo>"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["SignatureInfo", "sign", "signature_element", "document_digest"]
