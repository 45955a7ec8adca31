"""Outbound: intake of documents and statuses from the DMS, then build, sign and send.

Steps, each committed before the next: queued (the document JSON and its files copied into
the staging folder: ``document.json`` or ``status.json`` at its top, the attachments in its
``files/`` sub-folder, so an attachment may have any name, ``document.json`` included) -> signed (the exact bytes stored as evidence) -> sent (the axis's id).
A retryable failure schedules the same step again with backoff; a permanent one, or too many
failures, makes the document dead with the reason; ``resend`` puts it back in the queue.
A full disk (staging, spool, evidence or database: :class:`~connector.durable.DiskFull`) is
neither: the document is given back unchanged, no attempt counted, and the round stops, so
the daemon logs one line naming the full folder; the step runs again in a later round.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..durable import DiskFull, as_disk_full, fsync_dir, write_synced, writing
from ..axis.errors import AxisError, DuplicateError, RetryableAxisError
from ..edxml.build import BuildError, build
from ..edxml.errors import EdxmlError
from ..edxml.files import ExtractError, document_from_json
from ..edxml.jsonform import JsonFormError, from_json, to_json
from ..edxml.model import STATUS_CODES, Edoc, ResponseFor, StaffInfo, Status, now_vn
from ..signing.keys import KeySourceError, KeyUnavailableError
from ..signing.sign import sign
from .context import EngineContext, GateClosed
from .events import ExchangeEvent



STAGED_FILES = "files"  # the staging folder's sub-folder holding the attachments


class IntakeError(ValueError):
    """A document or status handed in by the DMS cannot be accepted; ``problems`` says why."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class StatusRequest:
    """A business status the DMS reports on a document it received from ``to``."""

    document_id: str
    to: str
    status_code: str
    description: str | None = None
    staff: StaffInfo | None = None
    code: str | None = None  # the answered document's Number/Notation, when known


