"""Reaching PostgreSQL: a server that cannot be reached ends the attempt within the connect
timeout (10 s unless the URL sets ``connect_timeout``) with one line naming host and port and
the reason, never the password; a round reports it as an operational error in that line.

The unreachable servers are real sockets on loopback: one that accepts connections and never
says a word, and one whose listen queue is full (the kernel drops the connection request)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from connector.daemon.runner import OPERATIONAL_ERRORS, operational_reason
from connector.store.db import DatabaseError, migrate, open_database
from connector.store.repo import Store

SECRET = "S3CRET-pw"
BOUND_S = 45.0
"""Generous: far above the timeouts under test, far below the minutes an unbounded attempt takes."""


def fails_within(seconds: float, fn: Callable[[], object]) -> BaseException:
    """The exception ``fn`` raises, run in a thread; fails the test if it is still running
    after ``seconds`` (the thread is a daemon: the test's sockets closing at teardown end it)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still connecting after {seconds} s")
    assert outcome[0] is not None, "connected to a server that cannot be reached"
    return outcome[0]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port whose server accepts connections and never answers; its port."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
    server.close()
    for conn in accepted:
        conn.close()
    thread.join(5)


@pytest.fixture
def full_listen_queue() -> Iterator[int]:
    """A loopback port that never completes a connection: its listener accepts nothing and its
    queue (backlog 0) is full, so the kernel drops further connection requests; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued: list[socket.socket] = []
    for _ in range(64):
        client = socket.socket()
        client.settimeout(0.5)
        try:
            client.connect(("127.0.0.1", port))
        except OSError:  # not completed: the queue is full
            client.close()
            break
        queued.append(client)
    else:
        pytest.fail("the listen queue of a backlog-0 socket never filled")
    yield port
    for client in queued:
        client.close()
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_never_answers_fails_after_the_default_connect_timeout(silent_server):
    engine = open_database(f"postgresql://connector:{SECRET}@127.0.0.1:{silent_server}/connector")
    try:
        exc = fails_within(BOUND_S, lambda: migrate(engine))  # before: waits for ever
    finally:
        engine.dispose()
    assert isinstance(exc, DatabaseError)
    assert str(exc) == (f"cannot connect to PostgreSQL at 127.0.0.1:{silent_server}: "
                        "connection timeout expired (no answer within connect_timeout=10 s)")


def test_a_full_listen_queue_fails_within_the_urls_connect_timeout(full_listen_queue):
    engine = open_database(f"postgres://connector:{SECRET}@127.0.0.1:{full_listen_queue}/connector?connect_timeout=2")
    try:
        exc = fails_within(BOUND_S, lambda: Store(engine).claim_outbound("worker-1"))  # what a send round does first
    finally:
        engine.dispose()
    assert isinstance(exc, DatabaseError) and isinstance(exc, OPERATIONAL_ERRORS)  # one line in the round's log
    assert operational_reason(exc) == (f"DatabaseError: cannot connect to PostgreSQL at 127.0.0.1:{full_listen_queue}: "
                                       "connection timeout expired (no answer within connect_timeout=2 s)")


def test_a_refused_connection_is_one_line_naming_host_and_port():
    port = free_port()
    engine = open_database(f"postgresql://connector:{SECRET}@127.0.0.1:{port}/connector")
    try:
        with pytest.raises(DatabaseError) as err:
            migrate(engine)
    finally:
        engine.dispose()
    # before: libpq's two lines ("... failed: Connection refused" then "Is the server running ...?")
    assert str(err.value) == f"cannot connect to PostgreSQL at 127.0.0.1:{port}: Connection refused"
    assert SECRET not in str(err.value)


def test_a_server_that_refuses_the_login_is_named_with_its_reason(postgres_server):
    url = postgres_server.url("no_such_database").replace("postgres@", f"postgres:{SECRET}@")
    engine = open_database(url)
    try:
        with pytest.raises(DatabaseError) as err:
            Store(engine).summary()
    finally:
        engine.dispose()
    assert str(err.value) == (f"cannot connect to PostgreSQL at 127.0.0.1:{postgres_server.port}: "
                              'FATAL: database "no_such_database" does not exist')


def test_a_reachable_server_is_used_as_before(pg_url):
    engine = open_database(pg_url)
    try:
        migrate(engine)
        assert Store(engine).summary().outbound == {}
    finally:
        engine.dispose()
