"""The local HTTP intake API on a real WsgiServer: bearer auth on every route, 422 with every
problem, 202 with a tracking id, tracking (404 for an unknown id), status reports, size limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from connector.httpserver import WsgiServer
from connector.routing.formdata import FormBody, FormField, FormFile
from connector.routing.http_intake import IntakeRejected, intake_app

from .conftest import G22, document_json

TOKEN = "intake-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PDF = b"%PDF-1.4 cong van so 12"


class FakeEngine:
    """What the engine gives the API: submit, track, report_status."""

    def __init__(self):
        self.submitted: list[tuple[dict, dict[str, bytes]]] = []
        self.reports = []
        self.reject_with: list[str] | None = None
        self.crash = False

    def submit(self, document: dict, files: list[Path]) -> str:
        if self.crash:
            raise RuntimeError("store is locked /var/lib/secret/path")
        if self.reject_with:
            raise IntakeRejected(self.reject_with)
        self.submitted.append((document, {p.name: p.read_bytes() for p in files}))  # copied: the spool goes away
        return f"trk-{len(self.submitted)}"

    def track(self, tracking_id: str) -> dict | None:
        if tracking_id == "trk-1":
            return {"tracking_id": "trk-1", "recipients": {G22: {"delivery": "sent", "status": "03"}}}
        return None

    def report_status(self, report) -> str:
        self.reports.append(report)
        return f"st-{len(self.reports)}"


@pytest.fixture
def api(tmp_path):
    engine = FakeEngine()
    spool = tmp_path / "spool"
    app = intake_app(engine.submit, engine.track, engine.report_status, TOKEN, spool_dir=spool,
                     max_body_bytes=200_000, max_file_bytes=50_000)
    with WsgiServer(app) as server:
        yield server.url, engine, spool


def _post(url, document, files=(), headers=AUTH, raw_metadata: bytes | None = None):
    metadata = raw_metadata if raw_metadata is not None else json.dumps(document, ensure_ascii=False).encode()
    parts = [("metadata", (None, metadata, "application/json"))] + [("file", (n, d, "application/pdf")) for n, d in files]
    return requests.post(f"{url}/documents", files=parts, headers=headers, timeout=10)


def test_every_route_needs_the_token(api):
    url, engine, _ = api
    for method, path in (("POST", "/documents"), ("GET", "/documents/trk-1"), ("POST", "/statuses"), ("GET", "/nowhere")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            r = requests.request(method, f"{url}{path}", headers=headers, data=b"{}", timeout=10)
            assert r.status_code == 401, (method, path, headers)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert r.json() == {"error": "missing or wrong bearer token"}
    assert engine.submitted == [] and engine.reports == []


def test_submit_returns_a_tracking_id(api):
    url, engine, spool = api
    r = _post(url, document_json([{"name": "Công văn 12.pdf"}]), [("Công văn 12.pdf", PDF), ("phu-luc.pdf", b"%PDF-pl")])
    assert r.status_code == 202, r.text
    assert r.json() == {"tracking_id": "trk-1", "url": "/documents/trk-1"} and r.headers["Location"] == "/documents/trk-1"
    ((document, files),) = engine.submitted
    assert files == {"Công văn 12.pdf": PDF, "phu-luc.pdf": b"%PDF-pl"}
    assert document["attachments"][0]["size"] == len(PDF) and document["attachments"][0]["content_type"] == "application/pdf"
    assert list(spool.iterdir()) == []  # the request's spool folder is gone


def test_chunked_upload_is_read(api):
    url, engine, _ = api
    body = FormBody([FormField("metadata", json.dumps(document_json()).encode(), "application/json"),
                     FormFile("file", "cong-van.pdf", len(PDF), lambda: __import__("io").BytesIO(PDF))])
    r = requests.post(f"{url}/documents", data=iter(body), headers={**AUTH, "Content-Type": body.content_type}, timeout=10)
    assert r.status_code == 202, r.text
    assert engine.submitted[0][1] == {"cong-van.pdf": PDF}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"raw_metadata": b'{"kind": "edoc",\n "subject": }'}, ["metadata: not valid JSON at line 2, column 13: Expecting value"]),
        ({"document": document_json(colour="red")}, ["metadata: colour: unknown key"]),
        ({"document": document_json(subject="")}, ["metadata: subject: must not be empty"]),
        ({"document": document_json([{"name": "thieu.pdf"}])},
         ["metadata: attachments[0].name: no file named 'thieu.pdf' among the uploaded files"]),
        ({"document": document_json(), "files": [("../../etc/cron.d/x", PDF)]},
         ["file part 2 '../../etc/cron.d/x': not a safe file name: it contains a path separator (/ or \\)"]),
        ({"document": document_json(), "files": [("cong-van.pdf", b"")]},
         ["file 'cong-van.pdf': is empty (0 bytes); expected the attachment's content"]),
        ({"document": document_json(), "files": [("cong-van.pdf", PDF), ("cong-van.pdf", PDF)]},
         ["file part 3 'cong-van.pdf': two file parts have this name"]),
    ],
)
def test_bad_input_is_422_with_the_problems(api, kwargs, expected):
    url, engine, spool = api
    kwargs.setdefault("document", None)
    kwargs.setdefault("files", [("cong-van.pdf", PDF)])
    r = _post(url, **kwargs)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "the document was not accepted"
    assert r.json()["problems"][: len(expected)] == expected
    assert engine.submitted == [] and list(spool.iterdir()) == []


def test_missing_metadata_part_and_engine_rejection(api):
    url, engine, _ = api
    r = requests.post(f"{url}/documents", files=[("file", ("cong-van.pdf", PDF))], headers=AUTH, timeout=10)
    assert r.status_code == 422
    assert r.json()["problems"] == ['metadata: expected exactly one form field named "metadata" holding the document JSON, got 0']
    engine.reject_with = ["to[0].organ_id: unknown agency '000.00.00.X99'"]
    r = _post(url, document_json(), [("cong-van.pdf", PDF)])
    assert (r.status_code, r.json()["problems"]) == (422, ["to[0].organ_id: unknown agency '000.00.00.X99'"])


def test_size_limits_are_413(api):
    url, engine, spool = api
    r = _post(url, document_json(), [("cong-van.pdf", b"x" * 300_000)])
    assert r.status_code == 413 and "over the limit of 200000" in r.json()["error"]
    r = _post(url, document_json(), [("cong-van.pdf", b"x" * 60_000)])
    assert r.status_code == 413 and "file 'cong-van.pdf' is over 50000 bytes" in r.json()["error"]
    r = requests.post(f"{url}/documents", data=b"x", headers={**AUTH, "Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    assert engine.submitted == [] and list(spool.iterdir()) == []


def test_tracking(api):
    url, _, _ = api
    r = requests.get(f"{url}/documents/trk-1", headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json()["recipients"][G22]["status"] == "03"
    r = requests.get(f"{url}/documents/trk-404", headers=AUTH, timeout=10)
    assert r.status_code == 404 and r.json() == {"error": "no document has the tracking id 'trk-404'"}
    r = requests.delete(f"{url}/documents/trk-1", headers=AUTH, timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"


def test_status_reports(api):
    url, engine, _ = api
    report = {"document_id": "000.00.00.G22,2025/03/01,7816/VPCP-TTĐT", "to": G22, "status_code": "02",
              "description": "Sai thể thức văn bản", "staff": {"name": "Lê Văn Cường"}}
    r = requests.post(f"{url}/statuses", json=report, headers=AUTH, timeout=10)
    assert (r.status_code, r.json()) == (202, {"tracking_id": "st-1"})
    (got,) = engine.reports
    assert (got.status_code, got.description, got.staff.name, got.report_id) == ("02", "Sai thể thức văn bản", "Lê Văn Cường", "")
    r = requests.post(f"{url}/statuses", json={"document_id": "D", "to": G22, "status_code": "09"}, headers=AUTH, timeout=10)
    assert r.status_code == 422
    assert r.json()["problems"] == ["body: status_code: expected one of 01, 02, 03, 04, 05, 06, 13, 15, 16, got '09'"]


def test_engine_failure_is_500_without_detail(api):
    url, engine, _ = api
    engine.crash = True
    r = _post(url, document_json(), [("cong-van.pdf", PDF)])
    assert r.status_code == 500
    assert r.json() == {"error": "internal error in the connector; the operator finds the detail in its log"}
    assert "secret" not in r.text


def test_token_is_required():
    with pytest.raises(ValueError, match="non-empty token"):
        intake_app(lambda d, f: "", lambda t: None, lambda r: "", " ", spool_dir="/nonexistent-never-created")
