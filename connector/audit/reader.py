"""Reading the log back: entries and batches in seq order across archive files and the database.

Used by ``verify``, ``trail`` and ``export``. Archive files are found where ``audit_archives``
says they were written, or, with ``archive_dir``, by their file name in that folder (archives
moved to another disk or restored from a backup).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .archive import ArchiveItem, read_archive
from .records import Batch, DamagedBatch, FieldDecoder, RecordError, batch_from_row, decode_entry
from .standalone import parse_time
from .tables import audit_archives, audit_batches, audit_entries

DATABASE = "database"


class LogReadError(Exception):
    """An archive file cannot be read or holds a malformed line: ``where`` names it."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where
        self.what = what
        super().__init__(f"{where}: {what}")


@dataclass(frozen=True)
class ArchiveRow:
    id: int
    path: str
    sha256: str
    prev_archive_sha256: str | None
    first_seq: int
    last_seq: int
    last_entry_hash: str
    last_batch_id: int
    first_at: dt.datetime
    last_at: dt.datetime
    created: dt.datetime


class LogReader:
    """Entries and batches of the whole log (archives, then the database)."""

    def __init__(self, engine: sa.Engine, archive_dir: Path | None = None) -> None:
        self.engine = engine
        self.archive_dir = Path(archive_dir) if archive_dir is not None else None
        self._archives: list[ArchiveRow] | None = None

    # -- archives

    def archives(self) -> list[ArchiveRow]:
        if self._archives is None:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(*_raw(audit_archives)).order_by(
                    audit_archives.c.first_seq, audit_archives.c.id)).mappings().all()
            self._archives = [_archive_row(r) for r in rows]
        return self._archives

    def archive_path(self, row: ArchiveRow) -> Path:
        recorded = Path(row.path)
        return self.archive_dir / recorded.name if self.archive_dir is not None else recorded

    def archive_items(self, row: ArchiveRow) -> Iterator[ArchiveItem]:
        """Parsed lines of one archive; OSError when the file is missing or unreadable."""
        return read_archive(self.archive_path(row))

    def _strict_items(self, row: ArchiveRow) -> Iterator[ArchiveItem]:
        path = self.archive_path(row)
        try:
            for item in read_archive(path):
                if item.kind == "error":
                    raise LogReadError(f"archive file {path} line {item.line}", f"{item.value}; run 'audit verify'")
                yield item
        except OSError as exc:
            raise LogReadError(f"archive file {path}", f"cannot be read ({exc.strerror or exc})") from None

    # -- entries and batches

    def entries(self, lo: int | None = None, hi: int | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        """(fields, where) for entries with lo <= seq <= hi, in seq order (strict: LogReadError)."""
        for row in self.archives():
            if (hi is not None and row.first_seq > hi) or (lo is not None and row.last_seq < lo):
                continue
            path = self.archive_path(row)
            for item in self._strict_items(row):
                if item.kind == "entry" and _inside(item.value["seq"], lo, hi):
                    yield item.value, f"archive file {path} line {item.line}"
        yield from self.database_entries(lo, hi)

    def database_entries(self, lo: int | None = None, hi: int | None = None,
                         where: Any = None) -> Iterator[tuple[dict[str, Any], str]]:
        """(fields, where) from the database; LogReadError when a field cannot be decoded."""
        for fields, place, error in self.scan_database(lo, hi, where):
            if error is not None:
                raise LogReadError(place, f"{error}; run 'audit verify'")
            yield fields, place

    def scan_database(self, lo: int | None = None, hi: int | None = None,
                      where: Any = None) -> Iterator[tuple[dict[str, Any], str, RecordError | None]]:
        """(fields, where, error) from the database, each field checked as it is decoded: for an
        entry with unreadable fields, ``error`` names them and they are None in ``fields``."""
        query = sa.select(*_raw(audit_entries)).order_by(audit_entries.c.seq)
        if lo is not None:
            query = query.where(audit_entries.c.seq >= lo)
        if hi is not None:
            query = query.where(audit_entries.c.seq <= hi)
        if where is not None:
            query = query.where(where)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=1000).execute(query).mappings()
            for row in result:
                fields, error = decode_entry(row)
                yield fields, DATABASE, error

    def batches(self, lo: int | None = None, hi: int | None = None, *,
                strict: bool = True) -> list[tuple[Batch, str]]:
        """(batch, where) for batches overlapping lo..hi, archived ones first (LogReadError
        when an archive line or a database field cannot be read)."""
        found: list[tuple[Batch, str]] = []
        for batch, where in self.batch_records(lo, hi, strict=strict):
            if isinstance(batch, DamagedBatch):
                raise LogReadError(where, f"{batch.error}; run 'audit verify'")
            found.append((batch, where))
        return found

    def batch_records(self, lo: int | None = None, hi: int | None = None, *,
                      strict: bool = True) -> list[tuple[Batch | DamagedBatch, str]]:
        """Like :meth:`batches`, but a database batch with unreadable fields comes back as a
        :class:`DamagedBatch` (for ``verify``, which reports it and goes on)."""
        found: list[tuple[Batch | DamagedBatch, str]] = []
        for row in self.archives():
            if (hi is not None and row.first_seq > hi) or (lo is not None and row.last_seq < lo):
                continue
            path = self.archive_path(row)
            items = self._strict_items(row) if strict else _lenient(self, row)
            for item in items:
                if item.kind == "batch" and _overlaps(item.value, lo, hi):
                    found.append((item.value, f"archive file {path} line {item.line}"))
        # Filtered here, not in SQL: a range edited into text would compare as no number does,
        # and the damaged batch must be reported rather than silently left out.
        query = sa.select(*_raw(audit_batches)).order_by(audit_batches.c.first_seq)
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                where = f"{DATABASE} (audit_batches id {row['id']})"
                try:
                    batch: Batch | DamagedBatch = batch_from_row(row)
                except RecordError as exc:
                    batch = DamagedBatch.from_error(exc)
                if batch.first_seq is None or batch.last_seq is None or _overlaps(batch, lo, hi):
                    found.append((batch, where))
        return found

    def count(self, lo: int | None = None, hi: int | None = None) -> int:
        """How many entries the range holds (archives by their recorded ranges)."""
        total = 0
        for row in self.archives():
            a = max(row.first_seq, lo) if lo is not None else row.first_seq
            b = min(row.last_seq, hi) if hi is not None else row.last_seq
            total += max(0, b - a + 1)
        query = sa.select(sa.func.count()).select_from(audit_entries)
        if lo is not None:
            query = query.where(audit_entries.c.seq >= lo)
        if hi is not None:
            query = query.where(audit_entries.c.seq <= hi)
        with self.engine.connect() as conn:
            total += int(conn.execute(query).scalar() or 0)
        return total

    def window(self, since: dt.datetime | None, until: dt.datetime | None) -> tuple[int, int] | None:
        """The seq range of entries with since <= at < until, or None when there are none."""
        seqs: list[int] = []
        for row in self.archives():
            if (until is not None and row.first_at >= until) or (since is not None and row.last_at < since):
                continue
            for item in self._strict_items(row):
                if item.kind == "entry":
                    at = _at(item.value)
                    if (since is None or at >= since) and (until is None or at < until):
                        seqs.append(item.value["seq"])
        query = sa.select(sa.func.min(audit_entries.c.seq), sa.func.max(audit_entries.c.seq))
        if since is not None:
            query = query.where(audit_entries.c.at >= since)
        if until is not None:
            query = query.where(audit_entries.c.at < until)
        with self.engine.connect() as conn:
            low, high = conn.execute(query).one()
        if low is not None:
            seqs += [int(low), int(high)]
        return (min(seqs), max(seqs)) if seqs else None

    def find(self, document_id: str) -> Iterator[tuple[dict[str, Any], str]]:
        """Entries about one document (its document_id, tracking id or axis item id), in log order."""
        for row in self.archives():
            path = self.archive_path(row)
            for item in self._strict_items(row):
                value = item.value
                if item.kind == "entry" and document_id in (value["document_id"], value["tracking_id"], value["axis_id"]):
                    yield value, f"archive file {path} line {item.line}"
        yield from self.database_entries(where=sa.or_(audit_entries.c.document_id == document_id,
                                                      audit_entries.c.tracking_id == document_id,
                                                      audit_entries.c.axis_id == document_id))

    def head(self) -> tuple[int, str] | None:
        """(seq, entry_hash) of the newest entry."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(audit_entries.c.seq, audit_entries.c.entry_hash)
                               .order_by(audit_entries.c.seq.desc()).limit(1)).first()
        if row is not None:
            return int(row[0]), row[1]
        archives = self.archives()
        return (archives[-1].last_seq, archives[-1].last_entry_hash) if archives else None


def _raw(table: sa.Table) -> list[Any]:
    """The table's columns as the driver returns them (no SQLAlchemy conversion), so that a
    value of the wrong type is decoded, and reported, by :mod:`.records` instead of raising
    inside SQLAlchemy."""
    return [sa.type_coerce(column, sa.types.NullType()).label(column.name) for column in table.columns]


def _archive_row(row: Any) -> ArchiveRow:
    """An ``audit_archives`` row, each field checked; LogReadError names the unreadable ones."""
    f = FieldDecoder(row)
    ints = {name: f.integer(name) for name in ("id", "first_seq", "last_seq", "last_batch_id")}
    path = f.text("path", required=True)
    digests = {name: f.digest(name, required=name != "prev_archive_sha256")
               for name in ("sha256", "prev_archive_sha256", "last_entry_hash")}
    times = {name: f.time(name) for name in ("first_at", "last_at", "created")}
    if f.problems:
        raise LogReadError(f"{DATABASE} (audit_archives id {row['id']})",
                           f"archive record: {'; '.join(f.problems)} (a field of this record was altered)")
    return ArchiveRow(ints["id"], path, digests["sha256"], digests["prev_archive_sha256"],  # type: ignore[arg-type]
                      ints["first_seq"], ints["last_seq"], digests["last_entry_hash"],  # type: ignore[arg-type]
                      ints["last_batch_id"], times["first_at"], times["last_at"], times["created"])  # type: ignore[arg-type]


def _lenient(reader: LogReader, row: ArchiveRow) -> Iterator[ArchiveItem]:
    try:
        yield from reader.archive_items(row)
    except OSError:
        return


def _inside(seq: int, lo: int | None, hi: int | None) -> bool:
    return (lo is None or seq >= lo) and (hi is None or seq <= hi)


def _overlaps(batch: Any, lo: int | None, hi: int | None) -> bool:
    return (lo is None or batch.last_seq >= lo) and (hi is None or batch.first_seq <= hi)


def _at(fields: dict[str, Any]) -> dt.datetime:
    return parse_time(fields["at"])
