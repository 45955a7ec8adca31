"""Backing up a SQLite connector's state beside a running daemon, and restoring it.

What a connector needs to continue exactly where a snapshot stands:

- the database, copied with SQLite's online backup API (one read transaction: a consistent
  snapshot while the daemon writes; a plain file copy of a database in WAL mode may be torn)
  and checked with ``PRAGMA integrity_check``;
- the evidence files (``evidence/ab/cd/<sha256>``): all of them, each re-hashed against its
  name. Rows, the exchange log and archived log entries name them by digest, and evidence is
  only ever added (written before the row that names it), so every file the snapshot names
  is there when the files are copied after it; one named but missing stops the backup;
- the staging folders (``outgoing/stage-*``) of the outbound rows not yet sent (queued,
  signed, retrying, dead or cancelled: ``resend`` puts the last two back in the queue), whose
  ``document.json`` and attachments are what gets signed and sent;
- the audit archive files the log records (``audit_archives``), checked against the SHA-256
  the log holds for each.

Nothing else in the data folder is state: the spool holds transfers in flight, the lock file
only says who runs.

The backup folder holds ``connector.db``, ``evidence/``, ``outgoing/``, ``audit-archive/`` and,
written last (to a temporary name, flushed, renamed), ``manifest.json``: the snapshot's time,
the connector version and schema (Alembic) revision, every file with its size and SHA-256, the
rows by state. A folder without a manifest is an incomplete backup and is refused.

Restoring checks every file against the manifest before writing anything, holds the data
folder's lock (no daemon may start meanwhile; one running refuses the restore), writes the
marker first (a restore cut short leaves "restore it from backup", never an empty database),
puts each file in place through a temporary name, flushed and renamed, and the database last.
Staging folders are recorded by their folder name and the restored rows point to them in the
restored data folder, which may be another one than the backup's.

A stopped connector's data folder is left exactly as it was (its database is read
``immutable``: no ``-wal``/``-shm`` files are created), and a backup disk that fills up at any
step is :class:`~connector.durable.DiskFull` naming the backup folder, which is removed again.
Without ``--force`` a database that appears while a restore runs (``send`` takes no lock) is
refused, never moved aside; run as root, a restore into a data folder another user owns is
refused (run it as that user).

PostgreSQL databases are backed up with ``pg_dump``; :func:`database_file` refuses them.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from .. import __version__
from ..durable import DiskFull, fsync_dir, write_synced, writing
from ..redact import redact_url
from .db import DatabaseError, MIGRATIONS, check_url, marker_path

MANIFEST = "manifest.json"
FORMAT = "edoc-connector backup"
FORMAT_VERSION = 1
DATABASE = "connector.db"
LOCK_NAME = "connector.lock"  # the data folder's instance lock (connector/daemon/runtime.py)
EVIDENCE, OUTGOING, ARCHIVE = "evidence", "outgoing", "audit-archive"
UNSENT = ("queued", "signed", "retrying", "dead", "cancelled")
"""Outbound states whose staging folder may still be read (sent again after ``resend``)."""

_CHUNK = 1 << 20
_HEX2 = re.compile(r"^[0-9a-f]{2}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BackupError(Exception):
    """A backup or restore cannot go on; the one-line text names the file or folder and why."""


@dataclass(frozen=True)
class DataLayout:
    """Where one connector keeps its state (read from its configuration by the caller)."""

    data_dir: Path
    database: Path
    archive_dir: Path
    agency: str | None = None  # the connector's agency code: recorded by backup, checked by restore

    @property
    def evidence(self) -> Path:
        return self.data_dir / EVIDENCE

    @property
    def outgoing(self) -> Path:
        return self.data_dir / OUTGOING

    @property
    def lock(self) -> Path:
        return self.data_dir / LOCK_NAME


def database_file(url: str) -> Path:
    """The SQLite file a database URL names; :class:`BackupError` for PostgreSQL (pg_dump's
    job) and for SQLite URLs that name no plain file."""
    try:
        parsed = check_url(url)
    except DatabaseError as exc:
        raise BackupError(str(exc)) from None
    if parsed.get_backend_name() != "sqlite":
        raise BackupError(f"the database is PostgreSQL ({redact_url(url)}): back it up with pg_dump; backup and "
                          "restore handle SQLite connectors only (the data folder's files are only ever added: "
                          "copy them after pg_dump has finished)")
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or "uri" in parsed.query:
        raise BackupError(f"the database URL {redact_url(url)} names no plain SQLite file to back up")
    return Path(database)


# --------------------------------------------------------------------------- backup


@dataclass
class _Writer:
    """Files written into the backup folder, for the manifest."""

    dest: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    folders: set[Path] = field(default_factory=set)

    def add(self, source: Path, rel: str, kind: str, *, expected: str | None = None, what: str = "file") -> str:
        """Copy ``source`` to ``dest/rel``; returns its SHA-256. With ``expected``, a different
        digest is :class:`BackupError` naming ``source`` (``what`` says what it is)."""
        target = self.dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        self.folders.update(p for p in target.parents if p == self.dest or self.dest in p.parents)
        size, digest = _copy(source, target)
        if expected is not None and digest != expected:
            raise BackupError(f"{what} {source} does not match its SHA-256 {expected} (it is {digest}): "
                              "it was altered or damaged; the backup stopped")
        self.files.append({"path": rel, "kind": kind, "size": size, "sha256": digest})
        return digest


def backup(layout: DataLayout, dest: Path) -> dict[str, Any]:
    """Back up the connector at ``layout`` into ``dest`` (absent or empty); returns the manifest.

    On failure whatever was written into ``dest`` is removed again (``dest`` itself too when
    this call created it), and :class:`BackupError` or an ``OSError`` names what failed: a disk
    too full for any of the copy's writes (the database's pages, its journal switch, the files,
    the manifest) is :class:`~connector.durable.DiskFull` naming ``dest``."""
    _check_dest(dest)
    created = not dest.exists()
    try:
        with writing(dest):
            dest.mkdir(parents=True, exist_ok=True)
            return _backup_into(layout, dest)
    except BaseException:
        _remove_written(dest, created)
        raise


def _check_dest(dest: Path) -> None:
    """A backup goes into a new or empty folder: never mixed with another backup's files."""
    if dest.is_symlink() and not dest.exists():
        raise BackupError(f"backup folder {dest} is a broken symbolic link")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise BackupError(f"backup folder {dest} is not a folder")
    entries = sorted(p.name for p in dest.iterdir())
    if entries:
        raise BackupError(f"backup folder {dest} is not empty ({len(entries)} entries, first {entries[0]!r}): "
                          "back up into a new or empty folder")


