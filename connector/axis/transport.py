"""The one interface the engine uses to talk to an axis, whichever binding is behind it.

Ids are strings (the hub's integer ids become decimal strings). Large content never travels
as bytes: :meth:`AxisTransport.fetch` writes the received edXML (or, for the hub, the
document rebuilt as edXML by the codec) to a binary stream the caller supplies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from connector.edxml.model import Message, Status

Kind = Literal["edoc", "status"]


@dataclass
class PendingItem:
    """Something waiting for us on the axis: fetch it, store it, then acknowledge it."""

    item_id: str
    kind: Kind = "edoc"
    sender: str | None = None
    created: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class FetchedInfo:
    """What :meth:`AxisTransport.fetch` wrote: the item, its size and SHA-256 (of the bytes written)."""

    item_id: str
    size: int
    sha256: str
    kind: Kind = "edoc"


@dataclass
class Agency:
    """A directory entry: an agency reachable through the axis."""

    code: str
    name: str | None = None
    parent: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    address: str | None = None
    website: str | None = None
    in_charge: str | None = None


@runtime_checkable
class AxisTransport(Protocol):
    """An axis binding (provincial SOAP hub, national VXP).

    Errors: every method raises :class:`~connector.axis.errors.AxisError` subclasses only,
    :class:`~connector.axis.errors.RetryableAxisError` for what may succeed later, with one
    exception about the local disk, not the axis: a write that fails for lack of space
    (spooling what arrives, writing a fetched edXML, building one to send) is
    :class:`~connector.durable.DiskFull` (an ``OSError``) naming the full folder or file, or,
    for a ``dest`` stream without a file name, that stream's own ``OSError`` (ENOSPC/EDQUOT).
    """

    def send(self, message: Message, *, edxml_path: Path | None = None) -> str:
        """Send a document or a status; returns the axis's id for it.

        ``edxml_path``: an already built (and signed) .edxml file of ``message`` that bindings
        carrying edXML files (VXP) send as is; without it they build one to a temp file.
        Bindings that carry the fields (the SOAP hub) use ``message`` and its attachments.
        """
        ...

    def pending(self, kind: Kind = "edoc") -> list[PendingItem]:
        """Items waiting for us (not yet acknowledged)."""
        ...

    def fetch(self, item_id: str, dest: BinaryIO) -> FetchedInfo:
        """Write the item's edXML to ``dest`` (streamed), without acknowledging it."""
        ...

    def acknowledge(self, item_id: str, ok: bool = True, reason: str | None = None) -> None:
        """Tell the axis we took the item (``ok``) or could not (``not ok``, with a reason)."""
        ...

    def statuses_since(self, when: datetime | None = None) -> list[Status]:
        """Statuses about documents we sent; ``None`` means "the ones not read yet"."""
        ...

    def directory(self) -> list[Agency]:
        """The agencies reachable through this axis."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
