"""PKCS#11 key source when the token misbehaves after start-up, and precise start-up errors.

Each test gets its own SoftHSM2 token (its own folder and ``softhsm2.conf``), because the tests
remove it, change its PIN or delete its keys. SoftHSM reads its configuration when the module
is initialised, so the fixture re-initialises the module for the test's token and afterwards
for the configuration that was there before (the shared token other tests of this process use).

"Another process" (a clerk's tool, softhsm2-util) is a real subprocess working on the token's
files; SoftHSM2 in this process then sees the change as a token would show it.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from connector.signing.keys import (
    KeySourceError,
    KeyUnavailableError,
    Pkcs11Key,
    load_signing_key,
    verify_signature_value,
)
from tests.support import softhsm

DATA = b"<ds:SignedInfo>canonical bytes</ds:SignedInfo>"
PIN_VAR = "EDOC_RUNTIME_TOKEN_PIN"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[softhsm.SoftHsmToken]:
    """A fresh token for this test; the module's previous configuration is restored after."""
    softhsm.require_softhsm()
    import pkcs11

    previous = os.environ.get("SOFTHSM2_CONF")
    made = softhsm.create_token(tmp_path / "hsm")
    monkeypatch.setenv(PIN_VAR, made.pin)
    yield made
    for key in _KEYS:
        key.close()
    _KEYS.clear()
    lib = pkcs11.lib(made.module)
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
        lib.finalize()
    else:
        os.environ["SOFTHSM2_CONF"] = previous
        lib.reinitialize()


_KEYS: list[Pkcs11Key] = []


def _load(token: softhsm.SoftHsmToken, key_label: str = "rsa-2048", **extra: Any) -> Pkcs11Key:
    spec = {"type": "pkcs11", "module": token.module, "token_label": token.label,
            "key_label": key_label, "pin": f"env:{PIN_VAR}", **extra}
    key = load_signing_key(spec)
    assert isinstance(key, Pkcs11Key)
    _KEYS.append(key)
    return key


def _verifies(key: Pkcs11Key, signature: bytes, data: bytes = DATA) -> bool:
    return verify_signature_value(key.certificate.public_key(), key.algorithm, signature, data)  # type: ignore[arg-type]


def _token_dir(token: softhsm.SoftHsmToken) -> Path:
    folders = [p for p in (token.conf.parent / "tokens").iterdir() if p.is_dir()]
    assert len(folders) == 1
    return folders[0]


def _other_process(token: softhsm.SoftHsmToken, body: str) -> None:
    """Run ``body`` in another process with python-pkcs11 and the token's configuration.

    ``lib``, ``token`` (the token object), ``pin``, ``pkcs11`` and its names are in scope."""
    code = textwrap.dedent(f"""
        import pkcs11
        from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
        lib = pkcs11.lib({token.module!r})
        token = lib.get_token(token_label={token.label!r})
        pin = {token.pin!r}
    """) + textwrap.dedent(body)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SOFTHSM2_CONF": str(token.conf)}, check=False)
    assert run.returncode == 0, run.stderr


def _softhsm_util(token: softhsm.SoftHsmToken, *args: str) -> None:
    subprocess.run(["softhsm2-util", *args], check=True, capture_output=True,
                   env={**os.environ, "SOFTHSM2_CONF": str(token.conf)})


def _assert_retryable(info: pytest.ExceptionInfo[KeySourceError], token: softhsm.SoftHsmToken) -> str:
    """A retryable error, naming the token, without a chained traceback or the PIN."""
    exc = info.value
    assert isinstance(exc, KeyUnavailableError) and exc.retryable is True
    message = str(exc)
    assert f"PKCS#11 token {token.label!r}" in message
    assert token.pin not in message
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    return message


# --------------------------------------------------------------------------- while running


