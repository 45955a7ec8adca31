"""Intake edges from the audit: a symbolic link dropped into outbox/ is refused visibly (never
followed, never ignored), a document JSON nested too deeply is refused as invalid JSON (not a
crash), an empty attachment is refused naming the file, and an attachment may be named
``document.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from connector.httpserver import WsgiServer
from connector.routing.folder_intake import FolderIntake
from connector.routing.http_intake import intake_app
from connector.routing.intake_checks import IntakeRejected, parse_json

from .conftest import document_json, write_json

PDF = b"%PDF-1.4 cong van"
DEEP = b"[" * 100_000
TOKEN = "intake-token-edges"


def _intake(tmp_path: Path) -> FolderIntake:
    return FolderIntake(tmp_path / "exchange", settle_s=0)


def _error(folder: Path) -> str:
    return (folder / "error.txt").read_text(encoding="utf-8")


def test_symlinked_drop_folder_goes_to_failed_not_followed(tmp_path):
    intake = _intake(tmp_path)
    outside = tmp_path / "outside-drop"
    outside.mkdir()
    write_json(outside / "metadata.json", document_json())
    (outside / "cong-van.pdf").write_bytes(PDF)
    os.symlink(outside, intake.outbox / "linked-drop")

    assert intake.claim() == []
    failed = intake.failed / "linked-drop"
    assert os.path.islink(failed / "linked-drop")  # the link itself, moved; its target untouched
    assert os.readlink(failed / "linked-drop") == str(outside)
    error = _error(failed)
    assert error.startswith("NOT SENT: linked-drop")
    assert "is a symbolic link" in error and "not accepted" in error
    assert list(intake.outbox.iterdir()) == [] and list(intake.processing.iterdir()) == []
    assert sorted(p.name for p in outside.iterdir()) == ["cong-van.pdf", "metadata.json"]
    # a second scan finds nothing more to do (refused once, not again and again)
    assert intake.claim() == [] and sorted(p.name for p in intake.failed.iterdir()) == ["linked-drop"]


def test_symlinked_json_and_dangling_link_are_refused_too(tmp_path):
    intake = _intake(tmp_path)
    target = write_json(tmp_path / "elsewhere.json", document_json())
    os.symlink(target, intake.outbox / "doc.json")
    os.symlink(tmp_path / "nowhere", intake.outbox / "dangling")
    assert intake.claim() == []
    assert sorted(p.name for p in intake.failed.iterdir()) == ["dangling", "doc.json"]
    for name in ("dangling", "doc.json"):
        assert "is a symbolic link" in _error(intake.failed / name)
    assert target.read_text(encoding="utf-8")  # never moved


def test_symlink_listed_by_a_json_drop_is_refused_with_that_drop(tmp_path):
    intake = _intake(tmp_path)
    outside = tmp_path / "secret.pdf"
    outside.write_bytes(b"%PDF secret")
    os.symlink(outside, intake.outbox / "cong-van.pdf")
    write_json(intake.outbox / "cv.json", document_json())
    assert intake.claim() == []
    assert sorted(p.name for p in intake.failed.iterdir()) == ["cv"]
    assert "file 'cong-van.pdf': is a symbolic link" in _error(intake.failed / "cv")
    assert outside.read_bytes() == b"%PDF secret"


def test_link_claimed_by_a_dead_instance_is_refused_on_recovery(tmp_path):
    intake = _intake(tmp_path)
    os.symlink(tmp_path, intake.outbox / "loop")
    claimed = intake._claim_file(intake.outbox / "loop", intake.processing, "L")  # claimed, then the instance died
    assert claimed is not None
    assert intake.recover(0) == []
    assert "is a symbolic link" in _error(intake.failed / "loop")


def test_deeply_nested_json_is_invalid_json_not_a_crash():
    with pytest.raises(IntakeRejected) as err:
        parse_json(DEEP, "metadata.json")
    assert err.value.problems == [
        "metadata.json: not valid document JSON: nested too deeply (arrays or objects inside each other more than "
        "the parser allows)"
    ]


def test_deeply_nested_metadata_goes_to_failed(tmp_path):
    intake = _intake(tmp_path)
    folder = intake.outbox / "deep"
    folder.mkdir()
    (folder / "metadata.json").write_bytes(DEEP)
    (folder / "cong-van.pdf").write_bytes(PDF)
    (intake.outbox / "deep2.json").write_bytes(DEEP)  # the <name>.json form, read early to gather its files
    (intake.status / "st.json").write_bytes(DEEP)
    assert intake.claim() == [] and intake.status_reports() == []
    assert "metadata.json: not valid document JSON: nested too deeply" in _error(intake.failed / "deep")
    assert "deep2.json: not valid document JSON: nested too deeply" in _error(intake.failed / "deep2")
    assert "st.json: not valid document JSON: nested too deeply" in _error(intake.status_failed / "st")


def test_attachment_named_document_json_is_kept_in_a_folder_drop(tmp_path):
    intake = _intake(tmp_path)
    folder = intake.outbox / "cv"
    folder.mkdir()
    write_json(folder / "metadata.json", document_json([{"name": "real.pdf"}]))
    (folder / "real.pdf").write_bytes(PDF)
    (folder / "document.json").write_text('{"so": 12}', encoding="utf-8")
    (item,) = intake.claim()
    assert sorted(p.name for p in item.files) == ["document.json", "real.pdf"]


@pytest.fixture
def api(tmp_path):
    submitted = []

    def submit(document, files):
        submitted.append((document, {p.name: p.read_bytes() for p in files}))
        return f"trk-{len(submitted)}"

    app = intake_app(submit, lambda _id: None, lambda _r: "st-1", TOKEN, spool_dir=tmp_path / "spool",
                     max_body_bytes=1_000_000, max_file_bytes=50_000)
    with WsgiServer(app) as server:
        yield server.url, submitted


def _post(url, metadata: bytes, files):
    parts = [("metadata", (None, metadata, "application/json"))] + [("file", (n, d, "application/pdf")) for n, d in files]
    return requests.post(f"{url}/documents", files=parts, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def test_http_intake_refuses_deep_json_and_empty_files_by_name(api):
    url, submitted = api
    deep = _post(url, DEEP, [("cong-van.pdf", PDF)])
    assert deep.status_code == 422
    assert deep.json()["problems"] == [
        "metadata: not valid document JSON: nested too deeply (arrays or objects inside each other more than "
        "the parser allows)"
    ]
    empty = _post(url, json.dumps(document_json()).encode(), [("cong-van.pdf", PDF), ("phu-luc.pdf", b"")])
    assert empty.status_code == 422
    assert any("'phu-luc.pdf': is empty (0 bytes)" in p for p in empty.json()["problems"])
    statuses = requests.post(f"{url}/statuses", data=DEEP, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert statuses.status_code == 422 and "nested too deeply" in statuses.json()["problems"][0]
    assert submitted == []


def test_http_intake_passes_an_attachment_named_document_json(api):
    url, submitted = api
    r = _post(url, json.dumps(document_json()).encode(), [("cong-van.pdf", PDF), ("document.json", b'{"so": 12}')])
    assert r.status_code == 202, r.text
    ((_, files),) = submitted
    assert files == {"cong-van.pdf": PDF, "document.json": b'{"so": 12}'}
