"""Archive files: old sealed segments of the log, moved out of the database.

One file per segment, ``audit-<first seq>-<last seq>.jsonl`` (12-digit, zero-padded), JSON
lines, each line an object with one key:

- line 1 ``{"header": {...}}``: format, first_seq, last_seq, ``prev_archive_sha256`` (the
  SHA-256 of the previous archive file, null for the first) and when it was written;
- ``{"entry": {...}}``: an entry exactly as hashed (see ``standalone``), with its entry_hash;
- ``{"batch": {...}}``: a batch that seals entries of this file (signature and time-stamp
  token base64, the signer's certificates PEM).

Because each header names its predecessor's digest, and the log itself records every
archive's digest in an ``audit.archived`` entry, a removed, swapped, reordered or edited
archive file is found by ``audit verify``. Files are written to a temporary name, flushed and
renamed, so a crash leaves no half file under an archive name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..durable import fsync_dir
from .records import Batch, batch_from_json, batch_to_json
from .standalone import canonical_json, entry_line, parse_entry

ARCHIVE_FORMAT = "edoc-connector audit archive"
ARCHIVE_VERSION = 1


def archive_name(first_seq: int, last_seq: int) -> str:
    return f"audit-{first_seq:012d}-{last_seq:012d}.jsonl"


def write_archive(directory: Path, header: dict[str, Any], entries: Iterable[dict[str, Any]],
                  batches: Iterable[Batch]) -> tuple[Path, str]:
    """Write an archive file atomically; returns its path and SHA-256."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / archive_name(header["first_seq"], header["last_seq"])
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as out:
            def put(obj: dict[str, Any]) -> None:
                line = canonical_json(obj) + b"\n"
                digest.update(line)
                out.write(line)

            put({"header": {"format": ARCHIVE_FORMAT, "version": ARCHIVE_VERSION, **header}})
            for fields in entries:
                line = b'{"entry":' + entry_line(fields).encode("utf-8") + b"}\n"
                digest.update(line)
                out.write(line)
            for batch in batches:
                put({"batch": batch_to_json(batch)})
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return target, digest.hexdigest()


@dataclass(frozen=True)
class ArchiveItem:
    """One line of an archive file: kind is header, entry, batch or error (value = message)."""

    line: int
    kind: str
    value: Any


def read_archive(path: Path) -> Iterator[ArchiveItem]:
    """The lines of an archive file, parsed; malformed lines come back as ``error`` items.

    OSError propagates (missing or unreadable file)."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                reason = "the line is cut short" if not raw.endswith(b"\n") else f"not JSON ({exc})"
                yield ArchiveItem(number, "error", reason)
                continue
            if not isinstance(obj, dict) or len(obj) != 1:
                yield ArchiveItem(number, "error", "not an archive record (one of header, entry, batch)")
                continue
            ((kind, value),) = obj.items()
            try:
                if kind == "header":
                    if number != 1:
                        raise ValueError("a header may only be the first line")
                    yield ArchiveItem(number, kind, _header(value))
                elif kind == "entry":
                    yield ArchiveItem(number, kind, parse_entry(value))
                elif kind == "batch":
                    yield ArchiveItem(number, kind, batch_from_json(value))
                else:
                    raise ValueError(f"unknown record type {kind!r}")
            except ValueError as exc:
                yield ArchiveItem(number, "error", str(exc))


def _header(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("format") != ARCHIVE_FORMAT:
        raise ValueError("not an audit archive header")
    for name in ("first_seq", "last_seq"):
        if not isinstance(value.get(name), int):
            raise ValueError(f"header {name} is not a number")
    return value


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
