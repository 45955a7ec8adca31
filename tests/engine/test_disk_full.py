"""A full disk while the connector works, on a real (small tmpfs) filesystem.

Each configured folder in turn sits on a tiny disk that a filler file fills up: the sender's
staging, spool and evidence folders, the intake folder, the receiver's folder DMS and spool,
the SQLite database with the exchange log, the audit archive folder. What a user must see:

- no document lost or half-written (no half folder or note where a DMS looks, no drop taken
  from the intake folder before it is safely queued, no temporary file left behind);
- the step waits: never counted as a failed attempt, never dead, never quarantined;
- one line per round saying which folder is full ("No space left on device: PATH"), no
  traceback; a failing round stops at once instead of trying every item;
- once space is back, the work completes by itself and every document arrives exactly once;
- the exchange log stays verifiable.

The daemon's rounds are run one at a time in the test's thread (``Daemon._job``, as the
scheduler calls them) so each round's log lines can be counted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from contextlib import ExitStack
from pathlib import Path

import pytest

from connector.audit.verify import verify_log
from connector.daemon.devsite import write_site_config
from connector.daemon.runner import Daemon
from connector.durable import DiskFull
from connector.edxml.jsonform import to_json
from connector.edxml.samples import sample_edoc
from connector.routing.folder_intake import FolderIntake
from tests.support.small_disk import small_disk
from tests.support.sites import (
    DaemonProcess,
    drop_sample,
    inbox_document_ids,
    query,
    recipient_codes,
    states,
    wait_for,
)

from .conftest import G22, H16, inbox_docs, rounds, submit_sample

NO_SPACE = "No space left on device"


@pytest.fixture
def mount():
    """``mount(path, size)``: a small tmpfs on ``path`` until the test ends (unmounted even when
    it fails). Ask for this fixture before ``make_side`` so the runtimes close first."""
    with ExitStack() as stack:
        yield lambda path, size="2m": stack.enter_context(small_disk(path, size))


def daemon(side) -> Daemon:
    """The daemon of ``side`` with its folder intake, as ``Daemon.start`` sets it up for a single
    SQLite instance, but without the scheduler: the test runs the rounds."""
    d = Daemon(side.rt)
    d.folder_intake = FolderIntake(d.config.path(d.config.routing.intake.folder), settle_s=0.0)
    d._stale_after = 0.0
    return d


def run_rounds(d: Daemon, caplog, *names: str) -> list[str]:
    """Run the named rounds once each; the warnings and errors they logged (none with a traceback)."""
    caplog.clear()
    for name in names:
        d._job(name, getattr(d, f"_round_{name}"))()
    noisy = [r for r in caplog.records if r.name.startswith("connector") and r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in noisy if r.exc_info] == []
    return [r.getMessage() for r in noisy]


def full(round_name: str, where: Path) -> str:
    return f"{round_name} round failed: {NO_SPACE}: {where}"


def files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` but the filler (what a full disk may have left behind)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ".filler")


def delivered_ids(side) -> list[str]:
    return sorted(json.loads((p / "metadata.json").read_text(encoding="utf-8"))["document_id"] for p in inbox_docs(side))


def submit_large(side, recipient: str, number: int, size: int) -> tuple[str, str, bytes]:
    """Queue a document whose attachment is larger than what the parser keeps in memory."""
    doc = sample_edoc(side.site.code, recipient, number)
    data = to_json(doc)
    data["attachments"], data["manifest"] = [], []
    content = b"%PDF-1.4\n" + os.urandom(size)
    path = side.site.folder / "drops" / f"large-{number}.pdf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return side.engine.submit(data, [path]), doc.document_id or "", content


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO, logger="connector")


# --------------------------------------------------------------------------- sending


@pytest.mark.parametrize("folder", ["spool", "evidence"])
def test_sender_waits_for_space_to_sign_then_sends_once(mount, make_side, caplog, tmp_path, folder):
    where = tmp_path / H16 / "data" / folder
    disk = mount(where)
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "soap")
    tracking, doc_id = submit_sample(h16, G22, 1)
    disk.fill()
    d = daemon(h16)
    for _ in range(3):
        assert run_rounds(d, caplog, "send") == [full("send", where)]
    track = h16.engine.track(tracking)
    assert (track["state"], track["attempts"]) == ("queued", 0)  # before: dead at once ("OSError: ... permanent")
    assert track["last_error"].startswith("waiting for disk space") and str(where) in track["last_error"]
    assert files_under(where) == []  # no half-written spool or evidence file

    disk.free()
    assert run_rounds(d, caplog, "send") == []
    rounds(g22, h16)
    assert delivered_ids(g22) == [doc_id]
    assert h16.engine.track(tracking)["recipients"][0]["status_code"] == "01"


def test_a_drop_waits_in_the_outbox_while_exchanges_are_stopped(make_side, caplog, monkeypatch):
    """The audit gate closed (fail-closed): the intake round claims nothing, so the DMS's drop
    stays where it put it, and is taken at the first round after the gate opens."""
    from connector.audit.log import AuditUnavailable

    h16, g22 = make_side(H16, "vxp", audit=True), make_side(G22, "soap")
    d = daemon(h16)
    doc_id = drop_sample(h16.site, G22, 2)

    def closed() -> None:
        raise AuditUnavailable("audit log: time-stamping has failed for too long; exchanges are stopped")

    with monkeypatch.context() as patch:
        patch.setattr(h16.rt.audit, "ensure_can_exchange", closed)
        assert run_rounds(d, caplog, "intake", "intake") == [
            "exchange stopped (fail closed): audit log: time-stamping has failed for too long; exchanges are stopped"] * 2
    intake = d.folder_intake
    assert [p.name for p in h16.site.outbox.iterdir()] == ["doc-2"] and list(intake.processing.iterdir()) == []
    assert h16.store.summary().outbound == {}

    assert run_rounds(d, caplog, "intake") == []
    assert list(h16.site.outbox.iterdir()) == [] and (intake.sent / "doc-2" / "tracking.txt").exists()
    rounds(h16, g22)
    assert delivered_ids(g22) == [doc_id]


def test_full_staging_folder_keeps_the_drop_and_queues_it_when_space_returns(mount, make_side, caplog, tmp_path):
    outgoing = tmp_path / H16 / "data" / "outgoing"
    disk = mount(outgoing)
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "soap")
    d = daemon(h16)
    doc_id = drop_sample(h16.site, G22, 1)
    disk.fill()
    for _ in range(3):
        assert run_rounds(d, caplog, "intake") == [full("intake", outgoing)]
    assert os.listdir(outgoing) == [".filler"]  # no staging folder (or half-copied file) left
    intake = d.folder_intake
    (held,) = intake.processing.iterdir()  # the drop is whole, waiting in processing/
    assert sorted(p.name for p in held.iterdir()) == ["cong-van-1.pdf", "metadata.json"]
    assert h16.store.summary().outbound == {}

    disk.free()
    assert run_rounds(d, caplog, "intake") == []  # taken again at once, not after the 10-minute stale delay
    assert list(intake.processing.iterdir()) == []
    tracking = (intake.sent / "doc-1" / "tracking.txt").read_text(encoding="utf-8").splitlines()[0]
    rounds(h16, g22)
    assert delivered_ids(g22) == [doc_id]
    assert h16.engine.track(tracking)["recipients"][0]["status_code"] == "01"


def test_full_intake_folder_leaves_no_half_note_and_finishes_later(mount, make_side, caplog, tmp_path):
    dms = tmp_path / H16 / "dms"
    disk = mount(dms)
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "soap")
    d = daemon(h16)
    intake = d.folder_intake
    doc_id = drop_sample(h16.site, G22, 1)
    report = {"document_id": "000.00.00.G22,2026/01/05,12/VPCP", "to": G22, "status_code": "03"}
    (intake.status / "tiep-nhan.json").write_text(json.dumps(report), encoding="utf-8")
    disk.fill()
    for _ in range(3):
        assert run_rounds(d, caplog, "intake") == [full("intake", dms)]
    sent = intake.sent / "doc-1"
    # accepted and queued (once), but its tracking note could not be written: none at all, not
    # an empty one (before: an empty tracking.txt, never written again)
    assert sorted(os.listdir(sent)) == ["cong-van-1.pdf", "metadata.json"]
    assert h16.store.summary().outbound == {"queued": 1}

    disk.free()
    assert run_rounds(d, caplog, "intake") == []
    tracking = (sent / "tracking.txt").read_text(encoding="utf-8").splitlines()[0]
    assert sorted(os.listdir(sent)) == ["cong-van-1.pdf", "metadata.json", "tracking.txt"]
    assert h16.engine.track(tracking)["document_id"] == doc_id
    (done,) = intake.status_done.iterdir()
    assert (done / "tracking.txt").read_text(encoding="utf-8").startswith("out-")
    assert list(intake.processing.iterdir()) == [] and list(intake.status_processing.iterdir()) == []
    rounds(h16, g22)
    assert delivered_ids(g22) == [doc_id]
    assert h16.store.summary().outbound == {"sent": 2}


# --------------------------------------------------------------------------- receiving


@pytest.mark.parametrize("folder", ["spool", "evidence"])
def test_full_receiving_folder_stops_the_poll_and_fetches_later(mount, make_side, caplog, tmp_path, folder):
    where = tmp_path / G22 / "data" / folder
    disk = mount(where)
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "vxp")
    _, doc_id = submit_sample(h16, G22, 1)
    h16.engine.send_due()
    disk.fill()
    d = daemon(g22)
    for _ in range(3):
        assert run_rounds(d, caplog, "poll") == [full("poll", where)]
    assert g22.store.summary().inbound == {}  # nothing stored, nothing acknowledged: still on the axis
    assert files_under(where) == []

    disk.free()
    rounds(g22, h16)
    assert delivered_ids(g22) == [doc_id]


def test_full_dms_folder_waits_then_delivers_each_document_once(mount, make_side, caplog, tmp_path):
    inbox = tmp_path / G22 / "dms" / "inbox"
    disk = mount(inbox)
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "soap")
    doc_ids = sorted(submit_sample(h16, G22, n)[1] for n in (1, 2))
    h16.engine.send_due()
    disk.fill()
    d = daemon(g22)
    for _ in range(3):
        assert run_rounds(d, caplog, "poll") == [full("poll", inbox)]
        assert run_rounds(d, caplog, "process") == [full("process", inbox)]
    assert os.listdir(inbox) == [".filler"]  # neither a half document folder nor a temporary one
    summary = g22.store.summary()
    assert summary.inbound == {"received": 2}  # before: dead after max_attempts, within one round
    assert {(f["attempts"], f["last_error"].split(":")[0]) for f in summary.recent_failures} == {
        (0, "waiting for disk space")}

    disk.free()
    rounds(g22, h16)
    assert delivered_ids(g22) == doc_ids
    assert g22.store.summary().inbound == {"done": 2}
    assert {h16.engine.track(d)["recipients"][0]["status_code"] for d in doc_ids} == {"01"}


def test_full_spool_while_verifying_a_large_document_waits(mount, make_side, caplog, tmp_path):
    spool = tmp_path / G22 / "data" / "spool"
    disk = mount(spool, "6m")
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "vxp")
    tracking, doc_id, content = submit_large(h16, G22, 1, size=1_200_000)  # decoded into a spooled file
    h16.engine.send_due()
    assert g22.engine.poll() == 1
    disk.fill()
    d = daemon(g22)
    for _ in range(2):
        assert run_rounds(d, caplog, "process") == [full("process", spool)]
    assert g22.store.summary().inbound == {"received": 1}  # not dead, not quarantined
    assert files_under(spool) == []

    disk.free()
    rounds(g22, h16)
    (folder,) = inbox_docs(g22)
    assert (folder / "large-1.pdf").read_bytes() == content
    assert h16.engine.track(tracking)["recipients"][0]["status_code"] == "01"


def test_full_database_is_one_line_per_round_and_nothing_is_lost(mount, make_side, caplog, tmp_path):
    db_dir = tmp_path / "db"
    disk = mount(db_dir)
    database = db_dir / "connector.db"
    g22 = make_side(G22, "soap")
    h16 = make_side(H16, "vxp", database_url=f"sqlite:///{database}")
    d = daemon(h16)
    h16.engine.refresh_directory()  # as the daemon's first round does: intake then stages, then meets the full disk
    doc_id = drop_sample(h16.site, G22, 1)
    disk.fill()
    for _ in range(3):  # before: "unexpected OperationalError" with a traceback
        assert run_rounds(d, caplog, "intake", "send", "poll") == [full("intake", database), full("poll", database)]
    intake = d.folder_intake
    assert [p.name.split("~")[0] for p in intake.processing.iterdir()] == ["doc-1"]  # kept whole
    assert list(intake.sent.iterdir()) == [] and list(intake.failed.iterdir()) == []
    assert list((h16.site.folder / "data" / "outgoing").iterdir()) == []  # no staging folder left

    disk.free()
    assert run_rounds(d, caplog, "intake", "send") == []
    assert list(intake.processing.iterdir()) == []
    rounds(h16, g22)
    assert delivered_ids(g22) == [doc_id]
    assert h16.store.summary().outbound == {"sent": 1}


def test_claim_kept_by_a_full_database_is_given_back_at_the_next_claim(mount, make_side, tmp_path):
    """A step that met a full disk gives its row back; when the database's own disk is full
    that cannot be written either, and the row must not wait out its lease."""
    db_dir = tmp_path / "db"
    disk = mount(db_dir)
    h16 = make_side(H16, "vxp", database_url=f"sqlite:///{db_dir / 'connector.db'}")
    tracking, _ = submit_sample(h16, G22, 1)
    store = h16.store
    assert store.claim_outbound("worker-1", lease=3600)["id"] == tracking
    disk.fill()
    with pytest.raises(DiskFull):
        store.set_setting("probe", "x")  # the database cannot take a write now
    assert store.release_claim("outbound", tracking, "worker-1", last_error="waiting") is False
    disk.free()
    again = store.claim_outbound("worker-1", lease=3600)
    assert again is not None and again["id"] == tracking and again["attempts"] == 0


# --------------------------------------------------------------------------- the exchange log


def test_exchange_log_stays_verifiable_when_its_database_disk_fills(mount, make_side, caplog, tmp_path):
    db_dir = tmp_path / "db"
    disk = mount(db_dir)
    database = db_dir / "connector.db"
    archive = tmp_path / "audit-archive"
    h16 = make_side(H16, "vxp")
    g22 = make_side(G22, "soap", audit=True, database_url=f"sqlite:///{database}")
    audit = g22.rt.audit
    d = daemon(g22)
    submit_sample(h16, G22, 1)
    h16.engine.send_due()
    g22.engine.poll()
    assert run_rounds(d, caplog, "seal") == []  # batch 1 sealed: something to archive
    submit_sample(h16, G22, 2)
    h16.engine.send_due()
    g22.engine.poll()  # entries not sealed yet
    disk.fill()
    for _ in range(2):  # before: the seal round's traceback ("unexpected OperationalError")
        assert run_rounds(d, caplog, "seal", "process") == [full("seal", database), full("process", database)]
    with pytest.raises(DiskFull) as info:
        audit.archive(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1), archive)
    assert info.value.filename == str(database)
    assert files_under(archive) == []  # before: an archive file no log row records

    disk.free()
    rounds(g22, h16)
    assert run_rounds(d, caplog, "seal") == []
    assert audit.archive(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1), archive) is not None
    report = verify_log(g22.rt.db, g22.rt.evidence, archive_dir=archive)
    assert report.ok, [str(p) for p in report.problems]
    assert len(files_under(archive)) == 1
    assert len(inbox_docs(g22)) == 2


def test_full_archive_folder_names_it_and_leaves_no_file(mount, make_side, tmp_path):
    archive = tmp_path / "audit-archive"
    disk = mount(archive)
    h16 = make_side(H16, "vxp")
    g22 = make_side(G22, "soap", audit=True)
    submit_sample(h16, G22, 1)
    h16.engine.send_due()
    g22.engine.poll()
    audit = g22.rt.audit
    audit.seal()
    disk.fill()
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    with pytest.raises(DiskFull) as info:  # before: a bare "[Errno 28] No space left on device"
        audit.archive(later, archive)
    assert info.value.filename == str(archive)
    assert files_under(archive) == []
    disk.free()
    assert audit.archive(later, archive) is not None
    report = verify_log(g22.rt.db, g22.rt.evidence, archive_dir=archive)
    assert report.ok, [str(p) for p in report.problems]


# --------------------------------------------------------------------------- the daemon as users run it


def test_daemon_processes_ride_out_a_full_dms_folder(mount, sandbox, dev_pki, tmp_path):
    """Two real daemons (``cli.py run``); the receiver's DMS folder is full when a document comes:
    it says so, waits without burning its attempts, and delivers once when space returns."""
    inbox = tmp_path / G22 / "dms" / "inbox"
    disk = mount(inbox)
    creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
    sites = {code: write_site_config(tmp_path / code, code=code, name=code, binding=binding, sandbox_url=sandbox.url,
                                     credentials=creds[code], pki=dev_pki, retry_schedule=(0.2,), max_attempts=3)
             for code, binding in ((H16, "vxp"), (G22, "soap"))}
    disk.fill()
    daemons = [DaemonProcess(sites[H16]), DaemonProcess(sites[G22])]
    log = sites[G22].folder / "daemon.log"
    line = f"{NO_SPACE}: {inbox}"
    codes = None
    try:
        for d in daemons:
            d.start()
        for d in daemons:
            assert d.wait_running(60), d.log_tail()
        doc_id = drop_sample(sites[H16], G22, 1)
        # several rounds meet the full folder (with 3 attempts 0.2 s apart it would be dead by now)
        assert wait_for(lambda: log.read_text(encoding="utf-8").count(line) >= 4, 60), daemons[1].log_tail()
        assert states(sites[G22], "inbound") == {"received": 1}
        assert query(sites[G22], "SELECT attempts FROM inbound") == [(0,)]
        assert os.listdir(inbox) == [".filler"]

        disk.free()
        assert wait_for(lambda: recipient_codes(sites[H16]) == {doc_id: "01"}, 60), daemons[1].log_tail()
        assert inbox_document_ids(sites[G22]) == [doc_id]
    finally:
        codes = [d.terminate() for d in daemons if d.proc is not None]
    assert codes == [0, 0]
    text = log.read_text(encoding="utf-8")
    assert "Traceback" not in text
    assert all(f"round failed: {line}" in row for row in text.splitlines() if NO_SPACE in row)


def test_the_mount_helper_fails_in_ci_and_skips_elsewhere_when_it_cannot_mount(monkeypatch, tmp_path):
    from tests.support import small_disk as helper

    monkeypatch.setattr(helper.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(helper, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="need a tmpfs mount"), helper.small_disk(tmp_path / "d"):
        pass
    monkeypatch.setattr(helper, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="not running as root"), helper.small_disk(tmp_path / "d"):
        pass
