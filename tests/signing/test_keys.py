"""Key sources: every source signs, the signature verifies with the certificate, and every
misconfiguration is a KeySourceError that names the file or token and never the secret.

All keys are generated at run time in temporary folders; no private key is committed.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from connector.signing.keys import (
    ECDSA_SHA256,
    RSA_PSS_SHA256,
    RSA_SHA256,
    KeySourceError,
    PemKey,
    Pkcs11Key,
    Pkcs12Key,
    SecretRef,
    SigningKey,
    SoftwareKey,
    load_signing_key,
)
from tests.support import softhsm

DATA = b"<ds:SignedInfo>canonical bytes</ds:SignedInfo>"
PASSPHRASE = "correct horse battery staple 42"


# --------------------------------------------------------------------------- material


def _cert(key: Any, common_name: str = "edoc test signer") -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: Any, passphrase: str | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(passphrase.encode())
                  if passphrase else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def rsa_files(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> dict[str, Path]:
    """Plain key, encrypted key and certificate for the RSA key."""
    files = {"key": tmp_path / "rsa.key", "enc": tmp_path / "rsa-enc.key", "cert": tmp_path / "rsa.pem"}
    files["key"].write_bytes(_pem_key(rsa_key))
    files["enc"].write_bytes(_pem_key(rsa_key, PASSPHRASE))
    files["cert"].write_bytes(_pem_cert(_cert(rsa_key)))
    return files


@pytest.fixture
def ec_files(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> dict[str, Path]:
    files = {"key": tmp_path / "ec.key", "cert": tmp_path / "ec.pem"}
    files["key"].write_bytes(_pem_key(ec_key))
    files["cert"].write_bytes(_pem_cert(_cert(ec_key)))
    return files


def _verify(key: SigningKey, signature: bytes, data: bytes = DATA) -> None:
    """Verify with cryptography directly, independent of the module under test."""
    public = key.certificate.public_key()
    if key.algorithm == RSA_SHA256:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    elif key.algorithm == RSA_PSS_SHA256:
        assert isinstance(public, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        public.verify(signature, data, pss, hashes.SHA256())
    elif key.algorithm == ECDSA_SHA256:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        size = (public.curve.key_size + 7) // 8
        assert len(signature) == 2 * size, "XMLDSig ECDSA is r || s, not DER"
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        public.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    else:  # pragma: no cover
        raise AssertionError(key.algorithm)


# --------------------------------------------------------------------------- PEM


def test_pem_rsa_default_is_rsa_sha256(rsa_files: dict[str, Path]) -> None:
    key = load_signing_key({"type": "pem", "key": str(rsa_files["key"]), "cert": str(rsa_files["cert"])})
    assert isinstance(key, SigningKey)
    assert key.algorithm == RSA_SHA256
    _verify(key, key.sign(DATA))
    with pytest.raises(InvalidSignature):
        key.public_key().verify(key.sign(DATA), DATA + b"x", padding.PKCS1v15(), hashes.SHA256())


def test_pem_rsa_pss(rsa_files: dict[str, Path]) -> None:
    key = load_signing_key({"type": "pem", "key": str(rsa_files["key"]), "cert": str(rsa_files["cert"]),
                            "algorithm": "rsa-pss-sha256"})
    assert key.algorithm == RSA_PSS_SHA256
    _verify(key, key.sign(DATA))


def test_pem_ecdsa_returns_raw_r_s(ec_files: dict[str, Path]) -> None:
    key = load_signing_key({"type": "pem", "key": str(ec_files["key"]), "cert": str(ec_files["cert"]),
                            "algorithm": "ecdsa-sha256"})
    assert key.algorithm == ECDSA_SHA256
    signatures = [key.sign(DATA) for _ in range(20)]
    assert all(len(s) == 64 for s in signatures)  # fixed width even when r or s is short
    for signature in signatures:
        _verify(key, signature)


def test_algorithm_uri_accepted(ec_files: dict[str, Path]) -> None:
    key = PemKey(ec_files["key"], ec_files["cert"], algorithm=ECDSA_SHA256)
    assert key.algorithm == ECDSA_SHA256


def test_encrypted_pem_with_env_passphrase(rsa_files: dict[str, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDOC_KEY_PASS", PASSPHRASE)
    key = load_signing_key({"type": "pem", "key": str(rsa_files["enc"]), "cert": str(rsa_files["cert"]),
                            "passphrase": "env:EDOC_KEY_PASS"})
    _verify(key, key.sign(DATA))


def test_encrypted_pem_without_passphrase(rsa_files: dict[str, Path]) -> None:
    with pytest.raises(KeySourceError, match="encrypted but no passphrase") as info:
        PemKey(rsa_files["enc"], rsa_files["cert"])
    assert str(rsa_files["enc"]) in str(info.value)


def test_encrypted_pem_wrong_passphrase(rsa_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "not the passphrase 0815"
    monkeypatch.setenv("EDOC_KEY_PASS", wrong)
    with pytest.raises(KeySourceError) as info:
        load_signing_key({"type": "pem", "key": str(rsa_files["enc"]), "cert": str(rsa_files["cert"]),
                          "passphrase": "env:EDOC_KEY_PASS"})
    message = str(info.value)
    assert str(rsa_files["enc"]) in message
    assert "wrong passphrase" in message
    assert wrong not in message and PASSPHRASE not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_passphrase_for_unencrypted_key(rsa_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDOC_KEY_PASS", PASSPHRASE)
    with pytest.raises(KeySourceError, match="not encrypted"):
        PemKey(rsa_files["key"], rsa_files["cert"], passphrase="env:EDOC_KEY_PASS")


def test_key_cert_mismatch(rsa_files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(_pem_cert(_cert(rsa.generate_private_key(public_exponent=65537, key_size=2048))))
    with pytest.raises(KeySourceError, match="public keys differ") as info:
        load_signing_key({"type": "pem", "key": str(rsa_files["key"]), "cert": str(other)})
    assert str(rsa_files["key"]) in str(info.value) and str(other) in str(info.value)


def test_algorithm_incompatible_with_key(ec_files: dict[str, Path], rsa_files: dict[str, Path]) -> None:
    with pytest.raises(KeySourceError, match="rsa-sha256 cannot be used with a EC key"):
        PemKey(ec_files["key"], ec_files["cert"], algorithm="rsa-sha256")
    with pytest.raises(KeySourceError, match="cannot be used with a RSA key"):
        PemKey(rsa_files["key"], rsa_files["cert"], algorithm="ecdsa-sha256")
    with pytest.raises(KeySourceError, match="unknown algorithm 'rsa-sha1'"):
        PemKey(rsa_files["key"], rsa_files["cert"], algorithm="rsa-sha1")


def test_missing_and_unreadable_files(rsa_files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(KeySourceError, match="private key file not found") as info:
        PemKey(missing, rsa_files["cert"])
    assert info.value.source == str(missing)
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeySourceError, match="not a readable private key"):
        PemKey(garbage, rsa_files["cert"])
    with pytest.raises(KeySourceError, match="certificate file not found"):
        PemKey(rsa_files["key"], tmp_path / "nope.pem")
    with pytest.raises(KeySourceError, match="no readable X.509"):
        PemKey(rsa_files["key"], garbage)


def test_short_rsa_key_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeySourceError, match="1024 bits is too short"):
        SoftwareKey(weak, _cert(weak))


def test_chain_from_cert_file_and_chain_file(rsa_key: rsa.RSAPrivateKey, rsa_files: dict[str, Path],
                                             tmp_path: Path) -> None:
    ca1, ca2 = (_cert(ec.generate_private_key(ec.SECP256R1()), f"CA {i}") for i in (1, 2))
    bundle = tmp_path / "leaf+ca1.pem"
    bundle.write_bytes(_pem_cert(_cert(rsa_key)) + _pem_cert(ca1))
    chain = tmp_path / "chain.pem"
    chain.write_bytes(_pem_cert(ca2))
    key = PemKey(rsa_files["key"], bundle, chain=chain)
    assert key.chain == [ca1, ca2]


def test_loaded_once_not_per_document(rsa_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDOC_KEY_PASS", PASSPHRASE)
    key = PemKey(rsa_files["enc"], rsa_files["cert"], passphrase="env:EDOC_KEY_PASS")
    rsa_files["enc"].unlink()
    monkeypatch.delenv("EDOC_KEY_PASS")
    _verify(key, key.sign(DATA))  # neither the file nor the passphrase is needed again


def test_relative_paths_from_base_dir(rsa_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    (rsa_files["key"].parent / "pass.txt").write_text(PASSPHRASE + "\n")
    key = load_signing_key({"type": "pem", "key": rsa_files["enc"].name, "cert": rsa_files["cert"].name,
                            "passphrase": "file:pass.txt"}, base_dir=rsa_files["key"].parent)
    _verify(key, key.sign(DATA))


# --------------------------------------------------------------------------- PKCS#12


@pytest.fixture
def p12_bundle(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> tuple[Path, x509.Certificate]:
    ca = _cert(ec.generate_private_key(ec.SECP256R1()), "bundle CA")
    path = tmp_path / "signer.p12"
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"signer", rsa_key, _cert(rsa_key), [ca], serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    return path, ca


def test_pkcs12_passphrase_from_env(p12_bundle: tuple[Path, x509.Certificate],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path, ca = p12_bundle
    monkeypatch.setenv("EDOC_P12_PASS", PASSPHRASE)
    key = load_signing_key({"type": "pkcs12", "bundle": str(path), "passphrase": "env:EDOC_P12_PASS"})
    assert isinstance(key, Pkcs12Key) and key.chain == [ca]
    _verify(key, key.sign(DATA))


def test_pkcs12_passphrase_from_file(p12_bundle: tuple[Path, x509.Certificate], tmp_path: Path) -> None:
    path, _ = p12_bundle
    secret = tmp_path / "p12.pass"
    secret.write_text(PASSPHRASE + "\n")  # an editor's trailing newline is not part of it
    key = load_signing_key({"type": "pkcs12", "bundle": str(path), "passphrase": f"file:{secret}",
                            "algorithm": "rsa-pss-sha256"})
    _verify(key, key.sign(DATA))


def test_pkcs12_wrong_passphrase(p12_bundle: tuple[Path, x509.Certificate], tmp_path: Path) -> None:
    path, _ = p12_bundle
    wrong = "hunter2-but-longer"
    secret = tmp_path / "p12.pass"
    secret.write_text(wrong)
    with pytest.raises(KeySourceError, match="wrong passphrase") as info:
        load_signing_key({"type": "pkcs12", "bundle": str(path), "passphrase": f"file:{secret}"})
    assert str(path) in str(info.value)
    assert wrong not in str(info.value) and PASSPHRASE not in str(info.value)


def test_pkcs12_not_a_bundle(tmp_path: Path) -> None:
    path = tmp_path / "notes.p12"
    path.write_text("hello")
    with pytest.raises(KeySourceError, match="not a PKCS#12 file"):
        Pkcs12Key(path)


# --------------------------------------------------------------------------- secrets & config


def test_secret_ref_repr_hides_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDOC_SECRET", PASSPHRASE)
    ref = SecretRef("env:EDOC_SECRET")
    assert ref.read() == PASSPHRASE.encode()
    assert PASSPHRASE not in repr(ref) and PASSPHRASE not in str(ref)
    assert "EDOC_SECRET" in repr(ref)
    secret = tmp_path / "s"
    secret.write_text(PASSPHRASE)
    assert PASSPHRASE not in repr(SecretRef(f"file:{secret}"))


def test_secret_ref_refuses_literals_without_echo() -> None:
    for literal in (PASSPHRASE, "plain:" + PASSPHRASE, "env:", "file:"):
        with pytest.raises(KeySourceError, match="literal secret is not accepted") as info:
            SecretRef(literal)
        assert PASSPHRASE not in str(info.value)
    with pytest.raises(KeySourceError) as info:
        load_signing_key({"type": "pkcs12", "bundle": "x.p12", "passphrase": PASSPHRASE})
    assert PASSPHRASE not in str(info.value) and "passphrase" in str(info.value)


def test_secret_ref_missing_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDOC_NOT_SET", raising=False)
    with pytest.raises(KeySourceError, match="EDOC_NOT_SET: not set"):
        SecretRef("env:EDOC_NOT_SET").read()
    with pytest.raises(KeySourceError, match="passphrase file not found"):
        SecretRef(f"file:{tmp_path / 'none'}").read()


def test_config_errors() -> None:
    with pytest.raises(KeySourceError, match="type: must be one of"):
        load_signing_key({"type": "jks"})
    with pytest.raises(KeySourceError, match="unknown field.*passpharse"):
        load_signing_key({"type": "pem", "key": "k", "cert": "c", "passpharse": "env:X"})
    with pytest.raises(KeySourceError, match="needs field.*cert"):
        load_signing_key({"type": "pem", "key": "k"})
    with pytest.raises(KeySourceError, match="key_id: must be hexadecimal"):
        load_signing_key({"type": "pkcs11", "module": "m", "token_label": "t", "pin": "env:X",
                          "key_id": "zz"})


# --------------------------------------------------------------------------- PKCS#11 on SoftHSM2


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> softhsm.SoftHsmToken:
    return softhsm.shared_token(tmp_path_factory)


@pytest.fixture
def p11(token: softhsm.SoftHsmToken, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Factory for token keys; every key made is closed after the test."""
    monkeypatch.setenv("EDOC_TOKEN_PIN", token.pin)
    made: list[Pkcs11Key] = []

    def make(key_label: str = "rsa-2048", **extra: Any) -> Pkcs11Key:
        spec = {"type": "pkcs11", "module": token.module, "token_label": token.label,
                "key_label": key_label, "pin": "env:EDOC_TOKEN_PIN", **extra}
        key = load_signing_key(spec)
        assert isinstance(key, Pkcs11Key)
        made.append(key)
        return key

    yield make
    for key in made:
        key.close()


