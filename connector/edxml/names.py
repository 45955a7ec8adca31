"""Attachment names that are safe to use as file names on any system the DMS may run on.

The name becomes a file in a DMS folder, so it must never point outside that folder, nor be a
device, nor disguise its extension. This module is the one place that decides.
"""

from __future__ import annotations

import re
import unicodedata

_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_NAME_BYTES = 255


def check_attachment_name(name: str) -> tuple[list[str], list[str]]:
    """Why ``name`` is not a safe file name: (reasons that make it an error, lesser reasons).

    Safe means usable as a plain file name on Linux and Windows without reaching outside the
    folder it is saved in, and not disguised.
    """
    if not name.strip():
        return ["it is empty"], []
    errors: list[str] = []
    if "/" in name or "\\" in name:
        errors.append("it contains a path separator (/ or \\)")
    if name in (".", ".."):
        errors.append("it is the path component '.' or '..'")
    if re.match(r"^[A-Za-z]:", name):
        errors.append("it starts with a drive letter (A: ...), a path on Windows")
    controls = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c) == "Cc"})
    if controls:
        errors.append(f"it contains control characters ({', '.join(controls)})")
    if _BIDI_CONTROLS & set(name):
        errors.append("it contains bidirectional override characters (they can disguise the extension)")
    if any(unicodedata.category(c) == "Cs" for c in name):
        errors.append("it contains unpaired surrogate code points (not encodable as UTF-8)")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        errors.append(f"it is {size} bytes long in UTF-8 (limit {MAX_NAME_BYTES})")
    if name.split(".")[0].strip().upper() in _RESERVED:
        errors.append("it is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)")
    if name != name.strip() or name.endswith("."):
        errors.append("it starts or ends with a space, or ends with a dot (Windows drops them)")
    odd = sorted(set(name) & set('<>:"|?*'))
    warnings = [f"it contains characters Windows does not allow in file names ({' '.join(odd)})"] if odd else []
    return errors, warnings


def unsafe_reason(name: str | None) -> str | None:
    """The first reason ``name`` is not a safe file name, or None when it is."""
    if name is None:
        return "it is empty"
    errors, _ = check_attachment_name(name)
    return "; ".join(errors) if errors else None


def normalized(name: str) -> str:
    """The NFC form used on disk, so a name compares equal however it was composed."""
    return unicodedata.normalize("NFC", name)
