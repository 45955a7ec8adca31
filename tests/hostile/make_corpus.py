#!/usr/bin/env python3
"""Regenerate the hostile edXML corpus in this folder (``python tests/hostile/make_corpus.py``).

Every file starts from one valid document (the connector's own sample, with fixed dates so
the output is reproducible) and changes exactly one thing. ``README.md`` beside this script
lists each file, the attack and the rejection expected; ``tests/edxml/test_hostile.py`` holds
the assertions. Files that would be big (over 100,000 elements, a large ZIP bomb) are made
by the tests at run time, not here.

``__PORT__`` in a file is a placeholder: the tests replace it with the port of a loopback
HTTP server they start, and assert that the server saw no request at all.
"""

from __future__ import annotations

import base64
import io
import re
import sys
import zipfile
from datetime import date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connector.edxml.build import to_bytes  # noqa: E402
from connector.edxml.files import default_document_id  # noqa: E402
from connector.edxml.model import VN_TZ, Edoc  # noqa: E402
from connector.edxml.samples import sample_edoc  # noqa: E402

DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'
NS = b"http://www.mic.gov.vn/TBT/QCVN_102_2016"
SUBJECT_OPEN = b"<edXML:Subject>"
SUBJECT_CLOSE = b"</edXML:Subject>"
LOOPBACK = b"http://127.0.0.1:__PORT__"


def base_doc() -> Edoc:
    """The connector's sample document with fixed dates and a plainly attached PDF."""
    doc = sample_edoc()
    doc.promulgation.date = date(2024, 5, 20)
    doc.due_date = date(2024, 12, 31)
    doc.trace_headers[0].timestamp = datetime(2024, 5, 20, 8, 30, 0, tzinfo=VN_TZ)
    doc.attachments[0].packaging = "plain"
    doc.document_id = default_document_id(doc)
    return doc.with_manifest()


def base_bytes() -> bytes:
    return to_bytes(base_doc())


def body_after_decl(data: bytes) -> bytes:
    assert data.startswith(DECL)
    return data[len(DECL) :]


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) >= 1, old
    return data.replace(old, new, 1)


def replace_subject(data: bytes, new_subject: bytes) -> bytes:
    pattern = re.escape(SUBJECT_OPEN) + b".*?" + re.escape(SUBJECT_CLOSE)
    return re.sub(pattern, lambda _: SUBJECT_OPEN + new_subject + SUBJECT_CLOSE, data, count=1)


def with_doctype(doctype: bytes, subject: bytes | None = None) -> bytes:
    """The base document with ``doctype`` right after the XML declaration."""
    data = base_bytes()
    if subject is not None:
        data = replace_subject(data, subject)
    return DECL + doctype + b"\n" + body_after_decl(data)


_CODECS = {
    "UTF-16LE": ("utf-16-le", b"\xff\xfe"),
    "UTF-16BE": ("utf-16-be", b"\xfe\xff"),
    "UTF-32": ("utf-32-le", b"\xff\xfe\x00\x00"),
}


def reencode(data: bytes, encoding: str) -> bytes:
    """The UTF-8 document ``data`` in UTF-16 or UTF-32, with a byte-order mark and a matching
    declaration (``UTF-16LE`` and ``UTF-16BE`` declare ``UTF-16``, as producers do)."""
    codec, bom = _CODECS[encoding]
    label = "UTF-32" if encoding == "UTF-32" else "UTF-16"
    text = data.decode("utf-8").replace('encoding="UTF-8"', f'encoding="{label}"', 1)
    return bom + text.encode(codec)


def with_attachment_name(name: bytes) -> bytes:
    """The base document whose attachment (and its manifest entry) carries ``name``."""
    return base_bytes().replace(b"cong-van-1.pdf", name)


def payload_text(data: bytes) -> bytes:
    match = re.search(rb"<edXML:ContentTransferEncoded[^>]*>([^<]*)</edXML:ContentTransferEncoded>", data)
    assert match
    return match.group(1)


