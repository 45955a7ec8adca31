"""Trust anchors and certificate-chain validation for document signers.

`validate_chain` answers one question: may this certificate be trusted as the signer of a
document signed at time `at`? It never raises for a bad certificate; it returns a `ChainResult`
whose verdict is one of:

- "trusted"   the chain reaches an anchor of the `TrustStore`, every certificate is valid at `at`,
              the policy below holds;
- "untrusted" no path to an anchor, a broken signature, or a policy failure (reason says which);
- "expired"   a path exists but a certificate in it is outside its validity period at `at`
              (expired, or not yet valid);
- "weak"      a path exists but uses a signature hash below SHA-256 or an RSA/DSA key below
              2048 bits (EC below 256 bits); only accepted with `allow_weak=True`.

Policy (applied by cryptography's X.509 path validator, `cryptography.x509.verification`):
the leaf has keyUsage with digitalSignature, is not a CA, and, if it has extendedKeyUsage,
lists one of `SIGNING_EKUS` (so a TLS-server-only or OCSP-responder certificate cannot sign
documents); every issuer has basicConstraints cA=TRUE, keyCertSign when it has keyUsage, and,
when it carries extendedKeyUsage, allows one of `SIGNING_EKUS`. We do not use cryptography's
`webpki_defaults_*` policies: they require the TLS clientAuth EKU on intermediates and a SAN on
the leaf, which document-signing certificates (Government CA, VNPT-CA) need not have.

cryptography's validator refuses SHA-1 and small issuer keys outright, so weak chains accepted
with `allow_weak=True` go through a small fallback here (name chaining, signatures, validity,
the same extension checks); that path is for legacy evidence only and says so in `warnings`.

`at` should be a trusted time (receipt time at the axis, a timestamp), not a time the signer
asserts about itself. Naive datetimes are taken as UTC.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import (
    ExtendedKeyUsageOID,
    NameOID,
    ObjectIdentifier,
    SignatureAlgorithmOID,
)
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .pem import describe_unreadable

log = logging.getLogger(__name__)

Verdict = Literal["trusted", "untrusted", "expired", "weak"]

SIGNING_EKUS: frozenset[ObjectIdentifier] = frozenset({
    ObjectIdentifier("1.3.6.1.5.5.7.3.36"),      # id-kp-documentSigning (RFC 9336)
    ExtendedKeyUsageOID.EMAIL_PROTECTION,        # what Government CA / VNPT-CA signing certs carry
    ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"),  # Microsoft document signing
    ObjectIdentifier("1.2.840.113583.1.1.5"),     # Adobe authentic documents trust
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
})
STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512,
                 hashes.SHA3_256, hashes.SHA3_384, hashes.SHA3_512)
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
MAX_DEPTH = 8
_EKU_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
              ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
              ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
              ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
              ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping"}
_PEM_SUFFIXES = (".pem", ".crt", ".cer", ".der")


class TrustStoreError(Exception):
    """The trust-anchor folder itself is unusable (missing, unreadable)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file in the anchor folder that is not a usable CA certificate, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class TrustStore:
    """The certificates trusted a priori (roots, or pinned intermediates)."""

    anchors: tuple[x509.Certificate, ...]
    skipped: tuple[SkippedFile, ...] = ()
    source: str = ""  # the folder the anchors were read from, for messages ("" if none)

    @classmethod
    def from_certificates(cls, certs: Iterable[x509.Certificate]) -> TrustStore:
        unique: dict[bytes, x509.Certificate] = {}
        for cert in certs:
            unique.setdefault(cert.fingerprint(hashes.SHA256()), cert)
        return cls(tuple(unique.values()))

    @classmethod
    def from_directory(cls, directory: Path) -> TrustStore:
        """Load every certificate file (PEM, possibly several per file, or DER) in `directory`.

        Files that hold no certificate, or a non-CA certificate, are skipped; each is recorded in
        `skipped` with a reason naming the file, and logged as a warning (a symbolic link to a
        missing file too: it is an anchor the operator meant to trust). Hidden files, notes
        (`.md`, `.txt`) and folders are ignored.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise TrustStoreError(f"trust-anchor folder {directory} does not exist")
        certs: list[x509.Certificate] = []
        skipped: list[SkippedFile] = []
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() in (".md", ".txt"):
                continue  # hidden files and notes (README) are not candidates
            if path.is_file():
                found, problem = _read_anchor_file(path)
            elif path.is_symlink() and not path.exists():
                found, problem = [], f"unreadable: a symbolic link to {os.readlink(path)}, which does not exist"
            else:
                continue  # folders, devices

            if problem:
                skipped.append(SkippedFile(path, problem))
                log.warning("trust store: skipped %s: %s", path, problem)
            certs.extend(found)
        store = cls.from_certificates(certs)
        return cls(store.anchors, tuple(skipped), str(directory))

    def __len__(self) -> int:
        return len(self.anchors)


@dataclass(frozen=True)
class ChainResult:
    """The verdict on a signer certificate, with what a log or a clerk needs to see."""

    verdict: Verdict
    reason: str
    subject: str
    issuer: str
    serial: str  # lowercase hex, no prefix
    not_before: dt.datetime
    not_after: dt.datetime
    chain: tuple[x509.Certificate, ...] = ()  # leaf first, anchor last; empty when none was found
    warnings: tuple[str, ...] = field(default=())

    @property
    def trusted(self) -> bool:
        return self.verdict == "trusted"


def validate_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    *,
    at: dt.datetime,
    store: TrustStore,
    allow_weak: bool = False,
) -> ChainResult:
    """Decide whether `leaf` may be trusted as a document signer at time `at` (see module doc)."""
    at = _utc(at)
    try:
        return _validate(leaf, list(intermediates), at, store, allow_weak)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # malformed extensions, etc.
        return _result(leaf, "untrusted", f"certificate could not be processed: {exc}")


def _validate(leaf: x509.Certificate, intermediates: list[x509.Certificate], at: dt.datetime,
              store: TrustStore, allow_weak: bool) -> ChainResult:
    if not store.anchors:
        return _result(leaf, "untrusted", _no_anchor(store))
    path, problem = _build_path(leaf, intermediates, store.anchors)
    if path is None:
        return _result(leaf, "untrusted", problem)
    for cert in path:
        if at < cert.not_valid_before_utc:
            return _result(leaf, "expired", f"{_name(cert)} is not yet valid at {at.isoformat()} "
                           f"(valid from {cert.not_valid_before_utc.isoformat()})", path)
        if at > cert.not_valid_after_utc:
            return _result(leaf, "expired", f"{_name(cert)} expired on "
                           f"{cert.not_valid_after_utc.isoformat()}, before {at.isoformat()}", path)
    weak = weaknesses(path)
    if weak and not allow_weak:
        return _result(leaf, "weak", "weak cryptography refused: " + "; ".join(weak), path)
    if weak:
        return _validate_weak(leaf, path, weak)
    verifier = (
        PolicyBuilder()
        .store(Store(list(store.anchors)))
        .time(at)
        .max_chain_depth(MAX_DEPTH)
        .extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy())
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        return _result(leaf, "untrusted", f"chain validation failed: {_clean(exc)}", path)
    return _result(leaf, "trusted", f"chain to anchor {_name(verified.chain[-1])}",
                   verified.chain)


def _validate_weak(leaf: x509.Certificate, path: list[x509.Certificate],
                   weak: list[str]) -> ChainResult:
    """Fallback for chains cryptography's validator refuses by design (allow_weak=True only)."""
    checks: list[tuple[x509.Certificate, type[x509.ExtensionType], bool, Callable]] = [
        (leaf, x509.KeyUsage, True, _leaf_key_usage),
        (leaf, x509.BasicConstraints, False, _leaf_basic_constraints),
        (leaf, x509.ExtendedKeyUsage, False, _leaf_eku),
    ]
    for issuer in path[1:]:
        checks += [(issuer, x509.BasicConstraints, True, _ca_basic_constraints),
                   (issuer, x509.KeyUsage, False, _ca_key_usage),
                   (issuer, x509.ExtendedKeyUsage, False, _ca_eku)]
    for cert, ext_type, required, check in checks:
        try:
            value = cert.extensions.get_extension_for_class(ext_type).value
        except x509.ExtensionNotFound:
            if required:
                return _result(leaf, "untrusted",
                               f"{_name(cert)} lacks the {ext_type.__name__} extension", path)
            continue
        try:
            check(None, cert, value)
        except ValueError as exc:
            return _result(leaf, "untrusted", f"{_name(cert)}: {exc}", path)
    for below, issuer in enumerate(path[1:]):  # pathLenConstraint: CAs between issuer and leaf
        limit = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        if limit is not None and below > limit:
            return _result(leaf, "untrusted", f"{_name(issuer)} pathLenConstraint exceeded", path)
    warning = "accepted with weak cryptography (allow_weak): " + "; ".join(weak)
    return _result(leaf, "trusted", f"chain to anchor {_name(path[-1])}; {warning}", path,
                   warnings=(warning,))


