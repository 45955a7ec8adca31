"""Signature wrapping and related tricks: each is refused, or yields only the signed content.

Every attack starts from a genuinely signed document and, where the attack needs it, re-signs
SignedInfo with the real key (so the only thing wrong is the attack itself). Each case runs
through both reading paths: libxml2 in memory and the streaming reader used for large files.
"""

from __future__ import annotations

import copy

import pytest
from lxml import etree

from connector.edxml.errors import EdxmlError
from connector.edxml.model import Attachment, BytesData
from connector.edxml.samples import sample_edoc
from connector.signing.policy import MODES, SenderRule, SignaturePolicy
from connector.signing.sign import sign
from connector.signing.verify import TrustOptions, verify
from tests.support.dsig_tools import (
    D,
    DSIG,
    E,
    EXC,
    READ_MODES,
    agency_key,
    b64,
    detach,
    document_digest,
    element_digest,
    header,
    message_header,
    reference,
    resign,
    signature,
    signed_bytes,
    to_xml,
    tree,
    xmlsec1_verify,
)

FORGED_SUBJECT = "V/v chuyển 10 tỷ đồng vào tài khoản số 0000000000"


@pytest.fixture(scope="module")
def message():
    return sample_edoc()


@pytest.fixture(scope="module")
def key(dev_pki):
    return agency_key(dev_pki)


@pytest.fixture(scope="module")
def signed(message, key):
    return signed_bytes(message, key)


@pytest.fixture
def trust(trust_store):
    return TrustOptions(trust_store)


def _verify(data: bytes, trust, read_mode: str, mode: str = "require"):
    with verify(data, trust, policy=SignaturePolicy(SenderRule(mode)), limits=READ_MODES[read_mode]) as result:
        return result


def _forged_header(root):
    forged = copy.deepcopy(message_header(root))
    forged.find(f"{E}Subject").text = FORGED_SUBJECT
    return forged


def _replace(old, new):
    new.tail = old.tail
    old.getparent().replace(old, new)


def _object(sig):
    obj = etree.SubElement(sig, f"{D}Object", nsmap={None: DSIG})
    obj.set("Id", "wrapped")
    return obj


# --------------------------------------------------------------------------- the attacks


def moved_element(signed, key):
    """(a) the signed MessageHeader moved into Signature/Object, a forged one in its place."""
    root = tree(signed)
    real = message_header(root)
    forged = _forged_header(root)
    _replace(real, forged)
    _object(signature(root)).append(real)
    return to_xml(root)


def moved_element_header_reference(signed, key):
    """(a') the classic form: the signature references MessageHeader by Id, which is moved."""
    root = tree(signed)
    real = message_header(root)
    real.set("Id", "mh")
    sig = signature(root)
    signed_info = sig.find(f"{D}SignedInfo")
    for ref in signed_info.findall(f"{D}Reference"):
        signed_info.remove(ref)
    signed_info.append(reference("#mh", element_digest(real), [EXC]))
    resign(sig, key)
    forged = _forged_header(root)
    del forged.attrib["Id"]
    _replace(real, forged)
    _object(sig).append(real)
    return to_xml(root)


def duplicated_element_before(signed, key):
    """(b) a second, forged MessageHeader before the real one (readers take the first)."""
    root = tree(signed)
    real = message_header(root)
    forged = _forged_header(root)
    forged.tail = real.getparent().text
    real.addprevious(forged)
    return to_xml(root)


def duplicated_element_after(signed, key):
    """(b') the forged MessageHeader after the real one."""
    root = tree(signed)
    real = message_header(root)
    forged = _forged_header(root)
    forged.tail = real.tail
    real.addnext(forged)
    return to_xml(root)


def _extra_reference(signed, key, uri: str | None, target_id: bool = True):
    root = tree(signed)
    if target_id:
        message_header(root).set("Id", "mh")
    sig = signature(root)
    signed_info = sig.find(f"{D}SignedInfo")
    whole = next(r for r in signed_info.findall(f"{D}Reference") if r.get("URI") == "")
    whole.find(f"{D}DigestValue").text = b64(document_digest(root, sig))  # the Id is signed content
    if uri is not None:
        target = message_header(root) if uri == "#mh" else None
        digest = element_digest(target) if target is not None else b"\0" * 32
        signed_info.append(reference(uri, digest, [EXC] if uri else [
            "http://www.w3.org/2000/09/xmldsig#enveloped-signature", EXC]))
    resign(sig, key)
    return to_xml(root)


