"""Tests for connector.edxml.validate: real producers' files pass, each fault is named precisely.

Negative inputs are small inline samples shaped like the VNPT builder's output; each test edits
one thing and asserts the code, severity, path and line of the problem it causes. Lines are
found by searching the sample text, so editing a sample cannot silently shift an assertion.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from connector.edxml.errors import Problem
from connector.edxml.names import unsafe_reason
from connector.edxml.validate import check_attachment_name, validate_file, validate_tree

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "real-world"

# Not well-formed: rejected by the parser before validation (see SOURCES.md), with this line.
MALFORMED = {
    "tltvbqn__edoc.edxml": 117,  # xlink: prefix used on Reference without a declaration
    "truclienthong__edoc.edxml": 74,  # a From element opened twice
}

HEADER = "/edXML/edXMLEnvelope/edXMLHeader"
MH = f"{HEADER}/MessageHeader"

EDOC = """<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From>
          <edXML:OrganId>000.00.00.G22</edXML:OrganId>
          <edXML:OrganName>Văn phòng Chính phủ</edXML:OrganName>
          <edXML:Website/>
        </edXML:From>
        <edXML:To>
          <edXML:OrganId>000.00.00.H41</edXML:OrganId>
          <edXML:OrganName>UBND Tỉnh Nghệ An</edXML:OrganName>
        </edXML:To>
        <edXML:To>
          <edXML:OrganId>000.00.00.H14</edXML:OrganId>
        </edXML:To>
        <edXML:DocumentId>000.00.00.G22,2015/09/30,7816/VPCP-TTĐT</edXML:DocumentId>
        <edXML:Code>
          <edXML:CodeNumber>7816</edXML:CodeNumber>
          <edXML:CodeNotation>VPCP-TTĐT</edXML:CodeNotation>
        </edXML:Code>
        <edXML:PromulgationInfo>
          <edXML:Place>Hà Nội</edXML:Place>
          <edXML:PromulgationDate>2018/09/28</edXML:PromulgationDate>
        </edXML:PromulgationInfo>
        <edXML:Subject>V/v kết nối, liên thông phần mềm quản lý văn bản</edXML:Subject>
        <edXML:DueDate></edXML:DueDate>
        <edXML:OtherInfo>
          <edXML:Priority>0</edXML:Priority>
          <edXML:PromulgationAmount>2</edXML:PromulgationAmount>
          <edXML:PageAmount>22</edXML:PageAmount>
          <edXML:Direction>false</edXML:Direction>
        </edXML:OtherInfo>
        <edXML:SteeringType>1</edXML:SteeringType>
      </edXML:MessageHeader>
      <edXML:TraceHeaderList>
        <edXML:TraceHeader>
          <edXML:OrganId>000.00.00.G22</edXML:OrganId>
          <edXML:Timestamp>2018/09/28 08:30:00</edXML:Timestamp>
        </edXML:TraceHeader>
        <edXML:Bussiness>
          <edXML:BussinessDocType>0</edXML:BussinessDocType>
          <edXML:Paper>0</edXML:Paper>
        </edXML:Bussiness>
      </edXML:TraceHeaderList>
      <Signature>
        <SignedInfo><Reference URI=""><DigestValue>AAAA</DigestValue></Reference></SignedInfo>
        <SignatureValue>AAAA</SignatureValue>
      </Signature>
    </edXML:edXMLHeader>
    <edXML:edXMLBody>
      <edXML:edXMLManifest version="1.0">
        <edXML:Reference>
          <edXML:ContentId>cid:1</edXML:ContentId>
          <edXML:ContentType>application/pdf</edXML:ContentType>
          <edXML:AttachmentName>cong-van.pdf</edXML:AttachmentName>
        </edXML:Reference>
        <edXML:Reference>
          <edXML:ContentId>cid:2</edXML:ContentId>
          <edXML:AttachmentName>phu-luc.docx</edXML:AttachmentName>
        </edXML:Reference>
      </edXML:edXMLManifest>
    </edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <AttachmentEncoded>
    <Attachment>
      <ContentId>cid:1</ContentId>
      <AttachmentName>cong-van.pdf</AttachmentName>
      <ContentType>application/pdf</ContentType>
      <ContentTransferEncoded></ContentTransferEncoded>
    </Attachment>
    <Attachment>
      <ContentId>2</ContentId>
      <AttachmentName>phu-luc.docx</AttachmentName>
      <ContentTransferEncoded>UEsDBA==</ContentTransferEncoded>
    </Attachment>
  </AttachmentEncoded>
