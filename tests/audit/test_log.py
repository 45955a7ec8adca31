"""Appending, sealing and archiving: the log's own behaviour on a clean run."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.audit import (
    AuditError,
    AuditEvent,
    AuditIntegrityError,
    AuditLog,
    InvalidEvent,
    create_tables,
)
from connector.audit.archive import read_archive
from connector.audit.log import lock_log
from connector.audit.seal import load_pem_chain, verify_signature
from connector.audit.standalone import GENESIS, merkle_root
from connector.audit.tables import (
    audit_archives,
    audit_batches,
    audit_entries,
    audit_metadata,
)
from connector.audit.verify import verify_log
from connector.store.evidence import EvidenceStore
from tests.audit.helpers import FakeClock, fill

ROOT = Path(__file__).resolve().parents[2]


def rows(env, table=audit_entries):
    with env.engine.connect() as conn:
        return conn.execute(sa.select(table).order_by(table.c[table.primary_key.columns.keys()[0]])).mappings().all()


def test_entries_form_one_chain_from_genesis(make_env):
    env = make_env()
    assert fill(env, 7) == [1, 2, 3, 4, 5, 6, 7]
    entries = rows(env)
    assert entries[0]["prev_hash"] == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after["prev_hash"] == before["entry_hash"]
    assert all(e["actor"] == "connector-1" for e in entries)
    assert json.loads(entries[1]["detail"]) == {"nơi nhận": "UBND tỉnh Nghệ An", "step": 1}
    report = verify_log(env.engine, env.evidence)
    assert report.ok, report.problems
    assert report.entries == 7 and report.head == (7, entries[-1]["entry_hash"])


def test_append_commits_with_the_callers_transaction(make_env):
    env = make_env()
    fill(env, 2)
    state = sa.Table("state", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Text))
    state.create(env.engine)
    with pytest.raises(RuntimeError), env.engine.begin() as conn:
        conn.execute(state.insert().values(id=1, v="sent"))
        assert env.log.append(conn, AuditEvent("out.sent", "out", document_id="D")) == 3
        raise RuntimeError("crash before commit")
    with env.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(state)).scalar() == 0
    assert len(rows(env)) == 2  # neither the state change nor its entry
    with env.engine.begin() as conn:
        conn.execute(state.insert().values(id=1, v="sent"))
        assert env.log.append(conn, AuditEvent("out.sent", "out", document_id="D")) == 3
    assert verify_log(env.engine, env.evidence).ok


@pytest.mark.parametrize(("event", "named"), [
    (AuditEvent("out.sent", "sideways"), "direction must be one of out, in"),
    (AuditEvent("out.sent", "audit"), "direction must be one of out, in"),
    (AuditEvent("", "out"), "event: must be a non-empty text"),
    (AuditEvent("out.sent", "out", sha256="ABC"), "sha256 must be 64 lowercase hexadecimal digits"),
    (AuditEvent("out.sent", "out", sha256="A" * 64), "sha256 must be 64 lowercase hexadecimal digits"),
    (AuditEvent("out.sent", "out", document_id="x" * 201), "document_id is longer than 200"),
    (AuditEvent("out.sent", "out", axis_id=12), "axis_id must be text"),  # type: ignore[arg-type]
    (AuditEvent("out.sent", "out", tracking_id="a\x00b"), "tracking_id contains a NUL"),
    (AuditEvent("out.sent", "out", detail={"x": {1, 2}}), "detail is not plain JSON"),
    (AuditEvent("out.sent", "out", detail={"x": float("nan")}), "detail is not plain JSON"),
    (AuditEvent("out.sent", "out", detail=["not", "a", "mapping"]), "detail must be a mapping"),  # type: ignore[arg-type]
    (AuditEvent("out.sent", "out", document_id="\ud800"), "document_id is not valid Unicode"),
])
def test_unusable_events_are_refused_naming_the_field(make_env, event, named):
    env = make_env()
    with pytest.raises(InvalidEvent, match=named):
        env.log.record(event)
    assert rows(env) == []


def test_evidence_must_be_stored_before_it_is_logged(make_env):
    env = make_env()
    missing = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(AuditError, match=f"evidence {missing} is not in the evidence store"):
        env.log.record(AuditEvent("in.received", "in", sha256=missing))
    stored = env.evidence.put_bytes(b"stored").sha256
    assert env.log.record(AuditEvent("in.received", "in", sha256=stored)) == 1


def test_seal_signs_the_merkle_root_of_the_unsealed_entries(make_env, signing_keys):
    env = make_env()
    fill(env, 5)
    batch = env.log.seal()
    assert batch is not None and (batch.id, batch.first_seq, batch.last_seq) == (1, 1, 5)
    hashes = [bytes.fromhex(e["entry_hash"]) for e in rows(env)]
    assert batch.merkle_root == merkle_root(hashes)
    cert = load_pem_chain(batch.signer_cert)[0]
    assert cert == signing_keys["rsa-sha256"].certificate
    assert verify_signature(cert, "rsa-sha256", batch.signature, batch.statement())
    assert b"merkle_root: " + batch.merkle_root.encode() in batch.statement()
    assert env.log.seal() is None  # nothing new
    fill(env, 2, start=5)
    second = env.log.seal()
    assert (second.id, second.first_seq, second.last_seq) == (2, 6, 7)
    assert verify_log(env.engine, env.evidence).ok


def test_large_backlogs_are_sealed_in_bounded_batches(make_env):
    env = make_env()
    env.log.max_batch_entries = 4
    fill(env, 10)
    last = env.log.seal()
    assert [(b["first_seq"], b["last_seq"]) for b in rows(env, audit_batches)] == [(1, 4), (5, 8), (9, 10)]
    assert last.id == 3
    assert verify_log(env.engine, env.evidence).ok


def test_merkle_root_follows_rfc6962():
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(3)]

    def leaf(x):
        return hashlib.sha256(b"\x00" + x).digest()

    def node(a, b):
        return hashlib.sha256(b"\x01" + a + b).digest()

    assert merkle_root(leaves[:1]) == leaf(leaves[0]).hex()
    expected = node(node(leaf(leaves[0]), leaf(leaves[1])), leaf(leaves[2]))
    assert merkle_root(leaves) == expected.hex()


def test_an_entry_altered_before_sealing_is_not_signed(make_env):
    env = make_env()
    fill(env, 4)
    with env.engine.begin() as conn:
        conn.execute(audit_entries.update().where(audit_entries.c.seq == 2).values(document_id="DOC-X"))
    with pytest.raises(AuditIntegrityError, match="entry seq 2 does not match its hash"):
        env.log.seal()
    assert rows(env, audit_batches) == []


def test_without_a_key_nothing_is_sealed_and_it_is_said(make_env, caplog):
    env = make_env(key=None)
    fill(env, 2)
    with caplog.at_level(logging.WARNING, logger="connector.audit"):
        assert env.log.seal() is None
        assert env.log.seal() is None
    assert [r.getMessage() for r in caplog.records].count("audit log: no signing key configured, entries are not sealed") == 1
    report = verify_log(env.engine, env.evidence)
    assert report.ok and any("2 entries (seq 1..2) are not sealed yet" in n for n in report.notes)


def test_a_tsa_needs_a_key_and_fail_closed_needs_a_tsa(make_env, tmp_path):
    env = make_env()
    with pytest.raises(AuditError, match="fail_closed_after needs a time-stamping authority"):
        AuditLog(env.engine, env.evidence, actor="a", sealer=env.log.sealer, fail_closed_after=dt.timedelta(1))
    with pytest.raises(AuditError, match="needs a signing key"):
        AuditLog(env.engine, env.evidence, actor="a", tsa=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match="actor"):
        AuditLog(env.engine, env.evidence, actor="")


def test_archive_moves_old_batches_to_chained_files_and_the_log_goes_on(make_env):
    clock = FakeClock()
    env = make_env(clock=clock)
    fill(env, 6)
    env.log.seal()
    clock.advance(days=1)
    fill(env, 4, start=6)
    env.log.seal()
    clock.advance(days=1)
    fill(env, 2, start=10)  # unsealed tail
    assert env.log.archive(clock.now - dt.timedelta(days=3), env.archive_dir) is None  # nothing that old

    first = env.log.archive(clock.now - dt.timedelta(hours=36), env.archive_dir)
    assert first == env.archive_dir / "audit-000000000001-000000000006.jsonl"
    items = list(read_archive(first))
    assert items[0].kind == "header" and items[0].value["prev_archive_sha256"] is None
    assert [i.value["seq"] for i in items if i.kind == "entry"] == [1, 2, 3, 4, 5, 6]
    assert [i.value.id for i in items if i.kind == "batch"] == [1]
    assert [e["seq"] for e in rows(env)] == [7, 8, 9, 10, 11, 12, 13]
    archived = rows(env)[-1]
    assert archived["event"] == "audit.archived" and archived["direction"] == "audit"
    detail = json.loads(archived["detail"])
    first_sha = hashlib.sha256(first.read_bytes()).hexdigest()
    assert detail["sha256"] == first_sha and (detail["first_seq"], detail["last_seq"]) == (1, 6)

    env.log.seal()
    clock.advance(days=1)
    second = env.log.archive(clock.now, env.archive_dir)
    assert second.name == "audit-000000000007-000000000013.jsonl"
    assert next(iter(read_archive(second))).value["prev_archive_sha256"] == first_sha
    assert rows(env, audit_batches) == []
    assert [r["id"] for r in rows(env, audit_archives)] == [1, 2]
    # every entry and batch is archived but the one recording the archive: the log continues
    fill(env, 1, start=12)
    batch = env.log.seal()
    assert (batch.id, batch.first_seq) == (4, 14)
    report = verify_log(env.engine, env.evidence)
    assert report.ok, report.problems
    assert report.archives == 2 and report.entries == 15 and report.batches == 4


def test_archive_only_takes_stamped_batches_when_a_tsa_is_configured(make_env, tsa_server):
    env = make_env(tsa=True)
    fill(env, 3)
    tsa_server.app.mode = "error"
    env.log.seal()
    assert env.log.archive(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), env.archive_dir) is None
    tsa_server.app.mode = "ok"
    env.log.stamp_pending()
    assert env.log.archive(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), env.archive_dir) is not None


def test_archive_needs_an_aware_time(make_env):
    env = make_env()
    with pytest.raises(AuditError, match="time zone"):
        env.log.archive(dt.datetime(2026, 1, 1), env.archive_dir)


def test_autocommit_sqlite_connections_are_refused(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}", isolation_level="AUTOCOMMIT")
    create_tables(engine)
    with engine.connect() as conn, pytest.raises(AuditError, match="autocommit"):
        lock_log(conn)


def _schema(engine: sa.Engine) -> dict[str, dict[str, tuple[str, bool]]]:
    inspector = sa.inspect(engine)
    out = {}
    for table in audit_metadata.sorted_tables:
        cols = inspector.get_columns(table.name)
        out[table.name] = {c["name"]: (type(c["type"]).__name__, c["nullable"]) for c in cols}
        out[table.name + " indexes"] = {i["name"]: (",".join(i["column_names"]), bool(i["unique"]))
                                        for i in inspector.get_indexes(table.name)}
        out[table.name + " unique"] = {u["name"]: (",".join(u["column_names"]), True)
                                       for u in inspector.get_unique_constraints(table.name)}
    return out


def _migrated(url: str) -> sa.Engine:
    from connector.store.db import migrate, open_database

    engine = open_database(url)
    migrate(engine)
    return engine


def test_the_migration_creates_the_same_tables_on_sqlite(tmp_path):
    migrated = _migrated(f"sqlite:///{tmp_path / 'migrated.db'}")
    direct = sa.create_engine(f"sqlite:///{tmp_path / 'direct.db'}")
    create_tables(direct)
    assert _schema(migrated) == _schema(direct)
    text = (ROOT / "connector/store/migrations/versions/0002_audit_log.py").read_text()
    assert "connector.audit" not in text and 'down_revision = "0001_engine"' in text
    log = AuditLog(migrated, EvidenceStore(tmp_path / "ev"), actor="x")  # the log works on the migrated schema
    assert log.record(AuditEvent("out.queued", "out", document_id="D")) == 1


def test_the_migration_creates_the_same_tables_on_postgresql(pg_url, postgres_server):
    migrated = _migrated(pg_url)
    direct = sa.create_engine(postgres_server.new_database())
    create_tables(direct)
    assert _schema(migrated) == _schema(direct)
    migrated.dispose()
    direct.dispose()


def test_an_archive_written_when_the_database_file_is_gone_is_kept_with_a_warning(tmp_path, caplog):
    """After a failed archive transaction the log asks the database whether it recorded the
    file; when the SQLite file itself is gone the guard answers DatabaseError (not an
    SQLAlchemy error): the file is kept, with a warning, rather than the error escaping."""
    import logging

    from connector.audit.log import AuditLog
    from connector.store.db import DatabaseError

    class GoneEngine:
        def connect(self):
            raise DatabaseError("database file /srv/data/connector.db disappeared while the connector ran")

    archive = tmp_path / "audit-000001.jsonl.gz"
    archive.write_bytes(b"entries")
    log = AuditLog.__new__(AuditLog)
    log.engine = GoneEngine()
    with caplog.at_level(logging.WARNING, logger="connector"):
        log._remove_unrecorded([(archive, "0" * 64)])
    assert archive.exists()
    assert any("the file is kept" in r.getMessage() and "disappeared" in r.getMessage() for r in caplog.records)
