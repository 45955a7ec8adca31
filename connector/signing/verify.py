"""Verification of an inbound edXML signature, with a verdict instead of a guess.

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

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import operator
from base64 import b64decode
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from lxml import etree

from ..edxml.errors import EdxmlError
from ..edxml.model import NS
from ..edxml.parse import Parsed, parse
from ..edxml.reader import Limits, Source
from .dsig import (
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
    SIGNING_TIME_NS,
)
from .identity import agency_code_of
from .keys import raw_to_der
from .policy import Decision, SignaturePolicy
from .revocation import RevocationChecker
from .stream_c14n import StreamingCanonicalizer
from .trust import TrustStore, validate_chain
from .verdict import Status, Verdict

_SIG = f"{{{DSIG_NS}}}"
_RSA_HASHES = {RSA_SHA1: hashes.SHA1, RSA_SHA256: hashes.SHA256, RSA_SHA384: hashes.SHA384, RSA_SHA512: hashes.SHA512}
MIN_RSA_BITS = 2048


@dataclass
class TrustOptions:
    """What a signature must chain to, and how revocation is checked."""

    store: TrustStore
    revocation: RevocationChecker | None = None

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> TrustOptions:
        return cls(TrustStore.from_directory(Path(directory)), **kwargs)


@dataclass
class VerifiedDocument:
    """The document read from the signed bytes, with the verdict on its signature."""

    parsed: Parsed
    verdict: Verdict
    decision: Decision

    def close(self) -> None:
        self.parsed.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_DEFAULT_POLICY = SignaturePolicy()  # read only, never changed: one for every call
_DEFAULT_LIMITS = Limits()


def verify(
    source: Source,
    trust: TrustOptions,
    *,
    policy: SignaturePolicy | None = None,
    at: dt.datetime | None = None,
    limits: Limits = _DEFAULT_LIMITS,
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
    policy = policy or _DEFAULT_POLICY
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
    """Looks at the complete tree (before attachments are spooled out) and keeps the facts.

    Every element of the Signature it needs is read once, in one pass per parent (a fresh
    tree makes each lxml access cost), and the checks then run in the order the verdicts
    depend on: the first problem found is the one reported.
    """

    __slots__ = ("damaged", "early", "facts", "method", "signed_info", "signing_time", "stream", "value", "weak")

    def __init__(self) -> None:
        self.early: Verdict | None = None
        self.damaged: str = ""  # which KeyInfo certificates cannot be read, in words
        self.signed_info: bytes = b""
        self.method: str = ""
        self.value: bytes = b""
        self.facts: list[_Cert] = []
        self.signing_time: dt.datetime | None = None
        self.weak: list[str] = []
        self.stream: StreamingCanonicalizer | None = None

    @property
    def certificates(self) -> list[x509.Certificate]:
        """The usable certificates of KeyInfo, in document order."""
        return [f.cert for f in self.facts]

    def __call__(self, root: etree._Element) -> None:
        try:
            self._examine(root)
        except _Refused as refusal:
            self.early = refusal.verdict

    # -- structure ----------------------------------------------------------------------

    def _examine(self, root: etree._Element) -> None:
        signatures = list(root.iter(_SIGNATURE))
        if len(signatures) != 1:
            if not signatures:
                if any(etree.QName(e).localname == "Signature" for e in root.iter("{*}Signature", "Signature")):
                    raise _Refused("placeholder", "a Signature element outside the XMLDSig namespace cannot be verified")
                raise _Refused("absent", "the document carries no signature")
            raise _Refused("invalid", f"{len(signatures)} Signature elements: only one is allowed (signature wrapping?)")
        signature = signatures[0]
        _check_place(signature)
        shaped = _Shaped.of(signature)
        if shaped is None:
            signed_infos, values, texts = _signature_children(signature)
        else:
            signed_infos, values, texts = shaped.signature_children
        facts = self.facts = _certificates(texts)
        if len(facts) != len(texts):
            self.damaged = _damaged(texts)
        if not facts:
            # As producers send today: digest and value copied between documents, the
            # certificate truncated. Nothing can be verified, so nothing is claimed.
            raise _Refused("placeholder", _no_usable_certificate(self.damaged))
        signed_info = _only(signed_infos, "SignedInfo", "Signature")
        if shaped is None:
            c14n_methods, signature_methods, references = _signed_info_children(signed_info)
        else:
            c14n_methods, signature_methods, references = shaped.signed_info_children
        c14n_uri = _algorithm(_only(c14n_methods, "CanonicalizationMethod", "SignedInfo"))
        form = C14N_METHODS.get(c14n_uri)
        if form is None:
            raise _Refused("invalid", f"unsupported canonicalization {c14n_uri}")
        method = self.method = _algorithm(_only(signature_methods, "SignatureMethod", "SignedInfo"))
        strong = SIGNATURE_METHODS.get(method)
        if strong is None:
            raise _Refused("invalid", f"unsupported signature method {method}")
        if not strong:
            self.weak.append(f"signature method {method}")
        # Everything canonicalized inside the Signature is read before the document digest
        # takes the Signature out of the tree: putting it back can leave its elements on
        # another, equivalent namespace prefix (lxml tidies declarations on the move), which
        # changes their canonical form.
        try:
            self.signed_info = _canonical(signed_info, form[0], form[1], "SignedInfo")
        except _Refused as refusal:
            late: _Refused | None = refusal  # the references are checked first, as always
        else:
            late = None
        self._check_references(root, signature, references, shaped)
        if late is not None:
            raise late
        try:
            self.value = b64decode(_text(_only(values, "SignatureValue", "Signature")), validate=False)
        except (binascii.Error, ValueError):
            raise _Refused("placeholder", "SignatureValue is not base64") from None

    def _check_references(
        self, root: etree._Element, signature: etree._Element, references: list[_ReferenceParts], shaped: _Shaped | None
    ) -> None:
        if not references:
            raise _Refused("invalid", "SignedInfo has no Reference")
        uris = [r[0] for r in references]
        whole = uris.count("")
        if not whole:
            listed = ", ".join(map(repr, uris))
            raise _Refused("partial", f"the signature covers only {listed}, not the whole document (Reference URI=\"\")")
        if whole > 1:
            raise _Refused("invalid", 'more than one Reference URI="" (signature wrapping?)')
        inner = {}
        for index, (uri, transforms, _, _) in enumerate(references, start=1):
            if uri != "":
                try:
                    inner[index] = self._inner_canonical(signature, uri, transforms, shaped)
                except _Refused:
                    pass  # refused again below, in its turn
        for index, (uri, transforms, digest_method, digest_value) in enumerate(references, start=1):
            if uri == "":
                target_digest = self._document_digest(root, signature, transforms, digest_method)
            else:
                target, canonical = inner.get(index) or self._inner_canonical(signature, uri, transforms, shaped)
                target_digest = self._inner_digest(target, canonical, digest_method, shaped)
            try:
                expected = b64decode(digest_value, validate=False)
            except (binascii.Error, ValueError):
                raise _Refused("placeholder", f"DigestValue of reference {index} is not base64") from None
            if target_digest != expected:
                what = "the document" if uri == "" else f"reference {uri}"
                raise _Refused("invalid", f"digest mismatch for {what}: the signed content was altered")

    def _document_digest(
        self, root: etree._Element, signature: etree._Element, transforms: list[str], digest_method
    ) -> bytes:
        if not transforms or transforms[0] != ENVELOPED:
            raise _Refused("invalid", "the document reference must start with the enveloped-signature transform")
        rest = transforms[1:]
        if len(rest) > 1 or (rest and rest[0] not in C14N_METHODS):
            raise _Refused("invalid", f"unsupported transforms on the document reference: {rest}")
        exclusive, comments = C14N_METHODS[rest[0] if rest else C14N]
        new_hash = _hash_for(digest_method, self.weak)
        if self.stream is not None:
            streamed = self.stream.result()
            if streamed is None:
                raise _Refused("invalid", f"the document digest cannot be computed: {self.stream.gave_up}")
            return streamed
        tree = root.getroottree()
        return new_hash(
            _without(signature, lambda: _canonical(tree, exclusive, comments, "the document"))
        ).digest()

    def _inner_canonical(
        self, signature: etree._Element, uri: str | None, transforms: list[str], shaped: _Shaped | None
    ) -> tuple[etree._Element, bytes]:
        """The element a ``#Id`` reference points to inside the Signature, and its canonical form."""
        if not uri or not uri.startswith("#"):
            raise _Refused("invalid", f"reference to {uri!r}: only the whole document and the signature's own properties may be signed")
        targets = (shaped.with_id if shaped is not None else _with_id)(signature, uri[1:])
        if len(targets) != 1 or targets[0] is signature:
            raise _Refused("invalid", f"reference {uri} does not point to one element inside the Signature")
        if len(transforms) > 1 or (transforms and transforms[0] not in C14N_METHODS):
            raise _Refused("invalid", f"unsupported transforms on reference {uri}: {transforms}")
        exclusive, comments = C14N_METHODS[transforms[0] if transforms else C14N]
        target = targets[0]
        return target, _canonical(target, exclusive, comments, f"reference {uri}")

    def _inner_digest(self, target: etree._Element, canonical: bytes, digest_method: str, shaped: _Shaped | None) -> bytes:
        digest = _hash_for(digest_method, self.weak)(canonical).digest()
        for element in (shaped.signing_times if shaped is not None else _signing_times)(target):
            try:
                self.signing_time = dt.datetime.fromisoformat(_text(element))
            except ValueError:
                pass
        return digest

    # -- crypto and trust ---------------------------------------------------------------

    def verdict(
        self, trust: TrustOptions, at: dt.datetime | None, *, sender: str | None = None, allow_weak: bool = False
    ) -> Verdict:
        if self.early is not None:
            if self.damaged and self.damaged not in self.early.reason:
                _note_damaged(self.early, self.damaged)
            return self.early
        facts = self.facts
        if not facts:
            return Verdict("placeholder", _no_usable_certificate(self.damaged))
        method, value, signed_info = self.method, self.value, self.signed_info
        for signer in facts:
            if _verifies(signer, method, value, signed_info):
                break
        else:
            mismatch = Verdict("invalid", "signature value mismatch: SignedInfo was altered or signed by another key")
            if self.damaged:
                return self._damaged_mismatch(mismatch)
            return self._about(mismatch, facts[0])
        weak = self.weak
        bits = signer.rsa_bits
        if bits is not None and bits < MIN_RSA_BITS:
            weak = [*weak, f"RSA key of {bits} bits"]
        if weak and not allow_weak:
            refused = self._about(Verdict("invalid", f"weak algorithm refused: {', '.join(weak)} (allow per sender to accept)"), signer)
            if self.damaged:
                _note_damaged(refused, self.damaged)
            return refused
        moment = at or _now(_UTC)
        chain = signer.chain_among(facts, moment, trust.store, allow_weak)
        warnings = [f"accepted weak: {w}" for w in weak] if weak else []
        if chain.warnings:
            warnings.extend(chain.warnings)
        subject, issuer, serial = signer.identity
        verdict = Verdict(
            "valid", "signature verified and the certificate chains to a trust anchor",
            subject, issuer, serial, self.signing_time, method, warnings,
        )
        result = chain.verdict
        if result == "expired":
            verdict.status, verdict.reason = "expired", chain.reason
        elif (claimed := _outside_validity(signer, self.signing_time)):
            verdict.status, verdict.reason = "expired", claimed
        elif result == "weak":
            verdict.status, verdict.reason = "invalid", f"weak certificate chain: {chain.reason}"
        elif result != "trusted":
            verdict.status, verdict.reason = "untrusted", chain.reason
        elif trust.revocation is not None and len(chain.chain) > 1:
            self._apply_revocation(verdict, trust.revocation, signer.cert, chain.chain[1], moment)
        self._bind_sender(verdict, signer, sender)
        if self.damaged:
            _note_damaged(verdict, self.damaged)
        return verdict

    def _damaged_mismatch(self, verdict: Verdict) -> Verdict:
        """A mismatch when some KeyInfo certificate cannot be read: said in the reason. When
        the first one (the signer's, by convention) is among them, no readable certificate
        is named as the signer: it would be a CA that merely accompanied the damaged one."""
        verdict.reason += f"; {self.damaged}"
        if self.damaged.startswith(_FIRST_DAMAGED):
            verdict.reason += ", so the signer is unknown"
            verdict.signing_time = self.signing_time
            verdict.algorithm = self.method
            return verdict
        return self._about(verdict, self.facts[0])

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
        elif not result.ok:
            # An "unavailable" detail says so itself; an "unknown" one names who does not know.
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
_SIGNED_INFO = f"{_SIG}SignedInfo"
_SIGNATURE_VALUE = f"{_SIG}SignatureValue"
_C14N_METHOD = f"{_SIG}CanonicalizationMethod"
_SIGNATURE_METHOD = f"{_SIG}SignatureMethod"
_REFERENCE = f"{_SIG}Reference"
_DIGEST_VALUE = f"{_SIG}DigestValue"
_DIGEST_METHOD = f"{_SIG}DigestMethod"
_TRANSFORMS = f"{_SIG}Transforms"
_TRANSFORM = f"{_SIG}Transform"
_KEY_INFO = f"{_SIG}KeyInfo"
_X509_DATA = f"{_SIG}X509Data"
_X509_CERTIFICATE = f"{_SIG}X509Certificate"
_HEADER_TAGS = (f"{{{NS}}}edXMLHeader", "edXMLHeader")
_ANY_SIGNING_TIME = "{*}SigningTime"

