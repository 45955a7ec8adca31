"""The VNPT attachment packaging: each file travels as a one-entry ZIP.

Receivers built on the VNPT library unwrap such a ZIP and hand the clerk the inner file, so a
connector must do the same on receipt (with limits against ZIP bombs) and may wrap the same
way on sending. Both directions stream: no file is ever held whole in memory.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from .model import CHUNK, SpooledData


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what an attachment ZIP may expand to."""

    max_size: int = 2 * 1024**3
    max_ratio: int = 200
    ratio_floor: int = 1 << 20


class UnwrapError(ValueError):
    """The ZIP looked like the VNPT packaging but could not be opened safely."""


def is_single_entry_zip(data: SpooledData) -> bool:
    """True when the content is a ZIP archive holding exactly one file."""
    with data.open() as fh:
        if fh.read(4) != b"PK\x03\x04":
            return False
    try:
        with zipfile.ZipFile(_Seekable(data)) as archive:
            entries = [i for i in archive.infolist() if not i.is_dir()]
            return len(entries) == 1 and len(archive.infolist()) == 1
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def unwrap(data: SpooledData, limits: ZipLimits = ZipLimits(), spool_memory: int = 1 << 20, spool_dir=None) -> SpooledData:
    """The inner file of a one-entry ZIP, streamed into a new spooled file.

    Raises :class:`UnwrapError` when the entry claims or reaches a size or ratio beyond the
    limits (a ZIP bomb), or the archive is corrupt (CRC mismatch).
    """
    out = SpooledData(spool_memory, spool_dir)
    try:
        with zipfile.ZipFile(_Seekable(data)) as archive:
            info = archive.infolist()[0]
            _check_claimed(info, limits)
            budget = _budget(info.compress_size, limits)
            with archive.open(info) as src:
                while chunk := src.read(CHUNK):
                    if out.size + len(chunk) > budget:
                        raise UnwrapError(
                            f"ZIP entry {info.filename!r} expands beyond {budget} bytes (ZIP bomb limit)"
                        )
                    out.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        out.close()
        raise UnwrapError(f"attachment ZIP cannot be opened: {exc}") from None
    except UnwrapError:
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


def write_zipped(name: str, src: BinaryIO, out: BinaryIO) -> None:
    """Write a one-entry, stored (uncompressed) ZIP of ``src`` to the stream ``out``.

    Stored, because the payloads are mostly PDFs that do not compress, and storing costs
    nothing but a header; ``out`` need not be seekable (sizes go in a data descriptor).
    """
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        with archive.open(info, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, CHUNK)


class _Seekable:
    """A seekable read view over a SpooledData for zipfile (which seeks to the directory)."""

    def __init__(self, data: SpooledData):
        self._fh = data._file  # noqa: SLF001 - same package, read-only use
        self._fh.seek(0)

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return True
