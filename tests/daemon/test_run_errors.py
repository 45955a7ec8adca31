"""The daemon when something of its own is wrong, with real files, ports and databases.

Starting: a setting only the start can try (intake TLS files that exist but cannot be loaded,
a port another process holds) is ``configuration error: ...`` on stderr and exit 1 from a
real ``cli.py run``, never ``error: unexpected ...``; the failed start stops what it had
started and closes the runtime (the instance lock is free again).

Running: the intake API meeting the connector's own unavailability (the SQLite file gone,
the database locked, exchanges stopped by the audit gate) answers 503 with ``Retry-After``
through the daemon's own callbacks: a one-line JSON error without paths or SQL, one log line
without a traceback."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from connector.daemon.config import ConfigError, load_config
from connector.daemon.devsite import SiteAgency, write_site_config
from connector.daemon.runner import Daemon
from connector.daemon.runtime import open_runtime
from connector.edxml.jsonform import to_json
from connector.edxml.samples import sample_edoc
from connector.engine.context import GateClosed
from tests.daemon.test_reload import G22, H16, pkis, sandbox  # noqa: F401 - fixtures
from tests.support.sites import ROOT

TOKEN = "intake-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def write_site(tmp_path, sandbox, pkis):  # noqa: F811 - the imported fixtures
    """``write_site(extra, intake_port=, token=)``: H16's configuration file (no runtime opened),
    with the intake API (on a free port unless given; its token in the file ``token`` under
    tmp_path), logging warnings and errors only, and ``extra`` appended."""
    creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
    agencies, _ = pkis
    (tmp_path / "intake.token").write_text(TOKEN + "\n")

    def write(extra: str = "", *, intake_port: int | None = None, token: str = "intake.token") -> SiteAgency:
        intake = (f'\n[routing.intake.http]\nport = {intake_port or free_port()}\n'
                  f'token_file = "{tmp_path / token}"\n')
        site = write_site_config(tmp_path / H16, code=H16, name=H16, binding="soap", sandbox_url=sandbox.url,
                                 credentials=creds[H16], pki=agencies, extra=intake + extra)
        text = site.config_path.read_text(encoding="utf-8")
        site.config_path.write_text(text.replace('level = "INFO"', 'level = "WARNING"'), encoding="utf-8")
        return site

    return write


def cli_run(site: SiteAgency) -> tuple[int, list[str]]:
    """``cli.py run`` for ``site`` until it exits: its exit code and its stderr lines (the
    site logs warnings and errors only, so a start that fails prints only why)."""
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", "--config", str(site.config_path)],
                         capture_output=True, text=True, timeout=120, cwd=site.folder)
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    return run.returncode, run.stderr.splitlines()


@contextmanager
def listening() -> Iterator[int]:
    """A port held by another listener for the block."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# --------------------------------------------------------------------------- starting


def unloadable_tls(tmp_path: Path) -> str:
    (tmp_path / "intake.pem").write_text("not a certificate\n")
    (tmp_path / "intake.key").write_text("not a key\n")
    return f'tls_cert = "{tmp_path / "intake.pem"}"\ntls_key = "{tmp_path / "intake.key"}"\n'


def test_cli_run_with_intake_tls_files_that_cannot_be_loaded_is_a_configuration_error(write_site, tmp_path):
    site = write_site(unloadable_tls(tmp_path))
    code, said = cli_run(site)
    assert code == 1, said
    (line,) = said
    assert line.startswith(f"configuration error: {site.config_path}: routing.intake.http: the TLS certificate, key "
                           f"or client CA ({tmp_path / 'intake.pem'}, {tmp_path / 'intake.key'}) cannot be loaded: "), line


def test_cli_run_with_the_ops_port_taken_is_a_configuration_error(write_site):
    with listening() as port:
        site = write_site(f"\n[ops]\nport = {port}\n")
        code, said = cli_run(site)
    assert code == 1, said
    assert said == [
        f"configuration error: {site.config_path}: ops.port: cannot listen on 127.0.0.1:{port} for health and "
        "metrics: Address already in use"]


@pytest.fixture
def signals_kept():
    """run_forever installs handlers for SIGTERM, SIGINT and SIGHUP: the test checks they are
    put back, and puts them back itself whatever happened."""
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    before = {sig: signal.getsignal(sig) for sig in sigs}
    yield before
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_a_failed_start_stops_what_it_started_and_frees_the_instance_lock(write_site, signals_kept):
    with listening() as port:
        site = write_site(f"\n[ops]\nport = {port}\n")
        config = load_config(site.config_path)
        runtime = open_runtime(config)
        try:
            with pytest.raises(ConfigError, match=rf"ops\.port: cannot listen on 127\.0\.0\.1:{port} "):
                Daemon(runtime).run_forever()  # the intake API had started, then the ops port failed
        finally:
            intake = config.routing.intake.http
            runtime.close()  # a no-op when the start closed it, as it must
    assert {sig: signal.getsignal(sig) for sig in signals_kept} == signals_kept
    # the intake API's port is free again: its server was stopped
    with socket.socket() as s:
        s.bind((intake.host, intake.port))
    # and the instance lock was released with the runtime: another one opens
    open_runtime(config).close()


