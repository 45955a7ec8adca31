"""A frozen copy of ``connector/signing/verify.py`` as it was before its speed-ups (test only).

Why: the examiner and the verdict were restructured for speed (one pass per parent, the
signer's Signature shape read in one walk, per-certificate memos), with the promise that
every verdict stays exactly what it was: status, reason, warnings, signer fields. The
equivalence tests (``test_verify_fastpath.py``) run this module and the real one on the same
inputs and compare. Do not "fix" or speed up this copy: it is the yardstick. It differs from
the original only in its imports (absolute instead of relative) and in three fixes made to
both at the same time, each turning an unhandled exception into a verdict: (1) a certificate
whose DER declares an unknown X.509 version (cryptography raises ``InvalidVersion``, not a
``ValueError``) is an unusable certificate, like any other undecodable one; (2) so is one
whose key, names or validity do not decode (a damaged copy, an unknown key type), found
when it is loaded instead of when the verdict reads it; (3) content libxml2 cannot
canonicalize (a relative namespace URI) is refused as ``invalid``. Two later changes to the
verdict's words were made to both too: (4) a KeyInfo certificate that cannot be read is named
by its position (``verdict`` wraps the original, renamed ``_verdict``), and a mismatch then
names no signer when the first one is among them; (5) an "unavailable" revocation detail is
not prefixed a second time with "revocation status unavailable".

The original module docstring follows.

Verification of an inbound edXML signature, with a verdict instead of a guess.

Verdicts: ``valid``; ``invalid`` (digest or signature mismatch, a weak or unsupported
algorithm, a misplaced or second Signature, with the reason); ``absent``; ``placeholder``
(structurally a signature but unverifiable, as today's producers send); ``partial`` (the
references cover less than the whole document); ``untrusted`` (the chain does not reach a
trust anchor); ``revoked``; ``expired``.

Only signed content is trusted: a signature counts only when one ``Reference URI=""`` covers
the whole document (everything but the Signature element itself), and the model handed back
is read from that same tree, so nothing the digest did not cover reaches the caller. Other
references may point only inside the Signature (our signed SignatureProperties); anything else
is refused, which closes the classic wrapping attacks (moved or duplicated content, extra
references, a second Signature).
"""

# ruff: noqa  (a frozen copy: kept as it was, lint and all)
from __future__ import annotations

import base64
import binascii
import datetime as dt
import operator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from connector.edxml.errors import EdxmlError
from connector.edxml.model import NS
from connector.edxml.parse import Parsed, parse
from connector.edxml.reader import Limits, Source
from connector.signing.dsig import (
    C14N,
    C14N_METHODS,
    DIGESTS,
    DSIG_NS,
    ECDSA_SHA256,
    ENVELOPED,
    RSA_PSS_SHA256,
    RSA_SHA1,
    RSA_SHA256,
    RSA_SHA384,
    RSA_SHA512,
    SIGNATURE_METHODS,
    new_digest,
)
from connector.signing.identity import agency_code_of
from connector.signing.keys import raw_to_der
from connector.signing.policy import Decision, SignaturePolicy
from connector.signing.revocation import RevocationChecker
from connector.signing.stream_c14n import StreamingCanonicalizer
from connector.signing.trust import TrustStore, validate_chain
from connector.signing.verdict import Status, Verdict

_SIG = f"{{{DSIG_NS}}}"
_RSA_HASHES = {RSA_SHA1: hashes.SHA1, RSA_SHA256: hashes.SHA256, RSA_SHA384: hashes.SHA384, RSA_SHA512: hashes.SHA512}
MIN_RSA_BITS = 2048


@dataclass
class TrustOptions:
    """What a signature must chain to, and how revocation is checked."""

    store: TrustStore
    revocation: RevocationChecker | None = None

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> "TrustOptions":
        return cls(TrustStore.from_directory(Path(directory)), **kwargs)


