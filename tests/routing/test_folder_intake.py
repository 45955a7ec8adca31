"""Folder pickup: drops are claimed atomically once settled, checked, and end in sent/ with the
tracking id or in failed/ with an error.txt naming the field and what was expected; nothing is
lost or written outside the intake folder."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from connector.routing.folder_intake import FolderIntake

from .conftest import G22, H16, document_json, write_json

PDF = b"%PDF-1.4 cong van"


def _intake(tmp_path: Path, **settings) -> FolderIntake:
    settings.setdefault("settle_s", 0)
    return FolderIntake(tmp_path / "exchange", **settings)


def _dir_drop(intake: FolderIntake, name: str, document=None, files: dict[str, bytes] | None = None) -> Path:
    folder = intake.outbox / name
    folder.mkdir()
    if document is not None:
        write_json(folder / "metadata.json", document)
    for file_name, data in (files if files is not None else {"cong-van.pdf": PDF}).items():
        (folder / file_name).write_bytes(data)
    return folder


def _tree(root: Path) -> dict[str, bytes | int]:
    """Relative path -> content (size only for big files: the sparse "huge" one is 3 GiB)."""
    return {str(p.relative_to(root)): p.read_bytes() if p.stat().st_size < 1 << 20 else p.stat().st_size
            for p in sorted(root.rglob("*")) if p.is_file()}


def _age(*paths: Path, seconds: float = 60) -> None:
    past = time.time() - seconds
    for path in paths:
        os.utime(path, (past, past), follow_symlinks=False)


def test_folder_drop_is_claimed_checked_and_sent(tmp_path):
    intake = _intake(tmp_path)
    assert sorted(p.name for p in intake.root.iterdir()) == ["failed", "outbox", "processing", "sent", "status"]
    _dir_drop(intake, "cv-12", document_json(), {"cong-van.pdf": PDF, "phụ lục.docx": b"PK..", ".DS_Store": b"x"})
    (item,) = intake.claim()
    assert list(intake.outbox.iterdir()) == []
    assert item.name == "cv-12" and item.source.parent == intake.processing and item.drop_id == item.source.name
    assert [p.name for p in item.files] == ["cong-van.pdf", "phụ lục.docx"]  # listed first, then unlisted
    listed = item.document["attachments"][0]
    assert listed["size"] == len(PDF) and listed["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert listed["content_type"] == "application/pdf" and listed["content_id"]
    sent = intake.complete(item, "trk-0001")
    assert sent == intake.sent / "cv-12"
    assert (sent / "tracking.txt").read_text().splitlines()[0] == "trk-0001"
    assert (sent / "cong-van.pdf").read_bytes() == PDF and (sent / "metadata.json").exists()
    assert list(intake.processing.iterdir()) == []


def test_json_drop_takes_the_files_it_lists_from_beside_it(tmp_path):
    intake = _intake(tmp_path)
    write_json(intake.outbox / "cv-13.json", document_json([{"name": "cong-van.pdf", "content_type": "application/pdf"}]))
    (intake.outbox / "cong-van.pdf").write_bytes(PDF)
    (intake.outbox / "unrelated.pdf").write_bytes(b"%PDF other")  # not listed: stays for its own JSON
    (item,) = intake.claim()
    assert item.name == "cv-13" and [p.name for p in item.files] == ["cong-van.pdf"]
    assert sorted(p.name for p in intake.outbox.iterdir()) == ["unrelated.pdf"]
    sent = intake.complete(item, "trk-13")
    assert sorted(p.name for p in sent.iterdir()) == ["cong-van.pdf", "cv-13.json", "tracking.txt"]


def _bad_cases(tmp_path: Path, intake: FolderIntake):
    """name -> (make the drop, text error.txt must contain)."""
    outside = tmp_path / "secret.pdf"
    outside.write_bytes(b"%PDF secret")
    return {
        "missing-metadata": (lambda: _dir_drop(intake, "missing-metadata", None),
                             "metadata.json is missing: a drop folder must hold metadata.json"),
        "wrong-name": (lambda: write_json(_dir_drop(intake, "wrong-name", None) / "cv.json", document_json()),
                       "(found cv.json: rename the document JSON to metadata.json)"),
        "broken-json": (lambda: (_dir_drop(intake, "broken-json", None) / "metadata.json").write_text(
                            '{\n  "kind": "edoc",\n  "subject" "x"\n}', encoding="utf-8"),
                        "metadata.json: not valid JSON at line 3, column 13: Expecting ':' delimiter"),
        "not-utf8": (lambda: (_dir_drop(intake, "not-utf8", None) / "metadata.json").write_bytes(
                         '{"subject": "Công văn"}'.encode("cp1258")),
                     "metadata.json: not UTF-8 text (byte 0xf4 at offset 14)"),
        "unknown-field": (lambda: _dir_drop(intake, "unknown-field", document_json(colour="red")),
                          "metadata.json: colour: unknown key"),
        "schema": (lambda: _dir_drop(intake, "schema", document_json(to=[{"organ_name": "VPCP"}], code=5)),
                   "metadata.json: to[0].organ_id: required key missing"),
        "traversal": (lambda: (write_json(intake.outbox / "traversal.json", document_json([{"name": "../secret.pdf"}]))),
                      ("traversal.json: attachments[0].name: '../secret.pdf' is not a safe file name "
                      "(it contains a path separator (/ or \\)); expected the plain name of a file beside traversal.json in outbox/")),
        "absolute": (lambda: write_json(intake.outbox / "absolute.json", document_json([{"name": str(outside)}])),
                     f"absolute.json: attachments[0].name: '{outside}' is not a safe file name"),
        "symlink": (lambda: os.symlink(outside, _dir_drop(intake, "symlink", document_json()) / "link.pdf"),
                    f"file 'link.pdf': is a symbolic link (to {outside}); links are not followed"),
        "empty-file": (lambda: _dir_drop(intake, "empty-file", document_json(), {"cong-van.pdf": b""}),
                       "file 'cong-van.pdf': is empty (0 bytes); expected the attachment's content"),
        "huge-file": (lambda: _sparse(_dir_drop(intake, "huge-file", document_json()) / "cong-van.pdf", 3 * 1024**3),
                      "file 'cong-van.pdf': is 3.0 GiB (3221225472 bytes), over the limit of 1.0 GiB (1073741824 bytes)"),
        "missing-file": (lambda: _dir_drop(intake, "missing-file", document_json([{"name": "cong-van.pdf"}, {"name": "phu-luc.pdf"}])),
                         "metadata.json: attachments[1].name: no file named 'phu-luc.pdf' in the drop folder"),
        "wrong-hash": (lambda: _dir_drop(intake, "wrong-hash", document_json([{"name": "cong-van.pdf", "sha256": "0" * 64}])),
                       (f"metadata.json: attachments[0].sha256: the JSON says '{'0' * 64}', the file 'cong-van.pdf' has "
                       f"{hashlib.sha256(PDF).hexdigest()}")),
        "subfolder": (lambda: (_dir_drop(intake, "subfolder", document_json()) / "scans").mkdir(),
                      "'scans': is a folder; a drop holds files only"),
        "status-kind": (lambda: _dir_drop(intake, "status-kind", {"schema_version": "1", "kind": "status"}),
                        'metadata.json: kind: expected "edoc"; a status report goes to the status folder'),
        "unknown-agency": (lambda: _dir_drop(intake, "unknown-agency", document_json(to=[{"organ_id": "000.00.00.X99"}])),
                           "metadata.json: to[0].organ_id: unknown agency '000.00.00.X99' (not in the directory)"),
    }


def _sparse(path: Path, size: int) -> None:
    with open(path, "r+b" if path.exists() else "wb") as fh:
        fh.truncate(size)


def _known_agencies(document: dict) -> list[str]:
    """The engine's extra check, as it would plug in its agency directory."""
    known = {H16, G22}
    return [f"to[{i}].organ_id: unknown agency {t.get('organ_id')!r} (not in the directory)"
            for i, t in enumerate(document.get("to", [])) if t.get("organ_id") not in known]


