"""Documents to and from folders of real files: JSON + attachments in, metadata + files out.

Writes go only inside the folder given, under names checked by :mod:`.names`, through a
temporary name and a rename, never over an existing file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from .build import format_date
from .jsonform import dumps, from_json
from .model import CHUNK, Attachment, Edoc, FileData, Message, Packaging
from .names import normalized, unsafe_reason
from .parse import guess_type


class ExtractError(ValueError):
    """A document cannot be written to, or assembled from, files as asked."""


def document_from_json(data: dict, files: list[Path], packaging: Packaging = "zip") -> Message:
    """The message described by ``data`` with ``files`` attached.

    Attachments the JSON lists are matched to files by name (and checked against any size
    and SHA-256 the JSON gives); files the JSON does not list are added. A missing
    ``document_id`` gets the VNPT form ``OrganId,yyyy/MM/dd,Number/Notation``.
    """
    message = from_json(data)
    if not isinstance(message, Edoc):
        if files:
            raise ExtractError("a status message carries no attachments")
        return message
    by_name = {}
    for path in files:
        reason = unsafe_reason(path.name)
        if reason:
            raise ExtractError(f"attachment file {path.name!r} cannot be sent: {reason}")
        if path.name in by_name:
            raise ExtractError(f"two attachment files are named {path.name!r}")
        by_name[path.name] = path
    attachments = []
    for listed in message.attachments:
        path = by_name.pop(listed.name, None)
        if path is None:
            raise ExtractError(f"attachment {listed.name!r} is listed in the JSON but no --attach file has that name")
        attachments.append(_with_file(listed, path))
    used = {a.content_id for a in attachments}
    for path in by_name.values():
        attachments.append(_new_attachment(path, packaging, used))
    message.attachments = attachments
    if not message.manifest or len(message.manifest) != len(attachments):
        message.with_manifest()
    if not message.document_id:
        message.document_id = default_document_id(message)
    return message


def _with_file(listed: Attachment, path: Path) -> Attachment:
    data = FileData(path)
    if listed.sha256 and listed.sha256 != data.sha256:
        raise ExtractError(
            f"attachment {listed.name!r}: the JSON gives SHA-256 {listed.sha256}, the file {path} has {data.sha256}"
        )
    listed.data = data
    listed.size, listed.sha256 = data.size, data.sha256
    return listed


def _new_attachment(path: Path, packaging: Packaging, used: set[str]) -> Attachment:
    content_id = uuid.uuid4().hex
    used.add(content_id)
    return Attachment(
        content_id=content_id,
        name=path.name,
        content_type=guess_type(path.name),
        description=path.name,
        packaging=packaging,
        data=FileData(path),
    )


def default_document_id(doc: Edoc) -> str:
    """``OrganId,yyyy/MM/dd,Number/Notation`` as the VNPT builder forms it, else a UUID."""
    organ, when = doc.from_.organ_id, doc.promulgation.date
    number, notation = doc.code.number, doc.code.notation
    if organ and when and number and notation:
        return f"{organ},{format_date(when)},{number}/{notation}"
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- extract


def extract_to(message: Message, directory: Path) -> list[Path]:
    """Write ``metadata.json`` and every attachment into ``directory``; return the paths.

    Refuses (before writing anything) an attachment whose name is not a safe file name.
    Names already taken get a `` (2)`` suffix: nothing is overwritten.
    """
    attachments = message.attachments if isinstance(message, Edoc) else []
    for attachment in attachments:
        reason = unsafe_reason(attachment.name)
        if reason:
            raise ExtractError(f"attachment {attachment.name!r} not written: {reason}")
        if attachment.data is None:
            raise ExtractError(f"attachment {attachment.name!r} has no content")
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    written = []
    taken = {p.name.casefold() for p in root.iterdir()}
    for attachment in attachments:
        target = _free_name(root, normalized(attachment.name), taken)
        with attachment.data.open() as src:
            _write_atomically(target, lambda fh: shutil.copyfileobj(src, fh, CHUNK))
        written.append(target)
    metadata = _free_name(root, "metadata.json", taken)
    payload = dumps(message).encode("utf-8")
    _write_atomically(metadata, lambda fh: fh.write(payload))
    written.append(metadata)
    return written


def _free_name(root: Path, name: str, taken: set[str]) -> Path:
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}){dot}{ext}"
    taken.add(candidate.casefold())
    target = (root / candidate).resolve()
    if target.parent != root:
        raise ExtractError(f"refusing to write {candidate!r} outside {root}")
    return target


def _write_atomically(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)  # fails if the name was taken meanwhile: never overwrite
        except FileExistsError:
            raise ExtractError(f"{target} appeared while writing; not overwritten") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


__all__ = ["ExtractError", "document_from_json", "extract_to", "default_document_id"]