#: digest URI -> (hashlib constructor, strong?), looked up once per reference
_HASHES = {uri: (getattr(hashlib, name), strong) for uri, (name, strong) in DIGESTS.items()}

_PKCS1 = padding.PKCS1v15()
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_RSA_PKCS1_HASHES = {method: algorithm() for method, algorithm in _RSA_HASHES.items()}
_UTC = dt.UTC
_now = dt.datetime.now
_MINUTE = dt.timedelta(minutes=1)


class _Cert:
    """A certificate from KeyInfo with what verification asks of it, each worked out once.

    One object per distinct certificate text (see :func:`_certificate`): a sender's
    certificate repeats in every document it signs, and reading its key, names and
    validity from the DER is slower than checking a signature.
    """

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self._last_chain: tuple | None = None

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

    @cached_property
    def checks(self) -> dict:
        """Signature method -> (check, padding, hash) such that ``check(value, data, padding,
        hash)`` raises unless ``value`` is this key's signature over ``data``.

        A method the key cannot check (RSA-SHA256 on an EC key) is absent: it never verifies.
        """
        key = self.public_key
        if isinstance(key, rsa.RSAPublicKey):
            checks = {method: (key.verify, _PKCS1, algorithm) for method, algorithm in _RSA_PKCS1_HASHES.items()}
            checks[RSA_PSS_SHA256] = (key.verify, _PSS, _SHA256)
            return checks
        if isinstance(key, ec.EllipticCurvePublicKey):
            def check(value: bytes, data: bytes, _padding, algorithm) -> None:
                key.verify(raw_to_der(value), data, algorithm)

            return {ECDSA_SHA256: (check, None, _ECDSA_SHA256)}
        return {}

    def chain_among(self, facts: list[_Cert], moment: dt.datetime, store: TrustStore, allow_weak: bool):
        """:func:`_chain_verdict` for this certificate as the signer among ``facts`` (the
        certificates of KeyInfo) at ``moment``, to the minute.

        The last answer is kept here too, for the same certificates, store and weak
        allowance within the same UTC minute: the next document a sender signs usually asks
        exactly that, and this check costs less than the cache's key.
        """
        key = tuple(facts)
        last = self._last_chain
        if (
            last is not None
            and last[0] is store
            and last[1] == key
            and last[2] == allow_weak
            and moment.tzinfo is _UTC
            and last[3] <= moment < last[4]
        ):
            return last[5]
        minute = moment.replace(second=0, microsecond=0)
        result = _chain_verdict(self, tuple(c for c in facts if c is not self), minute, store, allow_weak)
        if moment.tzinfo is _UTC:
            self._last_chain = (store, key, allow_weak, minute, minute + _MINUTE, result)
        return result