def test_bad_drops_go_to_failed_with_a_precise_error_and_nothing_lost(tmp_path):
    intake = _intake(tmp_path, check=_known_agencies)
    cases = _bad_cases(tmp_path, intake)
    for make, _ in cases.values():
        make()
    before = {p.name: _tree(p) if p.is_dir() else p.read_bytes() for p in intake.outbox.iterdir() if not p.is_symlink()}
    assert intake.claim() == []
    assert list(intake.outbox.iterdir()) == [] and list(intake.processing.iterdir()) == []
    assert sorted(p.name for p in intake.failed.iterdir()) == sorted(cases)
    for name, (_, expected) in cases.items():
        error = (intake.failed / name / "error.txt").read_text(encoding="utf-8")
        assert error.startswith("NOT SENT: ") and expected in error, (name, error)
        # every file the DMS dropped is still there, unchanged
        kept = _tree(intake.failed / name)
        kept.pop("error.txt")
        original = before.get(name) or before.get(f"{name}.json")
        if isinstance(original, bytes):
            assert kept == {f"{name}.json": original}
        elif name != "symlink":
            assert kept == original, name
    assert (tmp_path / "secret.pdf").read_bytes() == b"%PDF secret"  # never moved, never read into a drop
    assert os.path.islink(intake.failed / "symlink" / "link.pdf")


