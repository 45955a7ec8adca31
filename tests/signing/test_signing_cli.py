"""The signing commands as a user runs them: ``python cli.py certs dev-init / sign / verify``.

Every failure must be one clear message and an exit code (1 bad input or key, 2 usage), never a
traceback, and a failed sign must leave no output file behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from connector.edxml.build import to_bytes
from connector.edxml.samples import sample_edoc, sample_status
from tests.conftest import ROOT, real_world_dir

H16 = "000.00.00.H16"


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **(env or {})})
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    return run


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A dev PKI made by the CLI, with the outputs of a first and a second dev-init."""
    directory = tmp_path_factory.mktemp("cli") / "pki"
    first = cli("certs", "dev-init", directory)
    snapshot = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    second = cli("certs", "dev-init", directory)
    return directory, first, second, snapshot


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-in") / "unsigned.edxml"
    path.write_bytes(to_bytes(sample_edoc()))
    return path


def agency(pki, code: str = H16) -> Path:
    return pki[0] / "agencies" / code


@pytest.fixture(scope="module")
def signed(pki, unsigned, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("cli-out") / "signed.edxml"
    run = cli("sign", unsigned, out, "--key", agency(pki) / "key.pem", "--cert", agency(pki) / "cert.pem",
              "--chain", pki[0] / "chain.pem")
    return out, run


# --------------------------------------------------------------------------- certs dev-init


def test_dev_init_creates_a_pki_and_keeps_it(pki):
    directory, first, second, snapshot = pki
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    for name in ("pki.json", "root-ca.pem", "issuing-ca.pem", "chain.pem", "trust/root-ca.pem",
                 "private/issuing-ca.key", f"agencies/{H16}/key.pem", f"agencies/{H16}/cert.pem",
                 f"agencies/{H16}/bundle.p12", f"agencies/{H16}/p12-passphrase.txt", "crl/issuing-ca.crl",
                 "ocsp/responder.pem", "revoked/cert.pem", "expired/cert.pem", "README.txt"):
        assert (directory / name).is_file(), name
    assert oct((directory / f"agencies/{H16}/key.pem").stat().st_mode & 0o777) == "0o600"
    assert second.returncode == 0, second.stderr
    assert "kept existing" in second.stdout
    # Nothing was regenerated: every file has the bytes it had after the first call.
    assert {p: p.read_bytes() for p in snapshot} == snapshot


# --------------------------------------------------------------------------- sign and verify


def test_sign_then_verify(pki, signed):
    out, run = signed
    assert run.returncode == 0, run.stderr
    assert "signed by" in run.stdout and H16 in run.stdout
    assert b"<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"" in out.read_bytes()
    check = cli("verify", out, "--trust", pki[0] / "trust")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "valid" in check.stdout and "accepted" in check.stdout
    assert "REFUSED" not in check.stdout


def test_verify_json(pki, signed):
    check = cli("verify", signed[0], "--trust", pki[0] / "trust", "--json")
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["verdict"]["status"] == "valid"
    assert H16 in report["verdict"]["signer_subject"]
    assert report["verdict"]["signing_time"]
    assert report["policy"] == "require"
    assert report["accepted"] is True
    assert report["problems"] == []


def test_verify_without_the_dev_root_is_untrusted(pki, signed, tmp_path):
    empty = tmp_path / "no-anchors"
    empty.mkdir()
    check = cli("verify", signed[0], "--trust", empty, "--json")
    assert check.returncode == 1
    assert json.loads(check.stdout)["verdict"]["status"] == "untrusted"


def test_tampered_file_is_invalid(pki, signed, tmp_path):
    data = signed[0].read_bytes()
    tampered = tmp_path / "tampered.edxml"
    tampered.write_bytes(data.replace("kết nối".encode(), "kết nốI".encode(), 1))
    assert tampered.read_bytes() != data
    check = cli("verify", tampered, "--trust", pki[0] / "trust")
    assert check.returncode == 1
    assert "invalid" in check.stdout and "REFUSED" in check.stdout
    record = cli("verify", tampered, "--trust", pki[0] / "trust", "--policy", "record", "--json")
    assert record.returncode == 0
    assert json.loads(record.stdout)["verdict"]["status"] == "invalid"


@pytest.mark.parametrize("policy, code", [("require", 1), ("if-present", 0), ("record", 0)])
def test_verify_placeholder_fixture_per_policy(pki, policy, code):
    fixture = real_world_dir() / "bkav__edoc_new.edxml"
    check = cli("verify", fixture, "--trust", pki[0] / "trust", "--policy", policy)
    assert check.returncode == code, check.stdout + check.stderr
    assert "placeholder" in check.stdout


def test_verify_of_something_that_is_not_edxml(tmp_path):
    junk = tmp_path / "junk.edxml"
    junk.write_text("<edXML><unclosed></edXML>")
    check = cli("verify", junk)
    assert check.returncode == 1
    assert "cannot be read as edXML" in check.stderr and "junk.edxml" in check.stderr


# --------------------------------------------------------------------------- key problems


def _sign_args(pki, unsigned, out, key=None, cert=None):
    return ["sign", unsigned, out, "--key", key or agency(pki) / "key.pem", "--cert", cert or agency(pki) / "cert.pem",
            "--chain", pki[0] / "chain.pem"]


def test_passphrase_reference_to_an_unset_variable(pki, unsigned, tmp_path):
    out = tmp_path / "out.edxml"
    run = cli(*_sign_args(pki, unsigned, out), "--passphrase", "env:EDOC_TEST_UNSET_PASSPHRASE")
    assert run.returncode == 1
    assert "EDOC_TEST_UNSET_PASSPHRASE" in run.stderr and "not set" in run.stderr
    assert not out.exists()


def test_literal_passphrase_is_refused_without_echoing_it(pki, unsigned, tmp_path):
    out = tmp_path / "out.edxml"
    run = cli(*_sign_args(pki, unsigned, out), "--passphrase", "hunter2-Secret")
    assert run.returncode == 1
    assert "env:NAME" in run.stderr
    assert "hunter2-Secret" not in run.stdout + run.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def encrypted_key(pki, tmp_path_factory) -> Path:
    key = serialization.load_pem_private_key((agency(pki) / "key.pem").read_bytes(), None)
    path = tmp_path_factory.mktemp("enc") / "key.enc.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"right-passphrase")))
    return path


def test_wrong_passphrase_for_an_encrypted_key(pki, unsigned, encrypted_key, tmp_path):
    secret = tmp_path / "passphrase.txt"
    secret.write_text("wrong-passphrase\n")
    out = tmp_path / "out.edxml"
    run = cli(*_sign_args(pki, unsigned, out, key=encrypted_key), "--passphrase", f"file:{secret}")
    assert run.returncode == 1
    assert "wrong passphrase" in run.stderr and str(encrypted_key) in run.stderr
    assert "wrong-passphrase" not in run.stderr
    assert not out.exists()
    missing = cli(*_sign_args(pki, unsigned, out, key=encrypted_key))
    assert missing.returncode == 1 and "no passphrase" in missing.stderr
    secret.write_text("right-passphrase\n")
    good = cli(*_sign_args(pki, unsigned, out, key=encrypted_key), "--passphrase", f"file:{secret}")
    assert good.returncode == 0, good.stderr
    assert cli("verify", out, "--trust", pki[0] / "trust").returncode == 0


def test_missing_key_file(pki, unsigned, tmp_path):
    out = tmp_path / "out.edxml"
    run = cli(*_sign_args(pki, unsigned, out, key=tmp_path / "nowhere.pem"))
    assert run.returncode == 2
    assert "nowhere.pem" in run.stderr and "does not exist" in run.stderr
    assert not out.exists()


def test_no_key_at_all(unsigned, tmp_path):
    out = tmp_path / "out.edxml"
    run = cli("sign", unsigned, out)
    assert run.returncode == 2
    assert "--key" in run.stderr and "--config" in run.stderr
    assert not out.exists()


def test_certificate_of_another_agency(pki, unsigned, tmp_path):
    out = tmp_path / "out.edxml"
    run = cli(*_sign_args(pki, unsigned, out, cert=agency(pki, "000.00.00.G22") / "cert.pem"))
    assert run.returncode == 1
    assert "does not match" in run.stderr
    assert not out.exists()


def test_status_message_is_not_signed(pki, tmp_path):
    status = tmp_path / "status.edxml"
    status.write_bytes(to_bytes(sample_status(sample_edoc())))
    out = tmp_path / "out.edxml"
    run = cli(*_sign_args(pki, status, out))
    assert run.returncode == 1
    assert "status" in run.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- --config


def _config(pki, tmp_path, passphrase: str) -> Path:
    """A TOML file in the PKI folder, with paths relative to it (as the example config says)."""
    config = pki[0] / f"signing-{tmp_path.name}.toml"
    config.write_text(
        "[signing.key]\n"
        'type = "pkcs12"\n'
        f'bundle = "agencies/{H16}/bundle.p12"\n'
        f'passphrase = "{passphrase}"\n',
        encoding="utf-8",
    )
    return config


def test_sign_with_a_pkcs12_config(pki, unsigned, tmp_path):
    config = _config(pki, tmp_path, f"file:agencies/{H16}/p12-passphrase.txt")
    out = tmp_path / "out.edxml"
    run = cli("sign", unsigned, out, "--config", config)
    assert run.returncode == 0, run.stderr
    check = cli("verify", out, "--trust", pki[0] / "trust", "--json")
    assert check.returncode == 0, check.stdout
    verdict = json.loads(check.stdout)["verdict"]
    assert verdict["status"] == "valid" and H16 in verdict["signer_subject"]


def test_pkcs12_config_with_a_wrong_passphrase(pki, unsigned, tmp_path):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-passphrase")
    out = tmp_path / "out.edxml"
    run = cli("sign", unsigned, out, "--config", _config(pki, tmp_path, f"file:{wrong}"))
    assert run.returncode == 1
    assert "wrong passphrase" in run.stderr and "bundle.p12" in run.stderr
    assert "not-the-passphrase" not in run.stderr
    assert not out.exists()


def test_config_with_a_literal_passphrase_is_refused(pki, unsigned, tmp_path):
    secret = (agency(pki) / "p12-passphrase.txt").read_text().strip()
    out = tmp_path / "out.edxml"
    run = cli("sign", unsigned, out, "--config", _config(pki, tmp_path, secret))
    assert run.returncode == 1
    assert "passphrase" in run.stderr
    assert secret not in run.stdout + run.stderr
    assert not out.exists()


def test_config_without_a_key_table(unsigned, tmp_path):
    config = tmp_path / "empty.toml"
    config.write_text("[signing]\nother = 1\n")
    run = cli("sign", unsigned, tmp_path / "out.edxml", "--config", config)
    assert run.returncode == 2
    assert "[signing.key]" in run.stderr
