"""Durable writes on local disk: flushed file contents and directory entries.

A rename is only as durable as the directory that holds it: after creating or renaming an
entry, :func:`fsync_dir` makes the change survive a power cut. Shared by every room that
writes files the exchange depends on (evidence, staging, deliveries, archives).

A full disk is weather, not a verdict on a document: :class:`DiskFull` (an ``OSError``
naming the folder on the full disk) tells the engine to wait and try the step again later.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: str | Path) -> None:
    """Flush a directory's entries to disk (best effort where the platform cannot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_synced(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk before returning."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------------------------- a full disk

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""``errno`` values meaning "no space left" (the disk, or the user's quota, is full)."""


class DiskFull(OSError):
    """A write failed because the disk (or quota) holding ``filename`` is full.

    Not the document's fault: the step is tried again in a later round, without counting an
    attempt against the document, and the round stops at once (one line in the log naming
    ``filename`` and "No space left on device", never a traceback)."""

    def __init__(self, where: str | Path | None, code: int = errno.ENOSPC):
        super().__init__(code, os.strerror(code), None if where is None else str(where))


def no_space(exc: BaseException | None) -> OSError | None:
    """The "no space left" error ``exc`` is, or comes from (its chain as a traceback shows it:
    the cause, or the context unless ``from None`` cut it; a few levels deep), or None."""
    for _ in range(8):
        if exc is None:
            return None
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return exc
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)
    return None


def as_disk_full(exc: BaseException) -> DiskFull | None:
    """``exc`` as a :class:`DiskFull` when a full disk caused it, else None."""
    found = no_space(exc)
    if found is None or isinstance(found, DiskFull):
        return found
    return DiskFull(found.filename, found.errno)


@contextmanager
def writing(where: str | Path) -> Iterator[None]:
    """Name the folder ``where`` when a write in the block fails for lack of space: the error
    becomes :class:`DiskFull` about ``where`` (the temporary file that could not be written
    means nothing to the operator; the folder on the full disk does)."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(where, exc.errno) from exc
        raise