# --- extension policy ---------------------------------------------------------------------------
# Validators receive (policy, certificate, extension value) and raise ValueError to refuse.

def _leaf_key_usage(_policy: object, _cert: x509.Certificate, ku: x509.KeyUsage) -> None:
    if not ku.digital_signature:
        raise ValueError("the certificate's key usage does not include digitalSignature")


def _leaf_basic_constraints(_policy: object, _cert: x509.Certificate,
                            bc: x509.BasicConstraints | None) -> None:
    if bc is not None and bc.ca:
        raise ValueError("the certificate is a CA certificate (BasicConstraints cA=TRUE), which cannot sign documents")


def _leaf_eku(_policy: object, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    if eku is not None and not SIGNING_EKUS.intersection(eku):
        names = ", ".join(_EKU_NAMES.get(o, o.dotted_string) for o in eku)
        raise ValueError(f"the certificate's extendedKeyUsage ({names}) allows no document signing")


#: The document signer's extension rules: (extension, required, check). Chain validation
#: applies them through :func:`_ee_policy`; :func:`leaf_extension_problems` asks them directly.
_LEAF_RULES = (
    (x509.KeyUsage, True, _leaf_key_usage),
    (x509.BasicConstraints, False, _leaf_basic_constraints),
    (x509.ExtendedKeyUsage, False, _leaf_eku),
)


def leaf_extension_problems(cert: x509.Certificate) -> list[str]:
    """Why chain validation would refuse ``cert`` as a document signer for its extensions
    (key usage, basic constraints, extended key usage); empty when it would not.

    Why: a signer can be told before signing (``cli.py sign``) by the very rules the receiver
    applies, instead of a second copy of them. Raises ValueError when the extensions cannot
    be decoded at all.
    """
    problems: list[str] = []
    for extension, required, check in _LEAF_RULES:
        try:
            value = cert.extensions.get_extension_for_class(extension).value
        except x509.ExtensionNotFound:
            if required:
                problems.append(f"the certificate has no {extension.__name__} extension, which a document "
                                "signer's certificate must carry")
                continue
            value = None
        try:
            check(None, cert, value)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def _ca_basic_constraints(_policy: object, _cert: x509.Certificate,
                          bc: x509.BasicConstraints) -> None:
    if not bc.ca:
        raise ValueError("issuer is not a CA (basicConstraints cA=FALSE)")


def _ca_key_usage(_policy: object, _cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("issuer keyUsage lacks keyCertSign")


def _ca_eku(_policy: object, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    if eku is not None and not SIGNING_EKUS.intersection(eku):
        raise ValueError("issuer extendedKeyUsage does not allow document signing")


def _ee_policy() -> ExtensionPolicy:
    policy = ExtensionPolicy.permit_all()
    for extension, required, check in _LEAF_RULES:
        add = policy.require_present if required else policy.may_be_present
        policy = add(extension, Criticality.AGNOSTIC, check)
    return policy


def _ca_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _ca_eku)
    )


# --- path building, weakness, signatures --------------------------------------------------------

def _build_path(leaf: x509.Certificate, intermediates: list[x509.Certificate],
                anchors: Sequence[x509.Certificate]) -> tuple[list[x509.Certificate] | None, str]:
    """Depth-first search for leaf -> ... -> anchor, by names and verified signatures.

    Works for any signature algorithm (including SHA-1), so weak chains can be found and named.
    """
    anchor_prints = {a.fingerprint(hashes.SHA256()) for a in anchors}
    candidates = list(anchors) + intermediates
    last_problem = ""

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        nonlocal last_problem
        current = path[-1]
        if current.fingerprint(hashes.SHA256()) in anchor_prints:
            return path
        if len(path) > MAX_DEPTH:
            last_problem = "chain longer than the maximum depth"
            return None
        if current.issuer == current.subject and len(path) > 1:
            last_problem = f"{_name(current)} is a root that is not in the trust store"
        elif current.issuer == current.subject:
            last_problem = f"{_name(current)} is self-signed and not in the trust store"
        else:
            last_problem = (f"issuer {current.issuer.rfc4514_string()} of {_name(current)} not "
                            f"found among {len(intermediates)} intermediate(s) and "
                            f"{len(anchors)} anchor(s)")
        seen = {c.fingerprint(hashes.SHA256()) for c in path}
        for issuer in candidates:
            if issuer.subject != current.issuer or issuer.fingerprint(hashes.SHA256()) in seen:
                continue
            if not signature_is_valid(issuer.public_key(), current.signature,
                                      current.tbs_certificate_bytes,
                                      current.signature_hash_algorithm,
                                      current.signature_algorithm_parameters):
                last_problem = f"signature of {_name(current)} does not verify with the key " \
                               f"of {_name(issuer)}"
                continue
            found = extend(path + [issuer])
            if found:
                return found
        return None

    return extend([leaf]), last_problem


def weaknesses(path: Sequence[x509.Certificate]) -> list[str]:
    """Weak hashes in signatures (the anchor's self-signature excepted) and weak keys in `path`."""
    found: list[str] = []
    for index, cert in enumerate(path):
        is_anchor = index == len(path) - 1 and len(path) > 1
        algo = cert.signature_hash_algorithm
        if not is_anchor and algo is not None and not isinstance(algo, STRONG_HASHES):
            found.append(f"{_name(cert)} is signed with {algo.name.upper()}")
        key = cert.public_key()
        if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)) and key.key_size < MIN_RSA_BITS:
            found.append(f"{_name(cert)} has a {key.key_size}-bit "
                         f"{'RSA' if isinstance(key, rsa.RSAPublicKey) else 'DSA'} key")
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
            found.append(f"{_name(cert)} has a {key.curve.key_size}-bit EC key")
    return found


