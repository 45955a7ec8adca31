"""Local disk under the axis bindings: where received data spills, and naming a full disk.

Both bindings write what they receive to local disk (multipart parts and decoded attachments
spooled under ``spool_dir``, a fetched edXML into the caller's destination, a built edXML
before it is sent). A write that fails there for lack of space is the local disk's weather,
not the network's or the peer's: it is raised as :class:`~connector.durable.DiskFull` naming
the folder (or file) on the full disk, never as a :class:`RetryableAxisError` (which would
count an attempt against the item and end with it given up).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

from ..durable import writing


def spool_folder(spool_dir: str | Path | None) -> Path:
    """The folder received data spills into: ``spool_dir``, or the system's temporary folder
    (where :mod:`tempfile` puts files when no folder is given)."""
    return Path(spool_dir) if spool_dir is not None else Path(tempfile.gettempdir())


def spooling(spool_dir: str | Path | None) -> AbstractContextManager[None]:
    """:func:`~connector.durable.writing` about the spool folder: a full disk while spooling
    is :class:`~connector.durable.DiskFull` naming that folder."""
    return writing(spool_folder(spool_dir))


@contextmanager
def saving_to(dest: BinaryIO) -> Iterator[None]:
    """Writes into the caller's ``dest`` meeting a full disk name ``dest``'s file when it has a
    path; a stream without one (a temporary file, a pipe) leaves the raw ``OSError`` for the
    caller, who knows which folder it is in (a :class:`DiskFull` without a name would hide it)."""
    name = getattr(dest, "name", None)
    if isinstance(name, (str, bytes, os.PathLike)):
        with writing(os.fsdecode(name)):
            yield
    else:
        yield

