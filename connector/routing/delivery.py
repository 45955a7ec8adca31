"""The delivery interface: one inbound item handed to one named destination (a DMS).

The engine builds a :class:`Delivery` for each verified inbound document or status and calls
``deliver`` on each destination the router names. Every adapter (folder, webhook, SQL; one
file each) makes ``deliver`` idempotent on ``delivery_id``: the engine may call it again
after a crash, and the DMS gets the item once. Failures are :class:`DeliveryError` with
``retryable`` saying whether trying later can help (DMS down, 5xx) or not (4xx, a refused
item, a configuration problem), so the engine retries or parks the item in its dead state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from connector.edxml.model import Attachment, Edoc, Message

from .config import (
    DestinationConfig,
    FolderDestinationConfig,
    SqlDestinationConfig,
    WebhookDestinationConfig,
)

__all__ = ["Delivery", "DeliveryError", "Destination", "open_destination"]


@dataclass
class Delivery:
    """One inbound item ready for a DMS.

    ``metadata`` is the document JSON (:func:`connector.edxml.jsonform.to_json`) plus
    ``signature`` (the verdict as a dict), ``axis_id`` and ``received_at``; adapters add a
    ``delivery`` entry (the id and where each file went) to what they hand over.
    ``raw_path`` is the evidence file: adapters copy it, never move or change it.
    """

    delivery_id: str
    kind: Literal["edoc", "status"]
    message: Message
    raw_path: Path
    metadata: dict = field(default_factory=dict)

    @property
    def attachments(self) -> list[Attachment]:
        """The message's attachments (none for a status)."""
        return list(self.message.attachments) if isinstance(self.message, Edoc) else []

    @property
    def document_id(self) -> str | None:
        """The document's id; for a status, the id of the document it answers."""
        if isinstance(self.message, Edoc):
            return self.message.document_id
        answered = [r.document_id for r in self.message.response_for if r.document_id]
        return answered[0] if answered else None


class DeliveryError(Exception):
    """Delivery to ``destination`` failed; ``retryable`` says whether a later try can succeed."""

    def __init__(self, message: str, *, destination: str, retryable: bool):
        self.message = message
        self.destination = destination
        self.retryable = retryable
        super().__init__(f"destination {destination!r}: {message}")


@runtime_checkable
class Destination(Protocol):
    """A place inbound items are delivered to."""

    name: str

    def deliver(self, delivery: Delivery) -> str:
        """Deliver (idempotent on ``delivery.delivery_id``); return where it went (path, URL, row)."""
        ...

    def close(self) -> None:
        """Release connections and pools."""
        ...


def open_destination(name: str, config: DestinationConfig) -> Destination:
    """The adapter for ``config``. Opens no connection yet: a DMS that is down at start-up
    fails its first delivery (retryable), not the daemon."""
    if isinstance(config, FolderDestinationConfig):
        from .folder_delivery import FolderDestination

        return FolderDestination(name, config)
    if isinstance(config, WebhookDestinationConfig):
        from .webhook_delivery import WebhookDestination

        return WebhookDestination(name, config)
    if isinstance(config, SqlDestinationConfig):
        from .sql_delivery import SqlDestination

        return SqlDestination(name, config)
    raise TypeError(f"destination {name!r}: unknown configuration {type(config).__name__}")
