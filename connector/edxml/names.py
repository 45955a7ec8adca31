"""Attachment names that are safe to use as file names on any system the DMS may run on.

The name becomes a file in a DMS folder, so it must never point outside that folder, nor be a
device, nor disguise its extension. This module is the one place that decides.
"""

from __future__ import annotations

import re
import sys
import unicodedata

_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_NAME_BYTES = 255
#: Bytes kept free below MAX_NAME_BYTES so extraction can add `` (2)`` ... `` (999)`` to a
#: name already taken in the folder.
SUFFIX_ROOM = len(" (999)")
#: The file extraction writes the document's metadata to: an attachment of that name is saved
#: under another one.
METADATA_NAME = "metadata.json"


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
    errors += _size_errors(name)
    if name.split(".")[0].strip().upper() in _RESERVED:
        errors.append("it is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)")
    if name != name.strip() or name.endswith("."):
        errors.append("it starts or ends with a space, or ends with a dot (Windows drops them)")
    odd = sorted(set(name) & set('<>:"|?*'))
    warnings = [f"it contains characters Windows does not allow in file names ({' '.join(odd)})"] if odd else []
    if normalized(name).casefold() == METADATA_NAME:
        warnings.append(f"{METADATA_NAME} is the name of the metadata file extraction writes, so the file "
                        "is saved under another name, such as 'metadata (2).json'")
    return errors, warnings


def _size_errors(name: str) -> list[str]:
    """Whether the name fits as it will be written: NFC (which can lengthen it), in the file
    system's encoding, with room for the `` (2)`` suffix extraction adds to a name taken."""
    limit = MAX_NAME_BYTES - SUFFIX_ROOM
    written = normalized(name)
    encoding = sys.getfilesystemencoding()
    try:
        size = len(written.encode(encoding))
    except UnicodeEncodeError:
        if any(unicodedata.category(c) == "Cs" for c in written):
            size = len(written.encode("utf-8", "surrogatepass"))  # surrogates: reported already
        else:
            return [f"it cannot be written as a file name in this system's encoding ({encoding})"]
    if size <= limit:
        return []
    sent = len(name.encode("utf-8", "surrogatepass"))
    as_sent = f"; {sent} in UTF-8 as sent, before NFC normalisation" if written != name else ""
    return [f"it is {size} bytes long as a file name ({encoding}, NFC{as_sent}), over the limit of {limit} "
            f"({MAX_NAME_BYTES} less room for a ' (2)' suffix when the name is taken)"]


def unsafe_reason(name: str | None) -> str | None:
    """The first reason ``name`` is not a safe file name, or None when it is."""
    if name is None:
        return "it is empty"
    errors, _ = check_attachment_name(name)
    return "; ".join(errors) if errors else None


def normalized(name: str) -> str:
    """The NFC form used on disk, so a name compares equal however it was composed."""
    return unicodedata.normalize("NFC", name)