@dataclass
class VerifiedDocument:
    """The document read from the signed bytes, with the verdict on its signature."""

    parsed: Parsed
    verdict: Verdict
    decision: Decision

    def close(self) -> None:
        self.parsed.close()

    def __enter__(self) -> "VerifiedDocument":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def verify(
    source: Source,
    trust: TrustOptions,
    *,
    policy: SignaturePolicy | None = None,
    at: dt.datetime | None = None,
    limits: Limits = Limits(),
    spool_dir: str | Path | None = None,
    source_name: str | None = None,
) -> VerifiedDocument:
    """Parse, validate and verify one edXML document.

    ``at`` is the time the certificate must be valid at: a time the caller trusts (when the
    axis delivered the document), by default now; never the signing time the signer wrote,
    which could be backdated. That claimed time must also fall inside the certificate's
    validity. A certificate that names an agency code must name the sender's. The policy (default: ``if-present`` for everyone) is looked
    up by the sender's agency code. Raises :class:`EdxmlError` only for input that is not
    edXML.
    """
    policy = policy or SignaturePolicy()
    examiner = _Examiner()
    stream = StreamingCanonicalizer()
    parsed = parse(
        source, limits=limits, spool_dir=spool_dir, source_name=source_name, on_tree=examiner, observer=stream
    )
    if parsed.raw.streamed:
        examiner.stream = stream
        examiner(parsed.root)
    sender = parsed.message.from_.organ_id
    rule = policy.rule_for(sender)
    verdict = examiner.verdict(trust, at, sender=sender, allow_weak=rule.allow_weak)
    return VerifiedDocument(parsed, verdict, policy.decide(verdict, sender))


# --------------------------------------------------------------------------- examination


