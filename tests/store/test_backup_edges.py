"""`backup` and `restore` at their edges: a backup disk that fills up at each step of the copy,
a stopped connector's data folder left untouched by a backup, a database created by `send`
while a restore runs, and a restore run as root into the service user's data folder."""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import connector.store.backup as backup_module
from connector.daemon.config import load_config
from connector.daemon.devsite import SiteAgency
from connector.daemon.runtime import open_runtime
from connector.durable import DiskFull
from connector.store.backup import BackupError, DataLayout, backup, restore
from connector.store.db import marker_path
from tests.store.test_backup import (G22, H16, backed_up, cli, make_site, outbound_rows, pki,  # noqa: F401
                                     submit)
from tests.support.small_disk import IN_CI, small_disk

_PAGE = 4096


def listing(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (and the folder itself) with its size, times and mode."""
    out = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        st = path.lstat()
        out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, oct(st.st_mode))
    return out


def pages(size: int) -> int:
    """The bytes a file of ``size`` takes on a tmpfs (whole pages)."""
    return -(-size // _PAGE) * _PAGE


# --------------------------------------------------------------------------- a full backup disk


@pytest.fixture
def busy_site(make_site) -> SiteAgency:
    """A stopped connector with queued documents (staging), extra evidence and a database of a
    few hundred KiB: enough for each step of a backup to meet a full disk on its own."""
    site = make_site(H16, "soap", "h16")
    rt = open_runtime(load_config(site.config_path))
    try:
        for number in (1, 2):
            submit(rt, site, G22, number)
        for n in range(100):  # the manifest gets an entry for each: several pages long
            rt.evidence.put_bytes(os.urandom(1024 + n))
        rt.evidence.put_bytes(os.urandom(96 * 1024))
        with rt.db.begin() as conn:
            for i in range(300):
                conn.execute(sa.text("INSERT INTO setting(key, value) VALUES (:k, :v)"),
                             {"k": f"pad-{i}", "v": "x" * 1000})
    finally:
        rt.close()
    return site


def fill_levels(layout: DataLayout, probe: Path) -> dict[str, int]:
    """Free space to leave on the backup disk so that each step of a backup is the one that
    finds it full, from a backup of the same data into ``probe`` (on a roomy disk)."""
    manifest = backup(layout, probe)
    database = pages(manifest["database"]["size"])
    files = sum(pages(e["size"]) for e in manifest["files"])
    manifest_size = (probe / "manifest.json").stat().st_size
    assert files >= 64 * 1024 and manifest_size >= 4 * _PAGE, (files, manifest_size)
    return {
        "database pages": database // 2,  # the backup API writing the copy: SQLITE_FULL
        "journal switch": database + _PAGE,  # the copy (WAL, as the live header) cannot grow its -shm
        "files": database + files // 2,  # an evidence or staging file
        "manifest": database + files + _PAGE,  # everything but the manifest fits
    }


def phase_of(exc: DiskFull) -> str:
    """Which step of the backup met the full disk, from what the DiskFull was raised from."""
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):
        return {"SQLITE_FULL": "database pages", "SQLITE_IOERR_SHMSIZE": "journal switch"}.get(
            cause.sqlite_errorname, cause.sqlite_errorname)
    if isinstance(cause, OSError):  # a write(2) error names no file: where it was raised says it
        where = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
        return "manifest" if "write_synced" in where else "files" if "_copy" in where else repr(where)
    return repr(cause)


@pytest.mark.parametrize("phase", ["database pages", "journal switch", "files", "manifest"])
def test_a_backup_disk_full_at_any_step_is_disk_full_naming_the_backup_folder(busy_site, tmp_path, phase):
    layout = DataLayout(busy_site.folder / "data", busy_site.database, busy_site.folder / "data" / "audit-archive")
    leave = fill_levels(layout, tmp_path / "probe")[phase]
    before = listing(layout.data_dir)
    with small_disk(tmp_path / "disk", "2m") as disk:
        disk.fill(leave=leave)
        dest = disk.path / "backup"
        with pytest.raises(DiskFull) as err:
            backup(layout, dest)
        assert (err.value.filename, err.value.strerror) == (str(dest), "No space left on device")
        assert phase_of(err.value) == phase
        assert not dest.exists()  # the partial backup is removed
        assert sorted(p.name for p in disk.path.iterdir()) == [".filler"]
        disk.free()
        backup(layout, dest)  # with room again, the same backup works
    assert listing(layout.data_dir) == before  # the live folder: no file added, none touched


@pytest.mark.parametrize("phase", ["database pages", "journal switch"])
def test_cli_backup_onto_a_full_disk_says_so_in_one_line_naming_the_backup_folder(busy_site, tmp_path, capsys, phase):
    layout = DataLayout(busy_site.folder / "data", busy_site.database, busy_site.folder / "data" / "audit-archive")
    leave = fill_levels(layout, tmp_path / "probe")[phase]
    with small_disk(tmp_path / "disk", "2m") as disk:
        disk.fill(leave=leave)
        dest = disk.path / "backup"
        code, out, err = cli(capsys, "backup", "--config", str(busy_site.config_path), str(dest))
        assert (code, out) == (1, "")
        assert err == (f"backup: {dest}: No space left on device: the partial backup was removed; free space there "
                       "or back up into a folder on another disk\n")
        assert not dest.exists()


# --------------------------------------------------------------------------- a stopped connector's folder


def test_a_backup_of_a_stopped_connector_leaves_its_data_folder_untouched(busy_site, tmp_path, capsys):
    data = busy_site.folder / "data"
    assert not (data / "connector.db-wal").exists()  # stopped: SQLite removed it at the last close
    before = listing(data)
    code, out, err = cli(capsys, "backup", "--config", str(busy_site.config_path), str(tmp_path / "backup"))
    assert code == 0, err
    assert listing(data) == before  # before: connector.db-wal and -shm were left beside the database
    assert sorted(outbound_rows(tmp_path / "backup" / "connector.db")) == sorted(outbound_rows(busy_site.database))


def test_a_database_written_while_a_stopped_connector_is_backed_up_is_read_again_with_locks(
        busy_site, tmp_path, monkeypatch):
    layout = DataLayout(busy_site.folder / "data", busy_site.database, busy_site.folder / "data" / "audit-archive")
    real_copy = backup_module._copy_database
    reads, written = [], []

    def copy_while_send_runs(database: Path, target: Path, *, immutable: bool) -> None:
        real_copy(database, target, immutable=immutable)
        reads.append(immutable)
        if immutable:  # `send` opens the database, queues a document and closes it (-wal gone again)
            rt = open_runtime(load_config(busy_site.config_path), exclusive=False)
            try:
                written.append(submit(rt, busy_site, G22, 9))
            finally:
                rt.close()
            assert not (layout.data_dir / "connector.db-wal").exists()

    monkeypatch.setattr(backup_module, "_copy_database", copy_while_send_runs)
    backup(layout, tmp_path / "backup")
    assert reads == [True, False]  # the file changed under the lock-free read: read again, with locks
    assert written[0] in outbound_rows(tmp_path / "backup" / "connector.db")


# --------------------------------------------------------------------------- a database created during a restore


def test_a_database_created_by_send_while_a_restore_verifies_is_refused_not_moved_aside(backed_up, capsys,
                                                                                       monkeypatch):
    site, dest, _queued = backed_up
    data = site.folder / "data"
    shutil.rmtree(data)  # a new machine: restore into an empty data folder, no --force needed
    real_verify = backup_module.verify_backup
    tracking = []

    def verify_while_a_dms_sends(src: Path, manifest: dict) -> None:
        real_verify(src, manifest)  # minutes for a large backup: meanwhile a DMS script runs `send`
        rt = open_runtime(load_config(site.config_path), exclusive=False)
        try:
            tracking.append(submit(rt, site, G22, 7))
        finally:
            rt.close()

    monkeypatch.setattr(backup_module, "verify_backup", verify_while_a_dms_sends)
    code, out, err = cli(capsys, "restore", "--config", str(site.config_path), str(dest))
    assert (code, out) == (1, "")
    assert err == (f"restore: database file {site.database} was created while the restore ran (by a connector command "
                   "such as send): it was left as it is and the backup's database was not put in place; restore again "
                   "with --force to replace it (it is then kept as connector.db.before-restore-<time> beside it)\n")
    assert not list(data.glob("connector.db.before-restore-*"))
    assert tracking[0] in outbound_rows(site.database)  # the document `send` answered for is where it was
    assert marker_path(site.database).read_text(encoding="utf-8").startswith(  # refused before writing its own
        "connector.db was created or first opened by the connector")


def test_a_database_created_after_the_marker_is_still_never_moved_aside_without_force(backed_up, capsys,
                                                                                      monkeypatch):
    site, dest, _queued = backed_up
    data = site.folder / "data"
    shutil.rmtree(data)
    real_marker = backup_module._write_marker

    def marker_then_a_database(database: Path, *args, **kwargs) -> None:
        real_marker(database, *args, **kwargs)
        # a `send` that found no marker a moment before creates its database now
        with sqlite3.connect(database) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE queued(id TEXT)")
            conn.execute("INSERT INTO queued VALUES ('answered to the DMS')")
        conn.close()

    monkeypatch.setattr(backup_module, "_write_marker", marker_then_a_database)
    code, out, err = cli(capsys, "restore", "--config", str(site.config_path), str(dest))
    assert (code, out) == (1, "")
    assert err.startswith(f"restore: database file {site.database} was created while the restore ran")
    assert not list(data.glob("connector.db.before-restore-*"))
    with sqlite3.connect(f"file:{site.database}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT id FROM queued").fetchall() == [("answered to the DMS",)]
    conn.close()

    monkeypatch.undo()
    code, out, err = cli(capsys, "restore", "--config", str(site.config_path), "--force", str(dest))
    assert code == 0, err  # asked for: the backup's database in place, the other one kept aside
    (aside,) = [p for p in data.glob("connector.db.before-restore-*") if not p.name.endswith(("-wal", "-shm"))]
    assert f"the previous database file is kept as {aside}\n" in out
    with sqlite3.connect(f"file:{aside}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT id FROM queued").fetchall() == [("answered to the DMS",)]
    conn.close()


# --------------------------------------------------------------------------- a restore run as root


@pytest.fixture
def public_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own are root's only), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="restore-owner-", dir="/tmp"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_restore_run_as_root_into_another_users_data_folder_is_refused_and_writes_nothing(
        busy_site, tmp_path, public_folder):
    """Root would leave root's files where the service user's daemon must write ("attempt to
    write a readonly database"), and writing as root into a folder another user controls
    follows the links that user planted: here one aimed at a root-only file, which must stay
    as it was. The restore is refused before anything is written: run it as that user."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("this test needs root (CI runs as root): it restores as root into another user's folder")
        pytest.skip("needs root")
    service = pwd.getpwnam("nobody")
    source = DataLayout(busy_site.folder / "data", busy_site.database, busy_site.folder / "data" / "audit-archive")
    backup(source, tmp_path / "backup")
    data = public_folder / "data"
    data.mkdir()
    os.chown(data, service.pw_uid, service.pw_gid)  # the service user's (empty) data folder
    secret = public_folder / "root-only.conf"
    secret.write_text("root's settings\n")
    os.chmod(secret, 0o600)
    (data / "connector.db.created.tmp").symlink_to(secret)  # planted by the service user
    before = sorted(p.name for p in data.iterdir())

    with pytest.raises(BackupError) as refused:
        restore(DataLayout(data, data / "connector.db", data / "audit-archive"), tmp_path / "backup")
    assert str(refused.value) == (
        f"{data} belongs to {service.pw_name}: run restore as that user (sudo -u {service.pw_name} ...), with the "
        f"backup readable by it; as root, restore would leave root's files where {service.pw_name}'s connector must "
        "write, or follow links planted in a folder root does not control")
    assert sorted(p.name for p in data.iterdir()) == before  # not even the lock file
    assert secret.read_text() == "root's settings\n"
