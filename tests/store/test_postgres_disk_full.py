"""A full disk under PostgreSQL, on a real server whose tables live on a real small tmpfs.

PostgreSQL reports a relation it cannot extend as ``could not extend file "...": No space left
on device`` (SQLSTATE 53100 disk_full). The store must say :class:`DiskFull` naming the
database (never its password), so the engine waits: nothing lost, no attempt counted, one line
per round, and the work completes once space is back.

The tables are in a tablespace on the tmpfs (the database's ``default_tablespace``); the
write-ahead log and the catalogs stay on the server's own disk. That is the case PostgreSQL
survives: with the write-ahead log itself on the full disk the server stops (PANIC), which no
client can map to anything but a lost connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import sqlalchemy as sa

from connector.daemon.runner import Daemon
from connector.durable import DiskFull
from connector.store import tables
from connector.store.db import DatabaseError, migrate, open_database
from connector.store.repo import Store
from tests.engine.conftest import G22, H16, inbox_docs, make_side, rounds, submit_sample  # noqa: F401
from tests.support.postgres import PostgresServer
from tests.support.small_disk import SmallDisk, small_disk

SECRET = "S3CRET-pw"  # the test server trusts loopback: a password in the URL is not checked, only carried


@pytest.fixture
def full_disk_pg(postgres_server: PostgresServer) -> Iterator[tuple[SmallDisk, str]]:
    """A small tmpfs and the URL (with a password) of a new database whose tables live on it.
    Ask for it before ``make_side``: the runtimes close before the disk is unmounted."""
    with ExitStack() as stack:
        folder = postgres_server.scratch_folder("small-disk")
        disk = stack.enter_context(small_disk(folder, "2m"))
        url = stack.enter_context(postgres_server.database_on(folder))
        yield disk, url.replace("postgres@", f"postgres:{SECRET}@")


def shown(url: str) -> str:
    """The database as a :class:`DiskFull` names it: the URL with its password hidden."""
    return f"the database {sa.engine.make_url(url).render_as_string(hide_password=True)}"


def pg_error(exc: BaseException) -> BaseException:
    """The driver's error under a :class:`DiskFull` (its cause, wrapped by SQLAlchemy)."""
    cause = exc.__cause__
    assert isinstance(cause, sa.exc.DBAPIError), repr(cause)
    return cause.orig


def fill_outbound_pages(store: Store, limit: int = 20_000) -> DiskFull:
    """Insert small finished rows (never claimed) one per transaction until the table cannot
    grow: every page of ``outbound`` is then too full for a larger row, such as a queued row's
    next version when a round claims it. Returns the :class:`DiskFull` that stopped it."""
    for i in range(limit):
        try:
            with store.transaction() as conn:
                conn.execute(tables.outbound.insert().values(
                    id=f"j{i}", kind="edoc", sender="x", state="sent", attempts=0, next_attempt_at=0.0,
                    created_at=0.0, updated_at=0.0))
        except DiskFull as exc:
            return exc
    pytest.fail(f"{limit} rows fitted on a full disk")


def test_a_full_disk_under_postgresql_is_disk_full_naming_the_database(full_disk_pg):
    disk, url = full_disk_pg
    engine = open_database(url)
    try:
        migrate(engine)
        store = Store(engine)
        queued, _ = store.enqueue_outbound(kind="edoc", sender=H16, document_id="doc-0", recipients=[G22], staging=None)
        disk.fill()
        full = None
        for i in range(20_000):  # until the tables need a page the disk cannot give
            try:
                store.enqueue_outbound(kind="edoc", sender=H16, document_id=f"doc-{i + 1}", recipients=[G22],
                                       staging=None)
            except DiskFull as exc:  # before: the driver's error, which a round logs with a traceback
                full = exc
                break
        assert full is not None, "the database never filled"
        assert full.filename == shown(url) and SECRET not in str(full)
        assert str(full).endswith(f"No space left on device: '{shown(url)}'")
        origin = pg_error(full)
        assert origin.sqlstate == "53100"
        assert str(origin).startswith('could not extend file "pg_tblspc/') and "No space left on device" in str(origin)

        row = store.outbound(queued)
        assert (row["state"], row["attempts"], row["claimed_by"]) == ("queued", 0, None)
        disk.free()
        store.enqueue_outbound(kind="edoc", sender=H16, document_id="doc-after", recipients=[G22], staging=None)
    finally:
        engine.dispose()


def test_a_send_round_on_a_full_postgresql_disk_waits_and_then_sends_once(full_disk_pg, make_side, caplog):
    disk, url = full_disk_pg
    g22 = make_side(G22, "soap")
    h16 = make_side(H16, "vxp", database_url=url)
    tracking, doc_id = submit_sample(h16, G22, 1)
    disk.fill()
    origin = pg_error(fill_outbound_pages(h16.store))
    assert origin.sqlstate == "53100"

    daemon = Daemon(h16.rt)
    caplog.set_level(logging.INFO, logger="connector")
    for _ in range(2):
        caplog.clear()
        daemon._job("send", daemon._round_send)()  # as the scheduler runs it
        lines = [r for r in caplog.records if r.name.startswith("connector") and r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in lines] == [f"send round failed: No space left on device: {shown(url)}"]
        assert not any(r.exc_info for r in lines)
        row = h16.store.outbound(tracking)
        assert (row["state"], row["attempts"]) == ("queued", 0)  # not lost, no attempt counted

    disk.free()
    rounds(h16, g22)
    delivered = [json.loads((p / "metadata.json").read_text(encoding="utf-8"))["document_id"] for p in inbox_docs(g22)]
    assert delivered == [doc_id]  # exactly once
    row = h16.store.outbound(tracking)
    assert (row["state"], row["attempts"]) == ("sent", 0)
    assert h16.engine.track(tracking)["recipients"][0]["status_code"] == "01"


def test_migrating_on_a_full_postgresql_disk_is_one_line(full_disk_pg):
    disk, url = full_disk_pg
    disk.fill()
    engine = open_database(url)
    try:
        with pytest.raises(DatabaseError) as err:
            migrate(engine)  # the first start, on a disk already full
    finally:
        engine.dispose()
    text = str(err.value)
    assert "\n" not in text  # before: PostgreSQL's "HINT:  Check free disk space." on a second line
    assert text.startswith(f"cannot open the database {shown(url)[len('the database '):]}: could not extend file ")
    assert text.endswith(": No space left on device") and SECRET not in text
