"""The fast paths of build + sign write exactly what the plain, value-by-value code wrote.

Why: the builder renders text segments in a fast pass (values appended unescaped, checked in
one go) and falls back to a careful pass (each value escaped, the first bad one named); the
signer reuses per-certificate KeyInfo and a prepared signing call. None of that may change a
byte of output or an error message:

- golden hashes of documents built by the code before these speed-ups (clean values, values
  needing every kind of escaping, a status message);
- the fast pass equals the careful pass wherever it is taken (property test);
- every character XML cannot carry is still refused, naming the first bad field in document
  order, whatever else is wrong later in the document;
- conversions (dates, timestamps, integers, booleans, subclasses) equal the public formatters;
- the base64 stream equals a one-shot encode for any chunking, and streams;
- the small (one build) and large (two pass) signing paths write the same bytes;
- the key wrapper's prepared call equals a direct call, and follows a replaced key or algorithm.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import io
import random
import re

import pybase64
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.edxml import build as build_module
from connector.edxml import model as m
from connector.edxml.build import (
    Base64Stream,
    BuildError,
    format_date,
    format_timestamp,
    to_bytes,
)
from connector.edxml.samples import sample_edoc
from connector.signing import sign as sign_module
from connector.signing.dsig import ECDSA_SHA256, RSA_PSS_SHA256, RSA_SHA256
from connector.signing.keys import SoftwareKey, verify_signature_value
from tests.edxml.strategies import messages
from tests.support.dsig_tools import agency_key, ec_agency_key

UTC = dt.UTC

# sha256 of to_bytes() of the documents below, as built by the builder before the speed-ups.
GOLDEN = {
    "clean": (25933, "6286693f68f15181c2edbdbe94217d830737d26b8035dce7a1915282210ce9fe"),
    "odd": (27351, "e5b33e6c6f399c93e7dd67fb3402c3e4d522e6b67ff4a1f40ac04fa75847d18e"),
    "status": (1494, "d45b0efa91460720d4786a0fd1e5f9e1ae07a0960db94bd2e39f133cb0c96370"),
}


def golden_edoc(clean: bool) -> m.Edoc:
    """Many recipients and attachments, both packagings, every compound part, None fields,
    dates before year 1000, timestamps in UTC with microseconds; ``clean=False`` adds values
    that need escaping (``& < > " ' CR TAB``) and an ``xlink:href``."""
    odd = "" if clean else " & <b> \"q\" 'a' \r\t x"
    orgs = [m.Organization(organ_id=f"000.00.{i:02d}.G{i}", organ_name=f"Cơ quan số {i}{odd}",
                           organization_in_charge="Bộ Nội vụ" if i % 2 else None,
                           email=None if i % 3 else f"vt{i}@x.gov.vn",
                           telephone="024 3824 0000", fax=None, website="x.gov.vn 𠀀") for i in range(25)]
    doc = m.Edoc(
        from_=m.Organization("000.00.00.H16", "UBND tỉnh Đắk Nông", "UBND tỉnh Đắk Nông", "Gia Nghĩa",
                             "ubnd@daknong.gov.vn", "0261 3544 130", "0261 3544 131", "daknong.gov.vn"),
        to=orgs, document_id=f"000.00.00.H16,2024/05/06,1/UBND-VP{odd}",
        code=m.Code("123", "UBND-VP"), promulgation=m.PromulgationInfo("Gia Nghĩa", dt.date(2024, 5, 6)),
        document_type=m.DocumentType("1", None, "Công văn"),
        subject=f"V/v kết nối, liên thông văn bản{odd}", content=None if clean else "a\r\nb",
        signer_info=m.SignerInfo("KT. CHỦ TỊCH", "Phó Chủ tịch", "Nguyễn Văn An"),
        due_date=dt.date(987, 12, 31),
        other_info=m.OtherInfo(priority=3, sphere_of_promulgation="Liên thông", typer_notation=None,
                               promulgation_amount=12, page_amount=0, direction=True,
                               appendixes=["Phụ lục I", f"Phụ lục II{odd}"]),
        steering_type=2, to_places=["Như trên", "Lưu: VT", f"P{odd}"],
        response_for=[m.ResponseFor("000.00.00.G22", "9/VPCP", dt.date(2023, 1, 2), "doc-9"), m.ResponseFor()],
        trace_headers=[m.TraceHeader("000.00.00.H16", dt.datetime(2024, 5, 6, 23, 30, 5, 77, tzinfo=UTC)),
                       m.TraceHeader("000.00.00.G22", dt.datetime(2024, 5, 7, 1, 2, 3, tzinfo=m.VN_TZ))],
        business=m.Business("doc-1", 3, f"Thay thế{odd}", 1,
                            m.BusinessDocumentInfo(1, 0, [m.Receiver("000.00.00.G22", 1), m.Receiver(None, None)]),
                            [m.ReplacementInfo("doc-0", ["000.00.00.G22", f"000.00.00.G23{odd}"]), m.ReplacementInfo()],
                            m.StaffInfo("Văn thư", "Trần Thị Bình", None, "0912000001")),
        attachments=[m.Attachment(content_id=f"<cid:a{i}>", name=f"tệp {i}{'.zip' if i == 3 else '.pdf'}",
                                  content_type="application/pdf", description=None if i == 1 else f"Mô tả {i}{odd}",
                                  packaging="zip" if i % 2 == 0 else "plain",
                                  data=m.BytesData(bytes(range(256)) * (i + 1) + b"x" * i))
                     for i in range(5)],
    ).with_manifest()
    if not clean:
        doc.manifest[2].href = 'http://example.gov.vn/a?b=1&c="2"\t\n<x>'
    return doc


def golden_status() -> m.Status:
    return m.Status(
        from_=m.Organization("000.00.00.G22", None, "Văn phòng Chính phủ & <VPCP>"),
        response_for=[m.ResponseFor("000.00.00.H16", "123/UBND-VP", dt.date(2024, 5, 6), "doc-1")],
        staff_info=m.StaffInfo("Văn thư", "Lê Văn Cường", "vanthu@example.gov.vn", None),
        status_code="03", description="Đã tiếp nhận",
        timestamp=dt.datetime(2024, 5, 6, 8, 0, 0, tzinfo=m.VN_TZ),
    )


GOLDEN_MESSAGES = {"clean": lambda: golden_edoc(True), "odd": lambda: golden_edoc(False), "status": golden_status}


# --------------------------------------------------------------------------- builder


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_build_is_byte_identical_to_the_builder_before(name):
    data = to_bytes(GOLDEN_MESSAGES[name]())
    assert (len(data), hashlib.sha256(data).hexdigest()) == GOLDEN[name]


def _segments(message: m.Message) -> list[tuple[object, object]]:
    if isinstance(message, m.Status):
        return [(build_module._status, message)]
    return [(build_module._edoc_head, message), (build_module._edoc_body, message),
            *((build_module._attachment_head, a) for a in message.attachments)]


def _passes(segment, obj) -> tuple[bytes, bytes, list[bytes]]:
    fast: list[bytes] = []
    values: list[bytes] = []
    segment(fast, values, obj)
    careful: list[bytes] = []
    segment(careful, None, obj)
    return b"".join(fast), b"".join(careful), values


def test_the_clean_golden_document_takes_the_fast_pass_and_the_odd_one_the_careful_pass():
    for segment, obj in _segments(golden_edoc(True)):
        fast, careful, values = _passes(segment, obj)
        assert fast == careful and values
    tried = [_passes(segment, obj) for segment, obj in _segments(golden_edoc(False))]
    assert any(fast != careful for fast, careful, _ in tried)  # escaping was needed ...
    for (segment, obj), (_, careful, _) in zip(_segments(golden_edoc(False)), tried):
        assert build_module._render(segment, obj) == careful  # ... and done


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_fast_pass_equals_careful_pass_whenever_its_check_passes(message):
    for segment, obj in _segments(message):
        fast, careful, values = _passes(segment, obj)
        text = b"".join(values).decode("utf-8")
        if build_module._SPECIAL.search(text) is None:
            assert fast == careful
        assert build_module._render(segment, obj) == careful


def test_legal_characters_near_the_refused_ones_stay_on_the_fast_pass():
    doc = golden_edoc(True)
    doc.subject = "（ＡＢＣ）\ufffd\uf8ff\ufeff 𠀀 \t tab"  # lead byte EF, like U+FFFE/U+FFFF; tab is fine
    for segment, obj in _segments(doc):
        fast, careful, _ = _passes(segment, obj)
        assert fast == careful
    assert "（ＡＢＣ）" in to_bytes(doc).decode()


def test_a_surrogate_sends_the_fast_pass_to_the_careful_one():
    doc = golden_edoc(True)
    doc.to[1].website = "x\udc80"
    with pytest.raises(BuildError, match=r"^To\[1\]\.Website: character U\+DC80"):
        build_module._render(build_module._edoc_head, doc)


class _Recorder:
    def __init__(self) -> None:
        self.types: set[type] = set()
        self.data: list[bytes] = []

    def write(self, data) -> None:
        self.types.add(type(data))
        self.data.append(data)


@pytest.mark.parametrize("attachments", [0, 1, 5])
@pytest.mark.parametrize("clean", [True, False])
def test_the_builder_writes_only_bytes_objects(clean, attachments):
    """The signer keeps what the builder writes without copying: it must never be mutable."""
    doc = golden_edoc(clean)
    doc.attachments = doc.attachments[:attachments]
    doc.with_manifest()
    recorder = _Recorder()
    build_module.write_canonical(doc, recorder)
    assert recorder.types == {bytes}
    assert build_module.DECLARATION + b"".join(recorder.data) == to_bytes(doc)


ILLEGAL = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x0e", "\x1f", "\ufffe", "\uffff", "\ud800", "\udfff"]


@pytest.mark.parametrize("char", ILLEGAL, ids=[f"U+{ord(c):04X}" for c in ILLEGAL])
def test_every_character_xml_cannot_carry_is_refused_naming_the_field(char):
    doc = golden_edoc(True)
    doc.to[3].fax = f"x{char}y"
    with pytest.raises(BuildError, match=rf"^To\[3\]\.Fax: character U\+{ord(char):04X} cannot be carried in XML$"):
        to_bytes(doc)


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda d: d.to_places.append("\x02"), r"^ToPlaces\.Place: character U\+0002"),
        (lambda d: d.business.replacement_info[0].organ_ids.append("\x03"),
         r"^ReplacementInfo\.OrganIdList\.OrganId: character U\+0003"),
        (lambda d: setattr(d.manifest[1], "href", "a\x04"), r"^Reference/@href: character U\+0004"),
        (lambda d: setattr(d.manifest[1], "description", "\x05"), r"^Reference\.Description: character U\+0005"),
        (lambda d: setattr(d.attachments[2], "description", "\x06"),
         r"^Attachment 'tệp 2\.pdf': character U\+0006"),
        (lambda d: setattr(d.attachments[4], "data", None),
         r"^Attachment 'tệp 4\.pdf': no content to attach \(data is missing\)$"),
        (lambda d: setattr(d.business.staff_info, "email", "\x07"), r"^StaffInfo\.Email: character U\+0007"),
    ],
    ids=["to-place", "replaced-organ", "href", "manifest", "attachment", "no-data", "staff"],
)
def test_errors_name_the_field_in_every_part(spoil, message):
    doc = golden_edoc(False)
    spoil(doc)
    with pytest.raises(BuildError, match=message):
        to_bytes(doc)


