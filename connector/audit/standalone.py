"""The audit log's rules in plain Python (standard library only), and an offline bundle checker.

Why a standalone file: an auditor must be able to check an exported bundle without trusting the
connector's software. This file is copied verbatim into every bundle as ``tools/check_log.py``;
it needs nothing but Python 3.9+ and is short enough to read. The connector imports the same
functions, so the rules exist once.

The rules (format version 1):

* An entry's hash input is the UTF-8 JSON object with the keys ``v`` (1), ``seq``, ``at``,
  ``event``, ``direction``, ``document_id``, ``tracking_id``, ``axis_id``, ``actor``,
  ``sha256``, ``detail`` and ``prev_hash``, keys sorted, no whitespace (separators ``,`` and
  ``:``), non-ASCII characters written as themselves. ``at`` is UTC written
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``detail`` is a JSON text kept as a string (or null);
  absent values are null. ``entry_hash`` is the lowercase hex SHA-256 of that input, and
  ``prev_hash`` is the previous entry's ``entry_hash`` (64 zeros before the first entry).
* A batch seals the entries ``first_seq..last_seq``: its Merkle root is RFC 6962's tree hash
  over the entries' ``entry_hash`` values (as 32 raw bytes each): a leaf is
  SHA-256(0x00 || hash), a node SHA-256(0x01 || left || right), the left subtree holding the
  largest power of two strictly below the number of leaves.
* The connector's key signs the batch *statement*, the ASCII text built by
  :func:`statement`; the RFC 3161 time-stamp token covers the signature bytes.

Run as ``python3 tools/check_log.py [BUNDLE_DIR]`` inside an extracted bundle: it recomputes
every entry hash and link, every Merkle root, compares each statement file with the batch it
describes, and checks every evidence file against its digest. Signatures and time-stamps are
checked with openssl (see README.txt).
"""

from __future__ import annotations

import bisect
import datetime as _dt
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
_UTC = _dt.timezone.utc  # noqa: UP017 - not datetime.UTC: this file must run on Python 3.9
GENESIS = "0" * 64
STATEMENT_HEADER = "edoc-connector audit seal v1"
#: The fields an entry's hash covers, in the order they are shown to people.
ENTRY_FIELDS = ("seq", "at", "event", "direction", "document_id", "tracking_id", "axis_id",
                "actor", "sha256", "detail", "prev_hash")
_TEXT_FIELDS = ("event", "direction", "document_id", "tracking_id", "axis_id", "actor",
                "sha256", "detail")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_CHUNK = 1 << 20

Report = Callable[[str, str], None]  # (where, what)


# --------------------------------------------------------------------------- canonical form


def canonical_json(value: Any) -> bytes:
    """The one JSON serialization the log hashes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def format_time(moment: _dt.datetime) -> str:
    """``at`` as hashed: UTC with microseconds and a ``Z`` (naive datetimes are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    return moment.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> _dt.datetime:
    """The inverse of :func:`format_time`."""
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_UTC)


def is_time(value: Any) -> bool:
    """True for ``at`` as hashed (see :func:`format_time`)."""
    if not isinstance(value, str) or not _AT.match(value):
        return False
    try:
        parse_time(value)
    except ValueError:
        return False
    return True


def is_seq(value: Any) -> bool:
    """True for a seq number (or batch number): a positive integer."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_digest(value: Any) -> bool:
    """True for a lowercase hex SHA-256."""
    return isinstance(value, str) and bool(_HEX64.match(value))


def entry_hash(fields: dict[str, Any]) -> str:
    """The SHA-256 (hex) of an entry's canonical form; ``fields`` holds at least ENTRY_FIELDS."""
    record = {"v": FORMAT_VERSION}
    for name in ENTRY_FIELDS:
        record[name] = fields.get(name)
    return hashlib.sha256(canonical_json(record)).hexdigest()


def entry_line(fields: dict[str, Any]) -> str:
    """One JSON line for an entry as archives and bundles hold it (the fields + entry_hash)."""
    record = {name: fields.get(name) for name in ENTRY_FIELDS}
    record["entry_hash"] = fields["entry_hash"]
    return canonical_json(record).decode("utf-8")