</edXML>
"""

STATUS = """<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From>
          <edXML:OrganId>000.00.00.H41</edXML:OrganId>
        </edXML:From>
        <edXML:ResponseFor>
          <edXML:OrganId>000.00.00.G22</edXML:OrganId>
          <edXML:Code>7816/VPCP-TTĐT</edXML:Code>
          <edXML:PromulgationDate>2015/09/30</edXML:PromulgationDate>
          <edXML:DocumentId>000.00.00.G22,2015/09/30,7816/VPCP-TTĐT</edXML:DocumentId>
        </edXML:ResponseFor>
        <edXML:StaffInfo>
          <edXML:Department>Phong hanh chinh</edXML:Department>
        </edXML:StaffInfo>
        <edXML:StatusCode>03</edXML:StatusCode>
        <edXML:Description>Đã tiếp nhận</edXML:Description>
        <edXML:Timestamp>2015/09/20 11:08:36</edXML:Timestamp>
      </edXML:MessageHeader>
    </edXML:edXMLHeader>
  </edXML:edXMLEnvelope>
</edXML>
"""


# --------------------------------------------------------------------------- helpers


def check(xml: str) -> list[Problem]:
    return validate_tree(etree.fromstring(xml.encode("utf-8")))


def edit(xml: str, old: str, new: str) -> str:
    """Replace a piece of the sample that must occur exactly once (so no edit is a no-op)."""
    assert xml.count(old) == 1, f"{old!r} occurs {xml.count(old)} times"
    return xml.replace(old, new)


def line_of(xml: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth occurrence of needle."""
    at = -1
    for _ in range(nth):
        at = xml.index(needle, at + 1)
    return xml.count("\n", 0, at) + 1


def only(problems: list[Problem], code: str) -> Problem:
    """The one problem with this code (fails, listing all problems, if there are 0 or several)."""
    found = [p for p in problems if p.code == code]
    assert len(found) == 1, f"expected one {code!r} problem, got: {[str(p) for p in problems]}"
    return found[0]


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def assert_problem(problem: Problem, severity: str, path: str, line: int) -> None:
    assert (problem.severity, problem.path, problem.line) == (severity, path, line), str(problem)


# --------------------------------------------------------------------------- real producers' files


def _fixture_params() -> list:
    if not FIXTURES.is_dir():
        return [pytest.param(None, id="fixtures-missing")]
    files = sorted(FIXTURES.glob("*.edxml"))
    return [pytest.param(f, id=f.name) for f in files] or [pytest.param(None, id="fixtures-empty")]


def _need_fixture(path: Path | None) -> Path:
    if path is None:
        message = f"real-world fixtures not found (or empty) at {FIXTURES}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.mark.parametrize("path", _fixture_params())
def test_real_fixture_validates_without_errors(path: Path | None) -> None:
    path = _need_fixture(path)
    problems = validate_file(path)
    if path.name in MALFORMED:
        # Not well-formed: rejected by the parser with one precise error, nothing else.
        assert [(p.code, p.severity, p.line) for p in problems] == [("not-well-formed", "error", MALFORMED[path.name])]
        assert problems[0].source == str(path)
        return
    assert errors(problems) == [], "\n".join(map(str, problems))


def test_missing_fixtures_fail_in_ci_and_skip_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _need_fixture(None)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _need_fixture(None)


def test_known_malformed_fixtures_are_present() -> None:
    """The malformed list above must not go stale (a renamed fixture would pass unseen)."""
    _need_fixture(FIXTURES if FIXTURES.is_dir() else None)
    assert {p.name for p in FIXTURES.glob("*.edxml")} >= set(MALFORMED)