def extra_reference_outside(signed, key):
    """(c) a correctly signed extra Reference to MessageHeader, outside the Signature."""
    return _extra_reference(signed, key, "#mh")


def extra_reference_external(signed, key):
    """(c') a correctly signed extra Reference to an external URI."""
    return _extra_reference(signed, key, "http://example.invalid/other.xml", target_id=False)


def second_whole_reference(signed, key):
    """(c'') two Reference URI="" (only one may cover the document)."""
    root = tree(signed)
    sig = signature(root)
    signed_info = sig.find(f"{D}SignedInfo")
    whole = next(r for r in signed_info.findall(f"{D}Reference") if r.get("URI") == "")
    signed_info.append(copy.deepcopy(whole))
    resign(sig, key)
    return to_xml(root)


def copy_in_body(signed, key):
    """(e) a copy of the Signature inside edXMLBody."""
    root = tree(signed)
    body = root.find(f"{E}edXMLEnvelope/{E}edXMLBody")
    body.append(copy.deepcopy(signature(root)))
    return to_xml(root)


def copy_in_header(signed, key):
    """(e') a forged Signature (another SignatureValue) as well, in edXMLHeader, before the real one."""
    root = tree(signed)
    real = signature(root)
    forged = copy.deepcopy(real)
    forged.find(f"{D}SignatureValue").text = "AAAA" + forged.find(f"{D}SignatureValue").text[4:]
    forged.tail = real.getprevious().tail
    real.addprevious(forged)
    return to_xml(root)


def copy_nested(signed, key):
    """(e'') a copy of the Signature inside its own Object."""
    root = tree(signed)
    sig = signature(root)
    _object(sig).append(copy.deepcopy(sig))
    return to_xml(root)


def copy_in_attachments(signed, key):
    """(e''') a copy of the Signature inside AttachmentEncoded."""
    root = tree(signed)
    root.find(f"{E}AttachmentEncoded").append(copy.deepcopy(signature(root)))
    return to_xml(root)


def _moved_signature(signed, place):
    root = tree(signed)
    sig = signature(root)
    detach(sig)
    place(root, sig)
    return to_xml(root)


def signature_last_child_of_root(signed, key):
    """(f) the Signature moved to the end of the root (where generic enveloped signers put it)."""
    return _moved_signature(signed, lambda root, sig: root.append(sig))


def signature_in_message_header(signed, key):
    """(f') the Signature moved into MessageHeader."""
    return _moved_signature(signed, lambda root, sig: message_header(root).append(sig))


def signature_first_in_header(signed, key):
    """(f'') the Signature still in edXMLHeader, but not its last child."""
    return _moved_signature(signed, lambda root, sig: header(root).insert(0, sig))


def signature_in_body(signed, key):
    """(f''') the Signature moved into edXMLBody."""
    return _moved_signature(signed, lambda root, sig: root.find(f"{E}edXMLEnvelope/{E}edXMLBody").append(sig))


def _transplant(signed, key, other_message):
    """(g) a valid signature of ``signed`` pasted into another document's signature slot."""
    donor = signature(tree(signed))
    other = tree(signed_bytes(other_message, key))
    _replace(signature(other), donor)
    return to_xml(other)


def transplanted_other_subject(signed, key):
    forged = sample_edoc()
    forged.subject = FORGED_SUBJECT
    return _transplant(signed, key, forged)


def transplanted_other_number(signed, key):
    return _transplant(signed, key, sample_edoc(number=2))