@pytest.mark.parametrize("label, algorithm", [
    ("rsa-2048", None), ("rsa-2048", "rsa-pss-sha256"), ("ec-p256", None), ("ec-p256-nopub", None),
])
def test_pkcs11_signs_and_verifies(p11: Any, token: softhsm.SoftHsmToken, label: str,
                                   algorithm: str | None) -> None:
    key = p11(label, **({"algorithm": algorithm} if algorithm else {}))
    expected = {None: RSA_SHA256 if label.startswith("rsa") else ECDSA_SHA256,
                "rsa-pss-sha256": RSA_PSS_SHA256}[algorithm]
    assert key.algorithm == expected
    cert_file = x509.load_pem_x509_certificate(token.keys[label].cert_path.read_bytes())
    assert key.certificate == cert_file  # read from the token object with the same label
    _verify(key, key.sign(DATA))


def test_pkcs11_by_id_with_cert_file(p11: Any, token: softhsm.SoftHsmToken) -> None:
    entry = token.keys["ec-p256"]
    key = p11(None, key_id=entry.id.hex(), cert=str(entry.cert_path), chain=str(token.ca_cert_path))
    assert len(key.chain) == 1
    _verify(key, key.sign(DATA))


def test_pkcs11_private_key_stays_on_token(p11: Any) -> None:
    from pkcs11 import Attribute
    from pkcs11.exceptions import AttributeSensitive

    for label, secret_attr in (("rsa-2048", Attribute.PRIVATE_EXPONENT), ("ec-p256", Attribute.VALUE)):
        key = p11(label)
        private = key._key
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(AttributeSensitive):
            private[secret_attr]


