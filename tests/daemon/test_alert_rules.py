"""The example Prometheus alert rules (config/prometheus-alerts.example.yml) refer only to
series the daemon exports, with labels and label values it uses: a renamed metric or queue
state would otherwise leave an alert that can never fire."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from connector.daemon.metrics import Metrics, QueueSample
from connector.store.repo import IN_ACTIVE, OUT_ACTIVE

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus-alerts.example.yml"
PROMQL_WORDS = {"sum", "increase", "rate", "by", "without", "and", "or", "unless", "on", "ignoring", "up"}
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _expressions() -> list[str]:
    return [line.split("expr:", 1)[1].strip() for line in RULES.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith("expr:")]


def _exported() -> dict[str, set[str]]:
    """Series name -> label names, as a daemon's /metrics shows them (queue gauges included)."""
    metrics = Metrics()
    metrics.set_queue_sampler(lambda: QueueSample(dict.fromkeys(_queue_states(), 1), 12.0))
    metrics.document_sent(1.0)
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render()[0].decode()):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    return exported


def _queue_states() -> set[str]:
    return {f"out_{s}" for s in (*OUT_ACTIVE, "sent", "dead", "cancelled")} | {f"in_{s}" for s in (*IN_ACTIVE, "done", "dead")}


def test_every_alert_uses_exported_series_and_labels():
    exported = _exported()
    expressions = _expressions()
    assert len(expressions) >= 6
    seen = set()
    for expr in expressions:
        bare = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors ([1h]) name no series
        for name, selector in SELECTOR.findall(bare):
            if name in PROMQL_WORDS or name[0].isdigit():
                continue
            assert name in exported, f"{expr}: {name} is not a series the daemon exports"
            seen.add(name)
            for label, op, value in MATCHER.findall(selector or ""):
                assert label in exported[name], f"{expr}: {name} has no label {label}"
                if name == "queue_depth":
                    matches = [s for s in _queue_states() if (re.fullmatch(value, s) if "~" in op else s == value)]
                    assert matches, f"{expr}: no queue state matches {value!r}"
    assert {"signing_key_unavailable", "documents_dead_total", "poll_failures_total", "oldest_pending_age_seconds",
            "queue_depth"} <= seen
