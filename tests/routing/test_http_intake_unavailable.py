"""The intake API when the connector's own storage fails, on a real WsgiServer and real disks:
a spool folder on a full tmpfs, removed, or read-only, and a full disk under the engine
(``submit`` / ``report_status`` raising DiskFull), and the connector unavailable for another
reason of its own (a callback raising IntakeUnavailable: the daemon's callbacks do so for a
database that is gone or locked and for exchanges stopped by the audit gate, see
tests/daemon/test_run_errors.py). Each is a 503 with ``Retry-After`` and a one-line JSON error
without server paths (the DMS tries again later, it is not its fault), one log line naming the
folder or the cause (no traceback), no file left behind, and the next request after the fix
goes through without a restart."""

from __future__ import annotations

import logging
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from connector.durable import writing
from connector.httpserver import WsgiServer
from connector.routing.http_intake import IntakeUnavailable, intake_app
from tests.support.small_disk import small_disk

from .conftest import G22, document_json
from .test_http_intake import AUTH, TOKEN, FakeEngine, _post

NO_SPACE = "No space left on device"
FILE = ("cong-van.pdf", b"%PDF-1.4 " + b"x" * 20_000)  # several blocks: one write cannot slip into the last page
FULL = {"error": "the connector's spool folder is full; try again later"}
UNWRITABLE = {"error": "the connector cannot write to its spool folder; try again later"}
STORAGE_FULL = {"error": "the connector's storage is full; try again later"}
REPORT = {"document_id": "000.00.00.G22,2025/03/01,7816/VPCP-TTĐT", "to": G22, "status_code": "03"}


@pytest.fixture
def mount():
    """``mount(path, size)``: a small tmpfs on ``path`` until the test ends (always unmounted)."""
    with ExitStack() as stack:
        yield lambda path, size="2m": stack.enter_context(small_disk(path, size))


class StagingEngine(FakeEngine):
    """Like the engine, ``submit`` and ``report_status`` copy what they keep into a staging
    folder, a full disk there being a DiskFull naming the folder (connector.durable.writing)."""

    def __init__(self, staging: Path):
        super().__init__()
        self.staging = staging

    def submit(self, document: dict, files: list[Path]) -> str:
        with writing(self.staging):
            for path in files:
                shutil.copyfile(path, self.staging / path.name)
        return super().submit(document, files)

    def report_status(self, report) -> str:
        with writing(self.staging):
            (self.staging / "status.json").write_text(report.document_id * 2000, encoding="utf-8")
        return super().report_status(report)


def _serve(engine: FakeEngine, spool: Path) -> WsgiServer:
    return WsgiServer(intake_app(engine.submit, engine.track, engine.report_status, TOKEN, spool_dir=spool))