class Outbox:
    def __init__(self, ctx: EngineContext):
        self.ctx = ctx

    # ------------------------------------------------------------------ intake

    def submit(self, document: dict[str, Any], files: list[Path], *, intake_key: str | None = None) -> str:
        """Check and queue a document; returns its tracking id. The files are copied."""
        ctx = self.ctx
        if isinstance(document, dict) and document.get("kind", "edoc") != "edoc":
            raise IntakeError(["kind: the DMS submits documents (edoc); statuses go through the status feedback"])
        problems = [p for p in map(attachment_problem, files) if p]
        if problems:
            raise IntakeError(problems)
        try:
            message = document_from_json(document, files, ctx.settings.packaging)  # type: ignore[arg-type]
        except JsonFormError as exc:
            raise IntakeError(exc.messages) from None
        except ExtractError as exc:
            raise IntakeError([str(exc)]) from None
        assert isinstance(message, Edoc)
        sender = message.from_.organ_id
        if sender != ctx.agency_code:
            raise IntakeError([f"from.organ_id: this connector sends as {ctx.agency_code}, not {sender!r}"])
        recipients = [o.organ_id for o in message.to if o.organ_id]
        if not recipients:
            raise IntakeError(["to: at least one recipient agency code is needed"])
        unknown = self.unknown_recipients(recipients)
        if unknown:
            raise IntakeError([f"to: {code} is not in the axis's agency directory" for code in unknown])
        data = dict(document)
        data["document_id"] = message.document_id
        events = lambda out_id: [ExchangeEvent("out.queued", "out", message.document_id, out_id, detail={"to": recipients})]
        return self._stage_and_queue("edoc", data, files, sender, message.document_id, recipients, intake_key, events)

    def submit_status(self, request: StatusRequest, *, intake_key: str | None = None,
                      answering: ResponseFor | None = None) -> str:
        """Queue a status message about a document we received; returns its tracking id.
        ``answering``: the answered document's own reference, when the engine has it."""
        ctx = self.ctx
        if request.status_code not in STATUS_CODES:
            raise IntakeError([f"status_code: {request.status_code!r} is not one of {', '.join(STATUS_CODES)}"])
        if not request.document_id or not request.to:
            raise IntakeError(["document_id and to (the original sender's agency code) are required"])
        if request.status_code == "02" and not request.description:
            raise IntakeError(["description: a refusal (02) must say why"])
        answered = answering or ResponseFor(organ_id=request.to, code=request.code, document_id=request.document_id)
        status = Status(
            from_=ctx.settings.agency,
            response_for=[answered],
            staff_info=request.staff or ctx.settings.staff,
            status_code=request.status_code,
            description=request.description or STATUS_CODES[request.status_code],
            timestamp=now_vn(),
        )
        events = lambda out_id: [ExchangeEvent("in.status_queued", "in", request.document_id, out_id,
                                               detail={"status_code": request.status_code, "to": request.to})]
        return self._stage_and_queue("status", to_json(status), [], ctx.agency_code, request.document_id,
                                     [request.to], intake_key, events)

    def unknown_recipients(self, codes: list[str]) -> list[str]:
        if not self.ctx.settings.check_directory:
            return []
        directory = self.ctx.store.directory()
        if not directory:
            try:
                directory = refresh_directory(self.ctx)
            except AxisError as exc:
                self.ctx.doc_log(logging.WARNING, f"agency directory unavailable ({exc}); recipients checked at send time")
                return []
        return [c for c in codes if c not in directory]

    def _stage_and_queue(self, kind, data, files, sender, document_id, recipients, intake_key, events) -> str:
        outgoing = self.ctx.settings.outgoing_dir
        with writing(outgoing):  # a full disk names the staging folder, not a temporary file in it
            staging = Path(tempfile.mkdtemp(prefix="stage-", dir=_ensure(outgoing)))
        try:
            with writing(outgoing):
                if files:
                    attachments = staging / STAGED_FILES
                    attachments.mkdir()
                    for path in files:
                        shutil.copyfile(path, attachments / path.name)
                    fsync_dir(attachments)
                name = "document.json" if kind == "edoc" else "status.json"
                write_synced(staging / name, json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"))
                fsync_dir(staging)
            out_id, created = self.ctx.store.enqueue_outbound(
                kind=kind, sender=sender, document_id=document_id, recipients=recipients, staging=str(staging),
                intake_key=intake_key, events=events,
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not created:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            self.ctx.doc_log(logging.INFO, f"queued {kind} for {', '.join(recipients)}", document_id=document_id, tracking_id=out_id)
        return out_id

    # ------------------------------------------------------------------ sending

    def send_due(self, limit: int = 100) -> int:
        """Work through due outbound rows (at most ``limit``); returns how many were handled."""
        done = 0
        while done < limit:
            row = self.ctx.store.claim_outbound(self.ctx.settings.worker_id, self.ctx.settings.lease)
            if row is None:
                break
            try:
                self.send_one(row)
            except (GateClosed, DiskFull, KeyUnavailableError):
                raise  # not this document's fault: the round stops (send_one gave the row back)
            except Exception as exc:  # noqa: BLE001 - a bug must not strand the row: retry it later, loudly
                self.ctx.doc_log(logging.ERROR, f"internal error while sending: {exc!r}", document_id=row["document_id"],
                                 tracking_id=row["id"], exc_info=True)
                self._failed(row, f"internal error: {exc!r}", retryable=True)
            done += 1
        return done

    def send_one(self, row: dict[str, Any]) -> None:
        ctx, worker = self.ctx, self.ctx.settings.worker_id
        out_id, document_id = row["id"], row["document_id"]
        try:
            ctx.gate()
            message = self.load(row)
            sha = row["evidence_sha256"]
            if sha is None:
                sha = self._build(message)
                event = ExchangeEvent("out.signed" if row["kind"] == "edoc" else "out.built", "out", document_id, out_id, sha256=sha)
                if not ctx.store.update_outbound(out_id, worker, {"state": "signed", "evidence_sha256": sha}, [event]):
                    return
            try:
                axis_id = ctx.axis.send(message, edxml_path=ctx.evidence.path_for(sha))
                note = None
            except DuplicateError as exc:
                # Sent before a crash (or by another instance): the axis already holds it.
                axis_id, note = None, f"the axis already held this document ({exc})"
            sent = ExchangeEvent("out.sent", "out", document_id, out_id, axis_id=axis_id, sha256=sha,
                                 detail={"note": note} if note else None)
            ctx.store.update_outbound(
                out_id, worker,
                {"state": "sent", "axis_id": axis_id, "sent_at": time.time(), "claimed_by": None, "claimed_until": None,
                 "last_error": note},
                [sent], recipients_state="sent",
            )
            ctx.observer.sent(time.time() - row["created_at"])
            ctx.doc_log(logging.INFO, f"sent {row['kind']} (axis id {axis_id})", document_id=document_id, tracking_id=out_id, axis_id=axis_id)
        except DiskFull as exc:
            self.ctx.wait_and_stop("out", row, "disk space", exc)
        except RetryableAxisError as exc:
            self._failed(row, str(exc), retryable=True)
        except KeyUnavailableError as exc:
            ctx.observer.key_unavailable()
            self.ctx.wait_and_stop("out", row, "the signing key", exc)
        except (AxisError, EdxmlError, BuildError, ExtractError, JsonFormError, KeySourceError, OSError) as exc:
            full = as_disk_full(exc)
            if full is not None:
                self.ctx.wait_and_stop("out", row, "disk space", full)
            self._failed(row, f"{type(exc).__name__}: {exc}", retryable=False)
        except GateClosed as exc:
            ctx.store.update_outbound(out_id, worker, {"claimed_by": None, "claimed_until": None, "last_error": str(exc)})
            raise

    def load(self, row: dict[str, Any]):
        staging = Path(row["staging"])
        if row["kind"] == "status":
            return from_json(json.loads((staging / "status.json").read_text(encoding="utf-8")))
        data = json.loads((staging / "document.json").read_text(encoding="utf-8"))
        files = staged_files(staging)
        return document_from_json(data, files, self.ctx.settings.packaging)  # type: ignore[arg-type]

    def _build(self, message) -> str:
        ctx = self.ctx
        spool = ctx.settings.spool_dir
        with writing(spool):
            fd, tmp = tempfile.mkstemp(suffix=".edxml", dir=_ensure(spool))
        try:
            with writing(spool):
                with os.fdopen(fd, "wb") as out:
                    if isinstance(message, Edoc):
                        if ctx.key is None:
                            raise KeySourceError("signing", "no signing key is configured")
                        sign(message, ctx.key, out)
                        ctx.observer.signed()
                    else:
                        build(message, out)
            return ctx.evidence.put_file(tmp).sha256
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _failed(self, row: dict[str, Any], error: str, *, retryable: bool) -> None:
        ctx = self.ctx
        failures = row["attempts"] + 1
        age = time.time() - row["created_at"]
        ctx.observer.failed("out")
        if retryable and not ctx.settings.retry.exhausted(failures, age):
            delay = ctx.settings.retry.delay(failures)
            ctx.store.update_outbound(
                row["id"], ctx.settings.worker_id,
                {"state": "retrying", "attempts": failures, "next_attempt_at": time.time() + delay, "last_error": error,
                 "claimed_by": None, "claimed_until": None},
            )
            ctx.observer.retried("out")
            ctx.doc_log(logging.WARNING, f"send failed (attempt {failures}), retrying in {delay:.0f} s: {error}",
                        document_id=row["document_id"], tracking_id=row["id"])
            return
        why = error if not retryable else f"gave up after {failures} attempt(s) over {age / 60:.0f} min: {error}"
        dead = ExchangeEvent("out.dead", "out", row["document_id"], row["id"], detail={"reason": why})
        ctx.store.update_outbound(
            row["id"], ctx.settings.worker_id,
            {"state": "dead", "attempts": failures, "last_error": why, "claimed_by": None, "claimed_until": None}, [dead],
        )
        ctx.observer.dead("out")
        ctx.doc_log(logging.ERROR, f"dead: {why}", document_id=row["document_id"], tracking_id=row["id"])


def attachment_problem(path: Path) -> str | None:
    """Why the file ``path`` cannot be sent as an attachment, or None.

    Checked at intake because the axis refuses it later anyway (the hub refuses zero-byte
    parts): better a clear refusal to the DMS now than a dead document after queuing."""
    try:
        info = path.stat()
    except OSError as exc:
        return f"attachment file {str(path)!r}: cannot be read: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return f"attachment file {str(path)!r}: is not a regular file"
    if info.st_size == 0:
        return f"attachment file {str(path)!r}: is empty (0 bytes); the axis refuses empty attachments"
    return None


def staged_files(staging: Path) -> list[Path]:
    """The attachments staged for one outbound document.

    They live in ``files/`` so that no attachment name can collide with the staging folder's
    own ``document.json``. Documents staged by an earlier version (attachments beside
    ``document.json``) are still read: every top-level file but the JSON, as before."""
    folder = staging / STAGED_FILES
    if folder.is_dir():
        return sorted(folder.iterdir())
    return sorted(p for p in staging.iterdir() if p.is_file() and p.name not in ("document.json", "status.json"))


def response_for(doc: Edoc) -> ResponseFor:
    """How a status names the document it answers."""
    return ResponseFor(
        organ_id=doc.from_.organ_id,
        code="/".join(x for x in (doc.code.number, doc.code.notation) if x) or None,
        promulgation_date=doc.promulgation.date,
        document_id=doc.document_id,
    )


def refresh_directory(ctx: EngineContext) -> dict[str, str | None]:
    """Reload the agency directory from the axis into the store."""
    agencies = ctx.axis.directory()
    ctx.store.replace_directory([(a.code, a.name, a.parent) for a in agencies if a.code])
    return ctx.store.directory()


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
