"""The provincial eDoc hub binding: :class:`SoapHubAxis` implements AxisTransport over SOAP 1.1.

Simple requests (no files) are built by zeep from the local WSDL ``schemas/edoc-hub.wsdl``
(``client.create_message``, with DTDs, entities and external loads forbidden); zeep renders the
hub's no-namespace wrappers faithfully. SendDocument and UpdateTraces are built by
:mod:`soap_wire` (header blocks, manifest) and, for files, streamed as SwA by
:mod:`multipart` through ``requests`` with a known Content-Length. Responses are read as
multipart/related (streamed, parts spooled) or plain text/xml, and checked by :mod:`soap_wire`.

Empty SOAP Body: the hub's empty envelope is raised as
:class:`~connector.axis.soap_wire.EmptyBodyError`, a :class:`RetryableAxisError`. The hub
returns it for a structural refusal but also when its mediator fails internally, and the two
cannot be told apart; treating it as retryable lets the engine's bounded retry + dead-letter
decide, and is safe because this client itself never repeats a non-idempotent call
(SendDocument, UpdateTraces, ConfirmReceived, destructive GetTraces are sent once).

Retries (exponential backoff with jitter) only for GetPendingDocumentIds, GetDocument,
GetTraces with a TimeStamp, GetOrganizations and CheckPermission.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TypeVar

import requests
import urllib3
from lxml import etree

from connector.edxml.build import build
from connector.edxml.model import Edoc, Message, Status

from . import multipart, soap_wire
from ..durable import DiskFull
from ..neterrors import short as _short
from ._disk import saving_to
from ._http import SizedIterable, call_with_retries, is_html, new_session, raise_for_http, read_limited, request, retry_policy
from .errors import AxisError, NotFoundError, ProtocolError, RetryableAxisError, ValidationError, http_error_class
from .transport import Agency, FetchedInfo, Kind, PendingItem

T = TypeVar("T")
WSDL_PATH = Path(__file__).resolve().parents[2] / "schemas" / "edoc-hub.wsdl"
# GetTraces is safe only with a TimeStamp (statuses_since(when)); without one it is a destructive read.
SAFE_OPERATIONS = frozenset({"GetPendingDocumentIds", "GetDocument", "GetTraces+TimeStamp", "GetOrganizations", "CheckPermission"})
MAX_PLAIN_ANSWER = 64 * 1024**2


class SoapHubAxis:
    """A client of one provincial hub endpoint, authenticated as one agency.

    ``timeout`` is (connect, read) seconds or one number for both; ``verify`` is a CA bundle
    path or True; ``cert`` a (certificate, key) pair for mutual TLS; ``retries`` the extra
    attempts for safe operations. ``spool_dir`` is where received parts spill to disk.
    """

    #: how the engine reads statuses: statuses are read with GetTraces since a time (safe to repeat); nothing to acknowledge
    status_feed = "query"

    def __init__(
        self,
        url: str,
        organ_id: str,
        token: str,
        *,
        timeout: float | tuple[float, float] = (10.0, 120.0),
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        spool_dir: str | Path | None = None,
        multipart_limits: multipart.MultipartLimits = multipart.MultipartLimits(),
        session: requests.Session | None = None,
        wsdl: str | Path = WSDL_PATH,
    ):
        self.url = url
        self.organ_id = organ_id
        self.token = token
        self.timeout = timeout
        self.policy = retry_policy(retries, backoff)
        self.spool_dir = spool_dir
        self.limits = multipart_limits
        self.session = session or new_session(verify, cert)
        self._wsdl = Path(wsdl)
        self._zeep = None
        self._statuses: dict[str, Status] = {}

    # ------------------------------------------------------------------ plumbing

    def _zeep_client(self):
        if self._zeep is None:
            import zeep

            settings = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True)
            self._zeep = zeep.Client(str(self._wsdl), settings=settings)
        return self._zeep

    def _simple_envelope(self, operation: str, **fields) -> bytes:
        """A simple request built by zeep from the WSDL (no-namespace wrappers)."""
        client = self._zeep_client()
        creds = {"OrganId": self.organ_id, "Token": self.token}
        if operation == "CheckPermission":
            node = client.create_message(client.service, operation, _soapheaders={"header": creds})
        else:
            node = client.create_message(client.service, operation, **creds, **fields)
        return etree.tostring(node, xml_declaration=True, encoding="UTF-8")

    def _post(self, operation: str, data, content_type: str) -> requests.Response:
        headers = {"SOAPAction": operation, "Content-Type": content_type, "Accept": "multipart/related, text/xml"}
        response = request(self.session, "POST", self.url, operation=operation, timeout=self.timeout, data=data, headers=headers)
        if response.status_code >= 400 and not _looks_like_soap(response):
            raise_for_http(response, operation)
        return response

    def _answer(self, response: requests.Response, operation: str) -> tuple[etree._Element, multipart.Related | None]:
        """The envelope root (and the parts, for SwA answers); the caller closes the parts.

        Classification of answers that are not the contract's: a transfer cut short, an empty
        body, an HTTP error status or a web page (a proxy's error page) are retryable; a complete
        answer that is not a SOAP 1.1 envelope is a permanent :class:`ProtocolError`. A part
        that cannot be spooled because the disk under ``spool_dir`` is full is
        :class:`~connector.durable.DiskFull` naming that folder: our disk, not the network, so
        it must not count as a failed attempt of the call.
        """
        ctype = response.headers.get("Content-Type", "")
        if multipart.is_multipart(ctype):
            try:
                response.raw.decode_content = True
                related = multipart.parse(response.raw, ctype, limits=self.limits, spool_dir=self.spool_dir)
            except multipart.TruncatedBodyError as exc:
                raise RetryableAxisError(f"multipart answer cut short: {exc}", operation=operation) from None
            except multipart.MultipartError as exc:
                raise ProtocolError(f"unreadable multipart answer: {exc}", operation=operation) from None
            except DiskFull:
                raise  # an OSError too, but about the spool folder: not a broken connection
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise RetryableAxisError(f"connection broke while reading the answer: {_short(exc)}", operation=operation) from None
            finally:
                response.close()
            try:
                return self._envelope(related.root_bytes(), response, operation), related
            except BaseException:
                related.close()
                raise
        data = read_limited(response, MAX_PLAIN_ANSWER, operation)
        if not data.strip():
            if response.status_code >= 400:
                raise_for_http(response, operation)
            raise RetryableAxisError(f"empty answer (HTTP {response.status_code}, no SOAP envelope)", operation=operation)
        return self._envelope(data, response, operation), None

    @staticmethod
    def _envelope(data: bytes, response: requests.Response, operation: str) -> etree._Element:
        """Parse the envelope; when it cannot be read, the HTTP status or Content-Type decides the class."""
        try:
            return soap_wire.parse_envelope(data)
        except soap_wire.SoapWireError as exc:
            ctype = response.headers.get("Content-Type", "") or "no Content-Type"
            if response.status_code >= 400:
                reason = f" {response.reason}" if response.reason else ""
                raise http_error_class(response.status_code)(
                    f"HTTP {response.status_code}{reason} without a SOAP answer ({exc.text})",
                    code=str(response.status_code), operation=operation,
                ) from None
            if is_html(response):
                raise RetryableAxisError(
                    f"answered {ctype[:80]} instead of SOAP (a proxy's or server's error page?)", operation=operation
                ) from None
            if "xml" not in ctype.lower():
                raise ProtocolError(f"answered {ctype[:80]} instead of SOAP: {exc.text}", operation=operation) from None
            raise ProtocolError(exc.text, operation=operation) from None

    def _call_simple(self, operation: str, read: Callable[[etree._Element], T], *, safe: bool, **fields) -> T:
        """Send a zeep-built request and ``read`` the answer; both inside the retry loop, so an
        empty Body or a retryable Report code is retried too (for safe operations)."""
        envelope = self._simple_envelope(operation, **fields)

        def attempt() -> T:
            with _naming(operation):
                root, related = self._answer(self._post(operation, envelope, soap_wire.SOAP_CONTENT_TYPE), operation)
                if related is not None:
                    related.close()
                return read(root)

        return call_with_retries(self.policy, attempt, safe=safe)

    # ------------------------------------------------------------------ AxisTransport

    def send(self, message: Message, *, edxml_path: Path | None = None) -> str:
        """SendDocument for an Edoc (returns the hub's integer id as a string), UpdateTraces for a
        Status (the hub gives no id: returns ``trace:<ResponseFor DocumentId>:<StatusCode>``).
        Never retried here."""
        if isinstance(message, Status):
            envelope = soap_wire.status_to_update_traces(message, self.organ_id, self.token)
            with _naming("UpdateTraces"):
                root, related = self._answer(self._post("UpdateTraces", envelope, soap_wire.SOAP_CONTENT_TYPE), "UpdateTraces")
                if related is not None:
                    related.close()
                soap_wire.parse_report_response(root, "UpdateTraces")
            target = message.response_for[0].document_id if message.response_for else ""
            return f"trace:{target}:{message.status_code}"
        if not isinstance(message, Edoc):
            raise ValidationError(f"cannot send a {type(message).__name__}", operation="SendDocument")
        envelope, parts = soap_wire.edoc_to_send_document(message, self.organ_id, self.token)
        boundary = multipart.new_boundary()
        body = SizedIterable(
            multipart.generate(envelope, parts, boundary), multipart.body_length(len(envelope), parts, boundary)
        )
        with _naming("SendDocument"):
            root, related = self._answer(self._post("SendDocument", body, multipart.content_type(boundary)), "SendDocument")
            if related is not None:
                related.close()
            return str(soap_wire.parse_send_document_response(root))

    def pending(self, kind: Kind = "edoc") -> list[PendingItem]:
        """``edoc``: GetPendingDocumentIds. ``status``: GetTraces WITHOUT TimeStamp, a destructive
        read: the statuses are kept in this object until fetched (ids ``status:<n>``); a crash
        before they are stored loses them, so durable callers prefer :meth:`statuses_since`."""
        if kind == "status":
            items = []
            for status in self.statuses_since(None):
                item_id = f"status:{len(self._statuses) + 1}"
                self._statuses[item_id] = status
                items.append(PendingItem(item_id, "status", sender=status.from_.organ_id))
            return items
        ids = self._call_simple("GetPendingDocumentIds", soap_wire.parse_pending_ids_response, safe=True)
        return [PendingItem(str(i), "edoc") for i in ids]

    def get_document(self, document_id: int | str) -> tuple[Edoc, multipart.Related | None]:
        """GetDocument as a model (attachments decoded into spooled files under ``spool_dir``);
        the caller closes the returned parts. A full spool disk is
        :class:`~connector.durable.DiskFull` naming the folder (never retried here)."""
        envelope = self._simple_envelope("GetDocument", DocumentId=_hub_id(str(document_id)))

        def attempt():
            with _naming("GetDocument"):
                root, related = self._answer(self._post("GetDocument", envelope, soap_wire.SOAP_CONTENT_TYPE), "GetDocument")
                try:
                    edoc = soap_wire.get_document_response_to_edoc(
                        root, related.parts if related else {}, spool_dir=self.spool_dir, spool_memory=self.limits.spool_memory
                    )
                    return edoc, related
                except BaseException:
                    if related is not None:
                        related.close()
                    raise

        return call_with_retries(self.policy, attempt, safe=True)

    def fetch(self, item_id: str, dest: BinaryIO) -> FetchedInfo:
        """Write the document (rebuilt as QCVN 102 edXML by the codec) or status to ``dest``.

        A full disk while receiving (the spool folder) or writing (``dest``, when it has a file
        name) is :class:`~connector.durable.DiskFull` naming it; ``dest`` is flushed, so what
        is returned was written."""
        if item_id.startswith("status:"):
            status = self._statuses.get(item_id)
            if status is None:
                raise NotFoundError(f"no status {item_id} was listed by pending('status')", operation="GetTraces")
            return _write(status, dest, item_id, "status")
        edoc, related = self.get_document(item_id)
        try:
            return _write(edoc, dest, item_id, "edoc")
        finally:
            for attachment in edoc.attachments:
                close = getattr(attachment.data, "close", None)
                if close:
                    close()
            if related is not None:
                related.close()

    def acknowledge(self, item_id: str, ok: bool = True, reason: str | None = None) -> None:
        """ConfirmReceived (never retried). The hub has no "failed" acknowledgement: ``ok=False``
        also confirms (so the hub stops offering the document); the refusal itself reaches the
        sender as a status 02 the engine sends. Status items are only forgotten locally."""
        if item_id.startswith("status:"):
            self._statuses.pop(item_id, None)
            return
        self._call_simple("ConfirmReceived", _report("ConfirmReceived"), safe=False, DocumentId=_hub_id(item_id))

    def statuses_since(self, when: datetime | None = None) -> list[Status]:
        """GetTraces: with ``when`` every status since then (safe, retried); with None only the
        unread ones, which the hub then marks read (destructive, never retried)."""
        read = soap_wire.parse_traces_response
        if when is None:
            return self._call_simple("GetTraces", read, safe=False)
        return self._call_simple("GetTraces", read, safe=True, TimeStamp=soap_wire.format_timestamp(when))

    def directory(self) -> list[Agency]:
        organizations = self._call_simple("GetOrganizations", soap_wire.parse_organizations_response, safe=True)
        return [
            Agency(
                code=o.organ_id or "",
                name=o.organ_name,
                email=o.email,
                telephone=o.telephone,
                fax=o.fax,
                address=o.organ_add,
                website=o.website,
                in_charge=o.organization_in_charge,
            )
            for o in organizations
        ]

    def check_permission(self) -> None:
        """CheckPermission; returns when the hub accepts our OrganId/Token, raises otherwise."""
        self._call_simple("CheckPermission", _report("CheckPermission"), safe=True)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "SoapHubAxis":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _HashingWriter:
    def __init__(self, out: BinaryIO):
        self.out, self.size, self.digest = out, 0, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data) or len(data)

    def flush(self) -> None:
        if hasattr(self.out, "flush"):
            self.out.flush()


def _write(message: Message, dest: BinaryIO, item_id: str, kind: Kind) -> FetchedInfo:
    """Build ``message`` as edXML into ``dest`` (flushed), hashing what is written."""
    writer = _HashingWriter(dest)
    try:
        with saving_to(dest):  # a full disk under dest is DiskFull naming its file
            build(message, writer)  # type: ignore[arg-type]
            writer.flush()
    except ValueError as exc:
        raise ValidationError(f"the received {kind} cannot be written as edXML: {exc}", operation="GetDocument") from None
    return FetchedInfo(item_id, writer.size, writer.digest.hexdigest(), kind)


@contextmanager
def _naming(operation: str) -> Iterator[None]:
    """Errors raised by the wire readers (which do not know the call) name ``operation``."""
    try:
        yield
    except AxisError as exc:
        if exc.operation is None:
            exc.operation = operation
        raise


def _report(operation: str) -> Callable[[etree._Element], soap_wire.HubReport]:
    return lambda root: soap_wire.parse_report_response(root, operation)


def _hub_id(item_id: str) -> int:
    try:
        return int(item_id)
    except ValueError:
        raise NotFoundError(f"{item_id!r} is not a hub document id (an integer)") from None


def _looks_like_soap(response: requests.Response) -> bool:
    ctype = response.headers.get("Content-Type", "").lower()
    return "xml" in ctype or "multipart" in ctype


__all__ = ["SoapHubAxis", "WSDL_PATH", "SAFE_OPERATIONS", "AxisError"]