def test_real_fixture_warnings_are_the_known_quirks() -> None:
    """Warnings on real files are specific findings, e.g. a short test code or a dd/MM/yyyy date."""
    folder = _need_fixture(FIXTURES if FIXTURES.is_dir() else None)
    new = validate_file(folder / "truclienthong__edoc_new.edxml")
    code = only(new, "agency-code")
    assert_problem(code, "warning", f"{MH}/To/OrganId", 18)
    assert "28.22.H17" in code.message
    bkav = validate_file(folder / "bkav__edoc_new.edxml")
    date = only(bkav, "date-format")
    assert_problem(date, "warning", f"{MH}/PromulgationInfo/PromulgationDate", 33)
    assert "30/10/2020" in date.message and "dd/MM/yyyy" in date.message


# --------------------------------------------------------------------------- clean samples


def test_inline_samples_are_clean() -> None:
    assert check(EDOC) == []
    assert check(STATUS) == []


def test_element_order_does_not_matter() -> None:
    sender = EDOC[EDOC.index("        <edXML:From>"): EDOC.index("        <edXML:To>")]
    moved = edit(EDOC, sender, "").replace("      </edXML:MessageHeader>", sender + "      </edXML:MessageHeader>")
    assert check(moved) == []


def test_xmldsig_signature_is_accepted() -> None:
    xml = edit(EDOC, "      <Signature>", '      <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">')
    assert check(xml) == []


def test_dotnet_reference_with_xlink_href_matches() -> None:
    xml = edit(EDOC, "<edXML:edXMLEnvelope ", '<edXML:edXMLEnvelope xmlns:xlink="http://www.w3.org/1999/xlink" ')
    xml = edit(xml, "<edXML:Reference>\n          <edXML:ContentId>cid:2</edXML:ContentId>",
               '<edXML:Reference xlink:href="cid:2">')
    assert check(xml) == []


def test_tree_is_not_modified() -> None:
    xml = edit(EDOC, "<edXML:Subject>", "<Extra xmlns='urn:x'/><edXML:Foo/><edXML:Subject>")
    root = etree.fromstring(xml.encode())
    before = etree.tostring(root)
    assert len(check(xml)) == 2
    validate_tree(root)
    assert etree.tostring(root) == before


# --------------------------------------------------------------------------- agencies


def test_non_standard_agency_code_is_a_warning() -> None:
    xml = edit(EDOC, "<edXML:OrganId>000.00.00.H14</edXML:OrganId>", "<edXML:OrganId>14.00.W00</edXML:OrganId>")
    problems = check(xml)
    p = only(problems, "agency-code")
    assert_problem(p, "warning", f"{MH}/To[2]/OrganId", line_of(xml, "14.00.W00"))
    assert "14.00.W00" in p.message and "V1V2V3.Z1Z2.Y1Y2.MX1X2" in p.message
    assert errors(problems) == []


def test_empty_sender_organ_id_is_an_error() -> None:
    xml = edit(EDOC, "<edXML:OrganId>000.00.00.G22</edXML:OrganId>\n          <edXML:OrganName>",
               "<edXML:OrganId> </edXML:OrganId>\n          <edXML:OrganName>")
    p = only(check(xml), "required")
    assert_problem(p, "error", f"{MH}/From/OrganId", line_of(xml, "<edXML:OrganId> </edXML:OrganId>"))
    assert "empty OrganId" in p.message


def test_recipient_without_organ_id_is_an_error() -> None:
    xml = edit(EDOC, "          <edXML:OrganId>000.00.00.H14</edXML:OrganId>\n", "")
    p = only(check(xml), "required")
    assert_problem(p, "error", f"{MH}/To[2]", line_of(xml, "<edXML:To>", 2))
    assert "no OrganId" in p.message


def test_edoc_without_recipient_is_an_error() -> None:
    recipients = EDOC[EDOC.index("        <edXML:To>"): EDOC.index("        <edXML:DocumentId>")]
    xml = edit(EDOC, recipients, "")
    p = only(check(xml), "required")
    assert_problem(p, "error", MH, line_of(xml, "<edXML:MessageHeader>"))
    assert "at least one To" in p.message


# --------------------------------------------------------------------------- dates


def test_impossible_date_is_an_error() -> None:
    xml = edit(EDOC, "<edXML:PromulgationDate>2018/09/28<", "<edXML:PromulgationDate>2019/02/30<")
    p = only(check(xml), "date")
    assert_problem(p, "error", f"{MH}/PromulgationInfo/PromulgationDate", line_of(xml, "2019/02/30"))
    assert "2019/02/30" in p.message and "not a real date" in p.message


