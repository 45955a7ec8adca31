"""Fault injection: each kind, set at run time on /admin/faults (or by CLI flag), reaches the
clients as the right error class."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from connector.axis.errors import AuthenticationError, RetryableAxisError
from connector.edxml.samples import sample_edoc

from .conftest import G22, H16

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clients(hub_client, vxp_client):
    def make(**kwargs):
        return hub_client(H16, **kwargs), vxp_client(H16, **kwargs)

    return make


def _all_retryable(hub, vxp):
    for call in (hub.pending, vxp.pending, hub.directory, vxp.directory):
        with pytest.raises(RetryableAxisError):
            call()
    with pytest.raises(RetryableAxisError):
        hub.send(sample_edoc(H16, G22, 31))
    with pytest.raises(RetryableAxisError):
        vxp.send(sample_edoc(H16, G22, 32))


def test_latency_beyond_the_client_timeout_is_retryable(set_faults, clients):
    set_faults(latency_ms=800)
    _all_retryable(*clients(timeout=(2, 0.3)))
    hub, vxp = clients(timeout=(2, 5))
    assert hub.pending() == [] and vxp.pending() == []  # slow, not broken
    set_faults(reset=True)


def test_failure_share_is_retryable(set_faults, clients):
    set_faults(failure_rate=1.0)
    _all_retryable(*clients())
    set_faults(failure_rate=0.5, seed=7)
    hub, _ = clients()
    outcomes = []
    for _ in range(20):
        try:
            hub.pending()
            outcomes.append("ok")
        except RetryableAxisError:
            outcomes.append("fail")
    assert 3 <= outcomes.count("fail") <= 17


def test_dropped_connections_are_retryable(set_faults, clients, sandbox):
    set_faults(drop_rate=1.0)
    _all_retryable(*clients())
    assert sandbox.store.counts()["documents"] == {}  # nothing half-stored
    set_faults(drop_rate=0)
    hub, vxp = clients()
    assert hub.pending() == [] and vxp.pending() == []


def test_outage_window_is_retryable_and_ends(set_faults, clients, sandbox):
    state = set_faults(outage_in=0, outage_seconds=1.0)
    assert state["outage_active"] is True
    _all_retryable(*clients())
    assert requests.get(f"{sandbox.url}/healthz", timeout=5).status_code == 200  # not the bindings
    time.sleep(1.1)
    hub, vxp = clients()
    assert hub.pending() == [] and vxp.pending() == []


def test_bad_credentials_are_authentication_errors_not_retryable(hub_client, vxp_client):
    with pytest.raises(AuthenticationError):
        hub_client(H16, token="nope").pending()
    with pytest.raises(AuthenticationError):
        vxp_client(H16, secret="nope").pending()


def test_admin_endpoint_needs_its_token_and_checks_values(sandbox):
    url = f"{sandbox.url}/admin/faults"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.post(url, json={"latency_ms": 5}, headers={"X-Admin-Token": "guess"}, timeout=5).status_code == 401
    auth = {"X-Admin-Token": sandbox.admin_token}
    assert requests.post(url, json={"failure_rate": 2}, headers=auth, timeout=5).status_code == 400
    assert requests.post(url, json={"bogus": 1}, headers=auth, timeout=5).status_code == 400
    r = requests.post(url, json={"latency_ms": 5, "drop_rate": 0.25}, headers=auth, timeout=5)
    assert r.json()["latency_ms"] == 5 and r.json()["drop_rate"] == 0.25
    assert requests.get(url, headers=auth, timeout=5).json()["drop_rate"] == 0.25


def test_cli_flags_start_a_sandbox_with_those_faults(tmp_path):
    code = "from connector.cli.sandbox_command import sandbox_cmd; sandbox_cmd()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--data", str(tmp_path / "d"), "--latency-ms", "20",
         "--failure-rate", "0.1", "--drop-rate", "0.2", "--outage-start", "3600", "--outage-seconds", "60",
         "--admin-token", "rehearsal-token"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line + proc.stderr.read()
        base = line.strip().rsplit(" ", 1)[-1]
        state = requests.get(f"{base}/admin/faults", headers={"Authorization": "Bearer rehearsal-token"}, timeout=5).json()
        assert state["latency_ms"] == 20 and state["failure_rate"] == 0.1 and state["drop_rate"] == 0.2
        assert state["outage_seconds"] == 60 and state["outage_active"] is False
        assert (tmp_path / "d" / "agencies.json").is_file()
    finally:
        proc.terminate()
        proc.wait(10)