class _Examiner:
    """Looks at the complete tree (before attachments are spooled out) and keeps the facts."""

    def __init__(self) -> None:
        self.early: Verdict | None = None
        self.signed_info: bytes = b""
        self.method: str = ""
        self.value: bytes = b""
        self.certificates: list[x509.Certificate] = []
        self.facts: list[_Cert] = []
        self.signing_time: dt.datetime | None = None
        self.weak: list[str] = []
        self.stream: StreamingCanonicalizer | None = None
        self.damaged: str = ""  # change 4
        self.damaged_first = False

    def __call__(self, root: etree._Element) -> None:
        try:
            self._examine(root)
        except _Refused as refusal:
            self.early = refusal.verdict

    # -- structure ----------------------------------------------------------------------

    def _examine(self, root: etree._Element) -> None:
        signatures = list(root.iter(_SIGNATURE))
        if not signatures:
            if any(etree.QName(e).localname == "Signature" for e in root.iter("{*}Signature", "Signature")):
                raise _Refused("placeholder", "a Signature element outside the XMLDSig namespace cannot be verified")
            raise _Refused("absent", "the document carries no signature")
        if len(signatures) > 1:
            raise _Refused("invalid", f"{len(signatures)} Signature elements: only one is allowed (signature wrapping?)")
        signature = signatures[0]
        _check_place(signature)
        self.facts = _certificates(signature)
        self.damaged, self.damaged_first = _damaged(signature)  # change 4
        self.certificates = [f.cert for f in self.facts]
        if not self.facts:
            # As producers send today: digest and value copied between documents, the
            # certificate truncated. Nothing can be verified, so nothing is claimed.
            if self.damaged:  # change 4
                raise _Refused("placeholder", f"no usable X509Certificate in KeyInfo: {self.damaged}")
            raise _Refused("placeholder", "no usable X509Certificate in KeyInfo (missing or truncated)")
        signed_info = _one(signature, "SignedInfo")
        c14n_uri = _algorithm(_one(signed_info, "CanonicalizationMethod"))
        if c14n_uri not in C14N_METHODS:
            raise _Refused("invalid", f"unsupported canonicalization {c14n_uri}")
        self.method = _algorithm(_one(signed_info, "SignatureMethod"))
        if self.method not in SIGNATURE_METHODS:
            raise _Refused("invalid", f"unsupported signature method {self.method}")
        if not SIGNATURE_METHODS[self.method]:
            self.weak.append(f"signature method {self.method}")
        self._check_references(root, signature, signed_info)
        exclusive, comments = C14N_METHODS[c14n_uri]
        self.signed_info = _c14n(signed_info, exclusive, comments, "SignedInfo")
        try:
            self.value = base64.b64decode(_text(_one(signature, "SignatureValue")), validate=False)
        except (binascii.Error, ValueError):
            raise _Refused("placeholder", "SignatureValue is not base64") from None

    def _check_references(self, root: etree._Element, signature: etree._Element, signed_info: etree._Element) -> None:
        references = list(signed_info.iterchildren(_REFERENCE))
        if not references:
            raise _Refused("invalid", "SignedInfo has no Reference")
        whole = [r for r in references if r.get("URI") == ""]
        if not whole:
            uris = ", ".join(repr(r.get("URI")) for r in references)
            raise _Refused("partial", f"the signature covers only {uris}, not the whole document (Reference URI=\"\")")
        if len(whole) > 1:
            raise _Refused("invalid", 'more than one Reference URI="" (signature wrapping?)')
        for index, reference in enumerate(references, start=1):
            uri = reference.get("URI")
            if uri == "":
                target_digest = self._document_digest(root, signature, reference)
            else:
                target_digest = self._inner_digest(signature, reference, uri)
            expected = _text(_first(reference, _DIGEST_VALUE))
            try:
                expected_bytes = base64.b64decode(expected, validate=False)
            except (binascii.Error, ValueError):
                raise _Refused("placeholder", f"DigestValue of reference {index} is not base64") from None
            if target_digest != expected_bytes:
                what = "the document" if uri == "" else f"reference {uri}"
                raise _Refused("invalid", f"digest mismatch for {what}: the signed content was altered")

    def _document_digest(self, root: etree._Element, signature: etree._Element, reference: etree._Element) -> bytes:
        transforms = _transforms(reference)
        if not transforms or transforms[0] != ENVELOPED:
            raise _Refused("invalid", "the document reference must start with the enveloped-signature transform")
        rest = transforms[1:]
        if len(rest) > 1 or (rest and rest[0] not in C14N_METHODS):
            raise _Refused("invalid", f"unsupported transforms on the document reference: {rest}")
        exclusive, comments = C14N_METHODS[rest[0] if rest else C14N]
        digest = _digest_for(reference, self.weak)
        if self.stream is not None:
            streamed = self.stream.result()
            if streamed is None:
                raise _Refused("invalid", f"the document digest cannot be computed: {self.stream.gave_up}")
            return streamed
        digest.update(_without(signature, lambda: _c14n(root.getroottree(), exclusive, comments, "the document")))
        return digest.digest()

    def _inner_digest(self, signature: etree._Element, reference: etree._Element, uri: str | None) -> bytes:
        if not uri or not uri.startswith("#"):
            raise _Refused("invalid", f"reference to {uri!r}: only the whole document and the signature's own properties may be signed")
        wanted = uri[1:]
        targets = [e for e in signature.iter(etree.Element) if e.get("Id") == wanted]
        if len(targets) != 1 or targets[0] is signature:
            raise _Refused("invalid", f"reference {uri} does not point to one element inside the Signature")
        transforms = _transforms(reference)
        if len(transforms) > 1 or (transforms and transforms[0] not in C14N_METHODS):
            raise _Refused("invalid", f"unsupported transforms on reference {uri}: {transforms}")
        exclusive, comments = C14N_METHODS[transforms[0] if transforms else C14N]
        digest = _digest_for(reference, self.weak)
        digest.update(_c14n(targets[0], exclusive, comments, f"reference {uri}"))
        for element in targets[0].iter("{*}SigningTime"):
            try:
                self.signing_time = dt.datetime.fromisoformat(_text(element))
            except ValueError:
                pass
        return digest.digest()

    # -- crypto and trust ---------------------------------------------------------------

    def verdict(
        self, trust: TrustOptions, at: dt.datetime | None, *, sender: str | None = None, allow_weak: bool = False
    ) -> Verdict:
        """Change 4: the verdict as before, then which KeyInfo certificates cannot be read."""
        verdict = self._verdict(trust, at, sender=sender, allow_weak=allow_weak)
        damaged = self.damaged
        if not damaged or damaged in verdict.reason:
            return verdict
        if verdict.status == "valid":
            verdict.warnings.append(damaged)
        else:
            verdict.reason += f"; {damaged}"
            if verdict.reason.startswith("signature value mismatch") and self.damaged_first:
                verdict.reason += ", so the signer is unknown"
                verdict.signer_subject = verdict.signer_issuer = verdict.signer_serial = None
        return verdict

    def _verdict(
        self, trust: TrustOptions, at: dt.datetime | None, *, sender: str | None = None, allow_weak: bool = False
    ) -> Verdict:
        if self.early is not None:
            return self.early
        if not self.facts:
            return Verdict("placeholder", "no usable X509Certificate in KeyInfo (missing or truncated)")
        signer = next((c for c in self.facts if _signature_ok(c.public_key, self.method, self.value, self.signed_info)), None)
        if signer is None:
            return self._about(Verdict("invalid", "signature value mismatch: SignedInfo was altered or signed by another key"), self.facts[0])
        weak = list(self.weak)
        if signer.rsa_bits is not None and signer.rsa_bits < MIN_RSA_BITS:
            weak.append(f"RSA key of {signer.rsa_bits} bits")
        if weak and not allow_weak:
            return self._about(Verdict("invalid", f"weak algorithm refused: {', '.join(weak)} (allow per sender to accept)"), signer)
        moment = at or dt.datetime.now(dt.timezone.utc)
        others = tuple(c for c in self.facts if c is not signer)
        chain = _chain_verdict(signer, others, moment.replace(second=0, microsecond=0), trust.store, allow_weak)
        verdict = self._about(Verdict("valid", "signature verified and the certificate chains to a trust anchor"), signer)
        verdict.warnings.extend(f"accepted weak: {w}" for w in weak)
        verdict.warnings.extend(chain.warnings)
        claimed = _outside_validity(signer, self.signing_time)
        if chain.verdict == "expired":
            verdict.status, verdict.reason = "expired", chain.reason
        elif claimed:
            verdict.status, verdict.reason = "expired", claimed
        elif chain.verdict == "weak":
            verdict.status, verdict.reason = "invalid", f"weak certificate chain: {chain.reason}"
        elif chain.verdict != "trusted":
            verdict.status, verdict.reason = "untrusted", chain.reason
        elif trust.revocation is not None and len(chain.chain) > 1:
            self._apply_revocation(verdict, trust.revocation, signer.cert, chain.chain[1], moment)
        self._bind_sender(verdict, signer, sender)
        return verdict

    def _bind_sender(self, verdict: Verdict, signer: _Cert, sender: str | None) -> None:
        """A certificate that names an agency must name the sender; one that names none is noted."""
        code = signer.agency_code
        if code is None:
            verdict.warnings.append("the signer certificate names no agency code: the sender is not bound to the signature")
        elif sender and code != sender and verdict.status == "valid":
            verdict.status = "untrusted"
            verdict.reason = f"the certificate belongs to agency {code}, but the document claims to come from {sender}"

    def _apply_revocation(self, verdict: Verdict, checker: RevocationChecker, signer, issuer, moment) -> None:
        result = checker.check(signer, issuer, at=moment)
        verdict.warnings.extend(result.warnings)
        if result.status == "revoked":
            verdict.status, verdict.reason = "revoked", f"certificate revoked: {result.detail}"
        elif not result.ok:  # change 5: an "unavailable" detail says so itself
            detail = result.detail if result.status == "unavailable" else f"revocation status unavailable: {result.detail}"
            verdict.status, verdict.reason = "untrusted", detail

    def _about(self, verdict: Verdict, cert: _Cert) -> Verdict:
        verdict.signer_subject, verdict.signer_issuer, verdict.signer_serial = cert.identity
        verdict.signing_time = self.signing_time
        verdict.algorithm = self.method
        return verdict