DIGEST = "digest mismatch"
PLACE = "not in edXMLHeader"
#: attack -> (how, what the verdict's reason must say)
INVALID = {
    "a-moved-element": (moved_element, DIGEST),
    "b-duplicated-before": (duplicated_element_before, DIGEST),
    "b-duplicated-after": (duplicated_element_after, DIGEST),
    "c-extra-reference": (extra_reference_outside, "inside the Signature"),
    "c-external-reference": (extra_reference_external, "only the whole document"),
    "c-second-whole-reference": (second_whole_reference, 'more than one Reference URI=""'),
    "e-copy-in-body": (copy_in_body, "2 Signature elements"),
    "e-forged-in-header": (copy_in_header, "2 Signature elements"),
    "e-copy-nested": (copy_nested, "2 Signature elements"),
    "e-copy-in-attachments": (copy_in_attachments, "2 Signature elements"),
    "f-last-child-of-root": (signature_last_child_of_root, PLACE),
    "f-in-message-header": (signature_in_message_header, PLACE),
    "f-first-in-header": (signature_first_in_header, "not the last child"),
    "f-in-body": (signature_in_body, PLACE),
    "g-transplanted-subject": (transplanted_other_subject, DIGEST),
    "g-transplanted-number": (transplanted_other_number, DIGEST),
}


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
@pytest.mark.parametrize("attack", sorted(INVALID))
def test_wrapping_attack_is_invalid(signed, key, trust, attack, read_mode):
    how, reason = INVALID[attack]
    data = how(signed, key)
    result = _verify(data, trust, read_mode)
    assert result.verdict.status == "invalid", result.verdict.reason
    assert reason in result.verdict.reason
    assert not result.decision.accepted
    assert not _verify(data, trust, read_mode, "if-present").decision.accepted


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
def test_moved_element_with_header_reference_is_never_accepted(signed, key, trust, read_mode):
    """The classic wrapping form against an Id reference: only 'partial', never accepted."""
    data = moved_element_header_reference(signed, key)
    result = _verify(data, trust, read_mode)
    assert result.verdict.status in ("partial", "invalid"), result.verdict.reason
    for mode in ("require", "if-present"):
        assert not _verify(data, trust, read_mode, mode).decision.accepted


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
def test_resigned_document_without_extra_reference_is_valid(signed, key, trust, read_mode):
    """Control for the extra-reference attacks: the same surgery minus the extra Reference verifies,
    so it is the extra Reference alone that makes them invalid."""
    data = _extra_reference(signed, key, None)
    result = _verify(data, trust, read_mode)
    assert result.verdict.status == "valid", result.verdict.reason
    assert message_header(tree(data)).get("Id") == "mh"


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
def test_forged_reader_sees_the_forgery(signed, key, trust, read_mode):
    """Sanity: in the moved/duplicated attacks the parser would read the forged subject, which is
    exactly why the verdict must refuse them."""
    for attack in (moved_element, duplicated_element_before):
        result = _verify(attack(signed, key), trust, read_mode, "record")
        assert result.decision.accepted  # record never blocks...
        assert result.verdict.status == "invalid"  # ...but says the content is not what was signed
        assert result.parsed.message.subject == FORGED_SUBJECT


# --------------------------------------------------------------------------- stripping and downgrades


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
def test_stripped_or_renamespaced_signature_is_refused_under_require(signed, trust, read_mode):
    root = tree(signed)
    message_header(root).find(f"{E}Subject").text = FORGED_SUBJECT
    sig = signature(root)
    detach(sig)
    stripped = to_xml(root)
    result = _verify(stripped, trust, read_mode)
    assert result.verdict.status == "absent"
    assert not result.decision.accepted

    header(root).append(etree.fromstring(etree.tostring(sig).replace(DSIG.encode(), b"urn:not-dsig")))
    renamed = to_xml(root)
    result = _verify(renamed, trust, read_mode)
    assert result.verdict.status == "placeholder"
    assert not result.decision.accepted


# --------------------------------------------------------------------------- comments and other lexical forms


def _subject_with(signed: bytes, replacement) -> bytes:
    """``signed`` with the Subject's text (as written, str) passed through ``replacement``."""
    start = signed.index(b"<edXML:Subject>") + len(b"<edXML:Subject>")
    end = signed.index(b"</edXML:Subject>")
    return signed[:start] + replacement(signed[start:end].decode("utf-8")).encode("utf-8") + signed[end:]


def _comment_in_attachment(signed: bytes) -> bytes:
    start = signed.index(b">", signed.index(b"<edXML:ContentTransferEncoded")) + 1
    return signed[:start + 40] + b"<!-- x -->" + signed[start + 40:]


