"""The VNPT attachment packaging: each file travels as a one-entry ZIP.

Receivers built on the VNPT library unwrap such a ZIP and hand the clerk the inner file, so a
connector must do the same on receipt (with limits against ZIP bombs) and may wrap the same
way on sending. Both directions stream: no file is ever held whole in memory.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from .model import CHUNK, AttachmentData, SliceData, SpooledData


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what an attachment ZIP may expand to."""

    max_size: int = 2 * 1024**3
    max_ratio: int = 200
    ratio_floor: int = 1 << 20


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class UnwrapError(ValueError):
    """The ZIP looked like the VNPT packaging but could not be opened safely."""


def unwrap(
    data: SpooledData, limits: ZipLimits = ZipLimits(), spool_memory: int = 1 << 20, spool_dir=None
) -> SpooledData | SliceData | None:
    """The inner file of a one-entry ZIP, or None when the content is not such a ZIP.

    A stored entry is served as a byte range of the received file (its CRC checked, nothing
    copied); a compressed one is inflated into a new spooled file. Raises
    :class:`UnwrapError` when the entry claims or reaches a size or ratio beyond the limits
    (a ZIP bomb), or the archive is corrupt (CRC mismatch).
    """
    read_at = _reader(data)
    if read_at(0, 4) != b"PK\x03\x04":
        return None
    stored = _plain_stored_entry(data.size, read_at)
    if stored is not None:
        return _stored_slice(data, stored, read_at)
    try:
        with zipfile.ZipFile(_Seekable(data)) as archive:
            entries = archive.infolist()
            if len(entries) != 1 or entries[0].is_dir():
                return None
            info = entries[0]
            if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
                return _stored_slice(data, info, read_at)
            if info.flag_bits & 0x1:
                raise UnwrapError(f"attachment ZIP: {info.filename!r} is encrypted, so it cannot be unwrapped")
            _check_claimed(info, limits)
            return _inflate(archive, info, _budget(info.compress_size, limits), spool_memory, spool_dir)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, struct.error) as exc:
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise  # our disk is full: not a fault of the document, and not to be quarantined as one
        raise UnwrapError(f"attachment ZIP cannot be opened: {exc}") from None


_EOCD = struct.Struct("<4sHHHHIIH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")


def _reader(data: SpooledData):
    """``read_at(offset, length)`` over the received content: slices while it is in memory
    (the usual small attachment), bounded reads of the spooled file beyond."""
    held = data.memory()
    if held is not None:
        return lambda offset, length: held[offset : offset + length]

    def read_at(offset: int, length: int) -> bytes:
        with data.read_range(offset, length) as fh:
            return fh.read(length)

    return read_at


def _plain_stored_entry(size: int, read_at) -> zipfile.ZipInfo | None:
    """The entry of the plainest one-entry ZIP (what the VNPT packaging and our own
    :func:`write_zipped` write): stored, not encrypted, no archive comment, no ZIP64, nothing
    before or after. None for anything else, which then goes through :mod:`zipfile`.

    Reads the two fixed-size records directly: opening the archive with zipfile costs more
    than the rest of reading a small document's attachment.
    """
    if size < 22 + 46:
        return None
    end = read_at(size - 22, 22)
    if len(end) != 22:
        return None
    signature, disk, cd_disk, on_disk, total, cd_size, cd_offset, comment = _EOCD.unpack(end)
    if signature != b"PK\x05\x06" or disk or cd_disk or on_disk != 1 or total != 1 or comment:
        return None
    if cd_offset + cd_size != size - 22 or cd_size < 46:
        return None
    central = read_at(cd_offset, cd_size)
    if len(central) != cd_size:
        return None
    (signature, _made, _needed, flags, method, _time, _date, crc, compressed, file_size,
     name_len, extra_len, comment_len, _disk, _internal, _external, header_offset) = _CENTRAL.unpack_from(central)
    if (signature != b"PK\x01\x02" or 46 + name_len + extra_len + comment_len != cd_size or method != zipfile.ZIP_STORED
            or flags & 0x1 or compressed != file_size or 0xFFFFFFFF in (compressed, file_size, header_offset)):
        return None
    raw_name = central[46:46 + name_len]
    name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
    if name.endswith("/"):
        return None
    info = zipfile.ZipInfo(name)
    info.compress_type, info.flag_bits, info.CRC = method, flags, crc
    info.compress_size, info.file_size, info.header_offset = compressed, file_size, header_offset
    return info


