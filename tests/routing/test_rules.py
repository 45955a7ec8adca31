"""Routing decisions: first matching rule wins, then the default; otherwise Unroutable with a
sentence naming the facts."""

from __future__ import annotations

import pytest

from connector.edxml.samples import sample_edoc, sample_status
from connector.routing.config import RoutingConfig
from connector.routing.rules import RouteFacts, Router, Unroutable

DESTS = {name: {"type": "folder", "path": f"/srv/{name}"} for name in ("so-tc", "ubnd", "urgent", "statuses", "catchall")}


def _router(rules, default=()):
    return Router(RoutingConfig.model_validate({"destinations": DESTS, "rules": rules, "default": list(default)}))


RULES = [
    {"name": "statuses", "kind": "status", "to": ["statuses"]},
    {"name": "express", "priority": [3, 4], "recipient": "*.H16", "to": ["urgent", "ubnd"]},
    {"recipient": "000.01.*.H16", "to": ["so-tc"]},          # Sở Tài chính's tree
    {"recipient": "*.H16", "document_type": "quyết định", "to": ["ubnd"]},
    {"recipient": ["000.00.00.H16", "000.00.00.H41"], "sender": "*.G22", "to": ["ubnd"]},
]


@pytest.mark.parametrize(
    ("facts", "expected", "rule"),
    [
        (RouteFacts("status", "000.00.00.G22", "000.01.00.H16"), ["statuses"], "statuses"),
        (RouteFacts("edoc", "000.00.00.G22", "000.01.00.H16", "Công văn", 3), ["urgent", "ubnd"], "express"),
        (RouteFacts("edoc", "000.00.00.G22", "000.01.00.H16", "Công văn", 1), ["so-tc"], "rules[2]"),
        (RouteFacts("edoc", "000.00.00.G22", "000.01.05.H16", None, None), ["so-tc"], "rules[2]"),
        # type names compare without case and in any Unicode composition (NFD here)
        (RouteFacts("edoc", "000.00.00.G14", "000.02.00.H16", "QUYE\u0302\u0301T ĐỊNH", 0), ["ubnd"], "rules[3]"),
        (RouteFacts("edoc", "000.00.00.G22", "000.00.00.H41", "Công văn", 0), ["ubnd"], "rules[4]"),
    ],
)
def test_first_matching_rule_wins(facts, expected, rule):
    decision = _router(RULES).decide(facts)
    assert decision.destinations == expected
    assert decision.rule == rule


def test_default_route_then_unroutable():
    facts = RouteFacts("edoc", "000.00.00.G22", "000.00.00.H14", "Công văn", 0)
    assert _router(RULES, default=["catchall"]).route(facts) == ["catchall"]
    assert _router(RULES, default=["catchall"]).decide(facts).rule == "default"
    with pytest.raises(Unroutable) as info:
        _router(RULES).route(facts)
    assert info.value.reason == (
        "No routing rule matches a document (Công văn, priority 0) from 000.00.00.G22 to 000.00.00.H14, "
        "and there is no default route (5 rules tried)."
    )
    with pytest.raises(Unroutable, match="No routing rule is configured and there is no default route for a status"):
        _router([]).route(RouteFacts("status", "000.00.00.G22", None))


def test_criteria_need_the_fact_present():
    router = _router([{"recipient": "*", "to": ["ubnd"]}, {"document_type": "*", "to": ["so-tc"]}], default=["catchall"])
    assert router.route(RouteFacts("edoc", "x", None, "Công văn")) == ["so-tc"]
    assert router.route(RouteFacts("edoc", "x", None, None)) == ["catchall"]


def test_facts_from_messages():
    doc = sample_edoc("000.00.00.G22", "000.00.00.H16", 5)
    facts = RouteFacts.for_message(doc)
    assert facts == RouteFacts("edoc", "000.00.00.G22", "000.00.00.H16", "Công văn", 1)
    status = sample_status(sample_edoc("000.00.00.H16", "000.00.00.G22"), "06")
    assert RouteFacts.for_message(status) == RouteFacts("status", "000.00.00.G22", "000.00.00.H16")
    assert RouteFacts.for_message(doc, recipient="000.01.00.H16").recipient == "000.01.00.H16"


def test_router_is_replaced_not_mutated():
    """Reload = build a new Router; the old one keeps deciding with the old rules."""
    old = _router([{"recipient": "*.H16", "to": ["ubnd"]}])
    new = _router([{"recipient": "*.H16", "to": ["so-tc"]}])
    facts = RouteFacts("edoc", "000.00.00.G22", "000.00.00.H16")
    assert (old.route(facts), new.route(facts)) == (["ubnd"], ["so-tc"])
