"""Key sources for XMLDSig signing: PEM, PKCS#12 and PKCS#11 behind one interface.

Why: an agency's signing key sits in a PEM file on a developer's machine, in a PKCS#12 bundle
as a CA hands it out, and on a USB token or HSM in production. The signer needs only
``sign(bytes)``, the certificate and the chain; where the key lives is a configuration choice.

Rules this module keeps:

* Keys are loaded once (a passphrase or PIN read once, a token session opened once); the key
  objects hold the loaded key or session and are reused for every document.
* At load time the certificate's public key is checked against the private key, and the
  signature algorithm against the key type, so a wrong file fails at start-up, not at the first
  document.
* Every load problem is a :class:`KeySourceError` naming the file or token and what is wrong.
  A failure of a key already in use (a PKCS#11 token removed, its session lost) is a
  :class:`KeyUnavailableError`, a retryable ``KeySourceError``: the key recovers by itself when
  the token is back.
  Secrets are referenced (``env:NAME`` / ``file:/path``), never written in configuration, never
  logged, never put in an error message or a ``repr``.
* ``sign`` returns the bytes XMLDSig puts in ``SignatureValue``: PKCS#1 v1.5 or PSS bytes for
  RSA, and for ECDSA the fixed-width ``r || s`` concatenation (RFC 4051 §3.3), not DER.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, Union, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import pkcs12

from .dsig import ECDSA_SHA256, RSA_PSS_SHA256, RSA_SHA256
from .pem import BEGIN, describe_unreadable, positions, unreadable_certificates

__all__ = [
    "ALGORITHMS",
    "ECDSA_SHA256",
    "KeySourceError",
    "KeyUnavailableError",
    "PemKey",
    "Pkcs11Key",
    "Pkcs12Key",
    "PublicKey",
    "RSA_PSS_SHA256",
    "RSA_SHA256",
    "SecretRef",
    "SigningKey",
    "SoftwareKey",
    "configuration_field",
    "load_signing_key",
    "raw_to_der",
    "resolve_algorithm",
    "verify_signature_value",
]

log = logging.getLogger(__name__)


#: Configuration names of the selectable algorithms.
ALGORITHMS: Mapping[str, str] = {
    "rsa-sha256": RSA_SHA256,
    "rsa-pss-sha256": RSA_PSS_SHA256,
    "ecdsa-sha256": ECDSA_SHA256,
}
_RSA_ALGORITHMS = (RSA_SHA256, RSA_PSS_SHA256)
_EC_ALGORITHMS = (ECDSA_SHA256,)

#: RFC 6931 §2.3.10: sha256-rsa-MGF1 uses MGF1-SHA-256 and a salt as long as the digest.
PSS_SALT_LENGTH = 32
#: Smallest RSA modulus accepted for signing.
MIN_RSA_BITS = 2048

PublicKey = Union[rsa.RSAPublicKey, ec.EllipticCurvePublicKey]
_PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]


class KeySourceError(Exception):
    """A key, certificate, passphrase or token could not be used.

    ``source`` names the file, token or configuration field; ``problem`` says what is wrong.
    The message never contains a passphrase or PIN.
    """

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    #: False: fix the configuration (or the file, token or secret it names) and start again.
    retryable: bool = False


class KeyUnavailableError(KeySourceError):
    """A key that loaded at start-up cannot sign now: token removed or not responding, session
    or login lost, PIN changed on the token, key no longer found or another token in its place.

    ``retryable`` is True: nothing is wrong with the document being signed, and the same call
    may succeed later without a restart (the key source reopens the token on every attempt),
    so a caller keeps the document queued and retries it.
    """

    retryable = True


@runtime_checkable
class SigningKey(Protocol):
    """What the XMLDSig signer needs from a key source."""

    #: XMLDSig SignatureMethod URI this key signs with.
    algorithm: str
    #: The signer's certificate (its public key matches the private key).
    certificate: x509.Certificate
    #: Intermediate certificates to send along (leaf first order is not implied; may be empty).
    chain: list[x509.Certificate]

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (the canonical SignedInfo) and return the SignatureValue bytes."""
        ...

    def public_key(self) -> PublicKey:
        """The public key of the signing certificate."""
        ...


# --------------------------------------------------------------------------- secrets


