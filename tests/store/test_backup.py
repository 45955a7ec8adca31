"""`backup` and `restore`: a consistent snapshot of a SQLite connector taken beside a running
engine, with the files it needs, restored so that a connector continues exactly where the
snapshot stands; damaged or incomplete backups, a busy data folder and an existing database
are refused in one line naming the file. Also: a database file emptied to 0 bytes is refused
like a missing one, while a first start (whose file is 0 bytes until SQLite writes it) works."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest

import connector.cli as cli_module
from connector.daemon.config import load_config
from connector.daemon.devsite import SiteAgency, write_site_config
from connector.daemon.runtime import Runtime, open_runtime
from connector.edxml.jsonform import to_json
from connector.edxml.samples import sample_edoc
from connector.store.db import DatabaseError, SqliteFile, marker_path, migrate, open_database
from connector.store.repo import Store
from tests.support.sites import DaemonProcess

H16, G22 = "000.00.00.H16", "000.00.00.G22"
NO_AUDIT = "\n[audit]\nenabled = false\n"


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def pki(dev_pki):
    """The session's development PKI (tests/conftest.py), read only."""
    return dev_pki


@pytest.fixture
def make_site(tmp_path, sandbox, pki):
    creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}

    def make(code: str, binding: str, folder: str, *, audit: bool = False) -> SiteAgency:
        return write_site_config(tmp_path / folder, code=code, name=code, binding=binding, sandbox_url=sandbox.url,
                                 credentials=creds[code], pki=pki, retry_schedule=(0.0,), max_attempts=3,
                                 extra="" if audit else NO_AUDIT)

    return make


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``cli.py ARGS`` in this process: exit code, standard output, standard error."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(list(args))
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def submit(rt: Runtime, site: SiteAgency, recipient: str, number: int) -> str:
    """Queue sample document ``number`` the way a DMS hands one in; its tracking id."""
    doc = sample_edoc(site.code, recipient, number)
    data = to_json(doc)
    pdf = doc.attachments[0]
    data["attachments"], data["manifest"] = [], []
    folder = site.folder / "drops" / str(number)
    folder.mkdir(parents=True)
    path = folder / pdf.name
    with pdf.data.open() as src:
        path.write_bytes(src.read())
    return rt.engine.submit(data, [path])


