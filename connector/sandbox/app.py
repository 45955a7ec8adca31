"""The sandbox's WSGI app: routing, fault injection, admin endpoint, and the shared axis core.

Routes:

- ``POST /soap`` the provincial hub's SOAP binding (:mod:`.hub_app`); ``GET /soap?wsdl`` its WSDL
  (``schemas/edoc-hub.wsdl``, with the service address rewritten to this server);
- ``/vxp/<operation>`` the national axis's VXP binding (:mod:`.vxp_app`);
- ``GET|POST /admin/faults`` the fault settings as JSON (``Authorization: Bearer <admin token>``
  or ``X-Admin-Token``); POST takes a partial change, see :meth:`.faults.Faults.update`;
- ``GET /healthz`` liveness and counts (no auth, no faults).

:class:`Core` holds what both bindings share: accepting a document or a status (stored before
anyone answers), addressing it to recipients, acknowledging, and recording the status 01 an
acknowledgement sends back to the sender. So a document sent on one binding is pending on
both, and a status sent on either is readable on either.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable
from urllib.parse import parse_qsl

from connector.edxml.build import build
from connector.edxml.model import Organization, ResponseFor, StaffInfo, Status, now_vn

from .faults import Decision, DropConnection, Faults, FaultSettings
from .store import Agency, DocumentRow, DuplicateDocument, Spool, Store, setup_agencies

log = logging.getLogger("connector.sandbox")

ROOT = Path(__file__).resolve().parents[2]
WSDL_CANDIDATES = (ROOT / "schemas" / "edoc-hub.wsdl", ROOT / "connector" / "axis" / "schemas" / "edoc-hub.wsdl")
MAX_BODY = 2 * 1024**3
CHUNK = 1 << 16

Response = tuple[str, list[tuple[str, str]], Iterable[bytes]]


# --------------------------------------------------------------------------- requests


class BodyTooLarge(Exception):
    pass


@dataclass
class Request:
    """The parts of a WSGI request the handlers use."""

    environ: dict
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]

    @classmethod
    def from_environ(cls, environ: dict) -> "Request":
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]
        return cls(
            environ,
            environ.get("REQUEST_METHOD", "GET").upper(),
            environ.get("PATH_INFO", "") or "/",
            parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True),
            headers,
        )

    def arg(self, name: str) -> str | None:
        for key, value in self.query:
            if key.lower() == name.lower():
                return value
        return None

    def body_stream(self) -> BinaryIO:
        """``wsgi.input`` bounded to the request's length (chunked bodies: to their end)."""
        raw = self.environ["wsgi.input"]
        length = self.headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = 0
            if size > MAX_BODY:
                raise BodyTooLarge(f"body of {size} bytes is over {MAX_BODY}")
            return _Bounded(raw, max(size, 0))
        if self.environ.get("connector.chunked"):
            return _Bounded(raw, MAX_BODY + 1)
        return _Bounded(raw, 0)

    def spool_body(self, store: Store) -> Spool:
        """Stream the body to a file under the store's tmp directory, in chunks."""
        spool = store.spool()
        try:
            stream = self.body_stream()
            while chunk := stream.read(CHUNK):
                spool.write(chunk)
                if spool.size > MAX_BODY:
                    raise BodyTooLarge(f"body over {MAX_BODY} bytes")
            spool.finish()
        except BaseException:
            spool.discard()
            raise
        return spool

    def small_body(self, limit: int = 1 << 20) -> bytes:
        stream = self.body_stream()
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise BodyTooLarge(f"body over {limit} bytes")
        return data


class _Bounded:
    def __init__(self, raw, limit: int):
        self.raw, self.left = raw, limit

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.raw.read(size)
        self.left -= len(data)
        if not data:
            self.left = 0
        return data


