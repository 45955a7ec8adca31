"""The command line as an operator uses it: ``python cli.py build | validate | inspect | extract``.

Every test runs the real CLI in a subprocess on real files (a real PDF, real JSON) and checks
exit codes (0 success, 1 invalid input, 2 usage error), what is printed, and the files
written. No output may ever contain a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from connector.edxml.model import NS
from connector.edxml.samples import make_pdf

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli.py"

SUBJECT = "V/v triển khai kết nối, liên thông văn bản điện tử qua Trục quốc gia"
DOCUMENT_ID = "000.00.00.H16,2024/05/20,15/UBND-VP"
PDF_NAME = "cong-van-15-UBND-VP.pdf"
PDF = make_pdf("Cong van so 15/UBND-VP", ["Ve viec trien khai ket noi, lien thong van ban dien tu"])


class Result:
    """A finished CLI run: exit code, stdout, stderr (decoded as UTF-8)."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.code = proc.returncode
        self.stdout = proc.stdout.decode("utf-8", "replace")
        self.stderr = proc.stderr.decode("utf-8", "replace")
        self.out = self.stdout + self.stderr
        assert "Traceback" not in self.out, self.out

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli(*args: object, cwd: Path | None = None) -> Result:
    proc = subprocess.run(
        [sys.executable, str(CLI), *map(str, args)], cwd=cwd or ROOT, capture_output=True, timeout=180
    )
    return Result(proc)


def edoc_json(attachments: list[dict] | None = None) -> dict:
    """A complete document in the JSON form (schemas/document.schema.json), written by hand."""
    return {
        "schema_version": "1",
        "kind": "edoc",
        "document_id": DOCUMENT_ID,
        "from": {
            "organ_id": "000.00.00.H16",
            "organization_in_charge": "UBND tỉnh Đắk Nông",
            "organ_name": "UBND tỉnh Đắk Nông",
            "organ_add": "Đường 23/3, phường Nghĩa Đức, thành phố Gia Nghĩa, tỉnh Đắk Nông",
            "email": "ubnd@daknong.gov.vn",
            "telephone": "0261 3544 130",
            "fax": None,
            "website": "daknong.gov.vn",
        },
        "to": [
            {"organ_id": "000.00.00.G22", "organ_name": "Văn phòng Chính phủ"},
            {"organ_id": "000.00.00.H41", "organ_name": "UBND tỉnh Nghệ An"},
        ],
        "code": {"number": "15", "notation": "UBND-VP"},
        "promulgation": {"place": "Gia Nghĩa", "date": "2024-05-20"},
        "document_type": {"type": "1", "type_detail": "0", "name": "Công văn"},
        "subject": SUBJECT,
        "content": "Đề nghị các cơ quan phối hợp thực hiện.",
        "signer_info": {"competence": "KT. CHỦ TỊCH", "position": "Phó Chủ tịch", "full_name": "Nguyễn Văn An"},
        "due_date": "2024-12-31",
        "steering_type": 0,
        "other_info": {
            "priority": 1,
            "sphere_of_promulgation": "Liên thông văn bản quốc gia",
            "typer_notation": "NVA",
            "promulgation_amount": 2,
            "page_amount": 1,
            "direction": False,
            "appendixes": [],
        },
        "to_places": ["Như trên", "Lưu: VT"],
        "trace_headers": [{"organ_id": "000.00.00.H16", "timestamp": "2024-05-20T08:30:00+07:00"}],
        "business": {
            "document_id": None,
            "business_doc_type": 0,
            "business_doc_reason": "Văn bản điện tử mới",
            "paper": 0,
            "business_document_info": None,
            "replacement_info": [],
            "staff_info": {"department": "Văn thư", "staff": "Trần Thị Bình", "email": None, "mobile": None},
        },
        "attachments": attachments if attachments is not None else [],
    }


def listed_pdf(**changes) -> dict:
    entry = {
        "content_id": "cv15",
        "name": PDF_NAME,
        "content_type": "application/pdf",
        "description": "Văn bản ký số",
        "packaging": "zip",
        "size": len(PDF),
        "sha256": hashlib.sha256(PDF).hexdigest(),
    }
    entry.update(changes)
    return entry


