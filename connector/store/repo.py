"""The engine's queries: every state change is one short transaction.

Claims: a worker takes one due row at a time, marking it ``claimed_by``/``claimed_until`` (a
lease). On PostgreSQL the candidate row is selected ``FOR UPDATE SKIP LOCKED`` so several
instances never take the same row; on SQLite (one instance) ``BEGIN IMMEDIATE`` serializes
writers. Updates are fenced by the claim: a worker whose lease was taken over cannot
overwrite the new owner's progress. A journal hook (the audit log) is called inside the same
transaction as the change it records, so the two commit or vanish together.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..durable import DiskFull
from . import tables as t
from .db import is_postgres, naming_full_database

Journal = Callable[[sa.Connection, Any], None]
Row = dict[str, Any]

OUT_ACTIVE = ("queued", "signed", "retrying")
IN_ACTIVE = ("received", "delivered", "acknowledged", "quarantined", "retrying")
POLL_LOCK = 7310002


_CLAIMED_TABLES = {"outbound": t.outbound, "inbound": t.inbound}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@dataclass
class Summary:
    outbound: dict[str, int]
    inbound: dict[str, int]
    recipients: dict[str, int]
    oldest_pending_age: float | None
    recent_failures: list[Row]


class InstanceHold:
    """This process's hold on its instance name (see :meth:`Store.hold_instance`)."""

    def __init__(self, instance_id: str, key: int, conn: sa.Connection):
        self.instance_id, self._key, self._conn = instance_id, key, conn

    def close(self) -> None:
        """Let the name go (a clean stop; a killed process lets go with its connection)."""
        if self._conn is None:
            return
        try:
            self._conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            self._conn.commit()
        except sa.exc.SQLAlchemyError:
            pass  # the connection is gone, and the hold with it
        finally:
            self._conn.close()
            self._conn = None