def test_several_problems_are_all_listed(tmp_path):
    intake = _intake(tmp_path)
    _dir_drop(intake, "many", document_json([{"name": "x.pdf", "size": 3}], subject=""), {"cong-van.pdf": b""})
    assert intake.claim() == []
    error = (intake.failed / "many" / "error.txt").read_text()
    assert "What is wrong (2 problems):" in error
    assert "1. file 'cong-van.pdf': is empty (0 bytes)" in error
    assert "2. metadata.json: attachments[0].name: no file named 'x.pdf' in the drop folder" in error


def test_files_still_being_written_are_left_for_later(tmp_path):
    intake = _intake(tmp_path, settle_s=2)
    fresh = _dir_drop(intake, "fresh", document_json())
    partial = _dir_drop(intake, "partial", document_json(), {"cong-van.pdf.part": PDF})
    write_json(intake.outbox / "beside.json", document_json())
    (intake.outbox / "cong-van.pdf.tmp").write_bytes(PDF)  # its attachment, still under a temporary name
    (intake.outbox / "writing.json.part").write_text("{")
    _age(partial, *partial.iterdir(), intake.outbox / "beside.json", intake.outbox / "cong-van.pdf.tmp",
         intake.outbox / "writing.json.part")
    assert intake.claim() == []
    assert sorted(p.name for p in intake.outbox.iterdir()) == [
        "beside.json", "cong-van.pdf.tmp", "fresh", "partial", "writing.json.part"]
    # once written and settled, they are taken
    _age(fresh, *fresh.iterdir())
    (partial / "cong-van.pdf.part").rename(partial / "cong-van.pdf")
    (intake.outbox / "cong-van.pdf.tmp").rename(intake.outbox / "cong-van.pdf")
    _age(partial, *partial.iterdir(), intake.outbox / "cong-van.pdf")
    assert sorted(i.name for i in intake.claim()) == ["beside", "fresh", "partial"]
    assert [p.name for p in intake.outbox.iterdir()] == ["writing.json.part"]


