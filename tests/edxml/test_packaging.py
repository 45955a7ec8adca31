"""The VNPT ZIP packaging: what Java receivers (ZipInputStream) can read, and safe unwrapping."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import struct
import subprocess
import zipfile
import zlib

import pytest

from connector.edxml.model import BytesData, SpooledData
from connector.edxml.packaging import UnwrapError, ZipLimits, unwrap, write_zipped

CONTENT = b"%PDF-1.4 signed content " * 500


def _zipped(name: str = "cong-văn.pdf", content: bytes = CONTENT) -> bytes:
    out = io.BytesIO()
    write_zipped(name, BytesData(content), out)
    return out.getvalue()


def _spooled(data: bytes, in_memory: bool = True) -> SpooledData:
    spooled = SpooledData() if in_memory else SpooledData(max_memory=0)
    spooled.write(data)
    spooled.finish()
    return spooled


def test_local_header_carries_crc_and_sizes_without_a_data_descriptor():
    data = _zipped()
    signature, _version, flags, method = struct.unpack("<IHHH", data[:10])
    crc, compressed, size = struct.unpack("<III", data[14:26])
    assert signature == 0x04034B50 and method == 0  # stored
    assert not flags & 0x08, "a data descriptor makes Java's ZipInputStream refuse a stored entry"
    assert flags & 0x800  # UTF-8 name
    assert (crc, compressed, size) == (zlib.crc32(CONTENT), len(CONTENT), len(CONTENT))
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist() == ["cong-văn.pdf"] and archive.read("cong-văn.pdf") == CONTENT
    assert archive.testzip() is None


def test_same_content_zips_to_the_same_bytes():
    assert _zipped() == _zipped()


@pytest.mark.ci_may_skip
def test_java_zip_input_stream_reads_our_zip(tmp_path):
    if not (shutil.which("javac") and shutil.which("java")):
        pytest.skip("no JDK on this machine")
    source = tmp_path / "ReadZip.java"
    source.write_text(
        "import java.util.zip.*; import java.io.*;\n"
        "public class ReadZip { public static void main(String[] a) throws Exception {\n"
        "  try (ZipInputStream z = new ZipInputStream(new FileInputStream(a[0]))) {\n"
        "    ZipEntry e = z.getNextEntry(); byte[] b = z.readAllBytes();\n"
        "    System.out.println(e.getName() + \" \" + b.length); } } }\n"
    )
    subprocess.run(["javac", str(source)], check=True, cwd=tmp_path, timeout=120)
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zipped())
    result = subprocess.run(["java", "-cp", str(tmp_path), "ReadZip", str(archive)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cong-văn.pdf {len(CONTENT)}"


def test_stored_entry_is_served_as_a_slice_with_its_hash():
    inner = unwrap(_spooled(_zipped()))
    with inner.open() as fh:
        assert fh.read() == CONTENT
    assert inner.size == len(CONTENT)


def test_corrupt_stored_entry_is_refused():
    data = bytearray(_zipped())
    data[100] ^= 0xFF
    with pytest.raises(UnwrapError, match="CRC"):
        unwrap(_spooled(bytes(data)))


def test_zip_bomb_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.pdf", b"\0" * (8 << 20))
    with pytest.raises(UnwrapError, match="limit"):
        unwrap(_spooled(out.getvalue()), ZipLimits(max_ratio=10, ratio_floor=1 << 16))


def test_not_a_single_entry_zip_is_left_alone():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.pdf", b"a")
        archive.writestr("b.pdf", b"b")
    assert unwrap(_spooled(out.getvalue())) is None
    assert unwrap(_spooled(b"%PDF-1.4 plain")) is None


def _through_zipfile(data: bytes, in_memory: bool = True):
    """What unwrap answers when the direct reader of plain stored archives is bypassed."""
    from connector.edxml import packaging

    original = packaging._plain_stored_entry
    packaging._plain_stored_entry = lambda *_: None
    try:
        return _answer(data, in_memory)
    finally:
        packaging._plain_stored_entry = original


def _answer(data: bytes, in_memory: bool = True):
    try:
        inner = unwrap(_spooled(data, in_memory))
    except UnwrapError as exc:
        return ("error", str(exc))
    if inner is None:
        return None
    with inner.open() as fh:
        return (type(inner).__name__, inner.size, inner.sha256, fh.read())


def _variants() -> dict[str, bytes]:
    def archive(**kwargs) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=kwargs.pop("compression", zipfile.ZIP_STORED)) as zf:
            if kwargs.pop("comment", None):
                zf.comment = b"made by a DMS"
            for name, content in kwargs.pop("entries", [("a.pdf", CONTENT)]):
                zf.writestr(name, content)
        return out.getvalue()

    ours = _zipped()
    corrupt = bytearray(ours)
    corrupt[100] ^= 0xFF
    wrong_size = bytearray(ours)
    central = ours.rindex(b"PK\x01\x02")
    wrong_size[central + 24: central + 28] = struct.pack("<I", len(CONTENT) + 10)  # uncompressed size
    encrypted = bytearray(ours)  # the encryption flag set, in the local and the central header
    encrypted[6] |= 0x1
    encrypted[central + 8] |= 0x1
    past_end = bytearray(ours)
    past_end[central + 42: central + 46] = struct.pack("<I", 200)  # local header offset
    return {
        "ours": ours,
        "ours, ascii name": _zipped("van-ban.pdf"),
        "zipfile stored": archive(),
        "zipfile stored with comment": archive(comment=True),
        "zipfile deflated": archive(compression=zipfile.ZIP_DEFLATED),
        "two entries": archive(entries=[("a.pdf", b"a"), ("b.pdf", b"b")]),
        "a directory": archive(entries=[("folder/", b"")]),
        "empty file": archive(entries=[("empty.pdf", b"")]),
        "data before the archive": b"junk" + ours,
        "corrupt content": bytes(corrupt),
        "sizes disagree": bytes(wrong_size),
        "entry past the end": bytes(past_end),
        "encrypted": bytes(encrypted),
        "truncated": ours[:-5],
    }


@pytest.mark.parametrize("in_memory", [True, False], ids=["in memory", "spooled to a file"])
@pytest.mark.parametrize("name", list(_variants()))
def test_direct_reader_answers_as_zipfile_does(name, in_memory):
    """The direct reader of the plainest archives is a shortcut, never a different answer,
    whether the received content is still in memory or already in a temporary file."""
    data = _variants()[name]
    answer = _answer(data, in_memory)
    assert answer == _through_zipfile(data, in_memory)
    assert answer == _answer(data, not in_memory)


def test_spooled_data_moves_to_a_file_past_its_memory_limit(tmp_path):
    chunks = [bytes([i]) * 700 for i in range(5)]
    spooled = SpooledData(max_memory=2000, directory=tmp_path)
    spooled.write(chunks[0])
    spooled.write(chunks[1])
    assert spooled.memory() == chunks[0] + chunks[1]
    for chunk in chunks[2:]:
        spooled.write(chunk)
    spooled.finish()
    whole = b"".join(chunks)
    assert spooled.memory() is None
    assert spooled.size == len(whole)
    with spooled.open() as fh:
        assert fh.read() == whole
    with spooled.read_range(1400, 700) as fh:
        assert fh.read() == chunks[2]
    assert spooled.sha256 == hashlib.sha256(whole).hexdigest()
    spooled.close()


def test_an_encrypted_entry_is_refused_with_a_reason():
    """zipfile would raise RuntimeError ("password required") when reading it."""
    answer = _answer(_variants()["encrypted"])
    assert answer[0] == "error" and "is encrypted" in answer[1]


def test_spooled_data_in_memory_reads_as_a_file_would():
    spooled = _spooled(b"0123456789")
    assert spooled.memory() == b"0123456789"
    with spooled.read_range(3, 4) as fh:
        assert fh.read() == b"3456"
    with spooled.open() as fh:
        assert fh.read() == b"0123456789"
    assert spooled.sha256 == hashlib.sha256(b"0123456789").hexdigest()


def test_a_full_spool_while_inflating_is_a_full_disk_not_a_bad_zip(tmp_path):
    """Inflating a compressed entry writes to the spool; when that disk is full the document is
    not at fault: the ENOSPC error passes through (the engine waits for space) instead of
    becoming an UnwrapError (which marks the document as carrying a broken ZIP)."""
    from tests.support.small_disk import small_disk

    content = os.urandom(1 << 20)  # 1 MB that stays 1 MB once inflated
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.pdf", content)
    data = _spooled(out.getvalue())
    with small_disk(tmp_path / "spool") as disk:
        disk.fill()
        with pytest.raises(OSError) as raised:
            unwrap(data, spool_memory=4096, spool_dir=disk.path)
        assert raised.value.errno == errno.ENOSPC
        assert not isinstance(raised.value, UnwrapError)
        assert [p.name for p in disk.path.iterdir()] == [".filler"]  # the half-inflated file is gone
        disk.free()
        inner = unwrap(data, spool_memory=4096, spool_dir=disk.path)
        with inner.open() as fh:
            assert fh.read() == content
        inner.close()


def test_closing_spooled_data_on_a_full_disk_does_not_raise_again(tmp_path):
    """finish() reports a full disk; close() (discarding the content, often while that very
    error is on its way up) must not raise a second ENOSPC that would take its place."""
    from tests.support.small_disk import small_disk

    with small_disk(tmp_path / "spool") as disk:
        disk.fill()
        spooled = SpooledData(max_memory=0, directory=disk.path)
        spooled.write(b"x" * 1000)  # held in the file's write buffer: no error yet
        with pytest.raises(OSError) as raised:
            spooled.finish()
        assert raised.value.errno == errno.ENOSPC
        spooled.close()  # the same bytes are still buffered: dropped, not flushed again
        unflushed = SpooledData(max_memory=0, directory=disk.path)
        unflushed.write(b"y" * 1000)
        unflushed.close()
