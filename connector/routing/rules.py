"""Routing decisions: which named destinations an inbound message goes to. Pure, no I/O.

Rules are tried in order; the first whose every given criterion matches wins. No rule: the
default route. No default: :class:`Unroutable`, whose text names the facts, so the engine can
quarantine the document with that reason (and answer the sender with status 02).

A :class:`Router` is immutable; the daemon builds a new one from a reloaded configuration
(SIGHUP) and swaps it in, so a decision in flight never sees half a configuration.
"""

from __future__ import annotations

import fnmatch
import unicodedata
from dataclasses import dataclass
from typing import Literal

from connector.edxml.model import Edoc, Message, Status

from .config import RoutingConfig, RuleConfig

__all__ = ["RouteDecision", "RouteFacts", "Router", "Unroutable"]


class Unroutable(Exception):
    """No rule and no default route covers these facts; ``reason`` is a full sentence."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class RouteFacts:
    """What routing looks at, for one inbound message and one of its recipients.

    ``recipient`` is the local agency the message is for (a document's ``To`` entry; for a
    status, the agency whose document it answers); ``document_type`` is the type name
    (TypeName, e.g. "Công văn"); ``priority`` the OtherInfo priority (0-4).
    """

    kind: Literal["edoc", "status"]
    sender: str | None
    recipient: str | None
    document_type: str | None = None
    priority: int | None = None

    @classmethod
    def for_message(cls, message: Message, recipient: str | None = None) -> RouteFacts:
        """The facts of ``message`` for ``recipient`` (default: the single ``To`` of a document,
        or the agency whose document a status answers)."""
        if isinstance(message, Edoc):
            if recipient is None and len(message.to) == 1:
                recipient = message.to[0].organ_id
            return cls(
                kind="edoc",
                sender=message.from_.organ_id,
                recipient=recipient,
                document_type=message.document_type.type_name,
                priority=message.other_info.priority,
            )
        if isinstance(message, Status):
            if recipient is None and message.response_for:
                recipient = message.response_for[0].organ_id
            return cls(kind="status", sender=message.from_.organ_id, recipient=recipient)
        raise TypeError(f"not an edXML message: {type(message).__name__}")

    def describe(self) -> str:
        """``a document (Công văn, priority 1) from X to Y``: for error texts and logs."""
        what = "a document" if self.kind == "edoc" else "a status message"
        extra = [x for x in (self.document_type, None if self.priority is None else f"priority {self.priority}") if x]
        detail = f" ({', '.join(extra)})" if extra else ""
        return f"{what}{detail} from {self.sender or '(no sender)'} to {self.recipient or '(no recipient)'}"


@dataclass(frozen=True)
class RouteDecision:
    """Where to deliver, and which rule said so (``rules[2]`` or its name; ``default``)."""

    destinations: list[str]
    rule: str


class Router:
    """First-match routing over a :class:`RoutingConfig` (immutable; rebuild to reload)."""

    def __init__(self, config: RoutingConfig):
        self._rules = tuple(_Compiled(index, rule) for index, rule in enumerate(config.rules))
        self._default = tuple(config.default)

    def route(self, facts: RouteFacts) -> list[str]:
        """The destination names for ``facts``; raises :class:`Unroutable`."""
        return self.decide(facts).destinations

    def decide(self, facts: RouteFacts) -> RouteDecision:
        """Like :meth:`route`, also naming the rule that matched (for the log and audit)."""
        for rule in self._rules:
            if rule.matches(facts):
                return RouteDecision(list(rule.to), rule.label)
        if self._default:
            return RouteDecision(list(self._default), "default")
        if not self._rules:
            raise Unroutable(f"No routing rule is configured and there is no default route for {facts.describe()}.")
        raise Unroutable(
            f"No routing rule matches {facts.describe()}, and there is no default route "
            f"({len(self._rules)} rule{'s' if len(self._rules) != 1 else ''} tried)."
        )


def _fold(text: str) -> str:
    """Case- and composition-insensitive form for comparing Vietnamese type names."""
    return unicodedata.normalize("NFC", text).casefold().strip()


def _as_list(value):
    if value is None:
        return None
    return tuple(value) if isinstance(value, list) else (value,)


class _Compiled:
    def __init__(self, index: int, rule: RuleConfig):
        self.label = rule.name or f"rules[{index}]"
        self.to = tuple(rule.to)
        self.kind = rule.kind
        self.recipient = _as_list(rule.recipient)
        self.sender = _as_list(rule.sender)
        types = _as_list(rule.document_type)
        self.document_type = None if types is None else tuple(_fold(t) for t in types)
        self.priority = _as_list(rule.priority)

    def matches(self, facts: RouteFacts) -> bool:
        if self.kind is not None and facts.kind != self.kind:
            return False
        if not _code_matches(self.recipient, facts.recipient):
            return False
        if not _code_matches(self.sender, facts.sender):
            return False
        if self.document_type is not None:
            if not facts.document_type:
                return False
            value = _fold(facts.document_type)
            if not any(fnmatch.fnmatchcase(value, p) for p in self.document_type):
                return False
        return self.priority is None or facts.priority in self.priority


def _code_matches(patterns: tuple[str, ...] | None, code: str | None) -> bool:
    """Agency codes: exact, or ``*`` patterns (``000.00.*``, ``*.H16``), as the signing policy."""
    if patterns is None:
        return True
    if not code:
        return False
    code = code.strip()
    return any(fnmatch.fnmatchcase(code, p.strip()) for p in patterns)