def _verifies(cert: _Cert, method: str, value: bytes, data: bytes) -> bool:
    """Whether ``value`` is ``cert``'s key's signature over ``data`` by ``method``."""
    check = cert.checks.get(method)
    if check is None:
        return False
    try:
        check[0](value, data, check[1], check[2])
    except (InvalidSignature, ValueError):
        return False
    return True


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
        claimed = claimed.replace(tzinfo=dt.UTC)
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
    if signature.getnext() is not None and any(isinstance(sibling.tag, str) for sibling in signature.itersiblings()):
        raise _Refused("invalid", "the Signature is not the last child of edXMLHeader")


# What the checks read from a Signature: its parts, gathered in one pass per parent (each
# child sorted by tag) or, for the shape our signer writes, in one walk (see _Shaped). The
# checks then read these lists in the order they run; gathering raises nothing, so the first
# problem found is still the first one checked.

#: (URI, transform algorithms, DigestMethod algorithm, DigestValue text) of one Reference
_ReferenceParts = tuple  # tuple[str | None, list[str], str, str]


def _signature_children(signature: etree._Element) -> tuple[list, list, list]:
    """The Signature's SignedInfo and SignatureValue children and the texts of its
    KeyInfo/X509Data/X509Certificate grandchildren (each in document order)."""
    signed_infos: list = []
    values: list = []
    texts: list = []
    for child in signature.iterchildren(_SIGNED_INFO, _SIGNATURE_VALUE, _KEY_INFO):
        tag = child.tag
        if tag == _SIGNED_INFO:
            signed_infos.append(child)
        elif tag == _SIGNATURE_VALUE:
            values.append(child)
        else:
            for data in child.iterchildren(_X509_DATA):
                for element in data.iterchildren(_X509_CERTIFICATE):
                    texts.append(element.text)
    return signed_infos, values, texts


