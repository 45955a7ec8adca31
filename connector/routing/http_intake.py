"""The local HTTP intake API: the DMS posts documents and status reports, and tracks them.

Served with :class:`connector.httpserver.WsgiServer` (loopback by default). Every route
needs ``Authorization: Bearer <token>`` (compared in constant time); otherwise 401.

``POST /documents``  ``multipart/form-data``: a ``metadata`` part (the document JSON,
    schemas/document.schema.json; attachment entries may leave out content_id, content_type,
    size and sha256) and one part per file (any field name, ``filename`` = the attachment's
    name; any other field without a filename is a 422). Files are streamed into a folder of
    their own under ``spool_dir``; they are checked as a folder drop is (:mod:`.intake_checks`),
    then ``submit(document, files)`` is called.
    202 ``{"tracking_id": ...}`` (and ``Location``); 422 ``{"error", "problems": [...]}`` for
    bad input; 400 for a malformed body or Content-Length, 411 without one, 413 over a size
    limit, 415 when it is not form-data. The request's spool folder is removed when the request
    ends: ``submit`` copies or moves what it keeps.
``GET /documents/<tracking id>``  200 with ``track(id)`` as JSON, 404 when it returns None.
``POST /statuses``  a JSON status report (:mod:`.status_report`); 202 ``{"tracking_id": ...}``
    from ``report_status(report)``, 422 with the problems.

The connector's own storage failing is not the DMS's fault and not a bug: a spool folder that
is full (``ENOSPC``/``EDQUOT``), missing or cannot be written, and a full disk under the
engine (``submit`` or ``report_status`` raising :class:`~connector.durable.DiskFull`: its
database, staging or spool folder) are answered ``503`` with ``Retry-After: 30`` and a
one-line ``{"error"}`` naming the condition (never a server path), so the DMS tries again
later. The log gets one line naming the folder, no traceback; the request's partial files
are removed. So is the connector being unavailable for another reason of its own (its
database unreachable or locked, exchanges stopped by the audit log failing closed): a callback
raising :class:`IntakeUnavailable` is answered ``503`` with ``Retry-After`` and the exception's
``reason``, and logged in one line with its ``detail``. (This room knows neither the store nor
the engine: the daemon's callbacks turn their errors into :class:`IntakeUnavailable`.)

Any other exception from a callback is logged and answered 500 with a one-line message, never
a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from connector.durable import NO_SPACE_ERRNOS, as_disk_full
from connector.edxml.names import normalized, unsafe_reason
from connector.multipart import MultipartError

from .formdata import FormLimits, parse_form
from .intake_checks import (
    MAX_METADATA_BYTES,
    DocumentCheck,
    IntakeRejected,
    check_drop,
    parse_json,
)
from .status_report import StatusReport, parse_status_report

__all__ = ["IntakeRejected", "IntakeUnavailable", "StatusReport", "intake_app"]

log = logging.getLogger("connector.routing.http_intake")

MAX_STATUS_BYTES = 1024**2
RETRY_AFTER_S = 30
"""What a 503 for a full or unusable spool folder or disk, or another unavailability of the
connector's own (:class:`IntakeUnavailable`), asks the DMS to wait (seconds)."""
_REASONS = {
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 500: "Internal Server Error",
    503: "Service Unavailable",
}

Submit = Callable[[dict, list[Path]], str]
Track = Callable[[str], "dict | None"]
ReportStatus = Callable[[StatusReport], str]


class IntakeUnavailable(Exception):
    """Raised by ``submit``, ``track`` or ``report_status`` when the connector cannot take the
    request for now, for a reason on its own side (not the DMS's fault, not a bug): answered
    ``503`` with ``Retry-After``. ``reason`` is shown to the DMS (one line, no server path, no
    SQL); ``detail`` goes to the operator's log line (defaults to ``reason``)."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = _one_line(reason)
        self.detail = _one_line(detail or reason)


def _one_line(text: str) -> str:
    """``text``'s non-blank lines joined with "; " (a log line or an error stays one line)."""
    return "; ".join(line.strip().rstrip(";") for line in text.splitlines() if line.strip())


class _Answer(Exception):
    """An early answer (an error status) from anywhere in a handler."""

    def __init__(self, status: int, error: str, problems: list[str] | None = None, headers: list | None = None):
        self.status, self.error, self.problems, self.headers = status, error, problems, headers or []