def status_json() -> dict:
    return {
        "schema_version": "1",
        "kind": "status",
        "from": {"organ_id": "000.00.00.G22", "organ_name": "Văn phòng Chính phủ"},
        "response_for": [
            {
                "organ_id": "000.00.00.H16",
                "code": "15/UBND-VP",
                "promulgation_date": "2024-05-20",
                "document_id": DOCUMENT_ID,
            }
        ],
        "status_code": "03",
        "description": "Đã tiếp nhận, vào sổ văn bản đến",
        "timestamp": "2024-05-21T09:15:00+07:00",
        "staff_info": {"department": "Văn thư", "staff": "Lê Văn Cường", "email": None, "mobile": "0912000002"},
    }


@pytest.fixture
def pdf(tmp_path) -> Path:
    path = tmp_path / "files" / PDF_NAME
    path.parent.mkdir()
    path.write_bytes(PDF)
    return path


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def wire_attachments(edxml: Path) -> list[dict]:
    """What the file carries on the wire, read independently with lxml (not our parser)."""
    root = etree.parse(str(edxml)).getroot()
    result = []
    for att in root.iter(f"{{{NS}}}Attachment"):
        result.append(
            {
                "name": att.findtext(f"{{{NS}}}AttachmentName"),
                "content_type": att.findtext(f"{{{NS}}}ContentType"),
                "bytes": base64.b64decode(att.findtext(f"{{{NS}}}ContentTransferEncoded"), validate=True),
            }
        )
    return result


@pytest.fixture
def built(tmp_path, pdf) -> Path:
    """The document built by the CLI from JSON listing the PDF, with --attach."""
    doc = write_json(tmp_path / "doc.json", edoc_json([listed_pdf()]))
    out = tmp_path / "out" / "cv15.edxml"
    result = cli("build", "--json", doc, "--attach", pdf, "-o", out)
    assert result.code == 0, result
    assert str(out) in result.stdout and "edoc" in result.stdout and DOCUMENT_ID in result.stdout
    return out


# --------------------------------------------------------------------------- build -> validate -> inspect -> extract