def _signed_info_children(signed_info: etree._Element) -> tuple[list, list, list[_ReferenceParts]]:
    """SignedInfo's CanonicalizationMethod and SignatureMethod children, and the parts of
    each of its Reference children."""
    c14n_methods: list = []
    signature_methods: list = []
    references: list = []
    for child in signed_info.iterchildren(_REFERENCE, _C14N_METHOD, _SIGNATURE_METHOD):
        tag = child.tag
        if tag == _REFERENCE:
            references.append(_reference_parts(child))
        elif tag == _C14N_METHOD:
            c14n_methods.append(child)
        else:
            signature_methods.append(child)
    return c14n_methods, signature_methods, references


def _reference_parts(reference: etree._Element) -> _ReferenceParts:
    """A Reference's URI, its transform algorithms (of every Transforms child, in order),
    the algorithm of its first DigestMethod ("" without one) and the text of its first
    DigestValue (whitespace removed; "" without one)."""
    transforms: list[str] = []
    digest_method = digest_value = None
    for child in reference.iterchildren(_TRANSFORMS, _DIGEST_METHOD, _DIGEST_VALUE):
        tag = child.tag
        if tag == _TRANSFORMS:
            for transform in child.iterchildren(_TRANSFORM):
                transforms.append(transform.get("Algorithm") or "")
        elif tag == _DIGEST_METHOD:
            if digest_method is None:
                digest_method = child.get("Algorithm") or ""
        elif digest_value is None:
            digest_value = _text(child)
    return reference.get("URI"), transforms, digest_method or "", digest_value or ""