def intake_app(
    submit: Submit,
    track: Track,
    report_status: ReportStatus,
    token: str,
    *,
    spool_dir: str | Path,
    max_body_bytes: int = 2 * 1024**3,
    max_file_bytes: int = 1024**3,
    check: DocumentCheck | None = None,
) -> Callable:
    """The WSGI app of the intake API (see the module docstring)."""
    if not token or not token.strip():
        raise ValueError("the intake API needs a non-empty token")
    expected = token.strip().encode("utf-8")
    spool = Path(spool_dir)
    spool.mkdir(parents=True, exist_ok=True)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            _authorize(environ, expected)
            method = environ.get("REQUEST_METHOD", "GET").upper()
            path = environ.get("PATH_INFO", "") or "/"
            if path.rstrip("/") == "/documents":
                _allow(method, "POST")
                status, body, headers = _post_document(environ, submit, spool, max_body_bytes, max_file_bytes, check)
            elif path.startswith("/documents/") and len(path) > len("/documents/"):
                _allow(method, "GET")
                tracking_id = path[len("/documents/"):]
                found = track(tracking_id)
                if found is None:
                    raise _Answer(404, f"no document has the tracking id {tracking_id!r}")
                status, body, headers = 200, found, []
            elif path.rstrip("/") == "/statuses":
                _allow(method, "POST")
                status, body, headers = _post_status(environ, report_status)
            else:
                raise _Answer(404, f"no such resource {path!r} (routes: POST /documents, GET /documents/<id>, POST /statuses)")
        except IntakeUnavailable as exc:
            answer = _unavailable(environ, exc.reason, exc.detail)
            status, headers, body = answer.status, answer.headers, {"error": answer.error}
        except _Answer as answer:
            status, headers = answer.status, answer.headers
            body = {"error": answer.error}
            if answer.problems is not None:
                body["problems"] = answer.problems
        except Exception as exc:
            full = as_disk_full(exc)
            if full is None:
                log.exception("intake API: %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
                status, headers = 500, []
                body = {"error": "internal error in the connector; the operator finds the detail in its log"}
            else:
                answer = _disk_full(environ, full)
                status, headers, body = answer.status, answer.headers, {"error": answer.error}
        data = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
        start_response(
            f"{status} {_REASONS.get(status, '')}".strip(),
            [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data))), *headers],
        )
        return [data]

    return app


def _authorize(environ: dict, expected: bytes) -> None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    # PEP 3333: header values arrive decoded as ISO-8859-1; encoding back gives the bytes sent.
    given = value.strip().encode("latin-1", "replace")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
        raise _Answer(401, "missing or wrong bearer token", headers=[("WWW-Authenticate", 'Bearer realm="edoc-connector intake"')])