LEXICAL = {
    "comment-in-subject": lambda d: _subject_with(d, lambda s: s[:10] + "<!-- x -->" + s[10:]),
    "two-comments-in-subject": lambda d: _subject_with(d, lambda s: "<!--a-->" + s[:5] + "<!-- b -->" + s[5:] + "<!--c-->"),
    "comment-in-organ-name": lambda d: d.replace(b"<edXML:OrganName>UBND", b"<edXML:OrganName>UB<!-- x -->ND", 1),
    "comment-in-attachment": _comment_in_attachment,
    "cdata-in-subject": lambda d: _subject_with(d, lambda s: s[:10] + "<![CDATA[" + s[10:20] + "]]>" + s[20:]),
    "character-reference-in-subject": lambda d: _subject_with(d, lambda s: "&#x56;" + s[1:]),
}


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
@pytest.mark.parametrize("form", sorted(LEXICAL))
def test_lexical_variants_stay_valid_and_whole(signed, message, trust, form, read_mode):
    """Comments, CDATA and character references do not change canonical XML, so the signature
    still holds; the model must then carry the whole signed text, not a piece of it."""
    data = LEXICAL[form](signed)
    assert data != signed
    result = _verify(data, trust, read_mode)
    assert result.verdict.status == "valid", result.verdict.reason
    assert result.decision.accepted
    parsed = result.parsed.message
    assert parsed.subject == message.subject
    assert parsed.from_.organ_name == message.from_.organ_name
    assert [(a.name, a.size, a.sha256) for a in parsed.attachments] == \
        [(a.name, a.size, a.sha256) for a in message.attachments]
    assert parsed == message


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
def test_every_policy_refuses_nothing_silently(signed, key, trust, read_mode):
    """Under record the invalid verdict is still reported (never turned into 'valid')."""
    data = moved_element(signed, key)
    for mode in MODES:
        result = _verify(data, trust, read_mode, mode)
        assert result.verdict.status == "invalid"
        assert result.decision.accepted == (mode == "record")
        if mode == "record":
            assert result.decision.warning


# --------------------------------------------------------------------------- large documents

CHUNK = 256 * 1024  # what the streaming reader reads from a file at a time