def test_garbage_date_is_an_error() -> None:
    xml = edit(EDOC, "<edXML:DueDate></edXML:DueDate>", "<edXML:DueDate>next week</edXML:DueDate>")
    p = only(check(xml), "date")
    assert_problem(p, "error", f"{MH}/DueDate", line_of(xml, "next week"))
    assert "yyyy/MM/dd" in p.message


def test_iso_date_is_accepted_with_a_warning() -> None:
    xml = edit(EDOC, "<edXML:DueDate></edXML:DueDate>", "<edXML:DueDate>2018-10-05</edXML:DueDate>")
    problems = check(xml)
    p = only(problems, "date-format")
    assert_problem(p, "warning", f"{MH}/DueDate", line_of(xml, "2018-10-05"))
    assert errors(problems) == []


def test_iso_timestamp_is_accepted_with_a_warning() -> None:
    xml = edit(STATUS, "2015/09/20 11:08:36", "2015-09-20T11:08:36+07:00")
    problems = check(xml)
    assert_problem(only(problems, "date-format"), "warning", f"{MH}/Timestamp", line_of(xml, "2015-09-20T"))
    assert errors(problems) == []


def test_impossible_timestamp_is_an_error() -> None:
    xml = edit(EDOC, "2018/09/28 08:30:00", "2018/09/28 24:30:00")
    p = only(check(xml), "date")
    assert_problem(p, "error", f"{HEADER}/TraceHeaderList/TraceHeader/Timestamp", line_of(xml, "24:30:00"))


def test_empty_response_for_is_only_a_warning() -> None:
    xml = edit(EDOC, "        <edXML:SteeringType>", "        <edXML:ResponseFor>\n"
               "          <edXML:OrganId></edXML:OrganId><edXML:Code/>\n"
               "          <edXML:PromulgationDate></edXML:PromulgationDate>\n"
               "        </edXML:ResponseFor>\n        <edXML:SteeringType>")
    problems = check(xml)
    assert_problem(only(problems, "response-for"), "warning", f"{MH}/ResponseFor", line_of(xml, "<edXML:ResponseFor>"))
    assert errors(problems) == []


# --------------------------------------------------------------------------- coded values


def test_unknown_status_code_is_an_error() -> None:
    xml = edit(STATUS, "<edXML:StatusCode>03<", "<edXML:StatusCode>07<")
    p = only(check(xml), "status-code")
    assert_problem(p, "error", f"{MH}/StatusCode", line_of(xml, "<edXML:StatusCode>"))
    assert "'07'" in p.message and "01 (Đã đến)" in p.message


def test_rejection_without_reason_is_a_warning() -> None:
    xml = edit(STATUS, "<edXML:StatusCode>03<", "<edXML:StatusCode>02<")
    xml = edit(xml, "<edXML:Description>Đã tiếp nhận</edXML:Description>", "<edXML:Description/>")
    problems = check(xml)
    assert_problem(only(problems, "description"), "warning", f"{MH}/Description", line_of(xml, "<edXML:Description/>"))
    assert errors(problems) == []


def test_status_without_response_for_is_an_error() -> None:
    answered = STATUS[STATUS.index("        <edXML:ResponseFor>"): STATUS.index("        <edXML:StaffInfo>")]
    xml = edit(STATUS, answered, "")
    assert_problem(only(check(xml), "required"), "error", MH, line_of(xml, "<edXML:MessageHeader>"))


@pytest.mark.parametrize(
    ("old", "new", "code", "path"),
    [
        ("<edXML:Priority>0<", "<edXML:Priority>9<", "priority", f"{MH}/OtherInfo/Priority"),
        ("<edXML:BussinessDocType>0<", "<edXML:BussinessDocType>7<", "business-doc-type",
         f"{HEADER}/TraceHeaderList/Bussiness/BussinessDocType"),
        ("<edXML:Paper>0<", "<edXML:Paper>2<", "paper", f"{HEADER}/TraceHeaderList/Bussiness/Paper"),
        ("<edXML:SteeringType>1<", "<edXML:SteeringType>3<", "steering-type", f"{MH}/SteeringType"),
        ("<edXML:Direction>false<", "<edXML:Direction>maybe<", "direction", f"{MH}/OtherInfo/Direction"),
        ("<edXML:PageAmount>22<", "<edXML:PageAmount>22 trang<", "integer", f"{MH}/OtherInfo/PageAmount"),
        ("<edXML:PromulgationAmount>2<", "<edXML:PromulgationAmount>-2<", "integer",
         f"{MH}/OtherInfo/PromulgationAmount"),
    ],
)
def test_out_of_range_code_is_an_error(old: str, new: str, code: str, path: str) -> None:
    xml = edit(EDOC, old, new)
    p = only(check(xml), code)
    assert_problem(p, "error", path, line_of(xml, new))
    assert repr(new[new.index(">") + 1: -1]) in p.message


