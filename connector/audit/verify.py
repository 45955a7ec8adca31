"""Checking the whole log (or a time window of it): archives, chain, seals, time-stamps, evidence.

Every break is reported with where it is: ``database`` (and the entry's seq), ``archive file
PATH line N``, ``evidence file PATH``. What is checked:

- archive files: present, their SHA-256 as recorded, each naming its predecessor's digest, the
  ranges contiguous from seq 1, and each file's digest equal to the one the log itself recorded
  in its ``audit.archived`` entry (so editing a file *and* its row is found too);
- entries: each hash recomputed, seq contiguous, each ``prev_hash`` equal to the previous
  entry's hash (deleted, duplicated, reordered, inserted entries);
- batches: contiguous ranges, the Merkle root over their entries (a truncated log shows as a
  batch whose entries are missing), the signature over the statement, and the time-stamp over
  the signature (with the TSA's CA certificates: fully; without: only read, and said so);
  optionally the signer certificate against trust anchors;
- evidence: every file an entry names is re-hashed.

The unsealed tail (entries after the last batch) can only be checked for its links; a
truncation of unsealed entries cannot be detected by anyone. The report ends with the log's
head (seq and hash): recording it lets a later check prove nothing was cut since.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509

from ..signing.trust import TrustStore, validate_chain
from ..store.evidence import EvidenceStore
from .archive import file_sha256
from .log import ARCHIVED_EVENT
from .reader import ArchiveRow, LogReader, LogReadError
from .records import Batch, DamagedBatch, RecordError
from .seal import load_pem_chain, verify_signature
from .standalone import BatchRef, ChainChecker
from .tsa import TsaError, token_info, verify_token


@dataclass(frozen=True)
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class VerifyReport:
    """The outcome of a check: problems (breaks) and notes (what could not be checked, the tail)."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entries: int = 0
    batches: int = 0
    archives: int = 0
    evidence_files: int = 0
    timestamps_checked: int = 0
    timestamps_unchecked: int = 0
    unstamped: int = 0
    head: tuple[int, str] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, what: str) -> None:
        self.problems.append(Problem(where, what))

    def summary(self) -> str:
        parts = [f"{self.entries} entries", f"{self.batches} batches", f"{self.archives} archive files",
                 f"{self.evidence_files} evidence files", f"{self.timestamps_checked} time-stamps verified"]
        return ", ".join(parts)


Progress = Callable[[int], None]


def verify_log(engine: sa.Engine, evidence: EvidenceStore, *, since: dt.datetime | None = None,
               until: dt.datetime | None = None, archive_dir: Path | None = None,
               tsa_ca: Sequence[x509.Certificate] | None = None, trust: TrustStore | None = None,
               require_timestamps: bool = False, progress: Progress | None = None) -> VerifyReport:
    """Check the log; ``since``/``until`` (aware datetimes) limit the entries, batches and
    evidence checked to the batches holding entries of that window (archives are always
    checked as files)."""
    report = VerifyReport()
    reader = LogReader(engine, archive_dir)
    try:
        archives = reader.archives()
    except LogReadError as exc:  # an unreadable archive record: nothing can be placed without the list
        report.add(exc.where, f"{exc.what} (the log cannot be checked further)")
        return report
    digests = _check_archive_files(reader, archives, report)
    lo = hi = None
    if since is not None or until is not None:
        try:
            window = reader.window(since, until)
        except LogReadError as exc:  # a damaged archive in the period: the file check named it too
            report.add(exc.where, f"{exc.what} (the period cannot be checked)")
            return report
        if window is None:
            report.notes.append("no entries in the given period")
            return report
        lo, hi = window
    batch_list = reader.batch_records(lo, hi, strict=False)
    if lo is not None and hi is not None and batch_list:  # whole batches: widen to their bounds
        lo = min([lo] + [b.first_seq for b, _ in batch_list if b.first_seq is not None])
        hi = max([hi] + [b.last_seq for b, _ in batch_list if b.last_seq is not None])
    _Walk(reader, evidence, report, lo, hi, digests, archives, batch_list, progress).run()
    for batch, where in batch_list:
        if isinstance(batch, DamagedBatch):
            report.add(where, str(batch.error))
        else:
            check_batch(batch, where, report, tsa_ca=tsa_ca, trust=trust, require_timestamps=require_timestamps)
        report.batches += 1
    if report.timestamps_unchecked:
        report.notes.append(f"{report.timestamps_unchecked} time-stamp(s) were read but NOT verified: give the "
                            "TSA's CA certificates (--tsa-ca) to verify them")
    if report.unstamped and not require_timestamps:
        report.notes.append(f"{report.unstamped} batch(es) carry no time-stamp yet")
    report.head = reader.head()
    return report


