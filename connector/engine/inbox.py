"""Inbound: poll the axis, store what arrives, then verify, route, deliver, acknowledge, answer.

Per item, each step committed before the next: received (raw bytes in the evidence store) ->
delivered (every destination has it; destinations are idempotent on the item's id) ->
acknowledged (the axis was told) -> done (status 01 "Đã đến" queued for the sender).
A permanent problem (malformed, signature refused by policy, invalid, unroutable) is
quarantined with its reason, acknowledged as failed, and answered with status 02. A
document already delivered under another axis id (same sender, DocumentId and bytes) is
acknowledged and not delivered again. Status messages update our outbound documents.
A full disk (spool, evidence, a folder destination, the database) is not the item's fault:
the item keeps its state and attempts, the round stops (one line in the daemon's log naming
the full folder), and the step runs again in a later round; nothing is acknowledged before
the delivery it depends on is whole. A reload (SIGHUP) swaps the routing rules and destinations
whole (:class:`CurrentRouting`): an item is routed and delivered under one of them, never half
of each.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..axis.errors import AuthenticationError, AxisError, NotFoundError, RetryableAxisError, TLSError
from ..axis.transport import PendingItem
from ..durable import DiskFull, as_disk_full, writing
from ..edxml.build import to_bytes
from ..edxml.errors import EdxmlError
from ..edxml.jsonform import to_json
from ..edxml.model import NOT_DELIVERED_CODES, Edoc, ResponseFor, Status, status_label
from ..edxml.parse import parse
from ..routing.delivery import Delivery, DeliveryError
from ..routing.rules import RouteFacts, Unroutable
from ..signing.verify import verify
from .context import EngineContext, GateClosed, Routing
from .events import ExchangeEvent
from .outbox import Outbox, StatusRequest, response_for

HUB_STATUS = "status-digest:"  # items read by query (no axis acknowledgement): keyed by content
STATUS_OVERLAP = 3600.0
WATERMARK = "status_watermark"
LAST_POLL = "last_good_poll"

log = logging.getLogger("connector.engine")


class CurrentRouting:
    """The inbox's current :class:`~connector.engine.context.Routing`, swapped whole on reload.

    Each item takes it once (:meth:`use`) for both its routing and its delivery, so a reload
    between the two changes nothing for that item: it is delivered where the routing it was
    routed by says (the destination objects that routing opened, still open), and the next
    item uses the new routing. A retired routing's destinations are closed when the last item
    using it is done (at once when no item is): a reload never closes a connection under a
    delivery in progress, and what is retired does not stay open until the next reload or
    stop. A destination object the current routing (or a retired one still in use) also holds
    is left open."""

    def __init__(self, routing: Routing):
        self._lock = threading.Lock()
        self._current = routing
        self._users: dict[Routing, int] = {}  # items using each routing now
        self._retired: list[Routing] = []  # swapped out, destinations not yet closed

    @property
    def current(self) -> Routing:
        """The routing the next item uses."""
        return self._current

    @contextmanager
    def use(self) -> Iterator[Routing]:
        """The current routing, counted as in use until the block ends."""
        with self._lock:
            routing = self._current
            self._users[routing] = self._users.get(routing, 0) + 1
        try:
            yield routing
        finally:
            with self._lock:
                left = self._users.pop(routing) - 1
                if left:
                    self._users[routing] = left
                unused = self._take_unused()
            _close_destinations(unused)

    def swap(self, routing: Routing) -> Routing:
        """Make ``routing`` the current one; returns the one it replaces, whose destinations are
        closed now if no item uses it, else when the last one is done."""
        with self._lock:
            old, self._current = self._current, routing
            if old is not routing:
                self._retired.append(old)
            unused = self._take_unused()
        _close_destinations(unused)
        return old

    def _take_unused(self) -> list[Any]:
        """Forget the retired routings no item uses; their destinations that nothing still
        held shares (called with the lock held)."""
        done = [r for r in self._retired if r not in self._users]
        if not done:
            return []
        self._retired = [r for r in self._retired if r in self._users]
        kept = {id(d) for r in (self._current, *self._retired) for d in r.destinations.values()}
        unused: dict[int, Any] = {}
        for routing in done:
            unused.update((id(d), d) for d in routing.destinations.values() if id(d) not in kept)
        return list(unused.values())


def _close_destinations(destinations: list[Any]) -> None:
    """Close retired destinations, best effort: a failure is one warning line, never the
    round's or the reload's end."""
    for destination in destinations:
        try:
            destination.close()
        except Exception as exc:  # noqa: BLE001 - releasing a retired pool must not stop anything
            log.warning("closing the retired destination %r failed: %s: %s", getattr(destination, "name", "?"),
                        type(exc).__name__, exc)


class Inbox:
    def __init__(self, ctx: EngineContext, outbox: Outbox, router, destinations: dict[str, Any]):
        self.ctx = ctx
        self.outbox = outbox
        self.routing = CurrentRouting(Routing.of(router, destinations))

    # ------------------------------------------------------------------ poll

    def poll(self) -> int:
        """Fetch and store everything new on the axis; returns how many items were stored."""
        ctx = self.ctx
        with ctx.store.poller_lock() as ours:
            if not ours:
                return 0
            ctx.gate()
            stored = self._poll_items("edoc")
            if getattr(ctx.axis, "status_feed", "items") == "query":
                stored += self._poll_status_query()
            else:
                stored += self._poll_items("status")
            ctx.store.set_setting(LAST_POLL, repr(time.time()))
            return stored

    def _poll_items(self, kind: str) -> int:
        """Fetch and store the new items of ``kind``. One item the axis will not serve does not
        hold up the others: its failure is recorded and it is tried again when the retry
        policy says, until the policy gives up on it (see :class:`FetchFailures`)."""
        ctx = self.ctx
        items: list[PendingItem] = ctx.axis.pending(kind)  # type: ignore[arg-type]
        known = ctx.store.known_items([i.item_id for i in items])
        failures = FetchFailures.load(ctx.store)
        failures.prune(kind, offered={i.item_id for i in items} - known, stored=known)
        stored = 0
        try:
            for item in items:
                if item.item_id in known:
                    self._reacknowledge_if_finished(item.item_id)
                    continue
                if not failures.due(item.item_id, time.time()):
                    continue
                try:
                    kept = self._fetch(item.item_id)
                except ROUND_ERRORS:
                    raise  # credentials, TLS or the local disk: not this item's fault, the round stops
                except Exception as exc:  # noqa: BLE001 - one bad item must not block the others
                    self._fetch_failed(failures, item, kind, exc)
                    continue
                failures.forget(item.item_id)
                event = lambda in_id: [ExchangeEvent("in.received", "in", None, in_id, axis_id=item.item_id, sha256=kept.sha256,
                                                     detail={"kind": kind, "sender": item.sender, "size": kept.size})]
                in_id, created = ctx.store.insert_inbound(axis_item=item.item_id, kind=kind, sender=item.sender,
                                                          document_id=None, sha256=kept.sha256, size=kept.size, events=event)
                if created:
                    stored += 1
                    ctx.doc_log(logging.INFO, f"received {kind} ({kept.size} bytes)", tracking_id=in_id, axis_id=item.item_id)
        finally:
            failures.save()
        return stored

    def _fetch(self, item_id: str):
        """The item's bytes, fetched into the evidence store."""
        ctx = self.ctx
        spool = ctx.settings.spool_dir
        with writing(spool):
            fd, tmp = tempfile.mkstemp(suffix=".edxml", dir=_ensure(spool))
        try:
            # writing() outside the file: closing it flushes, and may meet the full disk too
            with writing(spool), os.fdopen(fd, "w+b") as fh:
                ctx.axis.fetch(item_id, fh)
                fh.seek(0)
                return ctx.evidence.put_stream(fh)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _fetch_failed(self, failures: FetchFailures, item: PendingItem, kind: str, exc: Exception) -> None:
        """Record a failed fetch: retried later by the retry policy, or given up (kept as dead)."""
        ctx = self.ctx
        expected = isinstance(exc, AxisError)
        error = str(exc) if expected else f"internal error: {exc!r}"
        entry = failures.failed(item.item_id, kind, item.sender, error, time.time())
        ctx.observer.failed("in")
        policy = ctx.settings.retry
        if not policy.exhausted(entry["attempts"], entry["last_at"] - entry["first_at"]):
            delay = policy.delay(entry["attempts"])
            entry["next_at"] = entry["last_at"] + delay
            ctx.observer.retried("in")
            ctx.doc_log(logging.WARNING, f"cannot fetch {kind} {item.item_id} (attempt {entry['attempts']}), "
                        f"retrying in {delay:.0f} s; the other items go on: {error}", axis_id=item.item_id,
                        exc_info=None if expected else exc)
            return
        entry["state"] = "dead"
        entry["reason"] = (f"gave up fetching after {entry['attempts']} attempt(s) over "
                           f"{(entry['last_at'] - entry['first_at']) / 60:.0f} min: {error}")
        failures.events.append(ExchangeEvent("in.fetch_given_up", "in", None, None, axis_id=item.item_id, detail={
            "kind": kind, "sender": item.sender, "attempts": entry["attempts"], "error": error[:2000]}))
        ctx.observer.dead("in")
        ctx.doc_log(logging.ERROR, f"dead: {kind} {item.item_id} left on the axis, not fetched: {entry['reason']} "
                    f"(`resend {item.item_id}` tries again)", axis_id=item.item_id, exc_info=None if expected else exc)

    def retry_fetch(self, item_id: str) -> bool:
        """Forget that fetching ``item_id`` was given up on; the next poll tries it again."""
        failures = FetchFailures.load(self.ctx.store)
        if failures.entries.get(item_id, {}).get("state") != "dead":
            return False
        failures.forget(item_id)
        failures.events.append(ExchangeEvent("in.fetch_retried", "in", None, None, axis_id=item_id))
        failures.save()
        return True

    def _poll_status_query(self) -> int:
        ctx = self.ctx
        started = time.time()
        mark = ctx.store.get_setting(WATERMARK)
        since = float(mark) if mark else started - 30 * 24 * 3600
        statuses = ctx.axis.statuses_since(dt.datetime.fromtimestamp(since, dt.timezone.utc))
        stored = 0
        for status in statuses:
            data = to_bytes(status)
            kept = ctx.evidence.put_stream(io.BytesIO(data))
            document_id = status.response_for[0].document_id if status.response_for else None
            event = lambda in_id: [ExchangeEvent("in.received", "in", document_id, in_id, sha256=kept.sha256,
                                                 detail={"kind": "status", "status_code": status.status_code})]
            _, created = ctx.store.insert_inbound(
                axis_item=HUB_STATUS + kept.sha256, kind="status", sender=status.from_.organ_id,
                document_id=document_id, sha256=kept.sha256, size=kept.size, status_code=status.status_code, events=event,
            )
            stored += created
        ctx.store.set_setting(WATERMARK, repr(started - STATUS_OVERLAP))
        return stored

    def _reacknowledge_if_finished(self, axis_item: str) -> None:
        """The axis still offers an item we finished: our acknowledgement was lost; repeat it."""
        if self.ctx.store.unacknowledged([axis_item]):
            return  # still in progress; the processing step acknowledges it
        try:
            self.ctx.axis.acknowledge(axis_item, ok=True)
        except (NotFoundError, RetryableAxisError):
            pass

    # ------------------------------------------------------------------ process

    def process_due(self, limit: int = 100) -> int:
        done = 0
        while done < limit:
            row = self.ctx.store.claim_inbound(self.ctx.settings.worker_id, self.ctx.settings.lease)
            if row is None:
                break
            try:
                self.process_one(row)
            except (GateClosed, DiskFull):
                raise  # not this item's fault: the round stops (process_one gave the row back)
            except Exception as exc:  # noqa: BLE001 - a bug must not strand the row: retry it later, loudly
                self.ctx.doc_log(logging.ERROR, f"internal error while receiving: {exc!r}", document_id=row.get("document_id"),
                                 tracking_id=row["id"], exc_info=True)
                self._failed(row, f"internal error: {exc!r}", retryable=True)
            done += 1
        return done

    def process_one(self, row: dict[str, Any]) -> None:
        ctx = self.ctx
        try:
            ctx.gate()
            # One step per loop turn, each committed; the row is re-read after every step.
            for _ in range(6):
                state = row["state"]
                if state in ("received", "retrying"):
                    self._take(row)
                elif state == "delivered":
                    self._acknowledge(row, ok=True)
                elif state == "acknowledged":
                    self._answer(row)
                elif state == "quarantined":
                    self._reject(row)
                else:
                    break
                fresh = ctx.store.inbound(row["id"])
                if fresh is None or fresh["claimed_by"] != ctx.settings.worker_id or fresh["state"] == state:
                    break
                row = fresh
            ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {"claimed_by": None, "claimed_until": None})
        except GateClosed:
            ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {"claimed_by": None, "claimed_until": None})
            raise
        except DiskFull as exc:
            self.ctx.wait_and_stop("in", row, "disk space", exc)
        except (RetryableAxisError, DeliveryError, OSError) as exc:
            full = as_disk_full(exc)  # e.g. a folder destination on a full disk
            if full is not None:
                self.ctx.wait_and_stop("in", row, "disk space", full)
            retryable = getattr(exc, "retryable", True)
            self._failed(row, f"{type(exc).__name__}: {exc}", retryable=retryable)
        except AxisError as exc:
            self._failed(row, f"{type(exc).__name__}: {exc}", retryable=True)

    # ---- received -> delivered | quarantined

    def _take(self, row: dict[str, Any]) -> None:
        path = self.ctx.evidence.path_for(row["sha256"])
        with self.routing.use() as routing:  # read once: routed and delivered under the same configuration
            if row["kind"] == "status":
                return self._take_status(row, path, routing)
            return self._take_edoc(row, path, routing)

    def _take_edoc(self, row: dict[str, Any], path: Path, routing: Routing) -> None:
        ctx = self.ctx
        try:
            spool = ctx.settings.spool_dir
            checks = ctx.verification  # read once: a reload (SIGHUP) never pairs old trust with a new policy
            with writing(spool):  # large attachments are decoded into spooled files there
                checked = verify(path, checks.trust, policy=checks.policy,
                                 at=dt.datetime.fromtimestamp(row["received_at"], dt.timezone.utc),
                                 spool_dir=_ensure(spool), source_name=f"inbound {row['id']}")
        except EdxmlError as exc:
            return self._quarantine(row, f"not a readable edXML document: {exc}")
        with checked:
            message = checked.parsed.message
            verdict = checked.verdict.to_dict()
            facts = {"sender": message.from_.organ_id, "document_id": message.document_id,
                     "verdict": json.dumps(verdict, ensure_ascii=False),
                     "answer_for": json.dumps(_response_for_json(message), ensure_ascii=False)
                     if isinstance(message, Edoc) else None}
            ctx.store.update_inbound(row["id"], ctx.settings.worker_id, facts, [
                ExchangeEvent("in.verified", "in", message.document_id, row["id"], axis_id=row["axis_item"], sha256=row["sha256"],
                              detail={"verdict": checked.verdict.status, "decision": checked.decision.message}),
            ])
            row.update(facts)
            if not isinstance(message, Edoc):
                return self._quarantine(row, "a status message arrived where documents are listed")
            if not checked.decision.accepted:
                return self._quarantine(row, f"signature: {checked.decision.message}")
            errors = checked.parsed.report.errors
            if errors:
                return self._quarantine(row, "invalid edXML: " + "; ".join(str(p) for p in errors[:5]))
            twin = ctx.store.delivered_twin(row)
            if twin:
                ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {"state": "delivered", "duplicate_of": twin,
                                                                             "reason": f"duplicate of {twin}"})
                return
            recipient = self._recipient(message)
            try:
                targets = routing.router.route(RouteFacts.for_message(message, recipient))
            except Unroutable as exc:
                return self._quarantine(row, f"unroutable: {exc}")
            metadata = to_json(message)
            metadata.update(signature=verdict, axis_id=row["axis_item"], received_at=_iso(row["received_at"]))
            self._deliver(row, Delivery(row["id"], "edoc", message, path, metadata), targets, routing)

    def _take_status(self, row: dict[str, Any], path: Path, routing: Routing) -> None:
        ctx = self.ctx
        try:
            with parse(path, validate=False, source_name=f"inbound {row['id']}") as parsed:
                status = parsed.message
                if not isinstance(status, Status):
                    return self._quarantine(row, "a document arrived where statuses are listed")
                matched = []
                at = status.timestamp.timestamp() if status.timestamp else row["received_at"]
                for answered in status.response_for:
                    if not answered.document_id:
                        continue
                    name = "out.delivered" if status.status_code == "01" else "out.status_received"
                    event = lambda out_id: [ExchangeEvent(name, "out", answered.document_id, out_id,
                                                          axis_id=row["axis_item"], sha256=row["sha256"],
                                                          detail={"status_code": status.status_code, "from": status.from_.organ_id})]
                    out_id = ctx.store.apply_status(document_id=answered.document_id, our_sender=ctx.agency_code,
                                                    recipient=status.from_.organ_id or "", code=status.status_code or "",
                                                    description=status.description, at=at, events=event)
                    if out_id:
                        matched.append(out_id)
                        if status.status_code in NOT_DELIVERED_CODES:
                            ctx.doc_log(logging.WARNING, f"NOT DELIVERED to {status.from_.organ_id}: status "
                                        f"{status.status_code} {status_label(status.status_code)}"
                                        + (f": {status.description}" if status.description else ""),
                                        document_id=answered.document_id, tracking_id=out_id)
                facts = {"sender": status.from_.organ_id, "status_code": status.status_code,
                         "document_id": status.response_for[0].document_id if status.response_for else None}
                if not matched:
                    reason = "no document of ours matches this status"
                    ctx.store.update_inbound(row["id"], ctx.settings.worker_id, dict(facts, reason=reason))
                    row.update(facts)
                    ctx.doc_log(logging.WARNING, f"status {status.status_code} from {status.from_.organ_id}: {reason}",
                                document_id=facts["document_id"], tracking_id=row["id"])
                    self._acknowledge(row, ok=True, final="unmatched")
                    return
                ctx.store.update_inbound(row["id"], ctx.settings.worker_id, facts)
                try:
                    targets = routing.router.route(RouteFacts(kind="status", sender=status.from_.organ_id,
                                                              recipient=ctx.agency_code, document_type=None, priority=None))
                except Unroutable:
                    targets = []  # a status nobody asked to see is still applied to our documents
                metadata = to_json(status)
                metadata.update(axis_id=row["axis_item"], received_at=_iso(row["received_at"]), matched=matched)
                self._deliver(row, Delivery(row["id"], "status", status, path, metadata), targets, routing)
        except EdxmlError as exc:
            return self._quarantine(row, f"not a readable status message: {exc}")

    def _deliver(self, row: dict[str, Any], delivery: Delivery, targets: list[str], routing: Routing) -> None:
        """Deliver to ``targets`` through ``routing``'s destinations: the routing that chose them."""
        ctx = self.ctx
        done: dict[str, str] = json.loads(row.get("delivered_to") or "{}")
        for name in targets:
            if name in done:
                continue
            destination = routing.destinations.get(name)
            if destination is None:
                raise DeliveryError(f"destination {name!r} is not configured", retryable=False, destination=name)
            done[name] = destination.deliver(delivery)
            ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {"delivered_to": json.dumps(done, ensure_ascii=False)})
        ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {"state": "delivered", "last_error": None}, [
            ExchangeEvent("in.routed", "in", row["document_id"], row["id"], axis_id=row["axis_item"], detail={"delivered_to": done}),
        ])
        ctx.observer.received(time.time() - row["received_at"])
        ctx.doc_log(logging.INFO, f"delivered {delivery.kind} to {', '.join(done) or 'no destination'}",
                    document_id=row["document_id"], tracking_id=row["id"], axis_id=row["axis_item"])

    # ---- delivered -> acknowledged -> done

    def _needs_ack(self, row: dict[str, Any]) -> bool:
        return not row["axis_item"].startswith(HUB_STATUS)

    def _acknowledge(self, row: dict[str, Any], *, ok: bool, reason: str | None = None, final: str | None = None) -> None:
        ctx = self.ctx
        if self._needs_ack(row):
            try:
                ctx.axis.acknowledge(row["axis_item"], ok=ok, reason=reason)
            except NotFoundError:
                pass  # acknowledged before a crash: the axis no longer offers it
        state = final or ("acknowledged" if ok else "rejected")
        if ok and row.get("duplicate_of"):
            state = "duplicate"
        if ok and row["kind"] == "status":
            state = final or "done"
        ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {"state": state}, [
            ExchangeEvent("in.acknowledged" if ok else "in.rejected", "in", row["document_id"], row["id"], axis_id=row["axis_item"],
                          detail={"reason": reason} if reason else None),
        ])

    def _answer(self, row: dict[str, Any]) -> None:
        """Status 01 (Đã đến) back to the sender; queued idempotently, sent by the outbox."""
        ctx = self.ctx
        answering = self._answering(row)
        out_id = self.outbox.submit_status(
            StatusRequest(document_id=row["document_id"], to=row["sender"], status_code="01"),
            intake_key=f"status01:{row['id']}", answering=answering,
        )
        ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {"state": "done"}, [
            ExchangeEvent("in.status_sent", "in", row["document_id"], row["id"], detail={"status_code": "01", "tracking_id": out_id}),
        ])

    # ---- quarantine

    def _quarantine(self, row: dict[str, Any], reason: str) -> None:
        ctx = self.ctx
        ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {"state": "quarantined", "reason": reason}, [
            ExchangeEvent("in.quarantined", "in", row.get("document_id"), row["id"], axis_id=row["axis_item"], sha256=row["sha256"],
                          detail={"reason": reason}),
        ])
        row.update(state="quarantined", reason=reason)
        ctx.observer.failed("in")
        ctx.doc_log(logging.WARNING, f"quarantined: {reason}", document_id=row.get("document_id"), tracking_id=row["id"])

    def _reject(self, row: dict[str, Any]) -> None:
        reason = row["reason"] or "refused"
        if row["sender"] and row["document_id"] and row["kind"] == "edoc":
            self.outbox.submit_status(
                StatusRequest(document_id=row["document_id"], to=row["sender"], status_code="02", description=reason[:500]),
                intake_key=f"status02:{row['id']}", answering=self._answering(row),
            )
        self._acknowledge(row, ok=False, reason=reason[:500])

    # ---- helpers

    @staticmethod
    def _answering(row: dict[str, Any]) -> ResponseFor | None:
        """The answered document's reference, kept when it was verified (none if unreadable)."""
        if not row.get("answer_for"):
            return None
        data = json.loads(row["answer_for"])
        when = data.get("promulgation_date")
        return ResponseFor(organ_id=data.get("organ_id"), code=data.get("code"), document_id=data.get("document_id"),
                           promulgation_date=dt.date.fromisoformat(when) if when else None)

    def _recipient(self, message: Edoc) -> str:
        ours = self.ctx.agency_code
        codes = [o.organ_id for o in message.to if o.organ_id]
        return ours if ours in codes or not codes else codes[0]

    def _failed(self, row: dict[str, Any], error: str, *, retryable: bool) -> None:
        ctx = self.ctx
        fresh = ctx.store.inbound(row["id"]) or row
        failures = fresh["attempts"] + 1
        age = time.time() - fresh["received_at"]
        ctx.observer.failed("in")
        if retryable and not ctx.settings.retry.exhausted(failures, age):
            delay = ctx.settings.retry.delay(failures)
            ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {
                "attempts": failures, "next_attempt_at": time.time() + delay, "last_error": error,
                "claimed_by": None, "claimed_until": None,
            })
            ctx.observer.retried("in")
            ctx.doc_log(logging.WARNING, f"inbound step failed (attempt {failures}), retrying in {delay:.0f} s: {error}",
                        document_id=fresh.get("document_id"), tracking_id=row["id"])
            return
        ctx.store.update_inbound(row["id"], ctx.settings.worker_id, {
            "state": "dead", "attempts": failures, "last_error": error, "reason": f"stopped at {fresh['state']}: {error}",
            "claimed_by": None, "claimed_until": None,
        }, [ExchangeEvent("in.dead", "in", fresh.get("document_id"), row["id"], detail={"reason": error, "step": fresh["state"]})])
        ctx.observer.dead("in")
        ctx.doc_log(logging.ERROR, f"dead at {fresh['state']}: {error}", document_id=fresh.get("document_id"), tracking_id=row["id"])