def zip_bomb_payload(zeros: int) -> bytes:
    """A one-entry deflated ZIP whose entry is ``zeros`` zero bytes (written in chunks)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        info = zipfile.ZipInfo("cong-van-1.pdf", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as entry:
            block = bytes(1 << 20)
            left = zeros
            while left > 0:
                entry.write(block[: min(left, len(block))])
                left -= len(block)
    return buffer.getvalue()


def zip_slip_payload(entry_name: str, content: bytes) -> bytes:
    """A one-entry stored ZIP whose entry name tries to climb out of any folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo(entry_name, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()


def with_zip_payload(payload: bytes) -> bytes:
    """The base document whose attachment travels as ``application/zip`` with ``payload``."""
    data = base_bytes()
    for tag in (b"edXML:ContentType", b"ContentType"):
        data = data.replace(b"<%s>application/pdf</%s>" % (tag, tag), b"<%s>application/zip</%s>" % (tag, tag))
    return data.replace(payload_text(data), base64.b64encode(payload), 1)


# --------------------------------------------------------------------------- the corpus


def corpus() -> dict[str, bytes]:
    base = base_bytes()
    files: dict[str, bytes] = {}

    # -- DTDs and entities: refused at the DOCTYPE, nothing read, nothing fetched ----------
    files["xxe-local-file.edxml"] = with_doctype(
        b'<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', subject=b"&xxe;"
    )
    files["xxe-network.edxml"] = with_doctype(
        b'<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "' + LOOPBACK + b'/xxe-entity">]>', subject=b"&xxe;"
    )
    files["external-dtd.edxml"] = with_doctype(b'<!DOCTYPE edXML SYSTEM "' + LOOPBACK + b'/edxml.dtd">')
    local_dtd = with_doctype(b'<!DOCTYPE edXML SYSTEM "file:///etc/passwd">')
    files["external-dtd-local.edxml"] = local_dtd
    # The same attacks in UTF-16 and UTF-32: a check that looks for the ASCII bytes
    # "<!DOCTYPE" does not see them, the XML parser does.
    files["xxe-local-file-utf16.edxml"] = reencode(files["xxe-local-file.edxml"], "UTF-16LE")
    files["external-dtd-local-utf16be.edxml"] = reencode(local_dtd, "UTF-16BE")
    files["external-dtd-local-utf32.edxml"] = reencode(local_dtd, "UTF-32")
    files["parameter-entity.edxml"] = with_doctype(
        b'<!DOCTYPE edXML [\n<!ENTITY % remote SYSTEM "' + LOOPBACK + b'/evil.dtd">\n%remote;\n]>',
        subject=b"&exfiltrate;",
    )
    lol = [b'<!ENTITY lol "lol">']
    for level in range(1, 10):
        prev = b"lol" if level == 1 else b"lol%d" % (level - 1)
        lol.append(b'<!ENTITY lol%d "%s">' % (level, (b"&" + prev + b";") * 10))
    files["billion-laughs.edxml"] = with_doctype(
        b"<!DOCTYPE edXML [\n" + b"\n".join(lol) + b"\n]>", subject=b"&lol9;"
    )
    files["quadratic-blowup.edxml"] = with_doctype(
        b'<!DOCTYPE edXML [<!ENTITY a "' + b"A" * 50_000 + b'">]>', subject=b"&a;" * 2_000
    )

    # -- size and shape limits -----------------------------------------------------------
    files["deep-nesting.edxml"] = replace_subject(base, b"<x>" * 5_000 + b"deep" + b"</x>" * 5_000)
    files["huge-attribute.edxml"] = replace_once(
        base, SUBJECT_OPEN, b'<edXML:Subject note="' + b"A" * 70_000 + b'">'
    )

    # -- encodings: broken UTF-8 is refused; BOMs and UTF-16 are fine ---------------------
    files["invalid-utf8.edxml"] = replace_subject(base, b"V/v k\xc3\x28t n\xff\xfei")
    files["ok-utf8-bom.edxml"] = b"\xef\xbb\xbf" + base
    files["ok-utf16le-bom.edxml"] = reencode(base, "UTF-16LE")
    files["ok-utf16be-bom.edxml"] = reencode(base, "UTF-16BE")

    # -- processing instructions and comments: harmless, accepted -------------------------
    pi = DECL + b'<?xml-stylesheet type="text/xsl" href="' + LOOPBACK + b'/style.xsl"?>\n<!-- a comment before the root -->\n'
    body = body_after_decl(base)
    body = replace_once(body, b"<edXML:MessageHeader>", b"<edXML:MessageHeader><!-- a plain comment --><?vendor hint?>")
    body = replace_once(body, b"</edXML:ToPlaces>", b"</edXML:ToPlaces>\n        <!-- <edXML:Subject>commented out</edXML:Subject> -->")
    files["ok-pi-and-comments.edxml"] = pi + body + b"\n<!-- a comment after the root --><?trailing pi?>\n"

    # -- attachment content ----------------------------------------------------------------
    encoded = payload_text(base)
    files["base64-bad-char.edxml"] = base.replace(encoded, encoded[:100] + b"!" + encoded[101:], 1)
    files["base64-truncated.edxml"] = base.replace(encoded, encoded.rstrip(b"=")[:-3], 1)
    files["zip-bomb.edxml"] = with_zip_payload(zip_bomb_payload(20 * 1024 * 1024))
    pdf = base64.b64decode(encoded)
    files["ok-zip-slip-entry-name.edxml"] = with_zip_payload(zip_slip_payload("../../../../tmp/zip-slip-owned.pdf", pdf))

    # -- attachment names that would escape the extraction folder ------------------------
    files["name-traversal-unix.edxml"] = with_attachment_name(b"../../etc/passwd")
    files["name-traversal-windows.edxml"] = with_attachment_name(b"..\\..\\win.ini")
    files["name-absolute.edxml"] = with_attachment_name(b"/abs/path")
    files["name-control-char.edxml"] = with_attachment_name(b"cong-van&#x1;.pdf")
    files["name-device-con.edxml"] = with_attachment_name(b"CON.pdf")

    # -- manifest and attachments that do not match ---------------------------------------
    ghost_ref = (
        b"\n        <edXML:Reference>"
        b"\n          <edXML:ContentId>cid:ghost</edXML:ContentId>"
        b"\n          <edXML:ContentType>application/pdf</edXML:ContentType>"
        b"\n          <edXML:Description>Phantom</edXML:Description>"
        b"\n          <edXML:AttachmentName>phantom.pdf</edXML:AttachmentName>"
        b"\n        </edXML:Reference>"
    )
    files["manifest-reference-without-attachment.edxml"] = replace_once(
        base, b"\n      </edXML:edXMLManifest>", ghost_ref + b"\n      </edXML:edXMLManifest>"
    )
    stowaway = (
        b"\n    <Attachment>"
        b"\n      <ContentId>cid:stowaway</ContentId>"
        b"\n      <AttachmentName>stowaway.pdf</AttachmentName>"
        b"\n      <Description>Not in the manifest</Description>"
        b"\n      <ContentType>application/pdf</ContentType>"
        b'\n      <edXML:ContentTransferEncoded xmlns:edXML="' + NS + b'">' + encoded + b"</edXML:ContentTransferEncoded>"
        b"\n    </Attachment>"
    )
    files["manifest-attachment-without-reference.edxml"] = replace_once(
        base, b"\n  </AttachmentEncoded>", stowaway + b"\n  </AttachmentEncoded>"
    )

    # -- truncated transfer ------------------------------------------------------------------
    cut = base.index(b"</edXML:edXMLEnvelope>") + len(b"</edXML:edXMLEnvelope>")
    files["truncated.edxml"] = base[:cut] + b"\n"

    # -- constructs a careless validator would act on -------------------------------------
    files["xinclude-local-file.edxml"] = replace_once(
        base,
        b"</edXML:ToPlaces>",
        b'</edXML:ToPlaces>\n        <xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>',
    )
    files["schema-location-network.edxml"] = replace_once(
        base,
        b'<edXML xmlns="' + NS + b'">',
        b'<edXML xmlns="' + NS + b'" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:schemaLocation="' + NS + b" " + LOOPBACK + b'/edxml.xsd">',
    )
    return files


def main() -> None:
    for name, data in corpus().items():
        assert len(data) < 200_000, (name, len(data))
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