# ---------------------------------------------------------------------- archives


def _check_archive_files(reader: LogReader, archives: list[ArchiveRow], report: VerifyReport) -> dict[int, str | None]:
    """Check each archive file against its row and its predecessor; returns id -> actual digest."""
    actual: dict[int, str | None] = {}
    expected_first = 1
    prev: ArchiveRow | None = None
    for row in archives:
        path = reader.archive_path(row)
        where = f"archive file {path}"
        report.archives += 1
        if row.first_seq != expected_first:
            if row.first_seq > expected_first:
                report.add(where, f"holds seq {row.first_seq}..{row.last_seq}, but seq {expected_first}.."
                                  f"{row.first_seq - 1} are in no archive (an archive was removed)")
            else:
                report.add(where, f"holds seq {row.first_seq}..{row.last_seq}, overlapping the archive before it")
        recorded_prev = prev.sha256 if prev else None
        if row.prev_archive_sha256 != recorded_prev:
            report.add(where, "the archive list names another predecessor than the previous archive "
                              "(archives swapped or removed)")
        try:
            digest: str | None = file_sha256(path)
        except OSError:
            digest = None
            report.add(where, f"missing (archive of seq {row.first_seq}..{row.last_seq}, recorded as {row.path})")
        actual[row.id] = digest
        if digest is not None:
            if digest != row.sha256:
                report.add(where, f"its SHA-256 ({digest[:16]}...) is not the one recorded when it was written "
                                  f"({row.sha256[:16]}...): the file was altered, truncated or replaced")
            header = _first_item(reader, row)
            if header is None:
                report.add(f"{where} line 1", "no archive header")
            else:
                if (header.get("first_seq"), header.get("last_seq")) != (row.first_seq, row.last_seq):
                    report.add(f"{where} line 1", f"the header says seq {header.get('first_seq')}..{header.get('last_seq')}, "
                                                  f"the archive list {row.first_seq}..{row.last_seq} (files swapped?)")
                prev_actual = actual.get(prev.id) if prev else None
                if prev is not None and header.get("prev_archive_sha256") != prev.sha256:
                    report.add(f"{where} line 1", f"does not name the previous archive "
                                                  f"{reader.archive_path(prev).name} as its predecessor (archives swapped, "
                                                  f"removed or reordered)")
                elif prev is not None and prev_actual is not None and prev_actual != header.get("prev_archive_sha256"):
                    pass  # the predecessor's own digest mismatch is already reported on it
                elif prev is None and header.get("prev_archive_sha256") is not None:
                    report.add(f"{where} line 1", "names a predecessor, but it is the first archive (an older archive was removed)")
        expected_first = row.last_seq + 1
        prev = row
    return actual


def _first_item(reader: LogReader, row: ArchiveRow) -> dict[str, Any] | None:
    try:
        for item in reader.archive_items(row):
            return item.value if item.kind == "header" else None
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------- entries