def outbound_rows(database: Path) -> dict[str, dict]:
    """The outbound rows of a database, read-only: id -> row."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in conn.execute("SELECT * FROM outbound")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def backed_up(make_site, capsys, tmp_path):
    """A connector (H16) with one document sent and one queued, stopped, and its backup."""
    site = make_site(H16, "soap", "h16")
    rt = open_runtime(load_config(site.config_path))
    try:
        submit(rt, site, G22, 1)
        rt.engine.send_due()
        queued = submit(rt, site, G22, 2)
    finally:
        rt.close()
    dest = tmp_path / "backup"
    code, out, err = cli(capsys, "backup", "--config", str(site.config_path), str(dest))
    assert code == 0, err
    return site, dest, queued


# --------------------------------------------------------------------------- the round trip


def test_a_backup_taken_while_documents_are_queued_and_sent_restores_to_exactly_the_snapshot(
        make_site, sandbox, capsys, tmp_path):
    h16, g22_site = make_site(H16, "soap", "h16", audit=True), make_site(G22, "vxp", "g22")
    rt = open_runtime(load_config(h16.config_path))
    numbers = itertools.count(1)
    dest = tmp_path / "backup"
    try:
        for _ in range(2):
            submit(rt, h16, G22, next(numbers))
            rt.engine.send_due()
        rt.audit.seal()  # an archive file of the exchange log, which the backup must carry too
        assert rt.audit.archive(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1),
                                h16.folder / "data" / "audit-archive") is not None
        for _ in range(8):
            submit(rt, h16, G22, next(numbers))  # a backlog the worker below cannot send away

        busy, stop, failures = threading.Event(), threading.Event(), []

        def work() -> None:  # the daemon's work, during the backup: queue documents, send a few
            try:
                for turn in range(60):
                    if stop.is_set():
                        return
                    submit(rt, h16, G22, next(numbers))
                    if turn % 3 == 2 and turn < 12:
                        rt.engine.send_due(limit=1)
                    if turn == 2:
                        busy.set()
            except Exception as exc:  # noqa: BLE001 - reported by the test
                failures.append(exc)
            finally:
                busy.set()

        worker = threading.Thread(target=work)
        worker.start()
        try:
            busy.wait(timeout=60)  # the backup starts while the worker is at it
            code, out, err = cli(capsys, "backup", "--config", str(h16.config_path), str(dest))
        finally:
            stop.set()
            worker.join()
        assert failures == []
        assert code == 0, err
        assert out.startswith(f"backed up {h16.folder / 'data'} into {dest}: the database")
    finally:
        rt.close()

    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    assert sorted(p.name for p in dest.iterdir()) == ["audit-archive", "connector.db", "evidence", "manifest.json",
                                                      "outgoing"]
    snapshot = outbound_rows(dest / "connector.db")
    assert manifest["counts"]["outbound"] == dict(Counter(r["state"] for r in snapshot.values()))
    assert {e["kind"] for e in manifest["files"]} == {"evidence", "staging", "audit-archive"}
    original = outbound_rows(h16.database)
    sent = {i: r for i, r in snapshot.items() if r["state"] == "sent"}
    unsent = {i for i, r in snapshot.items() if r["state"] != "sent"}
    sent_later = {i for i in unsent if original[i]["state"] == "sent"}  # by the original, after the snapshot
    never_sent = unsent - sent_later
    assert len(sent) >= 2 and len(never_sent) >= 2, (len(sent), len(never_sent))
    assert len(original) > len(snapshot)  # documents were queued after the snapshot too

    os.rename(h16.folder / "data", h16.folder / "data-lost")  # the original data folder is gone
    restored = make_site(H16, "soap", "h16-restored", audit=True)
    code, out, err = cli(capsys, "restore", "--config", str(restored.config_path), str(dest))
    assert code == 0, err
    assert "restored the snapshot of" in out

    rt, g22 = open_runtime(load_config(restored.config_path)), open_runtime(load_config(g22_site.config_path))
    try:
        for _ in range(4):
            rt.engine.run_once()
            g22.engine.run_once()
        after = outbound_rows(restored.database)
        for out_id, row in sent.items():  # known as sent: never sent again
            assert (after[out_id]["axis_id"], after[out_id]["sent_at"]) == (row["axis_id"], row["sent_at"])
        for out_id in never_sent:  # sent once, by the restored connector, from the restored staging folders
            assert after[out_id]["state"] == "sent" and after[out_id]["axis_id"], after[out_id]
            assert after[out_id]["last_error"] is None
            assert Path(after[out_id]["staging"]).parent == restored.folder / "data" / "outgoing"
        for out_id in sent_later:  # the axis already held them: counted as sent, not delivered twice
            assert after[out_id]["state"] == "sent" and "already held" in after[out_id]["last_error"]
        documents = [r["document_id"] for r in snapshot.values()]
        on_axis = Counter(d.sender_doc_id for d in sandbox.store.sent_by(H16))
        assert set(documents) <= set(on_axis) and set(on_axis.values()) == {1}
        received = Counter(json.loads(p.read_text(encoding="utf-8"))["document_id"]
                           for p in g22_site.inbox.glob("*/metadata.json"))
        assert set(documents) <= set(received) and set(received.values()) == {1}
        track = [rt.engine.track(out_id)["recipients"] for out_id in snapshot]
        assert all(r == [{"agency": G22, "state": "delivered", "status_code": "01", "status_name": "Đã đến",
                          "description": "Đã đến"}] for r in track), track
    finally:
        rt.close()
        g22.close()
    code, out, err = cli(capsys, "audit", "--config", str(restored.config_path), "verify")
    assert code == 0, out + err
    assert "OK: the log is intact" in out


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("damage", ["evidence truncated", "staging file altered", "database truncated"])
def test_a_damaged_file_in_the_backup_is_refused_naming_it(backed_up, make_site, capsys, damage):
    _site, dest, _ = backed_up
    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    if damage == "evidence truncated":
        victim = dest / next(e["path"] for e in manifest["files"] if e["kind"] == "evidence")
    elif damage == "staging file altered":
        victim = dest / next(e["path"] for e in manifest["files"] if e["path"].endswith("/document.json"))
    else:
        victim = dest / "connector.db"
    os.chmod(victim, 0o644)
    data = victim.read_bytes()
    if damage == "staging file altered":
        victim.write_bytes(data.replace(b"2", b"3", 1))  # same size, other content
        expected = f"restore: {victim} does not match the SHA-256 in the manifest: it was altered or damaged\n"
    else:
        victim.write_bytes(data[: len(data) // 2])
        expected = (f"restore: {victim} has {len(data) // 2} bytes, the manifest says {len(data)}: "
                    "it was truncated or altered\n")

    target = make_site(H16, "soap", "fresh")
    code, out, err = cli(capsys, "restore", "--config", str(target.config_path), str(dest))
    assert (code, out, err) == (1, "", expected)
    assert not target.database.exists() and not marker_path(target.database).exists()
    assert not (target.folder / "data" / "evidence").exists()


def test_a_backup_without_its_manifest_is_refused_as_incomplete(backed_up, make_site, capsys):
    _site, dest, _ = backed_up
    (dest / "manifest.json").unlink()  # what a backup cut short leaves: the manifest is written last
    target = make_site(H16, "soap", "fresh")
    code, out, err = cli(capsys, "restore", "--config", str(target.config_path), str(dest))
    assert (code, out) == (1, "")
    assert err == (f"restore: {dest / 'manifest.json'} is missing: the backup in {dest} is incomplete "
                   "(it was interrupted before it finished) or is not a connector backup\n")
    assert not (target.folder / "data").exists()


@pytest.mark.parametrize("change, problem", [
    ({"alembic_revision": "0099_future"}, "the database is at schema revision '0099_future', which this connector "
                                          "(0.1.0) does not know: restore with version 0.1.0 or newer"),
    ({"escape": "evidence/../../../outside"}, "file entry 'evidence/../../../outside' (evidence) is not a path a "
                                              "backup writes"),
])
def test_a_manifest_that_cannot_be_trusted_is_refused(backed_up, make_site, capsys, change, problem):
    _site, dest, _ = backed_up
    path = dest / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if "escape" in change:
        manifest["files"][0]["path"] = change["escape"]  # would write outside the data folder
    else:
        manifest.update(change)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    target = make_site(H16, "soap", "fresh")
    code, out, err = cli(capsys, "restore", "--config", str(target.config_path), str(dest))
    assert (code, out, err) == (1, "", f"restore: {path}: {problem}\n")
    assert not (target.folder / "data").exists()


def test_a_backup_goes_only_into_a_new_or_empty_folder(make_site, capsys, tmp_path):
    site = make_site(H16, "soap", "h16")
    open_runtime(load_config(site.config_path)).close()
    dest = tmp_path / "backup"
    dest.mkdir()
    (dest / "older.txt").write_text("an earlier backup's file", encoding="utf-8")
    code, out, err = cli(capsys, "backup", "--config", str(site.config_path), str(dest))
    assert (code, out) == (1, "")
    assert err == (f"backup: backup folder {dest} is not empty (1 entries, first 'older.txt'): "
                   "back up into a new or empty folder\n")
    assert [p.name for p in dest.iterdir()] == ["older.txt"]

    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    code, _, err = cli(capsys, "backup", "--config", str(site.config_path), str(a_file))
    assert (code, err) == (1, f"backup: backup folder {a_file} is not a folder\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, "backup", "--config", str(site.config_path), str(empty))
    assert code == 0, err
    assert (empty / "manifest.json").is_file()


def test_restore_is_refused_while_a_daemon_holds_the_data_folder(backed_up, capsys):
    site, dest, _ = backed_up
    marker = marker_path(site.database).read_text(encoding="utf-8")
    daemon = DaemonProcess(site)
    daemon.start()
    try:
        assert daemon.wait_running(timeout=60), daemon.log_tail()
        code, out, err = cli(capsys, "restore", "--config", str(site.config_path), "--force", str(dest))
    finally:
        assert daemon.terminate() == 0
    data = site.folder / "data"
    assert (code, out) == (1, "")
    assert err == f"restore: a connector is running on {data} (it holds {data / 'connector.lock'}): stop it before restoring\n"
    assert marker_path(site.database).read_text(encoding="utf-8") == marker
    assert not list(data.glob("connector.db.before-restore-*"))


def test_restore_over_an_existing_database_needs_force_and_keeps_the_old_one_aside(backed_up, capsys):
    site, dest, queued = backed_up
    rt = open_runtime(load_config(site.config_path))
    try:
        later = submit(rt, site, G22, 3)  # after the backup: only the existing database knows it
    finally:
        rt.close()
    before = sha256(site.database)

    code, out, err = cli(capsys, "restore", "--config", str(site.config_path), str(dest))
    assert (code, out) == (1, "")
    assert err == (f"restore: database file {site.database} already exists: restore replaces it only with --force "
                   "(it is then kept as connector.db.before-restore-<time> beside it)\n")
    assert sha256(site.database) == before

    code, out, err = cli(capsys, "restore", "--config", str(site.config_path), "--force", str(dest))
    assert code == 0, err
    (aside,) = site.database.parent.glob("connector.db.before-restore-*")
    assert f"the previous database file is kept as {aside}\n" in out
    assert sha256(aside) == before and later in outbound_rows(aside)
    assert later not in outbound_rows(site.database)

    rt = open_runtime(load_config(site.config_path))  # the connector continues from the snapshot
    try:
        rt.engine.send_due()
        assert rt.store.outbound(queued)["state"] == "sent"
        assert rt.store.outbound(later) is None
    finally:
        rt.close()


def test_restoring_into_the_same_folder_keeps_equal_files_replaces_damaged_evidence_refuses_other_staging(
        backed_up, capsys):
    site, dest, queued = backed_up
    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    evidence = site.folder / "data" / next(e["path"] for e in manifest["files"] if e["kind"] == "evidence")
    os.chmod(evidence, 0o644)
    evidence.write_bytes(b"damaged")
    code, out, err = cli(capsys, "restore", "--config", str(site.config_path), "--force", str(dest))
    assert code == 0, err
    kept = len(manifest["files"]) - 1
    assert f"the database and 1 file put in place, {kept} files already there" in out
    assert sha256(evidence) == evidence.name

    staging = Path(outbound_rows(site.database)[queued]["staging"])
    (staging / "document.json").write_text("{}", encoding="utf-8")  # another document under that name
    code, out, err = cli(capsys, "restore", "--config", str(site.config_path), "--force", str(dest))
    assert (code, out) == (1, "")
    assert err == f"restore: staging folder {staging} already exists with other content: move it away before restoring\n"
    assert (staging / "document.json").read_text(encoding="utf-8") == "{}"


def test_a_backup_missing_a_queued_documents_staging_folder_is_refused_and_leaves_nothing(
        make_site, capsys, tmp_path):
    site = make_site(H16, "soap", "h16")
    rt = open_runtime(load_config(site.config_path))
    try:
        queued = submit(rt, site, G22, 1)
        staging = Path(rt.store.outbound(queued)["staging"])
    finally:
        rt.close()
    shutil.rmtree(staging)
    dest = tmp_path / "backup"
    code, out, err = cli(capsys, "backup", "--config", str(site.config_path), str(dest))
    assert (code, out) == (1, "")
    assert err == (f"backup: staging folder {staging} of outbound {queued} (not yet sent) is missing: "
                   "its document could not be sent after a restore\n")
    assert not dest.exists()


def test_postgresql_is_refused_with_pg_dump_named(tmp_path, capsys):
    config = tmp_path / "connector.toml"
    config.write_text('[connector]\nagency = "000.00.00.H16"\ndatabase_url = "postgresql://edoc:pw@127.0.0.1:1/edoc"\n'
                      '[axis]\nbinding = "soap"\nurl = "http://127.0.0.1:1/soap"\ntoken = "env:HUB_TOKEN"\n',
                      encoding="utf-8")
    for command in ("backup", "restore"):
        code, out, err = cli(capsys, command, "--config", str(config), str(tmp_path / "backup"))
        assert (code, out) == (1, "")
        assert err == (f"{config}: connector.database_url: the database is PostgreSQL "
                       "(postgresql://***@127.0.0.1:1/edoc): back it up with pg_dump; backup and restore handle "
                       "SQLite connectors only (the data folder's files are only ever added: copy them after pg_dump "
                       "has finished)\n")
    assert not (tmp_path / "backup").exists()


# --------------------------------------------------------------------------- a database emptied to 0 bytes


def opened(path: Path) -> tuple:
    engine = open_database(f"sqlite:///{path}")
    migrate(engine)
    return engine, Store(engine)


def test_a_database_emptied_to_zero_bytes_is_refused_like_a_missing_one(tmp_path):
    path = tmp_path / "connector.db"
    engine, store = opened(path)
    store.enqueue_outbound(kind="edoc", sender=H16, document_id="doc-1", recipients=[G22], staging=None)
    engine.dispose()
    os.truncate(path, 0)
    for name in ("connector.db-wal", "connector.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)

    engine = open_database(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseError) as err:
            migrate(engine)  # before: opened as a new, empty database; the queued document forgotten
    finally:
        engine.dispose()
    assert str(err.value) == (f"database file {path} is empty (0 bytes) although {marker_path(path)} says it was "
                              f"created; restore it from a backup (cli.py restore) or remove {marker_path(path)} to start empty")
    assert path.stat().st_size == 0


def test_a_database_emptied_while_open_is_refused_at_the_next_use(tmp_path):
    path = tmp_path / "connector.db"
    engine, store = opened(path)
    try:
        store.summary()
        os.truncate(path, 0)
        with pytest.raises(DatabaseError) as err:
            store.summary()
        assert str(err.value) == (f"database file {path} was emptied (0 bytes) while the connector ran; stop the "
                                  f"connector, then restore the file from a backup (cli.py restore) or remove {marker_path(path)} to "
                                  "start empty")
    finally:
        engine.dispose()


def test_a_first_start_cut_short_after_creating_the_file_still_starts(tmp_path):
    path = tmp_path / "connector.db"
    conn = SqliteFile(path).connect(sqlite3.connect, {})  # the file is created, 0 bytes ...
    conn.close()  # ... and the start dies before SQLite wrote anything into it
    assert path.stat().st_size == 0
    assert not marker_path(path).exists()  # before: marked already, so the next start was refused

    engine, store = opened(path)
    try:
        assert store.summary().outbound == {}
    finally:
        engine.dispose()
    assert marker_path(path).is_file() and path.stat().st_size > 0
    engine, store = opened(path)  # and the next start opens it
    engine.dispose()


def test_a_backup_of_another_agencys_connector_is_refused(backed_up, make_site, capsys):
    """The manifest records whose connector it is: restoring H16's state into G22's connector
    would send, receive and acknowledge documents as the wrong agency."""
    _, dest, _ = backed_up
    assert json.loads((dest / "manifest.json").read_text(encoding="utf-8"))["agency"] == H16
    g22 = make_site(G22, "vxp", "g22")
    code, out, err = cli(capsys, "restore", "--config", str(g22.config_path), str(dest))
    assert (code, out) == (1, "")
    assert err == (f"restore: {dest / 'manifest.json'}: the backup is of agency {H16}'s connector, this connector is "
                   f"configured for {G22}: restore it into a connector of {H16}\n")
    assert not (g22.folder / "data" / "connector.db").exists()
