"""Real edXML files from Vietnamese integrators (``../shared/fixtures/real-world/``).

Every well-formed file parses, validates without errors, and gives the values written in it
(checked field by field below, from reading the files); the VNPT zip packaging is unwrapped,
and the expected size and SHA-256 of each attachment are computed here independently (base64
+ zipfile over the raw bytes), not by the code under test. The two broken files are refused
with their line and cause. Every well-formed file survives parse -> build -> parse unchanged,
and the builder's output is exclusive-C14N after the XML declaration.

Skipped where the fixtures are absent (a user's machine); in CI a skip is a failure.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import subprocess
import sys
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from lxml import etree

from connector.edxml.build import DECLARATION, to_bytes
from connector.edxml.errors import EdxmlError
from connector.edxml.model import VN_TZ, Edoc, Status
from connector.edxml.parse import parse
from tests.conftest import real_world_dir

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli.py"

DOC_NAME = "1896_QD-TTg_m_294779.doc"
VPCP_DOC_ID = "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
SUBJECT = "V/v kết nối, liên thông phần mềm quản lý văn bản"
VPCP_TO = ["000.00.00.H41", "000.00.00.H14", "000.00.00.G17"]


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=VN_TZ)


# --------------------------------------------------------------------------- what each file says

# Documents: values read from the files by eye. "business" is (type, reason, document id).
EDOCS: dict[str, dict] = {
    "bkav__edoc_new.edxml": dict(
        document_id="000.00.11.H53,2020/10/30,2491/STC-BCTC",
        from_="000.00.11.H53",
        from_name="Sở Tính",
        to=["000.00.01.A53"],
        code=("2491", "STC-BCTC"),
        place="Tây Ninh",
        date=date(2020, 10, 30),  # written 30/10/2020 (dd/MM/yyyy) by Bkav
        type_name="Công văn",
        subject="Báo cáo tài chính tỉnh",
        business=(0, "Văn bản điện tử mới", "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT"),
        traces=[("000.00.00.G22", ts(2018, 9, 28, 0, 0, 0))],
        steering=1,
    ),
    "bkav__edoc_update.edxml": dict(
        document_id=VPCP_DOC_ID,
        from_="000.00.00.G22",
        from_name="Văn phòng Chính phủ",
        to=["000.00.00.H53", "000.00.12.H53", "000.00.00.G17"],
        code=("7816", "VPCP-TTĐT"),
        place="Hà Nội",
        date=date(2018, 9, 28),
        type_name="Công văn",
        subject=SUBJECT,
        business=(2, "Cập nhật văn bản điện tử", "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT"),
        traces=[("000.00.00.G22", ts(2018, 9, 28, 0, 0, 0))],
        steering=1,
    ),
    "tltvbqn__edoc_new.edxml": dict(
        document_id=VPCP_DOC_ID,
        from_="000.00.00.K19",
        from_name="Văn phòng Chính phủ",
        to=["000.00.50.H19"],
        code=("781622e22", "VPCP-TTĐT"),
        place="Hà Nội",
        date=date(2018, 10, 19),
        type_name="Công văn",
        subject=SUBJECT,
        business=(0, "Văn bản điện tử mới", "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT"),
        traces=[("000.00.00.G22", ts(2018, 9, 28, 0, 0, 0))],
        steering=1,
    ),
    "tltvbqn__edoc_replacement.edxml": dict(
        document_id=VPCP_DOC_ID,
        from_="000.00.00.G22",
        from_name="Văn phòng Chính phủ",
        to=VPCP_TO,
        code=("7816", "VPCP-TTĐT"),
        place="Hà Nội",
        date=date(2018, 9, 28),
        type_name="Công văn",
        subject=SUBJECT,
        business=(3, "Văn bản thay thế", None),
        traces=[("000.00.00.G22", ts(2018, 9, 28, 0, 0, 0))],
        steering=1,
    ),
    "tltvbqn__edoc_revocation.edxml": dict(
        document_id=VPCP_DOC_ID,
        from_="000.00.00.G22",
        from_name="Văn phòng Chính phủ",
        to=VPCP_TO,
        code=("7816", "VPCP-TTĐT"),
        place="Hà Nội",
        date=date(2018, 9, 28),
        type_name="Công văn",
        subject=SUBJECT,
        business=(1, "Thu hồi văn bản điện tử", None),
        traces=[("000.00.00.G22", ts(2018, 9, 28, 0, 0, 0))],
        steering=1,
    ),
    "tltvbqn__edoc_update.edxml": dict(
        document_id=VPCP_DOC_ID,
        from_="000.00.00.G22",
        from_name="Văn phòng Chính phủ",
        to=VPCP_TO,
        code=("7816", "VPCP-TTĐT"),
        place="Hà Nội",
        date=date(2018, 9, 28),
        type_name="Công văn",
        subject=SUBJECT,
        business=(2, "Cập nhật văn bản điện tử", "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT"),
        traces=[("000.00.00.G22", ts(2018, 9, 28, 0, 0, 0))],
        steering=1,
    ),
    "truclienthong__edoc_new.edxml": dict(
        document_id=VPCP_DOC_ID,
        from_="000.00.00.A80",
        from_name="UBND xã Hòa Tiến - UBND huyện Hòa Vang - Thành phố Đà Nẵng",
        to=["28.22.H17"],
        code=("74fass22", "VPCP-TTĐT"),
        place="Hà Nội",
        date=date(2019, 1, 16),
        type_name="Công văn",
        subject=SUBJECT,
        business=(0, "Văn bản điện tử mới", "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT"),
        traces=[("000.00.00.G22", ts(2018, 9, 28, 0, 0, 0))],
        steering=1,
    ),
    "truclienthong__sdk-output-dc0bdef0-c7a3-4aaf-b717-777303442973.edxml": dict(
        document_id=VPCP_DOC_ID,
        from_="000.00.00.G22",
        from_name="Văn phòng Chính phủ",
        to=VPCP_TO,
        code=("7816", "VPCP-TTĐT"),
        place="Hà Nội",
        date=date(2019, 4, 11),
        type_name="Công văn",
        subject=SUBJECT,
        business=(0, "Văn bản điện tử mới", "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT"),
        traces=[("000.00.00.G22", ts(2019, 4, 11, 0, 0, 0))],
        steering=1,
    ),
}

# Status messages: (StatusCode, Description, From, ResponseFor promulgation date, Timestamp, Staff)
_NGHE_AN_STAFF = "Nguyen thi ngoc tram"
STATUSES: dict[str, tuple] = {
    "tltvbqn__status.edxml": (
        "01",
        "Văn thư - Phòng Văn thư - Lưu trữ: Đã đến - Phần mềm QLVB đã nhận nhưng văn thư chưa xử lý",
        "000.00.00.H41",
        date(2018, 9, 28),
        ts(2018, 9, 28, 17, 25, 11),
        "Nguyễn Thị Ngọc Trâm",
    ),
    "tltvbqn__status_inbox_01.edxml": (
        "01",
        "Văn thư - Phòng Văn thư - Lưu trữ: Đã đến - Phần mềm QLVB đã nhận nhưng văn thư chưa xử lý",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "tltvbqn__status_rejection_02.edxml": (
        "02",
        "Văn thư - Phòng Văn thư - Lưu trữ: Từ chối không tiếp nhận văn bản điện tử",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "tltvbqn__status_acceptance_03.edxml": (
        "03",
        "Văn thư cơ - Phòng Văn thư - Lưu trữ: Tiếp nhận văn bản điện tử, vào sổ văn bản đến của đơn vị",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "tltvbqn__status_assignment_04.edxml": (
        "04",
        "Lãnh đạo: Phân công xử lý",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "tltvbqn__status_processing_05.edxml": (
        "05",
        "Đang xử lý văn bản đến",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "bkav__status_processing_05.edxml": (
        "05",
        "Đang xử lý văn bản đến",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "tltvbqn__status_finish_06.edxml": (
        "06",
        "Văn thư: Ban hành văn bản đến, hoàn thành xử lý",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "tltvbqn__status_cancellation_13.edxml": (
        "13",
        "Văn thư yêu cầu lấy lại văn bản điện tử kèm lý do",
        "000.00.00.G22",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "tltvbqn__status_change-acceptance_15.edxml": (
        "15",
        "Văn thư đồng ý yêu cầu cập nhật, lấy lại",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
    "tltvbqn__status_change-rejection_16.edxml": (
        "16",
        "Văn thư từ chối yêu cầu cập nhật, lấy lại",
        "000.00.00.H41",
        date(2015, 9, 30),
        ts(2015, 9, 20, 11, 8, 36),
        _NGHE_AN_STAFF,
    ),
}

# The two broken files: (line of the error, words the message must contain)
BROKEN: dict[str, tuple[int, tuple[str, ...]]] = {
    "tltvbqn__edoc.edxml": (117, ("xlink", "prefix")),
    "truclienthong__edoc.edxml": (74, ("From", "line 7")),
}

WELL_FORMED = sorted(EDOCS) + sorted(STATUSES)


def fixture(name: str) -> Path:
    path = real_world_dir() / name
    assert path.is_file(), f"fixture {name} is missing from {real_world_dir()}"
    return path


def unwrapped_by_hand(path: Path) -> list[bytes]:
    """Each attachment's file as the VNPT library delivers it, computed without our code:
    base64 of ContentTransferEncoded, then the single entry of the ZIP when it is one."""
    result = []
    raw = path.read_bytes()
    for match in re.finditer(rb"<edXML:ContentTransferEncoded[^>]*>([^<]*)</edXML:ContentTransferEncoded>", raw):
        data = base64.b64decode(match.group(1), validate=True)
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                (entry,) = archive.infolist()
                data = archive.read(entry)
        result.append(data)
    return result


def run_cli(*args: object) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, str(CLI), *map(str, args)], cwd=ROOT, capture_output=True, timeout=180)
    return proc.returncode, proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")


# --------------------------------------------------------------------------- the set of files


def test_every_fixture_is_covered():
    names = sorted(p.name for p in real_world_dir().glob("*.edxml"))
    assert names == sorted(WELL_FORMED + list(BROKEN)), "a fixture was added or removed: give it expectations"


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("name", sorted(EDOCS))
def test_edoc_parses_validates_and_says_what_the_file_says(name):
    want = EDOCS[name]
    with parse(fixture(name)) as parsed:
        assert parsed.report.errors == [], [str(p) for p in parsed.report.errors]
        doc = parsed.message
        assert isinstance(doc, Edoc)
        assert doc.document_id == want["document_id"]
        assert doc.from_.organ_id == want["from_"]
        assert doc.from_.organ_name == want["from_name"]
        assert [t.organ_id for t in doc.to] == want["to"]
        assert (doc.code.number, doc.code.notation) == want["code"]
        assert doc.promulgation.place == want["place"]
        assert doc.promulgation.date == want["date"]
        assert doc.document_type.type == "1"
        assert doc.document_type.type_name == want["type_name"]
        assert doc.subject == want["subject"]
        assert doc.steering_type == want["steering"]
        assert [(t.organ_id, t.timestamp) for t in doc.trace_headers] == want["traces"]
        assert doc.business is not None
        assert (doc.business.business_doc_type, doc.business.business_doc_reason, doc.business.document_id) == want[
            "business"
        ]
        assert doc.business.staff_info is not None and doc.business.staff_info.staff == "Nguyễn Thị Ngọc Trâm"

        # One attachment, the VNPT way: a .doc zipped, unwrapped on receipt.
        (att,) = doc.attachments
        (expected,) = unwrapped_by_hand(fixture(name))
        assert att.content_id == "209"
        assert att.name == DOC_NAME
        assert att.packaging == "zip"
        assert att.content_type == "application/msword"
        assert att.size == len(expected)
        assert att.sha256 == hashlib.sha256(expected).hexdigest()
        with att.data.open() as fh:
            assert fh.read() == expected
        (ref,) = doc.manifest
        assert (ref.content_id, ref.attachment_name, ref.content_type) == ("209", DOC_NAME, "application/zip")


def test_unwrapped_sizes_are_the_files_inside():
    """The .doc in the VNPT samples is really another edXML file; its size shows it."""
    (big,) = unwrapped_by_hand(fixture("tltvbqn__edoc_new.edxml"))
    (small,) = unwrapped_by_hand(fixture("truclienthong__sdk-output-dc0bdef0-c7a3-4aaf-b717-777303442973.edxml"))
    assert len(big) == 388347 and big.startswith(b"<?xml")
    assert len(small) == 8381 and small.startswith(b"<?xml")
    with parse(fixture("tltvbqn__edoc_new.edxml")) as parsed:
        assert parsed.message.attachments[0].size == 388347


def test_update_names_its_receivers():
    for name in ("tltvbqn__edoc_update.edxml", "bkav__edoc_update.edxml"):
        with parse(fixture(name)) as parsed:
            info = parsed.message.business.business_document_info
            assert info is not None, name
            assert (info.document_info, info.document_receiver) == (1, 1)
            assert [(r.organ_id, r.receiver_type) for r in info.receivers] == [
                ("000.00.00.H41", 0),
                ("000.00.00.H14", 1),
            ]
            assert parsed.message.business.replacement_info == []


def test_replacement_names_what_it_replaces_and_for_whom():
    with parse(fixture("tltvbqn__edoc_replacement.edxml")) as parsed:
        business = parsed.message.business
        assert business.business_document_info is None
        assert [(r.document_id, r.organ_ids) for r in business.replacement_info] == [
            ("000.00.00.G22,2014/01/30,7806/VPCP-TTĐT", ["000.00.00.H41", "000.00.00.H14"]),
            ("000.00.00.G22,2014/01/30,7806/VPCP-TTĐT", ["000.00.00.H41", "000.00.00.H14"]),
        ]


def test_revocation_answers_the_revoked_document():
    with parse(fixture("tltvbqn__edoc_revocation.edxml")) as parsed:
        (response,) = parsed.message.response_for
        assert response.organ_id == "000.00.00.H14"
        assert response.code == "267/VPCP-TTĐT"
        assert response.document_id == "000.00.04.G14,2012/08/06,267/VPCP-TTĐT"
        assert response.promulgation_date == date(2018, 9, 28)
    for name in ("tltvbqn__edoc_new.edxml", "tltvbqn__edoc_update.edxml", "tltvbqn__edoc_replacement.edxml"):
        with parse(fixture(name)) as parsed:
            assert parsed.message.response_for == [], name


def test_bkav_day_first_date_is_read_and_warned_about():
    with parse(fixture("bkav__edoc_new.edxml")) as parsed:
        assert parsed.message.promulgation.date == date(2020, 10, 30)
        warnings = [p for p in parsed.report.warnings if p.line == 33]
        assert warnings and "30/10/2020" in warnings[0].message


# --------------------------------------------------------------------------- status messages


@pytest.mark.parametrize("name", sorted(STATUSES))
def test_status_parses_validates_and_says_what_the_file_says(name):
    code, description, sender, answered_date, timestamp, staff = STATUSES[name]
    with parse(fixture(name)) as parsed:
        assert parsed.report.errors == [], [str(p) for p in parsed.report.errors]
        status = parsed.message
        assert isinstance(status, Status)
        assert status.status_code == code
        assert status.description == description
        assert status.from_.organ_id == sender
        assert status.timestamp == timestamp
        assert status.staff_info is not None and status.staff_info.staff == staff
        (response,) = status.response_for
        assert response.document_id == VPCP_DOC_ID
        assert response.code == "7816/VPCP-TTĐT"
        assert response.promulgation_date == answered_date
        assert response.organ_id == ("000.00.00.H41" if code == "13" else "000.00.00.G22")


# --------------------------------------------------------------------------- the broken ones


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_is_refused_with_line_and_cause(name):
    line, words = BROKEN[name]
    path = fixture(name)
    with pytest.raises(EdxmlError) as caught:
        parse(path)
    problem = caught.value.problems[0]
    assert problem.line == line, str(problem)
    assert problem.severity == "error"
    assert problem.source == str(path)
    for word in words:
        assert word in problem.message, str(problem)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_file_is_refused_by_the_cli(name, tmp_path):
    line, words = BROKEN[name]
    path = fixture(name)
    for args in (["validate", path], ["inspect", path], ["extract", path, "-d", tmp_path / "out"]):
        code, out = run_cli(*args)
        assert code == 1, out
        assert "Traceback" not in out
        assert str(path) in out and f"line {line}" in out, out
        for word in words:
            assert word in out, out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", WELL_FORMED)
def test_cli_validates_and_extracts_every_good_file(name, tmp_path):
    path = fixture(name)
    code, out = run_cli("validate", path)
    assert code == 0, out
    assert f"{path}: {'edoc' if name in EDOCS else 'status'} valid" in out
    if name in EDOCS:
        code, out = run_cli("extract", path, "-d", tmp_path)
        assert code == 0, out
        (expected,) = unwrapped_by_hand(path)
        assert (tmp_path / DOC_NAME).read_bytes() == expected


# --------------------------------------------------------------------------- round trip and canonical form


@pytest.mark.parametrize("name", WELL_FORMED)
def test_parse_build_parse_gives_the_same_message(name):
    with parse(fixture(name)) as first:
        built = to_bytes(first.message)
        with parse(built) as second:
            assert second.report.errors == [], [str(p) for p in second.report.errors]
            assert second.message == first.message
            if isinstance(first.message, Edoc):
                for a, b in zip(first.message.attachments, second.message.attachments, strict=True):
                    with a.data.open() as fa, b.data.open() as fb:
                        assert fa.read() == fb.read()


@pytest.mark.parametrize("name", WELL_FORMED)
def test_built_bytes_are_exclusive_c14n(name):
    with parse(fixture(name)) as parsed:
        built = to_bytes(parsed.message)
    assert built.startswith(DECLARATION)
    canonical = etree.tostring(etree.fromstring(built), method="c14n", exclusive=True)
    assert built[len(DECLARATION) :] == canonical
