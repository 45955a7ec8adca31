"""The exchange log: append (in the caller's transaction), seal, time-stamp, archive.

Writing
    :meth:`AuditLog.append` adds one entry inside the caller's transaction, so a state change
    and its audit entry commit together or not at all (a kill mid-append leaves the database
    as it was: one transaction). Appends are serialized across threads, processes and
    connector instances:

    - PostgreSQL: ``SELECT pg_advisory_xact_lock(AUDIT_LOCK_KEY)``, then the last entry is
      read. The lock is held until the caller's transaction ends, so keep audited transactions
      short. The transaction must be READ COMMITTED (PostgreSQL's default): under REPEATABLE
      READ the last entry could be read from an older snapshot (the insert then fails on the
      unique ``seq``/``prev_hash`` rather than forking the chain).
    - SQLite: the first statement of an append is a write that changes nothing
      (``DELETE FROM audit_entries WHERE 0 = 1``), which takes SQLite's write lock before the
      last entry is read. This works with pysqlite's default transaction handling (the write
      opens the transaction) and with ``connector.store.db.open_database`` engines (``BEGIN
      IMMEDIATE``: the lock is already held). A caller that opened a *deferred* transaction and
      read first may get "database is locked" (SQLite cannot upgrade such a reader while
      another writer is active); open write transactions with BEGIN IMMEDIATE, as
      ``open_database`` does. An autocommit connection is refused.

Sealing
    :meth:`AuditLog.seal` takes the unsealed entries (at most ``max_batch_entries`` per batch),
    re-checks their hashes and links (an entry altered before sealing is refused, not signed),
    signs the batch statement with the connector's key and, when a TSA is configured, asks it
    to time-stamp the signature. A TSA failure leaves the batch unstamped; every later
    :meth:`seal` retries the oldest unstamped batches first. When ``fail_closed_after`` is set
    and the TSA has failed for longer than that (counted from the first failure, or from the
    oldest batch still waiting for a stamp, which survives restarts),
    :meth:`ensure_can_exchange` raises :class:`AuditUnavailable`; the engine stops exchanging
    until a time-stamp succeeds.

Archiving
    :meth:`AuditLog.archive` moves whole sealed (and, with a TSA, stamped) batches older than
    a time into an archive file (see ``archive``), records it in ``audit_archives`` and appends
    an ``audit.archived`` entry carrying the file's SHA-256, all in one transaction after the
    file is safely on disk. When that transaction fails (the database's disk is full), the
    file it wrote is removed again: the entries stay in the database, archived by a later run.

A full disk (under the database or the archive folder) is
:class:`~connector.durable.DiskFull` naming it; nothing half-written is left in the log.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from ..durable import writing
from ..store.db import DatabaseError, naming_full_database
from ..store.evidence import EvidenceStore
from .archive import write_archive
from .records import Batch, batch_from_row, entry_fields, utc
from .seal import Sealer, SealError
from .standalone import (
    GENESIS,
    canonical_json,
    entry_hash,
    format_time,
    merkle_root,
    statement,
)
from .tables import audit_archives, audit_batches, audit_entries
from .tsa import TsaClient, TsaError

__all__ = [
    "ARCHIVED_EVENT", "AUDIT_LOCK_KEY", "AuditError", "AuditEvent", "AuditIntegrityError", "AuditLog",
    "AuditUnavailable", "Batch", "InvalidEvent", "Sealer", "lock_log",
]

log = logging.getLogger("connector.audit")

#: pg_advisory_xact_lock key serializing audit writers (the store's migrations use 7310001).
AUDIT_LOCK_KEY = 7310700
DIRECTIONS = ("out", "in")
#: Entries the log writes about itself (archiving) carry this direction.
INTERNAL_DIRECTION = "audit"
ARCHIVED_EVENT = "audit.archived"
_LIMITS = {"event": 40, "document_id": 200, "tracking_id": 200, "axis_id": 200, "actor": 100}
_HEX = frozenset("0123456789abcdef")


class AuditError(Exception):
    """The audit log cannot do what was asked; the text says why."""


class InvalidEvent(AuditError, ValueError):
    """An event's field is unusable (named in the message)."""


class AuditUnavailable(AuditError):
    """Fail closed: time-stamping has failed for longer than allowed; stop exchanging."""


class AuditIntegrityError(AuditError):
    """The stored log does not match its own hashes; it is not sealed or archived further."""