def test_the_first_problem_in_document_order_is_reported():
    doc = golden_edoc(True)
    doc.subject = "bad \x1f subject"
    doc.trace_headers[1].timestamp = dt.datetime(2024, 1, 1)  # naive, and later in the document
    with pytest.raises(BuildError, match=r"^Subject: character U\+001F"):
        to_bytes(doc)
    doc.subject = "fine"
    with pytest.raises(BuildError, match=r"^timestamp 2024-01-01T00:00:00 has no time zone$"):
        to_bytes(doc)
    status = golden_status()
    status.description = "\x0e"
    with pytest.raises(BuildError, match=r"^Description: character U\+000E"):
        to_bytes(status)


class Level(enum.IntEnum):
    HIGH = 2


class When(dt.date):
    pass


@settings(max_examples=200, deadline=None)
@given(
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                 timezones=st.sampled_from([UTC, m.VN_TZ, dt.timezone(dt.timedelta(hours=-9, minutes=-30))])),
)
def test_conversions_equal_the_public_formatters(day, moment):
    assert build_module._plain(day) == format_date(day)
    assert build_module._plain(moment) == format_timestamp(moment)
    assert build_module._plain_bytes(day) == format_date(day).encode()
    assert build_module._plain_bytes(moment) == format_timestamp(moment).encode()


