"""A throwaway SoftHSM2 token for tests of the PKCS#11 key source.

Why: PKCS#11 code is only trustworthy when it has run against a real token, and SoftHSM2 is a
real PKCS#11 module that needs no hardware. The helper writes its own ``softhsm2.conf`` in a
temporary folder, initialises a token there, generates key pairs ON the token (private halves
sensitive and non-extractable, as on a USB token), issues certificates for them from a test CA
whose key stays in this process, and stores each certificate both on the token and as a PEM file.

Nothing here is committed key material: every key is made at run time.

SoftHSM reads ``SOFTHSM2_CONF`` when the module is initialised, and python-pkcs11 initialises a
module once per process, so one process gets one token folder: use :func:`shared_token`.
When SoftHSM2 (or python-pkcs11) is missing the caller is skipped, except under ``CI=true``,
where it fails: CI installs softhsm2, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)

TOKEN_LABEL = "edoc-test"
USER_PIN = "246810"
SO_PIN = "13579135"


@dataclass(frozen=True)
class TokenKey:
    """One key pair on the token and the files that go with it."""

    label: str
    id: bytes
    kind: str  # "rsa" or "ec"
    cert_path: Path
    public_on_token: bool = True


@dataclass
class SoftHsmToken:
    """A SoftHSM2 token ready for tests; ``pin`` is the user PIN."""

    module: str
    conf: Path
    label: str
    pin: str
    so_pin: str
    ca_cert_path: Path
    keys: dict[str, TokenKey] = field(default_factory=dict)


def find_module() -> str | None:
    """Path of libsofthsm2.so (``SOFTHSM2_MODULE`` overrides), or None."""
    override = os.environ.get("SOFTHSM2_MODULE")
    if override and Path(override).is_file():
        return override
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    found = glob.glob("/usr/lib*/**/libsofthsm2.so", recursive=True)
    return found[0] if found else None


def require_softhsm() -> str:
    """Return the module path, or skip (fail under ``CI=true``) when SoftHSM2 is not usable."""
    problems = []
    module = find_module()
    if module is None:
        problems.append("libsofthsm2.so not found (apt-get install softhsm2)")
    if shutil.which("softhsm2-util") is None:
        problems.append("softhsm2-util not on PATH (apt-get install softhsm2)")
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        problems.append("python-pkcs11 not installed")
    if problems:
        message = "SoftHSM2 tests need: " + "; ".join(problems)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert module is not None
    return module


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edoc-connector tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _write_pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class _TestCa:
    """A software CA that issues certificates for public keys held on the token."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("edoc test CA"))
            .issuer_name(_name("edoc test CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, common_name: str, public_key: Any) -> x509.Certificate:
        now = dt.datetime.now(dt.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False),
                           critical=True)
            .sign(self.key, hashes.SHA256())
        )


def _public_from_token(pub: Any, kind: str) -> Any:
    """A cryptography public key from a PKCS#11 public key object."""
    from pkcs11 import Attribute
    from pkcs11.util.ec import encode_ec_public_key
    from cryptography.hazmat.primitives.asymmetric import rsa

    if kind == "rsa":
        return rsa.RSAPublicNumbers(
            int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(pub[Attribute.MODULUS], "big"),
        ).public_key()
    return serialization.load_der_public_key(encode_ec_public_key(pub))


def _generate(session: Any, kind: str, label: str, key_id: bytes, keep_public: bool) -> Any:
    """Generate a signing key pair on the token; returns the public key object."""
    from pkcs11 import Attribute, KeyType, MechanismFlag
    from pkcs11.util.ec import encode_named_curve_parameters

    private_template = {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.PRIVATE: True,
        Attribute.SIGN: True,
    }
    public_template = {Attribute.TOKEN: keep_public}
    caps = MechanismFlag.SIGN | MechanismFlag.VERIFY
    if kind == "rsa":
        pub, _ = session.generate_keypair(
            KeyType.RSA, 2048, label=label, id=key_id, store=True, capabilities=caps,
            public_template=public_template, private_template=private_template)
    else:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        pub, _ = params.generate_keypair(
            label=label, id=key_id, store=True, capabilities=caps,
            public_template=public_template, private_template=private_template)
    return pub


def _store_certificate(session: Any, cert: x509.Certificate, label: str, key_id: bytes) -> None:
    from pkcs11 import Attribute, CertificateType, ObjectClass

    session.create_object({
        Attribute.CLASS: ObjectClass.CERTIFICATE,
        Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: False,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.SUBJECT: cert.subject.public_bytes(),
        Attribute.ISSUER: cert.issuer.public_bytes(),
        Attribute.VALUE: cert.public_bytes(serialization.Encoding.DER),
    })


#: (label, id, kind, public key kept on the token)
KEY_PLAN = (
    ("rsa-2048", b"\x01", "rsa", True),
    ("ec-p256", b"\x02", "ec", True),
    # No public key object on the token: the key source must prove the match another way.
    ("ec-p256-nopub", b"\x03", "ec", False),
)


def create_token(workdir: Path, *, label: str = TOKEN_LABEL, pin: str = USER_PIN,
                 so_pin: str = SO_PIN) -> SoftHsmToken:
    """Create a fresh token under ``workdir`` with the keys of :data:`KEY_PLAN`.

    Sets ``SOFTHSM2_CONF`` for this process. If python-pkcs11 already initialised the module
    with another configuration, it is re-initialised (sessions opened before are lost).
    """
    module = require_softhsm()
    import pkcs11

    tokendir = workdir / "tokens"
    tokendir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        check=True, capture_output=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    lib = pkcs11.lib(module)
    lib.reinitialize()  # make the module read this configuration and see the new token

    ca = _TestCa()
    result = SoftHsmToken(module=module, conf=conf, label=label, pin=pin, so_pin=so_pin,
                          ca_cert_path=_write_pem(workdir / "ca.pem", ca.cert))
    token = lib.get_token(token_label=label)
    with token.open(rw=True, user_pin=pin) as session:
        for key_label, key_id, kind, keep_public in KEY_PLAN:
            pub = _generate(session, kind, key_label, key_id, keep_public)
            cert = ca.issue(f"edoc signer {key_label}", _public_from_token(pub, kind))
            _store_certificate(session, cert, key_label, key_id)
            cert_path = _write_pem(workdir / f"{key_label}.pem", cert)
            result.keys[key_label] = TokenKey(key_label, key_id, kind, cert_path, keep_public)
    return result


_SHARED: SoftHsmToken | None = None


def shared_token(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    """One token per test process (SoftHSM's configuration is read once per process)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = create_token(tmp_path_factory.mktemp("softhsm"))
    else:
        require_softhsm()
    return _SHARED
