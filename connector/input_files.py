"""The one click type for files a command reads (the CLI's and the audit room's commands).

Why: ``click.Path(exists=True, dir_okay=False)`` accepts a FIFO, a socket or a device, and
reading one blocks forever (a FIFO with no writer) or never ends (``/dev/zero``). An input
the connector reads is a regular file (a symbolic link to one is fine); anything else is a
usage error that names the path and what it is.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import click

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular_reason(path: Path) -> str | None:
    """Why ``path`` (followed if a symbolic link) is a FIFO, socket or device, or None when it
    is a regular file or folder or cannot be examined (the reader then reports the system's
    reason)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):  # a folder is the caller's to refuse
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"{kind}, not a regular file; the connector reads regular files only"


class InputFile(click.Path):
    """An existing, readable regular file (or a symbolic link to one), as a :class:`Path`;
    with ``dir_okay``, a folder too (a bundle given as its ZIP or its extracted folder)."""

    def __init__(self, *, dir_okay: bool = False) -> None:
        super().__init__(exists=True, dir_okay=dir_okay, readable=True, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        reason = None if Path(path).is_dir() else not_regular_reason(Path(path))
        if reason:
            self.fail(f"{click.format_filename(path)!r} is {reason}.", param, ctx)
        return path