@pytest.mark.parametrize("how", ["folder moved away", "softhsm2-util --delete-token"])
def test_token_gone_then_back_signs_again_without_restart(token: softhsm.SoftHsmToken, tmp_path: Path,
                                                         how: str) -> None:
    key = _load(token)
    assert _verifies(key, key.sign(DATA))
    folder = _token_dir(token)
    aside = tmp_path / "token-aside"
    if how == "folder moved away":
        shutil.move(str(folder), str(aside))
    else:
        shutil.copytree(folder, aside)  # the same token, to put back later
        _softhsm_util(token, "--delete-token", "--token", token.label)
        assert not folder.exists()

    for _attempt in range(2):  # every attempt fails the same clear, retryable way
        with pytest.raises(KeySourceError) as info:
            key.sign(DATA)
        message = _assert_retryable(info, token)
        assert "not present" in message

    shutil.move(str(aside), str(folder))  # the token is plugged in again
    first = key.sign(DATA)
    assert _verifies(key, first)
    assert _verifies(key, key.sign(DATA + b"2"), DATA + b"2")
    assert key.sessions_opened == 2  # reopened once, then reused


def test_another_token_with_the_same_labels_is_refused(token: softhsm.SoftHsmToken) -> None:
    """A clerk plugs in another agency's token with the same token and key labels: refuse to
    sign with it (the signature would not match the certificate sent along)."""
    key = _load(token)
    _softhsm_util(token, "--delete-token", "--token", token.label)
    _softhsm_util(token, "--init-token", "--free", "--label", token.label, "--pin", token.pin,
                  "--so-pin", token.so_pin)
    _other_process(token, """
        with token.open(rw=True, user_pin=pin) as session:
            session.generate_keypair(KeyType.RSA, 2048, label="rsa-2048", id=b"\\x01", store=True,
                                     capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY)
    """)
    for _attempt in range(2):
        with pytest.raises(KeySourceError) as info:
            key.sign(DATA)
        message = _assert_retryable(info, token)
        assert "does not match the certificate loaded at start-up" in message


def test_module_finalised_by_someone_else_recovers(token: softhsm.SoftHsmToken) -> None:
    import pkcs11

    key = _load(token, "ec-p256")
    pkcs11.lib(token.module).finalize()  # e.g. another component of the process shut it down
    assert _verifies(key, key.sign(DATA))


def test_key_deleted_on_the_token_is_a_retryable_error(token: softhsm.SoftHsmToken) -> None:
    key = _load(token)
    _other_process(token, """
        with token.open(rw=True, user_pin=pin) as session:
            session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="rsa-2048").destroy()
    """)
    with pytest.raises(KeySourceError) as info:
        key.sign(DATA)
    assert "no private key with label 'rsa-2048'" in _assert_retryable(info, token)


