"""The codec's own guarantees: round trips, the VNPT layout, canonical bytes, both read paths."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from datetime import date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from lxml import etree

from connector.edxml.build import BuildError, build, format_timestamp, to_bytes
from connector.edxml.errors import EdxmlError
from connector.edxml.model import NS, VN_TZ, Attachment, BytesData, FileData
from connector.edxml.parse import parse, parse_date, parse_timestamp
from connector.edxml.reader import Limits
from connector.edxml.samples import make_pdf, sample_edoc, sample_status
from tests.conftest import real_world_dir
from tests.edxml.strategies import edocs, messages, statuses

STREAMING = Limits(in_memory_below=0)


def _canonical(data: bytes) -> bytes:
    return etree.tostring(etree.fromstring(data), method="c14n", exclusive=True)


def _body(data: bytes) -> bytes:
    return data.split(b"\n", 1)[1]


# --------------------------------------------------------------------------- round trips


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_model_to_xml_to_model_is_identity(message):
    data = to_bytes(message)
    with parse(data) as parsed:
        assert parsed.message == message
        for sent, got in zip(getattr(message, "attachments", []), getattr(parsed.message, "attachments", [])):
            with sent.data.open() as a, got.data.open() as b:
                assert a.read() == b.read()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_streaming_and_in_memory_paths_agree(message):
    data = to_bytes(message)
    with parse(data) as fast, parse(data, limits=STREAMING) as slow:
        assert fast.message == slow.message
        assert [p.to_dict() for p in fast.report.problems] == [p.to_dict() for p in slow.report.problems]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_built_bytes_are_exclusive_c14n(message):
    data = to_bytes(message)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    assert _canonical(data) == _body(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edocs())
def test_generated_edocs_validate_structurally(doc):
    with parse(to_bytes(doc)) as parsed:
        xsd = [p for p in parsed.report.problems if p.code == "xsd"]
        assert xsd == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statuses())
def test_generated_statuses_round_trip_as_status(status):
    with parse(to_bytes(status)) as parsed:
        assert parsed.message.kind == "status"
        assert parsed.message == status


# --------------------------------------------------------------------------- layout


def test_layout_is_the_vnpt_builders():
    data = to_bytes(sample_edoc())
    root = etree.fromstring(data)
    assert root.tag == f"{{{NS}}}edXML" and root.prefix is None
    envelope, encoded = list(root)
    assert envelope.prefix == "edXML" and etree.QName(envelope).localname == "edXMLEnvelope"
    assert etree.QName(encoded).localname == "AttachmentEncoded" and encoded.prefix is None
    header = envelope[0][0]
    order = [etree.QName(e).localname for e in header]
    assert order[:2] == ["From", "To"]
    assert order[2:] == [
        "DocumentId",
        "Code",
        "PromulgationInfo",
        "DocumentType",
        "Subject",
        "Content",
        "SignerInfo",
        "DueDate",
        "OtherInfo",
        "SteeringType",
        "ToPlaces",
    ]
    assert b"<edXML:ContentId>cid:doc1</edXML:ContentId>" in data
    assert b"<ContentType>application/zip</ContentType>" in data
    assert b'<edXML:ContentTransferEncoded xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">' in data


def test_zip_packaging_is_a_one_entry_zip_of_the_file():
    doc = sample_edoc()
    with doc.attachments[0].data.open() as fh:
        pdf = fh.read()
    root = etree.fromstring(to_bytes(doc))
    encoded = root.find(f".//{{{NS}}}ContentTransferEncoded").text
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(encoded)))
    assert archive.namelist() == [doc.attachments[0].name]
    assert archive.read(doc.attachments[0].name) == pdf
    with parse(to_bytes(doc)) as parsed:
        got = parsed.message.attachments[0]
        assert (got.packaging, got.content_type, got.sha256) == ("zip", "application/pdf", hashlib.sha256(pdf).hexdigest())


def test_plain_zip_named_zip_is_not_unwrapped():
    doc = sample_edoc()
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("a.txt", "x")
    doc.attachments = [
        Attachment("z", "bundle.zip", "application/zip", packaging="plain", data=BytesData(inner.getvalue()))
    ]
    doc.with_manifest()
    with parse(to_bytes(doc)) as parsed:
        got = parsed.message.attachments[0]
        assert got.packaging == "plain" and got.sha256 == hashlib.sha256(inner.getvalue()).hexdigest()


def test_attachment_streams_from_a_file(tmp_path):
    payload = tmp_path / "big.pdf"
    payload.write_bytes(make_pdf("x") * 2000)
    doc = sample_edoc()
    doc.attachments[0].data = FileData(payload)
    doc.attachments[0].packaging = "plain"
    doc.with_manifest()
    out = tmp_path / "out.edxml"
    build(doc, out)
    with parse(out, limits=STREAMING) as parsed:
        assert parsed.message.attachments[0].sha256 == hashlib.sha256(payload.read_bytes()).hexdigest()
        assert parsed.message.attachments[0].size == payload.stat().st_size


def test_status_layout_has_header_only():
    status = sample_status(sample_edoc(), "02")
    root = etree.fromstring(to_bytes(status))
    assert [etree.QName(e).localname for e in root] == ["edXMLEnvelope"]
    assert [etree.QName(e).localname for e in root[0]] == ["edXMLHeader"]
    names = [etree.QName(e).localname for e in root[0][0][0]]
    assert names == ["From", "ResponseFor", "StaffInfo", "StatusCode", "Description", "Timestamp"]


def test_control_characters_are_refused_by_the_builder():
    doc = sample_edoc()
    doc.subject = "bad\x01subject"
    with pytest.raises(BuildError, match="Subject"):
        to_bytes(doc)


# --------------------------------------------------------------------------- formats


def test_dates_and_times_use_the_wire_formats():
    moment = datetime(2026, 11, 26, 6, 5, 4, tzinfo=VN_TZ)
    assert format_timestamp(moment) == "2026/11/26 06:05:04"
    assert parse_timestamp("2026/11/26 06:05:04") == moment
    assert parse_timestamp("2026-11-25T23:05:04Z") == moment
    assert parse_date("2019/04/11") == date(2019, 4, 11)
    assert parse_date("30/10/2020") == date(2020, 10, 30)
    with pytest.raises(ValueError):
        parse_date("2019/02/30")


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("variant", ["bom", "crlf", "no-prefix", "reordered", "bare-cid"])
def test_tolerated_producer_variations(variant):
    doc = sample_edoc()
    data = to_bytes(doc)
    if variant == "bom":
        data = b"\xef\xbb\xbf" + data
    elif variant == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif variant == "no-prefix":
        data = data.replace(b"edXML:", b"").replace(b' xmlns:edXML="' + NS.encode() + b'"', b"")
    elif variant == "reordered":
        root = etree.fromstring(data)
        header = root[0][0][0]
        children = list(header)
        for child in children:
            header.remove(child)
        for child in reversed(children):
            header.append(child)
        data = etree.tostring(root)
    elif variant == "bare-cid":
        data = data.replace(b"cid:doc1", b"doc1")
    for limits in (Limits(), STREAMING):
        with parse(data, limits=limits) as parsed:
            assert parsed.message == doc, variant
            assert parsed.report.errors == []


def test_unknown_elements_are_kept_and_reported():
    data = to_bytes(sample_edoc()).replace(
        b"<edXML:Subject>", b"<edXML:Sender2>x</edXML:Sender2><edXML:Subject>", 1
    )
    with parse(data) as parsed:
        assert [u.path.rsplit("/", 1)[-1] for u in parsed.message.unknown] == ["Sender2"]
        assert "Sender2" in parsed.message.unknown[0].xml
        assert any(p.code == "unknown-element" and p.severity == "warning" for p in parsed.report.problems)


def test_limits_are_enforced_on_both_paths():
    deep = b"<edXML>" + b"<a>" * 60 + b"</a>" * 60 + b"</edXML>"
    for limits in (Limits(), STREAMING):
        with pytest.raises(EdxmlError, match="nest deeper"):
            parse(deep, limits=limits)
    many = b"<edXML>" + b"<a/>" * 2000 + b"</edXML>"
    for limits in (Limits(max_elements=1000), Limits(max_elements=1000, in_memory_below=0)):
        with pytest.raises(EdxmlError, match="more than 1000 elements"):
            parse(many, limits=limits)
    with pytest.raises(EdxmlError, match="larger than the limit"):
        parse(b"<edXML>" + b" " * 5000 + b"</edXML>", limits=Limits(max_bytes=1000, in_memory_below=0))


def test_limit_errors_name_the_element_where_the_limit_is_crossed():
    """Depth and element-count errors name the element (path) and line on every path: the
    streaming reader, the in-memory reader's screen, and libxml2's own depth stop (beyond 256
    levels, where there is no tree and the input is read again to find the place)."""
    for levels in (60, 300):
        deep = b"<edXML>\n<Subject>\n" + b"<a>" * levels + b"</a>" * levels + b"</Subject></edXML>"
        for limits in (Limits(), STREAMING):
            with pytest.raises(EdxmlError) as info:
                parse(deep, limits=limits, source_name="deep.edxml")
            [problem] = info.value.problems
            assert problem.path == "/edXML/Subject" + "/a" * 39, (levels, limits, problem.path)  # level 41
            assert problem.line == 3 and problem.source == "deep.edxml"
    many = b"<edXML><Content>\n" + b"<a/>" * 30 + b"</Content></edXML>"
    for limits in (Limits(max_elements=20), Limits(max_elements=20, in_memory_below=0)):
        with pytest.raises(EdxmlError) as info:
            parse(many, limits=limits)
        assert [(p.path, p.line) for p in info.value.problems] == [("/edXML/Content/a[19]", 2)]  # the 21st element


def test_broken_base64_is_reported_with_its_line():
    data = to_bytes(sample_edoc())
    start = data.index(b"<edXML:ContentTransferEncoded")
    line = data[:start].count(b"\n") + 1
    end = data.index(b">", start) + 1
    broken = data[:end] + b"!!!!" + data[end + 4 :]
    for limits in (Limits(), STREAMING):
        with parse(broken, limits=limits) as parsed:
            problems = [p for p in parsed.report.errors if p.code == "base64"]
            assert problems and problems[0].line == line


def test_fixtures_read_identically_on_both_paths():
    folder = real_world_dir()
    for path in sorted(folder.glob("*.edxml")):
        try:
            fast = parse(path)
        except EdxmlError as exc:
            with pytest.raises(EdxmlError) as slow_exc:
                parse(path, limits=STREAMING)
            assert slow_exc.value.problems[0].line == exc.problems[0].line, path.name
            continue
        with fast, parse(path, limits=STREAMING) as slow:
            assert fast.message == slow.message, path.name
            assert [p.to_dict() for p in fast.report.problems] == [p.to_dict() for p in slow.report.problems]


# --------------------------------------------------------------------------- one walk, two readers


def _model_and_unknown(parsed) -> tuple:
    return parsed.message, [(u.path, u.line, u.xml) for u in parsed.message.unknown]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(with_unknown=True))
def test_validation_walk_and_extractor_read_the_same_children(message):
    """With validation the model is read through the indexes the validation walk built; without
    it, through the reader's own. Both must see the same document."""
    data = to_bytes(message)
    with parse(data) as walked, parse(data, validate=False) as own:
        assert _model_and_unknown(walked) == _model_and_unknown(own)


