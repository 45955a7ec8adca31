"""Durable writes on local disk: flushed file contents and directory entries.

A rename is only as durable as the directory that holds it: after creating or renaming an
entry, :func:`fsync_dir` makes the change survive a power cut. Shared by every room that
writes files the exchange depends on (evidence, staging, deliveries, archives).
"""

from __future__ import annotations

import os
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