def test_pkcs11_one_session_for_many_signatures(p11: Any) -> None:
    key = p11("rsa-2048")
    session = key._session
    for i in range(50):
        _verify(key, key.sign(DATA + str(i).encode()), DATA + str(i).encode())
    assert key._session is session
    assert key.sessions_opened == 1


def test_pkcs11_threads_share_the_session(p11: Any) -> None:
    key = p11("ec-p256")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                data = f"{n}-{i}".encode()
                _verify(key, key.sign(data), data)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert key.sessions_opened == 1


def test_pkcs11_reopens_a_lost_session_once(p11: Any) -> None:
    key = p11("rsa-2048")
    key._session.close()  # as if the token had dropped it
    _verify(key, key.sign(DATA))
    assert key.sessions_opened == 2
    _verify(key, key.sign(DATA))
    assert key.sessions_opened == 2


def test_pkcs11_two_keys_on_one_token(p11: Any) -> None:
    rsa_key, ec_key = p11("rsa-2048"), p11("ec-p256")  # the second finds the token logged in
    _verify(rsa_key, rsa_key.sign(DATA))
    _verify(ec_key, ec_key.sign(DATA))
    rsa_key.close()  # logs the token out for the whole process
    _verify(ec_key, ec_key.sign(DATA))  # recovers by reopening its session
    with pytest.raises(KeySourceError, match="closed"):
        rsa_key.sign(DATA)