def test_build_wraps_the_pdf_as_the_vnpt_library_does(built):
    (att,) = wire_attachments(built)
    assert att["name"] == PDF_NAME
    assert att["content_type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(att["bytes"])) as archive:
        (entry,) = archive.infolist()
        assert archive.read(entry) == PDF
    text = built.read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert SUBJECT in text
    # nothing left behind next to the output (the build writes to a temporary name first)
    assert sorted(p.name for p in built.parent.iterdir()) == [built.name]


def test_validate_accepts_the_built_document(built):
    result = cli("validate", built)
    assert result.code == 0, result
    assert str(built) in result.stdout
    assert "edoc valid" in result.stdout and "0 error(s)" in result.stdout


def test_inspect_shows_the_vietnamese_summary(built):
    result = cli("inspect", built)
    assert result.code == 0, result
    assert SUBJECT in result.stdout
    assert "15/UBND-VP" in result.stdout
    assert "UBND tỉnh Đắk Nông (000.00.00.H16)" in result.stdout
    assert "000.00.00.G22" in result.stdout and "000.00.00.H41" in result.stdout
    assert PDF_NAME in result.stdout and hashlib.sha256(PDF).hexdigest() in result.stdout


def test_inspect_json_gives_the_document_and_the_real_file_digest(built):
    result = cli("inspect", "--json", built)
    assert result.code == 0, result
    data = json.loads(result.stdout)
    assert data["kind"] == "edoc"
    assert data["document_id"] == DOCUMENT_ID
    assert data["from"]["organ_id"] == "000.00.00.H16"
    assert [t["organ_id"] for t in data["to"]] == ["000.00.00.G22", "000.00.00.H41"]
    assert data["subject"] == SUBJECT
    assert data["promulgation"] == {"place": "Gia Nghĩa", "date": "2024-05-20"}
    (att,) = data["attachments"]
    assert att["name"] == PDF_NAME
    assert att["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert att["size"] == len(PDF)
    assert att["content_type"] == "application/pdf"
    assert att["packaging"] == "zip"
    assert data["manifest"][0]["content_type"] == "application/zip"


def test_extract_unwraps_the_zip_and_writes_metadata(built, tmp_path):
    folder = tmp_path / "received"
    result = cli("extract", built, "-d", folder)
    assert result.code == 0, result
    assert sorted(p.name for p in folder.iterdir()) == sorted([PDF_NAME, "metadata.json"])
    assert (folder / PDF_NAME).read_bytes() == PDF
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["document_id"] == DOCUMENT_ID
    assert metadata["attachments"][0]["sha256"] == hashlib.sha256(PDF).hexdigest()
    for name in (PDF_NAME, "metadata.json"):
        assert str((folder / name).resolve()) in result.stdout


def test_extract_twice_never_overwrites(built, tmp_path):
    folder = tmp_path / "received"
    assert cli("extract", built, "-d", folder).code == 0
    (folder / PDF_NAME).write_bytes(b"the clerk's annotated copy")
    result = cli("extract", built, "-d", folder)
    assert result.code == 0, result
    assert (folder / PDF_NAME).read_bytes() == b"the clerk's annotated copy"
    copies = sorted(p.name for p in folder.iterdir() if p.name.endswith(".pdf"))
    assert len(copies) == 2
    assert [(folder / n).read_bytes() for n in copies if n != PDF_NAME] == [PDF]


def test_round_trip_through_json_rebuilds_the_same_document(built, tmp_path, pdf):
    """inspect --json output is valid build input: the rebuilt file says the same thing."""
    first = cli("inspect", "--json", built)
    again = write_json(tmp_path / "again.json", json.loads(first.stdout))
    rebuilt = tmp_path / "rebuilt.edxml"
    result = cli("build", "--json", again, "--attach", pdf, "-o", rebuilt)
    assert result.code == 0, result
    second = cli("inspect", "--json", rebuilt)
    assert json.loads(second.stdout) == json.loads(first.stdout)


def test_build_plain_packaging_sends_the_pdf_as_is(tmp_path, pdf):
    doc = write_json(tmp_path / "doc.json", edoc_json([]))
    out = tmp_path / "plain.edxml"
    result = cli("build", "--json", doc, "--attach", pdf, "--packaging", "plain", "-o", out)
    assert result.code == 0, result
    (att,) = wire_attachments(out)
    assert att == {"name": PDF_NAME, "content_type": "application/pdf", "bytes": PDF}
    assert cli("validate", out).code == 0
    data = json.loads(cli("inspect", "--json", out).stdout)
    assert data["attachments"][0]["packaging"] == "plain"
    assert data["attachments"][0]["sha256"] == hashlib.sha256(PDF).hexdigest()
    folder = tmp_path / "received"
    assert cli("extract", out, "-d", folder).code == 0
    assert (folder / PDF_NAME).read_bytes() == PDF


def test_build_zip_packaging_is_the_default_for_unlisted_files(tmp_path, pdf):
    doc = write_json(tmp_path / "doc.json", edoc_json([]))
    out = tmp_path / "zipped.edxml"
    assert cli("build", "--json", doc, "--attach", pdf, "-o", out).code == 0
    (att,) = wire_attachments(out)
    assert att["content_type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(att["bytes"])) as archive:
        assert [archive.read(i) for i in archive.infolist()] == [PDF]


# --------------------------------------------------------------------------- the status message


def test_status_message_build_validate_inspect(tmp_path):
    doc = write_json(tmp_path / "status.json", status_json())
    out = tmp_path / "status.edxml"
    result = cli("build", "--json", doc, "-o", out)
    assert result.code == 0, result
    assert "status" in result.stdout
    root = etree.parse(str(out)).getroot()
    assert root.findtext(f".//{{{NS}}}StatusCode") == "03"
    assert root.findtext(f".//{{{NS}}}Timestamp") == "2024/05/21 09:15:00"
    assert root.find(f".//{{{NS}}}AttachmentEncoded") is None
    result = cli("validate", out)
    assert result.code == 0, result
    assert "status valid" in result.stdout
    result = cli("inspect", out)
    assert result.code == 0, result
    assert "03" in result.stdout and "Đã tiếp nhận" in result.stdout and DOCUMENT_ID in result.stdout
    data = json.loads(cli("inspect", "--json", out).stdout)
    assert data["kind"] == "status"
    assert data["status_code"] == "03"
    assert data["description"] == "Đã tiếp nhận, vào sổ văn bản đến"
    assert data["response_for"][0]["document_id"] == DOCUMENT_ID
    assert data["timestamp"] == "2024-05-21T09:15:00+07:00"
    folder = tmp_path / "received"
    assert cli("extract", out, "-d", folder).code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json"]


def test_inspect_names_the_hub_status_999_and_still_reports_it(tmp_path):
    """The provincial hub records 999 ("Gui that bai") when it could not forward a document to
    the national axis: a clerk sees what it means, and validation still says it is not QCVN 102."""
    from connector.edxml.build import build
    from connector.edxml.samples import sample_edoc, sample_status

    status = sample_status(sample_edoc())
    status.status_code, status.description = "999", "Gui that bai"
    out = tmp_path / "hub-999.edxml"
    with out.open("wb") as fh:
        build(status, fh)
    result = cli("inspect", out)
    assert result.code == 1, result
    assert "999 Gửi thất bại (provincial hub: forwarding to the national axis failed)" in result.stdout
    assert "StatusCode '999' is not a QCVN 102:2016 status code" in result.stderr
    assert "the provincial hub's \"Gửi thất bại\"" in result.stderr
    unknown = tmp_path / "unknown.edxml"
    status.status_code = "77"
    with unknown.open("wb") as fh:
        build(status, fh)
    assert "77 (unknown code)" in cli("inspect", unknown).stdout


def test_status_message_refuses_attachments(tmp_path, pdf):
    doc = write_json(tmp_path / "status.json", status_json())
    out = tmp_path / "status.edxml"
    result = cli("build", "--json", doc, "--attach", pdf, "-o", out)
    assert result.code == 1, result
    assert str(doc) in result.stderr and "attachment" in result.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- invalid input: exit 1, named


def test_build_refuses_malformed_json_naming_the_file(tmp_path, pdf):
    doc = tmp_path / "broken.json"
    doc.write_text('{"schema_version": "1", "kind": "edoc",', encoding="utf-8")
    out = tmp_path / "never.edxml"
    result = cli("build", "--json", doc, "--attach", pdf, "-o", out)
    assert result.code == 1, result
    assert str(doc) in result.stderr and "JSON" in result.stderr
    assert not out.exists()


def test_build_refuses_json_that_breaks_the_schema_listing_every_problem(tmp_path):
    data = edoc_json([])
    del data["subject"]
    data["to"][0]["organ_id"] = 5
    doc = write_json(tmp_path / "incomplete.json", data)
    out = tmp_path / "never.edxml"
    result = cli("build", "--json", doc, "-o", out)
    assert result.code == 1, result
    assert str(doc) in result.stderr
    assert "subject" in result.stderr and "to[0].organ_id" in result.stderr
    assert not out.exists()
    assert list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".never*")) == []


def test_build_refuses_a_listed_attachment_without_its_file(tmp_path):
    doc = write_json(tmp_path / "doc.json", edoc_json([listed_pdf()]))
    out = tmp_path / "never.edxml"
    result = cli("build", "--json", doc, "-o", out)
    assert result.code == 1, result
    assert PDF_NAME in result.stderr and str(doc) in result.stderr
    assert not out.exists()


def test_build_refuses_a_file_whose_digest_differs_from_the_json(tmp_path, pdf):
    doc = write_json(tmp_path / "doc.json", edoc_json([listed_pdf(sha256="0" * 64)]))
    out = tmp_path / "never.edxml"
    result = cli("build", "--json", doc, "--attach", pdf, "-o", out)
    assert result.code == 1, result
    assert PDF_NAME in result.stderr and "SHA-256" in result.stderr
    assert not out.exists()


def test_build_refuses_to_send_a_file_with_an_unsafe_name(tmp_path):
    doc = write_json(tmp_path / "doc.json", edoc_json([]))
    device = tmp_path / "CON.pdf"
    device.write_bytes(PDF)
    out = tmp_path / "never.edxml"
    result = cli("build", "--json", doc, "--attach", device, "-o", out)
    assert result.code == 1, result
    assert "CON.pdf" in result.stderr
    assert not out.exists()


def test_build_with_a_missing_attach_file_is_a_usage_error(tmp_path):
    doc = write_json(tmp_path / "doc.json", edoc_json([]))
    out = tmp_path / "never.edxml"
    missing = tmp_path / "khong-co.pdf"
    result = cli("build", "--json", doc, "--attach", missing, "-o", out)
    assert result.code == 2, result
    assert "khong-co.pdf" in result.stderr and "does not exist" in result.stderr
    assert not out.exists()


def test_validate_json_reports_each_file(built, tmp_path):
    broken = tmp_path / "cut.edxml"
    data = built.read_bytes()
    broken.write_bytes(data[: data.index(b"</edXML:edXMLEnvelope>")])
    nonsense = tmp_path / "not-edxml.edxml"
    nonsense.write_text("<html><body>404</body></html>", encoding="utf-8")
    result = cli("validate", "--json", built, broken, nonsense)
    assert result.code == 1, result
    results = json.loads(result.stdout)
    assert [r["file"] for r in results] == [str(built), str(broken), str(nonsense)]
    assert [r["valid"] for r in results] == [True, False, False]
    assert results[0]["kind"] == "edoc" and results[0]["errors"] == 0
    for bad in results[1:]:
        assert bad["errors"] >= 1 and bad["problems"]
        assert all(p["severity"] in ("error", "warning") for p in bad["problems"])
    assert results[1]["problems"][0]["line"] is not None
    assert "edXML" in results[2]["problems"][0]["message"]


def test_validate_json_all_good_exits_zero(built, tmp_path):
    other = tmp_path / "copy.edxml"
    other.write_bytes(built.read_bytes())
    result = cli("validate", "--json", built, other)
    assert result.code == 0, result
    assert [r["valid"] for r in json.loads(result.stdout)] == [True, True]


def test_validate_text_names_file_line_and_path_of_each_problem(built, tmp_path):
    bad = tmp_path / "bad-date.edxml"
    text = built.read_text(encoding="utf-8")
    text = text.replace("<edXML:PromulgationDate>2024/05/20<", "<edXML:PromulgationDate>2024/13/45<", 1)
    bad.write_text(text, encoding="utf-8")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "2024/13/45" in t)
    result = cli("validate", bad)
    assert result.code == 1, result
    assert f"{bad}: edoc INVALID" in result.stdout
    assert re.search(rf"error: line {line} \S*PromulgationDate", result.stdout), result


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "--frobnicate", "x.edxml"],
        ["frobnicate"],
        ["validate"],
        ["build", "-o", "x.edxml"],
        ["build", "--json", "doc.json", "--packaging", "rar", "-o", "x.edxml"],
        ["extract", "x.edxml"],
    ],
)
def test_usage_errors_exit_2(args, tmp_path):
    (tmp_path / "doc.json").write_text(json.dumps(edoc_json([])), encoding="utf-8")
    (tmp_path / "x.edxml").write_text("<edXML/>", encoding="utf-8")
    result = cli(*args, cwd=tmp_path)
    assert result.code == 2, result
    assert "Usage" in result.stderr