def signature_is_valid(public_key: object, signature: bytes, data: bytes,
                       hash_algorithm: hashes.HashAlgorithm | None,
                       parameters: object = None) -> bool:
    """Verify a raw signature with RSA (PKCS#1 v1.5 or PSS), ECDSA, DSA or EdDSA; never raises.

    `parameters` is what cryptography reports as `signature_algorithm_parameters` (a padding for
    RSA, an `ECDSA` for EC); None means PKCS#1 v1.5 for RSA. Legacy hashes (SHA-1) are verified
    here on purpose: refusing them is a policy decision taken by the caller.
    """
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and hash_algorithm is not None:
            pad = parameters if isinstance(parameters, (padding.PKCS1v15, padding.PSS)) \
                else padding.PKCS1v15()
            public_key.verify(signature, data, pad, hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, dsa.DSAPublicKey) and hash_algorithm is not None:
            public_key.verify(signature, data, hash_algorithm)
        elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            public_key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def pss_parameters(algorithm_oid: ObjectIdentifier,
                   hash_algorithm: hashes.HashAlgorithm | None) -> object:
    """Padding to verify a signature when only its algorithm OID is known (OCSP responses)."""
    if algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS and hash_algorithm is not None:
        return padding.PSS(padding.MGF1(hash_algorithm), padding.PSS.AUTO)
    return None


