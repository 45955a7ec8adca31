"""The daemon's Prometheus metrics, in a registry of their own.

:class:`Metrics` owns a :class:`prometheus_client.CollectorRegistry` rather than using the
global one, so two instances (tests, two daemons in one process during the demo) never clash.
Counters and histograms are updated by the engine as documents move; the queue gauges are
read from the store at scrape time through a sampler callback, so they are never stale. The
sampler reads the database, which may be locked or unreachable: it runs in a thread of its own
and a scrape waits for it at most ``sampler_timeout`` seconds, then is served without the queue
gauges; a sampler still running from an earlier scrape is waited for, not started again.

Series (``direction`` is ``outbound`` or ``inbound``):

- ``documents_sent_total``, ``documents_received_total``
- ``documents_failed_total{direction}``, ``documents_retried_total{direction}``,
  ``documents_dead_total{direction}``
- ``queue_depth{state}``, ``oldest_pending_age_seconds`` (from the sampler)
- ``send_latency_seconds``, ``receive_latency_seconds`` (histograms)
- ``poll_failures_total{reason}``: poll rounds that failed, by :data:`POLL_FAILURE_REASONS`
  (one item the axis will not serve is not a failed poll: it counts in
  ``documents_failed_total{direction="inbound"}``)
- ``signing_key_unavailable``: 1 while the signing key cannot sign (a PKCS#11 token removed,
  its session lost), from the first signature that failed until the next one that succeeds
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("connector.daemon.metrics")

DIRECTIONS = ("outbound", "inbound")
POLL_FAILURE_REASONS = (
    "axis_unavailable",  # timed out, unreachable, busy, a 5xx: the axis's weather
    "axis_refused",  # the axis refused or garbled the request (not credentials or TLS)
    "authentication",  # our token, secret or signature refused
    "tls",  # a certificate refused, either way
    "disk_full",  # no space left for the spool, the evidence or the database
    "local",  # another local problem: a file, a folder, a setting, the database
    "exchange_stopped",  # the audit log is failing closed
    "internal",  # an error of a type nobody expected (a bug; its traceback is in the log)
)
# From a fast loopback exchange to a large signed attachment over a slow provincial link.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@dataclass(frozen=True)
class QueueSample:
    """What the store reports at scrape time: documents per state, and the age in seconds of
    the oldest document still waiting to be sent or delivered (``None`` when none waits)."""

    by_state: Mapping[str, int] = field(default_factory=dict)
    oldest_pending_age: float | None = None


QueueSampler = Callable[[], QueueSample]


class _QueueCollector(Collector):
    """Yields the queue gauges from the sampler on every scrape; a failing, hung or slow
    sampler (a locked or unreachable database) leaves them out of that scrape (logged) instead
    of failing or hanging the whole scrape."""

    def __init__(self, timeout: float) -> None:
        self.sampler: QueueSampler | None = None
        self.timeout = timeout
        self._running: Future | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._depth(), self._age(0.0)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sampler = self.sampler
        if sampler is None:
            return
        try:
            sample = self._sample(sampler).result(timeout=self.timeout)
        except FutureTimeout:
            log.warning("queue gauges left out of this scrape: the queue sampler did not answer within %g s "
                        "(is the database locked or unreachable?)", self.timeout)
            return
        except Exception as exc:
            # A database error's own message, not SQLAlchemy's text around it (statement, parameters).
            reason = getattr(exc, "orig", None) or exc
            log.warning("queue gauges left out of this scrape: the queue sampler failed: %s: %s", type(reason).__name__, reason)
            return
        try:
            depth = self._depth()
            for state, count in sorted(sample.by_state.items()):
                depth.add_metric([str(state)], float(count))
            age = self._age(float(sample.oldest_pending_age or 0.0))
        except (AttributeError, TypeError, ValueError) as exc:
            log.warning("queue gauges left out of this scrape: the queue sampler returned %r: %s", sample, exc)
            return
        yield depth
        yield age

    def _sample(self, sampler: QueueSampler) -> Future:
        """The sampler's run for this scrape: the one still going from an earlier scrape, or a
        new one in a daemon thread (a sampler stuck on the database must not delay the exit)."""
        with self._lock:
            if self._running is None or self._running.done():
                future: Future = Future()

                def run() -> None:
                    try:
                        future.set_result(sampler())
                    except BaseException as exc:  # noqa: BLE001 - handed to the scrape, which logs it
                        future.set_exception(exc)

                self._running = future
                threading.Thread(target=run, name="metrics-queue-sampler", daemon=True).start()
            return self._running

    @staticmethod
    def _depth() -> GaugeMetricFamily:
        return GaugeMetricFamily("queue_depth", "Documents in the queue, by state.", labels=["state"])

    @staticmethod
    def _age(value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "oldest_pending_age_seconds", "Age of the oldest document still waiting (0 when none waits).", value=value
        )


class Metrics:
    """The metric objects (public attributes, for anything the helpers don't cover) and small
    helpers the engine calls as documents move. A scrape waits at most ``sampler_timeout``
    seconds for the queue sampler."""

    def __init__(self, *, sampler_timeout: float = 3.0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sent = Counter("documents_sent_total", "Outbound documents accepted by the axis.", registry=r)
        self.received = Counter("documents_received_total", "Inbound documents delivered locally.", registry=r)
        self.failed = Counter("documents_failed_total", "Failed attempts (retryable or not).", ["direction"], registry=r)
        self.retried = Counter("documents_retried_total", "Attempts scheduled again after a failure.", ["direction"], registry=r)
        self.dead = Counter("documents_dead_total", "Documents given up on (dead letter).", ["direction"], registry=r)
        for counter in (self.failed, self.retried, self.dead):
            for direction in DIRECTIONS:
                counter.labels(direction)  # the series exist (at 0) before the first event
        self.poll_failures = Counter("poll_failures_total", "Polls of the axis that failed, by reason class.",
                                     ["reason"], registry=r)
        for reason in POLL_FAILURE_REASONS:
            self.poll_failures.labels(reason)
        self.key_unavailable = Gauge(
            "signing_key_unavailable", "1 while the signing key cannot sign (token removed, session lost), else 0.",
            registry=r,
        )
        self.send_latency = Histogram(
            "send_latency_seconds", "From queued to accepted by the axis.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.receive_latency = Histogram(
            "receive_latency_seconds", "From fetched from the axis to delivered locally.", buckets=LATENCY_BUCKETS, registry=r
        )
        self._queue = _QueueCollector(sampler_timeout)
        r.register(self._queue)

    def set_queue_sampler(self, fn: QueueSampler | None) -> None:
        """Feed ``queue_depth`` and ``oldest_pending_age_seconds`` from ``fn``, called at each
        scrape (``None``: leave them out)."""
        self._queue.sampler = fn

    def document_sent(self, latency_seconds: float | None = None) -> None:
        """One outbound document accepted by the axis, ``latency_seconds`` after it was queued."""
        self.sent.inc()
        if latency_seconds is not None:
            self.send_latency.observe(max(0.0, latency_seconds))

    def document_received(self, latency_seconds: float | None = None) -> None:
        """One inbound document delivered locally, ``latency_seconds`` after it was fetched."""
        self.received.inc()
        if latency_seconds is not None:
            self.receive_latency.observe(max(0.0, latency_seconds))

    def document_failed(self, direction: str) -> None:
        """A failed attempt, outbound or inbound."""
        self.failed.labels(_direction(direction)).inc()

    def document_retried(self, direction: str) -> None:
        """An attempt scheduled again after a retryable failure."""
        self.retried.labels(_direction(direction)).inc()

    def document_dead(self, direction: str) -> None:
        """A document moved to the dead letters."""
        self.dead.labels(_direction(direction)).inc()

    def poll_failed(self, reason: str) -> None:
        """A poll of the axis failed; ``reason`` is one of :data:`POLL_FAILURE_REASONS`."""
        if reason not in POLL_FAILURE_REASONS:
            raise ValueError(f"poll failure reason must be one of {', '.join(POLL_FAILURE_REASONS)}, not {reason!r}")
        self.poll_failures.labels(reason).inc()

    def signing_key_lost(self) -> None:
        """A signature failed because the key cannot sign for now."""
        self.key_unavailable.set(1)

    def signing_key_works(self) -> None:
        """A signature succeeded: the key is available (again)."""
        self.key_unavailable.set(0)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"metric direction must be 'outbound' or 'inbound', not {direction!r}")
    return direction