class _Walk:
    """Streams the entries of the window through the chain checker, checking evidence."""

    def __init__(self, reader: LogReader, evidence: EvidenceStore, report: VerifyReport, lo: int | None,
                 hi: int | None, digests: dict[int, str | None], archives: list[ArchiveRow],
                 batches: list[tuple[Batch | DamagedBatch, str]], progress: Progress | None) -> None:
        self.reader = reader
        self.evidence = evidence
        self.report = report
        self.lo = lo
        self.hi = hi
        self.digests = digests
        self.archives = archives
        self.batches = batches
        self.progress = progress
        self.pending_progress = 0
        self.checked_evidence: set[str] = set()
        self.claims: dict[tuple[int, int], tuple[str, str]] = {}

    def run(self) -> None:
        refs = [BatchRef(b.id, b.first_seq, b.last_seq, b.merkle_root, where)  # type: ignore[arg-type]
                for b, where in self.batches
                if b.id is not None and b.first_seq is not None and b.last_seq is not None]
        checker = ChainChecker(refs, self.report.add, start_seq=self.lo or 1)
        anchor_seq = self.lo - 1 if self.lo and self.lo > 1 else None
        for fields, where, error in self._stream(anchor_seq):
            if error is not None:
                self.report.add(where, str(error))
                if fields["seq"] is None:
                    continue  # cannot be placed in the chain; its neighbours' links show the gap
            seq = fields["seq"]
            if anchor_seq is not None and seq == anchor_seq and checker.prev is None:
                checker.anchor(seq, fields["entry_hash"], where)
                continue
            if anchor_seq is not None and checker.prev is None:
                self.report.add(where, f"entry seq {anchor_seq}, just before the checked period, is missing")
                checker.anchor(anchor_seq, "", "(missing)")
            checker.feed(fields, where, check_hash=error is None)
            self._evidence(fields)
            if fields["event"] == ARCHIVED_EVENT and fields["direction"] == "audit":
                self._claim(fields, where)
            self._tick()
        checker.finish()
        self._flush_progress()
        self.report.entries = checker.entries
        if checker.unsealed:
            self.report.notes.append(f"{len(checker.unsealed)} entries (seq {checker.unsealed[0]}.."
                                     f"{checker.unsealed[-1]}) are not sealed yet")
        self._check_claims(full=self.lo is None)

    def _stream(self, anchor_seq: int | None) -> Iterator[tuple[dict[str, Any], str, RecordError | None]]:
        lo = anchor_seq if anchor_seq is not None else self.lo
        for row in self.archives:
            if (self.hi is not None and row.first_seq > self.hi) or (lo is not None and row.last_seq < lo):
                continue
            path = self.reader.archive_path(row)
            try:
                for item in self.reader.archive_items(row):
                    where = f"archive file {path} line {item.line}"
                    if item.kind == "error":
                        self.report.add(where, item.value)
                    elif item.kind == "entry":
                        seq = item.value["seq"]
                        if not (row.first_seq <= seq <= row.last_seq):
                            self.report.add(where, f"entry seq {seq} is outside the archive's range "
                                                   f"{row.first_seq}..{row.last_seq}")
                        if (lo is None or seq >= lo) and (self.hi is None or seq <= self.hi):
                            yield item.value, where, None
            except OSError:
                continue  # reported as missing by the archive check
        yield from self.reader.scan_database(lo, self.hi)

    def _evidence(self, fields: dict[str, Any]) -> None:
        digest = fields.get("sha256")
        if not digest or digest in self.checked_evidence:
            return
        self.checked_evidence.add(digest)
        self.report.evidence_files += 1
        try:
            path = self.evidence.path_for(digest)
        except Exception:  # noqa: BLE001 - a malformed digest is the entry's problem
            self.report.add("database", f"entry seq {fields['seq']}: sha256 {digest!r} is not a digest")
            return
        where = f"evidence file {path}"
        if not path.is_file():
            self.report.add(where, f"missing (named by entry seq {fields['seq']}, {fields['event']})")
            return
        try:
            self.evidence.check(digest)
        except Exception:  # noqa: BLE001 - EvidenceError or an OSError reading it
            self.report.add(where, f"content does not match its digest: the file was altered "
                                   f"(named by entry seq {fields['seq']}, {fields['event']})")

    def _claim(self, fields: dict[str, Any], where: str) -> None:
        try:
            detail = json.loads(fields["detail"] or "{}")
            key = (int(detail["first_seq"]), int(detail["last_seq"]))
            self.claims[key] = (str(detail["sha256"]), where)
        except (ValueError, KeyError, TypeError):
            self.report.add(where, f"entry seq {fields['seq']}: the archive record is unreadable")

    def _check_claims(self, *, full: bool) -> None:
        rows = {(r.first_seq, r.last_seq): r for r in self.archives}
        for key, (sha, where) in self.claims.items():
            row = rows.get(key)
            if row is None:
                self.report.add(where, f"records an archive of seq {key[0]}..{key[1]} that is not in the archive list "
                                       f"(the archive was removed)")
                continue
            digest = self.digests.get(row.id)
            if row.sha256 != sha:
                self.report.add(f"archive file {self.reader.archive_path(row)}",
                                f"the archive list's digest differs from the one the log recorded at {where} "
                                f"(file and list were both changed)")
            elif digest is not None and digest != sha:
                pass  # already reported against the recorded digest
        if full:
            for key, row in rows.items():
                if key not in self.claims:
                    self.report.add(f"archive file {self.reader.archive_path(row)}",
                                    "no audit.archived entry of the log records this archive")

    def _tick(self) -> None:
        if self.progress is None:
            return
        self.pending_progress += 1
        if self.pending_progress >= 500:
            self._flush_progress()

    def _flush_progress(self) -> None:
        if self.progress is not None and self.pending_progress:
            self.progress(self.pending_progress)
            self.pending_progress = 0


