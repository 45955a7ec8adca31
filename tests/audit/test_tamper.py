"""Tampering with the stored log is detected and located: entries, evidence files, batches,
archive files. Each test damages one thing the way an operator with database or disk access
could, then checks that ``verify_log`` names the place."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat

import pytest
import sqlalchemy as sa

from connector.audit.tables import audit_archives, audit_batches, audit_entries
from connector.audit.verify import verify_log
from tests.audit.helpers import FakeClock, fill, flip_byte, flip_char


@pytest.fixture
def sealed(make_env):
    """12 entries: batch 1 = seq 1..5, batch 2 = seq 6..10, seq 11..12 unsealed."""
    env = make_env()
    fill(env, 5)
    env.log.seal()
    fill(env, 5, start=5)
    env.log.seal()
    fill(env, 2, start=10)
    assert verify_log(env.engine, env.evidence).ok
    return env


def problems(env, **kw) -> list[str]:
    report = verify_log(env.engine, env.evidence, **kw)
    assert not report.ok, "the damage went unnoticed"
    return [str(p) for p in report.problems]


def entry(env, seq):
    with env.engine.connect() as conn:
        return dict(conn.execute(sa.select(audit_entries).where(audit_entries.c.seq == seq)).mappings().one())


def update(env, table, where, **values):
    with env.engine.begin() as conn:
        conn.execute(table.update().where(where).values(**values))


@pytest.mark.parametrize("field", ["event", "direction", "document_id", "tracking_id", "axis_id", "actor",
                                   "sha256", "detail"])
def test_one_changed_character_in_an_entry_field_is_located(sealed, field):
    seq = next(s for s in range(1, 11) if entry(sealed, s)[field])
    row = entry(sealed, seq)
    update(sealed, audit_entries, audit_entries.c.seq == seq, **{field: flip_char(row[field])})
    found = problems(sealed)
    assert found[0].startswith(f"database: entry seq {seq} (") and "does not match its entry_hash" in found[0]
    assert all(f"seq {seq}" in p for p in found), found


def test_a_changed_time_is_located(sealed):
    row = entry(sealed, 7)
    update(sealed, audit_entries, audit_entries.c.seq == 7, at=row["at"] + dt.timedelta(microseconds=1))
    assert problems(sealed) == [(f"database: entry seq 7 ({row['event']}): its content does not match its entry_hash "
                                "(a field of this entry was altered)")]


def test_a_rewritten_entry_with_recomputed_hashes_breaks_the_signed_root(sealed):
    """An attacker who recomputes the entry's hash and every later link still cannot re-sign."""
    from connector.audit.records import entry_fields
    from connector.audit.standalone import entry_hash

    with sealed.engine.begin() as conn:
        rows = conn.execute(sa.select(audit_entries).order_by(audit_entries.c.seq)).mappings().all()
        prev = rows[2]["entry_hash"]
        for row in rows[3:]:
            fields = entry_fields(row)
            fields["prev_hash"] = prev
            if row["seq"] == 4:
                fields["document_id"] = "DOC-FORGED"
            new = entry_hash(fields)
            conn.execute(audit_entries.delete().where(audit_entries.c.seq == row["seq"]))
            conn.execute(audit_entries.insert().values(
                {**row, "document_id": fields["document_id"], "prev_hash": prev, "entry_hash": new}))
            prev = new
    found = problems(sealed)
    assert any("batch 1 (seq 1..5): the Merkle root" in p for p in found), found
    assert any("batch 2 (seq 6..10): the Merkle root" in p for p in found), found
    assert not any("entry_hash" in p for p in found)  # the chain itself looks perfect


def test_a_deleted_entry_is_located(sealed):
    with sealed.engine.begin() as conn:
        conn.execute(audit_entries.delete().where(audit_entries.c.seq == 3))
    found = problems(sealed)
    assert "database: entries 3..3 are missing before entry seq 4 (removed from the log)" in found
    assert any(p.startswith("database (audit_batches id 1): batch 1 (seq 1..5): the Merkle root of its 4 entries")
               for p in found)


def test_reordered_entries_are_located(sealed):
    a, b = entry(sealed, 6), entry(sealed, 7)
    fields = [c for c in a if c != "seq"]
    with sealed.engine.begin() as conn:
        conn.execute(audit_entries.delete().where(audit_entries.c.seq.in_([6, 7])))
        conn.execute(audit_entries.insert().values({"seq": 6, **{f: b[f] for f in fields}}))
        conn.execute(audit_entries.insert().values({"seq": 7, **{f: a[f] for f in fields}}))
    found = problems(sealed)
    assert any(p.startswith("database: entry seq 6 (") and "does not match its entry_hash" in p for p in found)
    assert any(p.startswith("database: entry seq 7 (") and "does not match its entry_hash" in p for p in found)