class _Refused(Exception):
    def __init__(self, status: Status, reason: str):
        super().__init__(reason)
        self.verdict = Verdict(status, reason)


# --------------------------------------------------------------------------- helpers

_SIGNATURE = f"{_SIG}Signature"
_REFERENCE = f"{_SIG}Reference"
_DIGEST_VALUE = f"{_SIG}DigestValue"
_DIGEST_METHOD = f"{_SIG}DigestMethod"
_TRANSFORMS = f"{_SIG}Transforms"
_TRANSFORM = f"{_SIG}Transform"
_KEY_INFO = f"{_SIG}KeyInfo"
_X509_DATA = f"{_SIG}X509Data"
_X509_CERTIFICATE = f"{_SIG}X509Certificate"
_HEADER_TAGS = (f"{{{NS}}}edXMLHeader", "edXMLHeader")


class _Cert:
    """A certificate from KeyInfo with what verification asks of it, each worked out once.

    One object per distinct certificate text (see :func:`_certificate`): a sender's
    certificate repeats in every document it signs, and reading its key, names and
    validity from the DER is slower than checking a signature.
    """

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert

    @cached_property
    def public_key(self):
        return self.cert.public_key()

    @cached_property
    def rsa_bits(self) -> int | None:
        key = self.public_key
        return key.key_size if isinstance(key, rsa.RSAPublicKey) else None

    @cached_property
    def identity(self) -> tuple[str, str, str]:
        """Subject, issuer and serial as a verdict shows them."""
        cert = self.cert
        return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), format(cert.serial_number, "x")

    @cached_property
    def agency_code(self) -> str | None:
        return agency_code_of(self.cert)

    @cached_property
    def validity(self) -> tuple[dt.datetime, dt.datetime]:
        return self.cert.not_valid_before_utc, self.cert.not_valid_after_utc