def test_repeated_single_element_is_an_error() -> None:
    xml = edit(STATUS, "<edXML:StatusCode>03</edXML:StatusCode>",
               "<edXML:StatusCode>03</edXML:StatusCode><edXML:StatusCode>06</edXML:StatusCode>")
    p = only(check(xml), "duplicate")
    assert_problem(p, "error", f"{MH}/StatusCode[2]", line_of(xml, "<edXML:StatusCode>"))


# --------------------------------------------------------------------------- manifest and attachments

REF2 = "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest/Reference[2]"
ATT2 = "/edXML/AttachmentEncoded/Attachment[2]"


def test_reference_without_attachment_is_an_error() -> None:
    xml = edit(EDOC, "<ContentId>2</ContentId>", "<ContentId>cid:3</ContentId>")
    problems = [p for p in check(xml) if p.code == "manifest"]
    assert sorted((p.path, p.line, p.severity) for p in problems) == [
        (ATT2, line_of(xml, "<Attachment>", 2), "error"),
        (REF2, line_of(xml, "<edXML:Reference>", 2), "error"),
    ]
    assert any("'2' names no Attachment" in p.message for p in problems)
    assert any("'3' is not listed in the manifest" in p.message for p in problems)


def test_attachment_without_reference_is_an_error() -> None:
    start = EDOC.index("        <edXML:Reference>\n          <edXML:ContentId>cid:2")
    second = EDOC[start: EDOC.index("      </edXML:edXMLManifest>")]
    xml = edit(EDOC, second, "")
    p = only(check(xml), "manifest")
    assert_problem(p, "error", ATT2, line_of(xml, "<Attachment>", 2))
    assert "'2' is not listed in the manifest" in p.message


def test_duplicate_attachment_content_id_is_an_error() -> None:
    xml = edit(EDOC, "<ContentId>2</ContentId>", "<ContentId>cid:1</ContentId>")
    problems = check(xml)
    p = only(problems, "duplicate-content-id")
    assert_problem(p, "error", ATT2, line_of(xml, "<Attachment>", 2))
    assert f"first at line {line_of(xml, '<Attachment>')}" in p.message
    # and the manifest's cid:2 now names nothing
    assert_problem(only(problems, "manifest"), "error", REF2, line_of(xml, "<edXML:Reference>", 2))


def test_duplicate_manifest_content_id_is_an_error() -> None:
    xml = edit(EDOC, "<edXML:ContentId>cid:2</edXML:ContentId>", "<edXML:ContentId>1</edXML:ContentId>")
    problems = check(xml)
    assert_problem(only(problems, "duplicate-content-id"), "error", REF2, line_of(xml, "<edXML:Reference>", 2))
    assert_problem(only(problems, "manifest"), "error", ATT2, line_of(xml, "<Attachment>", 2))


UNSAFE_NAMES = {
    "../x.pdf": "path separator",
    "a/b": "path separator",
    "a\\b": "path separator",
    "..": "'..'",
    "a&#9;b.pdf": "U+0009",
    "a&#x7F;.pdf": "U+007F",
    "a&#x85;.pdf": "U+0085",
    "CON": "reserved device name",
    "lpt1.txt": "reserved device name",
    "x" * 252 + ".pdf": "256 bytes",
    "invoice&#x202E;fdp.exe": "bidirectional",
    "C:boot.ini": "drive letter",
    "report.pdf.": "ends with a dot",
}