def json_response(status: str, data: object, extra: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return status, [("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(body))), *(extra or [])], [body]


def bytes_response(status: str, body: bytes, content_type: str) -> Response:
    return status, [("Content-Type", content_type), ("Content-Length", str(len(body)))], [body]


# --------------------------------------------------------------------------- core


class Refused(Exception):
    """A binding-neutral refusal; each binding renders it in its own form."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind, self.text = kind, text


class Core:
    """What the hub and the axis share: one store, one set of pending lists and statuses."""

    def __init__(self, store: Store, faults: Faults | None = None):
        self.store = store
        self.faults = faults or Faults()

    # documents -----------------------------------------------------------

    def accept_edoc(
        self, spool: Spool, *, sender: str, recipients: list[str], sender_doc_id: str | None, binding: str, meta: dict
    ) -> int:
        """Keep the edXML file in ``spool`` and make it pending for each recipient."""
        if not recipients:
            raise Refused("no-recipient", "the document has no recipient")
        if len(set(recipients)) != len(recipients):
            raise Refused("duplicate-recipient", "a recipient appears twice")
        unknown = [r for r in recipients if self.store.agency(r) is None]
        if unknown:
            raise Refused("unknown-recipient", f"recipient(s) not in the directory: {', '.join(unknown)}")
        if sender_doc_id and self.store.find_edoc(sender, sender_doc_id) is not None:
            raise Refused("duplicate", f"document {sender_doc_id!r} from {sender} is already stored")
        self.store.keep(spool)
        try:
            doc_id = self.store.add_document(
                kind="edoc",
                sender=sender,
                recipients=recipients,
                sha256=spool.sha256,
                size=spool.size,
                binding=binding,
                sender_doc_id=sender_doc_id,
                meta=meta,
            )
        except DuplicateDocument as exc:  # lost a race with the same document: the unique index decides
            raise Refused("duplicate", str(exc)) from None
        if binding == "hub":
            for recipient in recipients:
                if self.faults.forward_fails(recipient):
                    self._forwarding_failed(doc_id, recipient)
        return doc_id

    def _forwarding_failed(self, doc_id: int, organ_id: str) -> None:
        """The hub could not forward ``doc_id`` to ``organ_id`` over the national axis: the
        recipient never sees it, and the sender reads status 999 ("Gui that bai") about that
        recipient, as the real hub records it when VXP ``sendEdoc`` fails."""
        agency = self.store.agency(organ_id)
        self.store.acknowledge(doc_id, organ_id, "forward-failed")
        self._record_status(doc_id, agency, "999", "Gui that bai", binding="hub")

    def accept_status(self, spool: Spool, status: Status, *, sender: str, binding: str, dedupe: bool) -> int:
        """Keep a status message; it becomes pending (unread) for the original sender."""
        if not status.response_for or not status.response_for[0].organ_id:
            raise Refused("invalid", "the status has no ResponseFor/OrganId")
        rf = status.response_for[0]
        target = rf.organ_id
        if self.store.agency(target) is None:
            raise Refused("unknown-recipient", f"the original sender {target} is not in the directory")
        key = "|".join([sender, target or "", rf.code or "", rf.document_id or "", str(int(status.status_code or 0))])
        if dedupe and int(status.status_code or 0) != 5 and self.store.status_exists(key):
            raise Refused("duplicate", "this status was already recorded")
        original = self.store.find_edoc(target, rf.document_id)
        self.store.keep(spool)
        return self.store.add_document(
            kind="status",
            sender=sender,
            recipients=[target],
            sha256=spool.sha256,
            size=spool.size,
            binding=binding,
            sender_doc_id=rf.document_id,
            status_code=status.status_code,
            response_for=original.id if original else None,
            status_key=key,
        )

    def new_status(self, status: Status, *, sender: str, binding: str, dedupe: bool) -> int:
        """Build ``status`` as edXML, keep it, record it."""
        spool = self.store.spool()
        try:
            build(status, spool)  # Spool has write(); build streams into it
            spool.finish()
            return self.accept_status(spool, status, sender=sender, binding=binding, dedupe=dedupe)
        finally:
            spool.discard()

    def readable(self, doc_id: int, organ_id: str) -> DocumentRow | None:
        """The document if it was addressed to ``organ_id`` (else None)."""
        doc = self.store.document(doc_id)
        if doc is None or self.store.recipient(doc_id, organ_id) is None:
            return None
        return doc

    def acknowledge(self, doc_id: int, agency: Agency, outcome: str, binding: str) -> bool:
        """Take the document off the agency's pending list; a first ``done`` on an edoc
        records status 01 (Đã đến) for its sender. False if never addressed to the agency."""
        doc = self.store.document(doc_id)
        if doc is None or self.store.recipient(doc_id, agency.organ_id) is None:
            return False
        was_pending = self.store.acknowledge(doc_id, agency.organ_id, outcome)
        if was_pending and outcome == "done" and doc.kind == "edoc":
            self._record_status(doc_id, agency, "01", "Đã đến", binding=binding)
        return True

    def _record_status(self, doc_id: int, agency: Agency, code: str, description: str, *, binding: str) -> None:
        """Status ``code`` about document ``doc_id``, from ``agency``, for the document's sender."""
        doc = self.store.document(doc_id)
        meta = self.store.meta(doc_id)
        status = Status(
            from_=organization_of(agency),
            response_for=[
                ResponseFor(
                    organ_id=doc.sender,
                    code=meta.get("code"),
                    promulgation_date=_date(meta.get("promulgation_date")),
                    document_id=doc.sender_doc_id,
                )
            ],
            staff_info=StaffInfo(department="Văn thư", staff="sandbox"),
            status_code=code,
            description=description,
            timestamp=now_vn(),
        )
        try:
            self.new_status(status, sender=agency.organ_id, binding=binding, dedupe=False)
        except Refused as exc:  # the sender left the directory: nothing to tell
            log.info("status %s for %s not recorded: %s", code, doc_id, exc.text)


def organization_of(agency: Agency) -> Organization:
    e = agency.extra
    return Organization(
        organ_id=agency.organ_id,
        organization_in_charge=e.get("organization_in_charge") or agency.name,
        organ_name=agency.name,
        organ_add=e.get("organ_add"),
        email=e.get("email"),
        telephone=e.get("telephone"),
        fax=e.get("fax"),
        website=e.get("website"),
    )


def _date(value):
    from datetime import date

    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- the app


class SandboxApp:
    """The WSGI callable."""

    def __init__(self, store: Store, faults: Faults, admin_token: str):
        from .hub_app import HubApp
        from .vxp_app import VxpApp

        self.store = store
        self.faults = faults
        self.admin_token = admin_token
        self.core = Core(store, faults)
        self.hub = HubApp(self.core)
        self.vxp = VxpApp(self.core)
        self.started = time.time()

    def close(self) -> None:
        self.store.close()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request.from_environ(environ)
        try:
            status, headers, body = self.route(request)
        except DropConnection:
            raise
        except Exception:  # noqa: BLE001 - answer in the binding's form, log the cause
            log.exception("sandbox: unhandled error on %s %s", request.method, request.path)
            if request.path.startswith("/vxp"):
                status, headers, body = self.vxp.internal_error()
            elif request.path.startswith("/soap"):
                status, headers, body = self.hub.internal_error()
            else:
                status, headers, body = json_response("500 Internal Server Error", {"error": "internal error"})
        start_response(status, headers)
        return body

    def route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == "/healthz":
            return json_response("200 OK", {"ok": True, "uptime": round(time.time() - self.started, 1), **self.store.counts()})
        if path == "/admin/faults":
            return self.admin(request)
        if path == "/soap":
            if request.method == "GET" and any(k.lower() == "wsdl" for k, _ in request.query):
                return self.wsdl(request)
            if request.method != "POST":
                return bytes_response("405 Method Not Allowed", b"POST a SOAP envelope here\n", "text/plain")
            return self.with_faults(request, self.hub)
        if path.startswith("/vxp/"):
            return self.with_faults(request, self.vxp)
        return json_response("404 Not Found", {"error": f"no route for {request.path}"})

    def with_faults(self, request: Request, binding) -> Response:
        decision, delay = self.faults.decide()
        if delay:
            time.sleep(delay)
        if decision == Decision.DROP:
            raise DropConnection()
        if decision == Decision.OUTAGE:
            return bytes_response("503 Service Unavailable", b"sandbox outage window\n", "text/plain; charset=UTF-8")
        if decision == Decision.FAIL:
            return binding.injected_failure()
        return binding.handle(request)

    def wsdl(self, request: Request) -> Response:
        path = next((p for p in WSDL_CANDIDATES if p.is_file()), None)
        if path is None:
            return bytes_response("404 Not Found", b"no WSDL in schemas/\n", "text/plain")
        text = path.read_text(encoding="utf-8")
        host = request.headers.get("host") or f"127.0.0.1:{request.environ.get('SERVER_PORT', '')}"
        scheme = request.environ.get("wsgi.url_scheme") or "http"
        text = re.sub(r'(<(?:\w+:)?address\s[^>]*location=")[^"]*(")', rf"\g<1>{scheme}://{host}/soap\g<2>", text)
        return bytes_response("200 OK", text.encode("utf-8"), "text/xml; charset=UTF-8")

    def admin(self, request: Request) -> Response:
        given = request.headers.get("x-admin-token") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given or not secrets.compare_digest(given.encode(), self.admin_token.encode()):
            return json_response("401 Unauthorized", {"error": "admin token required"}, [("WWW-Authenticate", "Bearer")])
        if request.method == "GET":
            return json_response("200 OK", self.faults.to_json())
        if request.method != "POST":
            return json_response("405 Method Not Allowed", {"error": "GET or POST"})
        try:
            changes = json.loads(request.small_body(1 << 16) or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            return json_response("200 OK", self.faults.update(changes))
        except (ValueError, TypeError) as exc:
            return json_response("400 Bad Request", {"error": str(exc)})


def build_app(
    data_dir: str | Path,
    *,
    agencies_file: str | Path | None = None,
    faults: FaultSettings | None = None,
    admin_token: str | None = None,
    seed: int | None = None,
) -> SandboxApp:
    store = Store(data_dir)
    try:
        setup_agencies(store, agencies_file)
    except BaseException:
        store.close()
        raise
    return SandboxApp(store, Faults(faults, seed=seed), admin_token or secrets.token_urlsafe(18))
