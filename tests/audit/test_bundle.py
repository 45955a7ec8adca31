"""Export bundles: checkable offline by ``verify_bundle`` and, step by step, with the standard
tools the README names (sha256sum, openssl, python3 without the connector); tampering with any
file of a bundle is located."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.audit import (
    AuditError,
    AuditEvent,
    AuditLog,
    Sealer,
    TsaClient,
    create_tables,
)
from connector.audit.bundle import export_bundle, verify_bundle
from connector.audit.standalone import entry_hash, entry_line
from connector.signing.trust import TrustStore
from connector.store.evidence import EvidenceStore
from tests.audit.helpers import FakeClock, fill, flip_byte, sqlite_engine


def readme_commands(folder: Path) -> list[str]:
    return [line.strip()[2:] for line in (folder / "README.txt").read_text().splitlines()
            if line.startswith("  $ ")]


def run(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True, check=False)


def extract(bundle: Path, folder: Path) -> Path:
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(folder)
    return folder


def where(report) -> list[str]:
    return [p.where for p in report.problems]


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "rsa-pss-sha256", "ecdsa-sha256"])
def test_the_readme_steps_check_the_bundle_with_standard_tools(make_env, tsa_server, audit_pki, tmp_path, algorithm):
    env = make_env(tsa=True, key=algorithm)
    fill(env, 7)
    env.log.seal()
    fill(env, 5, start=7)
    env.log.seal()
    result = export_bundle(env.engine, env.evidence, tmp_path / "b.zip", document_id="DOC-0", tsa_ca=audit_pki.tsa_ca)
    assert (result.entries, result.selected, result.batches, result.evidence_files) == (12, 4, 2, 4)
    report = verify_bundle(result.path)
    assert report.ok, report.problems
    assert report.timestamps_checked == 2 and report.entries == 12

    folder = extract(result.path, tmp_path / "x")
    commands = readme_commands(folder)
    assert len(commands) == 8
    outputs = {}
    for command in commands:
        done = run(command, folder)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        outputs[" ".join(command.split()[:3])] = done.stdout + done.stderr
    listed = len((folder / "SHA256SUMS").read_text().splitlines())
    assert "FAILED" not in outputs["sha256sum -c --strict"] and outputs["sha256sum -c --strict"].count(": OK") == listed
    assert "Verified OK" in outputs["openssl dgst -sha256"]
    assert "Verification: OK" in outputs["openssl ts -verify"]
    assert "Time stamp: " in outputs["openssl ts -reply"]
    assert outputs["sh tools/openssl-checks.sh"].count("OK      batch") == 4
    assert outputs["python3 tools/check_log.py ."].startswith("OK: 12 entries, 2 batches, 4 evidence files")
    assert outputs["for f in"].count(": OK") == 4
    # the checker needs nothing beyond the standard library (-I -S: no site-packages, no cwd on the path)
    alone = subprocess.run([sys.executable, "-I", "-S", "tools/check_log.py", "."], cwd=folder,
                           capture_output=True, text=True, check=False)
    assert alone.returncode == 0 and alone.stdout.startswith("OK: 12 entries"), alone.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory, signing_keys, tsa_session, audit_pki) -> tuple[Path, Path]:
    """One bundle (zip and extracted folder) with two stamped batches and evidence."""
    root = tmp_path_factory.mktemp("bundle")
    engine = sqlite_engine(root / "audit.db")
    create_tables(engine)
    evidence = EvidenceStore(root / "evidence")
    log = AuditLog(engine, evidence, actor="connector-1", sealer=Sealer(signing_keys["rsa-sha256"]),
                   tsa=TsaClient(tsa_session.url, 10, audit_pki.tsa_ca))
    for i in range(8):
        digest = evidence.put_bytes(f"<edXML>{i}</edXML>".encode()).sha256
        log.record(AuditEvent("out.sent" if i % 2 else "in.received", "out" if i % 2 else "in",
                              document_id=f"D-{i % 2}", sha256=digest))
        if i == 3:
            log.seal()
    log.seal()
    bundle = export_bundle(engine, evidence, root / "b.zip", document_id="D-1", tsa_ca=audit_pki.tsa_ca).path
    engine.dispose()
    return bundle, extract(bundle, root / "x")


BUNDLE_FILES = ["log/entries.jsonl", "batches/000001.statement", "batches/000002.sig", "batches/000001.tst",
                "evidence/*", "certs/signer-*.pem", "certs/signer-*.pub.pem", "certs/tsa-ca-roots.pem",
                "manifest.json", "SHA256SUMS", "README.txt", "tools/check_log.py", "tools/openssl-checks.sh"]


@pytest.mark.parametrize("pattern", BUNDLE_FILES)
def test_a_flipped_byte_in_any_bundle_file_is_located(exported, tmp_path, pattern):
    _, original = exported
    folder = shutil.copytree(original, tmp_path / "copy")
    path = min(folder.glob(pattern))
    name = path.relative_to(folder).as_posix()
    flip_byte(path, offset=len(path.read_bytes()) - 30 if pattern.endswith(".pem") else None)
    report = verify_bundle(folder)
    assert not report.ok
    assert f"bundle file {name}" in where(report) or any(w.startswith(f"bundle file {name} ") for w in where(report)), \
        [str(p) for p in report.problems]
    sums = run("sha256sum -c --strict SHA256SUMS", folder)
    assert sums.returncode != 0  # the auditor's first step catches it too
    # and once zipped again, the bundle as a file fails the same way
    again = tmp_path / "again.zip"
    with zipfile.ZipFile(again, "w") as zf:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(file, file.relative_to(folder).as_posix())
    assert not verify_bundle(again).ok


def test_a_consistently_forged_bundle_fails_on_the_signed_root(exported, tmp_path):
    """An entry altered with every hash, link, manifest digest and SHA256SUMS line redone: the
    batch statement (signed, time-stamped) no longer matches, so the forgery shows."""
    _, original = exported
    folder = shutil.copytree(original, tmp_path / "forged")
    log_path = folder / "log" / "entries.jsonl"
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    entries[1]["document_id"] = "D-FORGED"
    for i, entry in enumerate(entries):
        if i:
            entry["prev_hash"] = entries[i - 1]["entry_hash"]
        entry["entry_hash"] = entry_hash(entry)
    log_path.write_text("".join(entry_line(e) + "\n" for e in entries))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["log/entries.jsonl"] = hashlib.sha256(log_path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    (folder / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {n}\n"
                                               for n, p in sorted(files.items())))
    assert run("sha256sum -c --strict SHA256SUMS", folder).returncode == 0  # the digests alone are fooled
    report = verify_bundle(folder)
    assert [str(p) for p in report.problems] == [
        ("bundle file manifest.json (batch 1): batch 1 (seq 1..4): the Merkle root of its 4 entries (expected 4) "
        "does not match the sealed root: an entry in seq 1..4 was altered, removed or added"),
        ("bundle file manifest.json (batch 2): batch 2 (seq 5..8): the Merkle root of its 4 entries (expected 4) "
        "does not match the sealed root: an entry in seq 5..8 was altered, removed or added")]
    checker = run(f"{sys.executable} -I -S tools/check_log.py .", folder)
    assert checker.returncode == 1 and "BROKEN bundle file manifest.json (batch 1)" in checker.stdout


def test_a_removed_entry_line_is_located(exported, tmp_path):
    _, original = exported
    folder = shutil.copytree(original, tmp_path / "cut")
    log_path = folder / "log" / "entries.jsonl"
    lines = log_path.read_text().splitlines(keepends=True)
    log_path.write_text("".join(lines[:2] + lines[3:]))
    found = [str(p) for p in verify_bundle(folder).problems]
    assert "bundle file log/entries.jsonl line 3: entries 3..3 are missing before entry seq 4 (removed from the log)" in found


def test_a_damaged_zip_is_reported(exported, tmp_path):
    bundle, _ = exported
    damaged = tmp_path / "damaged.zip"
    shutil.copy(bundle, damaged)
    data = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(bundle) as zf:
        info = zf.getinfo("log/entries.jsonl")
    data[info.header_offset + 30 + len(info.filename) + 5] ^= 0xFF  # inside the compressed entries
    damaged.write_bytes(bytes(data))
    report = verify_bundle(damaged)
    assert not report.ok
    assert any(w.startswith("bundle file log/entries.jsonl") for w in where(report)), report.problems


def test_a_zip_with_unsafe_names_is_not_unpacked_there(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", b"x")
        zf.writestr("manifest.json", b"{}")
    report = verify_bundle(evil)
    assert "bundle file ../outside.txt" in where(report)
    assert not (tmp_path.parent / "outside.txt").exists()


def test_not_a_zip_is_reported(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"no zip here")
    assert next(str(p) for p in verify_bundle(junk).problems).startswith(f"bundle {junk}: not a readable ZIP file")


def test_signer_trust_is_checked_when_anchors_are_given(exported, audit_pki, tmp_path):
    bundle, _ = exported
    assert verify_bundle(bundle, trust=TrustStore.from_directory(audit_pki.pki.trust_dir)).ok
    other = tmp_path / "other-trust"
    other.mkdir()
    shutil.copy(audit_pki.rogue_tsa.cert_path, other / "rogue.pem")  # a self-signed certificate, not our root
    report = verify_bundle(bundle, trust=TrustStore.from_certificates([audit_pki.pki.tls_server.certificate]))
    assert not report.ok and "is not trusted" in str(report.problems[0])


def test_an_explicit_tsa_ca_replaces_the_bundles_own(exported, audit_pki):
    bundle, _ = exported
    report = verify_bundle(bundle, tsa_ca=audit_pki.tsa_ca)
    assert report.ok and report.timestamps_checked == 2 and not report.notes
    wrong = verify_bundle(bundle, tsa_ca=[audit_pki.rogue_tsa.certificate])
    assert where(wrong) == ["bundle file batches/000001.tst", "bundle file batches/000002.tst"]


def test_export_by_period_leaves_out_unsealed_entries_and_says_so(make_env, tmp_path):
    clock = FakeClock()
    env = make_env(clock=clock)
    fill(env, 4)
    env.log.seal()
    clock.advance(days=1)
    fill(env, 4, start=4)
    env.log.seal()
    clock.advance(days=1)
    fill(env, 2, start=8)  # not sealed
    result = export_bundle(env.engine, env.evidence, tmp_path / "p.zip", since=clock.now - dt.timedelta(hours=30),
                           until=clock.now + dt.timedelta(hours=1))
    assert (result.entries, result.selected, result.batches, result.not_sealed) == (4, 4, 1, [9, 10])
    assert verify_bundle(result.path).ok
    manifest = json.loads(zipfile.ZipFile(result.path).read("manifest.json"))
    assert manifest["selected_entries"] == [5, 6, 7, 8] and manifest["selection"]["from"].endswith("Z")


def test_export_reads_archived_entries(make_env, tmp_path):
    clock = FakeClock()
    env = make_env(clock=clock)
    fill(env, 6)
    env.log.seal()
    clock.advance(hours=1)
    env.log.archive(clock.now, env.archive_dir)
    fill(env, 3, start=6)
    env.log.seal()
    result = export_bundle(env.engine, env.evidence, tmp_path / "a.zip", document_id="DOC-0")
    assert result.batches == 2 and result.selected == 3
    assert verify_bundle(result.path).ok


def test_export_refuses_what_it_cannot_prove(make_env, tmp_path):
    env = make_env()
    with pytest.raises(AuditError, match="no audit entries for document NOPE"):
        export_bundle(env.engine, env.evidence, tmp_path / "x.zip", document_id="NOPE")
    fill(env, 3)
    with pytest.raises(AuditError, match="are not sealed yet"):
        export_bundle(env.engine, env.evidence, tmp_path / "x.zip", document_id="DOC-0")
    env.log.seal()
    with env.engine.connect() as conn:
        digest = conn.execute(sa.text("SELECT sha256 FROM audit_entries WHERE seq = 1")).scalar()
    path = env.evidence.path_for(digest)
    path.chmod(0o600)
    path.unlink()
    with pytest.raises(AuditError, match=f"evidence file {path} \\(entry seq 1\\) is missing"):
        export_bundle(env.engine, env.evidence, tmp_path / "x.zip", document_id="DOC-0")
    with pytest.raises(AuditError, match="either a document id or a period"):
        export_bundle(env.engine, env.evidence, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists() and not list(tmp_path.glob(".tmp-*"))
