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
import io
import uuid
from functools import lru_cache
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives.serialization import Encoding

from ..edxml.build import DECLARATION, build, write_canonical
from ..edxml.model import Edoc, now_vn
from .dsig import DSIG_NS, ENVELOPED, EXC_C14N, PROPERTIES_TYPE, SHA256, SIGNING_TIME_NS, new_digest
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
    moment = (signing_time or now_vn()).replace(microsecond=0)
    if _attachment_bytes(message) > IN_MEMORY_BELOW:
        doc_digest = document_digest(message)
        element, info = signature_element(key, doc_digest, moment)
        build(message, out, signature=lambda fh: fh.write(element))
        return info
    # Small document: build once, hash, and put the Signature into the slot.
    buffer = io.BytesIO()
    write_canonical(message, buffer)
    canonical = buffer.getvalue()
    element, info = signature_element(key, hashlib.sha256(canonical).digest(), moment)
    slot = canonical.index(_SLOT_END) + len(_SLOT_END)
    signed = b"".join((DECLARATION, canonical[:slot], element, canonical[slot:]))
    if isinstance(out, (str, Path)):
        Path(out).write_bytes(signed)
    else:
        out.write(signed)
    return info


IN_MEMORY_BELOW = 4 << 20
# The signature slot is the whitespace between TraceHeaderList's end and edXMLHeader's end.
_SLOT_END = b"</edXML:TraceHeaderList>\n      "


def _attachment_bytes(message: Edoc) -> int:
    return sum(a.size if a.size is not None else IN_MEMORY_BELOW + 1 for a in message.attachments)


def signature_element(key: SigningKey, doc_digest: bytes, moment: datetime) -> tuple[bytes, SignatureInfo]:
    """The complete ``Signature`` element (bytes) for a document digest."""
    token = uuid.uuid4().hex[:16]
    sig_id, props_id = f"sig-{token}", f"props-{token}"
    properties = (
        f'<SignatureProperties Id="{props_id}"><SignatureProperty Target="#{sig_id}">'
        f'<SigningTime xmlns="{SIGNING_TIME_NS}">{moment.isoformat()}</SigningTime>'
        f"</SignatureProperty></SignatureProperties>"
    )
    properties_c14n = properties.replace("<SignatureProperties ", f'<SignatureProperties xmlns="{DSIG_NS}" ', 1)
    props_digest = hashlib.sha256(properties_c14n.encode("utf-8")).digest()
    signed_info = (
        f"<SignedInfo>"
        f'<CanonicalizationMethod Algorithm="{EXC_C14N}"></CanonicalizationMethod>'
        f'<SignatureMethod Algorithm="{key.algorithm}"></SignatureMethod>'
        f'<Reference URI="">'
        f'<Transforms><Transform Algorithm="{ENVELOPED}"></Transform>'
        f'<Transform Algorithm="{EXC_C14N}"></Transform></Transforms>'
        f'<DigestMethod Algorithm="{SHA256}"></DigestMethod>'
        f"<DigestValue>{_b64(doc_digest)}</DigestValue>"
        f"</Reference>"
        f'<Reference Type="{PROPERTIES_TYPE}" URI="#{props_id}">'
        f'<Transforms><Transform Algorithm="{EXC_C14N}"></Transform></Transforms>'
        f'<DigestMethod Algorithm="{SHA256}"></DigestMethod>'
        f"<DigestValue>{_b64(props_digest)}</DigestValue>"
        f"</Reference>"
        f"</SignedInfo>"
    )
    signed_info_c14n = signed_info.replace("<SignedInfo>", f'<SignedInfo xmlns="{DSIG_NS}">', 1)
    value = key.sign(signed_info_c14n.encode("utf-8"))
    cert = key.certificate
    element = (
        f'<Signature xmlns="{DSIG_NS}" Id="{sig_id}">{signed_info}'
        f"<SignatureValue>{_b64(value)}</SignatureValue>"
        f"{_key_info(cert, tuple(key.chain))}"
        f"<Object>{properties}</Object>"
        f"</Signature>"
    )
    info = SignatureInfo(
        digest=_b64(doc_digest),
        signature_id=sig_id,
        signing_time=moment,
        algorithm=key.algorithm,
        signer_subject=_subject(cert),
        signer_serial=format(cert.serial_number, "x"),
    )
    return element.encode("utf-8"), info


@lru_cache(maxsize=64)
def _subject(cert) -> str:
    return cert.subject.rfc4514_string()


@lru_cache(maxsize=64)
def _key_info(cert, chain: tuple) -> str:
    """KeyInfo/X509Data: the signer first, then intermediates (a root is the verifier's to
    trust, never sent). Cached: a key signs thousands of documents with the same chain."""
    carried = [cert, *(c for c in chain if c.subject != c.issuer and c != cert)]
    certificates = "".join(f"<X509Certificate>{_b64(c.public_bytes(Encoding.DER))}</X509Certificate>" for c in carried)
    subject = _escape(_subject(cert))
    return f"<KeyInfo><X509Data><X509SubjectName>{subject}</X509SubjectName>{certificates}</X509Data></KeyInfo>"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["SignatureInfo", "sign", "signature_element", "document_digest"]