@dataclass
class AuditEvent:
    """One exchange step, as the engine reports it."""

    event: str  # "out.queued", "out.signed", "out.sent", "out.delivered", "out.status_received", "out.dead",
    #             "in.received", "in.verified", "in.routed", "in.acknowledged", "in.rejected", "in.status_sent",
    #             "in.fetch_given_up", "in.fetch_retried" (an axis item, by axis_id, never fetched)
    direction: Literal["out", "in"]
    document_id: str | None = None
    tracking_id: str | None = None
    axis_id: str | None = None
    sha256: str | None = None  # digest of the exact bytes exchanged (already in the EvidenceStore)
    detail: dict[str, Any] | None = None


def lock_log(conn: sa.Connection) -> None:
    """Serialize audit writers for the rest of ``conn``'s transaction (see the module doc)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    elif dialect == "sqlite":
        conn.execute(sa.text("DELETE FROM audit_entries WHERE 0 = 1"))
        raw = conn.connection.dbapi_connection
        if raw is not None and not getattr(raw, "in_transaction", True):
            raise AuditError("the SQLite connection is in autocommit mode; audit entries must be "
                             "written in a transaction")
    else:
        raise AuditError(f"the audit log supports SQLite and PostgreSQL, not {dialect}")


class AuditLog:
    """The hash-chained, sealed exchange log (see the module docstring)."""

    max_batch_entries = 10_000

    def __init__(self, engine: sa.Engine, evidence: EvidenceStore, *, actor: str,
                 sealer: Sealer | None = None, tsa: TsaClient | None = None,
                 fail_closed_after: dt.timedelta | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        if not isinstance(actor, str) or not actor or len(actor) > _LIMITS["actor"]:
            raise InvalidEvent(f"actor must be a non-empty text of at most {_LIMITS['actor']} characters")
        if tsa is not None and sealer is None:
            raise AuditError("a time-stamping authority needs a signing key: time-stamps cover batch signatures")
        if fail_closed_after is not None and tsa is None:
            raise AuditError("fail_closed_after needs a time-stamping authority (tsa)")
        self.engine = engine
        self.evidence = evidence
        self.actor = actor
        self.sealer = sealer
        self.tsa = tsa
        self.fail_closed_after = fail_closed_after
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._state = threading.Lock()
        self._failing_since: dt.datetime | None = None
        self._failing_loaded = False
        self._warned_no_sealer = False
        self.last_tsa_error: str | None = None

    # ------------------------------------------------------------------ appending

    def append(self, conn: sa.Connection, event: AuditEvent) -> int:
        """Append ``event`` inside ``conn``'s transaction (commits with the caller); returns its seq."""
        values = self._values(event, internal=False)
        if values["sha256"] is not None and not self.evidence.has(values["sha256"]):
            raise AuditError(f"event {event.event}: evidence {values['sha256']} is not in the evidence store "
                             f"({self.evidence.root}); store the bytes before logging them")
        lock_log(conn)
        return self._append_locked(conn, values)

    def record(self, event: AuditEvent) -> int:
        """Append ``event`` in a transaction of its own; returns its seq."""
        with naming_full_database(self.engine), self.engine.begin() as conn:
            return self.append(conn, event)

    def _values(self, event: AuditEvent, *, internal: bool) -> dict[str, Any]:
        name = event.event
        if not isinstance(name, str) or not name.strip():
            raise InvalidEvent("event: must be a non-empty text such as 'out.sent'")
        allowed = (INTERNAL_DIRECTION,) if internal else DIRECTIONS
        if event.direction not in allowed:
            raise InvalidEvent(f"event {name}: direction must be one of {', '.join(allowed)}, not {event.direction!r}")
        values: dict[str, Any] = {"event": name, "direction": event.direction, "actor": self.actor}
        for field in ("document_id", "tracking_id", "axis_id"):
            values[field] = getattr(event, field)
        for field in ("event", "document_id", "tracking_id", "axis_id"):
            value = values[field]
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidEvent(f"event {name}: {field} must be text, not {type(value).__name__}")
            if len(value) > _LIMITS[field]:
                raise InvalidEvent(f"event {name}: {field} is longer than {_LIMITS[field]} characters")
            _check_text(name, field, value)
        digest = event.sha256
        if digest is not None and (not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX):
            raise InvalidEvent(f"event {name}: sha256 must be 64 lowercase hexadecimal digits, not {digest!r}")
        values["sha256"] = digest
        detail = event.detail
        if detail is None:
            values["detail"] = None
        else:
            if not isinstance(detail, Mapping):
                raise InvalidEvent(f"event {name}: detail must be a mapping (JSON object)")
            try:
                text = canonical_json(dict(detail)).decode("utf-8")
            except (TypeError, ValueError) as exc:
                raise InvalidEvent(f"event {name}: detail is not plain JSON ({exc})") from None
            _check_text(name, "detail", text)
            values["detail"] = text
        return values

    def _append_locked(self, conn: sa.Connection, values: dict[str, Any]) -> int:
        last_seq, prev_hash = _head(conn)
        at = utc(self._clock())
        seq = last_seq + 1
        fields = dict(values, seq=seq, at=format_time(at), prev_hash=prev_hash)
        conn.execute(audit_entries.insert().values(
            seq=seq, at=at, event=values["event"], direction=values["direction"],
            document_id=values["document_id"], tracking_id=values["tracking_id"], axis_id=values["axis_id"],
            actor=values["actor"], sha256=values["sha256"], detail=values["detail"],
            prev_hash=prev_hash, entry_hash=entry_hash(fields)))
        return seq

    # ------------------------------------------------------------------ sealing

    def seal(self) -> Batch | None:
        """Seal the unsealed entries; returns the last batch made (None when nothing was unsealed).

        Without a signing key nothing can be sealed: a warning is logged (once) and None returned.
        Pending time-stamps are retried first-come first-served after sealing.
        """
        if self.sealer is None:
            if not self._warned_no_sealer:
                log.warning("audit log: no signing key configured, entries are not sealed")
                self._warned_no_sealer = True
            return None
        last: Batch | None = None
        while True:
            with naming_full_database(self.engine), self.engine.begin() as conn:
                lock_log(conn)
                batch = self._seal_locked(conn)
            if batch is None:
                break
            last = batch
            log.info("audit log: sealed %s", batch.label)
            if batch.last_seq - batch.first_seq + 1 < self.max_batch_entries:
                break
        self.stamp_pending()
        if last is not None and self.tsa is not None:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(audit_batches).where(audit_batches.c.id == last.id)).mappings().first()
            if row is not None:
                last = batch_from_row(row)
        return last

    def _seal_locked(self, conn: sa.Connection) -> Batch | None:
        assert self.sealer is not None
        sealed_to, last_batch_id = _sealed_head(conn)
        rows = conn.execute(sa.select(audit_entries).where(audit_entries.c.seq > sealed_to)
                            .order_by(audit_entries.c.seq).limit(self.max_batch_entries)).mappings().all()
        if not rows:
            return None
        _check_segment(conn, rows, sealed_to + 1, "seal")
        first, last = int(rows[0]["seq"]), int(rows[-1]["seq"])
        root = merkle_root([bytes.fromhex(r["entry_hash"]) for r in rows])
        batch_id = last_batch_id + 1
        try:
            signature = self.sealer.sign(statement(batch_id, first, last, root))
        except SealError as exc:
            raise AuditError(str(exc)) from None
        batch = Batch(batch_id, first, last, root, signature, self.sealer.certificate_pem,
                      self.sealer.algorithm, None, utc(self._clock()))
        conn.execute(audit_batches.insert().values(
            id=batch.id, first_seq=first, last_seq=last, merkle_root=root, signature=signature,
            signer_cert=batch.signer_cert, algorithm=batch.algorithm, timestamp_token=None,
            sealed_at=batch.sealed_at))
        return batch

    def stamp_pending(self) -> int:
        """Ask the TSA to stamp every batch still without a token, oldest first; stops at the
        first failure (recorded for :meth:`ensure_can_exchange`). Returns how many were stamped."""
        if self.tsa is None:
            return 0
        stamped = 0
        while True:
            with self.engine.connect() as conn:
                pending = conn.execute(
                    sa.select(audit_batches.c.id, audit_batches.c.signature)
                    .where(audit_batches.c.timestamp_token.is_(None))
                    .order_by(audit_batches.c.id).limit(100)).all()
            if not pending:
                break
            for batch_id, signature in pending:
                try:
                    token = self.tsa.stamp(bytes(signature))
                except TsaError as exc:
                    with self._state:
                        if self._failing_since is None:
                            self._failing_since = utc(self._clock())
                        self._failing_loaded = True
                        self.last_tsa_error = str(exc)
                    log.warning("audit log: batch %s not time-stamped: %s", batch_id, exc)
                    return stamped
                with naming_full_database(self.engine), self.engine.begin() as conn:
                    conn.execute(audit_batches.update()
                                 .where(audit_batches.c.id == batch_id, audit_batches.c.timestamp_token.is_(None))
                                 .values(timestamp_token=token))
                stamped += 1
        with self._state:
            self._failing_since = None
            self._failing_loaded = True
            self.last_tsa_error = None
        return stamped

    @property
    def tsa_failing_since(self) -> dt.datetime | None:
        """Since when time-stamping has been failing (None: it works, or no TSA is configured)."""
        if self.tsa is None:
            return None
        with self._state:
            if not self._failing_loaded:
                with self.engine.connect() as conn:
                    oldest = conn.execute(sa.select(sa.func.min(audit_batches.c.sealed_at))
                                          .where(audit_batches.c.timestamp_token.is_(None))).scalar()
                if oldest is not None and self._failing_since is None:
                    self._failing_since = utc(oldest)
                self._failing_loaded = True
            return self._failing_since

    def ensure_can_exchange(self) -> None:
        """Raise :class:`AuditUnavailable` when failing closed (see the module docstring)."""
        if self.tsa is None or self.fail_closed_after is None:
            return
        since = self.tsa_failing_since
        if since is None:
            return
        now = utc(self._clock())
        if now - since > self.fail_closed_after:
            reason = f" (last error: {self.last_tsa_error})" if self.last_tsa_error else ""
            raise AuditUnavailable(
                f"audit log: time-stamping at {self.tsa.url} has failed since {since.isoformat()}, longer "
                f"than the allowed {self.fail_closed_after}; exchanges are stopped until a time-stamp "
                f"succeeds{reason}")

    # ------------------------------------------------------------------ archiving

    def archive(self, before: dt.datetime, directory: Path) -> Path | None:
        """Move the sealed batches sealed before ``before`` (oldest first, whole batches; with a
        TSA only stamped ones) into an archive file in ``directory``; returns its path, or None
        when there is nothing to archive."""
        if before.tzinfo is None:
            raise AuditError("archive: 'before' must carry a time zone")
        directory = Path(directory).resolve()
        written: list[tuple[Path, str]] = []
        try:
            with naming_full_database(self.engine), self.engine.begin() as conn:
                done = self._archive_locked(conn, before, directory, written)
        except BaseException:
            self._remove_unrecorded(written)
            raise
        if done is None:
            return None
        path, first, last = done
        log.info("audit log: archived seq %d..%d to %s", first, last, path)
        return path

    def _archive_locked(self, conn: sa.Connection, before: dt.datetime, directory: Path,
                        written: list[tuple[Path, str]]) -> tuple[Path, int, int] | None:
        """:meth:`archive` inside its transaction: (file, first seq, last seq), or None when
        there is nothing to archive. The file written is added to ``written`` at once."""
        lock_log(conn)
        prev = conn.execute(sa.select(audit_archives).order_by(audit_archives.c.last_seq.desc())
                            .limit(1)).mappings().first()
        start = int(prev["last_seq"]) + 1 if prev else 1
        candidates = conn.execute(sa.select(audit_batches).where(audit_batches.c.sealed_at < before)
                                  .order_by(audit_batches.c.first_seq)).mappings().all()
        chosen: list[Batch] = []
        expected = start
        for row in candidates:
            batch = batch_from_row(row)
            if batch.first_seq != expected or (self.tsa is not None and batch.timestamp_token is None):
                break
            chosen.append(batch)
            expected = batch.last_seq + 1
        if not chosen:
            if candidates and candidates[0]["first_seq"] != start:
                raise AuditIntegrityError(f"archive: the oldest batch starts at seq {candidates[0]['first_seq']}, "
                                          f"expected {start}; run 'audit verify'")
            return None
        first, last = chosen[0].first_seq, chosen[-1].last_seq
        rows = conn.execute(sa.select(audit_entries).where(audit_entries.c.seq.between(first, last))
                            .order_by(audit_entries.c.seq)).mappings().all()
        _check_segment(conn, rows, first, "archive", expected_last=last)
        fields = [entry_fields(r) for r in rows]
        created = utc(self._clock())
        prev_sha = prev["sha256"] if prev else None
        header = {"first_seq": first, "last_seq": last, "prev_archive_sha256": prev_sha,
                  "created": format_time(created)}
        with writing(directory):
            path, sha = write_archive(directory, header, fields, chosen)
        written.append((path, sha))
        archive_id = int(prev["id"]) + 1 if prev else 1
        conn.execute(audit_archives.insert().values(
            id=archive_id, path=str(path), sha256=sha, prev_archive_sha256=prev_sha, first_seq=first,
            last_seq=last, last_entry_hash=rows[-1]["entry_hash"], last_batch_id=chosen[-1].id,
            first_at=utc(rows[0]["at"]), last_at=utc(rows[-1]["at"]), created=created))
        conn.execute(audit_batches.delete().where(audit_batches.c.first_seq.between(first, last)))
        conn.execute(audit_entries.delete().where(audit_entries.c.seq.between(first, last)))
        event = AuditEvent(ARCHIVED_EVENT, INTERNAL_DIRECTION, detail={  # type: ignore[arg-type]
            "archive": path.name, "sha256": sha, "first_seq": first, "last_seq": last,
            "prev_archive_sha256": prev_sha})
        self._append_locked(conn, self._values(event, internal=True))
        return path, first, last

    def _remove_unrecorded(self, written: list[tuple[Path, str]]) -> None:
        """After a failed archive transaction (e.g. the database's disk is full): remove the
        archive file it wrote, unless the log records it after all (a commit that reported an
        error yet happened). Without this, a stray file beside the real archives would hold
        entries the database still holds, and a later archive covering them too. When the
        database cannot be asked, the file stays: a stray copy is harmless, a lost one is not."""
        for path, sha in written:
            try:
                with self.engine.connect() as conn:
                    recorded = conn.execute(sa.select(audit_archives.c.id)
                                            .where(audit_archives.c.sha256 == sha)).first()
            except (sa.exc.SQLAlchemyError, DatabaseError) as exc:  # DatabaseError: the file is gone, say
                log.warning("audit log: %s was written but the archiving failed, and whether the log records it "
                            "cannot be checked now (%s); the file is kept", path, exc)
                continue
            if recorded is None:
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------------- helpers