@pytest.mark.parametrize("name", list(UNSAFE_NAMES), ids=lambda n: n[:20])
def test_unsafe_attachment_name_is_an_error(name: str) -> None:
    old = "<AttachmentName>phu-luc.docx</AttachmentName>"
    xml = edit(EDOC, old, f"<AttachmentName>{name}</AttachmentName>")
    p = only(check(xml), "attachment-name")
    assert_problem(p, "error", f"{ATT2}/AttachmentName", line_of(xml, "<AttachmentName>", 2))
    assert UNSAFE_NAMES[name] in p.message


def test_unsafe_name_in_manifest_is_an_error() -> None:
    xml = edit(EDOC, "<edXML:AttachmentName>phu-luc.docx<", "<edXML:AttachmentName>..\\..\\boot.ini<")
    p = only(check(xml), "attachment-name")
    assert_problem(p, "error", f"{REF2}/AttachmentName", line_of(xml, "boot.ini"))


def test_empty_attachment_name_is_an_error() -> None:
    xml = edit(EDOC, "<AttachmentName>phu-luc.docx</AttachmentName>", "<AttachmentName> </AttachmentName>")
    p = only(check(xml), "attachment-name")
    assert_problem(p, "error", f"{ATT2}/AttachmentName", line_of(xml, "<AttachmentName> <"))
    assert "empty" in p.message


def test_odd_windows_characters_are_a_warning() -> None:
    xml = edit(EDOC, "<AttachmentName>phu-luc.docx</AttachmentName>",
               "<AttachmentName>Báo cáo: quý 1?.docx</AttachmentName>")
    problems = check(xml)
    p = only(problems, "attachment-name")
    assert_problem(p, "warning", f"{ATT2}/AttachmentName", line_of(xml, "Báo cáo"))
    assert errors(problems) == []


def test_check_attachment_name_refuses_surrogates() -> None:
    assert check_attachment_name("a\ud800.pdf")[0]


def test_check_attachment_name_accepts_ordinary_names() -> None:
    for name in ("Công văn 7816-VPCP.pdf", "1896_QD-TTg_m_294779.doc", "GUIDE_INSTALL OPENVPN.SIGNED.PDF",
                 "CONSOLE.txt", "a..b.pdf"):
        assert check_attachment_name(name) == ([], []), name


# Names as XML can carry them (no surrogates), biased towards the characters that matter.
NAME_CHARS = st.text(
    alphabet=st.sampled_from(list("aZ.:/\\ \t\x00\x7f\x85\u202eĐ?")) | st.characters(blacklist_categories=("Cs",)),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(NAME_CHARS)
def test_a_name_without_errors_stays_inside_its_folder(name: str) -> None:
    bad, _ = check_attachment_name(name)
    if not bad:
        for flavour in (PurePosixPath, PureWindowsPath):
            assert flavour(name).parts == (name,) and name not in (".", ".."), (flavour, name)
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)


@settings(max_examples=500, deadline=None)
@given(NAME_CHARS)
def test_validation_refuses_every_name_the_file_store_refuses(name: str) -> None:
    """What connector.edxml.names refuses on saving, validation already reports as an error."""
    if unsafe_reason(name) is not None:
        assert check_attachment_name(name)[0], name


# --------------------------------------------------------------------------- vocabulary


def test_unknown_edxml_element_is_a_warning() -> None:
    xml = edit(EDOC, "<edXML:Subject>", "<edXML:Urgency>high</edXML:Urgency><edXML:Subject>")
    problems = check(xml)
    p = only(problems, "unknown-element")
    assert_problem(p, "warning", f"{MH}/Urgency", line_of(xml, "<edXML:Urgency>"))
    assert p.message == "unknown element Urgency in MessageHeader kept, not part of QCVN 102:2016"
    assert errors(problems) == []


def test_unknown_foreign_element_is_a_warning() -> None:
    xml = edit(EDOC, "          <edXML:Website/>", '          <v:Zalo xmlns:v="urn:vendor">x</v:Zalo>')
    problems = check(xml)
    p = only(problems, "unknown-element")
    assert_problem(p, "warning", f"{MH}/From/Zalo", line_of(xml, "<v:Zalo"))
    assert "{urn:vendor}Zalo" in p.message
    assert problems == [p]