@pytest.fixture(scope="module")
def large(tmp_path_factory, key):
    """A document whose attachment (4.5 MB) takes the two-pass streaming signer."""
    message = sample_edoc()
    payload = bytes(range(256)) * (4_500_000 // 256)
    message.attachments = [Attachment("big", "ho-so.pdf", "application/pdf", "Hồ sơ kèm theo", "plain",
                                      data=BytesData(payload))]
    message.with_manifest()
    path = tmp_path_factory.mktemp("large") / "signed.edxml"
    sign(message, key, path)
    return message, path


def _payload_span(data: bytes) -> tuple[int, int]:
    start = data.index(b">", data.index(b"<edXML:ContentTransferEncoded")) + 1
    return start, data.index(b"</edXML:ContentTransferEncoded>")


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
def test_large_document_is_valid_and_whole(large, trust, read_mode):
    message, path = large
    with verify(path, trust, policy=SignaturePolicy(SenderRule("require")), limits=READ_MODES[read_mode]) as result:
        assert result.verdict.status == "valid", result.verdict.reason
        assert result.parsed.message == message
        assert result.parsed.message.attachments[0].sha256 == message.attachments[0].sha256


def _variant_file(path, tmp_path, change) -> object:
    data = path.read_bytes()
    out = tmp_path / "variant.edxml"
    out.write_bytes(change(data))
    return out


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
def test_large_document_one_byte_deep_in_the_payload(large, trust, tmp_path, read_mode, where):
    message, path = large

    def change(data):
        start, end = _payload_span(data)
        at = start + int((end - start) * where)
        while not data[at:at + 1].isalnum():
            at += 1
        return data[:at] + (b"B" if data[at:at + 1] != b"B" else b"C") + data[at + 1:]

    variant = _variant_file(path, tmp_path, change)
    with verify(variant, trust, policy=SignaturePolicy(SenderRule("require")), limits=READ_MODES[read_mode]) as result:
        assert result.verdict.status == "invalid", result.verdict.reason
        assert not result.decision.accepted


BOUNDARY_FORMS = {
    "comment": lambda data, at: data[:at] + b"<!-- x -->" + data[at:],
    "tight-comment": lambda data, at: data[:at] + b"<!--x-->" + data[at:],
    "cdata": lambda data, at: data[:at] + b"<![CDATA[" + data[at:at + 9] + b"]]>" + data[at + 9:],
    "character-reference": lambda data, at: data[:at] + b"&#%d;" % data[at] + data[at + 1:],
}


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
@pytest.mark.parametrize("form", sorted(BOUNDARY_FORMS))
@pytest.mark.parametrize("shift", [-7, -5, 0])
def test_large_document_lexical_forms_at_chunk_boundaries(large, trust, tmp_path, read_mode, form, shift):
    """Markup inside the base64 right at a read-chunk boundary (the chunk may end inside it):
    the document is well-formed and canonically unchanged, so it stays valid, payload intact."""
    message, path = large

    def change(data):
        start, end = _payload_span(data)
        at = (start // CHUNK + 8) * CHUNK + shift
        assert start < at < end
        return BOUNDARY_FORMS[form](data, at)

    variant = _variant_file(path, tmp_path, change)
    with verify(variant, trust, policy=SignaturePolicy(SenderRule("require")), limits=READ_MODES[read_mode]) as result:
        assert result.verdict.status == "valid", result.verdict.reason
        attachment = result.parsed.message.attachments[0]
        assert (attachment.size, attachment.sha256) == (message.attachments[0].size, message.attachments[0].sha256)


def _shifted(data: bytes, target: int, position: int) -> bytes:
    """``data`` with a comment after the XML declaration that moves byte ``position`` to ``target``
    (comments are outside canonical XML: the signature is unaffected)."""
    declaration = data.index(b"\n") + 1
    size = target - position
    assert size >= 8
    return data[:declaration] + b"<!--" + b"p" * (size - 7) + b"-->" + data[declaration:]


@pytest.mark.parametrize("read_mode", sorted(READ_MODES))
@pytest.mark.parametrize("split", [3, 10, 25])
def test_large_document_end_tag_across_a_chunk_boundary(large, trust, tmp_path, read_mode, split):
    """A correctly signed, well-formed document whose payload end tag straddles a read chunk."""
    message, path = large

    def change(data):
        end = data.index(b"</edXML:ContentTransferEncoded>")
        return _shifted(data, (end // CHUNK + 2) * CHUNK - split, end)

    variant = _variant_file(path, tmp_path, change)
    with verify(variant, trust, policy=SignaturePolicy(SenderRule("require")), limits=READ_MODES[read_mode]) as result:
        assert result.verdict.status == "valid", result.verdict.reason
        assert result.parsed.message.attachments[0].sha256 == message.attachments[0].sha256


#: markup opened so that a read chunk ends inside it, and what closes it after the base64
HIDING = {
    "comment": (b"<!--x", b"<-->"),
    "comment-with-a-fake-start-tag": (b"<!--<ContentTransferEncoded>", b"<-->"),
    "comment-with-a-fake-prefixed-start-tag": (b'<!--<edXML:ContentTransferEncoded a="1">AA', b"<-->"),
    "processing-instruction-with-a-fake-start-tag": (b"<?hide <ContentTransferEncoded>", b"<?>"),
}


@pytest.mark.parametrize("hiding", sorted(HIDING))
def test_reading_paths_agree_on_markup_opened_at_a_chunk_boundary(large, trust, tmp_path, dev_pki, hiding):
    """A comment (or PI) opens inside the payload so that a read chunk ends inside it, and closes
    after the base64. For XML (libxml2, xmlsec1, any receiver) the rest of the base64 is inside
    that comment, so the attachment is cut short and the digest fails. The streaming reader must
    see the same document: one file, one verdict, whatever its size."""
    opening, closing = HIDING[hiding]

    def change(data):
        start, end = _payload_span(data)
        boundary = (start // CHUNK + 8) * CHUNK
        cut = boundary - len(opening)
        return data[:cut] + opening + data[cut:end] + closing + data[end:]

    variant = _variant_file(large[1], tmp_path, change)
    verdicts = {}
    for read_mode, limits in READ_MODES.items():
        try:
            with verify(variant, trust, policy=SignaturePolicy(SenderRule("require")), limits=limits) as result:
                verdicts[read_mode] = result.verdict.status
                assert not result.decision.accepted, (read_mode, result.verdict.reason)
        except EdxmlError:
            verdicts[read_mode] = "unreadable"
    assert verdicts["memory"] == "invalid"
    assert xmlsec1_verify(variant.read_bytes(), tmp_path, dev_pki).returncode != 0  # a third opinion
    assert verdicts["stream"] in ("invalid", "unreadable"), verdicts
