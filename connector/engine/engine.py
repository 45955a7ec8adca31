"""The engine: one object the daemon and the CLI drive; it owns no thread of its own."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..edxml.model import status_label
from .context import EngineContext, Routing
from .inbox import Inbox
from .outbox import Outbox, StatusRequest, refresh_directory

log = logging.getLogger("connector.engine")


class Engine:
    """Intake, send, poll, receive: each method does one round of work and returns."""

    def __init__(self, ctx: EngineContext, router, destinations: dict[str, Any]):
        self.ctx = ctx
        self.outbox = Outbox(ctx)
        self.inbox = Inbox(ctx, self.outbox, router, destinations)

    # intake (from the DMS)
    def submit(self, document: dict, files: list[Path], *, intake_key: str | None = None) -> str:
        """Queue a document the DMS hands in; its tracking id. Refused with
        :class:`~connector.engine.context.GateClosed` while exchanges are stopped (the audit
        log failing closed): queueing is an exchange step the log must record."""
        self.ctx.gate()
        return self.outbox.submit(document, files, intake_key=intake_key)

    def submit_status(self, request: StatusRequest, *, intake_key: str | None = None) -> str:
        """Queue a status the DMS reports; refused like :meth:`submit` while exchanges are stopped."""
        self.ctx.gate()
        return self.outbox.submit_status(request, intake_key=intake_key)

    def set_routing(self, router, destinations: dict[str, Any]) -> None:
        """Swap the routing rules and destinations as one (SIGHUP); the next item uses the new
        ones, an item already routed is delivered under the old ones. The old destinations are
        closed once no item uses them (see :class:`~connector.engine.inbox.CurrentRouting`)."""
        self.inbox.routing.swap(Routing.of(router, destinations))

    # rounds of work
    def send_due(self, limit: int = 100) -> int:
        return self.outbox.send_due(limit)

    def poll(self) -> int:
        return self.inbox.poll()

    def process_due(self, limit: int = 100) -> int:
        return self.inbox.process_due(limit)

    def refresh_directory(self) -> int:
        return len(refresh_directory(self.ctx))

    def run_once(self) -> dict[str, int]:
        """One full round: send, poll, process, and send what processing queued (statuses)."""
        sent = self.send_due()
        stored = self.poll()
        processed = self.process_due()
        sent += self.send_due()
        return {"sent": sent, "stored": stored, "processed": processed}

    # operations
    def resend(self, ident: str) -> bool:
        from .events import ExchangeEvent

        store = self.ctx.store
        row = store.find_outbound(ident)
        if row is not None:
            return store.requeue(row["id"], [ExchangeEvent("out.requeued", "out", row["document_id"], row["id"])])
        inbound = store.inbound(ident)
        if inbound is not None:
            return store.requeue_inbound(ident, [ExchangeEvent("in.requeued", "in", inbound["document_id"], ident)])
        return self.inbox.retry_fetch(ident)  # an axis item whose fetching was given up

    def cancel(self, ident: str) -> bool:
        from .events import ExchangeEvent

        row = self.ctx.store.find_outbound(ident)
        if row is None:
            return False
        return self.ctx.store.cancel(row["id"], [ExchangeEvent("out.cancelled", "out", row["document_id"], row["id"])])

    def track(self, ident: str) -> dict | None:
        """Per-recipient delivery and business status of one outbound document."""
        row = self.ctx.store.find_outbound(ident)
        if row is None:
            return None
        return {
            "tracking_id": row["id"],
            "document_id": row["document_id"],
            "kind": row["kind"],
            "state": row["state"],
            "axis_id": row["axis_id"],
            "attempts": row["attempts"],
            "last_error": row["last_error"],
            "recipients": [
                {"agency": r["recipient"], "state": r["state"], "status_code": r["status_code"],
                 "status_name": status_label(r["status_code"]) if r["status_code"] else None,
                 "description": r["status_description"]}
                for r in self.ctx.store.recipients(row["id"])
            ],
        }