def _unavailable(environ: dict, error: str, logged: str) -> _Answer:
    """A 503 with ``Retry-After`` for trouble on the connector's side (storage, database,
    exchanges stopped), after one log line (``logged``: names the folder or the cause, for the
    operator; ``error`` does not, for the DMS)."""
    log.error("intake API: %s %s answered 503: %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), logged)
    return _Answer(503, f"{error}; try again later", headers=[("Retry-After", str(RETRY_AFTER_S))])


def _disk_full(environ: dict, exc: OSError) -> _Answer:
    """The answer to a full disk under the engine (a :class:`~connector.durable.DiskFull`
    from ``submit`` or ``report_status``): the connector cannot queue anything for now."""
    where = f": {exc.filename}" if exc.filename is not None else ""
    return _unavailable(environ, "the connector's storage is full", f"{exc.strerror or exc}{where}")


def _spool_trouble(environ: dict, spool: Path, exc: OSError) -> _Answer:
    """The answer when the request's files cannot be written into the spool folder: full
    (``ENOSPC``/``EDQUOT``), gone, read-only or not writable."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in NO_SPACE_ERRNOS:
        return _unavailable(environ, "the connector's spool folder is full",
                            f"the spool folder {spool} is full ({reason})")
    return _unavailable(environ, "the connector cannot write to its spool folder",
                        f"cannot write to the spool folder {spool} ({reason})")


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise _Answer(405, f"method {method} not allowed here; use {allowed}", headers=[("Allow", allowed)])


def _body_stream(environ: dict, limit: int) -> BinaryIO:
    """The request body, bounded by Content-Length (or de-chunked by the server)."""
    stream = environ["wsgi.input"]
    if environ.get("connector.chunked"):
        return _Bounded(stream, None, limit)
    length = environ.get("CONTENT_LENGTH") or ""
    if not length.strip():
        raise _Answer(411, "a Content-Length (or a chunked body) is required")
    if not length.strip().isascii() or not length.strip().isdigit():  # int() would take "-5", "+5", "1_0"
        raise _Answer(400, f"Content-Length {length!r} is not a number")
    size = int(length)
    if size > limit:
        raise _Answer(413, f"the body is {size} bytes, over the limit of {limit}")
    return _Bounded(stream, size, limit)


class _Bounded:
    """Reads at most ``size`` bytes (never past the request), refusing more than ``limit``."""

    def __init__(self, stream: BinaryIO, size: int | None, limit: int):
        self.stream, self.left, self.limit, self.total = stream, size, limit, 0

    def read(self, n: int = -1) -> bytes:
        if self.left is not None:
            if self.left <= 0:
                return b""
            n = self.left if n < 0 else min(n, self.left)
        try:
            data = self.stream.read(n)
        except ValueError:  # the server's de-chunker: a chunk size that is not hexadecimal
            if self.left is not None:
                raise
            raise _Answer(400, "the chunked body is malformed: a chunk size line is not a hexadecimal number") from None
        except OSError:  # the client stopped sending (or reset the connection) mid-body
            raise _Answer(400, "the chunked body ends early (the client stopped sending)" if self.left is None
                          else "the connection was lost while reading the body") from None
        self.total += len(data)
        if self.left is not None:
            self.left -= len(data)
        if self.total > self.limit:
            raise _Answer(413, f"the body is over the limit of {self.limit} bytes")
        return data


def _post_document(environ: dict, submit: Submit, spool: Path, max_body: int, max_file: int,
                   check: DocumentCheck | None) -> tuple[int, Any, list]:
    stream = _body_stream(environ, max_body)
    folder = spool / uuid.uuid4().hex
    try:
        folder.mkdir()
    except OSError as exc:  # the spool folder is gone, read-only, not writable or full
        raise _spool_trouble(environ, spool, exc) from None
    try:
        problems: list[str] = []
        taken: set[str] = set()

        def file_path(index: int, filename: str) -> Path | None:
            reason = unsafe_reason(filename)
            key = normalized(filename).casefold()
            if reason:
                problems.append(f"file part {index} {filename!r}: not a safe file name: {reason}")
            elif key in taken:
                problems.append(f"file part {index} {filename!r}: two file parts have this name")
            else:
                taken.add(key)
                return folder / normalized(filename)
            return None  # read and discarded: no placeholder file that a client's name could collide with

        limits = FormLimits(max_field_bytes=MAX_METADATA_BYTES, max_file_bytes=max_file, max_total=max_body,
                            max_fields_total=MAX_METADATA_BYTES)  # only "metadata" is used; fields are kept in memory
        try:
            form = parse_form(stream, environ.get("CONTENT_TYPE", ""), folder, limits=limits, file_path=file_path)
        except MultipartError as exc:
            raise _Answer(exc.status, f"cannot read the multipart body: {exc}") from None
        except OSError as exc:  # reading the body fails as an _Answer: this is writing a file into the spool
            raise _spool_trouble(environ, spool, exc) from None
        problems += [f"field {name!r}: unexpected form field; send the document JSON as the field \"metadata\" and each "
                     "file as a part with a filename" for name in form.fields if name != "metadata"]
        metadata = form.fields.get("metadata", [])
        if len(metadata) != 1:
            as_files = [f"part {f.index} named \"metadata\" is a file {f.filename!r}; send it as a plain field, without a "
                        "filename" for f in form.files if f.field == "metadata"]
            hint = f" ({'; '.join(as_files)})" if as_files else ""
            problems.insert(0, "metadata: expected exactly one form field named \"metadata\" holding the document JSON"
                               f", got {len(metadata)}{hint}")
            raise _Answer(422, "the document was not accepted", problems)
        try:
            document = parse_json(metadata[0], "metadata")
            if problems:
                raise IntakeRejected(problems)
            checked = check_drop(document, folder, source="metadata", max_file_bytes=max_file, check=check,
                                 where="among the uploaded files")
            tracking_id = submit(checked.document, checked.files)
        except IntakeRejected as exc:
            raise _Answer(422, "the document was not accepted", problems + [p for p in exc.problems if p not in problems]) from None
        return 202, {"tracking_id": tracking_id, "url": f"/documents/{tracking_id}"}, [("Location", f"/documents/{tracking_id}")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _post_status(environ: dict, report_status: ReportStatus) -> tuple[int, Any, list]:
    stream = _body_stream(environ, MAX_STATUS_BYTES)
    data = stream.read(MAX_STATUS_BYTES + 1)
    if len(data) > MAX_STATUS_BYTES:
        raise _Answer(413, f"a status report is a small JSON object; the body is over {MAX_STATUS_BYTES} bytes")
    try:
        report = parse_status_report(parse_json(data, "body"), source="body")
        tracking_id = report_status(report)
    except IntakeRejected as exc:
        raise _Answer(422, "the status report was not accepted", exc.problems) from None
    return 202, {"tracking_id": tracking_id}, []