class _CountingToken:
    """The real token object, counting how often its slot is asked for (each login needs it)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.uses = 0

    @property
    def slot(self) -> Any:
        self.uses += 1
        return self.real.slot


def test_pin_changed_on_the_token_is_not_retried_until_the_pin_file_changes(
        token: softhsm.SoftHsmToken, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pin_file = tmp_path / "token.pin"
    pin_file.write_text(token.pin + "\n")
    key = _load(token, pin=f"file:{pin_file}")
    new_pin = "975310"
    # The clerk changes the PIN with the token's tool. (SoftHSM2 keeps the PIN of a token it
    # has open in memory, so a PIN change by another process would not show here.)
    import pkcs11

    with pkcs11.lib(token.module).get_token(token_label=token.label).open(rw=True) as session:
        session.set_pin(token.pin, new_pin)  # this process is logged in: C_SetPIN needs no login
    key._session.close()  # the session is lost (closed elsewhere): a new login is needed

    with pytest.raises(KeySourceError) as info:
        key.sign(DATA)
    message = _assert_retryable(info, token)
    assert f"rejected the PIN from file {pin_file}" in message

    counting = key._token = _CountingToken(key._token)
    with pytest.raises(KeySourceError) as info:
        key.sign(DATA)
    message = _assert_retryable(info, token)
    assert "not presented again" in message and str(pin_file) in message
    assert counting.uses == 0  # the token was not even asked: no wrong PIN was presented

    pin_file.write_text(new_pin + "\n")  # the operator puts the new PIN in place
    assert _verifies(key, key.sign(DATA))
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert token.pin not in logged and new_pin not in logged


def test_pin_variable_gone_while_running_is_retryable(token: softhsm.SoftHsmToken,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    key = _load(token)
    key._session.close()
    monkeypatch.delenv(PIN_VAR)
    with pytest.raises(KeySourceError) as info:
        key.sign(DATA)
    assert f"environment variable {PIN_VAR}: not set" in _assert_retryable(info, token)
    monkeypatch.setenv(PIN_VAR, token.pin)
    assert _verifies(key, key.sign(DATA))


def test_closed_key_is_retryable(token: softhsm.SoftHsmToken) -> None:
    """A document being signed while the daemon stops stays queued, it is not made dead."""
    key = _load(token)
    key.close()
    with pytest.raises(KeySourceError, match="closed") as info:
        key.sign(DATA)
    assert info.value.retryable is True


# --------------------------------------------------------------------------- at start-up


def _add_key(token: softhsm.SoftHsmToken, label: str, key_id: bytes, private: dict[Any, Any],
             cert_for: str | None = None) -> None:
    """Generate an RSA key on the token (with extra private-key attributes) and store a
    certificate for it (or, with ``cert_for``, the certificate of another key) under its label."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, MechanismFlag
    from pkcs11.attributes import AttributeMapper

    mapper = AttributeMapper()  # python-pkcs11 cannot write CKA_ALLOWED_MECHANISMS by itself
    mapper.register_handler(Attribute.ALLOWED_MECHANISMS,
                            lambda v: b"".join(struct.pack("L", int(m)) for m in v),
                            lambda b: [m for (m,) in struct.iter_unpack("L", b)])
    lib = pkcs11.lib(token.module)
    with lib.get_token(token_label=token.label).open(rw=True, user_pin=token.pin,
                                                     attribute_mapper=mapper) as session:
        pub, _ = session.generate_keypair(
            KeyType.RSA, 2048, label=label, id=key_id, store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, **private})
        if cert_for is not None:
            cert = x509.load_pem_x509_certificate(token.keys[cert_for].cert_path.read_bytes())
        else:
            ca = softhsm._TestCa()  # another CA than the token's: these tests validate no chain
            cert = ca.issue(f"edoc signer {label}", softhsm._public_from_token(pub, "rsa"))
        softhsm._store_certificate(session, cert, label, key_id)


def test_key_not_allowed_to_sign_fails_at_start_up(token: softhsm.SoftHsmToken) -> None:
    from pkcs11 import Attribute

    _add_key(token, "no-sign", b"\x11", {Attribute.SIGN: False})
    with pytest.raises(KeySourceError) as info:
        _load(token, "no-sign")
    assert not isinstance(info.value, KeyUnavailableError)
    assert "label 'no-sign' is not allowed to sign (CKA_SIGN is false)" in str(info.value)
    assert info.value.__cause__ is None


def test_mechanism_the_key_refuses_fails_at_start_up(token: softhsm.SoftHsmToken) -> None:
    from pkcs11 import Attribute, Mechanism

    _add_key(token, "pss-only", b"\x12", {Attribute.ALLOWED_MECHANISMS: [Mechanism.SHA256_RSA_PKCS_PSS]})
    with pytest.raises(KeySourceError) as info:
        _load(token, "pss-only")  # default algorithm rsa-sha256: CKM_SHA256_RSA_PKCS
    message = str(info.value)
    assert "refuses to sign with CKM_SHA256_RSA_PKCS" in message and "choose another algorithm" in message
    key = _load(token, "pss-only", algorithm="rsa-pss-sha256")
    assert _verifies(key, key.sign(DATA))


def test_two_keys_with_the_label(token: softhsm.SoftHsmToken) -> None:
    _add_key(token, "rsa-2048", b"\x13", {})
    with pytest.raises(KeySourceError, match="several private keys match label 'rsa-2048'; give key_id too"):
        _load(token)
    key = _load(token, key_id="01")
    assert _verifies(key, key.sign(DATA))


