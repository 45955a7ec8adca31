"""Defects an audit of ``sign``, ``verify`` and ``certs dev-init`` found, one test (or more) each.

1. sign: a document that cannot be written (BuildError) or that validation refuses is named,
   exit 1, never "unexpected BuildError".
2. sign: an empty OUTPUT is a usage error; a long output name leaves room for the temporary file.
3. verify --trust: a missing folder is a usage error; an empty one is named in the verdict;
   dangling links and garbage files are reported in the project's words.
4. verify: a KeyInfo certificate that cannot be read is named by position, and a mismatch
   does not name the CA that accompanied a damaged signer certificate.
5. sign: refuses certificates its own verify refuses (expired, other agency, CA, TLS server).
6. sign: says what of the input it does not carry (unknown attributes, Signature elements).
7. sign --config: errors of [signing.key] name the file and the key.
8. verify --revocation hard-fail: no doubled "revocation status unavailable"; a chain file
   says which certificate cannot be read.
9. certs dev-init: refuses a foreign non-empty folder without --force; says why it regenerates.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import signing_commands
from connector.edxml.build import BuildError, to_bytes
from connector.edxml.samples import sample_edoc
from connector.signing import verify as fast
from connector.signing.devpki import DevPki, create_dev_pki, foreign_content
from connector.signing.keys import KeySourceError, load_signing_key
from connector.signing.revocation import FetchError, RevocationChecker
from connector.signing.signer_check import signing_certificate_problems
from connector.signing.trust import TrustStore
from tests.signing import reference_verify as reference
from tests.signing.test_signing_cli import cli
from tests.support.dsig_tools import agency_key, signed_bytes

H16, G22 = "000.00.00.H16", "000.00.00.G22"


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audit-in") / "unsigned.edxml"
    path.write_bytes(to_bytes(sample_edoc()))
    return path


@pytest.fixture(scope="module")
def signed_file(dev_pki: DevPki, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audit-signed") / "signed.edxml"
    path.write_bytes(signed_bytes(sample_edoc(), agency_key(dev_pki)))
    return path


def key_args(pki: DevPki, key: Path | None = None, cert: Path | None = None) -> list:
    agency = pki.agencies[H16]
    return ["--key", key or agency.key_path, "--cert", cert or agency.cert_path, "--chain", pki.chain_path]


def variant(tmp_path: Path, source: Path, name: str, old: str, new: str) -> Path:
    text = source.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- 1. build errors


def test_attachment_without_content_is_refused_naming_the_file(dev_pki, unsigned, tmp_path):
    text = unsigned.read_text(encoding="utf-8")
    stripped = re.sub(r"<edXML:ContentTransferEncoded.*?</edXML:ContentTransferEncoded>", "", text, flags=re.S)
    assert stripped != text
    source = tmp_path / "nocte.edxml"
    source.write_text(stripped, encoding="utf-8")
    out = tmp_path / "out.edxml"
    run = cli("sign", source, out, *key_args(dev_pki))
    assert run.returncode == 1, run.stderr
    assert str(source) in run.stderr
    assert "unexpected" not in run.stderr
    assert not out.exists()


def test_a_build_error_while_signing_names_the_input(dev_pki, unsigned, tmp_path, monkeypatch):
    """Whatever validation lets through, a BuildError from the writer is exit 1 naming the input."""
    def failing_sign(*args, **kwargs):
        raise BuildError("Attachment 'cv.pdf': no content to attach (data is missing)")

    monkeypatch.setattr(signing_commands, "sign", failing_sign)
    out = tmp_path / "out.edxml"
    result = CliRunner().invoke(signing_commands.sign_cmd, [str(unsigned), str(out), *map(str, key_args(dev_pki))])
    assert result.exit_code == 1, result.output
    assert f"{unsigned}: not signed" in result.output and "no content to attach" in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


# --------------------------------------------------------------------------- 2. output path


@pytest.mark.parametrize("output", ["", "  "])
def test_empty_output_is_a_usage_error(dev_pki, unsigned, output):
    run = cli("sign", unsigned, output, *key_args(dev_pki))
    assert run.returncode == 2, run.stderr
    assert "OUTPUT" in run.stderr and "empty" in run.stderr
    assert "unexpected" not in run.stderr


@pytest.mark.parametrize("length", [242, 255])
def test_long_output_name_signs(dev_pki, unsigned, tmp_path, length):
    name = "a" * (length - len(".edxml")) + ".edxml"
    assert len(name.encode()) == length
    out = tmp_path / name
    run = cli("sign", unsigned, out, *key_args(dev_pki))
    assert run.returncode == 0, run.stderr
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_the_temporary_file_is_short_and_not_derived_from_the_output(dev_pki, unsigned, tmp_path, monkeypatch):
    seen = []
    real = signing_commands.tempfile.mkstemp

    def spy(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        seen.append(Path(name).name)
        return fd, name

    monkeypatch.setattr(signing_commands.tempfile, "mkstemp", spy)
    out = tmp_path / "some-long-output-name.edxml"
    result = CliRunner().invoke(signing_commands.sign_cmd, [str(unsigned), str(out), *map(str, key_args(dev_pki))])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1 and seen[0].startswith(".tmp-") and "some-long" not in seen[0]
    assert len(seen[0]) < 30


def test_a_failed_sign_leaves_no_file_and_removes_the_folders_it_created(dev_pki, unsigned, tmp_path, monkeypatch):
    def token_gone(message, key, fh):
        fh.write(b"<edXML")  # half a document, as a key failing mid-way leaves it
        raise KeySourceError("token", "the PKCS#11 token was removed")

    monkeypatch.setattr(signing_commands, "sign", token_gone)
    out = tmp_path / "new" / "deeper" / "signed.edxml"
    result = CliRunner().invoke(signing_commands.sign_cmd, [str(unsigned), str(out), *map(str, key_args(dev_pki))])
    assert result.exit_code == 1, result.output
    assert "the PKCS#11 token was removed" in result.output
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- 3. trust folder


def test_missing_trust_folder_is_a_usage_error(signed_file, tmp_path):
    missing = tmp_path / "nowhere"
    run = cli("verify", signed_file, "--trust", missing)
    assert run.returncode == 2
    assert str(missing) in run.stderr and "does not exist" in run.stderr


def test_empty_trust_folder_is_named_in_the_verdict(signed_file, tmp_path):
    empty = tmp_path / "anchors"
    empty.mkdir()
    run = cli("verify", signed_file, "--trust", empty, "--json")
    assert run.returncode == 1
    verdict = json.loads(run.stdout)["verdict"]
    assert verdict["status"] == "untrusted"
    assert verdict["reason"] == f"no trust anchor (*.pem) in {empty}"


def test_dangling_link_and_garbage_files_are_reported(dev_pki, signed_file, tmp_path):
    folder = tmp_path / "anchors"
    folder.mkdir()
    (folder / "root.pem").write_bytes(dev_pki.trust_dir.joinpath("root-ca.pem").read_bytes())
    (folder / "garbage.pem").write_text("garbage\n")
    (folder / "short.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (folder / "gone.pem").symlink_to(tmp_path / "deleted.pem")
    store = TrustStore.from_directory(folder)
    reasons = {s.path.name: s.reason for s in store.skipped}
    assert set(reasons) == {"garbage.pem", "short.pem", "gone.pem"}
    assert reasons["gone.pem"].startswith("unreadable")
    assert "not a PEM certificate" in reasons["garbage.pem"]
    assert "certificate 1 of 1 cannot be read" in reasons["short.pem"]
    assert not any("ParseError" in r or "asn1" in r for r in reasons.values())
    run = cli("verify", signed_file, "--trust", folder)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("garbage.pem", "short.pem", "gone.pem"):
        assert str(folder / name) in run.stdout
    assert "ParseError" not in run.stdout + run.stderr


def test_a_folder_of_garbage_names_the_files_in_the_reason(signed_file, tmp_path):
    folder = tmp_path / "anchors"
    folder.mkdir()
    (folder / "garbage.pem").write_text("garbage\n")
    run = cli("verify", signed_file, "--trust", folder, "--json")
    report = json.loads(run.stdout)
    assert report["verdict"]["reason"].startswith(f"no trust anchor (*.pem) in {folder} (skipped: garbage.pem: ")
    assert report["trust_warnings"] and "garbage.pem" in report["trust_warnings"][0]


# --------------------------------------------------------------------------- 4. damaged KeyInfo certificates


def _certificate_texts(data: bytes) -> list[bytes]:
    return re.findall(rb"<X509Certificate>(.*?)</X509Certificate>", data)


def _damage(data: bytes, index: int, how: str) -> bytes:
    text = _certificate_texts(data)[index]
    if how == "half":
        damaged = text[: len(text) // 2]
    else:  # the first character: the DER SEQUENCE tag (0x30, base64 "M") no longer is one
        damaged = (b"A" if text[:1] != b"A" else b"B") + text[1:]
    assert damaged != text
    return data.replace(text, damaged, 1)


@pytest.fixture(scope="module")
def signed_with_chain(dev_pki) -> bytes:
    data = signed_bytes(sample_edoc(), agency_key(dev_pki))
    assert len(_certificate_texts(data)) == 2  # the signer, then the issuing CA
    return data


def _both(data: bytes, trust: fast.TrustOptions) -> dict:
    """The verdict, after checking the frozen reference decides exactly alike."""
    with fast.verify(data, trust) as new, reference.verify(data, trust) as old:
        assert new.verdict.to_dict() == old.verdict.to_dict()
        return new.verdict.to_dict()


@pytest.mark.parametrize("how", ["half", "flip"])
def test_damaged_signer_certificate_is_named_and_the_ca_is_not_the_signer(signed_with_chain, trust_store, how):
    verdict = _both(_damage(signed_with_chain, 0, how), fast.TrustOptions(trust_store))
    assert verdict["status"] == "invalid"
    assert "KeyInfo certificate 1 of 2 cannot be read (damaged or truncated)" in verdict["reason"]
    assert verdict["signer_subject"] is None and verdict["signer_serial"] is None
    assert "Issuing CA" not in json.dumps(verdict, ensure_ascii=False)


def test_damaged_signer_certificate_on_the_command_line(signed_with_chain, dev_pki, tmp_path):
    path = tmp_path / "damaged.edxml"
    path.write_bytes(_damage(signed_with_chain, 0, "half"))
    run = cli("verify", path, "--trust", dev_pki.trust_dir, "--json")
    verdict = json.loads(run.stdout)["verdict"]
    assert run.returncode == 1
    assert "KeyInfo certificate 1 of 2 cannot be read" in verdict["reason"]
    assert verdict["signer_subject"] is None


def test_damaged_accompanying_certificate_is_named_too(signed_with_chain, trust_store):
    verdict = _both(_damage(signed_with_chain, 1, "half"), fast.TrustOptions(trust_store))
    assert verdict["status"] == "untrusted"  # the issuing CA it needed cannot be read
    assert "KeyInfo certificate 2 of 2 cannot be read (damaged or truncated)" in verdict["reason"]
    assert H16 in verdict["signer_subject"]  # the signer's own certificate was read and verified


def test_no_readable_certificate_stays_a_placeholder_saying_which(signed_with_chain, trust_store):
    data = _damage(_damage(signed_with_chain, 0, "half"), 1, "half")
    verdict = _both(data, fast.TrustOptions(trust_store))
    assert verdict["status"] == "placeholder"
    assert "KeyInfo certificates 1, 2 of 2 cannot be read" in verdict["reason"]


def test_intact_signature_verdict_is_unchanged(signed_with_chain, trust_store):
    verdict = _both(signed_with_chain, fast.TrustOptions(trust_store))
    assert verdict["status"] == "valid"
    assert verdict["reason"] == "signature verified and the certificate chains to a trust anchor"
    assert not any("cannot be read" in w for w in verdict["warnings"])


# --------------------------------------------------------------------------- 5. certificates verify would refuse


@pytest.mark.parametrize("which, expected", [
    ("expired", "expired on"),
    ("other-agency", f"belongs to agency {G22}, but the document comes from {H16}"),
    ("issuing-ca", "is a CA certificate"),
    ("tls-server", "allows no document signing"),
])
def test_sign_refuses_certificates_verify_refuses(dev_pki, unsigned, tmp_path, which, expected):
    credential = {
        "expired": dev_pki.expired,
        "other-agency": dev_pki.agencies[G22],
        "issuing-ca": dev_pki.issuing_ca,
        "tls-server": dev_pki.tls_server,
    }[which]
    out = tmp_path / "out.edxml"
    run = cli("sign", unsigned, out, *key_args(dev_pki, credential.key_path, credential.cert_path))
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"{unsigned}: not signed" in run.stderr and expected in run.stderr
    assert not out.exists()


def test_signing_certificate_problems(dev_pki, odd_certs):
    now = dt.datetime.now(dt.UTC)
    assert signing_certificate_problems(dev_pki.agencies[H16].certificate, sender=H16) == []
    assert signing_certificate_problems(dev_pki.agencies[H16].certificate, sender=None) == []
    no_ds = signing_certificate_problems(odd_certs.no_digital_signature, sender="000.00.00.H14")
    assert no_ds == ["the certificate's key usage does not include digitalSignature"]
    future = signing_certificate_problems(dev_pki.agencies[H16].certificate, sender=H16,
                                          at=now - dt.timedelta(days=30))
    assert len(future) == 1 and "not valid before" in future[0]


# --------------------------------------------------------------------------- 6. what sign does not carry


def test_sign_says_what_it_does_not_carry(dev_pki, unsigned, signed_file, tmp_path):
    attribute = variant(tmp_path, unsigned, "attr.edxml", "<edXML:Subject>", '<edXML:Subject foo="bar">')
    signature = re.search(r"<Signature .*?</Signature>", signed_file.read_text(encoding="utf-8"), re.S).group(0)
    elsewhere = variant(tmp_path, unsigned, "elsewhere.edxml", "</edXML:MessageHeader>",
                        signature + "</edXML:MessageHeader>")
    second = variant(tmp_path, signed_file, "second.edxml", "</edXML:edXMLHeader>", signature + "</edXML:edXMLHeader>")
    expectations = {
        attribute: [r"attr\.edxml, line \d+, \S+/Subject: warning: unknown attribute foo .*; not carried into the signed document"],
        elsewhere: [r"elsewhere\.edxml, line \d+, \S+/MessageHeader/Signature: warning: .*Signature.*not carried into the signed document"],
        second: [r"second\.edxml, line \d+, \S+/edXMLHeader/Signature\[1\]: warning: existing Signature not carried",
                 r"second\.edxml, line \d+, \S+/edXMLHeader/Signature\[2\]: warning: existing Signature not carried"],
    }
    for source, patterns in expectations.items():
        out = tmp_path / f"signed-{source.name}"
        run = cli("sign", source, out, *key_args(dev_pki))
        assert run.returncode == 0, run.stderr
        for pattern in patterns:
            assert re.search(pattern, run.stderr), (pattern, run.stderr)
        assert out.exists()
    plain = cli("sign", unsigned, tmp_path / "plain.edxml", *key_args(dev_pki))
    assert plain.returncode == 0 and "not carried" not in plain.stderr


# --------------------------------------------------------------------------- 7. --config errors


def test_config_errors_name_the_file_and_the_key(unsigned, tmp_path):
    config = tmp_path / "t.toml"
    config.write_text('[signing.key]\ntype = "bogus"\n')
    run = cli("sign", unsigned, tmp_path / "o.edxml", "--config", config)
    assert run.returncode == 1
    assert f"{config}: [signing.key] type: must be one of pem, pkcs12, pkcs11 (got 'bogus')" in run.stderr
    config.write_text('[signing.key]\ntype = "pem"\nkey = "k.pem"\ncert = 1\n')
    run = cli("sign", unsigned, tmp_path / "o.edxml", "--config", config)
    assert f"{config}: [signing.key] cert: must be a string" in run.stderr
    config.write_text('[signing.key]\ntype = "pem"\nkey = "k.pem"\ncert = "c.pem"\n')
    run = cli("sign", unsigned, tmp_path / "o.edxml", "--config", config)
    assert run.returncode == 1
    assert str(config) in run.stderr and "k.pem" in run.stderr and "not found" in run.stderr


# --------------------------------------------------------------------------- 8. revocation and chain files


def test_hard_fail_reason_is_not_doubled(signed_file, trust_store):
    def unreachable(url, body, content_type, timeout):
        raise FetchError("connection refused")

    checker = RevocationChecker("hard-fail", fetch=unreachable)
    trust = fast.TrustOptions(trust_store, checker)
    with fast.verify(signed_file.read_bytes(), trust) as new, reference.verify(signed_file.read_bytes(), trust) as old:
        verdict = new.verdict
        assert verdict.to_dict() == old.verdict.to_dict()
    assert verdict.status == "untrusted"
    assert verdict.reason.startswith("revocation status unavailable: ")
    assert verdict.reason.count("revocation status unavailable") == 1, verdict.reason


def test_hard_fail_on_the_command_line_is_not_doubled(signed_file, dev_pki, pki_server):
    with pki_server.down():  # the certificate's OCSP responder and CRL point do not answer
        run = cli("verify", signed_file, "--trust", dev_pki.trust_dir, "--revocation", "hard-fail")
    assert run.returncode == 1, run.stdout
    assert "revocation status unavailable" in run.stdout
    assert "revocation status unavailable: revocation status unavailable" not in run.stdout


@pytest.mark.parametrize("cut", ["keep-end-line", "no-end-line"])
def test_chain_file_names_the_certificate_that_cannot_be_read(dev_pki, tmp_path, cut):
    root = (dev_pki.directory / "root-ca.pem").read_text()
    lines = root.splitlines()
    half = lines[: len(lines) // 2] + (lines[-1:] if cut == "keep-end-line" else [])
    chain = tmp_path / "chain.pem"
    chain.write_text(dev_pki.agencies[H16].cert_path.read_text() + dev_pki.issuing_ca.cert_path.read_text()
                     + "\n".join(half) + "\n")
    agency = dev_pki.agencies[H16]
    with pytest.raises(KeySourceError) as caught:
        load_signing_key({"type": "pem", "key": str(agency.key_path), "cert": str(agency.cert_path),
                          "chain": str(chain)})
    assert "certificate 3 of 3 cannot be read (damaged or truncated)" in str(caught.value)
    assert str(chain) in str(caught.value)


# --------------------------------------------------------------------------- 9. dev-init


def test_dev_init_refuses_a_foreign_folder_without_force(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.txt").write_text("my notes")
    (folder / "chain.pem").write_text("my chain")
    run = cli("certs", "dev-init", folder)
    assert run.returncode == 1
    assert str(folder) in run.stderr and "README.txt" in run.stderr and "--force" in run.stderr
    assert (folder / "README.txt").read_text() == "my notes"
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "chain.pem"]


def test_dev_init_force_into_a_foreign_folder_says_what_it_replaced(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.txt").write_text("my notes")
    (folder / "keep.md").write_text("untouched")
    run = cli("certs", "dev-init", folder, "--force")
    assert run.returncode == 0, run.stderr
    assert "replacing README.txt" in run.stdout
    assert (folder / "keep.md").read_text() == "untouched"
    assert foreign_content(folder) == []  # now a PKI made here


def test_dev_init_says_why_it_regenerates(tmp_path):
    folder = tmp_path / "pki"
    assert cli("certs", "dev-init", folder).returncode == 0
    (folder / "agencies" / H16 / "key.pem").unlink()
    run = cli("certs", "dev-init", folder)
    assert run.returncode == 0, run.stderr
    assert f"regenerated the whole development PKI in {folder}: agencies/{H16}/key.pem is missing" in run.stdout


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "tls" / "server.pem").write_text("garbage"), "tls/server.pem is damaged"),
    (lambda d: (d / "private" / "root-ca.key").write_text("garbage"), "private/root-ca.key is damaged"),
    (lambda d: (d / "chain.pem").unlink(), "chain.pem is missing"),
])
def test_create_dev_pki_names_what_made_it_regenerate(small_pki_dir, damage, reason):
    one = {H16: "UBND tỉnh Đắk Nông"}
    first = create_dev_pki(small_pki_dir, agencies=one)
    assert (first.created, first.regenerated) == (True, "")
    damage(small_pki_dir)
    again = create_dev_pki(small_pki_dir, agencies=one)
    assert again.created and reason in again.regenerated
    assert again.root_ca.certificate != first.root_ca.certificate
    kept = create_dev_pki(small_pki_dir, agencies=one)
    assert (kept.created, kept.regenerated) == (False, "")
    other = create_dev_pki(small_pki_dir, agencies=one, ocsp_url="http://127.0.0.1:1/ocsp")
    assert "OCSP URL" in other.regenerated


def test_sign_and_verify_share_the_signer_extension_rules(dev_pki):
    """A certificate without KeyUsage: chain validation refuses it, so the check before
    signing does too (one set of rules, trust.leaf_extension_problems, serves both)."""
    from cryptography import x509 as x
    from cryptography.hazmat.primitives import hashes

    from connector.signing.devpki import agency_name
    from connector.signing.trust import validate_chain

    now = dt.datetime.now(dt.UTC)
    issuing = dev_pki.issuing_ca
    key = dev_pki.agencies[H16].private_key()
    bare = (x.CertificateBuilder().subject_name(agency_name(H16, "UBND tỉnh Đắk Nông"))
            .issuer_name(issuing.certificate.subject).public_key(key.public_key())
            .serial_number(x.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .sign(issuing.private_key(), hashes.SHA256()))
    before_signing = signing_certificate_problems(bare, sender=H16)
    assert before_signing == ["the certificate has no KeyUsage extension, which a document signer's certificate must carry"]
    chain = validate_chain(bare, dev_pki.intermediates, at=now, store=TrustStore.from_directory(dev_pki.trust_dir))
    assert chain.verdict == "untrusted"
    assert "2.5.29.15: Certificate is missing required extension" in chain.reason  # 2.5.29.15: keyUsage