def test_validate_missing_file_is_a_usage_error(tmp_path):
    result = cli("validate", tmp_path / "khong-ton-tai.edxml")
    assert result.code == 2, result
    assert "khong-ton-tai.edxml" in result.stderr


def test_inspect_of_an_unreadable_document_exits_1_naming_it(tmp_path):
    bad = tmp_path / "empty.edxml"
    bad.write_bytes(b"")
    for args in (["inspect", bad], ["inspect", "--json", bad], ["extract", bad, "-d", tmp_path / "out"]):
        result = cli(*args)
        assert result.code == 1, result
        assert str(bad) in result.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_the_commands():
    result = cli("--help")
    assert result.code == 0
    for command in ("validate", "inspect", "build", "extract"):
        assert command in result.stdout



# --------------------------------------------------------------------------- audit fixes


def _edited(built: Path, tmp_path: Path, name: str, edit) -> Path:
    path = tmp_path / name
    path.write_text(edit(built.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in text)


def test_a_name_too_long_after_nfc_is_refused_before_anything_is_written(built, tmp_path):
    """U+0958 is 3 bytes in UTF-8, 6 after NFC: the name fits as sent, not as it would be saved."""
    long_name = "\u0958" * 83 + ".pdf"
    doc = _edited(built, tmp_path, "long.edxml", lambda s: s.replace(f">{PDF_NAME}<", f">{long_name}<"))
    result = cli("validate", doc)
    assert result.code == 1, result
    assert "502 bytes" in result.stdout and "NFC" in result.stdout
    folder = tmp_path / "received"
    result = cli("extract", doc, "-d", folder)
    assert result.code == 1, result
    assert "not extracted" in result.stderr and "502 bytes" in result.stderr
    assert not folder.exists()


def test_an_attachment_named_metadata_json_does_not_take_the_metadata_name(built, tmp_path):
    doc = _edited(built, tmp_path, "meta.edxml", lambda s: s.replace(f">{PDF_NAME}<", ">metadata.json<"))
    result = cli("validate", doc)
    assert result.code == 0, result
    assert "warning" in result.stdout and "metadata (2).json" in result.stdout
    folder = tmp_path / "received"
    result = cli("extract", doc, "-d", folder)
    assert result.code == 0, result
    assert sorted(p.name for p in folder.iterdir()) == ["metadata (2).json", "metadata.json"]
    assert (folder / "metadata (2).json").read_bytes() == PDF
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["document_id"] == DOCUMENT_ID
    assert metadata["attachments"][0]["name"] == "metadata.json"
    assert metadata["saved_as"] == [{"content_id": "cv15", "name": "metadata.json", "file": "metadata (2).json"}]


def test_an_attachment_without_content_is_invalid_naming_it_and_its_line(built, tmp_path):
    doc = _edited(built, tmp_path, "nocte.edxml", lambda s: re.sub(
        r"<edXML:ContentTransferEncoded.*?</edXML:ContentTransferEncoded>", "", s, flags=re.S))
    line = _line_of(doc, "<Attachment>")
    result = cli("validate", doc)
    assert result.code == 1, result
    assert re.search(rf"error: line {line} /edXML/AttachmentEncoded/Attachment: Attachment '{re.escape(PDF_NAME)}' "
                     r"has no ContentTransferEncoded", result.stdout), result
    folder = tmp_path / "received"
    result = cli("extract", doc, "-d", folder)
    assert result.code == 1, result
    assert f"line {line}" in result.stderr and PDF_NAME in result.stderr
    assert not folder.exists()
    result = cli("inspect", doc)
    assert result.code == 1, result
    assert "no content" in result.stdout and "None bytes" not in result.stdout


@pytest.mark.parametrize("args", [
    ["build", "--json", "doc.json", "-o", ""],
    ["build", "--json", "doc.json", "--output", ""],
    ["extract", "x.edxml", "-d", ""],
    ["extract", "x.edxml", "--dir", ""],
])
def test_an_empty_path_option_is_a_usage_error_naming_it(args, tmp_path, built):
    (tmp_path / "doc.json").write_text(json.dumps(edoc_json([])), encoding="utf-8")
    (tmp_path / "x.edxml").write_bytes(built.read_bytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli(*args, cwd=tmp_path)
    assert result.code == 2, result
    option = "'-o' / '--output'" if args[0] == "build" else "'-d' / '--dir'"
    assert option in result.stderr and "empty path" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_build_writes_an_output_name_of_255_bytes(tmp_path, pdf):
    doc = write_json(tmp_path / "doc.json", edoc_json([]))
    out = tmp_path / "out" / ("v" * 249 + ".edxml")
    assert len(out.name.encode()) == 255
    result = cli("build", "--json", doc, "--attach", pdf, "-o", out)
    assert result.code == 0, result
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    assert cli("validate", out).code == 0


def test_build_refuses_json_nested_too_deeply_naming_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    out = tmp_path / "never.edxml"
    result = cli("build", "--json", deep, "-o", out)
    assert result.code == 1, result
    assert str(deep) in result.stderr and "nests too deeply" in result.stderr
    assert not out.exists()


def _zip_bytes(*entries: tuple[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("content", [
    b"%PDF-1.4 sent raw, not zipped",
    _zip_bytes(("a.pdf", b"%PDF a"), ("b.pdf", b"%PDF b")),
    _zip_bytes(),
    _zip_bytes(("thu-muc/", b"")),
], ids=["random-bytes", "two-entries", "empty-zip", "folder-only"])
def test_content_declared_zip_that_is_no_one_entry_zip_is_kept_with_a_warning(built, tmp_path, content):
    encoded = base64.b64encode(content).decode("ascii")
    doc = _edited(built, tmp_path, "odd-zip.edxml", lambda s: re.sub(
        r"(<edXML:ContentTransferEncoded[^>]*>).*?(</edXML:ContentTransferEncoded>)",
        lambda m: m.group(1) + encoded + m.group(2), s, flags=re.S))
    line = _line_of(doc, "<edXML:ContentTransferEncoded")
    expected = (f"attachment '{PDF_NAME}' is declared application/zip but is not a one-entry ZIP: kept as sent")
    result = cli("validate", doc)
    assert result.code == 0, result
    assert f"warning: line {line} /edXML/AttachmentEncoded/Attachment/ContentTransferEncoded: {expected}" in result.stdout
    folder = tmp_path / "received"
    result = cli("extract", doc, "-d", folder)
    assert result.code == 0, result
    assert expected in result.stderr
    assert (folder / PDF_NAME).read_bytes() == content


def test_build_errors_name_the_json_key_not_a_line_of_the_unwritten_output(tmp_path):
    data = edoc_json([])
    data["other_info"]["priority"] = 9
    data["to"][1]["organ_id"] = "000.00.00.H41"
    doc = write_json(tmp_path / "doc.json", data)
    out = tmp_path / "never.edxml"
    result = cli("build", "--json", doc, "-o", out)
    assert result.code == 1, result
    assert "other_info.priority: error: Priority '9'" in result.stderr
    assert str(out) not in result.out and "line " not in result.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]
    data["other_info"]["priority"] = 1
    data["subject"] = "x" * ((1 << 20) + 1)
    result = cli("build", "--json", write_json(doc, data), "-o", out)
    assert result.code == 1, result
    assert "cannot build: subject: error: text content longer than" in result.stderr
    assert str(out) not in result.out and "line " not in result.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


def test_a_failed_build_removes_the_folders_it_created_for_the_output(tmp_path):
    data = edoc_json([])
    data["other_info"]["priority"] = 9  # a validation error of the built document
    doc = write_json(tmp_path / "doc.json", data)
    (tmp_path / "kept").mkdir()
    result = cli("build", "--json", doc, "-o", tmp_path / "kept" / "new" / "deeper" / "out.edxml")
    assert result.code == 1, result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json", "kept"]
    assert list((tmp_path / "kept").iterdir()) == []  # the folder that was there stays, emptied of nothing
    data["other_info"]["priority"] = 1
    result = cli("build", "--json", write_json(doc, data), "-o", tmp_path / "kept" / "new" / "out.edxml")
    assert result.code == 0, result
    assert (tmp_path / "kept" / "new" / "out.edxml").is_file()