def _with_id(signature: etree._Element, wanted: str) -> list[etree._Element]:
    """The elements of the Signature (itself included) whose ``Id`` is ``wanted``."""
    return [e for e in signature.iter(etree.Element) if e.get("Id") == wanted]


def _signing_times(target: etree._Element) -> list[etree._Element]:
    return list(target.iter(_ANY_SIGNING_TIME))


_TAG = operator.attrgetter("tag")
_GET_ID = operator.methodcaller("get", "Id")
#: the values of the (no-namespace) ``Id`` attributes of an element and its descendants
_ID_VALUES = etree.XPath("descendant-or-self::*/@Id", smart_strings=False, regexp=False)


def _shape(certificates: int) -> tuple[list[int], list[str]]:
    """Child counts and tags, in document order, of every node of a Signature as our signer
    writes it with this many certificates (see :mod:`connector.signing.sign`)."""
    nodes = [
        (4, "Signature"),
        (4, "SignedInfo"),
        (0, "CanonicalizationMethod"),
        (0, "SignatureMethod"),
        (3, "Reference"), (2, "Transforms"), (0, "Transform"), (0, "Transform"), (0, "DigestMethod"), (0, "DigestValue"),
        (3, "Reference"), (1, "Transforms"), (0, "Transform"), (0, "DigestMethod"), (0, "DigestValue"),
        (0, "SignatureValue"),
        (1, "KeyInfo"), (1 + certificates, "X509Data"), (0, "X509SubjectName"),
        *[(0, "X509Certificate")] * certificates,
        (1, "Object"), (1, "SignatureProperties"), (1, "SignatureProperty"),
    ]
    lens = [n for n, _ in nodes] + [0]
    tags = [f"{_SIG}{name}" for _, name in nodes] + [f"{{{SIGNING_TIME_NS}}}SigningTime"]
    return lens, tags