def test_conversions_of_the_other_types_are_unchanged():
    plain = build_module._plain
    assert [plain(None), plain(True), plain(False), plain(0), plain(-12), plain(10**30)] == \
        ["", "true", "false", "0", "-12", str(10**30)]
    assert plain(Level.HIGH) == str(Level.HIGH)  # a subclass of int: str() as before
    assert plain(When(2024, 1, 2)) == "2024/01/02"
    assert plain(1.5) == "1.5"
    for value in (None, True, False, 0, -12, 10**30, Level.HIGH, When(2024, 1, 2), 1.5, "Đắk Nông"):
        expected = value.encode() if isinstance(value, str) else plain(value).encode()
        assert build_module._plain_bytes(value) == expected
    for convert in (plain, build_module._plain_bytes):
        with pytest.raises(BuildError, match="has no time zone"):
            convert(dt.datetime(2024, 1, 1))


# --------------------------------------------------------------------------- base64 stream


HOLD = build_module._Base64Sink.HOLD


@pytest.mark.parametrize("seed", range(5))
def test_base64_stream_equals_one_encode_for_any_chunking(seed):
    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(0, 6 * HOLD))
    out = io.BytesIO()
    stream = Base64Stream(out)
    at = 0
    while at < len(data):
        size = rng.choice([1, 2, 3, 5, 64, 4096, HOLD - 1, HOLD + 1, 3 * HOLD])
        piece = data[at:at + size]
        assert stream.write(memoryview(piece) if size % 2 else bytearray(piece)) == len(piece)
        at += len(piece)
        assert stream.tell() == at
    stream.close()
    assert out.getvalue() == pybase64.b64encode(data)


