"""Folder delivery: one directory per inbound item, for DMSs that import from a folder.

Layout under the destination's ``path``::

    <document id>__<delivery id>/          e.g. 000.00.00.G22,2015_09_30,7816_VPCP-TTĐT__axis-42
        metadata.json                      document JSON + signature + axis_id + received_at
                                           + "delivery": {id, destination, attachments: [{content_id,
                                             name, file}], raw_file}
        <attachments, under safe names>    cong-van.pdf, phu-luc.docx ...
        message.edxml                      the raw signed envelope (keep_raw = true)
    status-03__<document id>__<delivery id>/   a status: metadata.json (+ message.edxml)

The directory is assembled under a hidden temporary name (``.partial-...``) inside ``path``
and renamed into place when complete, so a DMS that skips dot-names never sees half a
document; temporary folders a killed process left behind are removed once they are an hour
old (younger ones may belong to another instance still writing). A second delivery of the same ``delivery_id`` finds the directory (its
``metadata.json`` names the delivery) and returns it untouched. A name held by another
delivery gets a `` (2)`` suffix: nothing is ever overwritten.

Errors are retryable (a full disk, a share gone away, a folder the connector may not write):
they name the folder, or the attachment or evidence file that could not be read, and leave
nothing under a visible name. A full disk is chained to a
:class:`~connector.durable.DiskFull` naming the folder, so the engine waits for space rather
than counting the attempt.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path

from connector.durable import NO_SPACE_ERRNOS, DiskFull, fsync_dir
from connector.edxml.model import CHUNK

from .config import FolderDestinationConfig
from .delivery import Delivery, DeliveryError
from .naming import (
    METADATA_FILE,
    RAW_FILE,
    attachment_file_names,
    delivery_label,
    metadata_bytes,
)

__all__ = ["FolderDestination"]

PARTIAL_PREFIX = ".partial-"
STALE_PARTIAL_S = 3600.0


class _ReadError(Exception):
    """A source file (an attachment, the evidence) could not be opened or read."""

    def __init__(self, what: str, error: OSError):
        super().__init__(f"cannot read {what}: {error.strerror or error}")


class FolderDestination:
    """Delivers into one directory per item under ``config.path``."""

    def __init__(self, name: str, config: FolderDestinationConfig):
        self.name = name
        self.config = config
        self.root = Path(config.path)
        self._swept = False

    def deliver(self, delivery: Delivery) -> str:
        attachments = delivery.attachments
        for attachment in attachments:
            if attachment.data is None:
                raise self._error(f"attachment {attachment.name!r} has no content to write", retryable=False)
        self._ensure_root()
        base = delivery_label(delivery)
        try:
            existing = self._find(base, delivery.delivery_id)
        except OSError as exc:
            raise self._error(f"cannot list folder {self.root}: {exc.strerror or exc}", retryable=True) from None
        if existing is not None:
            return str(existing)
        reserved = (METADATA_FILE, RAW_FILE) if self.config.keep_raw else (METADATA_FILE,)
        names = attachment_file_names(attachments, reserved)
        temp = self.root / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
        try:
            temp.mkdir()
            for attachment, file_name in zip(attachments, names):
                what = f"attachment {attachment.name!r}"
                with _source(what, attachment.data.open) as src:  # type: ignore[union-attr]
                    _write(temp / file_name, src)
            raw_file = None
            if self.config.keep_raw:
                what = f"the raw message {delivery.raw_path}"
                with _source(what, lambda: open(delivery.raw_path, "rb")) as src:  # noqa: SIM115 - closed by the with
                    _write(temp / RAW_FILE, src)
                raw_file = RAW_FILE
            extra = {
                "id": delivery.delivery_id,
                "destination": self.name,
                "attachments": [
                    {"content_id": a.content_id, "name": a.name, "file": f} for a, f in zip(attachments, names)
                ],
                "raw_file": raw_file,
            }
            _write_bytes(temp / METADATA_FILE, metadata_bytes(delivery, extra))
            fsync_dir(temp)
            final = self._publish(temp, base, delivery.delivery_id)
        except _ReadError as exc:
            raise self._error(str(exc), retryable=True) from None
        except OSError as exc:
            raise self._error(f"cannot write into {self.root}: {exc.strerror or exc}", retryable=True) \
                from self._cause(exc)
        finally:
            if temp.exists():
                shutil.rmtree(temp, ignore_errors=True)  # our own unfinished temporary folder
        return str(final)

    def close(self) -> None:
        """Nothing to release."""

    # ------------------------------------------------------------------ internals

    def _error(self, message: str, *, retryable: bool) -> DeliveryError:
        return DeliveryError(message, destination=self.name, retryable=retryable)

    def _cause(self, exc: OSError) -> DiskFull | None:
        """What a write error is chained to: for a full disk, :class:`DiskFull` naming this
        destination's folder (the engine then waits for space instead of counting a failed
        attempt); otherwise nothing (the message says it all)."""
        return DiskFull(self.root, exc.errno) if exc.errno in NO_SPACE_ERRNOS else None

    def _ensure_root(self) -> None:
        if self.root.is_dir():
            if not self._swept:
                self._sweep_partials()
            return
        if not self.root.parent.is_dir():
            # Not created: a missing parent is often an unmounted share; writing under the
            # mount point would hide the documents from the DMS.
            raise self._error(
                f"folder {self.root} does not exist and neither does its parent (is the share mounted?)",
                retryable=True,
            )
        try:
            self.root.mkdir(exist_ok=True)
        except OSError as exc:
            raise self._error(f"cannot create folder {self.root}: {exc.strerror or exc}", retryable=True) \
                from self._cause(exc)

    def _sweep_partials(self, older_than: float = STALE_PARTIAL_S) -> None:
        """Remove unfinished temporary folders left by a killed process (never a delivered one)."""
        import time

        limit = time.time() - older_than
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return  # housekeeping only: tried again at the next delivery
        self._swept = True
        for entry in entries:
            if entry.name.startswith(PARTIAL_PREFIX) and entry.is_dir(follow_symlinks=False):
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < limit:
                        shutil.rmtree(entry.path, ignore_errors=True)
                except OSError:
                    continue

    def _candidates(self, base: str):
        yield self.root / base
        n = 2
        while True:
            yield self.root / f"{base} ({n})"
            n += 1

    def _find(self, base: str, delivery_id: str) -> Path | None:
        """The existing folder of this delivery, if any (``base`` or a suffixed ``base (n)``)."""
        prefix = base.casefold()
        for entry in os.scandir(self.root):
            folded = entry.name.casefold()
            ours = folded == prefix or (folded.startswith(prefix + " (") and folded.endswith(")"))
            if ours and _owner(Path(entry.path)) == delivery_id:
                return Path(entry.path)
        return None

    def _publish(self, temp: Path, base: str, delivery_id: str) -> Path:
        """Rename ``temp`` to the first free name. ``rename`` refuses a non-empty target and
        every delivered folder holds metadata.json, so no delivery can replace another."""
        for target in self._candidates(base):
            if target.exists() or target.is_symlink():
                if _owner(target) == delivery_id:
                    return target  # delivered meanwhile by a concurrent attempt
                continue
            try:
                os.rename(temp, target)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    if _owner(target) == delivery_id:
                        return target
                    continue
                raise
            fsync_dir(self.root)
            return target
        raise AssertionError("unreachable")


def _owner(folder: Path) -> str | None:
    """The delivery id recorded in ``folder/metadata.json``, or None."""
    try:
        with open(folder / METADATA_FILE, "rb") as fh:
            data = json.load(fh)
        return data.get("delivery", {}).get("id")
    except (OSError, ValueError, AttributeError):
        return None


class _source:  # noqa: N801 - used as a context manager, like open()
    """``opener()`` as a context manager whose open and read failures are :class:`_ReadError`
    naming ``what`` (a write failure stays an OSError about the destination)."""

    def __init__(self, what: str, opener):
        self._what, self._opener = what, opener

    def __enter__(self):
        try:
            self._fh = self._opener()
        except OSError as exc:
            raise _ReadError(self._what, exc) from None
        return self

    def read(self, size: int = -1) -> bytes:
        try:
            return self._fh.read(size)
        except OSError as exc:
            raise _ReadError(self._what, exc) from None

    def __exit__(self, *exc_info) -> None:
        self._fh.close()


def _write(path: Path, src) -> None:
    with open(path, "xb") as out:
        while block := src.read(CHUNK):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
