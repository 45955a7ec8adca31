"""Checks every outbound drop goes through, from the folder or the HTTP API, before the engine
sees it. Each problem is one line a DMS integrator can act on: which file, which field (its
JSON path), what was expected.

A drop is the document JSON plus a folder of files. Attachments the JSON lists are matched
to files by name (Unicode composition ignored); files the JSON does not list are attached
too, except names starting with a dot (``.DS_Store``). An attachment entry may leave out
``content_id``, ``content_type``, ``size`` and ``sha256``: they are filled from the file
(a ``size`` or ``sha256`` that is given must match it). Files must be regular files (not
links, not folders), non-empty, under the size limit, with safe names.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.edxml import jsonform
from connector.edxml.model import CHUNK
from connector.edxml.names import normalized, unsafe_reason
from connector.edxml.parse import guess_type

__all__ = ["MAX_METADATA_BYTES", "CheckedDrop", "DocumentCheck", "IntakeRejected", "check_drop", "parse_json"]

MAX_METADATA_BYTES = 16 * 1024**2

DocumentCheck = Callable[[dict], list[str]]
"""An extra check the engine plugs in (for example: every recipient is a known agency);
returns problem lines, empty when the document is acceptable."""


class IntakeRejected(Exception):
    """The input cannot be accepted; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems) or ["rejected"]
        super().__init__("; ".join(self.problems))


@dataclass
class CheckedDrop:
    """A drop that passed: the (completed) document JSON and its files, listed ones first."""

    document: dict
    files: list[Path]


def _size_text(size: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit} ({size} bytes)"
    return f"{size} bytes"


def parse_json(data: bytes, source: str) -> Any:
    """Parse ``data`` (UTF-8, a BOM allowed) or raise :class:`IntakeRejected` naming line and column."""
    if len(data) > MAX_METADATA_BYTES:
        raise IntakeRejected([f"{source}: {_size_text(len(data))}, over the limit of {_size_text(MAX_METADATA_BYTES)} for document JSON"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IntakeRejected(
            [f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8"]
        ) from None
    if not text.strip():
        raise IntakeRejected([f"{source}: is empty; expected a JSON object"])
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise IntakeRejected([f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    except RecursionError:
        raise IntakeRejected(
            [f"{source}: not valid document JSON: nested too deeply (arrays or objects inside each other more than "
             "the parser allows)"]
        ) from None


def check_drop(
    document: Any,
    folder: Path,
    *,
    source: str,
    exclude: tuple[str, ...] = (),
    max_file_bytes: int,
    check: DocumentCheck | None = None,
    where: str = "in the drop",
) -> CheckedDrop:
    """Check ``document`` and the files in ``folder`` (except ``exclude``) as one drop.

    ``source`` names the JSON in problem lines (``metadata.json``); ``where`` says where a
    missing file was looked for. Raises :class:`IntakeRejected` with every problem found.
    """
    problems: list[str] = []
    if not isinstance(document, dict):
        raise IntakeRejected([f"{source}: expected a JSON object {{...}} at the top level, got {_json_kind(document)}"])
    if document.get("kind") == "status":
        raise IntakeRejected(
            [f"{source}: kind: expected \"edoc\"; a status report goes to the status folder or POST /statuses"]
        )
    available = _scan(folder, set(exclude), max_file_bytes, problems)
    listed = document.get("attachments")
    used: dict[str, int] = {}
    files: list[Path] = []
    if isinstance(listed, list):
        for index, entry in enumerate(listed):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue  # the schema check below says what is wrong with it
            path = _match(entry, index, available, used, source, where, problems)
            if path is not None:
                files.append(path)
                _complete(entry, index, path, source, problems)
    for key, (path, problem) in sorted(available.items()):
        if key not in used and problem is None and not path.name.startswith("."):
            files.append(path)
    if not problems:
        problems += [f"{source}: {p.path}: {p.message}" for p in jsonform.validate(document)]
    if not problems and check is not None:
        problems += [f"{source}: {line}" for line in check(document)]
    if problems:
        raise IntakeRejected(problems)
    return CheckedDrop(document, files)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return "a number"


def _scan(folder: Path, exclude: set[str], max_file_bytes: int, problems: list[str]) -> dict[str, tuple[Path, str | None]]:
    """Every entry of ``folder`` by normalized name -> (path, why it is unusable or None).

    Problems are reported at once, except for dot-files: those are ignored unless listed."""
    found: dict[str, tuple[Path, str | None]] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name in exclude:
            continue
        problem = _file_problem(Path(entry.path), entry.stat(follow_symlinks=False), max_file_bytes)
        if problem and not entry.name.startswith("."):
            problems.append(problem)
        found[normalized(entry.name)] = (Path(entry.path), problem)
    return found


def _file_problem(path: Path, info: os.stat_result, max_file_bytes: int) -> str | None:
    name = path.name
    reason = unsafe_reason(name)
    if stat.S_ISLNK(info.st_mode):
        return f"file {name!r}: is a symbolic link (to {os.readlink(path)}); links are not followed, put the file itself in the drop"
    if stat.S_ISDIR(info.st_mode):
        return f"{name!r}: is a folder; a drop holds files only (the document JSON and its attachments)"
    if not stat.S_ISREG(info.st_mode):
        return f"{name!r}: is not a regular file"
    if reason:
        return f"file {name!r}: not a safe file name: {reason}"
    if info.st_size == 0:
        return f"file {name!r}: is empty (0 bytes); expected the attachment's content"
    if info.st_size > max_file_bytes:
        return f"file {name!r}: is {_size_text(info.st_size)}, over the limit of {_size_text(max_file_bytes)} (max_file_bytes)"
    return None


def _match(entry: dict, index: int, available: dict[str, tuple[Path, str | None]], used: dict[str, int], source: str,
           where: str, problems: list[str]) -> Path | None:
    name = entry["name"]
    field = f"{source}: attachments[{index}].name"
    reason = unsafe_reason(name)
    if reason:
        problems.append(f"{field}: {name!r} is not a safe file name ({reason}); expected the plain name of a file {where}")
        return None
    key = normalized(name)
    if key in used:
        problems.append(f"{field}: {name!r} is listed twice (also attachments[{used[key]}])")
        return None
    used[key] = index
    if key not in available:
        problems.append(f"{field}: no file named {name!r} {where}")
        return None
    path, problem = available[key]
    if problem is None:
        return path
    if path.name.startswith("."):
        problems.append(problem)  # dot-files are reported only when listed
    return None


def _complete(entry: dict, index: int, path: Path, source: str, problems: list[str]) -> None:
    """Fill what the DMS may leave out; check what it gave against the file."""
    field = f"{source}: attachments[{index}]"
    size, digest = _measure(path)
    if "size" in entry and entry["size"] != size:
        problems.append(f"{field}.size: the JSON says {entry['size']!r}, the file {path.name!r} has {size} bytes")
    if "sha256" in entry and entry["sha256"] != digest:
        problems.append(f"{field}.sha256: the JSON says {entry['sha256']!r}, the file {path.name!r} has {digest}")
    entry.setdefault("size", size)
    entry.setdefault("sha256", digest)
    # Derived, not random: checking the same drop again (after a crash) gives the same document.
    entry.setdefault("content_id", hashlib.sha256(f"{index}:{path.name}:{digest}".encode()).hexdigest()[:32])
    entry.setdefault("content_type", guess_type(path.name))


def _measure(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK * 4):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()
