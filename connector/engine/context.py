"""What the engine's use cases share: settings and the rooms they talk to."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..axis.transport import AxisTransport
from ..edxml.model import Organization, StaffInfo
from ..retry import RetryPolicy
from ..signing.keys import SigningKey
from ..signing.policy import SignaturePolicy
from ..signing.verify import TrustOptions
from ..store.evidence import EvidenceStore
from ..store.repo import Store
from .events import NullObserver, Observer

log = logging.getLogger("connector.engine")


class GateClosed(Exception):
    """Exchanging is stopped for now (the audit log cannot time-stamp and is set to fail closed)."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class EngineSettings:
    """The engine's own knobs (the daemon fills them from the configuration file)."""

    agency: Organization
    data_dir: Path
    staff: StaffInfo | None = None
    packaging: str = "zip"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease: float = 300.0
    worker_id: str = field(default_factory=default_worker_id)
    check_directory: bool = True
    directory_max_age: float = 24 * 3600.0

    @property
    def outgoing_dir(self) -> Path:
        return self.data_dir / "outgoing"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"


@dataclass(frozen=True)
class Verification:
    """How inbound signatures are judged: the trust anchors (with revocation checking) and the
    per-sender policy. One immutable object, so a reload (SIGHUP) swaps both in one assignment
    and a document is judged under the old pair or the new one, never half of each."""

    trust: TrustOptions
    policy: SignaturePolicy


@dataclass(frozen=True, eq=False)
class Routing:
    """Where inbound items go: the routing rules and the destinations they name, built from
    one configuration. One immutable object, like :class:`Verification`: a reload (SIGHUP)
    swaps both in one assignment, and an item read once is routed and delivered under the old
    pair or the new one, never routed by the old rules and then looked up among the new
    destinations (where a renamed one is missing). Compared by identity (``eq=False``): the
    inbox counts the items using each one."""

    router: Any  # connector.routing.rules.Router (route(facts) -> destination names)
    destinations: Mapping[str, Any]  # name -> connector.routing.delivery.Destination

    @classmethod
    def of(cls, router: Any, destinations: Mapping[str, Any]) -> "Routing":
        """A routing over a read-only copy of ``destinations`` (the caller's dict may change)."""
        return cls(router, MappingProxyType(dict(destinations)))


@dataclass
class EngineContext:
    settings: EngineSettings
    store: Store
    evidence: EvidenceStore
    axis: AxisTransport
    key: SigningKey | None
    verification: Verification  # replaced whole on reload; read it once per document
    observer: Observer = field(default_factory=NullObserver)
    gate: Callable[[], None] = lambda: None  # raises GateClosed to stop exchanging (audit fail-closed)

    @property
    def agency_code(self) -> str:
        return self.settings.agency.organ_id or ""

    def doc_log(self, level: int, message: str, *, document_id: str | None = None, tracking_id: str | None = None,
                axis_id: str | None = None, **kwargs) -> None:
        log.log(level, message, extra={"document_id": document_id, "tracking_id": tracking_id, "axis_id": axis_id}, **kwargs)

    def wait_and_stop(self, direction: str, row: dict, waiting_for: str, exc: Exception) -> None:
        """Something outside the document stopped its step (a full disk, a signing key that
        cannot sign for now): give the row back in the state it reached (no attempt counted,
        never dead for it), due again after the first retry delay, and end the round with
        ``exc`` (the daemon logs it once, in one line naming what to wait for)."""
        self.observer.retried(direction)
        self.store.release_claim("inbound" if direction == "in" else "outbound", row["id"], self.settings.worker_id,
                                 last_error=f"waiting for {waiting_for}: {exc}",
                                 next_attempt_at=time.time() + self.settings.retry.delay(1))
        raise exc