ROUND_ERRORS: tuple[type[BaseException], ...] = (AuthenticationError, TLSError, OSError, GateClosed)
"""Fetch errors that are about us or the connection, not the item: they end the poll round."""

FETCH_FAILURES = "inbound_fetch_failures"


class FetchFailures:
    """Items the axis offers but would not serve, kept in the store's settings (JSON) under
    :data:`FETCH_FAILURES`: ``{axis item id: {kind, sender, state, attempts, first_at, last_at,
    next_at, last_error[, reason]}}``; ``state`` is ``retrying`` or ``dead`` (given up: left on
    the axis, unacknowledged, until ``resend <item id>``). Written by the poller (it holds the
    poller lock) and by ``resend``, which may run beside it: a save writes only the items this
    instance changed, over what is stored now, so neither undoes the other."""

    def __init__(self, store, entries: dict[str, dict[str, Any]]):
        self.store = store
        self.entries = entries
        self.touched: set[str] = set()  # items changed (or forgotten) since the last save
        self.events: list[ExchangeEvent] = []  # journaled (audit log) with the next save

    @classmethod
    def load(cls, store) -> "FetchFailures":
        return cls(store, read_fetch_failures(store))

    def save(self) -> None:
        """Write the entries if they changed, with the events about them in one transaction:
        an item given up on, or fetched again on request, is in the exchange log."""
        if not (self.touched or self.events):
            return
        touched = {item_id: self.entries.get(item_id) for item_id in self.touched}

        def merged(current: str | None) -> str:
            entries = _decoded(current)
            for item_id, entry in touched.items():
                if entry is None:
                    entries.pop(item_id, None)
                else:
                    entries[item_id] = entry
            self.entries = entries
            return json.dumps(entries, ensure_ascii=False, sort_keys=True)

        self.store.update_setting(FETCH_FAILURES, merged, events=self.events)
        self.touched = set()
        self.events = []

    def due(self, item_id: str, now: float) -> bool:
        entry = self.entries.get(item_id)
        return entry is None or (entry.get("state") != "dead" and float(entry.get("next_at", 0)) <= now)

    def failed(self, item_id: str, kind: str, sender: str | None, error: str, now: float) -> dict[str, Any]:
        entry = self.entries.setdefault(item_id, {"kind": kind, "sender": sender, "state": "retrying", "attempts": 0,
                                                  "first_at": now})
        entry.update(attempts=int(entry.get("attempts", 0)) + 1, last_at=now, last_error=error[:2000])
        self.touched.add(item_id)
        return entry

    def forget(self, item_id: str) -> None:
        if self.entries.pop(item_id, None) is not None:
            self.touched.add(item_id)

    def prune(self, kind: str, *, offered: set[str], stored: set[str]) -> None:
        """Drop what is settled: items now stored, and retrying items the axis no longer offers
        (given-up ones stay on record until ``resend``)."""
        for item_id, entry in list(self.entries.items()):
            gone = entry.get("kind") == kind and item_id not in offered and entry.get("state") != "dead"
            if item_id in stored or gone:
                self.forget(item_id)


def read_fetch_failures(store) -> dict[str, dict[str, Any]]:
    """The recorded fetch failures (see :class:`FetchFailures`); empty when none or unreadable."""
    return _decoded(store.get_setting(FETCH_FAILURES))


def _decoded(raw: str | None) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _response_for_json(doc: Edoc) -> dict[str, Any]:
    ref = response_for(doc)
    return {"organ_id": ref.organ_id, "code": ref.code, "document_id": ref.document_id,
            "promulgation_date": ref.promulgation_date.isoformat() if ref.promulgation_date else None}


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
