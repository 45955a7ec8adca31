"""The daemon's rounds log an expected operational error (a missing CA bundle, an archive
folder that is a file, a refused axis call) as one line with the reason and the path, never a
traceback; a truly unexpected error type keeps its traceback, once per round and type."""

from __future__ import annotations

import errno
import logging

import pytest

from connector.axis.errors import RetryableAxisError
from connector.daemon.runner import Daemon

from .conftest import H16

CA_MISSING = "Could not find a suitable TLS CA certificate bundle, invalid path: /etc/connector/missing-ca.pem"


class NoCaBundleAxis:
    """What requests raises for every call when the configured CA bundle file is missing."""

    def __init__(self, axis):
        self.axis = axis

    def directory(self):
        raise OSError(CA_MISSING)

    def pending(self, kind="edoc"):
        raise OSError(CA_MISSING)

    def __getattr__(self, name):
        return getattr(self.axis, name)


@pytest.fixture
def daemon(make_side):
    side = make_side(H16, "vxp")
    return Daemon(side.rt)


def _round_records(caplog):
    return [r for r in caplog.records if r.name == "connector.daemon"]


def test_missing_ca_bundle_is_one_line_per_round(daemon, caplog):
    daemon.engine.ctx.axis = NoCaBundleAxis(daemon.engine.ctx.axis)
    caplog.set_level(logging.INFO, logger="connector")
    for _ in range(2):
        daemon._job("directory", daemon._round_directory)()
        daemon._job("poll", daemon._round_poll)()
    records = _round_records(caplog)
    assert [r.getMessage() for r in records] == [
        f"directory round failed: {CA_MISSING}", f"poll round failed: {CA_MISSING}",
    ] * 2
    assert all(r.exc_info is None and r.levelno == logging.ERROR for r in records)


def test_archive_folder_that_is_a_file_names_the_path(daemon, caplog, tmp_path):
    blocker = tmp_path / "audit-archive"
    blocker.write_text("not a folder")
    caplog.set_level(logging.INFO, logger="connector")
    daemon._job("archive", lambda: blocker.mkdir(parents=True, exist_ok=True))()
    (record,) = _round_records(caplog)
    assert record.getMessage() == f"archive round failed: File exists: {blocker}"
    assert record.exc_info is None


def test_axis_error_is_one_warning(daemon, caplog):
    def busy():
        raise RetryableAxisError("busy", code="BUSY", operation="GetPendingDocumentIds")

    caplog.set_level(logging.INFO, logger="connector")
    daemon._job("poll", busy)()
    (record,) = _round_records(caplog)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "GetPendingDocumentIds: busy [BUSY]" in record.getMessage()


def test_unexpected_error_keeps_its_traceback_once(daemon, caplog):
    def bug():
        raise KeyError("agency")

    caplog.set_level(logging.INFO, logger="connector")
    for _ in range(3):
        daemon._job("send", bug)()
    daemon._job("poll", bug)()  # another round: its own first traceback
    records = _round_records(caplog)
    assert [r.exc_info is not None for r in records] == [True, False, False, True]
    assert records[0].getMessage() == "send round failed: unexpected KeyError: 'agency'"
    assert records[1].getMessage() == "send round failed: unexpected KeyError: 'agency' (traceback logged earlier)"


def test_a_full_disk_inside_an_unexpected_error_type_is_one_line_naming_the_folder(daemon, caplog, tmp_path):
    """A library may wrap ENOSPC in its own exception type: the round still reports the full
    disk and its folder in one line, not a traceback of a "bug"."""
    spool = tmp_path / "spool"

    def wrapped_full_disk():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(spool))
        except OSError as exc:
            raise RuntimeError("the library could not write its buffer") from exc

    caplog.set_level(logging.INFO, logger="connector")
    daemon._job("process", wrapped_full_disk)()
    (record,) = _round_records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.getMessage().startswith("process round failed: ")
    assert str(spool) in record.getMessage() and "unexpected" not in record.getMessage()