def test_a_duplicated_entry_is_located(sealed):
    row = entry(sealed, 5)
    with sealed.engine.begin() as conn:
        conn.execute(audit_entries.insert().values({**row, "seq": 13, "prev_hash": entry(sealed, 12)["entry_hash"]}))
    assert problems(sealed) == [(f"database: entry seq 13 ({row['event']}): its content does not match its entry_hash "
                                "(a field of this entry was altered)")]


def test_a_truncated_log_is_located(sealed):
    with sealed.engine.begin() as conn:
        conn.execute(audit_entries.delete().where(audit_entries.c.seq >= 8))
    found = problems(sealed)
    assert ("database (audit_batches id 2): batch 2 (seq 6..10): the log ends at seq 7; entries 8..10 are "
            "missing (log truncated)") in found


def test_a_log_truncated_before_a_whole_batch_is_located(sealed):
    with sealed.engine.begin() as conn:
        conn.execute(audit_entries.delete().where(audit_entries.c.seq >= 6))
    assert ("database (audit_batches id 2): batch 2 (seq 6..10): the log ends at seq 5; entries 6..10 are "
            "missing (log truncated)") in problems(sealed)


def test_a_removed_batch_is_located(sealed):
    with sealed.engine.begin() as conn:
        conn.execute(audit_batches.delete().where(audit_batches.c.id == 1))
    assert problems(sealed) == [("database (audit_batches id 2): entries 1..5 are in no batch (a batch before "
                                "batch 2 (seq 6..10) was removed)")]


def test_an_altered_signature_is_located(sealed):
    with sealed.engine.connect() as conn:
        signature = conn.execute(sa.select(audit_batches.c.signature).where(audit_batches.c.id == 2)).scalar()
    damaged = bytearray(signature)
    damaged[10] ^= 0x01
    update(sealed, audit_batches, audit_batches.c.id == 2, signature=bytes(damaged))
    found = problems(sealed)
    assert len(found) == 1 and found[0].startswith(
        "database (audit_batches id 2): batch 2 (seq 6..10): the signature does not verify with the certificate")


def test_an_altered_merkle_root_is_located(sealed):
    with sealed.engine.connect() as conn:
        root = conn.execute(sa.select(audit_batches.c.merkle_root).where(audit_batches.c.id == 1)).scalar()
    update(sealed, audit_batches, audit_batches.c.id == 1, merkle_root=flip_char(root))
    found = problems(sealed)
    assert any("batch 1 (seq 1..5): the Merkle root" in p for p in found)
    assert any("batch 1 (seq 1..5): the signature does not verify" in p for p in found)


def test_a_flipped_byte_in_an_evidence_file_is_located(sealed):
    row = entry(sealed, 10)
    path = sealed.evidence.path_for(row["sha256"])
    flip_byte(path)
    assert problems(sealed) == [(f"evidence file {path}: content does not match its digest: the file was altered "
                                f"(named by entry seq 10, {row['event']})")]


def test_a_deleted_evidence_file_is_located(sealed):
    row = entry(sealed, 1)
    path = sealed.evidence.path_for(row["sha256"])
    os.chmod(path.parent, stat.S_IRWXU)
    path.unlink()
    assert problems(sealed) == [f"evidence file {path}: missing (named by entry seq 1, {row['event']})"]


# ---------------------------------------------------------------------- archives


@pytest.fixture
def archived(make_env):
    """Three archive files (seq 1..4, 5..9, 10..14) and a live tail, all verified."""
    clock = FakeClock()
    env = make_env(clock=clock)
    for i in range(3):
        fill(env, 4, start=4 * i)
        env.log.seal()
        clock.advance(hours=1)
        assert env.log.archive(clock.now, env.archive_dir) is not None
    fill(env, 2, start=12)
    env.log.seal()
    report = verify_log(env.engine, env.evidence)
    assert report.ok, report.problems
    assert report.archives == 3
    return env


def archive_files(env):
    return sorted(env.archive_dir.glob("audit-*.jsonl"))


def writable(path):
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path


def test_the_archives_chain_links_each_file_to_the_one_before(archived):
    names = [p.name for p in archive_files(archived)]
    assert names == ["audit-000000000001-000000000004.jsonl", "audit-000000000005-000000000009.jsonl",
                     "audit-000000000010-000000000014.jsonl"]


def test_a_flipped_byte_in_an_archive_file_is_located(archived):
    path = archive_files(archived)[1]
    flip_byte(path)
    found = problems(archived)
    assert any(p.startswith(f"archive file {path}: its SHA-256") for p in found), found
    assert any(p.startswith(f"archive file {path} line ") for p in found), found  # the damaged line itself