# --- small helpers ------------------------------------------------------------------------------

def _no_anchor(store: TrustStore) -> str:
    """Why an empty store trusts nothing, naming its folder and the files it skipped."""
    if not store.source:
        return "the trust store holds no anchor"
    reason = f"no trust anchor (*.pem) in {store.source}"
    if store.skipped:
        reason += " (skipped: " + "; ".join(f"{s.path.name}: {s.reason}" for s in store.skipped) + ")"
    return reason


def _read_anchor_file(path: Path) -> tuple[list[x509.Certificate], str]:
    """The CA certificates of one file, and why any of it was not usable ("" if all was).
    The reasons are the module's own words, never the parser's internals."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [], f"unreadable: {exc.strerror or exc}"
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        elif path.suffix.lower() in _PEM_SUFFIXES:
            certs = [x509.load_der_x509_certificate(data)]
        else:
            return [], "not a certificate file (expected PEM, or DER named .cer/.crt/.der)"
    except ValueError:
        if b"-----BEGIN" in data:
            return [], describe_unreadable(data)
        return [], "not a PEM certificate (no -----BEGIN CERTIFICATE----- line), nor a DER one"
    usable, problems = [], []
    for cert in certs:
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = bc.ca
        except x509.ExtensionNotFound:
            is_ca = True  # v1 roots have no extensions; the validator will judge them
        except ValueError as exc:
            problems.append(f"{_name(cert)}: bad extensions ({exc})")
            continue
        if is_ca:
            usable.append(cert)
        else:
            problems.append(f"{_name(cert)} is not a CA certificate")
    return usable, "; ".join(problems)


def _result(leaf: x509.Certificate, verdict: Verdict, reason: str,
            chain: Sequence[x509.Certificate] = (), warnings: tuple[str, ...] = ()) -> ChainResult:
    return ChainResult(
        verdict=verdict, reason=reason, subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(), serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
        chain=tuple(chain), warnings=warnings)


def _clean(exc: VerificationError) -> str:
    """cryptography's message without its wrapping: 'validation failed: ... (encountered ...)'."""
    text = str(exc).removeprefix("validation failed: ")
    text = text.replace("Python extension validator failed: ValueError: ", "")
    where = text.find(" (encountered processing <Certificate(subject=<Name(")
    if where >= 0:
        subject = text[where:].split("<Name(", 1)[1].split(")>", 1)[0]
        text = f"{text[:where]} [{subject}]"
    return text


def _name(cert: x509.Certificate) -> str:
    """A short name for messages: the CN, else the whole subject."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        return f"'{cert.subject.rfc4514_string()}'"
    value = cns[0].value
    return "'" + (value if isinstance(value, str) else value.decode(errors="replace")) + "'"


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)
