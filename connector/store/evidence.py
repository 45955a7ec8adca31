"""Evidence files: the exact bytes exchanged, kept under their SHA-256.

Raw edXML in and out is stored once per distinct content at ``<root>/ab/cd/<sha256>``; the
database rows and the audit log refer to it by digest. Writing goes to a temporary file in the
same folder, is flushed to disk, then renamed, so a crash leaves either nothing or the whole
file; storing the same bytes twice is a no-op. Files are made read-only.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..durable import fsync_dir, writing

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class EvidenceError(Exception):
    """Evidence is missing or does not match its digest."""


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int
    path: Path


class EvidenceStore:
    """Content-addressed files under one root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Where the evidence with this digest lives (whether or not it exists)."""
        if not _HEX64.match(sha256 or ""):
            raise EvidenceError(f"not a SHA-256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put_stream(self, source: BinaryIO) -> Stored:
        """Copy ``source`` (read to its end) into the store. A full disk is
        :class:`~connector.durable.DiskFull` naming the store's folder; nothing is left behind."""
        with writing(self.root):
            return self._put_stream(source)

    def _put_stream(self, source: BinaryIO) -> Stored:
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="in-")
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = source.read(_CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            return self._settle(Path(tmp_name), digest.hexdigest(), size)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def put_file(self, path: str | Path) -> Stored:
        """Copy the file at ``path`` into the store (the original is left in place)."""
        with open(path, "rb") as fh:
            return self.put_stream(fh)

    def put_bytes(self, data: bytes) -> Stored:
        import io

        return self.put_stream(io.BytesIO(data))

    def open(self, sha256: str) -> BinaryIO:
        """Open the evidence for reading; :class:`EvidenceError` when it is missing."""
        path = self.path_for(sha256)
        try:
            return open(path, "rb")
        except FileNotFoundError as exc:
            raise EvidenceError(f"evidence {sha256} is missing ({path})") from exc

    def check(self, sha256: str) -> None:
        """Re-hash the file; :class:`EvidenceError` names the file when it is missing or altered."""
        digest = hashlib.sha256()
        with self.open(sha256) as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise EvidenceError(f"evidence file {self.path_for(sha256)} does not match its digest {sha256}")

    def _settle(self, tmp: Path, sha256: str, size: int) -> Stored:
        target = self.path_for(sha256)
        if target.is_file():
            tmp.unlink(missing_ok=True)
            return Stored(sha256, size, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        return Stored(sha256, size, target)