def test_pkcs11_software_hash_fallback(p11: Any) -> None:
    """Tokens without the hash-and-sign mechanisms: hash here, sign with the raw mechanism.

    (SoftHSM 2.6 itself offers only raw CKM_ECDSA, so the EC tests above take this path.)
    """
    from pkcs11 import MGF, Mechanism

    key = p11("rsa-2048")
    key._mechanism, key._param, key._prehash = Mechanism.RSA_PKCS, None, True
    _verify(key, key.sign(DATA))
    pss = p11("rsa-2048", algorithm="rsa-pss-sha256")
    pss._mechanism, pss._param, pss._prehash = Mechanism.RSA_PKCS_PSS, (Mechanism.SHA256, MGF.SHA256, 32), True
    _verify(pss, pss.sign(DATA))


def test_pkcs11_wrong_pin(token: softhsm.SoftHsmToken, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "999999"
    monkeypatch.setenv("EDOC_TOKEN_PIN", wrong)
    with pytest.raises(KeySourceError, match="rejected the PIN") as info:
        Pkcs11Key(token.module, token.label, "env:EDOC_TOKEN_PIN", key_label="rsa-2048")
    assert token.label in str(info.value) and wrong not in str(info.value)


def test_pkcs11_token_and_key_not_found(token: softhsm.SoftHsmToken, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("EDOC_TOKEN_PIN", token.pin)
    with pytest.raises(KeySourceError, match=f"token not found .*'{token.label}'") as info:
        Pkcs11Key(token.module, "no-such-token", "env:EDOC_TOKEN_PIN", key_label="rsa-2048")
    assert "no-such-token" in str(info.value)
    with pytest.raises(KeySourceError, match="no private key with label 'missing'"):
        Pkcs11Key(token.module, token.label, "env:EDOC_TOKEN_PIN", key_label="missing")
    with pytest.raises(KeySourceError, match="PKCS#11 module not found"):
        Pkcs11Key(tmp_path / "libnothing.so", token.label, "env:EDOC_TOKEN_PIN", key_label="rsa-2048")


def test_pkcs11_mismatch_and_algorithm(p11: Any, token: softhsm.SoftHsmToken) -> None:
    with pytest.raises(KeySourceError, match="public keys differ"):
        p11("rsa-2048", cert=str(token.keys["ec-p256"].cert_path))
    with pytest.raises(KeySourceError, match="test signature does not verify"):
        p11("ec-p256-nopub", cert=str(token.keys["ec-p256"].cert_path))
    with pytest.raises(KeySourceError, match="rsa-pss-sha256 cannot be used with a EC key"):
        p11("ec-p256", algorithm="rsa-pss-sha256")


def test_pkcs11_failed_reopen_is_retried_later(p11: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = p11("ec-p256")
    key._session.close()
    monkeypatch.setenv("EDOC_TOKEN_PIN", "000000")  # e.g. the PIN file was being rewritten
    with pytest.raises(KeySourceError, match="rejected the PIN") as info:
        key.sign(DATA)
    assert "000000" not in str(info.value)
    monkeypatch.setenv("EDOC_TOKEN_PIN", softhsm.USER_PIN)
    _verify(key, key.sign(DATA))
