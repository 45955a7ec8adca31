"""Fault injection: what a flaky hub or axis does to its clients, on demand.

Five kinds, each changeable at run time (``/admin/faults``), the first four also by a CLI flag:

- ``latency_ms``: every binding request waits this long before it is handled (a client with
  a shorter read timeout sees a timeout);
- ``failure_rate``: this share of requests fails on the server side (hub: HTTP 500 with an
  empty SOAP envelope; VXP: HTTP 503 ``status: FAIL``, ``ErrorCode: BUSY``);
- ``drop_rate``: this share of connections is closed without any answer;
- an outage window (``outage_start`` epoch seconds, ``outage_seconds``): every binding
  request in the window gets HTTP 503;
- ``forward_fail`` (agency codes): the provincial hub cannot forward documents to these
  recipients over the national axis. A document sent through the hub (SOAP) to one of them
  is accepted, but never becomes pending for it; instead the hub records status 999 ("Gui
  that bai") for the sender, from that recipient, as the real hub does when ``sendEdoc`` fails.

Faults apply to the bindings only, never to ``/admin`` or ``/healthz``. Decisions draw from
one seeded random generator under a lock, so a given seed replays the same sequence.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from ..httpserver import DropConnection  # noqa: F401 - re-exported: the sandbox app raises it


@dataclass
class FaultSettings:
    latency_ms: int = 0
    failure_rate: float = 0.0
    drop_rate: float = 0.0
    outage_start: float | None = None
    outage_seconds: float = 0.0
    forward_fail: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        for name in ("failure_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.outage_seconds < 0:
            raise ValueError("outage_seconds must be >= 0")
        if not isinstance(self.forward_fail, list) or not all(isinstance(c, str) and c for c in self.forward_fail):
            raise ValueError("forward_fail must be a list of agency codes")



class Decision:
    """What to do with one request."""

    NONE = "none"
    FAIL = "fail"
    DROP = "drop"
    OUTAGE = "outage"


class Faults:
    """Thread-safe fault settings plus the per-request decision."""

    def __init__(self, settings: FaultSettings | None = None, *, seed: int | None = None):
        self._lock = threading.Lock()
        self._settings = settings or FaultSettings()
        self._settings.check()
        self._random = random.Random(seed)
        self.counters = {"latency": 0, "fail": 0, "drop": 0, "outage": 0}

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return FaultSettings(**asdict(self._settings))

    def forward_fails(self, organ_id: str) -> bool:
        """Whether the hub cannot forward to ``organ_id`` (the ``forward_fail`` fault)."""
        with self._lock:
            return organ_id in self._settings.forward_fail

    def to_json(self) -> dict:
        with self._lock:
            out = asdict(self._settings)
            out["outage_active"] = self._in_outage(time.time())
            out["counters"] = dict(self.counters)
        return out

    def update(self, changes: dict) -> dict:
        """Apply a partial change (the admin endpoint's JSON); unknown keys are refused.

        Besides the settings' own names: ``outage_in`` (seconds from now) sets
        ``outage_start``; ``outage_start`` may be an ISO 8601 string; ``reset: true``
        clears everything first.
        """
        allowed = {"latency_ms", "failure_rate", "drop_rate", "outage_start", "outage_seconds", "outage_in", "reset", "seed",
                   "forward_fail"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        with self._lock:
            new = FaultSettings() if changes.get("reset") else FaultSettings(**asdict(self._settings))
            if "latency_ms" in changes:
                new.latency_ms = int(changes["latency_ms"])
            if "failure_rate" in changes:
                new.failure_rate = float(changes["failure_rate"])
            if "drop_rate" in changes:
                new.drop_rate = float(changes["drop_rate"])
            if "outage_seconds" in changes:
                new.outage_seconds = float(changes["outage_seconds"])
            if "outage_start" in changes:
                new.outage_start = parse_instant(changes["outage_start"])
            if "outage_in" in changes:
                new.outage_start = time.time() + float(changes["outage_in"])
            if "forward_fail" in changes:
                new.forward_fail = changes["forward_fail"]
            new.check()
            self._settings = new
            if "seed" in changes:
                self._random.seed(changes["seed"])
        return self.to_json()

    def decide(self) -> tuple[str, float]:
        """The fault for one binding request and the latency (seconds) to add first."""
        with self._lock:
            s = self._settings
            delay = s.latency_ms / 1000.0
            if delay:
                self.counters["latency"] += 1
            if self._in_outage(time.time()):
                self.counters["outage"] += 1
                return Decision.OUTAGE, delay
            if s.drop_rate and self._random.random() < s.drop_rate:
                self.counters["drop"] += 1
                return Decision.DROP, delay
            if s.failure_rate and self._random.random() < s.failure_rate:
                self.counters["fail"] += 1
                return Decision.FAIL, delay
            return Decision.NONE, delay

    def _in_outage(self, now: float) -> bool:
        s = self._settings
        return s.outage_start is not None and s.outage_start <= now < s.outage_start + s.outage_seconds


def parse_instant(value) -> float | None:
    """Epoch seconds from a number, an ISO 8601 string, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()