class Store:
    """Durable state over one SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine, *, journal: Journal | None = None, clock: Callable[[], float] = time.time):
        self.engine = engine
        self.journal = journal
        self.clock = clock
        self.postgres = is_postgres(engine)
        # Claims this process could not drop because the database's disk was full:
        # (table name, row id) -> worker; dropped by the next claim on that table.
        self._unreleased: dict[tuple[str, str], str] = {}
        self._unreleased_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One write transaction; a full disk under the database is :class:`DiskFull`."""
        with naming_full_database(self.engine), self.engine.begin() as conn:
            yield conn

    def _record(self, conn: sa.Connection, events: Iterable[Any]) -> None:
        if self.journal is not None:
            for event in events:
                self.journal(conn, event)

    # ------------------------------------------------------------------ outbound

    def enqueue_outbound(
        self,
        *,
        kind: str,
        sender: str,
        document_id: str | None,
        recipients: list[str],
        staging: str | None,
        intake_key: str | None = None,
        events: Callable[[str], Iterable[Any]] = lambda _id: (),
    ) -> tuple[str, bool]:
        """Insert a document to send; with an ``intake_key`` already known, returns that row's id
        and False (re-submitting the same drop or reply is a no-op)."""
        now = self.clock()
        with self.transaction() as conn:
            if intake_key is not None:
                existing = conn.execute(sa.select(t.outbound.c.id).where(t.outbound.c.intake_key == intake_key)).scalar()
                if existing:
                    return existing, False
            out_id = new_id("out")
            conn.execute(
                t.outbound.insert().values(
                    id=out_id, kind=kind, sender=sender, document_id=document_id, state="queued",
                    intake_key=intake_key, staging=staging, attempts=0, next_attempt_at=now,
                    created_at=now, updated_at=now,
                )
            )
            for code in dict.fromkeys(recipients):
                conn.execute(t.recipient.insert().values(outbound_id=out_id, recipient=code, state="pending", updated_at=now))
            self._record(conn, events(out_id))
            return out_id, True

    def claim_outbound(self, worker: str, lease: float = 120.0, *, kinds: tuple[str, ...] = ("edoc", "status")) -> Row | None:
        return self._claim(t.outbound, OUT_ACTIVE, worker, lease, extra=t.outbound.c.kind.in_(kinds))

    def update_outbound(self, out_id: str, worker: str | None, values: dict[str, Any], events: Iterable[Any] = (),
                        recipients_state: str | None = None) -> bool:
        """Apply ``values`` if ``worker`` still holds the claim (None: unconditional)."""
        now = self.clock()
        with self.transaction() as conn:
            where = t.outbound.c.id == out_id
            if worker is not None:
                where = sa.and_(where, t.outbound.c.claimed_by == worker)
            done = conn.execute(t.outbound.update().where(where).values(updated_at=now, **values)).rowcount
            if not done:
                return False
            if recipients_state is not None:
                conn.execute(
                    t.recipient.update()
                    .where(t.recipient.c.outbound_id == out_id, t.recipient.c.state == "pending")
                    .values(state=recipients_state, updated_at=now)
                )
            self._record(conn, events)
            return True

    def outbound(self, out_id: str) -> Row | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.outbound).where(t.outbound.c.id == out_id)).mappings().first()
            return dict(row) if row else None

    def recipients(self, out_id: str) -> list[Row]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.recipient).where(t.recipient.c.outbound_id == out_id).order_by(t.recipient.c.recipient))
            return [dict(r) for r in rows.mappings()]

    def recipients_with_status(self, codes: Iterable[str], limit: int = 10) -> list[Row]:
        """The newest recipients whose last status has one of ``codes``, with their document:
        ``outbound_id, document_id, recipient, status_code, status_description, status_at``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.recipient.c.outbound_id, t.outbound.c.document_id, t.recipient.c.recipient,
                          t.recipient.c.status_code, t.recipient.c.status_description, t.recipient.c.status_at)
                .join(t.outbound, t.outbound.c.id == t.recipient.c.outbound_id)
                .where(t.recipient.c.status_code.in_(list(codes)))
                .order_by(t.recipient.c.status_at.desc()).limit(limit)
            )
            return [dict(r) for r in rows.mappings()]

    def find_outbound(self, ident: str) -> Row | None:
        """By tracking id, else by DocumentId (the newest edoc)."""
        row = self.outbound(ident)
        if row:
            return row
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.outbound).where(t.outbound.c.document_id == ident, t.outbound.c.kind == "edoc")
                .order_by(t.outbound.c.created_at.desc())
            ).mappings().first()
            return dict(row) if row else None

    def requeue(self, out_id: str, events: Iterable[Any] = ()) -> bool:
        """``resend``: a dead (or cancelled) document goes back to the queue, attempts reset."""
        now = self.clock()
        with self.transaction() as conn:
            done = conn.execute(
                t.outbound.update()
                .where(t.outbound.c.id == out_id, t.outbound.c.state.in_(("dead", "cancelled")))
                .values(state="queued", attempts=0, next_attempt_at=now, claimed_by=None, claimed_until=None,
                        last_error=None, updated_at=now, created_at=now)
            ).rowcount
            if done:
                self._record(conn, events)
            return bool(done)

    def cancel(self, out_id: str, events: Iterable[Any] = ()) -> bool:
        """A document not yet sent stops here. One a worker holds right now (it may be on the
        wire this moment) is left to finish its step: cancelling it could record as cancelled
        a document the axis already has. False then, as for one already sent."""
        now = self.clock()
        with self.transaction() as conn:
            done = conn.execute(
                t.outbound.update()
                .where(t.outbound.c.id == out_id, t.outbound.c.state.in_(OUT_ACTIVE + ("dead",)),
                       sa.or_(t.outbound.c.claimed_until.is_(None), t.outbound.c.claimed_until < now))
                .values(state="cancelled", claimed_by=None, claimed_until=None, updated_at=now)
            ).rowcount
            if done:
                self._record(conn, events)
            return bool(done)

    def apply_status(self, *, document_id: str, our_sender: str, recipient: str, code: str,
                     description: str | None, at: float, events: Callable[[str], Iterable[Any]] = lambda _id: ()) -> str | None:
        """Record a business status from ``recipient`` on our document; returns the outbound id,
        or None when no document of ours matches. Older statuses never overwrite newer ones."""
        now = self.clock()
        with self.transaction() as conn:
            row = conn.execute(
                sa.select(t.recipient.c.outbound_id, t.recipient.c.status_at)
                .join(t.outbound, t.outbound.c.id == t.recipient.c.outbound_id)
                .where(t.outbound.c.document_id == document_id, t.outbound.c.kind == "edoc",
                       t.outbound.c.sender == our_sender, t.recipient.c.recipient == recipient)
                .order_by(t.outbound.c.created_at.desc())
            ).first()
            if row is None:
                return None
            out_id, last = row
            if last is None or at >= last:
                conn.execute(
                    t.recipient.update()
                    .where(t.recipient.c.outbound_id == out_id, t.recipient.c.recipient == recipient)
                    .values(state="delivered" if code == "01" else f"status-{code}", status_code=code,
                            status_description=description, status_at=at, updated_at=now)
                )
            self._record(conn, events(out_id))
            return out_id

    # ------------------------------------------------------------------ inbound

    def insert_inbound(self, *, axis_item: str, kind: str, sender: str | None, document_id: str | None,
                       sha256: str, size: int, status_code: str | None = None,
                       events: Callable[[str], Iterable[Any]] = lambda _id: ()) -> tuple[str, bool]:
        """Record a fetched item (its bytes already in the evidence store); idempotent on ``axis_item``."""
        now = self.clock()
        with self.transaction() as conn:
            existing = conn.execute(sa.select(t.inbound.c.id).where(t.inbound.c.axis_item == axis_item)).scalar()
            if existing:
                return existing, False
            in_id = new_id("in")
            conn.execute(
                t.inbound.insert().values(
                    id=in_id, axis_item=axis_item, kind=kind, sender=sender, document_id=document_id, sha256=sha256,
                    size=size, state="received", status_code=status_code, attempts=0, next_attempt_at=now,
                    received_at=now, updated_at=now,
                )
            )
            self._record(conn, events(in_id))
            return in_id, True

    def known_items(self, axis_items: list[str]) -> set[str]:
        if not axis_items:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.inbound.c.axis_item).where(t.inbound.c.axis_item.in_(axis_items)))
            return {r[0] for r in rows}

    def unacknowledged(self, axis_items: list[str]) -> set[str]:
        """Of these items, the ones stored but still owed an acknowledgement to the axis."""
        if not axis_items:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.inbound.c.axis_item).where(t.inbound.c.axis_item.in_(axis_items),
                                                       t.inbound.c.state.in_(IN_ACTIVE))
            )
            return {r[0] for r in rows}

    def claim_inbound(self, worker: str, lease: float = 120.0) -> Row | None:
        return self._claim(t.inbound, IN_ACTIVE, worker, lease)

    def update_inbound(self, in_id: str, worker: str | None, values: dict[str, Any], events: Iterable[Any] = ()) -> bool:
        now = self.clock()
        with self.transaction() as conn:
            where = t.inbound.c.id == in_id
            if worker is not None:
                where = sa.and_(where, t.inbound.c.claimed_by == worker)
            done = conn.execute(t.inbound.update().where(where).values(updated_at=now, **values)).rowcount
            if done:
                self._record(conn, events)
            return bool(done)

    def inbound(self, in_id: str) -> Row | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.inbound).where(t.inbound.c.id == in_id)).mappings().first()
            return dict(row) if row else None

    def delivered_twin(self, row: Row) -> str | None:
        """Another inbound row with the same sender, DocumentId and content already delivered."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(t.inbound.c.id).where(
                    t.inbound.c.sender == row["sender"], t.inbound.c.document_id == row["document_id"],
                    t.inbound.c.sha256 == row["sha256"], t.inbound.c.id != row["id"], t.inbound.c.kind == row["kind"],
                    t.inbound.c.state.in_(("delivered", "acknowledged", "done")),
                ).order_by(t.inbound.c.received_at)
            ).scalar()

    def requeue_inbound(self, in_id: str, events: Iterable[Any] = ()) -> bool:
        now = self.clock()
        with self.transaction() as conn:
            done = conn.execute(
                t.inbound.update().where(t.inbound.c.id == in_id, t.inbound.c.state == "dead")
                .values(state="received", attempts=0, next_attempt_at=now, claimed_by=None, claimed_until=None,
                        last_error=None, updated_at=now)
            ).rowcount
            if done:
                self._record(conn, events)
            return bool(done)

    # ------------------------------------------------------------------ claims

    def release_claim(self, table_name: str, row_id: str, worker: str, *, last_error: str | None = None,
                      next_attempt_at: float | None = None) -> bool:
        """Drop ``worker``'s claim on an ``outbound`` or ``inbound`` row without counting an
        attempt (its state and attempts stay), so a later round takes it again.

        Why: a step that failed for want of disk space did nothing wrong to the document. When
        the database's own disk is full the claim cannot be written away either: it is kept in
        memory and dropped by the next claim on that table (not left to wait out its lease).
        Returns whether the claim was dropped now."""
        table = _CLAIMED_TABLES[table_name]
        values: dict[str, Any] = {"claimed_by": None, "claimed_until": None, "updated_at": self.clock()}
        if last_error is not None:
            values["last_error"] = last_error
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        try:
            with self.transaction() as conn:
                conn.execute(table.update().where(table.c.id == row_id, table.c.claimed_by == worker).values(**values))
        except DiskFull:
            with self._unreleased_lock:
                self._unreleased[(table_name, row_id)] = worker
            return False
        return True

    def _release_unreleased(self, conn: sa.Connection, table: sa.Table) -> list[tuple[str, str]]:
        """Drop, in ``conn``'s transaction, the claims :meth:`release_claim` had to keep."""
        with self._unreleased_lock:
            pending = [(key, worker) for key, worker in self._unreleased.items() if key[0] == table.name]
        for (_, row_id), worker in pending:
            conn.execute(table.update().where(table.c.id == row_id, table.c.claimed_by == worker)
                         .values(claimed_by=None, claimed_until=None))
        return [key for key, _ in pending]

    def _claim(self, table: sa.Table, states: tuple[str, ...], worker: str, lease: float, extra=None) -> Row | None:
        now = self.clock()
        cond = sa.and_(
            table.c.state.in_(states),
            table.c.next_attempt_at <= now,
            sa.or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
        )
        if extra is not None:
            cond = sa.and_(cond, extra)
        order = table.c.next_attempt_at
        with self.transaction() as conn:
            released = self._release_unreleased(conn, table) if self._unreleased else []
            query = sa.select(table.c.id).where(cond).order_by(order).limit(1)
            if self.postgres:
                query = query.with_for_update(skip_locked=True)
            row_id = conn.execute(query).scalar()
            row = None
            if row_id is not None:
                conn.execute(table.update().where(table.c.id == row_id).values(claimed_by=worker, claimed_until=now + lease))
                row = dict(conn.execute(sa.select(table).where(table.c.id == row_id)).mappings().first())
        if released:
            with self._unreleased_lock:
                for key in released:
                    self._unreleased.pop(key, None)
        return row

    def release_claims(self, worker: str | None = None) -> int:
        """Drop claims (of ``worker``, or all: for a single SQLite instance starting up)."""
        count = 0
        with self.transaction() as conn:
            for table in (t.outbound, t.inbound):
                q = table.update().where(table.c.claimed_by.is_not(None))
                if worker is not None:
                    q = q.where(table.c.claimed_by == worker)
                count += conn.execute(q.values(claimed_by=None, claimed_until=None)).rowcount
        return count

    def hold_instance(self, instance_id: str) -> InstanceHold | None:
        """Hold the name ``instance_id`` for as long as this process lives, or None when a
        running process already holds it (PostgreSQL; on SQLite the data folder's lock does this).

        The hold is a session advisory lock on a connection kept open: a process that dies
        loses its connection and so its hold. Whoever takes the name next therefore knows the
        claims made in it belong to no living process, and can drop them at once
        (:meth:`release_claims`) instead of waiting out their lease.
        """
        if not self.postgres:
            raise ValueError("instance holds are for PostgreSQL; SQLite serves one instance per data folder")
        key = int.from_bytes(hashlib.sha256(f"edoc-connector instance {instance_id}".encode()).digest()[:8], "big", signed=True)
        conn = self.engine.connect()
        try:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return InstanceHold(instance_id, key, conn)

    @contextmanager
    def poller_lock(self) -> Iterator[bool]:
        """One poller at a time across instances (PostgreSQL advisory lock; SQLite: always yes)."""
        if not self.postgres:
            yield True
            return
        with self.engine.connect() as conn:
            got = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({POLL_LOCK})").scalar()
            conn.commit()
            try:
                yield bool(got)
            finally:
                if got:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({POLL_LOCK})")
                    conn.commit()

    # ------------------------------------------------------------------ directory, settings

    def replace_directory(self, agencies: list[tuple[str, str | None, str | None]]) -> None:
        now = self.clock()
        with self.transaction() as conn:
            conn.execute(t.agency.delete())
            if agencies:
                conn.execute(t.agency.insert(), [
                    {"code": c, "name": n, "parent": p, "refreshed_at": now} for c, n, p in dict((a[0], a) for a in agencies).values()
                ])

    def directory(self) -> dict[str, str | None]:
        with self.engine.connect() as conn:
            return {code: name for code, name in conn.execute(sa.select(t.agency.c.code, t.agency.c.name))}

    def get_setting(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.setting.c.value).where(t.setting.c.key == key)).scalar()

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            if conn.execute(t.setting.update().where(t.setting.c.key == key).values(value=value)).rowcount == 0:
                conn.execute(t.setting.insert().values(key=key, value=value))

    def update_setting(self, key: str, change: Callable[[str | None], str], *, events: Iterable[Any] = ()) -> str:
        """Replace the value under ``key`` by ``change(current value)``, with no other writer of
        it in between; ``events`` are journaled in the same transaction. Returns the new value.

        Why: two processes (the poller and an operator's command) may each change part of
        one setting; a plain read then write would let the later one undo the other's change.
        """
        with self.transaction() as conn:
            # A no-op write first: it takes the row's lock on PostgreSQL and the write lock on
            # SQLite before the read, so the value read is the one replaced.
            conn.execute(t.setting.update().where(t.setting.c.key == key).values(value=t.setting.c.value))
            current = conn.execute(sa.select(t.setting.c.value).where(t.setting.c.key == key)).scalar()
            value = change(current)
            if current is None:
                conn.execute(t.setting.insert().values(key=key, value=value))
            else:
                conn.execute(t.setting.update().where(t.setting.c.key == key).values(value=value))
            self._record(conn, events)
        return value

    # ------------------------------------------------------------------ reporting

    def summary(self, recent: int = 10) -> Summary:
        now = self.clock()
        with self.engine.connect() as conn:
            out = dict(conn.execute(sa.select(t.outbound.c.state, sa.func.count()).group_by(t.outbound.c.state)).all())
            inn = dict(conn.execute(sa.select(t.inbound.c.state, sa.func.count()).group_by(t.inbound.c.state)).all())
            rec = dict(conn.execute(sa.select(t.recipient.c.state, sa.func.count()).group_by(t.recipient.c.state)).all())
            oldest = [
                conn.execute(sa.select(sa.func.min(t.outbound.c.created_at)).where(t.outbound.c.state.in_(OUT_ACTIVE))).scalar(),
                conn.execute(sa.select(sa.func.min(t.inbound.c.received_at)).where(t.inbound.c.state.in_(IN_ACTIVE))).scalar(),
            ]
            oldest = [o for o in oldest if o is not None]
            failures = []
            for table, direction in ((t.outbound, "out"), (t.inbound, "in")):
                rows = conn.execute(
                    sa.select(table.c.id, table.c.document_id, table.c.state, table.c.attempts, table.c.last_error, table.c.updated_at)
                    .where(table.c.last_error.is_not(None)).order_by(table.c.updated_at.desc()).limit(recent)
                ).mappings()
                failures += [dict(r, direction=direction) for r in rows]
        failures.sort(key=lambda r: r["updated_at"], reverse=True)
        return Summary(out, inn, rec, (now - min(oldest)) if oldest else None, failures[:recent])


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