_SHAPE_FIXED = len(_shape(0)[0])
#: number of nodes -> shape, for one to four certificates
_SHAPES = {_SHAPE_FIXED + k: _shape(k) for k in range(1, 5)}
_CERTIFICATES_AT = _SHAPE_FIXED - 4  # the first X509Certificate (after X509SubjectName)


class _Shaped:
    """The parts of a Signature that has exactly the shape our signer writes, read in one walk.

    Every node of the Signature (comments and processing instructions included) is visited
    once; when their tags and child counts are exactly those of :func:`_shape`, each part
    sits at a known position, so the lists the checks read are those the general gathering
    (:func:`_signature_children` and its kin) would return, at a fraction of the calls. A
    childless leaf holds only text, so its ``.text`` is all of it. Any other shape (another
    producer, an attack) is read the general way.
    """

    __slots__ = ("elements", "signature_children", "signed_info_children")

    def __init__(self, elements: list, signature_children: tuple, signed_info_children: tuple) -> None:
        self.elements = elements
        self.signature_children = signature_children
        self.signed_info_children = signed_info_children

    @classmethod
    def of(cls, signature: etree._Element) -> _Shaped | None:
        elements = list(signature.iter())
        shape = _SHAPES.get(len(elements))
        if shape is None:
            return None
        lens, tags = shape
        if list(map(len, elements)) != lens or list(map(_TAG, elements)) != tags:
            return None
        (_, signed_info, c14n_method, signature_method,
         reference1, _, transform1, transform2, digest_method1, digest_value1,
         reference2, _, transform3, digest_method2, digest_value2, value) = elements[:16]
        texts = [e.text for e in elements[_CERTIFICATES_AT:-4]]
        references = [
            (
                reference1.get("URI"),
                [transform1.get("Algorithm") or "", transform2.get("Algorithm") or ""],
                digest_method1.get("Algorithm") or "",
                _text(digest_value1),
            ),
            (
                reference2.get("URI"),
                [transform3.get("Algorithm") or ""],
                digest_method2.get("Algorithm") or "",
                _text(digest_value2),
            ),
        ]
        return cls(elements, ([signed_info], [value], texts), ([c14n_method], [signature_method], references))

    def with_id(self, signature: etree._Element, wanted: str) -> list[etree._Element]:
        """As :func:`_with_id`: the elements of the walk (every element of the Signature,
        in order) whose ``Id`` is ``wanted``. Where our signer puts it (on
        SignatureProperties) and nowhere else, that is that element alone."""
        properties = self.elements[-3]
        if properties.get("Id") == wanted and _ID_VALUES(signature).count(wanted) == 1:
            return [properties]
        return [e for e, i in zip(self.elements, map(_GET_ID, self.elements)) if i == wanted]

    def signing_times(self, target: etree._Element) -> list[etree._Element]:
        """As ``target.iter("{*}SigningTime")``: SignatureProperties holds one, the last node."""
        if target is self.elements[-3]:
            return [self.elements[-1]]
        return list(target.iter(_ANY_SIGNING_TIME))


def _only(found: list, name: str, parent: str) -> etree._Element:
    if len(found) != 1:
        raise _Refused("invalid", f"expected one {name} in {parent}, found {len(found)}")
    return found[0]


def _text(element: etree._Element | None) -> str:
    return "".join((element.text or "").split()) if element is not None else ""


def _algorithm(element: etree._Element) -> str:
    return element.get("Algorithm") or ""


def _canonical(node, exclusive: bool, comments: bool, what: str) -> bytes:
    """The canonical form of ``node``, or a refusal when libxml2 cannot canonicalize it (it
    refuses, for one, a relative namespace URI, which C14N leaves undefined)."""
    try:
        return etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=comments)
    except etree.C14NError as exc:
        raise _Refused("invalid", f"{what} cannot be canonicalized ({exc}; a relative namespace URI?), "
                       "so its digest cannot be checked") from None


def _hash_for(uri: str, weak: list[str]):
    """The hashlib constructor for a DigestMethod algorithm (a weak one is noted)."""
    entry = _HASHES.get(uri)
    if entry is None:
        raise _Refused("invalid", f"unsupported digest method {uri!r}")
    if not entry[1]:
        weak.append(f"digest {uri}")
    return entry[0]


