"""Attachment names that are safe to use as file names on any system the DMS may run on."""

from __future__ import annotations

import re
import unicodedata

_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_BYTES = 255


def unsafe_reason(name: str | None) -> str | None:
    """Why ``name`` is not a safe file name, or None when it is.

    Refused: empty names, path separators, ``.`` and ``..``, control characters, names longer
    than 255 bytes in UTF-8, and Windows device names (``CON``, ``COM1``...), because the
    name becomes a file in a DMS folder and must never point outside it.
    """
    if name is None or not name.strip():
        return "the name is empty"
    if "/" in name or "\\" in name:
        return "the name contains a path separator"
    if name in (".", ".."):
        return f"{name!r} is not a file name"
    if _CONTROL.search(name):
        return "the name contains a control character"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"the name is longer than {MAX_NAME_BYTES} bytes"
    if name.split(".")[0].strip().upper() in _RESERVED:
        return f"{name.split('.')[0]!r} is a reserved device name on Windows"
    if name != name.strip() or name.endswith("."):
        return "the name starts or ends with a space, or ends with a dot"
    return None


def is_safe(name: str | None) -> bool:
    return unsafe_reason(name) is None


def normalized(name: str) -> str:
    """The NFC form used on disk, so a name compares equal however it was composed."""
    return unicodedata.normalize("NFC", name)
