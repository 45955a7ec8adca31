"""Documents to and from folders of real files: JSON + attachments in, metadata + files out.

Writes go only inside the folder given, under names checked by :mod:`.names`, through a
temporary name and a rename, never over an existing file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from .build import format_date
from .jsonform import from_json, to_json
from .model import CHUNK, Attachment, Edoc, FileData, Message, Packaging
from .names import MAX_NAME_BYTES, METADATA_NAME, normalized, unsafe_reason
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
    """Write every attachment and ``metadata.json`` into ``directory``; return the paths.

    Refuses (before writing anything) an attachment whose name is not a safe file name, or
    that has no content. Names already taken get a `` (2)`` suffix: nothing is overwritten.
    ``metadata.json`` is the metadata's own name, so an attachment of that name is saved
    under another; an attachment saved under a name other than its own is listed in the
    metadata's ``saved_as`` (``content_id``, ``name``, ``file``). On any failure every file
    written so far, and any folder created, is removed again: no partial folder is left.
    """
    attachments = message.attachments if isinstance(message, Edoc) else []
    for attachment in attachments:
        reason = unsafe_reason(attachment.name)
        if reason:
            raise ExtractError(f"attachment {attachment.name!r} not written: {reason}")
        if attachment.data is None:
            raise ExtractError(
                f"attachment {attachment.name!r} (ContentId {attachment.content_id!r}) has no content "
                "(no ContentTransferEncoded element)"
            )
    created = make_folder(directory)
    written: list[Path] = []
    try:
        root = directory.resolve()
        taken = {normalized(p.name).casefold() for p in root.iterdir()}
        metadata = _free_name(root, METADATA_NAME, taken)
        targets = [_free_name(root, normalized(a.name), taken) for a in attachments]
        for attachment, target in zip(attachments, targets):
            with attachment.data.open() as src:  # type: ignore[union-attr]
                _write_atomically(target, lambda fh: shutil.copyfileobj(src, fh, CHUNK))
            written.append(target)
        payload = _metadata(message, attachments, targets).encode("utf-8")
        _write_atomically(metadata, lambda fh: fh.write(payload))
        written.append(metadata)
    except BaseException:
        _undo(written, created)
        raise
    return written


def make_folder(directory: Path) -> list[Path]:
    """Create ``directory`` (and missing parents); return the folders created, deepest first.

    Why: a command that fails after creating an output folder removes what it created
    (:func:`remove_folders`), so a failed run leaves the tree as it found it."""
    missing = []
    path = directory.absolute()
    while not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except BaseException:
        remove_folders(missing)
        raise
    return missing


def remove_folders(created: list[Path]) -> None:
    """Remove folders :func:`make_folder` created, deepest first, while they are empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def _undo(written: list[Path], created: list[Path]) -> None:
    """Remove the files an extraction wrote and the folders it created (best effort)."""
    for path in written:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    remove_folders(created)


def _metadata(message: Message, attachments: list[Attachment], targets: list[Path]) -> str:
    """The document JSON, plus ``saved_as`` when a file was saved under another name."""
    data = to_json(message)
    renamed = [
        {"content_id": a.content_id, "name": a.name, "file": t.name}
        for a, t in zip(attachments, targets)
        if t.name != a.name
    ]
    if renamed:
        data["saved_as"] = renamed
    return json.dumps(data, ensure_ascii=False, indent=2)


def _free_name(root: Path, name: str, taken: set[str]) -> Path:
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    candidate, n = name, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}){dot}{ext}"
    if len(os.fsencode(candidate)) > MAX_NAME_BYTES:
        raise ExtractError(f"{name!r} is taken in {root}, and {candidate!r} is too long a file name")
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
