"""Several writers, one chain: threads and processes appending (and sealing) at once on SQLite
and on a real PostgreSQL, and a writer killed in the middle of appending."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.audit import AuditEvent, AuditLog, create_tables
from connector.audit.tables import audit_entries
from connector.audit.verify import verify_log
from connector.store.evidence import EvidenceStore

ROOT = Path(__file__).resolve().parents[2]


def check_one_chain(env, expected: int) -> None:
    with env.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(sa.select(audit_entries.c.seq).order_by(audit_entries.c.seq))]
    assert seqs == list(range(1, expected + 1))
    report = verify_log(env.engine, env.evidence)
    assert report.ok, report.problems[:5]
    assert report.entries == expected


def run_threads(env, threads: int, per_thread: int, *, in_callers_transaction: bool, sealing: bool) -> None:
    digest = env.evidence.put_bytes(b"shared evidence").sha256
    errors: list[BaseException] = []
    stop = threading.Event()
    start = threading.Barrier(threads + (1 if sealing else 0))

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                event = AuditEvent("in.received", "in", document_id=f"W{n}-{i}", sha256=digest if i % 2 else None)
                if in_callers_transaction:
                    with env.engine.begin() as conn:
                        conn.execute(sa.text("SELECT 1"))  # the caller's own work first
                        env.log.append(conn, event)
                else:
                    env.log.record(event)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def sealer() -> None:
        try:
            start.wait()
            while not stop.wait(0.005):
                env.log.seal()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    if sealing:
        workers.append(threading.Thread(target=sealer))
    for t in workers:
        t.start()
    for t in workers[:threads]:
        t.join()
    stop.set()
    for t in workers[threads:]:
        t.join()
    assert errors == []
    if sealing:
        env.log.seal()


def test_threads_on_sqlite_keep_one_chain(make_env):
    env = make_env()
    run_threads(env, 6, 20, in_callers_transaction=False, sealing=True)
    check_one_chain(env, 120)


def test_threads_on_sqlite_in_begin_immediate_transactions_keep_one_chain(make_env, tmp_path):
    from connector.store.db import open_database

    env = make_env()
    engine = open_database(f"sqlite:///{tmp_path / 'wal.db'}")
    create_tables(engine)
    env.engine.dispose()
    env.engine = engine
    env.log.engine = engine
    run_threads(env, 6, 20, in_callers_transaction=True, sealing=True)
    check_one_chain(env, 120)


def test_threads_on_postgresql_keep_one_chain(make_env, pg_url):
    env = make_env(pg_url)
    run_threads(env, 8, 25, in_callers_transaction=True, sealing=True)
    check_one_chain(env, 200)


def spawn(env, count: int, actor: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.audit.append_worker", env.url, str(env.root / "evidence"),
                             str(count), actor], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_processes(env, processes: int, per_process: int) -> None:
    workers = [spawn(env, per_process, f"P{n}") for n in range(processes)]
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        assert out.strip().endswith(f"appended {per_process}")
    env.log.seal()
    with env.engine.connect() as conn:
        actors = Counter(r[0] for r in conn.execute(sa.select(audit_entries.c.actor)))
    assert actors == {f"P{n}": per_process for n in range(processes)}


def test_processes_on_sqlite_keep_one_chain(make_env):
    env = make_env()
    run_processes(env, 3, 40)
    check_one_chain(env, 120)


def test_processes_on_postgresql_keep_one_chain(make_env, pg_url):
    env = make_env(pg_url)
    run_processes(env, 3, 40)
    check_one_chain(env, 120)


def count(env) -> int:
    with env.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(audit_entries)).scalar()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_writer_killed_mid_append_leaves_a_valid_log(make_env, request, backend):
    env = make_env(request.getfixturevalue("pg_url") if backend == "postgresql" else None)
    victims = [spawn(env, 0, f"K{n}") for n in range(2)]
    deadline = time.monotonic() + 60
    while count(env) < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    for victim in victims:
        os.kill(victim.pid, signal.SIGKILL)  # mid-loop: likely inside an append's transaction
    for victim in victims:
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL
    survived = count(env)
    assert survived >= 60
    check_one_chain(env, survived)
    # the log goes on where it stopped
    log = AuditLog(env.engine, EvidenceStore(env.root / "evidence"), actor="after")
    assert log.record(AuditEvent("out.queued", "out", document_id="after-the-kill")) == survived + 1
    env.log.seal()
    check_one_chain(env, survived + 1)