def parse_entry(record: Any) -> dict[str, Any]:
    """Check a decoded entry record's shape; ValueError names the first bad field."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    expected = set(ENTRY_FIELDS) | {"entry_hash"}
    missing = sorted(expected - set(record))
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    extra = sorted(set(record) - expected)
    if extra:
        raise ValueError(f"unexpected field(s): {', '.join(extra)}")
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError(f"seq must be a positive integer, not {seq!r}")
    if not isinstance(record["at"], str) or not _AT.match(record["at"]):
        raise ValueError(f"at must be UTC time like 2026-01-31T08:00:00.000000Z, not {record['at']!r}")
    for name in _TEXT_FIELDS:
        if record[name] is not None and not isinstance(record[name], str):
            raise ValueError(f"{name} must be a string or null")
    for name in ("event", "direction", "actor"):
        if not record[name]:
            raise ValueError(f"{name} is empty")
    for name in ("prev_hash", "entry_hash"):
        if not isinstance(record[name], str) or not _HEX64.match(record[name]):
            raise ValueError(f"{name} is not a lowercase hex SHA-256")
    return record


# --------------------------------------------------------------------------- Merkle tree and statement


def merkle_root(leaves: Sequence[bytes]) -> str:
    """RFC 6962 Merkle tree hash (hex) over ``leaves`` (each an entry hash as 32 bytes)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")

    def node(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return hashlib.sha256(b"\x00" + leaves[lo]).digest()
        k = 1 << ((n - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + node(lo, lo + k) + node(lo + k, hi)).digest()

    return node(0, len(leaves)).hex()


def statement(batch_id: int, first_seq: int, last_seq: int, root: str) -> bytes:
    """The exact bytes a batch signature covers."""
    return (f"{STATEMENT_HEADER}\nbatch: {batch_id}\nfirst_seq: {first_seq}\n"
            f"last_seq: {last_seq}\nmerkle_root: {root}\n").encode("ascii")


def _leaf(hex_hash: str) -> bytes:
    try:
        raw = bytes.fromhex(hex_hash)
    except ValueError:
        raw = b""
    return raw if len(raw) == 32 else hashlib.sha256(hex_hash.encode("utf-8", "replace")).digest()


# --------------------------------------------------------------------------- chain checking


class BatchRef:
    """What the chain check needs of a batch: its range, its recorded root, where it is."""

    __slots__ = ("done", "first_seq", "id", "last_seq", "leaves", "merkle_root", "where")

    def __init__(self, batch_id: int, first_seq: int, last_seq: int, root: str, where: str) -> None:
        self.id = batch_id
        self.first_seq = first_seq
        self.last_seq = last_seq
        self.merkle_root = root
        self.where = where
        self.leaves: list[bytes] = []
        self.done = False

    @property
    def label(self) -> str:
        return f"batch {self.id} (seq {self.first_seq}..{self.last_seq})"


class ChainChecker:
    """Checks entries fed in log order: each hash, the seq run, each prev_hash link, and the
    Merkle root of every batch, reporting each break with where it is.

    When checking a window of the log, :meth:`anchor` names the entry just before it. With
    ``segments=True`` (bundles) gaps are allowed between batches: the entries are whole
    batches, not the whole log; every entry must then be in a batch.
    """

    def __init__(self, batches: Iterable[BatchRef], report: Report, *, segments: bool = False,
                 start_seq: int | None = None, quiet_unbatched: bool = False) -> None:
        self.batches = sorted(batches, key=lambda b: (b.first_seq, b.last_seq))
        self._starts = [b.first_seq for b in self.batches]
        self.report = report
        self.segments = segments
        self.quiet_unbatched = quiet_unbatched  # a batch record was unusable (and reported)
        self.prev: tuple[int, str, str] | None = None
        self.entries = 0
        self.unsealed: list[int] = []
        self.last_seq_seen = 0
        self._next_unfinished = 0
        self._check_coverage(start_seq)

    # -- batch ranges

    def _check_coverage(self, start_seq: int | None) -> None:
        expected = start_seq
        previous: BatchRef | None = None
        for batch in self.batches:
            if batch.last_seq < batch.first_seq:
                self.report(batch.where, f"{batch.label}: the range is empty or reversed")
            if previous is not None and batch.first_seq <= previous.last_seq:
                self.report(batch.where, f"{batch.label} overlaps {previous.label}")
            elif expected is not None and not self.segments and batch.first_seq > expected:
                self.report(batch.where, f"entries {expected}..{batch.first_seq - 1} are in no batch "
                                         f"(a batch before {batch.label} was removed)")
            expected = batch.last_seq + 1
            previous = batch

    def _batch_for(self, seq: int) -> BatchRef | None:
        i = bisect.bisect_right(self._starts, seq) - 1
        if i >= 0 and self.batches[i].first_seq <= seq <= self.batches[i].last_seq:
            return self.batches[i]
        return None

    def _finish_batches_before(self, seq: int | None) -> None:
        while self._next_unfinished < len(self.batches):
            batch = self.batches[self._next_unfinished]
            if seq is not None and batch.last_seq >= seq:
                return
            self._finish(batch)
            self._next_unfinished += 1

    def _finish(self, batch: BatchRef) -> None:
        if batch.done:
            return
        batch.done = True
        expected = batch.last_seq - batch.first_seq + 1
        if not batch.leaves:
            if batch.last_seq > self.last_seq_seen and self.last_seq_seen >= batch.first_seq - 1:
                self.report(batch.where, f"{batch.label}: the log ends at seq {self.last_seq_seen}; "
                                         f"entries {batch.first_seq}..{batch.last_seq} are missing (log truncated)")
            else:
                self.report(batch.where, f"{batch.label}: none of its entries are present")
            return
        if batch.last_seq > self.last_seq_seen:
            self.report(batch.where, f"{batch.label}: the log ends at seq {self.last_seq_seen}; entries "
                                     f"{self.last_seq_seen + 1}..{batch.last_seq} are missing (log truncated)")
        root = merkle_root(batch.leaves)
        if batch.merkle_root is not None and root != batch.merkle_root:  # None: unreadable, reported
            self.report(batch.where, f"{batch.label}: the Merkle root of its {len(batch.leaves)} entries "
                                     f"(expected {expected}) does not match the sealed root: an entry in "
                                     f"seq {batch.first_seq}..{batch.last_seq} was altered, removed or added")

    def _between_batches(self, before: int, after: int) -> bool:
        """True when ``before`` ends one batch and ``after`` starts another (a bundle's gap)."""
        left, right = self._batch_for(before), self._batch_for(after)
        return (left is not None and right is not None and left.last_seq == before
                and right.first_seq == after)

    # -- entries

    def anchor(self, seq: int, stored_hash: str, where: str) -> None:
        """The entry just before the first one fed (checking a window of the log)."""
        self.prev = (seq, stored_hash, where)

    def feed(self, fields: dict[str, Any], where: str, *, check_hash: bool = True) -> None:
        """Check one entry (already shape-checked by :func:`parse_entry` or read from the DB).

        ``check_hash=False``: some fields could not be read (reported by the caller, and None
        here), so the entry is only placed in the chain and its batch."""
        self.entries += 1
        seq = fields["seq"]
        stored = fields["entry_hash"]
        if check_hash and entry_hash(fields) != stored:
            self.report(where, f"entry seq {seq} ({fields.get('event')}): its content does not match "
                               f"its entry_hash (a field of this entry was altered)")
        prev = self.prev
        if prev is None:
            if seq == 1:
                if fields["prev_hash"] != GENESIS:
                    self.report(where, f"entry seq 1: prev_hash must be {GENESIS[:8]}... (the log's start)")
            elif not self.segments:
                self.report(where, f"the log starts at seq {seq}: entries 1..{seq - 1} are missing")
        elif seq == prev[0]:
            self.report(where, f"entry seq {seq} is duplicated (also at {prev[2]})")
        elif seq < prev[0]:
            self.report(where, f"entry seq {seq} is out of order: it comes after seq {prev[0]} (entries reordered)")
        elif seq > prev[0] + 1:
            if not (self.segments and self._between_batches(prev[0], seq)):
                self.report(where, f"entries {prev[0] + 1}..{seq - 1} are missing before entry seq {seq} "
                                   f"(removed from the log)")
        elif fields["prev_hash"] is not None and prev[1] is not None and fields["prev_hash"] != prev[1]:
            self.report(where, f"entry seq {seq}: prev_hash does not match the hash of entry seq {prev[0]} "
                               f"(at {prev[2]}): the chain is broken here")
        self.last_seq_seen = max(self.last_seq_seen, seq)
        if prev is None or seq > prev[0]:
            self.prev = (seq, stored, where)
            self._finish_batches_before(seq)
        batch = self._batch_for(seq)
        if batch is not None:
            if batch.done:
                return  # already reported as out of order
            batch.leaves.append(_leaf(stored or ""))
        elif self.batches and seq < self.batches[-1].last_seq:
            if self.segments and not self.quiet_unbatched:
                self.report(where, f"entry seq {seq} is in no batch of the bundle")
            # else: the gap in the batches' ranges is reported once by _check_coverage
        elif self.segments and not self.quiet_unbatched:
            self.report(where, f"entry seq {seq} is in no batch of the bundle")
        else:
            self.unsealed.append(seq)

    def finish(self) -> None:
        """Check the batches still open (reports truncation)."""
        self._finish_batches_before(None)


# --------------------------------------------------------------------------- bundle check (offline)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_path(root: Path, name: str) -> Path:
    """``root / name`` for a name a manifest gives; ValueError unless it stays inside ``root``."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or "\\" in name:
        raise ValueError(f"the manifest names a file outside the bundle: {name!r}")
    return root.joinpath(*parts)


def check_bundle_dir(root: Path, report: Report) -> dict[str, int]:
    """Check an extracted bundle's log and evidence (no cryptography: openssl does that)."""
    root = Path(root)
    counts = {"entries": 0, "batches": 0, "evidence": 0}
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report("bundle file manifest.json", f"cannot be read: {exc}")
        return counts
    if not isinstance(manifest, dict):
        report("bundle file manifest.json", "is not an audit bundle manifest")
        return counts
    if not isinstance(manifest.get("batches"), list):
        report("bundle file manifest.json", f"field batches is {manifest.get('batches', 'missing')!r}, "
                                            "not a list of batch records")
        return counts
    refs = []
    for number, info in enumerate(manifest["batches"], 1):
        problem = batch_record_problem(info)
        if problem:
            report("bundle file manifest.json", f"batch record {number}: {problem}")
            continue
        ref = BatchRef(info["id"], info["first_seq"], info["last_seq"], info["merkle_root"],
                       f"bundle file manifest.json (batch {info['id']})")
        name = info["statement"]
        refs.append(ref)
        wanted = statement(ref.id, ref.first_seq, ref.last_seq, ref.merkle_root)
        try:
            found = bundle_path(root, name).read_bytes()
        except OSError:
            report(f"bundle file {name}", "missing")
            continue
        except ValueError as exc:
            report("bundle file manifest.json", str(exc))
            continue
        if found != wanted:
            report(f"bundle file {name}", f"does not state batch {ref.id} as the manifest records it")
    counts["batches"] = len(refs)
    unusable = len(refs) < len(manifest["batches"])  # reported: its entries are not "in no batch"
    checker = ChainChecker(refs, report, segments=True, quiet_unbatched=unusable)
    referenced: dict[str, int] = {}
    log_path = root / "log" / "entries.jsonl"
    try:
        with open(log_path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                where = f"bundle file log/entries.jsonl line {number}"
                try:
                    record = parse_entry(json.loads(line))
                except ValueError as exc:
                    report(where, f"not a valid entry: {exc}")
                    continue
                checker.feed(record, where)
                if record["sha256"]:
                    referenced.setdefault(record["sha256"], record["seq"])
    except OSError as exc:
        report("bundle file log/entries.jsonl", f"cannot be read: {exc}")
    except UnicodeDecodeError:
        report("bundle file log/entries.jsonl", "is not UTF-8 text")
    checker.finish()
    counts["entries"] = checker.entries
    selected_entries = manifest.get("selected_entries") or []
    if not isinstance(selected_entries, list) or not all(is_seq(s) for s in selected_entries):
        report("bundle file manifest.json", "field selected_entries is not a list of entry seq numbers")
        selected_entries = []
    selected = set(selected_entries)
    evidence_dir = root / "evidence"
    present = sorted(evidence_dir.iterdir()) if evidence_dir.is_dir() else []
    for path in present:
        name = path.name
        where = f"bundle file evidence/{name}"
        if not path.is_file():
            report(where, "is not a file")
            continue
        if name not in referenced:
            report(where, "is not referenced by any entry of the log")
        if sha256_file(path) != name:
            report(where, "content does not match its name (its SHA-256)")
        counts["evidence"] += 1
    names = {p.name for p in present}
    for digest, seq in sorted(referenced.items(), key=lambda item: item[1]):
        if digest not in names and seq in selected:
            report(f"bundle file evidence/{digest}", f"missing (referenced by entry seq {seq})")
    return counts


def batch_record_problem(info: Any) -> str:
    """Why a manifest batch record cannot be used ('' when it can)."""
    if not isinstance(info, dict):
        return "not a JSON object"
    for name in ("id", "first_seq", "last_seq"):
        if not is_seq(info.get(name)):
            return f"field {name} is {info.get(name, 'missing')!r}, not a positive integer"
    if not is_digest(info.get("merkle_root")):
        return f"field merkle_root is {info.get('merkle_root', 'missing')!r}, not a lowercase hex SHA-256"
    if not isinstance(info.get("statement"), str):
        return f"field statement is {info.get('statement', 'missing')!r}, not a file name"
    return ""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    problems: list[str] = []
    counts = check_bundle_dir(root, lambda where, what: problems.append(f"{where}: {what}"))
    for line in problems:
        print(f"BROKEN {line}")
    if problems:
        print(f"{len(problems)} problem(s) found")
        return 1
    print(f"OK: {counts['entries']} entries, {counts['batches']} batches, {counts['evidence']} evidence "
          f"files: every entry hash, chain link, Merkle root and statement matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