_CHAINS: dict[tuple, tuple[tuple, object]] = {}
_CHAINS_MAX = 512


def _chain_verdict(signer: _Cert, others: tuple[_Cert, ...], minute: dt.datetime, store: TrustStore, allow_weak: bool):
    """Path validation, cached per signer, chain, store and minute: agencies send many
    documents with one certificate, and building the path is the costliest step of a verify.

    Keyed by the identity of the (cached) certificate objects and of the store, which each
    entry keeps alive, so an id is never reused while its entry exists; hashing the
    certificates themselves costs more than a cache should.
    """
    key = (id(signer), tuple(map(id, others)), minute, id(store), allow_weak)
    hit = _CHAINS.get(key)
    if hit is not None:
        (cached_signer, cached_others, cached_store), result = hit
        if cached_signer is signer and cached_store is store and all(map(operator.is_, cached_others, others)):
            return result
    result = validate_chain(signer.cert, [o.cert for o in others], at=minute, store=store, allow_weak=allow_weak)
    if len(_CHAINS) >= _CHAINS_MAX:
        _CHAINS.clear()
    _CHAINS[key] = ((signer, others, store), result)
    return result


def _outside_validity(cert: _Cert, claimed: dt.datetime | None) -> str:
    """Why the signing time the signer claims is impossible for its certificate, or ""."""
    if claimed is None:
        return ""
    if claimed.tzinfo is None:
        claimed = claimed.replace(tzinfo=dt.timezone.utc)
    not_before, not_after = cert.validity
    if not not_before <= claimed <= not_after:
        return (
            f"the claimed signing time {claimed.isoformat()} is outside the certificate's validity "
            f"({not_before.isoformat()} to {not_after.isoformat()})"
        )
    return ""


def _check_place(signature: etree._Element) -> None:
    parent = signature.getparent()
    if parent is None or parent.tag not in _HEADER_TAGS:
        raise _Refused("invalid", "the Signature is not in edXMLHeader, where receivers look for it")
    if any(isinstance(sibling.tag, str) for sibling in signature.itersiblings()):
        raise _Refused("invalid", "the Signature is not the last child of edXMLHeader")


def _one(parent: etree._Element, name: str) -> etree._Element:
    found = list(parent.iterchildren(f"{_SIG}{name}"))
    if len(found) != 1:
        raise _Refused("invalid", f"expected one {name} in {etree.QName(parent).localname}, found {len(found)}")
    return found[0]


def _first(parent: etree._Element, tag: str) -> etree._Element | None:
    """The first child with this tag, or None."""
    for child in parent.iterchildren(tag):
        return child
    return None