def test_two_instances_never_take_the_same_drop(tmp_path):
    first, second = _intake(tmp_path), _intake(tmp_path)
    for n in range(30):
        if n % 2:
            _dir_drop(first, f"d{n:02d}", document_json([{"name": f"f{n}.pdf"}]), {f"f{n}.pdf": PDF})
        else:
            write_json(first.outbox / f"d{n:02d}.json", document_json([{"name": f"f{n}.pdf"}]))
            (first.outbox / f"f{n}.pdf").write_bytes(PDF)
    taken: list[list] = [[], []]
    barrier = threading.Barrier(2)

    def run(intake, out):
        barrier.wait()
        for _ in range(3):
            out.extend(intake.claim())

    threads = [threading.Thread(target=run, args=(i, o)) for i, o in zip((first, second), taken)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = sorted(i.name for i in taken[0] + taken[1])
    assert names == [f"d{n:02d}" for n in range(30)]  # each exactly once
    assert list(first.failed.iterdir()) == [] and list(first.outbox.iterdir()) == []


def test_names_already_used_get_a_suffix(tmp_path):
    intake = _intake(tmp_path)
    _dir_drop(intake, "cv", document_json())
    (first,) = intake.claim()
    _dir_drop(intake, "cv", document_json())
    (second,) = intake.claim()
    assert first.drop_id != second.drop_id
    assert intake.complete(first, "t1").name == "cv" and intake.complete(second, "t2").name == "cv (2)"
    _dir_drop(intake, "cv", document_json(), {"cong-van.pdf": PDF, "tracking.txt": b"the DMS's own note"})
    (third,) = intake.claim()
    failed = intake.fail(third, ["to[0].organ_id: the axis says agency 000.00.00.G22 cannot receive"])
    assert (failed / "tracking.txt").read_bytes() == b"the DMS's own note"
    assert "1. to[0].organ_id: the axis says agency" in (failed / "error.txt").read_text()


def test_a_drop_left_in_processing_is_recovered_with_its_drop_id(tmp_path):
    intake = _intake(tmp_path)
    _dir_drop(intake, "cv", document_json())
    (item,) = intake.claim()  # ... and the instance dies here
    later = _intake(tmp_path, clock=lambda: time.time() + 3600)
    assert _intake(tmp_path).recover(older_than_s=600) == []  # not yet stale
    (again,) = later.recover(older_than_s=600)
    assert again.drop_id == item.drop_id and again.document == item.document and again.files == item.files
    assert later.complete(again, "trk").name == "cv"


def test_an_instance_killed_while_writing_the_tracking_note_leaves_the_drop_sent(tmp_path, monkeypatch):
    """The kill comes as the tracking note is being written (the file made, nothing in it yet).
    The drop was accepted, so it must end in sent/, and a restarted instance must find nothing
    to recover: before, the empty note was written inside processing/, read back by recover()
    as one of the drop's files, and the accepted document went to failed/ with "NOT SENT"."""
    from connector.routing import folder_intake

    intake = _intake(tmp_path)
    _dir_drop(intake, "cv-40", document_json())
    (item,) = intake.claim()

    def killed(folder: Path, name: str, text: str) -> Path:
        (folder / name).touch()
        raise KeyboardInterrupt("SIGKILL")

    monkeypatch.setattr(folder_intake, "_write_note", killed)
    with pytest.raises(KeyboardInterrupt):
        intake.complete(item, "trk-40")
    monkeypatch.undo()
    later = _intake(tmp_path, clock=lambda: time.time() + 3600)
    assert later.recover(older_than_s=600) == []
    assert list(later.processing.iterdir()) == [] and list(later.failed.iterdir()) == []
    assert (later.sent / "cv-40" / "cong-van.pdf").read_bytes() == PDF


def test_status_reports(tmp_path):
    intake = _intake(tmp_path)
    write_json(intake.status / "tiep-nhan.json", {
        "document_id": "000.00.00.G22,2025/03/01,7816/VPCP-TTĐT", "to": G22, "status_code": "03",
        "staff": {"name": "Lê Văn Cường", "department": "Văn thư", "email": None, "mobile": "0912000002"},
    })
    write_json(intake.status / "bad.json", {"document_id": "", "to": G22, "status_code": 3, "note": "x",
                                            "staff": {"phone": "1"}})
    write_json(intake.status / "reject.json", {"document_id": "D-1", "to": G22, "status_code": "02"})
    (report,) = intake.status_reports()
    assert (report.document_id, report.to, report.status_code, report.description) == (
        "000.00.00.G22,2025/03/01,7816/VPCP-TTĐT", G22, "03", "Đã tiếp nhận")
    assert report.staff.name == "Lê Văn Cường" and report.staff.email is None and report.report_id
    bad = (intake.status_failed / "bad" / "error.txt").read_text()
    for expected in ("bad.json: note: unknown key (expected: document_id, to, status_code, description, staff)",
                     "bad.json: document_id: required, the DocumentId of the received document",
                     'bad.json: status_code: expected a string such as "03", got number 3',
                     "bad.json: staff.phone: unknown key (expected: name, department, email, mobile)"):
        assert expected in bad
    assert (intake.status_failed / "bad" / "bad.json").exists()
    assert "reject.json: description: a rejection (02) must give its reason" in (
        intake.status_failed / "reject" / "error.txt").read_text()
    done = intake.complete_status(report, "st-trk-1")
    assert done == intake.status_done / "tiep-nhan"
    assert (done / "tracking.txt").read_text().startswith("st-trk-1\n") and (done / "tiep-nhan.json").exists()
    assert sorted(p.name for p in intake.status.iterdir()) == ["done", "failed", "processing"]


@pytest.mark.parametrize("code", ["01", "04", "05", "06", "13", "15", "16"])
def test_every_status_code_of_the_standard_is_accepted(tmp_path, code):
    intake = _intake(tmp_path)
    write_json(intake.status / "s.json", {"document_id": "D", "to": G22, "status_code": code})
    (report,) = intake.status_reports()
    assert report.status_code == code and report.description