# ---------------------------------------------------------------------- batch crypto


def check_batch(batch: Batch, where: str, report: VerifyReport, *, tsa_ca: Sequence[x509.Certificate] | None,
                trust: TrustStore | None, require_timestamps: bool, signature: bytes | None = None,
                statement: bytes | None = None, stamp_where: str | None = None) -> None:
    """Signature, signer trust and time-stamp of one batch (``signature``/``statement`` override
    the batch's own bytes, e.g. the files of a bundle; ``stamp_where`` locates the token)."""
    signature = batch.signature if signature is None else signature
    statement = batch.statement() if statement is None else statement
    try:
        certs = load_pem_chain(batch.signer_cert)
    except ValueError:
        report.add(where, f"{batch.label}: the signer certificate is unreadable")
        return
    if not verify_signature(certs[0], batch.algorithm, signature, statement):
        report.add(where, f"{batch.label}: the signature does not verify with the certificate of "
                          f"{certs[0].subject.rfc4514_string()} ({batch.algorithm})")
    at = batch.sealed_at
    if batch.timestamp_token is None:
        report.unstamped += 1
        if require_timestamps:
            report.add(where, f"{batch.label}: no time-stamp")
    else:
        try:
            if tsa_ca:
                info = verify_token(batch.timestamp_token, signature, tsa_ca)
                report.timestamps_checked += 1
            else:
                info = token_info(batch.timestamp_token)
                if info.imprint != _sha256(signature):
                    raise TsaError("the time-stamp covers other bytes than the batch signature")
                report.timestamps_unchecked += 1
            at = info.gen_time
        except TsaError as exc:
            report.add(stamp_where or where, f"{batch.label}: time-stamp: {exc}")
    if trust is not None:
        result = validate_chain(certs[0], certs[1:], at=at, store=trust)
        if not result.trusted:
            report.add(where, f"{batch.label}: the signer certificate {result.subject} is not trusted: {result.reason}")


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