def _text(element: etree._Element | None) -> str:
    return "".join((element.text or "").split()) if element is not None else ""


def _algorithm(element: etree._Element) -> str:
    return element.get("Algorithm") or ""


def _transforms(reference: etree._Element) -> list[str]:
    return [_algorithm(t) for ts in reference.iterchildren(_TRANSFORMS) for t in ts.iterchildren(_TRANSFORM)]


def _digest_for(reference: etree._Element, weak: list[str]):
    method = _first(reference, _DIGEST_METHOD)
    uri = _algorithm(method) if method is not None else ""
    if uri not in DIGESTS:
        raise _Refused("invalid", f"unsupported digest method {uri!r}")
    if not DIGESTS[uri][1]:
        weak.append(f"digest {uri}")
    return new_digest(uri)


def _c14n(node, exclusive: bool, comments: bool, what: str) -> bytes:
    try:
        return etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=comments)
    except etree.C14NError as exc:  # fix 3
        raise _Refused("invalid", f"{what} cannot be canonicalized ({exc}; a relative namespace URI?), "
                       "so its digest cannot be checked") from None


def _without(element: etree._Element, compute):
    """Run ``compute`` with ``element`` taken out of its tree (its tail text kept in place)."""
    parent = element.getparent()
    index = parent.index(element)
    tail = element.tail
    previous = element.getprevious()
    parent.remove(element)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    try:
        return compute()
    finally:
        if tail:
            if previous is not None:
                previous.tail = previous.tail[: len(previous.tail) - len(tail)] or None
            else:
                parent.text = parent.text[: len(parent.text) - len(tail)] or None
        element.tail = tail
        parent.insert(index, element)


def _certificates(signature: etree._Element) -> list[_Cert]:
    certificates = []
    for key_info in signature.iterchildren(_KEY_INFO):
        for data in key_info.iterchildren(_X509_DATA):
            for element in data.iterchildren(_X509_CERTIFICATE):
                certificate = _certificate(_text(element))
                if certificate is not None:
                    certificates.append(certificate)
    return certificates


def _damaged(signature: etree._Element) -> tuple[str, bool]:
    """Change 4: which X509Certificate elements do not give a usable certificate, in words,
    and whether the first one is among them."""
    texts = [_text(e) for k in signature.iterchildren(_KEY_INFO) for d in k.iterchildren(_X509_DATA)
             for e in d.iterchildren(_X509_CERTIFICATE)]
    bad = [i for i, text in enumerate(texts, start=1) if _certificate(text) is None]
    if not bad:
        return "", False
    noun = "KeyInfo certificate" if len(bad) == 1 else "KeyInfo certificates"
    return f"{noun} {', '.join(map(str, bad))} of {len(texts)} cannot be read (damaged or truncated)", bad[0] == 1


@lru_cache(maxsize=256)
def _certificate(encoded: str) -> _Cert | None:
    """A certificate from its base64 text (cached: a sender's certificate repeats in every
    document it signs), or None when it is not one (a truncated placeholder)."""
    try:
        cert = _Cert(x509.load_der_x509_certificate(base64.b64decode(encoded)))
        cert.public_key, cert.identity, cert.validity  # noqa: B018 - fix 2: decoded now, or unusable
    except (ValueError, binascii.Error, x509.InvalidVersion, UnsupportedAlgorithm):  # fix 1: InvalidVersion
        return None
    return cert


_PKCS1 = padding.PKCS1v15()


def _signature_ok(public, method: str, value: bytes, data: bytes) -> bool:
    try:
        if method in _RSA_HASHES and isinstance(public, rsa.RSAPublicKey):
            public.verify(value, data, _PKCS1, _RSA_HASHES[method]())
        elif method == RSA_PSS_SHA256 and isinstance(public, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            public.verify(value, data, pss, hashes.SHA256())
        elif method == ECDSA_SHA256 and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(raw_to_der(value), data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


__all__ = ["Verdict", "TrustOptions", "VerifiedDocument", "verify", "EdxmlError", "Status"]