def test_base64_stream_writes_large_input_as_it_comes_and_holds_little():
    out = io.BytesIO()
    sink = build_module._Base64Sink(out)
    chunk = bytes(range(256)) * 256 + b"x"  # 65537 bytes: not a multiple of three
    for count in range(1, 5):
        sink.write(chunk)
        assert len(sink._pending) < 3  # only the bytes short of a group of three
        assert len(out.getvalue()) == (count * len(chunk)) // 3 * 4
    sink.close()
    assert out.getvalue() == pybase64.b64encode(chunk * 4)


def test_base64_stream_holds_small_writes_back_and_encodes_them_together():
    out = io.BytesIO()
    sink = build_module._Base64Sink(out)
    pieces = [b"PK\x03\x04header", bytes(range(200)) * 3, b"central", b"end"]
    for piece in pieces:
        sink.write(piece)
    assert out.getvalue() == b""
    sink.close()
    assert out.getvalue() == pybase64.b64encode(b"".join(pieces))


# --------------------------------------------------------------------------- signer


class _FixedUuid:
    hex = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def rsa_key(dev_pki):
    return agency_key(dev_pki)


def test_small_and_two_pass_signing_write_the_same_bytes(rsa_key, monkeypatch, tmp_path):
    monkeypatch.setattr(sign_module, "_new_token", lambda: _FixedUuid.hex[:16])
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 999, tzinfo=m.VN_TZ)
    doc = golden_edoc(False)
    one = io.BytesIO()
    info_one = sign_module.sign(doc, rsa_key, one, signing_time=moment)
    sign_module.sign(doc, rsa_key, tmp_path / "one.edxml", signing_time=moment)
    monkeypatch.setattr(sign_module, "IN_MEMORY_BELOW", 0)
    two = io.BytesIO()
    info_two = sign_module.sign(doc, rsa_key, two, signing_time=moment)
    assert one.getvalue() == two.getvalue() == (tmp_path / "one.edxml").read_bytes()
    assert info_one == info_two
    assert info_one.signing_time == moment.replace(microsecond=0)
    assert info_one.signature_id == "sig-0123456789abcdef"
    assert info_one.digest == pybase64.b64encode(sign_module.document_digest(doc)).decode()
    unsigned = to_bytes(doc)
    signature_start = one.getvalue().index(b"<Signature ")
    signature_end = one.getvalue().index(b"</Signature>") + len(b"</Signature>")
    assert one.getvalue()[:signature_start] + one.getvalue()[signature_end:] == unsigned


