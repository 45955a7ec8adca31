"""The operations endpoint against bad requests and failing dependencies, on a real loopback
server: JSON errors for other paths and methods, a bug in a collector answered in one line,
hung checks and a hung queue sampler bounded in time and in threads, database errors shown
without SQL, missing folders named, a non-loopback address logged, and a real daemon's
/healthz and /metrics while its SQLite database is locked."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.registry import Collector

from connector.daemon.health import CheckResult, Health, HealthCheck, callable_check
from connector.daemon.metrics import Metrics, QueueSample
from connector.daemon.ops_http import ops_app, start_ops_server
from tests.support.sites import ROOT


@pytest.fixture
def serve():
    """Start ops_app(health, metrics) on a free loopback port; stopped after the test."""
    servers = []

    def start(health: Health | None = None, metrics: Metrics | None = None):
        server = start_ops_server(ops_app(health or Health(), metrics or Metrics()), port=0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/", 404, "no such resource '/'; try GET /healthz or GET /metrics"),
        ("GET", "/healthz/", 404, "no such resource '/healthz/'; try GET /healthz or GET /metrics"),
        ("GET", "/metrics.txt", 404, "no such resource '/metrics.txt'; try GET /healthz or GET /metrics"),
        ("POST", "/healthz", 405, "method POST not allowed on /healthz; use GET or HEAD"),
        ("PUT", "/metrics", 405, "method PUT not allowed on /metrics; use GET or HEAD"),
        ("DELETE", "/metrics", 405, "method DELETE not allowed on /metrics; use GET or HEAD"),
        ("OPTIONS", "/healthz", 405, "method OPTIONS not allowed on /healthz; use GET or HEAD"),
    ],
)
def test_other_paths_and_methods_are_json_errors(serve, method, path, status, error):
    server = serve()
    r = requests.request(method, f"{server.url}{path}", data=b"x" if method in ("POST", "PUT") else None, timeout=10)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.json() == {"error": error}
    assert ("Allow" in r.headers) == (status == 405) and r.headers.get("Allow", "GET, HEAD") == "GET, HEAD"


def test_head_and_query_strings(serve):
    server = serve(Health([callable_check("database", lambda: None)]))
    r = requests.get(f"{server.url}/healthz?verbose=1&x=%00", timeout=10)
    assert r.status_code == 200 and r.json()["checks"]["database"]["ok"] is True
    r = requests.head(f"{server.url}/metrics", timeout=10)
    assert r.status_code == 200 and r.content == b"" and int(r.headers["Content-Length"]) > 0
    r = requests.head(f"{server.url}/nope", timeout=10)
    assert r.status_code == 404 and r.content == b""


class _BrokenCollector(Collector):
    def collect(self):
        raise RuntimeError("collector bug at /var/lib/connector")


def test_a_broken_collector_is_a_one_line_json_500_and_logged(serve, caplog):
    metrics = Metrics()
    metrics.registry.register(_BrokenCollector())
    caplog.set_level(logging.ERROR, logger="connector.daemon.ops")
    r = requests.get(f"{serve(None, metrics).url}/metrics", timeout=10)
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.json() == {"error": "/metrics failed inside the connector; the operator finds the detail in its log"}
    [record] = [rec for rec in caplog.records if rec.name == "connector.daemon.ops"]
    assert record.getMessage() == "/metrics failed" and record.exc_info[0] is RuntimeError


# --------------------------------------------------------------------------- hung and failing dependencies


def test_a_hung_check_runs_once_however_often_it_is_probed(serve):
    """Each probe used to start the check again in a new thread, left behind when it hung: a
    monitor probing a hung database every few seconds piled up threads without bound."""
    calls, release = [], threading.Event()

    def hung() -> CheckResult:
        calls.append(1)
        release.wait(30)
        return CheckResult(True)

    health = Health([HealthCheck("database", hung), callable_check("axis", lambda: None)], timeout=0.1)
    server = serve(health)
    try:
        answers = [requests.get(f"{server.url}/healthz", timeout=10) for _ in range(3)]
    finally:
        release.set()
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert len(calls) == 1
    assert answers[0].json()["checks"]["database"]["detail"] == "no answer within 0.1 s"
    later = answers[2].json()["checks"]
    assert later["database"]["detail"].startswith(
        "no answer within 0.1 s (the check started by an earlier probe has been running for ")
    assert later["axis"] == {"ok": True, "detail": "ok", "data": {}}


def test_a_finished_check_is_run_afresh_on_the_next_probe():
    results = iter([CheckResult(False, "down"), CheckResult(True, "up")])
    health = Health([HealthCheck("axis", lambda: next(results))])
    assert health.run().results["axis"].detail == "down"
    assert health.run().results["axis"].detail == "up"


def test_a_hung_check_does_not_delay_the_process_exit():
    """The daemon exits on SIGTERM; a health check stuck on a dead database must not keep it
    alive (the thread pool's workers were joined at interpreter exit)."""
    script = textwrap.dedent("""
        import threading
        from connector.daemon.health import Health, HealthCheck
        health = Health([HealthCheck("database", lambda: threading.Event().wait())], timeout=0.1)
        print(health.run().results["database"].detail)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "no answer within 0.1 s"), done.stderr


def test_a_hung_queue_sampler_leaves_the_gauges_out_and_is_not_started_again(serve, caplog):
    calls, release = [], threading.Event()

    def sampler() -> QueueSample:
        calls.append(1)
        release.wait(30)
        return QueueSample({"queued": 1})

    metrics = Metrics(sampler_timeout=0.1)
    metrics.document_sent()
    metrics.set_queue_sampler(sampler)
    server = serve(None, metrics)
    try:
        answers = [requests.get(f"{server.url}/metrics", timeout=20) for _ in range(3)]
    finally:
        release.set()
    assert [a.status_code for a in answers] == [200, 200, 200]
    for answer in answers:
        names = _names(answer.text)
        assert "documents_sent_total" in names
        assert "oldest_pending_age_seconds" not in names
    assert len(calls) == 1
    assert "the queue sampler did not answer within 0.1 s" in caplog.text


@pytest.mark.parametrize("sample", [None, QueueSample({"queued": "many"}), QueueSample({}, oldest_pending_age="old")])
def test_a_sampler_returning_nonsense_leaves_the_gauges_out(serve, sample, caplog):
    metrics = Metrics()
    metrics.set_queue_sampler(lambda: sample)
    r = requests.get(f"{serve(None, metrics).url}/metrics", timeout=10)
    assert r.status_code == 200
    assert "documents_sent_total" in _names(r.text) and "oldest_pending_age_seconds" not in _names(r.text)
    assert "queue gauges left out of this scrape: the queue sampler returned" in caplog.text


def test_a_database_error_is_shown_without_its_sql_and_parameters(serve):
    def database():
        raise sa.exc.OperationalError("SELECT value FROM setting WHERE key = ?", ("doc-42",),
                                      sqlite3.OperationalError("database is locked"))

    r = requests.get(f"{serve(Health([callable_check('database', database)])).url}/healthz", timeout=10)
    assert r.status_code == 503
    assert r.json()["checks"]["database"]["detail"] == "OperationalError: database is locked"
    assert "SELECT" not in r.text and "doc-42" not in r.text


def test_folder_check_names_each_missing_folder(tmp_path):
    from connector.daemon.health import folder_check

    (tmp_path / "outbox").mkdir()
    (tmp_path / "inbox").write_text("a file where a folder should be")
    ok = folder_check("folders", [("intake outbox", tmp_path / "outbox")]).fn()
    assert ok == CheckResult(True, "1 folder(s) present and writable", {"folders": {"intake outbox": str(tmp_path / "outbox")}})
    bad = folder_check("folders", lambda: [("intake outbox", tmp_path / "outbox"), ("destination inbox", tmp_path / "inbox"),
                                           ("data folder", tmp_path / "data")]).fn()
    assert not bad.ok
    assert bad.detail == f"destination inbox {tmp_path / 'inbox'}: not a folder; data folder {tmp_path / 'data'}: missing"


def test_a_non_loopback_address_is_served_with_a_warning(caplog):
    caplog.set_level(logging.INFO, logger="connector.daemon.ops")
    app = ops_app(Health(), Metrics())
    for host in ("127.0.0.1", "0.0.0.0"):
        start_ops_server(app, host, port=0).stop()
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("health and metrics are served on http://0.0.0.0:")
    assert "without authentication or TLS" in warnings[0]


# --------------------------------------------------------------------------- a real daemon, its database locked


def test_a_real_daemons_health_and_metrics_with_its_database_locked(tmp_path, serve):
    from connector.daemon.devsite import write_site_config
    from connector.daemon.runner import Daemon
    from connector.daemon.runtime import open_runtime
    from connector.signing.devpki import create_dev_pki

    code = "000.00.00.H16"
    pki = create_dev_pki(tmp_path / "pki", agencies={code: "UBND tỉnh Đắk Nông"})
    site = write_site_config(tmp_path / "site", code=code, name="UBND tỉnh Đắk Nông", binding="soap",
                             sandbox_url="http://127.0.0.1:9", credentials={"token": "t", "secret": "s"}, pki=pki)
    runtime = open_runtime(site.config_path)
    try:
        daemon = Daemon(runtime)
        daemon.health.timeout = 1.0
        server = serve(daemon.health, daemon.metrics)
        runtime.db.dispose()  # no pooled connection holds the file
        locker = sqlite3.connect(runtime.db.url.database, isolation_level=None)
        try:
            locker.execute("PRAGMA locking_mode=EXCLUSIVE")
            locker.execute("BEGIN EXCLUSIVE")
            locker.execute("CREATE TABLE hold_the_lock (x)")  # the exclusive lock is taken
            health = requests.get(f"{server.url}/healthz", timeout=30)
            metrics = requests.get(f"{server.url}/metrics", timeout=30)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert health.status_code == 503
        checks = health.json()["checks"]
        assert checks["database"] == {"ok": False, "detail": "no answer within 1 s", "data": {}}
        assert checks["axis"]["ok"] is False and "Connection refused" in checks["axis"]["detail"]
        assert checks["signing_certificate"]["ok"] is True
        assert metrics.status_code == 200
        assert "documents_sent_total" in _names(metrics.text) and "oldest_pending_age_seconds" not in _names(metrics.text)
        # Once the lock is gone, the gauges are back.
        assert "oldest_pending_age_seconds" in _names(requests.get(f"{server.url}/metrics", timeout=30).text)
    finally:
        runtime.close()