def _remove_written(dest: Path, created: bool) -> None:
    """Undo a failed backup: remove what it wrote (the folder was absent or empty before)."""
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    if dest.is_dir():
        for entry in dest.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _backup_into(layout: DataLayout, dest: Path) -> dict[str, Any]:
    created_at = dt.datetime.now(dt.timezone.utc)
    snapshot = dest / DATABASE
    _snapshot(layout.database, snapshot)
    try:
        facts = _read_snapshot(snapshot)
    except sqlite3.Error as exc:
        raise _copy_failed(exc, snapshot, "read") from exc
    writer = _Writer(dest, folders={dest})
    copied = _copy_evidence(layout, writer)
    _check_named_evidence(layout, facts["evidence"], copied)
    staging = _copy_staging(layout, writer, facts["staging"])
    _copy_archives(layout, writer, facts["archives"])
    size, digest = _hash(snapshot)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": created_at.isoformat(timespec="seconds"),
        "connector_version": __version__,
        "alembic_revision": facts["revision"],
        "agency": layout.agency,
        "source": {"data_dir": str(layout.data_dir.absolute()), "database": str(layout.database.absolute())},
        "database": {"path": DATABASE, "size": size, "sha256": digest},
        "files": writer.files,
        "staging": staging,
        "counts": facts["counts"],
    }
    for folder in sorted(writer.folders, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(folder)
    tmp = dest / (MANIFEST + ".tmp")
    write_synced(tmp, json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"))
    os.replace(tmp, dest / MANIFEST)
    fsync_dir(dest)
    return manifest


def _snapshot(database: Path, target: Path) -> None:
    """A consistent copy of the live database at ``target`` (SQLite's online backup API, one
    step: one read transaction), in rollback-journal mode so that the copy is one file, and
    checked with ``PRAGMA integrity_check``. The live file is read only, never created.

    A stopped connector's database (in WAL mode, without its ``-wal`` file: SQLite removes it
    when the last connection closes) is opened ``immutable``: no lock, and no ``-wal``/``-shm``
    file created in the data folder, which even a read-only opening of a WAL database leaves.
    Should a connection have opened it meanwhile (the ``-wal`` file appears, or the file changed),
    that copy is dropped and the database is read again as beside a running daemon."""
    try:
        size = database.stat().st_size
    except FileNotFoundError:
        raise BackupError(f"database file {database} does not exist: there is nothing to back up") from None
    if size == 0:
        raise BackupError(f"database file {database} is empty (0 bytes): there is nothing to back up")
    if _closed_wal_database(database):
        seen = _file_state(database)
        _copy_database(database, target, immutable=True)
        if _closed_wal_database(database) and _file_state(database) == seen:
            return
        _discard_copy(target)
    _copy_database(database, target, immutable=False)


def _closed_wal_database(database: Path) -> bool:
    """Whether ``database`` is in WAL mode with no connection open: no ``-wal`` file (nor a
    rollback journal) beside it, and WAL in its header (bytes 18-19). Only then may it be read
    ``immutable``; any other database is opened with SQLite's locks, as today."""
    if any(database.with_name(database.name + s).exists() for s in ("-wal", "-journal")):
        return False
    try:
        with open(database, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"


def _file_state(path: Path) -> tuple[int, ...] | None:
    """What changes when anything writes ``path``: identity, size, modification and change times."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _copy_database(database: Path, target: Path, *, immutable: bool) -> None:
    """Copy ``database`` to ``target`` with the backup API, switch the copy to rollback-journal
    mode, check it and flush it. A failure reading the live file names it; one writing the copy
    names the backup folder (:class:`DiskFull` when its disk has no room)."""
    mode = "ro&immutable=1" if immutable else "ro"
    try:
        source = sqlite3.connect(f"file:{quote(str(database.absolute()))}?mode={mode}", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the database {database}: {exc}") from None
    try:
        copy = sqlite3.connect(target)
        try:
            try:
                source.backup(copy)
            except sqlite3.Error as exc:
                if _sqlite_name(exc) in _SQLITE_COPY_SIDE:
                    raise _copy_failed(exc, target, "write") from exc
                raise BackupError(f"cannot read the database {database}: {exc}") from None
            try:
                copy.execute("PRAGMA journal_mode=DELETE")
                problems = [row[0] for row in copy.execute("PRAGMA integrity_check").fetchall()]
            except sqlite3.Error as exc:
                raise _copy_failed(exc, target, "check") from exc
            if problems != ["ok"]:
                raise BackupError(f"the snapshot of {database} fails SQLite's integrity check ({problems[0]}): "
                                  "the database itself is damaged")
        finally:
            copy.close()
    finally:
        source.close()
    with open(target, "rb+") as fh:
        os.fsync(fh.fileno())


def _discard_copy(target: Path) -> None:
    """Remove a snapshot copy and the files SQLite may have made beside it."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)


_SQLITE_NO_SPACE = frozenset({"SQLITE_FULL", "SQLITE_IOERR_SHMSIZE"})
"""What SQLite says when a disk has no room: a write or a file's growth got ENOSPC
(``SQLITE_FULL``), or the WAL index beside a copy in WAL mode (the backup API copies the live
header, WAL included) could not be grown (``SQLITE_IOERR_SHMSIZE``)."""

_SQLITE_COPY_SIDE = frozenset({"SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE",
                               "SQLITE_IOERR_DIR_FSYNC"})
"""Failures of the backup step that can only be the copy's: the live database is opened
read-only and never written (its WAL index, beside a running daemon, may be: those stay the
live database's)."""


def _sqlite_name(exc: sqlite3.Error) -> str:
    """SQLite's (extended) error name, e.g. ``SQLITE_FULL``; ``""`` when the driver gives none."""
    return getattr(exc, "sqlite_errorname", None) or ""


def _copy_failed(exc: sqlite3.Error, target: Path, doing: str) -> OSError | BackupError:
    """The error for SQLite failing on the copy ``target`` in the backup folder: :class:`DiskFull`
    naming that folder when its disk has no room, else :class:`BackupError` naming the file."""
    if _sqlite_name(exc) in _SQLITE_NO_SPACE:
        return DiskFull(target.parent)
    return BackupError(f"cannot {doing} the snapshot {target}: {exc}")


def _read_snapshot(snapshot: Path) -> dict[str, Any]:
    """What the snapshot says: schema revision, row counts by state, the evidence it names,
    the staging folders of unsent rows and the audit archives."""
    conn = sqlite3.connect(f"file:{quote(str(snapshot.absolute()))}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] \
            if "alembic_version" in tables else None
        counts = {}
        for name, table in (("outbound", "outbound"), ("recipients", "outbound_recipient"), ("inbound", "inbound")):
            if table in tables:
                counts[name] = dict(conn.execute(f"SELECT state, count(*) FROM {table} GROUP BY state ORDER BY state"))
        evidence: dict[str, str] = {}
        named = [("outbound", "SELECT evidence_sha256, 'outbound ' || id FROM outbound"),
                 ("inbound", "SELECT sha256, 'inbound ' || id FROM inbound"),
                 ("audit_entries", "SELECT sha256, 'exchange log entry ' || seq FROM audit_entries")]
        for table, query in named:
            if table in tables:
                for digest, who in conn.execute(query):
                    if digest:
                        evidence.setdefault(digest, who)
        staging = []
        if "outbound" in tables:
            marks = ", ".join("?" * len(UNSENT))
            staging = conn.execute(f"SELECT id, staging FROM outbound WHERE staging IS NOT NULL AND state IN ({marks}) "
                                   "ORDER BY created_at, id", UNSENT).fetchall()
        archives = conn.execute("SELECT path, sha256 FROM audit_archives ORDER BY id").fetchall() \
            if "audit_archives" in tables else []
    finally:
        conn.close()
    return {"revision": revision, "counts": counts, "evidence": evidence, "staging": staging, "archives": archives}


def _copy_evidence(layout: DataLayout, writer: _Writer) -> set[str]:
    """Copy every evidence file, each checked against the digest it is named by."""
    copied: set[str] = set()
    root = layout.evidence
    if not root.is_dir():
        return copied
    for first in sorted(p for p in root.iterdir() if _HEX2.match(p.name) and p.is_dir()):
        for second in sorted(p for p in first.iterdir() if _HEX2.match(p.name) and p.is_dir()):
            for path in sorted(second.iterdir()):
                digest = path.name
                if not (_HEX64.match(digest) and digest.startswith(first.name + second.name) and path.is_file()):
                    continue
                writer.add(path, f"{EVIDENCE}/{first.name}/{second.name}/{digest}", "evidence", expected=digest,
                           what="evidence file")
                copied.add(digest)
    return copied


def _check_named_evidence(layout: DataLayout, named: dict[str, str], copied: set[str]) -> None:
    """Every evidence file the snapshot names was copied (evidence is written before the row
    that names it and never removed: one missing was lost from the data folder)."""
    for digest, who in named.items():
        if digest not in copied:
            where = layout.evidence / digest[:2] / digest[2:4] / digest if _HEX64.match(digest) else digest
            raise BackupError(f"evidence file {where} (named by {who}) is missing from the data folder: "
                              "the backup would not be complete")


def _copy_staging(layout: DataLayout, writer: _Writer, rows: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Copy the staging folder of each unsent outbound row; returns ``[{outbound_id, folder}]``."""
    out = []
    done: set[str] = set()
    for out_id, recorded in rows:
        folder = _find_staging(layout, Path(recorded))
        if folder is None:
            raise BackupError(f"staging folder {recorded} of outbound {out_id} (not yet sent) is missing: "
                              "its document could not be sent after a restore")
        rel = f"{OUTGOING}/{folder.name}"
        out.append({"outbound_id": out_id, "folder": rel})
        if folder.name in done:
            continue
        done.add(folder.name)
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise BackupError(f"staging file {path} is not a regular file or folder")
            if path.is_file():
                writer.add(path, f"{rel}/{path.relative_to(folder).as_posix()}", "staging")
    return out


def _find_staging(layout: DataLayout, recorded: Path) -> Path | None:
    """A staging folder: by its name in the data folder's ``outgoing/`` (where the engine makes
    them; the row's path may be relative to the daemon's working folder), else as recorded."""
    for candidate in (layout.outgoing / recorded.name, recorded):
        if candidate.is_dir() and not candidate.is_symlink():
            return candidate
    return None


def _copy_archives(layout: DataLayout, writer: _Writer, rows: list[tuple[str, str]]) -> None:
    """Copy each audit archive file the log records, checked against the log's SHA-256."""
    for recorded, digest in rows:
        name = Path(recorded).name
        path = layout.archive_dir / name
        if not path.is_file():
            path = Path(recorded)
        if not path.is_file():
            raise BackupError(f"audit archive file {layout.archive_dir / name} is missing "
                              f"(the exchange log records it as {recorded})")
        writer.add(path, f"{ARCHIVE}/{name}", "audit-archive", expected=digest, what="audit archive file")


# --------------------------------------------------------------------------- restore


@dataclass
class RestoreResult:
    """What a restore did."""

    manifest: dict[str, Any]
    written: int = 0  # files put in place
    kept: int = 0  # files already there with the same content
    aside: list[Path] = field(default_factory=list)  # the previous database files, moved aside


def read_manifest(src: Path) -> dict[str, Any]:
    """The backup's manifest, checked for shape and safe paths; :class:`BackupError` when the
    folder is missing, has no manifest (an incomplete backup) or an unreadable one."""
    if not src.is_dir():
        raise BackupError(f"backup folder {src} does not exist" if not src.exists() else
                          f"backup folder {src} is not a folder")
    path = src / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{path} is missing: the backup in {src} is incomplete (it was interrupted before it "
                          "finished) or is not a connector backup") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BackupError(f"{path} is not valid JSON ({exc}): the backup is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a connector backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{path}: backup format version {manifest.get('format_version')!r} is not one this "
                          f"connector reads ({FORMAT_VERSION})")
    entries = [manifest.get("database")] + list(manifest.get("files") or [])
    for number, entry in enumerate(entries):
        problem = _entry_problem(entry, database=number == 0)
        if problem:
            raise BackupError(f"{path}: {problem}")
    folders = {e["path"].split("/")[1] for e in manifest["files"] if e["kind"] == "staging"}
    for item in manifest.get("staging") or []:
        rel = item.get("folder", "") if isinstance(item, dict) else ""
        parts = rel.split("/")
        if len(parts) != 2 or parts[0] != OUTGOING or parts[1] not in folders or not item.get("outbound_id"):
            raise BackupError(f"{path}: staging entry {item!r} names no staging folder of the backup")
    return manifest


def _entry_problem(entry: Any, *, database: bool) -> str | None:
    """Why a manifest file entry cannot be trusted to write under a data folder, or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return f"file entry {entry!r} has no path"
    rel = entry["path"]
    if not isinstance(entry.get("size"), int) or not _HEX64.match(str(entry.get("sha256"))):
        return f"file entry {rel!r} has no size or SHA-256"
    parts = PurePosixPath(rel).parts
    if database:
        return None if rel == DATABASE else f"the database entry names {rel!r}, not {DATABASE}"
    safe = all(p not in ("", ".", "..") and "\\" not in p and "\x00" not in p for p in parts) and not rel.startswith("/")
    kind = entry.get("kind")
    shapes = {
        "evidence": len(parts) == 4 and parts[0] == EVIDENCE and _HEX64.match(parts[3]) is not None
        and parts[1] + parts[2] == parts[3][:4] and parts[3] == entry["sha256"],
        "staging": len(parts) >= 3 and parts[0] == OUTGOING,
        "audit-archive": len(parts) == 2 and parts[0] == ARCHIVE,
    }
    if not (safe and shapes.get(kind)):
        return f"file entry {rel!r} ({kind}) is not a path a backup writes"
    return None


def check_revision(manifest: dict[str, Any], src: Path) -> None:
    """The backup's schema revision is one this connector knows (it migrates it forward at start)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    revision = manifest.get("alembic_revision")
    if revision is None:
        return
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        known = ScriptDirectory.from_config(config).get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown revision
        known = False
    if not known:
        raise BackupError(f"{src / MANIFEST}: the database is at schema revision {revision!r}, which this connector "
                          f"({__version__}) does not know: restore with version {manifest.get('connector_version')} "
                          "or newer")


def check_agency(manifest: dict[str, Any], src: Path, agency: str | None) -> None:
    """The backup was taken of a connector of the same agency: restoring another agency's
    state would send, receive and acknowledge documents as that agency."""
    taken = manifest.get("agency")
    if taken and agency and taken != agency:
        raise BackupError(f"{src / MANIFEST}: the backup is of agency {taken}'s connector, this connector is "
                          f"configured for {agency}: restore it into a connector of {taken}")


def verify_backup(src: Path, manifest: dict[str, Any]) -> None:
    """Every file of the backup is there with the manifest's size and SHA-256."""
    for entry in [manifest["database"]] + manifest["files"]:
        path = src / entry["path"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BackupError(f"{path} is missing (manifest.json lists it): the backup is damaged") from None
        if size != entry["size"]:
            raise BackupError(f"{path} has {size} bytes, the manifest says {entry['size']}: it was truncated or "
                              "altered")
        _, digest = _hash(path)
        if digest != entry["sha256"]:
            raise BackupError(f"{path} does not match the SHA-256 in the manifest: it was altered or damaged")


def refuse_foreign_folder(data_dir: Path) -> None:
    """Run as root, a restore into a data folder that another user owns is refused.

    Why: files root writes there would be root's, and the daemon, which runs as that user
    (systemd ``User=``), could not write them ("attempt to write a readonly database"); giving
    them away with chown is no answer either, since root writing into a folder another user
    controls follows the links that user may have planted there (to /etc, say). Run as the
    folder's owner, the restore can only do what that user could."""
    if os.geteuid() != 0:
        return
    folder = data_dir.absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    uid = folder.stat().st_uid
    if uid == 0:
        return
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    raise BackupError(f"{folder} belongs to {user}: run restore as that user (sudo -u {user} ...), with the backup "
                      f"readable by it; as root, restore would leave root's files where {user}'s connector must "
                      "write, or follow links planted in a folder root does not control")


@contextmanager
def holding_data_folder(layout: DataLayout) -> Iterator[None]:
    """Hold the data folder's instance lock: no connector runs on it meanwhile, and none may start.
    """
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"a connector is running on {layout.data_dir} (it holds {layout.lock}): "
                              "stop it before restoring") from None
        yield
    finally:
        os.close(fd)


def restore(layout: DataLayout, src: Path, *, force: bool = False) -> RestoreResult:
    """Put the backup in ``src`` in place for the connector at ``layout``.

    Refused (:class:`BackupError`, nothing written) when a connector holds the data folder,
    when the backup is incomplete or any file differs from its manifest, and, unless
    ``force``, when a database with content is already there (with ``force`` it is moved
    aside, with its WAL files, to ``<name>.before-restore-<UTC time>``). Without ``force`` a
    database that appears while the restore runs (a command that takes no lock, like ``send``,
    creates one when there is no marker yet) is refused too, checked again before the marker is
    written and before anything is moved aside: it is never moved aside unasked.

    Run as root, a data folder another user owns is refused (:func:`refuse_foreign_folder`)."""
    manifest = read_manifest(src)
    check_revision(manifest, src)
    check_agency(manifest, src, layout.agency)
    result = RestoreResult(manifest)
    refuse_foreign_folder(layout.data_dir)
    with holding_data_folder(layout):
        existing = _existing_database(layout.database)
        if existing and not force:
            raise BackupError(f"database file {layout.database} already exists: restore replaces it only with "
                              f"--force (it is then kept as {layout.database.name}.before-restore-<time> beside it)")
        seen = None if force else _database_state(layout.database)
        verify_backup(src, manifest)
        plan = _plan(layout, src, manifest)
        _refuse_if_created(layout.database, seen)
        _write_marker(layout.database, src, manifest)
        for source, target, entry in plan.files:
            _put_file(source, target, entry)
        for tmp, target in plan.folders:
            os.replace(tmp, target)
        _fsync_folders([target for _, target, _ in plan.files] + [target for _, target in plan.folders],
                       layout.data_dir)
        result.written, result.kept = len(plan.files), plan.kept
        result.aside = _put_database(layout, src, manifest, seen)
    return result


def _existing_database(database: Path) -> bool:
    """Whether a database with content is there (a 0-byte file holds nothing to keep)."""
    try:
        return database.stat().st_size > 0
    except FileNotFoundError:
        return False


def _database_state(database: Path) -> tuple[Any, ...]:
    """The database file and its ``-wal`` as they are (absent, or identity, size and times)."""
    return _file_state(database), _file_state(database.with_name(database.name + "-wal"))


def _refuse_if_created(database: Path, seen: tuple[Any, ...] | None) -> None:
    """Without ``--force`` (``seen`` is the state found when the restore began): refuse when a
    database appeared or was written since, naming it; with ``--force`` (None) nothing to check."""
    if seen is None or _database_state(database) == seen:
        return
    raise BackupError(f"database file {database} was created while the restore ran (by a connector command such as "
                      "send): it was left as it is and the backup's database was not put in place; restore again "
                      f"with --force to replace it (it is then kept as {database.name}.before-restore-<time> "
                      "beside it)")


@dataclass
class _Plan:
    files: list[tuple[Path, Path, dict[str, Any]]] = field(default_factory=list)  # source, target, entry
    folders: list[tuple[Path, Path]] = field(default_factory=list)  # staging built aside -> its name
    kept: int = 0


def _plan(layout: DataLayout, src: Path, manifest: dict[str, Any]) -> _Plan:
    """Where each file goes; files already there with the same content are kept. A staging
    folder or archive already there with other content is refused (evidence is named by its
    content: one there that differs is damaged, and the backup's copy replaces it)."""
    plan = _Plan()
    staging: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest["files"]:
        parts = PurePosixPath(entry["path"]).parts
        source = src / entry["path"]
        if entry["kind"] == "evidence":
            target = layout.evidence.joinpath(*parts[1:])
        elif entry["kind"] == "audit-archive":
            target = layout.archive_dir / parts[1]
            if target.exists() and not _same(target, entry):
                raise BackupError(f"audit archive file {target} already exists with other content: move it away "
                                  "before restoring")
        else:
            staging.setdefault(parts[1], []).append(entry)
            continue
        if _same(target, entry):
            plan.kept += 1
        else:
            plan.files.append((source, target, entry))
    for name, entries in staging.items():
        target = layout.outgoing / name
        if target.exists():
            present = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if not p.is_dir())
            wanted = sorted("/".join(PurePosixPath(e["path"]).parts[2:]) for e in entries)
            if present != wanted or not all(_same(target.joinpath(*PurePosixPath(e["path"]).parts[2:]), e)
                                            for e in entries):
                raise BackupError(f"staging folder {target} already exists with other content: move it away "
                                  "before restoring")
            plan.kept += len(entries)
            continue
        tmp = layout.outgoing / f".restore-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        for entry in entries:
            plan.files.append((src / entry["path"], tmp.joinpath(*PurePosixPath(entry["path"]).parts[2:]), entry))
        plan.folders.append((tmp, target))
    return plan


def _same(path: Path, entry: dict[str, Any]) -> bool:
    """Whether ``path`` is a file with the entry's size and SHA-256."""
    try:
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return False
    except OSError:
        return False
    return _hash(path)[1] == entry["sha256"]


def _put_file(source: Path, target: Path, entry: dict[str, Any]) -> None:
    """Copy to a temporary name beside ``target``, check, flush, rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".restore-{target.name}.tmp")
    with writing(target.parent):
        try:
            _, digest = _copy(source, tmp)
            if digest != entry["sha256"]:
                raise BackupError(f"{source} changed while it was restored: it no longer matches the manifest")
            if entry["kind"] in ("evidence", "audit-archive"):
                os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _fsync_folders(paths: list[Path], top: Path) -> None:
    """Flush the folders holding ``paths`` and their parents up to ``top`` (deepest first), so
    the renames survive a power cut before the database that names the files is put in place."""
    folders: set[Path] = set()
    for path in paths:
        for parent in path.parents:
            folders.add(parent)
            if parent == top or top not in parent.parents:
                break
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        fsync_dir(folder)


def _write_marker(database: Path, src: Path, manifest: dict[str, Any]) -> None:
    """The creation marker, first: a restore cut short then stops the connector with "restore
    it from backup" instead of letting it create an empty database."""
    marker = marker_path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    text = (f"{database.name} was restored by the connector on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} "
            f"UTC from the backup {src.absolute()} (snapshot of {manifest.get('created')}).\n"
            "While this file exists, the connector refuses to start when the database file is missing,\n"
            "instead of creating an empty database. Remove it only to start over with an empty database.\n")
    tmp = marker.with_name(marker.name + ".tmp")
    with writing(marker.parent):
        write_synced(tmp, text.encode("utf-8"))
        os.replace(tmp, marker)
    fsync_dir(marker.parent)


def _put_database(layout: DataLayout, src: Path, manifest: dict[str, Any],
                  seen: tuple[Any, ...] | None = None) -> list[Path]:
    """Copy the snapshot beside the database, point its unsent rows at the restored staging
    folders, then move the previous database files aside and rename the
    copy into place; without ``--force`` (``seen`` given) a database that appeared meanwhile is
    refused instead (:func:`_refuse_if_created`). Returns where the previous files went."""
    database = layout.database
    tmp = database.with_name(f".{database.name}.restore-tmp")
    with writing(database.parent):
        try:
            _, digest = _copy(src / DATABASE, tmp)
            if digest != manifest["database"]["sha256"]:
                raise BackupError(f"{src / DATABASE} changed while it was restored: it no longer matches the manifest")
            _point_staging(tmp, layout, manifest.get("staging") or [])
            _refuse_if_created(database, seen)
            aside = _move_aside(database)
            os.replace(tmp, database)
        except BaseException:
            for name in (tmp.name, tmp.name + "-journal"):
                (tmp.parent / name).unlink(missing_ok=True)
            raise
    fsync_dir(database.parent)
    return aside


def _point_staging(copy: Path, layout: DataLayout, staging: list[dict[str, str]]) -> None:
    """The restored rows name their staging folders in the restored data folder."""
    if not staging:
        return
    outgoing = layout.outgoing.absolute()
    conn = sqlite3.connect(copy)
    try:
        with conn:
            conn.executemany("UPDATE outbound SET staging = ? WHERE id = ?",
                             [(str(outgoing / PurePosixPath(s["folder"]).name), s["outbound_id"]) for s in staging])
    except sqlite3.Error as exc:
        raise BackupError(f"cannot update the restored database copy {copy}: {exc}") from None
    finally:
        conn.close()
    with open(copy, "rb+") as fh:
        os.fsync(fh.fileno())


def _move_aside(database: Path) -> list[Path]:
    """Move the database file and its WAL files (which SQLite would otherwise apply to the
    restored file) to ``<name>.before-restore-<UTC time>[-wal|-shm]``; returns the new names."""
    present = [database.with_name(database.name + s) for s in ("", "-wal", "-shm")]
    present = [p for p in present if p.exists()]
    if not present:
        return []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = f"{database.name}.before-restore-{stamp}"
    n = 0
    while any(database.with_name(base + s).exists() for s in ("", "-wal", "-shm")):
        n += 1
        base = f"{database.name}.before-restore-{stamp}-{n}"
    moved = []
    for path in present:
        target = database.with_name(base + path.name[len(database.name):])
        os.replace(path, target)
        moved.append(target)
    fsync_dir(database.parent)
    return moved


# --------------------------------------------------------------------------- files


def _copy(source: Path, target: Path) -> tuple[int, str]:
    """Copy ``source`` to ``target`` (flushed to disk); returns the size and SHA-256 read."""
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as src, open(target, "wb") as out:
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def _hash(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


__all__ = ["BackupError", "DataLayout", "RestoreResult", "backup", "database_file", "read_manifest", "restore",
           "verify_backup"]