def test_signature_ids_are_random_and_never_repeated():
    seen = [sign_module._new_token() for _ in range(2000)]
    assert len(set(seen)) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{16}", token) for token in seen)


def test_the_signing_time_is_now_in_vietnam_to_the_second(rsa_key):
    before = m.now_vn()
    info = sign_module.sign(golden_edoc(True), rsa_key, io.BytesIO())
    after = m.now_vn()
    assert before <= info.signing_time <= after
    assert info.signing_time.microsecond == 0 and info.signing_time.tzinfo is m.VN_TZ
    assert m.now_vn().utcoffset() == dt.timedelta(hours=7) and m.now_vn().microsecond == 0


def test_signature_element_follows_a_changed_chain_or_certificate(dev_pki):
    key = agency_key(dev_pki)
    moment = dt.datetime(2024, 5, 6, tzinfo=UTC)
    first, info = sign_module.signature_element(key, b"\0" * 32, moment)
    assert first.count(b"<X509Certificate>") == 2  # signer and issuing CA, never the root
    assert info.signer_subject == key.certificate.subject.rfc4514_string()
    assert info.signer_serial == format(key.certificate.serial_number, "x")
    key.chain = []
    alone, _ = sign_module.signature_element(key, b"\0" * 32, moment)
    assert alone.count(b"<X509Certificate>") == 1
    other = agency_key(dev_pki, "000.00.00.G22")
    key.certificate, key._key, key._plan = other.certificate, other._key, other._plan
    _, info = sign_module.signature_element(key, b"\0" * 32, moment)
    assert info.signer_subject == other.certificate.subject.rfc4514_string()
    assert info.signer_serial == format(other.certificate.serial_number, "x")


# --------------------------------------------------------------------------- key wrapper


def test_prepared_rsa_call_equals_a_direct_call(rsa_key):
    data = b"<SignedInfo>...</SignedInfo>"
    assert rsa_key.sign(data) == rsa_key._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("algorithm", [RSA_PSS_SHA256, RSA_SHA256])
def test_rsa_signatures_verify_and_follow_a_changed_algorithm(dev_pki, algorithm):
    key = agency_key(dev_pki, algorithm=algorithm)
    data = b"signed info"
    assert verify_signature_value(key.public_key(), algorithm, key.sign(data), data)
    other = RSA_SHA256 if algorithm == RSA_PSS_SHA256 else RSA_PSS_SHA256
    key.algorithm = other  # replaced after load: the call is prepared again for it
    assert verify_signature_value(key.public_key(), other, key.sign(data), data)
    assert not verify_signature_value(key.public_key(), algorithm, key.sign(data), data)


def test_ecdsa_signature_is_raw_r_s_and_follows_a_replaced_key(dev_pki):
    key = ec_agency_key(dev_pki)
    assert key.algorithm == ECDSA_SHA256
    data = b"signed info"
    value = key.sign(data)
    assert len(value) == 64 and verify_signature_value(key.public_key(), ECDSA_SHA256, value, data)
    replacement = ec.generate_private_key(ec.SECP256R1())
    key._key = replacement  # not the key the call was prepared for
    value = key.sign(data)
    assert len(value) == 64
    assert verify_signature_value(replacement.public_key(), ECDSA_SHA256, value, data)


def test_a_key_built_in_code_signs_like_a_loaded_one(dev_pki):
    agency = dev_pki.agencies["000.00.00.H16"]
    key = SoftwareKey(agency.private_key(), agency.certificate, [dev_pki.issuing_ca.certificate])
    doc = sample_edoc()
    out = io.BytesIO()
    info = sign_module.sign(doc, key, out)
    assert info.algorithm == RSA_SHA256 and out.getvalue().count(b"<SignatureValue>") == 1