def empty_token(write_site, tmp_path: Path, _port: int) -> tuple[SiteAgency, str]:
    (tmp_path / "empty.token").write_text(" \n")
    return (write_site(token="empty.token"),
            rf"routing\.intake\.http\.token: the intake API's token \(file:{re.escape(str(tmp_path))}/empty\.token\) "
            "is empty")


def intake_port_taken(write_site, tmp_path: Path, port: int) -> tuple[SiteAgency, str]:
    return (write_site(intake_port=port),
            rf"routing\.intake\.http\.port: cannot listen on 127\.0\.0\.1:{port} for the intake API: Address already in use")


def tls_unloadable(write_site, tmp_path: Path, _port: int) -> tuple[SiteAgency, str]:
    return write_site(unloadable_tls(tmp_path)), r"routing\.intake\.http: the TLS certificate, key or client CA \("


@pytest.mark.parametrize("problem", [empty_token, intake_port_taken, tls_unloadable], ids=lambda f: f.__name__)
def test_a_failed_start_is_one_config_error_and_closes_the_runtime(write_site, tmp_path, signals_kept, problem):
    """Each setting only the start can try is a ConfigError naming the file and the key (not a
    bare ValueError or OSError), and the runtime it was given is closed."""
    with listening() as port:
        site, expected = problem(write_site, tmp_path, port)
        config = load_config(site.config_path)
        runtime = open_runtime(config)
        assert runtime.lock_fd is not None
        with pytest.raises(ConfigError, match=f"^{re.escape(str(site.config_path))}: {expected}"):
            Daemon(runtime).run_forever()
    assert runtime.lock_fd is None  # closed by the failed start, not left for the process's end
    open_runtime(config).close()


# --------------------------------------------------------------------------- intake API, unavailable


@pytest.fixture
def intake(write_site):
    """A daemon's intake API, served through the daemon's own callbacks (no rounds running)."""
    runtime = open_runtime(load_config(write_site().config_path))
    daemon = Daemon(runtime)
    daemon._start_http_intake()
    try:
        yield daemon
    finally:
        daemon.http_intake.stop()
        runtime.close()


def post_document(url: str, number: int = 1) -> requests.Response:
    data = to_json(sample_edoc(H16, G22, number))
    data["attachments"], data["manifest"] = [], []
    return requests.post(f"{url}/documents", headers=AUTH, timeout=30,
                         files={"metadata": (None, json.dumps(data, ensure_ascii=False))})


def post_status(url: str) -> requests.Response:
    report = {"document_id": "000.00.00.G22,2025/03/01,7816/VPCP-TTĐT", "to": G22, "status_code": "03"}
    return requests.post(f"{url}/statuses", json=report, headers=AUTH, timeout=30)


def get_tracking(url: str) -> requests.Response:
    return requests.get(f"{url}/documents/no-such-id", headers=AUTH, timeout=30)


REQUESTS = {"POST /documents": post_document, "POST /statuses": post_status,
            "GET /documents/no-such-id": get_tracking}


def assert_unavailable(response: requests.Response, error: str, caplog, route: str, *words: str) -> None:
    """503, Retry-After, the JSON error for the DMS (no path, no SQL), and one log line for the
    operator naming the cause, without a traceback."""
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "30"
    assert response.json() == {"error": f"{error}; try again later"}
    assert "/" not in response.json()["error"] and "SQL" not in response.text and "INSERT" not in response.text
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r for r in caplog.records if r.exc_info] == []
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert records[0].name == "connector.routing.http_intake"
    assert message.startswith(f"intake API: {route} answered 503: ") and "\n" not in message, message
    assert all(word in message for word in words), message
    assert "INSERT" not in message and "SELECT" not in message and "[SQL" not in message, message


@pytest.mark.parametrize("route", sorted(REQUESTS))
def test_intake_with_the_database_file_gone_is_503(intake, caplog, route):
    database = Path(intake.rt.db.url.database)
    assert post_document(intake.http_intake.url).status_code == 202  # the database answers: accepted
    for path in database.parent.glob(database.name + "*"):  # the file, its -wal and -shm
        path.unlink()
    caplog.clear()
    response = REQUESTS[route](intake.http_intake.url)
    assert_unavailable(response, "the connector's database is unavailable", caplog, route,
                       "database unavailable: ", f"database file {database} disappeared")
    assert str(database.parent) not in response.text


@pytest.mark.parametrize("route", sorted(REQUESTS))
def test_intake_with_the_database_locked_is_503(intake, caplog, monkeypatch, route):
    """The engine's call meets SQLAlchemy's wrapper of the driver's "database is locked" (after
    SQLite's busy timeout): the log line gives the driver's reason, not the SQL statement."""
    def locked(*_args, **_kwargs):
        raise sa.exc.OperationalError("INSERT INTO outbound (id, kind) VALUES (?, ?)", ("trk", "edoc"),
                                      sqlite3.OperationalError("database is locked"))

    for method in ("submit", "submit_status", "track"):
        monkeypatch.setattr(intake.engine, method, locked)
    caplog.clear()
    response = REQUESTS[route](intake.http_intake.url)
    assert_unavailable(response, "the connector's database is unavailable", caplog, route,
                       "database unavailable: database is locked")