def _files(folder: Path) -> list[str]:
    """Everything under ``folder`` but a small disk's filler file."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != ".filler")


def _assert_503(response: requests.Response, body: dict) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "30"
    assert response.json() == body


def _one_log_line(caplog, *words: str) -> str:
    """The one warning-or-worse record logged, without a traceback, containing ``words``."""
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in records if r.exc_info] == []
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert "\n" not in message and all(word in message for word in words), message
    return message


def test_full_spool_folder_is_503_and_leaves_nothing(mount, tmp_path, caplog):
    disk = mount(tmp_path / "disk")
    spool = disk.path / "spool"
    engine = FakeEngine()
    with _serve(engine, spool) as server:
        disk.fill()
        caplog.clear()
        _assert_503(_post(server.url, document_json(), [FILE]), FULL)
        _one_log_line(caplog, "POST /documents answered 503", f"the spool folder {spool} is full", NO_SPACE)
        assert _files(spool) == [] and engine.submitted == []
        disk.free()
        assert _post(server.url, document_json(), [FILE]).status_code == 202  # space is back: no restart needed
    assert _files(spool) == []


def test_removed_spool_folder_is_503(tmp_path, caplog):
    spool = tmp_path / "data" / "spool"
    engine = FakeEngine()
    with _serve(engine, spool) as server:
        shutil.rmtree(spool)
        caplog.clear()
        _assert_503(_post(server.url, document_json(), [FILE]), UNWRITABLE)
        _one_log_line(caplog, f"cannot write to the spool folder {spool}", "No such file or directory")
        assert not spool.exists() and engine.submitted == []
        spool.mkdir()
        assert _post(server.url, document_json(), [FILE]).status_code == 202
    assert _files(spool) == []


def test_read_only_spool_folder_is_503(mount, tmp_path, caplog):
    disk = mount(tmp_path / "disk")
    spool = disk.path / "spool"
    engine = FakeEngine()
    with _serve(engine, spool) as server:
        subprocess.run(["mount", "-o", "remount,ro", str(disk.path)], check=True, capture_output=True, timeout=30)
        try:
            caplog.clear()
            _assert_503(_post(server.url, document_json(), [FILE]), UNWRITABLE)
            _one_log_line(caplog, f"cannot write to the spool folder {spool}", "Read-only file system")
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk.path)], check=True, capture_output=True, timeout=30)
        assert _files(spool) == [] and engine.submitted == []


@pytest.mark.parametrize("route", ["/documents", "/statuses"])
def test_engine_disk_full_is_503(mount, tmp_path, caplog, route):
    """The engine's staging folder (or database) is on a full disk: DiskFull from the callback."""
    disk = mount(tmp_path / "disk")
    staging = disk.path / "staging"
    staging.mkdir()
    spool = tmp_path / "spool"
    engine = StagingEngine(staging)

    def send(url: str) -> requests.Response:
        if route == "/documents":
            return _post(url, document_json(), [FILE])
        return requests.post(f"{url}/statuses", json=REPORT, headers=AUTH, timeout=10)

    with _serve(engine, spool) as server:
        disk.fill()
        caplog.clear()
        response = send(server.url)
        _assert_503(response, STORAGE_FULL)
        assert str(tmp_path) not in response.text
        _one_log_line(caplog, f"POST {route} answered 503", f"{NO_SPACE}: {staging}")
        assert _files(spool) == [] and engine.submitted == [] and engine.reports == []
        disk.free()
        assert send(server.url).status_code == 202
    assert _files(spool) == []


class UnavailableEngine(FakeEngine):
    """An engine whose every call raises ``unavailable`` while it is set."""

    def __init__(self):
        super().__init__()
        self.unavailable: IntakeUnavailable | None = None

    def _check(self) -> None:
        if self.unavailable is not None:
            raise self.unavailable

    def submit(self, document: dict, files: list[Path]) -> str:
        self._check()
        return super().submit(document, files)

    def track(self, tracking_id: str) -> dict | None:
        self._check()
        return super().track(tracking_id)

    def report_status(self, report) -> str:
        self._check()
        return super().report_status(report)


@pytest.mark.parametrize("route", ["POST /documents", "GET /documents/trk-1", "POST /statuses"])
def test_connector_unavailable_is_503(tmp_path, caplog, route):
    """A callback raising IntakeUnavailable: 503 with its reason for the DMS, its detail (which
    may name a path) in one log line for the operator; the request's files removed; the next
    request after it comes back goes through."""
    engine = UnavailableEngine()
    spool = tmp_path / "spool"
    method, path = route.split(" ")

    def send(url: str) -> requests.Response:
        if path == "/documents":
            return _post(url, document_json(), [FILE])
        if path == "/statuses":
            return requests.post(f"{url}/statuses", json=REPORT, headers=AUTH, timeout=10)
        return requests.get(f"{url}{path}", headers=AUTH, timeout=10)

    with _serve(engine, spool) as server:
        engine.unavailable = IntakeUnavailable(
            "the connector's database is unavailable",
            f"database unavailable: database file {tmp_path}/data/connector.db disappeared;\nrestore it")
        caplog.clear()
        response = send(server.url)
        _assert_503(response, {"error": "the connector's database is unavailable; try again later"})
        assert str(tmp_path) not in response.text
        _one_log_line(caplog, f"{route} answered 503: database unavailable: database file {tmp_path}/data/connector.db "
                      "disappeared; restore it")
        assert _files(spool) == [] and engine.submitted == [] and engine.reports == []
        engine.unavailable = None
        assert send(server.url).status_code in (200, 202)
    assert _files(spool) == []