def test_known_name_in_foreign_namespace_is_unknown() -> None:
    xml = edit(EDOC, "<edXML:OrganId>000.00.00.H14</edXML:OrganId>", '<OrganId xmlns="urn:x">000.00.00.H14</OrganId>')
    problems = check(xml)
    p = only(problems, "unknown-element")
    assert_problem(p, "warning", f"{MH}/To[2]/OrganId", line_of(xml, '<OrganId xmlns="urn:x"'))
    assert "'urn:x'" in p.message and "not read" in p.message
    # ... so the recipient has no agency code
    assert_problem(only(problems, "required"), "error", f"{MH}/To[2]", line_of(xml, "<edXML:To>", 2))


def test_unqualified_edxml_elements_are_read_with_a_warning() -> None:
    """The parser reads unqualified elements as edXML; validation checks them as such."""
    xml = edit(EDOC, "        <edXML:To>\n          <edXML:OrganId>000.00.00.H14</edXML:OrganId>\n        </edXML:To>",
               '        <To xmlns="">\n          <OrganId>14.00.W00</OrganId>\n        </To>')
    problems = check(xml)
    assert_problem(only(problems, "namespace"), "warning", f"{MH}/To", line_of(xml, '<To xmlns=""'))
    assert_problem(only(problems, "agency-code"), "warning", f"{MH}/To/OrganId", line_of(xml, "14.00.W00"))
    assert errors(problems) == []


def test_unknown_attribute_is_a_warning() -> None:
    xml = edit(EDOC, '<edXML:edXMLManifest version="1.0">', '<edXML:edXMLManifest version="1.0" count="2">')
    problems = check(xml)
    p = only(problems, "unknown-attribute")
    assert_problem(p, "warning", "/edXML/edXMLEnvelope/edXMLBody/edXMLManifest", line_of(xml, "count="))
    assert problems == [p]


# --------------------------------------------------------------------------- structure (XSD)


def test_missing_required_element_is_an_xsd_error() -> None:
    sender = EDOC[EDOC.index("        <edXML:From>"): EDOC.index("        <edXML:To>")]
    xml = edit(EDOC, sender, "")
    p = only(check(xml), "xsd")
    assert_problem(p, "error", MH, line_of(xml, "<edXML:MessageHeader>"))
    assert p.message == "MessageHeader lacks required element(s): From"


def test_missing_message_header_is_an_xsd_error() -> None:
    header = STATUS[STATUS.index("      <edXML:MessageHeader>"): STATUS.index("    </edXML:edXMLHeader>")]
    status = edit(STATUS, header, "")
    p = only(check(status), "xsd")
    assert_problem(p, "error", HEADER, line_of(status, "<edXML:edXMLHeader>"))
    assert "MessageHeader" in p.message


def test_misplaced_element_is_an_xsd_error_without_namespace_noise() -> None:
    xml = edit(EDOC, "  <AttachmentEncoded>", "  <edXMLEnvelope/>\n  <AttachmentEncoded>")
    p = only(check(xml), "xsd")
    assert_problem(p, "error", "/edXML/edXMLEnvelope[2]", line_of(xml, "<edXMLEnvelope/>"))
    assert "not expected" in p.message and "{" not in p.message


def test_text_where_elements_belong_is_an_xsd_error() -> None:
    xml = edit(EDOC, "        <edXML:To>\n          <edXML:OrganId>000.00.00.H14",
               "        <edXML:To>stray text\n          <edXML:OrganId>000.00.00.H14")
    p = only(check(xml), "xsd")
    assert_problem(p, "error", f"{MH}/To[2]", line_of(xml, "stray text"))


def test_wrong_root_is_reported_alone() -> None:
    problems = check('<edXML xmlns="urn:not-qcvn"><edXMLEnvelope/></edXML>')
    assert [(p.code, p.severity, p.path, p.line) for p in problems] == [("root", "error", "/edXML", 1)]
    assert "urn:not-qcvn" in problems[0].message


def test_several_problems_are_reported_at_once() -> None:
    xml = edit(EDOC, "<edXML:Priority>0<", "<edXML:Priority>9<")
    xml = edit(xml, "<edXML:PromulgationDate>2018/09/28<", "<edXML:PromulgationDate>2019/02/30<")
    xml = edit(xml, "<AttachmentName>phu-luc.docx</AttachmentName>", "<AttachmentName>../x.pdf</AttachmentName>")
    xml = edit(xml, "<edXML:Subject>", "<edXML:Urgency/><edXML:Subject>")
    xml = edit(xml, "<edXML:OrganId>000.00.00.H14</edXML:OrganId>", "<edXML:OrganId>14.00.W00</edXML:OrganId>")
    problems = check(xml)
    codes = {p.code for p in problems}
    assert len(errors(problems)) >= 3
    assert {"priority", "date", "attachment-name", "unknown-element", "agency-code"} <= codes
    assert [p.line for p in problems] == sorted(p.line for p in problems)