class SecretRef:
    """A reference to a passphrase or PIN: ``env:NAME`` or ``file:/path``.

    Why: configuration files are copied, committed and pasted into tickets; the secret must
    live elsewhere. A literal value is refused (without echoing it). The value is read on
    demand by :meth:`read` and is never kept on the object, so ``repr`` cannot leak it.
    """

    __slots__ = ("scheme", "target", "what")

    def __init__(self, ref: str, *, what: str = "passphrase") -> None:
        self.what = what
        scheme, sep, target = ref.partition(":") if isinstance(ref, str) else ("", "", "")
        if not sep or scheme not in ("env", "file") or not target:
            raise KeySourceError(
                what,
                "must be a reference 'env:NAME' or 'file:/path'; a literal secret is not "
                "accepted in configuration",
            )
        self.scheme = scheme
        self.target = target

    @classmethod
    def coerce(cls, value: SecretRef | str | None, *, what: str) -> SecretRef | None:
        """Accept a ready ``SecretRef``, a reference string, or ``None``."""
        if value is None or isinstance(value, SecretRef):
            return value
        return cls(value, what=what)

    def read(self) -> bytes:
        """Read the secret now. A file's single trailing newline is dropped."""
        if self.scheme == "env":
            value = os.environ.get(self.target)
            if value is None:
                raise KeySourceError(f"environment variable {self.target}", f"not set ({self.what})")
            if value == "":
                raise KeySourceError(f"environment variable {self.target}", f"empty ({self.what})")
            return value.encode("utf-8")
        path = Path(self.target)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeySourceError(path, f"{self.what} file not found") from None
        except OSError as exc:
            raise KeySourceError(path, f"cannot read {self.what} file ({exc.strerror})") from None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if not data:
            raise KeySourceError(path, f"{self.what} file is empty")
        return data

    def describe(self) -> str:
        """Where the secret is read from, in words (for messages; never the value)."""
        return f"environment variable {self.target}" if self.scheme == "env" else f"file {self.target}"

    def __repr__(self) -> str:
        return f"SecretRef('{self.scheme}:{self.target}')"

    __str__ = __repr__


# --------------------------------------------------------------------------- helpers


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeySourceError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise KeySourceError(path, f"{what} is a directory, expected a file") from None
    except OSError as exc:
        raise KeySourceError(path, f"cannot read {what} ({exc.strerror})") from None


def _load_certificates(path: Path, what: str = "certificate file") -> list[x509.Certificate]:
    """Load one or more certificates from a PEM bundle or a single DER certificate."""
    data = _read_file(path, what)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        if BEGIN in data:
            raise KeySourceError(path, f"{what}: {describe_unreadable(data)}") from None
        raise KeySourceError(path, f"{what} holds no readable X.509 certificate (PEM or DER)") from None
    if not certs:
        raise KeySourceError(path, f"{what} holds no certificate")
    if data.count(BEGIN) > len(certs):
        # cryptography passes over a last block cut before its END line: say so, not drop it.
        total, bad = unreadable_certificates(data)
        if bad:
            raise KeySourceError(path, f"{what}: {positions('certificate', bad, total)} cannot be read (damaged or truncated)")
    return certs


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_match(cert: x509.Certificate, public: Any, source: str | Path, cert_source: str) -> None:
    """Fail unless the certificate carries the same public key as the private key."""
    try:
        cert_spki = _spki(cert.public_key())
    except (UnsupportedAlgorithm, ValueError):
        raise KeySourceError(cert_source, "certificate public key type is not supported") from None
    if cert_spki != _spki(public):
        raise KeySourceError(
            source, f"private key does not match the certificate {cert_source} (public keys differ)"
        )


def _key_kind(key: Any) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ec"
    return type(key).__name__


def resolve_algorithm(name: str | None, kind: str, source: str | Path) -> str:
    """Map a configured algorithm name (or URI) to its URI and check it fits the key type.

    Default: RSA-SHA256 for RSA keys, ECDSA-SHA256 for EC keys.
    """
    if name is None:
        uri = RSA_SHA256 if kind == "rsa" else ECDSA_SHA256
    elif name in ALGORITHMS:
        uri = ALGORITHMS[name]
    elif name in ALGORITHMS.values():
        uri = name
    else:
        raise KeySourceError(
            source, f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}"
        )
    allowed = _RSA_ALGORITHMS if kind == "rsa" else _EC_ALGORITHMS if kind == "ec" else ()
    if uri not in allowed:
        label = next((k for k, v in ALGORITHMS.items() if v == uri), uri)
        raise KeySourceError(source, f"algorithm {label} cannot be used with a {kind.upper()} key")
    return uri


def _check_rsa_size(bits: int, source: str | Path) -> None:
    if bits < MIN_RSA_BITS:
        raise KeySourceError(source, f"RSA key of {bits} bits is too short (minimum {MIN_RSA_BITS})")


def _sign_plan(key: _PrivateKey, algorithm: str) -> tuple[Any, str, tuple[Any, ...], int]:
    """The key, algorithm, ``key.sign`` arguments and (ECDSA) key size for the signing call,
    prepared once (padding and hash objects are immutable and reusable). resolve_algorithm
    lets through only the combinations named here."""
    if algorithm == ECDSA_SHA256 and isinstance(key, ec.EllipticCurvePrivateKey):
        return key, algorithm, (ec.ECDSA(hashes.SHA256()),), key.curve.key_size
    if algorithm == RSA_PSS_SHA256 and isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)
        return key, algorithm, (pss, hashes.SHA256()), 0
    if algorithm == RSA_SHA256 and isinstance(key, rsa.RSAPrivateKey):
        return key, algorithm, (padding.PKCS1v15(), hashes.SHA256()), 0
    raise ValueError(f"cannot sign with {algorithm} using a {type(key).__name__}")