def test_fixtures_give_the_same_model_with_and_without_validation():
    for path in sorted(real_world_dir().glob("*.edxml")):
        try:
            walked = parse(path)
        except EdxmlError:
            continue
        with walked, parse(path, validate=False) as own:
            assert _model_and_unknown(walked) == _model_and_unknown(own), path.name


# --------------------------------------------------------------------------- limits screened by size


def _limit_outcome(data: bytes, limits: Limits) -> str:
    try:
        with parse(data, limits=limits, validate=False):
            return "read"
    except EdxmlError as exc:
        return exc.problems[0].message


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_small_and_streaming_paths_agree_on_limits_near_the_document_size(encoding):
    """The in-memory path leaves out of its screen the limits an input is too small to break;
    at limits just around what the document holds, both paths still decide alike."""
    text = "Đề nghị phối hợp " * 8
    doc = sample_edoc()
    doc.content = text.strip()
    data = to_bytes(doc)
    if encoding != "utf-8":
        data = etree.tostring(etree.fromstring(data), xml_declaration=True, encoding=encoding)
    tree = etree.fromstring(data)
    elements = len(tree.xpath("//*"))
    longest_text = len(doc.content)
    longest_attribute = max((len(v) for e in tree.iter() for v in e.attrib.values()), default=0)
    cases = [
        {"max_text": longest_text}, {"max_text": longest_text - 1},
        {"max_elements": elements}, {"max_elements": elements - 1},
        {"max_attribute": max(longest_attribute, 1)}, {"max_attribute": max(longest_attribute - 1, 0)},
        {"max_text": len(data)}, {"max_attribute": len(data)}, {"max_elements": len(data) // 4},
    ]
    for case in cases:
        fast = _limit_outcome(data, Limits(**case))
        slow = _limit_outcome(data, Limits(**case, in_memory_below=0))
        assert fast == slow, (case, fast, slow)
    assert _limit_outcome(data, Limits(max_text=longest_text - 1)) != "read"
    assert _limit_outcome(data, Limits(max_elements=elements - 1)) != "read"
