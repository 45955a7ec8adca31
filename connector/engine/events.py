"""What the engine reports for the exchange log: one event per step, in the step's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ExchangeEvent:
    event: str  # "out.queued", "out.signed", "in.received", ...
    direction: Literal["out", "in"]
    document_id: str | None = None
    tracking_id: str | None = None
    axis_id: str | None = None
    sha256: str | None = None
    detail: dict[str, Any] | None = None


class Observer(Protocol):
    """Counters the engine feeds (the daemon's Prometheus metrics); every method optional."""

    def sent(self, latency: float) -> None: ...
    def received(self, latency: float) -> None: ...
    def failed(self, direction: str) -> None: ...
    def retried(self, direction: str) -> None: ...
    def dead(self, direction: str) -> None: ...
    def signed(self) -> None: ...  # a document was signed: the signing key works
    def key_unavailable(self) -> None: ...  # the signing key cannot sign for now (token out, session lost)


class NullObserver:
    def sent(self, latency: float) -> None:
        pass

    def received(self, latency: float) -> None:
        pass

    def failed(self, direction: str) -> None:
        pass

    def retried(self, direction: str) -> None:
        pass

    def dead(self, direction: str) -> None:
        pass

    def signed(self) -> None:
        pass

    def key_unavailable(self) -> None:
        pass