def _der_to_raw(der: bytes, key_bits: int) -> bytes:
    """DER ECDSA-Sig-Value -> fixed-width r || s, as XMLDSig requires."""
    r, s = decode_dss_signature(der)
    size = (key_bits + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def raw_to_der(raw: bytes) -> bytes:
    """Fixed-width r || s -> DER ECDSA-Sig-Value (for verifying with cryptography)."""
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def verify_signature_value(public: PublicKey, algorithm: str, signature: bytes, data: bytes) -> bool:
    """Check a SignatureValue made by :meth:`SigningKey.sign`. Returns False if it does not verify."""
    try:
        if algorithm == ECDSA_SHA256 and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(raw_to_der(signature), data, ec.ECDSA(hashes.SHA256()))
        elif algorithm == RSA_SHA256 and isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == RSA_PSS_SHA256 and isinstance(public, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)
            public.verify(signature, data, pss, hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- software keys


class SoftwareKey:
    """A private key held in this process's memory, with its certificate and chain.

    Base of :class:`PemKey` and :class:`Pkcs12Key`; also usable directly with a key built in
    code (development PKI, tests).
    """

    def __init__(
        self,
        private_key: _PrivateKey,
        certificate: x509.Certificate,
        chain: Iterable[x509.Certificate] = (),
        algorithm: str | None = None,
        *,
        source: str | Path = "in-memory key",
        cert_source: str | Path | None = None,
    ) -> None:
        self.source = str(source)
        kind = _key_kind(private_key)
        if kind not in ("rsa", "ec"):
            raise KeySourceError(source, f"unsupported key type {kind}; expected RSA or EC")
        if isinstance(private_key, rsa.RSAPrivateKey):
            _check_rsa_size(private_key.key_size, source)
        self.algorithm: str = resolve_algorithm(algorithm, kind, source)
        _check_match(certificate, private_key.public_key(), source, str(cert_source or "given"))
        self._key = private_key
        self.certificate: x509.Certificate = certificate
        self.chain: list[x509.Certificate] = list(chain)
        self._plan = _sign_plan(private_key, self.algorithm)
        log.info("signing key loaded from %s (%s, %s)", self.source, self.algorithm,
                 certificate.subject.rfc4514_string())

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the configured algorithm; returns SignatureValue bytes."""
        plan = self._plan
        if plan[0] is not self._key or plan[1] != self.algorithm:  # replaced since load
            plan = self._plan = _sign_plan(self._key, self.algorithm)
        key, _algorithm, arguments, key_bits = plan
        if key_bits:
            return _der_to_raw(key.sign(data, *arguments), key_bits)
        return key.sign(data, *arguments)

    def public_key(self) -> PublicKey:
        """The certificate's public key."""
        return self.certificate.public_key()  # type: ignore[return-value]

    def close(self) -> None:
        """Nothing to release for an in-memory key (present for symmetry with tokens)."""

    def __enter__(self) -> SoftwareKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(source={self.source!r}, algorithm={self.algorithm!r})"


def _load_private_key(data: bytes, password: bytes | None, path: Path) -> Any:
    is_pem = b"-----BEGIN" in data
    encrypted = b"ENCRYPTED" in data if is_pem else None
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
    try:
        return loader(data, password)
    except TypeError:
        if password is None:
            raise KeySourceError(
                path, "the key is encrypted but no passphrase is configured") from None
        raise KeySourceError(
            path, "a passphrase is configured but the key is not encrypted") from None
    except UnsupportedAlgorithm:
        raise KeySourceError(path, "the key uses an unsupported algorithm or encryption") from None
    except ValueError:
        if password is not None and encrypted is not False:
            raise KeySourceError(path, "wrong passphrase, or the key file is damaged") from None
        raise KeySourceError(
            path, "not a readable private key (expected PEM or DER: PKCS#8, PKCS#1 or SEC1)"
        ) from None


class PemKey(SoftwareKey):
    """A private key in a PEM (or DER) file, optionally passphrase-encrypted.

    ``cert`` may hold the leaf certificate followed by intermediates; ``chain`` adds more.
    """

    def __init__(
        self,
        key: str | Path,
        cert: str | Path,
        chain: str | Path | None = None,
        passphrase: SecretRef | str | None = None,
        algorithm: str | None = None,
    ) -> None:
        key_path = Path(key)
        secret = SecretRef.coerce(passphrase, what="passphrase")
        data = _read_file(key_path, "private key file")
        private = _load_private_key(data, secret.read() if secret else None, key_path)
        certs = _load_certificates(Path(cert))
        extra = _load_certificates(Path(chain), "chain file") if chain is not None else []
        super().__init__(private, certs[0], certs[1:] + extra, algorithm,
                         source=key_path, cert_source=str(cert))


class Pkcs12Key(SoftwareKey):
    """A PKCS#12 (.p12/.pfx) bundle holding the key, its certificate and usually the chain."""

    def __init__(
        self,
        bundle: str | Path,
        passphrase: SecretRef | str | None = None,
        algorithm: str | None = None,
        chain: str | Path | None = None,
    ) -> None:
        path = Path(bundle)
        secret = SecretRef.coerce(passphrase, what="passphrase")
        data = _read_file(path, "PKCS#12 bundle")
        password = secret.read() if secret else None
        try:
            private, cert, others = pkcs12.load_key_and_certificates(data, password)
        except UnsupportedAlgorithm:
            raise KeySourceError(path, "the bundle uses an unsupported encryption") from None
        except (ValueError, TypeError):
            if not data.startswith(b"\x30"):
                raise KeySourceError(path, "not a PKCS#12 file") from None
            if password is None:
                raise KeySourceError(
                    path, "cannot open the bundle without a passphrase; configure one") from None
            raise KeySourceError(path, "wrong passphrase, or the bundle is damaged") from None
        if private is None:
            raise KeySourceError(path, "the bundle holds no private key")
        if cert is None:
            raise KeySourceError(path, "the bundle holds no certificate for its key")
        chain_certs = [c for c in others if c != cert]
        if chain is not None:
            chain_certs += _load_certificates(Path(chain), "chain file")
        super().__init__(private, cert, chain_certs, algorithm,  # type: ignore[arg-type]
                         source=path, cert_source=str(path))


# --------------------------------------------------------------------------- PKCS#11


# SHA-256 DigestInfo prefix (RFC 8017 §9.2 note 1), for tokens offering only raw CKM_RSA_PKCS.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

#: One lock per PKCS#11 module: every key on a module runs its token calls under it, so that
#: re-initialising the module (to find a re-plugged token) never runs beside another call.
_MODULE_LOCKS: dict[str, threading.RLock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()

#: Errors a signature attempt can meet that reopening the session cannot cure (the token
#: refuses this key/mechanism combination); names of the classes in pkcs11.exceptions.
_REFUSALS = frozenset({
    "MechanismInvalid", "MechanismParamInvalid", "KeyTypeInconsistent", "KeySizeRange",
    "KeyIndigestible", "FunctionNotSupported", "DataInvalid", "DataLenRange",
})
#: PKCS#11 errors that mean "this token (or slot) is not there", as opposed to "not responding".
_ABSENT = frozenset({"TokenNotPresent", "DeviceRemoved", "SlotIDInvalid", "TokenNotRecognised",
                     "NoSuchToken"})


def _module_lock(module: Path) -> threading.RLock:
    key = os.path.realpath(module)
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(key, threading.RLock())


class Pkcs11Key:
    """A private key on a PKCS#11 token or HSM; the key never leaves the token.

    One logged-in session is opened at load time and reused for every signature, behind a
    lock (a PKCS#11 session runs one operation at a time). At load, one test signature is
    made and verified with the certificate, so a key the token will not sign with (CKA_SIGN
    false, a mechanism it refuses) or a certificate of another key fails at start-up.

    While the daemon runs, any failure of the token (removed, re-plugged into another slot,
    session closed or logged out, key handle lost, module finalised) makes ``sign`` reopen the
    session: on the same slot, else by token label among the slots, else after re-initialising
    the module (some modules, SoftHSM2 among them, see a token that came back only then). If
    that fails the signature fails with :class:`KeyUnavailableError` (retryable: the caller
    keeps the document and tries later); the next ``sign`` tries again, so a token that comes
    back is used without a restart. The first signature after a reopen is verified with the
    certificate loaded at start-up: another token carrying the same labels is refused, not
    used to make signatures that cannot verify.

    A PIN the token rejected while running is not presented again until the PIN source holds
    another value: a wrong PIN counts towards locking the token, and a retry loop would lock it.
    Only a keyed digest of the rejected PIN is kept, never the PIN.

    The certificate comes from the token (the certificate object with the same label/id) or
    from ``cert``, a PEM/DER file.

    PKCS#11 login is per application and token: a second ``Pkcs11Key`` on the same token in
    one process finds the token already logged in and shares that login; closing either key's
    session (``close``) logs the token out, and the other key then reopens on its next
    signature.
    """

    def __init__(
        self,
        module: str | Path,
        token_label: str,
        pin: SecretRef | str,
        key_label: str | None = None,
        key_id: bytes | None = None,
        cert: str | Path | None = None,
        chain: str | Path | None = None,
        algorithm: str | None = None,
    ) -> None:
        self.source = f"PKCS#11 token {token_label!r} ({module})"
        if key_label is None and key_id is None:
            raise KeySourceError(self.source, "name the key on the token: key_label or key_id")
        self._pin = SecretRef.coerce(pin, what="PIN")
        if self._pin is None:
            raise KeySourceError(self.source, "a PIN reference ('env:NAME' or 'file:/path') is required")
        self._token_label = token_label
        self._key_label = key_label
        self._key_id = key_id
        self._lock = _module_lock(Path(module))
        self._opens = 0
        self._closed = False
        self._loaded = False
        self._session: Any = None
        self._key: Any = None
        self._pin_salt = os.urandom(32)
        self._rejected_pin: bytes | None = None
        self._p11 = _import_pkcs11(self.source)
        with self._lock:
            self._lib = self._load_module(Path(module))
            self._token = self._find_token()
            try:
                self._open(self._token)
            except self._p11.exceptions.PKCS11Error as exc:
                raise KeySourceError(self.source, _token_trouble(exc, "cannot open a session")) from None
            try:
                self._finish_load(cert, chain, algorithm)
            except self._p11.exceptions.PKCS11Error as exc:
                self.close()
                raise KeySourceError(
                    self.source, f"the token failed while the key was being read ({type(exc).__name__})") from None
            except BaseException:
                self.close()
                raise
            self._loaded = True
        log.info("signing key loaded from %s (%s, %s)", self.source, self.algorithm,
                 self.certificate.subject.rfc4514_string())

    # -- loading

    def _error(self, problem: str) -> KeySourceError:
        """A configuration error while loading; a retryable one once the key is in use."""
        cls = KeyUnavailableError if self._loaded else KeySourceError
        return cls(self.source, problem)

    def _describe_key(self) -> str:
        parts = []
        if self._key_label is not None:
            parts.append(f"label {self._key_label!r}")
        if self._key_id is not None:
            parts.append(f"id {self._key_id.hex()}")
        return " and ".join(parts)

    def _load_module(self, module: Path) -> Any:
        p11 = self._p11
        if module.is_dir():
            raise KeySourceError(module, "is a folder; expected the PKCS#11 module file (a .so library)")
        if not module.is_file():
            raise KeySourceError(module, "PKCS#11 module not found")
        try:
            return p11.lib(str(module))
        except Exception as exc:  # noqa: BLE001 - the C loader raises several kinds
            raise KeySourceError(module, _module_trouble(exc)) from None

    def _find_token(self) -> Any:
        p11 = self._p11
        try:
            return self._lib.get_token(token_label=self._token_label)
        except p11.exceptions.NoSuchToken:
            raise KeySourceError(self.source, f"token not found (tokens present: {self._present()})") from None
        except p11.exceptions.MultipleTokensReturned:
            raise KeySourceError(self.source, "several tokens carry this label") from None
        except p11.exceptions.PKCS11Error as exc:
            raise KeySourceError(self.source, f"cannot list tokens ({type(exc).__name__})") from None

    def _present(self) -> str:
        """The labels of the tokens the module shows now, for an error message."""
        initialised = self._p11.TokenFlag.TOKEN_INITIALIZED
        try:  # a free (uninitialised) slot, as SoftHSM2 always shows one, is not a token in use
            seen = sorted(t.label for t in self._lib.get_tokens() if t.flags & initialised)
        except self._p11.exceptions.PKCS11Error:
            seen = []
        return ", ".join(repr(s) for s in seen) or "none"

    def _read_pin(self) -> bytes:
        assert self._pin is not None
        try:
            return self._pin.read()
        except KeySourceError as exc:
            if not self._loaded:
                raise
            raise KeyUnavailableError(self.source, f"cannot read the PIN ({exc})") from None

    def _open(self, token: Any) -> None:
        """Open and log in a session on ``token``'s slot, and find the private key in it.

        Raises :class:`KeySourceError` (:class:`KeyUnavailableError` once loaded) for what is
        definite (PIN, key); lets a PKCS#11 error about the token or slot itself through, for
        the caller to look for the token elsewhere.
        """
        exc_mod = self._p11.exceptions
        assert self._pin is not None
        where = self._pin.describe()
        secret = self._read_pin()
        fingerprint = hmac.new(self._pin_salt, secret, hashlib.sha256).digest()
        try:
            pin = secret.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error("the PIN is not valid UTF-8 text") from None
        finally:
            del secret
        if self._rejected_pin is not None and hmac.compare_digest(fingerprint, self._rejected_pin):
            raise self._error(
                f"the token rejected the PIN from {where} earlier and it has not changed since; it is "
                "not presented again (wrong PINs lock the token): put the token's current PIN there")
        info = token.slot.get_token()  # fresh token information: is our token still in this slot?
        if info.label != self._token_label:
            raise exc_mod.NoSuchToken(f"slot now holds token {info.label!r}")
        if info.flags & self._p11.TokenFlag.USER_PIN_LOCKED:
            raise self._error("the PIN is locked (too many wrong PINs); the token's security officer must unlock it")
        try:
            try:
                session = info.open(user_pin=pin)
            except exc_mod.UserAlreadyLoggedIn:
                # Another session of this process is logged in to the token; the login is
                # shared by all of them, so a plain session can use the private key. (python-
                # pkcs11 leaves the session whose login failed open: one per failed login,
                # which is why a rejected PIN is not presented again.)
                session = info.open()
        except (exc_mod.PinIncorrect, exc_mod.PinInvalid, exc_mod.PinLenRange):
            self._rejected_pin = fingerprint
            raise self._error(f"the token rejected the PIN from {where}") from None
        except exc_mod.PinLocked:
            raise self._error("the PIN is locked (too many wrong PINs); the token's security officer must unlock it") from None
        except exc_mod.PinExpired:
            raise self._error("the PIN has expired; change it on the token") from None
        finally:
            del pin
        self._rejected_pin = None
        self._opens += 1
        try:  # the whole search is read before the session may be closed
            found = list(session.get_objects(self._template(self._p11.ObjectClass.PRIVATE_KEY)))
        except exc_mod.PKCS11Error:
            _close_quietly(session)
            raise
        if len(found) != 1:
            _close_quietly(session)
            if not found:
                raise self._error(f"no private key with {self._describe_key()}")
            raise self._error(f"several private keys match {self._describe_key()}; give key_id too")
        key = found[0]
        if self._attribute(key, self._p11.Attribute.SIGN) is False or not hasattr(key, "sign"):
            _close_quietly(session)
            raise self._error(f"the private key with {self._describe_key()} is not allowed to sign (CKA_SIGN is false)")
        self._session, self._key, self._token = session, key, info

    def _finish_load(self, cert: str | Path | None, chain: str | Path | None,
                     algorithm: str | None) -> None:
        p11 = self._p11
        key_type = self._key.key_type
        kind = "rsa" if key_type == p11.KeyType.RSA else "ec" if key_type == p11.KeyType.EC else str(key_type)
        if kind not in ("rsa", "ec"):
            raise KeySourceError(self.source, f"unsupported key type {kind}; expected RSA or EC")
        if self._attribute(self._key, p11.Attribute.ALWAYS_AUTHENTICATE):
            raise KeySourceError(
                self.source, "the key needs the PIN for every signature (CKA_ALWAYS_AUTHENTICATE), "
                "which is not supported")
        if kind == "rsa":
            _check_rsa_size(self._key.key_length, self.source)
        self.algorithm: str = resolve_algorithm(algorithm, kind, self.source)
        if cert is not None:
            certs = _load_certificates(Path(cert))
            cert_source = str(cert)
        else:
            certs = [self._certificate_from_token()]
            cert_source = f"on the token ({self._describe_key()})"
        extra = _load_certificates(Path(chain), "chain file") if chain is not None else []
        self.certificate: x509.Certificate = certs[0]
        self.chain: list[x509.Certificate] = certs[1:] + extra
        self._mechanism, self._param, self._prehash = self._plan(kind)
        public = self._public_key_from_token(kind)
        if public is not None:
            _check_match(self.certificate, public, self.source, cert_source)
        # One test signature, always: it proves the match when nothing public is readable on
        # the token, and that the token will sign with this key and mechanism at all (CKA_SIGN,
        # CKA_ALLOWED_MECHANISMS), at start-up rather than at the first document.
        probe = b"edoc-connector key/certificate match probe"
        try:
            value = self._sign_once(probe)
        except p11.exceptions.PKCS11Error as exc:
            raise KeySourceError(self.source, self._refusal(exc)) from None
        if not verify_signature_value(self.public_key(), self.algorithm, value, probe):
            raise KeySourceError(
                self.source, f"private key does not match the certificate {cert_source} "
                "(test signature does not verify)")

    def _refusal(self, exc: Exception) -> str:
        """Say why the token would not sign, for an error that reopening cannot cure."""
        mechanism = f"CKM_{self._mechanism.name}"
        name = type(exc).__name__
        if name == "MechanismInvalid":
            return (f"the token refuses to sign with {mechanism} using this key (MechanismInvalid); the "
                    "key may allow only other mechanisms (CKA_ALLOWED_MECHANISMS): choose another algorithm")
        if name == "MechanismParamInvalid":
            return f"the token refuses the parameters of {mechanism} (MechanismParamInvalid)"
        if name in ("KeyTypeInconsistent", "KeySizeRange", "KeyIndigestible"):
            return f"the key cannot be used with {mechanism} ({name})"
        return f"the token could not sign with {mechanism} ({name})"

    def _attribute(self, obj: Any, attr: Any) -> Any:
        try:
            return obj[attr]
        except self._p11.exceptions.PKCS11Error:
            return None

    def _template(self, object_class: Any) -> dict[Any, Any]:
        attrs = {self._p11.Attribute.CLASS: object_class}
        if self._key_label is not None:
            attrs[self._p11.Attribute.LABEL] = self._key_label
        if self._key_id is not None:
            attrs[self._p11.Attribute.ID] = self._key_id
        return attrs

    def _certificate_from_token(self) -> x509.Certificate:
        p11 = self._p11
        found = list(self._session.get_objects(self._template(p11.ObjectClass.CERTIFICATE)))
        if not found:
            raise KeySourceError(
                self.source, f"no certificate with {self._describe_key()} on the token; "
                "give 'cert' as a file")
        if len(found) > 1:
            raise KeySourceError(self.source, f"several certificates match {self._describe_key()}")
        try:
            return x509.load_der_x509_certificate(bytes(found[0][p11.Attribute.VALUE]))
        except ValueError:
            raise KeySourceError(self.source, "the certificate on the token is not readable X.509") from None

    def _public_key_from_token(self, kind: str) -> PublicKey | None:
        """The public half as the token knows it (public key object, or RSA private attributes)."""
        p11 = self._p11
        found = list(self._session.get_objects(self._template(p11.ObjectClass.PUBLIC_KEY)))
        obj = found[0] if len(found) == 1 else None
        if kind == "rsa":
            for candidate in (obj, self._key):
                if candidate is None:
                    continue
                n = self._attribute(candidate, p11.Attribute.MODULUS)
                e = self._attribute(candidate, p11.Attribute.PUBLIC_EXPONENT)
                if n and e:
                    return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
            return None
        if obj is None:
            return None
        try:
            der = p11.util.ec.encode_ec_public_key(obj)
            return serialization.load_der_public_key(der)  # type: ignore[return-value]
        except Exception:  # noqa: BLE001 - token encodings vary; fall back to a probe signature
            return None

    def _plan(self, kind: str) -> tuple[Any, Any, bool]:
        """Choose the token mechanism: hash-and-sign on the token, or hash here + raw sign."""
        p11 = self._p11
        mech, mgf = p11.Mechanism, p11.MGF
        pss_param = (mech.SHA256, mgf.SHA256, PSS_SALT_LENGTH)
        combined, raw = {
            RSA_SHA256: ((mech.SHA256_RSA_PKCS, None), (mech.RSA_PKCS, None)),
            RSA_PSS_SHA256: ((mech.SHA256_RSA_PKCS_PSS, pss_param), (mech.RSA_PKCS_PSS, pss_param)),
            ECDSA_SHA256: ((mech.ECDSA_SHA256, None), (mech.ECDSA, None)),
        }[self.algorithm]
        try:
            available = self._token.slot.get_mechanisms()
        except p11.exceptions.PKCS11Error:
            return combined[0], combined[1], False
        if combined[0] in available:
            return combined[0], combined[1], False
        if raw[0] in available:
            return raw[0], raw[1], True
        raise KeySourceError(self.source, f"the token does not offer {combined[0].name} or {raw[0].name}")

    # -- signing

    def _sign_once(self, data: bytes) -> bytes:
        if self._prehash:
            digest = hashes.Hash(hashes.SHA256())
            digest.update(data)
            data = digest.finalize()
            if self._mechanism == self._p11.Mechanism.RSA_PKCS:
                data = _SHA256_DIGEST_INFO + data
        return bytes(self._key.sign(data, mechanism=self._mechanism, mechanism_param=self._param))

    def sign(self, data: bytes) -> bytes:
        """Sign on the token; ECDSA signatures come back from PKCS#11 as r || s already.

        Every failure is a :class:`KeyUnavailableError` (retryable); see the class docstring
        for how a lost token or session is found again.
        """
        exc_mod = self._p11.exceptions
        with self._lock:
            if self._closed:
                raise KeyUnavailableError(self.source, "the key has been closed (the connector is stopping)")
            if self._session is not None:
                try:
                    return self._sign_once(data)
                except exc_mod.PKCS11Error as exc:
                    if type(exc).__name__ in _REFUSALS:
                        raise KeyUnavailableError(self.source, self._refusal(exc)) from None
                    log.warning("%s: the token failed (%s); reopening the session", self.source,
                                type(exc).__name__)
                self._drop_session()
            self._reopen()  # also retries here after an earlier reopen failed (token re-plugged)
            try:
                value = self._sign_once(data)
            except exc_mod.PKCS11Error as exc:
                self._drop_session()
                raise KeyUnavailableError(self.source, f"signing failed after reopening the session "
                                                       f"({type(exc).__name__})") from None
            if not verify_signature_value(self.public_key(), self.algorithm, value, data):
                self._drop_session()
                raise KeyUnavailableError(
                    self.source, f"the private key now found with {self._describe_key()} does not match the "
                    "certificate loaded at start-up (another token with the same labels?); put the "
                    "right token back")
            log.info("%s: session reopened, signing again", self.source)
            return value

    def _drop_session(self) -> None:
        old, self._session, self._key = self._session, None, None
        if old is not None:
            _close_quietly(old)

    def _reopen(self) -> None:
        """Open a session again: on the same slot, else on the slot now holding the token,
        else after re-initialising the module. Raises :class:`KeyUnavailableError`."""
        exc_mod = self._p11.exceptions
        last: Exception | None = None
        for find in (lambda: self._token, self._lib_token, self._restarted_lib_token):
            try:
                self._open(find())
                return
            except exc_mod.MultipleTokensReturned:
                raise KeyUnavailableError(self.source, "several tokens now carry this label; remove the "
                                                       "extra one") from None
            except exc_mod.PKCS11Error as exc:  # the token or slot itself: look further
                last = exc
        if last is not None and type(last).__name__ in _ABSENT:
            raise KeyUnavailableError(self.source, f"the token is not present (removed?); tokens present: "
                                                   f"{self._present()}")
        raise KeyUnavailableError(self.source, _token_trouble(last, "the token is not responding"))

    def _lib_token(self) -> Any:
        return self._lib.get_token(token_label=self._token_label)

    def _restarted_lib_token(self) -> Any:
        """Re-initialise the module (C_Finalize, C_Initialize): the only way some modules see a
        token that was removed and put back. Sessions of other keys on the module are lost too;
        they reopen on their next signature."""
        log.info("%s: re-initialising the PKCS#11 module to look for the token", self.source)
        try:
            self._lib.finalize()
        except self._p11.exceptions.PKCS11Error:
            pass  # finalize marks the module uninitialised even when C_Finalize fails
        self._lib.initialize()
        return self._lib.get_token(token_label=self._token_label)

    @property
    def sessions_opened(self) -> int:
        """How many sessions this key has opened (1 unless the token dropped one)."""
        return self._opens

    def public_key(self) -> PublicKey:
        """The certificate's public key (checked against the token's at load)."""
        return self.certificate.public_key()  # type: ignore[return-value]

    def close(self) -> None:
        """Close the session (which logs the token out for this process)."""
        with self._lock:
            self._closed = True
            self._drop_session()

    def __enter__(self) -> Pkcs11Key:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Pkcs11Key(source={self.source!r}, key={self._describe_key()!r})"


def _token_trouble(exc: Exception | None, doing: str) -> str:
    """A PKCS#11 error about the token or slot, in words."""
    name = type(exc).__name__ if exc is not None else "unknown error"
    if name in _ABSENT:
        return f"token not present ({name})"
    if name == "PKCS11Error" and "not initialized" in str(exc):
        return f"{doing} (the PKCS#11 module is not initialised)"
    return f"{doing} ({name})"


def _module_trouble(exc: Exception) -> str:
    """Why a file could not be loaded as a PKCS#11 module, from python-pkcs11's loader text."""
    text = str(exc)
    if "C_GetFunctionList" in text:
        return "is a shared library but not a PKCS#11 module (it has no C_GetFunctionList)"
    if "while loading" in text:
        # "OS exception while loading PATH: PATH: reason" -> the loader's reason
        reason = text.rsplit(": ", 1)[-1].strip()
        return f"cannot be loaded as a shared library ({reason}); expected a PKCS#11 module (.so)"
    return f"the PKCS#11 module failed to start ({type(exc).__name__}); check its installation and configuration"


def _close_quietly(session: Any) -> None:
    try:
        session.close()
    except Exception:  # noqa: BLE001 - the session may already be gone; nothing to do
        pass


def _import_pkcs11(source: str) -> Any:
    try:
        import pkcs11
        import pkcs11.util.ec  # noqa: F401 - used for EC public keys
    except ImportError:
        raise KeySourceError(source, "python-pkcs11 is not installed (pip install python-pkcs11)") from None
    return pkcs11


# --------------------------------------------------------------------------- factory

_FIELDS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    # type: (required, allowed)
    "pem": (frozenset({"key", "cert"}), frozenset({"key", "cert", "chain", "passphrase", "algorithm"})),
    "pkcs12": (frozenset({"bundle"}), frozenset({"bundle", "passphrase", "chain", "algorithm"})),
    "pkcs11": (frozenset({"module", "token_label", "pin"}),
               frozenset({"module", "token_label", "key_label", "key_id", "pin", "cert", "chain",
                          "algorithm"})),
}
_PATH_FIELDS = ("key", "cert", "chain", "bundle", "module")
_WHERE = "signing key configuration"


def configuration_field(exc: KeySourceError) -> str | None:
    """Which field of the configuration mapping an error is about ("" for the mapping as a
    whole), or None when it is about a file, variable or token the configuration names.

    Why: a caller that read the mapping from a file (``[signing.key]`` of a TOML file) can
    then name the file and the key instead of "signing key configuration".
    """
    if exc.source == _WHERE:
        return ""
    prefix = f"{_WHERE}: "
    return exc.source[len(prefix):] if exc.source.startswith(prefix) else None


def load_signing_key(spec: Mapping[str, Any], *, base_dir: str | Path | None = None) -> SigningKey:
    """Build a key source from a configuration mapping.

    ``{"type": "pem", "key": path, "cert": path, "chain"?: path, "passphrase"?: "env:X",
    "algorithm"?: "rsa-sha256" | "rsa-pss-sha256" | "ecdsa-sha256"}``;
    ``{"type": "pkcs12", "bundle": path, "passphrase"?: "env:X" | "file:/p", ...}``;
    ``{"type": "pkcs11", "module": path, "token_label": str, "key_label"?: str,
    "key_id"?: hex, "pin": "env:X", "cert"?: path, ...}``.

    Relative paths are taken from ``base_dir`` (e.g. the configuration file's folder).
    Every problem raises :class:`KeySourceError`.
    """
    if not isinstance(spec, Mapping):
        raise KeySourceError(_WHERE, "must be a mapping with a 'type'")
    kind = spec.get("type")
    if kind not in _FIELDS:
        raise KeySourceError(f"{_WHERE}: type", f"must be one of {', '.join(_FIELDS)} (got {kind!r})")
    required, allowed = _FIELDS[kind]
    fields = {k: v for k, v in spec.items() if k != "type" and v is not None}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise KeySourceError(_WHERE, f"unknown field(s) for type {kind}: {', '.join(unknown)}")
    missing = sorted(required - set(fields))
    if missing:
        raise KeySourceError(_WHERE, f"type {kind} needs field(s): {', '.join(missing)}")
    for name, value in fields.items():
        if not isinstance(value, str):
            raise KeySourceError(f"{_WHERE}: {name}", "must be a string")
    base = Path(base_dir) if base_dir is not None else None
    for name in _PATH_FIELDS:
        if name in fields and base is not None:
            fields[name] = str(base / fields[name])
    for name, what in (("passphrase", "passphrase"), ("pin", "PIN")):
        if name in fields:
            try:
                ref = SecretRef(fields[name], what=what)
            except KeySourceError as exc:
                raise KeySourceError(f"{_WHERE}: {name}", exc.problem) from None
            if ref.scheme == "file" and base is not None:
                ref = SecretRef(f"file:{base / ref.target}", what=what)
            fields[name] = ref
    if kind == "pem":
        return PemKey(**fields)
    if kind == "pkcs12":
        return Pkcs12Key(**fields)
    if "key_id" in fields:
        try:
            fields["key_id"] = bytes.fromhex(fields["key_id"])
        except ValueError:
            raise KeySourceError(f"{_WHERE}: key_id", "must be hexadecimal") from None
    return Pkcs11Key(**fields)