def _stored_slice(data: SpooledData, info: zipfile.ZipInfo, read_at) -> SliceData:
    header = read_at(info.header_offset, 30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise UnwrapError("attachment ZIP: bad local file header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    offset = info.header_offset + 30 + name_len + extra_len
    if offset + info.file_size > data.size:
        raise UnwrapError("attachment ZIP: the entry runs past the end of the archive")
    held = data.memory()
    if held is not None:
        entry = memoryview(held)[offset : offset + info.file_size]
        digest, crc = hashlib.sha256(entry), zlib.crc32(entry)
    else:
        digest, crc = hashlib.sha256(), 0
        with data.read_range(offset, info.file_size) as fh:
            while chunk := fh.read(CHUNK * 4):
                digest.update(chunk)
                crc = zlib.crc32(chunk, crc)
    if crc != info.CRC:
        raise UnwrapError(f"attachment ZIP: CRC mismatch in {info.filename!r} (corrupt content)")
    return SliceData(data, offset, info.file_size, digest.hexdigest())


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, spool_memory: int, spool_dir) -> SpooledData:
    out = SpooledData(spool_memory, spool_dir)
    try:
        with archive.open(info) as src:
            while chunk := src.read(CHUNK):
                if out.size + len(chunk) > budget:
                    raise UnwrapError(f"ZIP entry {info.filename!r} expands beyond {budget} bytes (ZIP bomb limit)")
                out.write(chunk)
    except BaseException:
        out.close()
        raise
    out.finish()
    return out


def _check_claimed(info: zipfile.ZipInfo, limits: ZipLimits) -> None:
    if info.file_size > _budget(info.compress_size, limits):
        raise UnwrapError(
            f"ZIP entry {info.filename!r} claims {info.file_size} bytes from {info.compress_size} "
            f"(over the size or ratio limit)"
        )


def _budget(compressed: int, limits: ZipLimits) -> int:
    return min(limits.max_size, max(limits.ratio_floor, compressed * limits.max_ratio))


def write_zipped(name: str, data: AttachmentData, out: BinaryIO) -> None:
    """Write a one-entry, stored (uncompressed) ZIP of ``data`` to the stream ``out``.

    Stored, because the payloads are mostly PDFs that do not compress, and storing costs
    nothing but a header. The CRC and sizes go in the local header (read from the content in
    a first pass, cached on the content object), never in a trailing data descriptor: Java's
    ``ZipInputStream``, which receivers built on the VNPT library use, refuses a stored entry
    with a data descriptor. ``out`` need not be seekable. Sizes of 4 GiB and more use ZIP64.
    """
    crc, size = _crc_and_size(data)
    raw_name = name.encode("utf-8")
    zip64 = size >= 0xFFFFFFFF
    version = 45 if zip64 else 20
    flags = 0x0800  # the name is UTF-8
    stamp = (0, 0x21)  # 1980-01-01 00:00:00, so the same content always zips to the same bytes
    local_extra = struct.pack("<HHQQ", 1, 16, size, size) if zip64 else b""
    small = 0xFFFFFFFF if zip64 else size
    out.write(
        struct.pack("<IHHHHHIIIHH", 0x04034B50, version, flags, 0, *stamp, crc, small, small, len(raw_name), len(local_extra))
        + raw_name
        + local_extra
    )
    with data.open() as src:
        shutil.copyfileobj(src, out, CHUNK)
    offset = 30 + len(raw_name) + len(local_extra) + size
    central_extra = struct.pack("<HHQQQ", 1, 24, size, size, 0) if zip64 else b""
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50, version, version, flags, 0, *stamp, crc, small, small,
            len(raw_name), len(central_extra), 0, 0, 0, 0, 0,
        )
        + raw_name
        + central_extra
    )
    out.write(central)
    if zip64:
        out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, len(central), offset))
        out.write(struct.pack("<IIQI", 0x07064B50, 0, offset + len(central), 1))
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    else:
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0))


def _crc_and_size(data: AttachmentData) -> tuple[int, int]:
    """CRC-32 and size of the content, computed once per content object."""
    cached = getattr(data, "_zip_crc", None)
    if cached is not None:
        return cached
    crc = size = 0
    with data.open() as src:
        while chunk := src.read(CHUNK * 4):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    try:
        data._zip_crc = (crc, size)  # type: ignore[union-attr]
    except AttributeError:
        pass
    return crc, size


class _Seekable:
    """A seekable read view over a SpooledData for zipfile (which seeks to the directory)."""

    def __init__(self, data: SpooledData):
        self._fh = data.handle()
        self._fh.seek(0)

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return True