def test_swapped_archive_files_are_located(archived):
    a, b = archive_files(archived)[:2]
    tmp = a.with_suffix(".swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
    found = problems(archived)
    assert any(p.startswith(f"archive file {a}: its SHA-256") for p in found)
    assert any(p.startswith(f"archive file {b}: its SHA-256") for p in found)
    assert any(p.startswith(f"archive file {a} line 1: the header says seq 5..9") for p in found)


def test_a_removed_archive_file_is_located(archived):
    path = archive_files(archived)[0]
    path.unlink()
    found = problems(archived)
    assert f"archive file {path}: missing (archive of seq 1..4, recorded as {path})" in found


def test_a_removed_archive_file_and_its_record_are_located(archived):
    path = archive_files(archived)[1]
    path.unlink()
    with archived.engine.begin() as conn:
        conn.execute(audit_archives.delete().where(audit_archives.c.first_seq == 5))
    found = problems(archived)
    third = archive_files(archived)[1]
    assert f"archive file {third}: holds seq 10..14, but seq 5..9 are in no archive (an archive was removed)" in found
    assert any("records an archive of seq 5..9 that is not in the archive list" in p for p in found)


def test_an_archive_replaced_together_with_its_record_is_located_by_the_log(archived):
    """Editing a file and its digest in audit_archives is caught by the log's own record."""
    path = archive_files(archived)[2]
    flip_byte(writable(path))
    from connector.audit.archive import file_sha256

    with archived.engine.begin() as conn:
        conn.execute(audit_archives.update().where(audit_archives.c.first_seq == 10).values(sha256=file_sha256(path)))
    found = problems(archived)
    assert any(p.startswith(f"archive file {path}: the archive list's digest differs from the one the log recorded")
               for p in found), found


def test_a_duplicated_line_in_an_archive_is_located(archived):
    path = writable(archive_files(archived)[0])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3] + [lines[2]] + lines[3:]))
    found = problems(archived)
    assert any(p.startswith(f"archive file {path} line 4: entry seq 2 is duplicated (also at archive file {path} "
                            "line 3)") for p in found), found


def test_reordered_lines_in_an_archive_are_located(archived):
    path = writable(archive_files(archived)[0])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], lines[2], lines[1]] + lines[3:]))
    found = problems(archived)
    assert f"archive file {path} line 3: entry seq 1 is out of order: it comes after seq 2 (entries reordered)" in found


def test_a_truncated_archive_file_is_located(archived):
    path = writable(archive_files(archived)[1])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    found = problems(archived)
    assert any(p.startswith(f"archive file {path}: its SHA-256") for p in found)
    assert any(p.startswith(f"archive file {path} line ") and "the line is cut short" in p for p in found), found


def test_archives_moved_elsewhere_are_found_with_archive_dir(archived, tmp_path):
    moved = tmp_path / "backup"
    shutil.copytree(archived.archive_dir, moved)
    shutil.rmtree(archived.archive_dir)
    assert not verify_log(archived.engine, archived.evidence).ok
    report = verify_log(archived.engine, archived.evidence, archive_dir=moved)
    assert report.ok, report.problems


# ---------------------------------------------------------------------- windows


def test_a_window_checks_only_the_batches_holding_its_entries(make_env):
    clock = FakeClock()
    env = make_env(clock=clock)
    fill(env, 4)
    env.log.seal()
    clock.advance(days=2)
    fill(env, 4, start=4)
    env.log.seal()
    update(env, audit_entries, audit_entries.c.seq == 2, document_id="DOC-FORGED")
    later = clock.now - dt.timedelta(hours=1)
    report = verify_log(env.engine, env.evidence, since=later)
    assert report.ok, report.problems
    assert report.entries == 4 and report.batches == 1
    found = problems(env, until=later)
    assert found[0].startswith("database: entry seq 2 (")


def test_a_damaged_archive_inside_a_checked_period_is_reported_not_raised(archived):
    path = writable(archive_files(archived)[0])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + [b"{not json\n"] + lines[3:]))
    found = problems(archived, since=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert any(p.startswith(f"archive file {path} line 3: not JSON") for p in found), found


def test_a_deleted_last_entry_of_a_batch_is_not_taken_for_truncation(sealed):
    with sealed.engine.begin() as conn:
        conn.execute(audit_entries.delete().where(audit_entries.c.seq == 5))
    found = problems(sealed)
    assert found == [
        "database: entries 5..5 are missing before entry seq 6 (removed from the log)",
        ("database (audit_batches id 1): batch 1 (seq 1..5): the Merkle root of its 4 entries (expected 5) does not "
        "match the sealed root: an entry in seq 1..5 was altered, removed or added")]