def test_certificate_on_the_token_of_another_key(token: softhsm.SoftHsmToken) -> None:
    _add_key(token, "wrong-cert", b"\x14", {}, cert_for="rsa-2048")
    with pytest.raises(KeySourceError, match="does not match the certificate on the token .*public keys differ"):
        _load(token, "wrong-cert")


def test_token_label_typo_and_missing_key(token: softhsm.SoftHsmToken) -> None:
    with pytest.raises(KeySourceError) as info:
        Pkcs11Key(token.module, token.label + "x", f"env:{PIN_VAR}", key_label="rsa-2048")
    assert f"token not found (tokens present: {token.label!r})" in str(info.value)
    assert "''" not in str(info.value)  # SoftHSM's free slot is not listed as a token
    with pytest.raises(KeySourceError, match="no private key with label 'rsa-2084'"):
        _load(token, "rsa-2084")


@pytest.mark.parametrize("make", ["folder", "text file", "shared library"])
def test_module_path_that_is_not_a_pkcs11_module(token: softhsm.SoftHsmToken, tmp_path: Path,
                                                 make: str) -> None:
    if make == "folder":
        module, expected = tmp_path, "is a folder; expected the PKCS#11 module file"
    elif make == "text file":
        module = tmp_path / "libpkcs11.so"
        module.write_text("not a library\n")
        expected = "cannot be loaded as a shared library ("
    else:
        import _ctypes

        module, expected = Path(_ctypes.__file__), "is a shared library but not a PKCS#11 module"
    with pytest.raises(KeySourceError) as info:
        Pkcs11Key(module, token.label, f"env:{PIN_VAR}", key_label="rsa-2048")
    assert info.value.source == str(module)
    assert expected in info.value.problem


def test_module_that_fails_to_initialise(token: softhsm.SoftHsmToken, tmp_path: Path) -> None:
    """SoftHSM2 without its configuration file: the module loads but C_Initialize fails. (Run in
    a fresh process: this one has the module initialised already.)"""
    code = textwrap.dedent(f"""
        from connector.signing.keys import KeySourceError, Pkcs11Key
        try:
            Pkcs11Key({token.module!r}, {token.label!r}, "env:{PIN_VAR}", key_label="rsa-2048")
        except KeySourceError as exc:
            print("ERROR", exc)
    """)
    env = {**os.environ, "SOFTHSM2_CONF": str(tmp_path / "no-such.conf")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[2], check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (f"ERROR {token.module}: the PKCS#11 module failed to start (GeneralError); "
                                  "check its installation and configuration")


def test_wrong_pin_at_start_up_names_its_source_not_its_value(
        token: softhsm.SoftHsmToken, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "864200"
    monkeypatch.setenv(PIN_VAR, wrong)
    with pytest.raises(KeySourceError) as info:
        _load(token)
    assert not isinstance(info.value, KeyUnavailableError)
    assert f"rejected the PIN from environment variable {PIN_VAR}" in str(info.value)
    assert wrong not in str(info.value) and wrong not in caplog.text


@pytest.mark.parametrize("pin, expected", [
    (f"env:{PIN_VAR}_UNSET", f"environment variable {PIN_VAR}_UNSET: not set (PIN)"),
    (f"env:{PIN_VAR}_EMPTY", f"environment variable {PIN_VAR}_EMPTY: empty (PIN)"),
    ("file:{dir}/missing.pin", "{dir}/missing.pin: PIN file not found"),
    ("file:{dir}/empty.pin", "{dir}/empty.pin: PIN file is empty"),
])
def test_pin_source_missing_or_empty(token: softhsm.SoftHsmToken, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, pin: str, expected: str) -> None:
    monkeypatch.delenv(f"{PIN_VAR}_UNSET", raising=False)
    monkeypatch.setenv(f"{PIN_VAR}_EMPTY", "")
    (tmp_path / "empty.pin").write_text("\n")
    with pytest.raises(KeySourceError) as info:
        _load(token, pin=pin.format(dir=tmp_path))
    assert str(info.value) == expected.format(dir=tmp_path)
    assert not isinstance(info.value, KeyUnavailableError)
