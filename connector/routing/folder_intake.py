"""Folder pickup: the DMS drops outbound documents and status reports into folders.

Layout under the intake root (all created)::

    outbox/       the DMS drops here:
                    <name>/           a folder: metadata.json (the document JSON) + the files, or
                    <name>.json       a document JSON whose attachments (listed by name) sit beside it
    processing/   claimed drops, one folder each: <name>~<claim time>-<id>  (the drop id)
    sent/<name>/  accepted: the drop as it was + tracking.txt (first line: the tracking id)
    failed/<name>/ refused: the drop as it was + error.txt saying what is wrong, field by field
    status/       the DMS drops status reports here: <name>.json (see :mod:`.status_report`)
      processing/ done/<name>/ (+ tracking.txt)  failed/<name>/ (+ error.txt)

A drop is taken only when it has settled: nothing in it modified for ``settle_s`` seconds
and no ``.tmp``/``.part`` name in it (or, for ``<name>.json``, beside it for a listed file).
Names starting with a dot are never drops, so a DMS may write ``.x.json`` and rename it.
A symbolic link in ``outbox/`` is never followed (it may lead out of the intake folder): once
settled it is refused like a bad drop, moved (the link itself) to ``failed/<name>/`` with an
``error.txt`` saying links are not accepted; a link a ``<name>.json`` lists is refused with it.

Claiming is a ``rename`` into ``processing/`` under a new unique name: of two connector
instances watching one folder, exactly one rename succeeds. A drop is then checked
(:mod:`.intake_checks`); a bad one goes to ``failed/`` at once with its ``error.txt`` and is
not returned. Nothing is ever deleted; a name already used in ``sent/`` or ``failed/`` gets a
`` (2)`` suffix. A drop claimed by an instance that died before finishing it stays in
``processing/``; :meth:`FolderIntake.recover` hands it out again under the same drop id, so
the engine's idempotent enqueue does not send it twice.

A full disk under the intake folder (or a step after it, e.g. the engine's staging folder)
leaves every drop whole: a drop whose round failed stays in ``processing/`` and the same
instance hands it out again at its next :meth:`~FolderIntake.recover`, however young it is; a
note (``tracking.txt``, ``error.txt``) is written under a hidden name and renamed, so no half
note is ever visible, and one that could not be written for want of space is written by the
next scan. Such failures are :class:`~connector.durable.DiskFull` naming the intake folder.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from connector.durable import NO_SPACE_ERRNOS, DiskFull, writing
from connector.edxml.model import VN_TZ
from connector.edxml.names import unsafe_reason

from .intake_checks import (
    MAX_METADATA_BYTES,
    DocumentCheck,
    IntakeRejected,
    check_drop,
    parse_json,
)
from .status_report import StatusReport, parse_status_report

__all__ = ["IN_PROGRESS_SUFFIXES", "FolderIntake", "IntakeItem", "StatusReport"]

log = logging.getLogger("connector.routing.intake")

IN_PROGRESS_SUFFIXES = (".tmp", ".part")
METADATA = "metadata.json"
_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass
class IntakeItem:
    """A claimed, checked drop: its document JSON (attachment entries completed), its files
    (inside ``source``, the claimed folder) and its stable ``drop_id`` (the idempotency key).

    The files stay where they are until :meth:`FolderIntake.complete` or
    :meth:`FolderIntake.fail` moves the folder: the engine stores what it needs first."""

    drop_id: str
    document: dict
    files: list[Path]
    source: Path
    name: str = field(default="")


class FolderIntake:
    """Claims drops from ``root/outbox`` and status reports from the status folder."""

    def __init__(
        self,
        root: str | Path,
        *,
        settle_s: float = 2.0,
        max_file_bytes: int = 1024**3,
        status_dir: str | Path | None = None,
        check: DocumentCheck | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.root = Path(root)
        self.outbox = self.root / "outbox"
        self.processing = self.root / "processing"
        self.sent = self.root / "sent"
        self.failed = self.root / "failed"
        self.status = Path(status_dir) if status_dir else self.root / "status"
        self.status_processing = self.status / "processing"
        self.status_done = self.status / "done"
        self.status_failed = self.status / "failed"
        self.settle_s = settle_s
        self.max_file_bytes = max_file_bytes
        self.check = check
        self.clock = clock
        for folder in (self.outbox, self.processing, self.sent, self.failed,
                       self.status_processing, self.status_done, self.status_failed):
            folder.mkdir(parents=True, exist_ok=True)
        # Claimed folders (in processing/) handed out and not yet filed away: a round that
        # failed half-way (a full disk) gets them again at once, not when they become stale.
        self._mine: set[str] = set()
        # Notes that could not be written for want of space: (folder, name, text, intake root).
        self._owed_notes: list[tuple[Path, str, str, Path]] = []

    # ------------------------------------------------------------------ drops

    def claim(self) -> list[IntakeItem]:
        """Claim every settled drop; return the valid ones (invalid ones go to ``failed/``)."""
        with writing(self.root):
            self._write_owed_notes()
            return self._claim_drops()

    def _claim_drops(self) -> list[IntakeItem]:
        items = []
        beside: set[str] | None = None  # names the outbox's <name>.json drops list, read when needed
        for entry in sorted(os.scandir(self.outbox), key=lambda e: e.name):
            if not _candidate(entry.name):
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue  # taken meanwhile (by another instance, or beside a JSON claimed above)
            path = Path(entry.path)
            if stat.S_ISLNK(mode):
                # Never followed (it may lead out of the intake folder): refused visibly, unless
                # a <name>.json lists it as an attachment, whose check then refuses it.
                if beside is None:
                    beside = self._listed_beside()
                if entry.name in beside or not self._settled(path):
                    continue
                claimed = self._claim_file(path, self.processing, "L")
            elif stat.S_ISDIR(mode):
                if not self._settled_folder(path):
                    continue
                claimed = self._claim_folder(path)
            elif stat.S_ISREG(mode) and entry.name.lower().endswith(".json"):
                if not self._settled_json(path):
                    continue
                claimed = self._claim_file(path, self.processing, "J")
                if claimed is not None:
                    self._gather_beside(claimed / entry.name)
            else:
                continue  # an attachment beside a <name>.json, or something that is not a drop
            if claimed is not None:
                self._mine.add(claimed.name)
                item = self._load(claimed)
                if item is not None:
                    items.append(item)
        return items

    def complete(self, item: IntakeItem, tracking_id: str) -> Path:
        """The drop was accepted: move it to ``sent/<name>/`` with ``tracking.txt``."""
        return self._file_away(item.source, self.sent, _original_name(item.source.name),
                               "tracking.txt", _tracking_text(tracking_id), self.root)

    def fail(self, item: IntakeItem, problems: list[str]) -> Path:
        """The drop cannot be sent: move it to ``failed/<name>/`` with ``error.txt``."""
        return self._fail_folder(item.source, problems)

    def recover(self, older_than_s: float) -> list[IntakeItem]:
        """Drops claimed more than ``older_than_s`` ago and never completed or failed (their
        instance died), and drops this instance handed out that were neither completed nor
        failed (their round stopped, e.g. on a full disk): checked again and returned with
        their original drop id."""
        with writing(self.root):
            self._write_owed_notes()
            items = []
            for folder in self._stale(self.processing, older_than_s):
                self._mine.add(folder.name)
                item = self._load(folder)
                if item is not None:
                    items.append(item)
            return items

    # ------------------------------------------------------------------ status reports

    def status_reports(self) -> list[StatusReport]:
        """Claim every settled ``status/*.json``; return the valid reports (invalid ones go to
        ``status/failed/`` with ``error.txt``)."""
        with writing(self.status):
            self._write_owed_notes()
            return self._claim_reports()

    def _claim_reports(self) -> list[StatusReport]:
        reports = []
        for entry in sorted(os.scandir(self.status), key=lambda e: e.name):
            if not (_candidate(entry.name) and entry.name.lower().endswith(".json")):
                continue
            path = Path(entry.path)
            try:
                regular = stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode)
            except FileNotFoundError:
                continue
            if not regular or not self._settled(path):
                continue
            claimed = self._claim_file(path, self.status_processing, "S")
            if claimed is not None:
                self._mine.add(claimed.name)
                report = self._load_report(claimed)
                if report is not None:
                    reports.append(report)
        return reports

    def complete_status(self, report: StatusReport, tracking_id: str) -> Path:
        """The report was accepted: move it to ``status/done/<name>/`` with ``tracking.txt``."""
        folder = self._report_folder(report)
        return self._file_away(folder, self.status_done, _stem(_original_name(folder.name)),
                               "tracking.txt", _tracking_text(tracking_id), self.status)

    def fail_status(self, report: StatusReport, problems: list[str]) -> Path:
        """The report cannot be sent: move it to ``status/failed/<name>/`` with ``error.txt``."""
        folder = self._report_folder(report)
        return self._file_away(folder, self.status_failed, _stem(_original_name(folder.name)),
                               "error.txt", _error_text(_original_name(folder.name), problems, "status/"), self.status)

    def recover_status_reports(self, older_than_s: float) -> list[StatusReport]:
        """Status reports claimed more than ``older_than_s`` ago and never finished, and those
        this instance handed out whose round stopped (see :meth:`recover`)."""
        with writing(self.status):
            self._write_owed_notes()
            reports = []
            for folder in self._stale(self.status_processing, older_than_s):
                self._mine.add(folder.name)
                report = self._load_report(folder)
                if report is not None:
                    reports.append(report)
            return reports

    # ------------------------------------------------------------------ internals

    def _young(self, info: os.stat_result) -> bool:
        return self.clock() - info.st_mtime < self.settle_s

    def _settled(self, path: Path) -> bool:
        try:
            return not self._young(path.lstat())
        except FileNotFoundError:
            return False

    def _settled_folder(self, folder: Path) -> bool:
        try:
            if self._young(folder.lstat()):
                return False
            for entry in os.scandir(folder):
                if entry.name.lower().endswith(IN_PROGRESS_SUFFIXES) or self._young(entry.stat(follow_symlinks=False)):
                    return False
        except FileNotFoundError:
            return False
        return True

    def _settled_json(self, path: Path) -> bool:
        """The JSON and every file it lists beside it are complete."""
        if not self._settled(path):
            return False
        for name in _listed_names(path):
            beside = path.parent / name
            if not (beside.exists() or beside.is_symlink()):
                if any((path.parent / f"{name}{s}").exists() for s in IN_PROGRESS_SUFFIXES):
                    return False  # still being written under a temporary name
                continue  # missing: reported when the drop is checked
            if not self._settled(beside):
                return False
        return True

    def _token(self, kind: str) -> str:
        stamp = time.strftime(_STAMP, time.gmtime(self.clock()))
        return f"{stamp}-{kind}{secrets.token_hex(4)}"

    def _claim_folder(self, folder: Path) -> Path | None:
        return self._rename_claim(folder, self.processing / f"{folder.name}~{self._token('D')}")

    def _claim_file(self, path: Path, into: Path, kind: str) -> Path | None:
        """A folder ``<into>/<stem>~<token>`` holding the claimed file; None if someone else won."""
        folder = into / f"{path.name}~{self._token(kind)}"
        folder.mkdir()
        if self._rename_claim(path, folder / path.name) is None:
            folder.rmdir()
            return None
        return folder

    @staticmethod
    def _rename_claim(source: Path, target: Path) -> Path | None:
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None  # claimed by another instance a moment ago
        except OSError as exc:
            log.warning("cannot claim %s: %s", source, exc.strerror or exc)
            return None
        return target

    def _gather_beside(self, claimed_json: Path) -> None:
        """Move the files a claimed ``<name>.json`` lists from ``outbox/`` into its folder."""
        for name in _listed_names(claimed_json):
            beside = self.outbox / name
            try:
                if beside.is_symlink() or beside.is_file():
                    os.rename(beside, claimed_json.parent / name)
            except FileNotFoundError:
                pass  # taken by another drop listing the same file: reported as missing
            except OSError as exc:
                log.warning("cannot move %s into %s: %s", beside, claimed_json.parent, exc.strerror or exc)

    def _listed_beside(self) -> set[str]:
        """Every attachment name a ``<name>.json`` in ``outbox/`` lists (best effort)."""
        names: set[str] = set()
        for entry in os.scandir(self.outbox):
            if _candidate(entry.name) and entry.name.lower().endswith(".json") and entry.is_file(follow_symlinks=False):
                names.update(_listed_names(Path(entry.path)))
        return names

    def _load(self, folder: Path) -> IntakeItem | None:
        """Check a claimed folder; a valid drop becomes an item, an invalid one goes to failed/."""
        original = _original_name(folder.name)
        json_form = _claim_kind(folder.name) == "J"
        metadata = original if json_form else METADATA
        where = f"beside {original} in outbox/" if json_form else "in the drop folder"
        try:
            if _claim_kind(folder.name) == "L":
                raise IntakeRejected([_link_problem(folder / original)])
            document = self._read_json(folder, metadata)
            checked = check_drop(document, folder, source=metadata, exclude=(metadata,),
                                 max_file_bytes=self.max_file_bytes, check=self.check, where=where)
        except IntakeRejected as exc:
            target = self._fail_folder(folder, exc.problems)
            log.warning("drop %s refused (%s): %s", original, target, "; ".join(exc.problems))
            return None
        return IntakeItem(folder.name, checked.document, checked.files, folder, _stem(original) if json_form else original)

    def _read_json(self, folder: Path, name: str) -> object:
        path = folder / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            others = sorted(p.name for p in folder.glob("*.json"))
            hint = f" (found {', '.join(others)}: rename the document JSON to {METADATA})" if others else ""
            raise IntakeRejected([
                (f"{METADATA} is missing: a drop folder must hold {METADATA} (the document JSON, "
                 f"schemas/document.schema.json) and the attachment files{hint}")
            ]) from None
        if not stat.S_ISREG(info.st_mode):
            raise IntakeRejected([f"{name}: is not a regular file (a link or a folder); expected the document JSON"])
        if info.st_size > MAX_METADATA_BYTES:
            raise IntakeRejected([f"{name}: {info.st_size} bytes, over the limit of {MAX_METADATA_BYTES} bytes for document JSON"])
        return parse_json(path.read_bytes(), name)

    def _load_report(self, folder: Path) -> StatusReport | None:
        name = _original_name(folder.name)
        path = folder / name
        try:
            if path.stat().st_size > MAX_METADATA_BYTES:
                raise IntakeRejected([f"{name}: over {MAX_METADATA_BYTES} bytes; a status report is a small JSON object"])
            data = parse_json(path.read_bytes(), name)
            return parse_status_report(data, source=name, report_id=folder.name, path=path)
        except IntakeRejected as exc:
            target = self._file_away(folder, self.status_failed, _stem(name), "error.txt",
                                     _error_text(name, exc.problems, "status/"), self.status)
            log.warning("status report %s refused (%s): %s", name, target, "; ".join(exc.problems))
            return None

    def _report_folder(self, report: StatusReport) -> Path:
        if report.source is None:
            raise ValueError("this status report did not come from the status folder")
        return report.source.parent

    def _fail_folder(self, folder: Path, problems: list[str]) -> Path:
        original = _original_name(folder.name)
        return self._file_away(folder, self.failed, _stem(original) if _claim_kind(folder.name) == "J" else original,
                               "error.txt", _error_text(original, problems, "outbox/"), self.root)

    def _file_away(self, source: Path, into: Path, name: str, note: str, text: str, root: Path) -> Path:
        """Move a finished drop or report out of its ``processing/`` folder, then add its note.

        In that order: a note written while the folder was still in ``processing/`` would, if
        the instance died before the move, be read back by recovery as one of the drop's files
        (an empty one, if the kill came mid-write) and send an accepted document to ``failed/``
        with "NOT SENT". Dying after the move leaves the folder where it belongs, without its
        note. A note that cannot be written for want of space is owed: written by the next
        scan, while this call ends with :class:`DiskFull` naming ``root``."""
        with writing(root):
            target = _move(source, into, name)
        self._mine.discard(source.name)
        try:
            _write_note(target, note, text)
        except OSError as exc:
            if exc.errno not in NO_SPACE_ERRNOS:
                raise
            self._owed_notes.append((target, note, text, root))
            raise DiskFull(root, exc.errno) from exc
        return target

    def _write_owed_notes(self) -> None:
        """Write the notes a full disk held back (oldest first); stop at the first that still
        cannot be written. A folder the DMS has taken away meanwhile needs no note."""
        while self._owed_notes:
            folder, note, text, root = self._owed_notes[0]
            if folder.is_dir():
                with writing(root):
                    _write_note(folder, note, text)
            else:
                log.warning("%s was moved away before its %s could be written", folder, note)
            self._owed_notes.pop(0)

    def _stale(self, processing: Path, older_than_s: float) -> list[Path]:
        """Claimed folders older than ``older_than_s``, and the ones this instance handed out."""
        stale = []
        now = self.clock()
        for entry in sorted(os.scandir(processing), key=lambda e: e.name):
            claimed_at = _claim_time(entry.name)
            if claimed_at is None or not entry.is_dir(follow_symlinks=False):
                continue
            if now - claimed_at >= older_than_s or entry.name in self._mine:
                stale.append(Path(entry.path))
        return stale


# --------------------------------------------------------------------------- helpers


def _candidate(name: str) -> bool:
    """Whether an outbox or status entry may be a drop (not hidden, not still being written)."""
    return not name.startswith(".") and not name.lower().endswith(IN_PROGRESS_SUFFIXES)


def _link_problem(link: Path) -> str:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return (f"{link.name!r} in outbox/ is a symbolic link (to {target}); symbolic links are not accepted and are "
            "never followed: put the drop folder (or the document JSON) itself into outbox/")


def _stem(name: str) -> str:
    return name[:-5] if name.lower().endswith(".json") and len(name) > 5 else name


def _original_name(claimed: str) -> str:
    return claimed.rsplit("~", 1)[0]


def _claim_kind(claimed: str) -> str:
    token = claimed.rsplit("~", 1)[-1]
    parts = token.split("-", 1)
    return parts[1][:1] if len(parts) == 2 and parts[1] else ""


def _claim_time(claimed: str) -> float | None:
    if "~" not in claimed:
        return None
    try:
        stamp = claimed.rsplit("~", 1)[1].split("-", 1)[0]
        return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _listed_names(json_path: Path) -> list[str]:
    """Safe attachment names a document JSON lists (best effort: broken JSON lists none)."""
    try:
        if json_path.stat().st_size > MAX_METADATA_BYTES:
            return []
        data = json.loads(json_path.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return []  # the check of the claimed drop reports what is wrong with it
    listed = data.get("attachments") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        return []
    names = []
    for entry in listed:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and not unsafe_reason(name) and name not in names:
            names.append(name)  # an unsafe name (../x, /etc/x) is never touched, only reported
    return names


def _tracking_text(tracking_id: str) -> str:
    now = datetime.now(VN_TZ).replace(microsecond=0).isoformat()
    return f"{tracking_id}\naccepted for sending at {now}\n"


def _write_note(folder: Path, name: str, text: str) -> Path:
    """Write ``name`` (or ``name (2)``... when the DMS has a file of that name) into ``folder``.

    Written whole under a hidden temporary name, then renamed: the DMS never sees half a note
    (a full disk mid-write leaves nothing behind)."""
    temp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(temp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        stem, dot, ext = name.rpartition(".")
        candidate, n = name, 1
        while (folder / candidate).exists() or (folder / candidate).is_symlink():
            n += 1
            candidate = f"{stem} ({n}){dot}{ext}"
        os.rename(temp, folder / candidate)
        return folder / candidate
    finally:
        temp.unlink(missing_ok=True)


def _move(source: Path, into: Path, name: str) -> Path:
    """Rename ``source`` to ``into/name`` or the first free ``name (n)``; never over anything."""
    n = 1
    while True:
        target = into / (name if n == 1 else f"{name} ({n})")
        n += 1
        if target.exists() or target.is_symlink():
            continue
        try:
            os.rename(source, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                continue
            raise
        return target


def _error_text(name: str, problems: list[str], folder: str) -> str:
    now = datetime.now(VN_TZ).replace(microsecond=0).isoformat()
    count = len(problems)
    lines = [
        f"NOT SENT: {name} was refused by the connector on {now}.",
        "",
        f"What is wrong ({count} problem{'s' if count != 1 else ''}):",
        *[f"  {i}. {p}" for i, p in enumerate(problems, start=1)],
        "",
        f"Nothing was sent. Fix the problems above, then drop the corrected files into {folder} again.",
        "The document JSON format is described in schemas/document.schema.json.",
        "",
    ]
    return "\n".join(lines)
