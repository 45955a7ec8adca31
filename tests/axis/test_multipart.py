"""Streaming multipart/related: generator <-> parser, chunk edges, limits, constant memory."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from connector.axis import multipart as m
from connector.edxml.model import BytesData, FileData

ENVELOPE = b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>'


class _GenStream(io.RawIOBase):
    """A read-only stream over a generator (no whole body in memory), with an RSS probe."""

    def __init__(self, chunks, probe=None):
        self._chunks = iter(chunks)
        self._buf = b""
        self._probe = probe

    def readable(self):
        return True

    def read(self, size=-1):
        while size < 0 or len(self._buf) < size:
            block = next(self._chunks, None)
            if block is None:
                break
            self._buf += block
        if size < 0:
            size = len(self._buf)
        out, self._buf = self._buf[:size], self._buf[size:]
        if self._probe:
            self._probe()
        return out


def _round_trip(parts, chunk=m.CHUNK, read_chunk=m.CHUNK, limits=m.MultipartLimits()):
    boundary = m.new_boundary()
    body = b"".join(m.generate(ENVELOPE, parts, boundary, chunk=chunk))
    assert len(body) == m.body_length(len(ENVELOPE), parts, boundary)
    return m.parse(io.BytesIO(body), m.content_type(boundary), chunk=read_chunk, limits=limits)


@pytest.mark.parametrize("count", [0, 1, 2, 7])
def test_round_trip_n_parts(count):
    datas = [os.urandom(n * 997 + 1) for n in range(count)]
    parts = [m.OutPart(f"att{i}", "application/octet-stream", BytesData(d)) for i, d in enumerate(datas)]
    with _round_trip(parts) as related:
        assert related.root_bytes() == ENVELOPE
        assert related.root.content_type.startswith("text/xml")
        assert list(related.parts) == [f"att{i}" for i in range(count)]
        for i, d in enumerate(datas):
            with related.parts[f"att{i}"].data.open() as fh:
                assert fh.read() == d


@pytest.mark.parametrize("read_chunk", [1, 2, 3, 5, 7, 13, 64, 4096])
def test_boundary_across_chunk_edges(read_chunk):
    # content that looks like a boundary start, CRLFs and dashes everywhere
    tricky = b"\r\n--\r\n-" * 50 + b"\r\n--MIMEBoundary_" + b"x" * 30
    parts = [m.OutPart("a", "text/plain", BytesData(tricky)), m.OutPart("b", "application/pdf", BytesData(b"\r\n"))]
    with _round_trip(parts, read_chunk=read_chunk) as related:
        assert related.parts["a"].data.open().read() == tricky
        assert related.parts["b"].data.open().read() == b"\r\n"


def test_base64_parts_and_decode():
    data = os.urandom(100_003)
    parts = [m.OutPart("f", "application/pdf", BytesData(data), "base64")]
    with _round_trip(parts, chunk=1000, read_chunk=777) as related:
        raw = related.parts["f"].data
        with raw.open() as fh:
            text = fh.read()
        assert b"\n" not in text and len(text) == 4 * ((len(data) + 2) // 3)
        decoded = m.decode_base64(raw)
        assert decoded.open().read() == data
        assert decoded.sha256 == hashlib.sha256(data).hexdigest()


def test_decode_base64_errors():
    with pytest.raises(m.MultipartError):
        m.decode_base64(BytesData(b"abc"))
    with pytest.raises(m.MultipartError):
        m.decode_base64(BytesData(b"ab!d"))
    assert m.decode_base64(BytesData(b"YW\r\nJj\nZA==")).open().read() == b"abcd"


def test_start_parameter_selects_root():
    body = (
        b"preamble\r\n--B\r\nContent-ID: <x>\r\nContent-Type: application/pdf\r\n\r\nPDF\r\n"
        b"--B\r\nContent-ID: <env0>\r\nContent-Type: text/xml\r\n\r\n<e/>\r\n--B--\r\nepilogue"
    )
    ctype = 'multipart/related; type="text/xml"; start="<env0>"; boundary=B'
    with m.parse(io.BytesIO(body), ctype) as related:
        assert related.root_bytes() == b"<e/>"
        assert related.parts["x"].data.open().read() == b"PDF"
    with pytest.raises(m.MultipartError):
        m.parse(io.BytesIO(body), ctype.replace("env0", "nope"))


@pytest.mark.parametrize(
    "body, error",
    [
        (b"no boundary here", "no boundary"),
        (b"--B\r\nContent-ID: <a>\r\n\r\ntruncated", "ends inside a part"),
        (b"--B\r\nContent-ID: <a>", "ends inside part headers"),
        (b"--B\r\nContent-ID: <a>\r\n\r\nx\r\n--B\r\nContent-ID: <a>\r\n\r\ny\r\n--B\r\nContent-ID: <a>\r\n\r\nz\r\n--B--", "two parts"),
        (b"--B\r\nbad header\r\n\r\nx\r\n--B--", "malformed part header"),
    ],
)
def test_malformed(body, error):
    with pytest.raises(m.MultipartError, match=error):
        m.parse(io.BytesIO(body), "multipart/related; boundary=B")


def test_not_multipart():
    with pytest.raises(m.MultipartError):
        m.parse(io.BytesIO(b""), "text/xml")


def test_limits():
    parts = [m.OutPart(f"p{i}", "text/plain", BytesData(b"x" * 100)) for i in range(5)]
    with pytest.raises(m.MultipartError, match="more than"):
        _round_trip(parts, limits=m.MultipartLimits(max_parts=3))
    with pytest.raises(m.MultipartError, match="over 50 bytes"):
        _round_trip(parts, limits=m.MultipartLimits(max_part_size=50, max_root_size=10**6))
    with pytest.raises(m.MultipartError, match="body over"):
        _round_trip(parts, limits=m.MultipartLimits(max_total=300))
    boundary = "B"
    huge_headers = b"--B\r\nX: " + b"a" * 40_000 + b"\r\n\r\nx\r\n--B--"
    with pytest.raises(m.MultipartError, match="headers over"):
        m.parse(io.BytesIO(huge_headers), f"multipart/related; boundary={boundary}")


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc for RSS")
def test_50mb_part_streams_in_constant_memory(tmp_path):
    size = 50 * 1024 * 1024
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as fh:
        block = os.urandom(1 << 20)
        for i in range(50):
            chunk = bytes([i]) + block[1:]
            digest.update(chunk)
            fh.write(chunk)
    data = FileData(source)
    assert data.size == size
    parts = [m.OutPart("big", "application/pdf", data), m.OutPart("small", "text/plain", BytesData(b"hi"))]
    boundary = m.new_boundary()
    baseline = _rss()
    peak = [baseline]

    def probe():
        peak[0] = max(peak[0], _rss())

    stream = _GenStream(m.generate(ENVELOPE, parts, boundary), probe)
    with m.parse(stream, m.content_type(boundary), spool_dir=tmp_path) as related:
        big = related.parts["big"].data
        assert big.size == size
        assert big.sha256 == digest.hexdigest()
        assert related.parts["small"].data.open().read() == b"hi"
    assert peak[0] - baseline < 20 * 1024 * 1024, f"RSS grew by {(peak[0] - baseline) >> 20} MB"
