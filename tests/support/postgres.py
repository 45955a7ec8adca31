"""A real PostgreSQL server for the tests, started on loopback in a temporary folder.

``initdb`` refuses to run as root (CI containers run as root), so as root the cluster is
created and run as the ``postgres`` system user that Debian's package creates. The server
listens on 127.0.0.1 on a free port with ``trust`` authentication; each test that wants
isolation asks :meth:`PostgresServer.new_database` for a database of its own, and a test
that needs the database on a disk of its own (a small tmpfs, to fill it) asks
:meth:`PostgresServer.database_on` for one whose tables live in a tablespace there.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed here."""


def _bindir() -> Path:
    override = os.environ.get("PG_BINDIR")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable("PostgreSQL server programs (initdb, pg_ctl) not found; install the 'postgresql' package")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    run_as: str | None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + list(args)

    def start(self) -> "PostgresServer":
        self.root.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            info = pwd.getpwnam(self.run_as)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        subprocess.run(
            self._cmd(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
            check=True, capture_output=True,
        )
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} -c fsync=off -c max_connections=200"
        subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.root / "server.log"),
                      "-o", options, "-w", "-t", "60", "start"),
            check=True, capture_output=True,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start; see {self.root / 'server.log'}")

    def stop(self) -> None:
        subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def _admin(self):
        """An autocommit superuser connection to the ``postgres`` database."""
        import psycopg

        return psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True)

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def scratch_folder(self, name: str) -> Path:
        """A new folder the server's user can reach (a test's own tmp_path is private to root),
        e.g. to mount a small disk on and put a tablespace there."""
        folder = self.root / "scratch" / f"{name}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        os.chmod(folder.parent, 0o755)
        return folder

    @contextmanager
    def database_on(self, folder: Path, prefix: str = "t") -> Iterator[str]:
        """A new database whose tables and indexes are created in a tablespace at ``folder``
        (its ``default_tablespace``; the catalogs and the write-ahead log stay in the data
        directory), as the store's tables are when the database's own disk is ``folder``'s.
        Yields its URL; the database and the tablespace are dropped afterwards, so ``folder``
        can be unmounted."""
        if self.run_as:
            info = pwd.getpwnam(self.run_as)
            os.chown(folder, info.pw_uid, info.pw_gid)
        space = f"{prefix}_space_{uuid.uuid4().hex[:8]}"
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        try:
            with self._admin() as conn:
                conn.execute(f"CREATE TABLESPACE \"{space}\" LOCATION '{folder}'")
                conn.execute(f'CREATE DATABASE "{name}"')
                conn.execute(f'ALTER DATABASE "{name}" SET default_tablespace = "{space}"')
            yield self.url(name)
        finally:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'DROP TABLESPACE IF EXISTS "{space}"')


def start_postgres() -> PostgresServer:
    """Start a throw-away cluster; raises :class:`PostgresUnavailable` when not installed."""
    bindir = _bindir()
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
            run_as = "postgres"
        except KeyError as exc:
            raise PostgresUnavailable("running as root needs the 'postgres' system user to run initdb") from exc
    root = Path(tempfile.mkdtemp(prefix="connector-pg-"))
    os.chmod(root, 0o755)
    return PostgresServer(bindir, root, _free_port(), run_as).start()
