"""A SQLite database file is created once: once it existed, a missing or replaced file is one
line naming it, never a new empty database (queues, history and idempotency records lost,
documents sent twice). Removing the marker beside it is the operator's explicit "start empty"."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

import connector.cli as cli_module
from connector.store.db import DatabaseError, head_revision, marker_path, migrate, open_database
from connector.store.repo import Store


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


def opened(path: Path) -> tuple[sa.Engine, Store]:
    """The database at ``path`` opened and migrated as the connector does at start."""
    engine = open_database(url_of(path))
    migrate(engine)
    return engine, Store(engine)


def queue_one(store: Store) -> str:
    out_id, _ = store.enqueue_outbound(kind="edoc", sender="000.00.00.H16", document_id="doc-1",
                                       recipients=["000.00.00.G22"], staging=None, intake_key="drop-1")
    return out_id


def remove_database(path: Path) -> None:
    """What an operator's ``rm connector.db*`` (or a cleaning script) does: the file, its WAL
    and shared-memory files; the marker stays."""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        (path.parent / name).unlink(missing_ok=True)


def disappeared(path: Path) -> str:
    return (f"database file {path} disappeared; restore it from a backup (cli.py restore) or remove "
            f"{path.parent / (path.name + '.created')} to start empty")


def test_first_start_creates_migrates_and_marks_the_database(tmp_path):
    path = tmp_path / "connector.db"
    engine, store = opened(path)
    try:
        assert path.is_file()
        assert store.summary().outbound == {}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head_revision()
    finally:
        engine.dispose()
    marker = tmp_path / "connector.db.created"
    assert marker_path(path) == marker
    assert "refuses to start when the database file is missing" in marker.read_text(encoding="utf-8")


def test_a_database_deleted_between_runs_is_refused_not_created_empty(tmp_path):
    path = tmp_path / "connector.db"
    engine, store = opened(path)
    queue_one(store)
    engine.dispose()
    remove_database(path)

    engine = open_database(url_of(path))
    try:
        with pytest.raises(DatabaseError) as err:
            migrate(engine)
    finally:
        engine.dispose()
    assert str(err.value) == disappeared(path)
    assert not path.exists()  # before: a new empty database, the queued document forgotten


def test_a_database_deleted_while_open_is_refused_at_the_next_use(tmp_path):
    path = tmp_path / "connector.db"
    engine, store = opened(path)
    try:
        queue_one(store)
        remove_database(path)
        for _ in range(2):  # the pooled connection (to the deleted file), then a new one
            with pytest.raises(DatabaseError) as err:
                store.summary()
            assert str(err.value) == (
                f"database file {path} disappeared while the connector ran; stop the connector, then restore the "
                f"file from a backup (cli.py restore) or remove {marker_path(path)} to start empty")
        with pytest.raises(DatabaseError):
            queue_one(store)  # before: written to the deleted file (lost at exit) or to a new empty one
        assert not path.exists()
    finally:
        engine.dispose()


def test_a_database_replaced_while_open_is_refused_until_a_restart(tmp_path):
    path = tmp_path / "connector.db"
    engine, store = opened(path)
    try:
        out_id = queue_one(store)
        copy = tmp_path / "restored.db"
        with sqlite3.connect(path) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        os.replace(copy, path)  # e.g. a backup restored under the running connector
        with pytest.raises(DatabaseError) as err:
            store.outbound(out_id)
        assert str(err.value) == (f"database file {path} was replaced while the connector ran; "
                                  "restart the connector to use the new file")
    finally:
        engine.dispose()
    engine, store = opened(path)  # the restart
    try:
        assert store.outbound(out_id)["state"] == "queued"
    finally:
        engine.dispose()


def test_removing_the_marker_starts_an_empty_database(tmp_path):
    path = tmp_path / "connector.db"
    engine, store = opened(path)
    queue_one(store)
    engine.dispose()
    remove_database(path)
    marker_path(path).unlink()  # the operator's decision: start empty

    engine, store = opened(path)
    try:
        assert store.summary().outbound == {}
    finally:
        engine.dispose()
    assert marker_path(path).is_file()  # protected again from now on


def test_a_database_created_before_markers_gets_one_and_is_then_protected(tmp_path):
    path = tmp_path / "connector.db"
    shutil.copyfile(_migrated_without_marker(tmp_path / "old"), path)
    engine, store = opened(path)
    queue_one(store)
    engine.dispose()
    assert marker_path(path).is_file()

    remove_database(path)
    engine = open_database(url_of(path))
    try:
        with pytest.raises(DatabaseError, match="disappeared"):
            migrate(engine)
    finally:
        engine.dispose()


def _migrated_without_marker(folder: Path) -> Path:
    """A migrated database as an earlier version left it: no marker beside it."""
    path = folder / "connector.db"
    engine, _ = opened(path)
    engine.dispose()
    marker_path(path).unlink()
    return path


def test_the_cli_says_which_file_disappeared_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HUB_TOKEN", "token")
    config = tmp_path / "connector.toml"
    config.write_text('[connector]\nagency = "000.00.00.H16"\ndata_dir = "data"\n'
                      '[axis]\nbinding = "soap"\nurl = "http://127.0.0.1:1/soap"\ntoken = "env:HUB_TOKEN"\n',
                      encoding="utf-8")
    path = tmp_path / "data" / "connector.db"
    engine, _ = opened(path)  # an earlier run
    engine.dispose()
    remove_database(path)

    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["status", "--config", str(config)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1
    assert err == f"configuration error: {config}: connector.database_url: {disappeared(path)}"
    assert not path.exists()
