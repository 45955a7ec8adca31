"""Signature policy per sender: what a verdict means for accepting a document.

Modes:
- ``require``: only a ``valid`` signature passes.
- ``if-present``: an ``absent`` or ``placeholder`` signature passes with a warning (today's
  producers send placeholders); any signature that is present but not valid fails.
- ``record``: never blocks; the verdict is recorded.

Senders are matched by agency code: an exact code (``000.00.00.H16``) or a pattern with
``*`` (``*.H16`` is UBND tỉnh Đắk Nông and its whole department tree, since the code's
level-1 unit is its last part; ``000.00.*`` works too). The most specific match wins;
``allow_weak`` accepts SHA-1 and short RSA keys from that sender only.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Literal

from .verdict import Verdict

Mode = Literal["require", "if-present", "record"]
MODES: tuple[Mode, ...] = ("require", "if-present", "record")


@dataclass(frozen=True)
class SenderRule:
    mode: Mode = "if-present"
    allow_weak: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"signature policy mode {self.mode!r}: expected one of {', '.join(MODES)}")


@dataclass(frozen=True)
class Decision:
    """Whether the document is accepted under the policy, and what to say about it."""

    accepted: bool
    mode: Mode
    message: str
    warning: bool = False


@dataclass
class SignaturePolicy:
    default: SenderRule = field(default_factory=SenderRule)
    senders: dict[str, SenderRule] = field(default_factory=dict)

    def rule_for(self, sender: str | None) -> SenderRule:
        """The rule of the most specific pattern matching ``sender``, else the default."""
        if not sender:
            return self.default
        matches = [(p, r) for p, r in self.senders.items() if fnmatch.fnmatchcase(sender, p)]
        if not matches:
            return self.default
        return max(matches, key=lambda item: len(item[0].replace("*", "")))[1]

    def decide(self, verdict: Verdict, sender: str | None) -> Decision:
        return decide(verdict, self.rule_for(sender).mode)


def decide(verdict: Verdict, mode: Mode) -> Decision:
    """Apply one mode to one verdict."""
    text = verdict.describe()
    if mode == "record":
        return Decision(True, mode, f"recorded ({text})", warning=verdict.status != "valid")
    if verdict.status == "valid":
        return Decision(True, mode, text)
    if mode == "if-present" and verdict.status in ("absent", "placeholder"):
        return Decision(True, mode, f"accepted without a verifiable signature ({text})", warning=True)
    return Decision(False, mode, f"refused under policy {mode!r} ({text})")
