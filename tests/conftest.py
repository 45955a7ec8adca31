"""Suite-wide rules: in CI (CI=true) a skipped test is a failure, so nothing silently
stops running because a service or a folder went missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_WORLD = ROOT.parent / "shared" / "fixtures" / "real-world"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def real_world_dir() -> Path:
    """The shared real-world fixtures; skip without them (fail in CI)."""
    if not REAL_WORLD.is_dir():
        pytest.skip(f"real-world fixtures not found at {REAL_WORLD}")
    return REAL_WORLD


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not item.get_closest_marker("ci_may_skip"):
        if hasattr(report, "wasxfail"):
            return
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true makes skips errors): {reason}"


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL cluster for the session (skipped, so failed in CI, if not installed)."""
    from tests.support.postgres import PostgresUnavailable, start_postgres

    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server) -> str:
    """The SQLAlchemy URL of a fresh, empty PostgreSQL database for this test."""
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory):
    """A development PKI for the session (root and issuing CA, the agencies, TLS pairs); read
    only: a test that needs to change one makes its own."""
    from connector.signing.devpki import create_dev_pki

    return create_dev_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def sandbox(tmp_path):
    """A sandbox axis (provincial hub and VXP) of this test's own, on loopback."""
    from connector.sandbox.server import SandboxServer

    with SandboxServer(tmp_path / "sandbox", seed=7) as server:
        yield server
