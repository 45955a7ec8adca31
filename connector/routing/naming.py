"""Names for what the adapters write: attachment file names and per-delivery folder names.

Whether a name is safe is decided by :mod:`connector.edxml.names` (the single authority);
this module only picks names: the attachment's own name when it is safe, a neutral
``attachment-N.ext`` when it is not, a suffix `` (2)`` when two would collide, and a
readable folder label made from ids that contain ``/`` and ``,``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from connector.edxml.model import Attachment
from connector.edxml.names import normalized, unsafe_reason

from .delivery import Delivery

__all__ = ["attachment_file_names", "delivery_label", "free_name", "label", "metadata_bytes"]

_UNSAFE_CHARS = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]')
_SPACES = re.compile(r"\s+")
_EXT = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
RAW_FILE = "message.edxml"
METADATA_FILE = "metadata.json"


def label(text: str | None, max_bytes: int = 100, fallback: str = "x") -> str:
    """``text`` as a safe file-name fragment: separators and odd characters become ``_``."""
    text = normalized(text or "")
    text = _UNSAFE_CHARS.sub("_", text)
    text = _SPACES.sub(" ", text).strip(" .")
    if text.startswith("."):
        text = "_" + text[1:]
    data = text.encode("utf-8")
    if len(data) > max_bytes:
        text = data[:max_bytes].decode("utf-8", "ignore").rstrip(" .")
    if not text or unsafe_reason(text):
        text = f"{fallback}-{text}" if text and not unsafe_reason(f"{fallback}-{text}") else fallback
    return text


def free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem (2).ext``, ``stem (3).ext``...: the first not in ``taken`` (casefolded,
    as Windows compares). The chosen name is added to ``taken``."""
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}){dot}{ext}"
    taken.add(candidate.casefold())
    return candidate


def attachment_file_names(attachments: list[Attachment], reserved: tuple[str, ...] = ()) -> list[str]:
    """One safe, distinct file name per attachment, in order (``reserved`` names are avoided)."""
    taken = {r.casefold() for r in reserved}
    names = []
    for index, attachment in enumerate(attachments, start=1):
        name = normalized(attachment.name or "")
        if unsafe_reason(name):
            ext = "." + name.rsplit(".", 1)[-1] if "." in name else ""
            name = f"attachment-{index}{ext if _EXT.match(ext) else ''}"
        names.append(free_name(name, taken))
    return names


def delivery_label(delivery: Delivery) -> str:
    """A folder name a clerk can read, unique per delivery: ``<document id>__<delivery id>``;
    for a status ``status-<code>__<answered document id>__<delivery id>``."""
    tail = label(delivery.delivery_id, 80, "delivery")
    if delivery.kind == "status":
        code = label(getattr(delivery.message, "status_code", None), 8, "xx")
        return f"status-{code}__{label(delivery.document_id, 100, 'document')}__{tail}"
    return f"{label(delivery.document_id, 120, 'document')}__{tail}"


def metadata_bytes(delivery: Delivery, extra: dict[str, Any]) -> bytes:
    """``metadata.json`` as delivered: the engine's metadata plus ``delivery`` (``extra``)."""
    data = dict(delivery.metadata)
    data["delivery"] = extra
    return json.dumps(data, ensure_ascii=False, indent=2, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    """Dates and paths in the engine's metadata become text (ISO dates, plain paths)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
