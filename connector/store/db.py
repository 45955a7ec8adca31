"""Opening the database: SQLite (WAL) by default, PostgreSQL (psycopg 3) by URL; migrations.

SQLite is for one connector instance: :func:`open_database` sets WAL, a busy timeout and
``BEGIN IMMEDIATE`` for write transactions, so the engine's threads wait for each other
instead of failing with "database is locked". PostgreSQL serves several instances.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..durable import DiskFull
from ..redact import redact_url

MIGRATIONS = Path(__file__).with_name("migrations")


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
    """An engine for ``url``; the SQLite file's folder is created."""
    parsed = check_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_pragmas(engine)
        return engine
    return sa.create_engine(parsed, pool_size=pool_size, max_overflow=5, pool_pre_ping=True)


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
        raise DatabaseError(f"cannot open the database {engine.url.render_as_string(hide_password=True)}: {exc.orig}") from None


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head() or ""