# --------------------------------------------------------------------------- validate_file


def test_validate_file_names_the_source(tmp_path: Path) -> None:
    path = tmp_path / "x.edxml"
    path.write_text(edit(EDOC, "<edXML:Priority>0<", "<edXML:Priority>9<"), encoding="utf-8")
    p = only(validate_file(path), "priority")
    assert p.source == str(path) and str(path) in str(p)


def test_validate_file_rejects_doctype_without_expanding(tmp_path: Path) -> None:
    path = tmp_path / "lol.edxml"
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE edXML [<!ENTITY a "aaaaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>\n'
                    '<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&b;</edXML>\n', encoding="utf-8")
    problems = validate_file(path)
    assert [(p.code, p.severity, p.line) for p in problems] == [("hostile", "error", 2)]


def test_validate_file_reports_malformed_xml(tmp_path: Path) -> None:
    path = tmp_path / "bad.edxml"
    path.write_text(EDOC.replace("</edXML:From>", "</edXML:Form>", 1), encoding="utf-8")
    problems = validate_file(path)
    expected = [("not-well-formed", "error", line_of(EDOC, "</edXML:From>"))]
    assert [(p.code, p.severity, p.line) for p in problems] == expected
    assert re.search(r"mismatch", problems[0].message)


# --------------------------------------------------------------------------- audit: names as written, content


def test_attachment_without_content_is_an_error_naming_it_and_its_line() -> None:
    xml = edit(EDOC, "      <ContentTransferEncoded>UEsDBA==</ContentTransferEncoded>\n", "")
    problems = check(xml)
    p = only([q for q in problems if "ContentTransferEncoded" in q.message], "required")
    assert_problem(p, "error", ATT2, line_of(xml, "<Attachment>", 2))
    assert "'phu-luc.docx'" in p.message and "no content" in p.message


def test_an_empty_content_element_is_content_all_the_same() -> None:
    """An empty ContentTransferEncoded is a 0-byte file (the sample's first attachment)."""
    assert not [p for p in check(EDOC) if "ContentTransferEncoded" in p.message]


def test_name_length_is_judged_after_nfc() -> None:
    """U+0958 is 3 bytes in UTF-8 and 6 after NFC (क + nukta): 83 of them fit as sent, not as saved."""
    name = "\u0958" * 83 + ".pdf"
    assert len(name.encode("utf-8")) <= 255
    bad, _ = check_attachment_name(name)
    assert bad and "502 bytes" in bad[0] and "NFC" in bad[0], bad
    xml = EDOC.replace("cong-van.pdf", name)
    problems = [p for p in check(xml) if p.code == "attachment-name"]
    assert [p.severity for p in problems] == ["error", "error"]


def test_name_length_leaves_room_for_the_suffix_extraction_adds() -> None:
    from connector.edxml.names import MAX_NAME_BYTES, SUFFIX_ROOM

    longest = "a" * (MAX_NAME_BYTES - SUFFIX_ROOM - 4) + ".pdf"
    assert check_attachment_name(longest) == ([], [])
    bad, _ = check_attachment_name("a" + longest)
    assert bad and "' (2)' suffix" in bad[0]
    # one "(999)" more still fits the file system's limit
    assert len(f"{longest[:-4]} (999).pdf".encode()) == MAX_NAME_BYTES


@pytest.mark.parametrize("name", ["metadata.json", "Metadata.JSON"])
def test_metadata_json_is_a_reserved_name_warning(name: str) -> None:
    xml = edit(EDOC, "<AttachmentName>phu-luc.docx</AttachmentName>", f"<AttachmentName>{name}</AttachmentName>")
    problems = check(xml)
    p = only(problems, "attachment-name")
    assert_problem(p, "warning", f"{ATT2}/AttachmentName", line_of(xml, f">{name}<"))
    assert "metadata (2).json" in p.message
    assert errors(problems) == []
