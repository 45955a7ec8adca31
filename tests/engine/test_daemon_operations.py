"""The daemon as an operator watches it, over real runtimes, a real sandbox and real loopback
servers: the final audit seal at stop on a full database disk (one line, no traceback), the
``folders`` check of ``/healthz`` (a removed, replaced or read-only folder is named), the
warning for an intake API served beyond loopback, the ops address logged once, and on
``/metrics`` the signing key's availability and the failed polls by reason."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from connector.axis.vxp import VxpAxis
from connector.daemon.metrics import POLL_FAILURE_REASONS
from connector.daemon.ops_http import ops_app, start_ops_server
from connector.daemon.runner import Daemon
from connector.signing.keys import KeyUnavailableError
from tests.support.small_disk import small_disk
from tests.support.sites import wait_for

from .conftest import G22, H16, TokenOut, rounds, submit_sample

NO_SPACE = "No space left on device"


@pytest.fixture
def mount():
    """``mount(path, size)``: a small tmpfs on ``path`` until the test ends. Ask for it before
    ``make_side`` so the runtimes close before it is unmounted."""
    with ExitStack() as stack:
        yield lambda path, size="2m": stack.enter_context(small_disk(path, size))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon_records(caplog, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("connector.daemon") and r.levelno >= level]


@contextmanager
def running(side) -> Iterator[Daemon]:
    """The daemon of ``side`` started as ``cli.py run`` starts it (scheduler, intake, ops
    server), stopped at the end."""
    d = Daemon(side.rt)
    d.start()
    try:
        yield d
    finally:
        d.stop()


@contextmanager
def ops_server(d: Daemon) -> Iterator[str]:
    """The daemon's /healthz and /metrics on a free loopback port, without its scheduler (the
    test runs the rounds one by one)."""
    server = start_ops_server(ops_app(d.health, d.metrics), port=0)
    try:
        yield server.url
    finally:
        server.stop()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    r = requests.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


# --------------------------------------------------------------------------- the final seal at stop


def test_final_seal_on_a_full_database_disk_is_one_line_naming_it(mount, make_side, caplog, tmp_path):
    db_dir = tmp_path / "db"
    disk = mount(db_dir)
    database = db_dir / "connector.db"
    h16 = make_side(H16, "vxp")
    g22 = make_side(G22, "soap", audit=True, database_url=f"sqlite:///{database}")
    submit_sample(h16, G22, 1)
    h16.engine.send_due()
    g22.engine.poll()  # exchange-log entries not sealed yet
    d = Daemon(g22.rt)
    d.scheduler.start(paused=True)  # as after start(), without rounds running
    disk.fill()
    caplog.set_level(logging.INFO, logger="connector")
    d.stop()
    records = _daemon_records(caplog, logging.WARNING)
    # before: "final seal failed" with the traceback of the full disk
    assert [(r.getMessage(), r.exc_info) for r in records] == [
        (f"final seal failed (the next start seals what is left): {NO_SPACE}: {database}", None)]


def test_final_seal_keeps_the_traceback_of_an_unexpected_error(make_side, caplog, monkeypatch):
    g22 = make_side(G22, "soap", audit=True)

    def bug():
        raise KeyError("batch")

    monkeypatch.setattr(g22.rt.audit, "seal", bug)
    d = Daemon(g22.rt)
    d.scheduler.start(paused=True)
    caplog.set_level(logging.INFO, logger="connector")
    d.stop()
    (record,) = _daemon_records(caplog, logging.WARNING)
    assert record.getMessage() == "final seal failed: unexpected KeyError: 'batch'"
    assert record.exc_info is not None and record.exc_info[0] is KeyError


# --------------------------------------------------------------------------- /healthz: folders


def _healthz(url: str) -> requests.Response:
    return requests.get(f"{url}/healthz", timeout=10)


def test_healthz_names_a_removed_folder_and_a_file_in_place_of_one(make_side, tmp_path):
    g22 = make_side(G22, "soap", extra="\n[ops]\nport = 0\n")
    site = g22.site
    with running(g22) as d:
        url = d.ops.url
        assert wait_for(lambda: _healthz(url).status_code == 200, 30), _healthz(url).text  # first poll done
        folders = _healthz(url).json()["checks"]["folders"]
        assert folders["ok"] is True
        assert folders["data"]["folders"] == {
            "data folder": str(site.folder / "data"), "spool folder": str(site.folder / "data" / "spool"),
            "evidence folder": str(site.folder / "data" / "evidence"), "intake folder": str(site.dms),
            "status folder": str(site.dms / "status"), "destination inbox": str(site.inbox),
            "destination statuses": str(site.statuses),
        }

        shutil.rmtree(site.inbox)
        shutil.rmtree(site.statuses)
        site.statuses.write_text("a file where the DMS's folder was")
        r = _healthz(url)
        assert r.status_code == 503
        folders = r.json()["checks"]["folders"]
        assert folders["ok"] is False
        assert folders["detail"] == (f"destination inbox {site.inbox}: missing; "
                                     f"destination statuses {site.statuses}: not a folder")

        site.statuses.unlink()
        site.statuses.mkdir()
        site.inbox.mkdir()
        assert _healthz(url).json()["checks"]["folders"]["ok"] is True


def test_healthz_names_a_folder_on_a_read_only_mount(mount, make_side, tmp_path):
    archive = tmp_path / "archive"
    mount(archive, "1m")
    g22 = make_side(G22, "soap", audit=True, extra=f'\n[ops]\nport = 0\n\n[audit]\narchive_dir = "{archive}"\n')
    with running(g22) as d:
        folders = _healthz(d.ops.url).json()["checks"]["folders"]
        assert folders["ok"] is True and folders["data"]["folders"]["audit archive folder"] == str(archive)
        subprocess.run(["mount", "-o", "remount,ro", str(archive)], check=True, capture_output=True, timeout=30)
        r = _healthz(d.ops.url)
        assert r.status_code == 503
        folders = r.json()["checks"]["folders"]
        assert folders["detail"] == f"audit archive folder {archive}: not writable by this process"


# --------------------------------------------------------------------------- start-up lines


def _intake_api(host: str, token_file) -> str:
    return f'\n[routing.intake.http]\nhost = "{host}"\nport = {_free_port()}\ntoken_file = "{token_file}"\n'


def test_intake_api_beyond_loopback_is_warned(make_side, caplog, tmp_path):
    token = tmp_path / "intake.token"
    token.write_text("intake-token-for-tests")
    g22 = make_side(G22, "soap", extra=_intake_api("0.0.0.0", token))
    caplog.set_level(logging.INFO, logger="connector")
    with running(g22) as d:
        port = d.http_intake.port
        # the API answers (here on loopback; the test sends nothing elsewhere)
        assert requests.get(f"http://127.0.0.1:{port}/documents/x", timeout=10).status_code == 401
    warnings = [r.getMessage() for r in _daemon_records(caplog, logging.WARNING) if "intake API" in r.getMessage()]
    assert warnings == [
        f"the intake API is served on http://0.0.0.0:{port}, beyond this machine, over plain HTTP: its access token "
        "and the documents cross the network in clear; set [routing.intake.http] tls_cert and tls_key, or restrict "
        "it with a firewall"]


def _intake_tls(pki, *, client_ca: bool = False) -> str:
    tls = pki.directory / "tls"
    lines = f'tls_cert = "{tls / "server.pem"}"\ntls_key = "{tls / "server.key"}"\n'
    return lines + (f'tls_client_ca = "{pki.directory / "chain.pem"}"\n' if client_ca else "")


def test_intake_api_over_https_answers_only_tls_and_is_not_warned(make_side, dev_pki, caplog, tmp_path):
    token = tmp_path / "intake.token"
    token.write_text("intake-token-for-tests")
    g22 = make_side(G22, "soap", extra=_intake_api("0.0.0.0", token) + _intake_tls(dev_pki, client_ca=True))
    caplog.set_level(logging.INFO, logger="connector")
    tls, ca = dev_pki.directory / "tls", str(dev_pki.directory / "chain.pem")
    with running(g22) as d:
        url = d.http_intake.url
        assert url.startswith("https://")
        local = url.replace("0.0.0.0", "127.0.0.1")
        r = requests.get(f"{local}/documents/x", headers={"Authorization": "Bearer intake-token-for-tests"},
                         verify=ca, cert=(str(tls / "client.pem"), str(tls / "client.key")), timeout=10)
        assert r.status_code == 404, r.text  # served over TLS, the token accepted: no such document
        with pytest.raises(requests.exceptions.SSLError):  # no client certificate: refused in the handshake
            requests.get(f"{local}/documents/x", verify=ca, timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP is not served
            requests.get(local.replace("https://", "http://") + "/documents/x", timeout=10)
    assert not [r for r in _daemon_records(caplog, logging.WARNING) if "intake API" in r.getMessage()]


def test_intake_api_tls_settings_are_checked_at_load(make_side, dev_pki, tmp_path):
    from connector.daemon.config import ConfigError

    token = tmp_path / "intake.token"
    token.write_text("intake-token-for-tests")
    tls = dev_pki.directory / "tls"
    with pytest.raises(ConfigError, match="needs both tls_cert and tls_key"):
        make_side(G22, "soap", extra=_intake_api("127.0.0.1", token) + f'tls_cert = "{tls / "server.pem"}"\n')
    with pytest.raises(ConfigError, match=r"routing\.intake\.http\.tls_key: .*missing\.key does not exist"):
        make_side(G22, "soap", folder="b", extra=_intake_api("127.0.0.1", token)
                  + f'tls_cert = "{tls / "server.pem"}"\ntls_key = "{tmp_path / "missing.key"}"\n')


def test_intake_api_certificate_that_cannot_be_loaded_is_one_config_error(make_side, dev_pki, tmp_path):
    from connector.daemon.config import ConfigError

    token = tmp_path / "intake.token"
    token.write_text("intake-token-for-tests")
    not_a_key = tmp_path / "server.key"
    not_a_key.write_text("this is not a PEM key")
    tls = dev_pki.directory / "tls"
    g22 = make_side(G22, "soap", extra=_intake_api("127.0.0.1", token)
                    + f'tls_cert = "{tls / "server.pem"}"\ntls_key = "{not_a_key}"\n')
    d = Daemon(g22.rt)
    with pytest.raises(ConfigError, match=r"routing\.intake\.http: the TLS certificate, key or client CA .*server\.key"):
        d._start_http_intake()
    assert d.http_intake is None


def test_loopback_intake_api_is_not_warned_and_the_ops_address_is_logged_once(make_side, caplog, tmp_path):
    token = tmp_path / "intake.token"
    token.write_text("intake-token-for-tests")
    g22 = make_side(G22, "soap", extra=_intake_api("127.0.0.1", token) + "\n[ops]\nport = 0\n")
    caplog.set_level(logging.INFO, logger="connector")
    with running(g22) as d:
        ops_url, api_url = d.ops.url, d.http_intake.url
    lines = [r.getMessage() for r in _daemon_records(caplog)]
    assert not [line for line in lines if "beyond this machine" in line]
    assert [line for line in lines if ops_url in line] == [  # before: a second "health and metrics on ..." line
        f"health and metrics at {ops_url}/healthz and {ops_url}/metrics"]
    assert [line for line in lines if api_url in line] == [f"intake API on {api_url}"]


# --------------------------------------------------------------------------- /metrics


KEY_GAUGE = ("signing_key_unavailable", ())


def test_signing_key_unavailable_gauge_while_documents_cannot_be_signed(make_side, caplog):
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "soap")
    d = Daemon(h16.rt)
    key = h16.engine.ctx.key
    with ops_server(d) as url:
        assert scrape(url)[KEY_GAUGE] == 0
        submit_sample(h16, G22, 1)
        h16.engine.ctx.key = TokenOut(key)
        for _ in range(2):
            d._job("send", d._round_send)()
            assert scrape(url)[KEY_GAUGE] == 1
        assert h16.store.summary().outbound == {"queued": 1}

        h16.engine.ctx.key = key  # the token is back
        d._job("send", d._round_send)()
        assert scrape(url)[KEY_GAUGE] == 0
        assert h16.store.summary().outbound == {"sent": 1}


def test_signing_key_unavailable_gauge_from_the_audit_seal(make_side, caplog):
    h16 = make_side(H16, "vxp", audit=True)
    d = Daemon(h16.rt)
    sealer = h16.rt.audit.sealer
    key = sealer.key
    submit_sample(h16, G22, 1)  # an exchange-log entry to seal
    caplog.set_level(logging.INFO, logger="connector")
    with ops_server(d) as url:
        sealer.key = TokenOut(key)
        d._job("seal", d._round_seal)()
        assert scrape(url)[KEY_GAUGE] == 1
        (record,) = [r for r in _daemon_records(caplog, logging.WARNING)]
        assert record.getMessage().startswith("seal round failed: KeyUnavailableError: ") and record.exc_info is None

        sealer.key = key
        d._job("seal", d._round_seal)()
        assert scrape(url)[KEY_GAUGE] == 0


class _Raising:
    """An axis whose listing of pending items raises ``exc``; everything else is the real one."""

    def __init__(self, axis, exc: BaseException):
        self.axis, self.exc = axis, exc

    def pending(self, kind="edoc"):
        raise self.exc

    def __getattr__(self, name):
        return getattr(self.axis, name)


def _poll_failures(url: str) -> dict[str, float]:
    return {dict(labels)["reason"]: value for (name, labels), value in scrape(url).items()
            if name == "poll_failures_total"}


def test_failed_polls_are_counted_by_reason(make_side, sandbox, caplog):
    g22 = make_side(G22, "vxp")
    d = Daemon(g22.rt)
    axis = g22.engine.ctx.axis
    caplog.set_level(logging.INFO, logger="connector")
    with ops_server(d) as url:
        assert _poll_failures(url) == dict.fromkeys(POLL_FAILURE_REASONS, 0.0)  # every series, before any failure
        d._job("poll", d._round_poll)()
        assert set(_poll_failures(url).values()) == {0.0}  # a good poll counts nothing

        sandbox.faults.update({"failure_rate": 1.0})  # the axis answers 503 BUSY to everything
        d._job("poll", d._round_poll)()
        d._job("poll", d._round_poll)()
        sandbox.faults.update({"failure_rate": 0.0})
        g22.engine.ctx.axis = VxpAxis(sandbox.url, G22, "not-the-secret", timeout=(5, 10), retries=0)
        d._job("poll", d._round_poll)()
        g22.engine.ctx.axis = _Raising(axis, KeyError("items"))
        d._job("poll", d._round_poll)()
        g22.engine.ctx.axis = axis
        d._job("poll", d._round_poll)()

        failures = _poll_failures(url)
    assert {k: v for k, v in failures.items() if v} == {"axis_unavailable": 2, "authentication": 1, "internal": 1}
    assert len([r for r in _daemon_records(caplog, logging.WARNING) if r.getMessage().startswith("poll round")]) == 4


def test_a_poll_on_a_full_spool_counts_as_disk_full(mount, make_side, caplog, tmp_path):
    spool = tmp_path / G22 / "data" / "spool"
    disk = mount(spool)
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "vxp")
    submit_sample(h16, G22, 1)
    h16.engine.send_due()
    d = Daemon(g22.rt)
    with ops_server(d) as url:
        disk.fill()
        d._job("poll", d._round_poll)()
        assert _poll_failures(url)["disk_full"] == 1
        disk.free()
        d._job("poll", d._round_poll)()
        assert _poll_failures(url)["disk_full"] == 1
    rounds(g22, h16)
    assert g22.store.summary().inbound == {"done": 1}