def _check_text(name: str, field: str, value: str) -> None:
    if "\x00" in value:
        raise InvalidEvent(f"event {name}: {field} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(f"event {name}: {field} is not valid Unicode text") from None


def _head(conn: sa.Connection) -> tuple[int, str]:
    """(seq, entry_hash) of the last entry, in the database or, when all are archived, the archive."""
    row = conn.execute(sa.select(audit_entries.c.seq, audit_entries.c.entry_hash)
                       .order_by(audit_entries.c.seq.desc()).limit(1)).first()
    if row is not None:
        return int(row[0]), row[1]
    row = conn.execute(sa.select(audit_archives.c.last_seq, audit_archives.c.last_entry_hash)
                       .order_by(audit_archives.c.last_seq.desc()).limit(1)).first()
    if row is not None:
        return int(row[0]), row[1]
    return 0, GENESIS


def _sealed_head(conn: sa.Connection) -> tuple[int, int]:
    """(last sealed seq, last batch id), looking at archives when every batch was archived."""
    row = conn.execute(sa.select(audit_batches.c.last_seq, audit_batches.c.id)
                       .order_by(audit_batches.c.last_seq.desc()).limit(1)).first()
    if row is not None:
        return int(row[0]), int(row[1])
    row = conn.execute(sa.select(audit_archives.c.last_seq, audit_archives.c.last_batch_id)
                       .order_by(audit_archives.c.last_seq.desc()).limit(1)).first()
    if row is not None:
        return int(row[0]), int(row[1])
    return 0, 0


def _hash_before(conn: sa.Connection, seq: int) -> str | None:
    """The entry_hash of entry ``seq`` (GENESIS for 0), from the database or an archive row."""
    if seq == 0:
        return GENESIS
    found = conn.execute(sa.select(audit_entries.c.entry_hash).where(audit_entries.c.seq == seq)).scalar()
    if found is None:
        found = conn.execute(sa.select(audit_archives.c.last_entry_hash)
                             .where(audit_archives.c.last_seq == seq)).scalar()
    return found


def _check_segment(conn: sa.Connection, rows: Sequence[Mapping[str, Any]], first: int, doing: str,
                   expected_last: int | None = None) -> None:
    """Refuse to seal or archive entries that no longer match their hashes and links."""
    prev_hash = _hash_before(conn, first - 1)
    expected = first
    for row in rows:
        seq = int(row["seq"])
        if seq != expected:
            raise AuditIntegrityError(f"{doing}: entry seq {expected} is missing from the log; run 'audit verify'")
        fields = entry_fields(row)
        if entry_hash(fields) != row["entry_hash"]:
            raise AuditIntegrityError(f"{doing}: entry seq {seq} does not match its hash (altered); run 'audit verify'")
        if prev_hash is not None and row["prev_hash"] != prev_hash:
            raise AuditIntegrityError(f"{doing}: entry seq {seq} does not link to entry seq {seq - 1}; run 'audit verify'")
        prev_hash = row["entry_hash"]
        expected += 1
    if expected_last is not None and expected - 1 != expected_last:
        raise AuditIntegrityError(f"{doing}: entries {expected}..{expected_last} are missing; run 'audit verify'")