@pytest.mark.parametrize("route", ["POST /documents", "POST /statuses"])
def test_intake_with_exchanges_stopped_by_the_audit_gate_is_503(intake, caplog, monkeypatch, route):
    """The real gate closed (the audit log cannot record): nothing is queued, the DMS is told
    to come back later. Tracking stays open (it records nothing)."""
    from connector.audit.log import AuditUnavailable

    reason = "audit log: time-stamping has failed for too long; exchanges are stopped"

    def closed() -> None:
        raise AuditUnavailable(reason)

    monkeypatch.setattr(intake.rt.audit, "ensure_can_exchange", closed)
    with pytest.raises(GateClosed):
        intake.engine.ctx.gate()  # the rounds are stopped: so is the intake
    queued = intake.rt.store.summary(recent=0).outbound
    caplog.clear()
    response = REQUESTS[route](intake.http_intake.url)
    assert_unavailable(response, "the connector has stopped exchanging documents for now", caplog, route,
                       "exchange stopped (fail closed): ", reason)
    assert intake.rt.store.summary(recent=0).outbound == queued  # nothing was queued
    assert get_tracking(intake.http_intake.url).status_code == 404


@pytest.mark.parametrize("error", [
    sa.exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached, connection timed out, timeout 30.00"),
    sa.exc.InterfaceError("SELECT 1", (), Exception("connection already closed")),
], ids=["pool-exhausted", "connection-lost"])
def test_intake_with_every_database_connection_busy_or_lost_is_503(intake, caplog, monkeypatch, error):
    """PostgreSQL under load: the pool has no free connection for 30 s, or the one it had was
    closed under it. The connector is busy, not broken: 503, and the DMS tries again."""
    def busy(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(intake.engine, "submit", busy)
    caplog.clear()
    response = post_document(intake.http_intake.url)
    assert_unavailable(response, "the connector's database is unavailable", caplog, "POST /documents",
                       "database unavailable: ")


def test_intake_with_a_staging_folder_it_cannot_write_is_503_naming_it_in_the_log(intake, caplog, monkeypatch):
    """The request's files are the connector's own copies once submit runs: an OSError there
    (the staging folder made read-only, removed, a permission changed) is the connector's
    trouble, not the DMS's: 503 and one log line naming the folder, not a 500 and a traceback."""
    import errno as errno_codes

    staging = intake.rt.config.data_dir / "outgoing"

    def read_only(*_args, **_kwargs):
        raise PermissionError(errno_codes.EACCES, "Permission denied", str(staging))

    monkeypatch.setattr(intake.engine, "submit", read_only)
    caplog.clear()
    response = post_document(intake.http_intake.url)
    assert_unavailable(response, "the connector cannot store documents for now", caplog, "POST /documents",
                       f"Permission denied: {staging}")
    assert str(staging) not in response.text


def test_intake_with_a_damaged_database_is_503(intake, caplog, monkeypatch):
    """SQLite's "database disk image is malformed" is a DatabaseError, not an OperationalError."""
    def malformed(*_args, **_kwargs):
        raise sa.exc.DatabaseError("SELECT 1", (), sqlite3.DatabaseError("database disk image is malformed"))

    monkeypatch.setattr(intake.engine, "submit", malformed)
    caplog.clear()
    response = post_document(intake.http_intake.url)
    assert_unavailable(response, "the connector's database is unavailable", caplog, "POST /documents",
                       "database unavailable: database disk image is malformed")


def test_an_exchange_log_that_cannot_be_opened_at_start_is_one_line_exit_1(monkeypatch, tmp_path):
    """An AuditError while the runtime opens (the log altered or damaged) is said as such, exit
    1, not "unexpected AuditError" with exit 3."""
    from click.testing import CliRunner

    from connector.audit.log import AuditIntegrityError
    from connector.cli.daemon_commands import run_cmd
    import connector.daemon.logs as logs
    import connector.daemon.runtime as runtime

    def damaged(_config):
        raise AuditIntegrityError("entry 41: its hash does not chain to entry 40 (the log was altered)")

    config = tmp_path / "connector.toml"
    config.write_text('[connector]\nagency = "000.00.00.H16"\n[axis]\nbinding = "soap"\n'
                      'url = "http://127.0.0.1:1/soap"\ntoken = "env:HUB_TOKEN"\n', encoding="utf-8")
    monkeypatch.setattr(runtime, "open_runtime", damaged)
    monkeypatch.setattr(logs, "setup_logging", lambda *_: None)  # the suite's logging stays as it is
    previous = signal.getsignal(signal.SIGHUP)
    try:
        result = CliRunner().invoke(run_cmd, ["--config", str(config)])
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert result.exit_code == 1
    assert result.output.strip() == "audit log error: entry 41: its hash does not chain to entry 40 (the log was altered)"
