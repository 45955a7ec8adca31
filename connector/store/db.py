"""Opening the database: SQLite (WAL) by default, PostgreSQL (psycopg 3) by URL; migrations.

SQLite is for one connector instance: :func:`open_database` sets WAL, a busy timeout and
``BEGIN IMMEDIATE`` for write transactions, so the engine's threads wait for each other
instead of failing with "database is locked". PostgreSQL serves several instances.

A SQLite file is created only once. SQLite would silently make a new, empty database wherever
the file is missing, and with it every queue, history and idempotency record would be gone
(documents sent twice). So, as infrastructure software does with its data directory, the
first start creates the file and writes a marker beside it (``connector.db.created``); from
then on the file is opened with SQLite's ``mode=rw`` (never created), and a missing file is
an error naming it, while the connector runs (each connection checks that the file it opened
is still there) and at the next start (the marker says one existed). A file emptied to 0
bytes is the same loss (SQLite would open it as a new, empty database) and is refused the same
way. The marker is written only once the file has content (SQLite writes its first page when
the connection sets WAL mode), so a start that crashed right after creating the file leaves no
marker beside an empty file and the next start simply creates the database again. Removing
the marker is the operator's explicit "start empty".

PostgreSQL connections give up after :data:`PG_CONNECT_TIMEOUT_S` unless the URL sets
``connect_timeout``, so an unreachable server ends a round with one line naming host and
port instead of blocking it for the operating system's TCP timeout.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..durable import DiskFull, fsync_dir, write_synced
from ..redact import redact_url

MIGRATIONS = Path(__file__).with_name("migrations")
PG_CONNECT_TIMEOUT_S = 10
"""Seconds a PostgreSQL connection attempt may take unless the URL sets ``connect_timeout``."""

log = logging.getLogger("connector.store")


class DatabaseError(Exception):
    """The database cannot be opened or migrated; the text says which and why."""


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


SUPPORTED_URLS = "sqlite:///PATH, or postgresql://USER@HOST[:PORT]/DB with the psycopg driver (also written postgres:// or postgresql+psycopg://)"
_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",)}


def check_url(url: str) -> sa.engine.URL:
    """``url`` parsed, or :class:`DatabaseError` saying why it cannot be used: not a URL, a port
    that is not a number, a database or driver we do not support. The text never shows a
    password (it is replaced by ``***``)."""
    shown = redact_url(url)
    try:
        parsed = sa.engine.make_url(normalize_url(url))
        parsed.port  # noqa: B018 - a non-numeric port only fails when read
    except (sa.exc.ArgumentError, ValueError):
        raise DatabaseError(f"database URL {shown!r} is not valid; supported: {SUPPORTED_URLS}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if driver not in _DRIVERS.get(backend, ()):
        name = parsed.drivername
        raise DatabaseError(f"database URL {shown!r}: {name!r} is not supported; supported: {SUPPORTED_URLS}")
    return parsed


def open_database(url: str, *, pool_size: int = 5) -> sa.Engine:
    """An engine for ``url``; the SQLite file's folder is created, the file itself only at the
    first start (see the module docstring); PostgreSQL connections time out."""
    parsed = check_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        if _is_sqlite_file(parsed):
            SqliteFile(Path(parsed.database)).watch(engine)
        _sqlite_pragmas(engine)
        return engine
    engine = sa.create_engine(parsed, pool_size=pool_size, max_overflow=5, pool_pre_ping=True,
                              connect_args=_pg_connect_args(parsed))
    _naming_unreachable_server(engine)
    return engine


# --------------------------------------------------------------------------- SQLite: one creation


def _is_sqlite_file(url: sa.engine.URL) -> bool:
    """Whether ``url`` names a plain database file (not memory, not an SQLite ``file:`` URI
    whose open mode the operator chose)."""
    database = url.database or ""
    return database not in ("", ":memory:") and not database.startswith("file:") and "uri" not in url.query


def marker_path(database: Path) -> Path:
    """The file beside a SQLite database that says it was created (``connector.db.created``)."""
    return database.with_name(database.name + ".created")


class SqliteFile:
    """Opens one SQLite database file for an engine: creates it only when it never existed,
    and refuses to go on when it disappears or is replaced.

    Why: SQLite creates a missing file silently, so a deleted database would come back empty
    and the connector would forget every document it queued, sent or received. The marker
    (:func:`marker_path`) remembers across restarts that the file existed; the identity
    (device, inode) of the file first opened catches a deletion or replacement while the
    engine runs, where pooled connections would otherwise keep writing to a deleted file."""

    def __init__(self, path: Path):
        self.path = path
        self.marker = marker_path(path)
        self._uri = "file:" + quote(os.path.abspath(path))
        self._identity: tuple[int, int] | None = None
        self._had_content = False  # the file was seen with content: emptied later is a loss
        self._marked = False  # the marker was written (or found) by this engine
        self._lock = threading.Lock()

    def watch(self, engine: sa.Engine) -> None:
        """Make ``engine`` open the file through :meth:`connect` and check it at each checkout."""
        sa.event.listen(engine, "do_connect", self._do_connect)
        sa.event.listen(engine, "checkout", self._on_checkout)

    def disappeared(self, *, running: bool) -> str:
        """The one line that says the database file is gone and what the operator can do."""
        if running:
            return (f"database file {self.path} disappeared while the connector ran; stop the connector, then "
                    f"restore the file from a backup (cli.py restore) or remove {self.marker} to start empty")
        return f"database file {self.path} disappeared; restore it from a backup (cli.py restore) or remove {self.marker} to start empty"

    def emptied(self, *, running: bool) -> str:
        """The one line that says the database file was emptied (0 bytes) and what the operator can do."""
        if running:
            return (f"database file {self.path} was emptied (0 bytes) while the connector ran; stop the connector, "
                    f"then restore the file from a backup (cli.py restore) or remove {self.marker} to start empty")
        return (f"database file {self.path} is empty (0 bytes) although {self.marker} says it was created; "
                f"restore it from a backup (cli.py restore) or remove {self.marker} to start empty")

    def _do_connect(self, dialect: Any, _record: Any, _cargs: list[Any], cparams: dict[str, Any]) -> sqlite3.Connection:
        """SQLAlchemy's ``do_connect`` hook: the driver's ``connect`` with the engine's arguments."""
        return self.connect(dialect.loaded_dbapi.connect, cparams)

    def connect(self, connect: Callable[..., sqlite3.Connection], params: dict[str, Any]) -> sqlite3.Connection:
        """A connection to the file opened read-write without creating it, except when it
        never existed (no marker, never opened by this engine): then it is created. Raises
        :class:`DatabaseError` when the file disappeared or was replaced."""
        try:
            conn = connect(f"{self._uri}?mode=rw", uri=True, **params)
        except sqlite3.OperationalError:
            if self.path.exists():
                raise  # there but unusable (permissions, not a database): the driver says why
            with self._lock:
                if self._identity is not None:
                    raise DatabaseError(self.disappeared(running=True)) from None
                if self.marker.exists():
                    raise DatabaseError(self.disappeared(running=False)) from None
                conn = connect(f"{self._uri}?mode=rwc", uri=True, **params)
                log.info("created the database %s", self.path)
        try:
            self._check_identity()
        except BaseException:
            conn.close()
            raise
        return conn

    def _on_checkout(self, _dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        """Before a pooled connection is used: the file it opened must still be the one at
        :attr:`path` (a connection to a deleted file would write where nobody reads), and
        not emptied; the marker is written at the first use that finds the file with content."""
        if self._check_identity() and not self._marked:
            self._write_marker()

    def _check_identity(self) -> bool:
        """Remember the (device, inode) of the file first opened; :class:`DatabaseError` when
        the file at :attr:`path` is gone or is another one since, or is empty (0 bytes) while
        the marker says it was created (at the first opening) or after it had content.
        Returns whether the file has content."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise DatabaseError(self.disappeared(running=True)) from None
        identity = (st.st_dev, st.st_ino)
        with self._lock:
            if self._identity is None:
                if st.st_size == 0 and self.marker.exists():
                    raise DatabaseError(self.emptied(running=False))
                self._identity = identity
            elif self._identity != identity:
                raise DatabaseError(f"database file {self.path} was replaced while the connector ran; "
                                    "restart the connector to use the new file")
            if st.st_size > 0:
                self._had_content = True
            elif self._had_content:
                raise DatabaseError(self.emptied(running=True))
        return st.st_size > 0

    def _write_marker(self) -> None:
        """Write the marker once the file has content (also for a database created before
        markers existed). A marker that cannot be written only loses the protection: a warning."""
        self._marked = True
        if self.marker.exists():
            return
        text = (f"{self.path.name} was created or first opened by the connector on "
                f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC.\n"
                "While this file exists, the connector refuses to start when the database file is missing,\n"
                "instead of creating an empty database. Remove it only to start over with an empty database.\n")
        tmp = self.marker.with_name(self.marker.name + ".tmp")
        try:
            write_synced(tmp, text.encode("utf-8"))
            os.replace(tmp, self.marker)
            fsync_dir(self.marker.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("cannot write %s (%s): a later loss of %s would not be noticed", self.marker,
                        exc.strerror or exc, self.path)


# --------------------------------------------------------------------------- PostgreSQL: reaching it


def _pg_connect_args(url: sa.engine.URL) -> dict[str, Any]:
    """The default connect timeout, unless the URL sets ``connect_timeout`` itself."""
    return {} if "connect_timeout" in url.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}


def pg_address(url: sa.engine.URL) -> str:
    """``host:port`` of the server a PostgreSQL URL names (a socket folder as ``/path:port``)."""
    def one(value: Any) -> str:  # a multi-host URL repeats host= and port=
        return ",".join(value) if isinstance(value, tuple) else str(value)

    host = url.host or one(url.query.get("host") or "localhost")
    port = url.port or one(url.query.get("port") or 5432)
    return f"{host}:{port}"


_LIBPQ_PREFIX = re.compile(r'^(?:connection failed: )?(?:connection to server (?:at|on socket) "[^"]*"'
                           r'(?: \([^)]*\))?(?:, port \d+)? failed: )?')


def pg_connect_failure(url: sa.engine.URL, exc: BaseException) -> str:
    """One line for a PostgreSQL connection that failed: the server's address and the reason
    (libpq's first line, without its "connection to server at ..." preamble and hint lines);
    a timeout says which setting bounds it. Never the password (not part of either)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = _LIBPQ_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
    reason = re.sub(r"\s+", " ", reason)
    if type(exc).__name__ == "ConnectionTimeout" or "timeout expired" in reason:
        seconds = url.query.get("connect_timeout", PG_CONNECT_TIMEOUT_S)
        reason += f" (no answer within connect_timeout={seconds} s)"
    return f"cannot connect to PostgreSQL at {pg_address(url)}: {reason}"


def _naming_unreachable_server(engine: sa.Engine) -> None:
    """A failed connection attempt becomes :class:`DatabaseError` with :func:`pg_connect_failure`'s
    line (an operational error a round reports in one line), instead of the driver's text."""

    @sa.event.listens_for(engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as exc:
            raise DatabaseError(pg_connect_failure(engine.url, exc)) from exc


def _sqlite_pragmas(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


PG_DISK_FULL = "53100"  # SQLSTATE disk_full


def full_database(exc: BaseException, engine: sa.Engine) -> DiskFull | None:
    """A :class:`DiskFull` naming the database when ``exc`` says the disk under it is full
    (SQLite: SQLITE_FULL "database or disk is full"; PostgreSQL: SQLSTATE 53100), else None."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return None
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    sqlite_full = isinstance(orig, sqlite3.Error) and (
        (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "database or disk is full" in str(orig))
    if not (sqlite_full or getattr(orig, "sqlstate", None) == PG_DISK_FULL):
        return None
    if engine.dialect.name == "sqlite" and engine.url.database:
        return DiskFull(Path(engine.url.database))
    return DiskFull(f"the database {engine.url.render_as_string(hide_password=True)}")


@contextmanager
def naming_full_database(engine: sa.Engine) -> Iterator[None]:
    """Database errors that mean "the disk is full" become :class:`DiskFull` naming the
    database (one line for the operator, the step retried later), instead of a driver error
    whose traceback says the same thing less clearly."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        full = full_database(exc, engine)
        if full is None:
            raise
        raise full from exc


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: sa.Engine) -> str:
    """Bring the schema to the newest revision; returns it. Safe to run on every start, and
    from several instances at once on PostgreSQL (an advisory lock serializes them)."""
    try:
        with engine.begin() as conn:
            if is_postgres(engine):
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7310001)")
            command.upgrade(_alembic_config(conn), "head")
            return current_revision(conn) or ""
    except sa.exc.OperationalError as exc:
        # The driver's first line: PostgreSQL adds HINT/DETAIL lines ("Check free disk space.").
        reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        raise DatabaseError(f"cannot open the database {engine.url.render_as_string(hide_password=True)}: {reason}") from None


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head() or ""