def _without(element: etree._Element, compute):
    """Run ``compute`` with ``element`` taken out of its tree (its tail text kept in place)."""
    parent = element.getparent()
    index = parent.index(element)
    tail = element.tail
    previous = element.getprevious() if tail else None
    parent.remove(element)
    before = None
    if tail:
        if previous is not None:
            before = previous.tail
            previous.tail = (before or "") + tail
        else:
            before = parent.text
            parent.text = (before or "") + tail
    try:
        return compute()
    finally:
        if tail:
            if previous is not None:
                previous.tail = before or None
            else:
                parent.text = before or None
        element.tail = tail
        parent.insert(index, element)


_FIRST_DAMAGED = ("KeyInfo certificate 1 of", "KeyInfo certificates 1,")


def _damaged(texts: list) -> str:
    """Which X509Certificate texts do not give a usable certificate, in words ("KeyInfo
    certificate 1 of 2 cannot be read (damaged or truncated)"). Only called when some do not."""
    bad = [str(i) for i, text in enumerate(texts, start=1) if _certificate_of(text) is None]
    noun = "KeyInfo certificate" if len(bad) == 1 else "KeyInfo certificates"
    return f"{noun} {', '.join(bad)} of {len(texts)} cannot be read (damaged or truncated)"


def _no_usable_certificate(damaged: str) -> str:
    """The placeholder reason: no certificate at all, or which ones cannot be read."""
    if damaged:
        return f"no usable X509Certificate in KeyInfo: {damaged}"
    return "no usable X509Certificate in KeyInfo (missing or truncated)"


def _note_damaged(verdict: Verdict, damaged: str) -> None:
    """Say that some KeyInfo certificate cannot be read: in the reason of a refusal, as a
    warning on a valid signature (the signer's own certificate was read)."""
    if verdict.status == "valid":
        verdict.warnings.append(damaged)
    else:
        verdict.reason += f"; {damaged}"


def _certificates(texts: list) -> list[_Cert]:
    """The certificates of KeyInfo from their elements' texts (a truncated one is left out)."""
    certificates = []
    for text in texts:
        certificate = _certificate_of(text)
        if certificate is not None:
            certificates.append(certificate)
    return certificates


_BY_TEXT: dict[str | None, _Cert | None] = {}
_BY_TEXT_MAX = 256
_BY_TEXT_LONGEST = 1 << 14


def _certificate_of(text: str | None) -> _Cert | None:
    """The certificate of an X509Certificate element's text as written (whitespace and all):
    the same text as the last document's is one dictionary look-up. Neither cache keeps a
    text longer than any real certificate's (a hostile document's megabyte of "base64")."""
    cert = _BY_TEXT.get(text, _BY_TEXT)
    if cert is not _BY_TEXT:
        return cert  # type: ignore[return-value]
    encoded = "".join((text or "").split())
    cert = _certificate(encoded) if len(encoded) <= _BY_TEXT_LONGEST else _load_certificate(encoded)
    if text is None or len(text) <= _BY_TEXT_LONGEST:
        if len(_BY_TEXT) >= _BY_TEXT_MAX:
            _BY_TEXT.clear()
        _BY_TEXT[text] = cert
    return cert


def _load_certificate(encoded: str) -> _Cert | None:
    """A certificate from its base64 text, or None when it is not one (a truncated
    placeholder, or DER that does not decode: cryptography raises ``InvalidVersion`` for an
    unknown X.509 version).
    Its key, names and validity are decoded here, once: a certificate whose DER parses but
    whose names or key do not (a damaged copy, an unknown key type) is unusable, not a crash
    later in the verdict."""
    try:
        cert = _Cert(x509.load_der_x509_certificate(b64decode(encoded)))
        cert.public_key, cert.identity, cert.validity  # noqa: B018 - decoded now, or unusable
    except (ValueError, binascii.Error, x509.InvalidVersion, UnsupportedAlgorithm):
        return None
    return cert


# By base64 text without whitespace: one object per certificate, which the chain caches
# recognise by identity, whatever the line-wrapping of the text that brought it.
_certificate = lru_cache(maxsize=256)(_load_certificate)


__all__ = ["EdxmlError", "Status", "TrustOptions", "Verdict", "VerifiedDocument", "verify"]
