"""Fixtures for the routing tests: real inbound items (built, written as .edxml evidence, parsed
back so attachments are the spooled data the engine hands over), a DMS stand-in served with
the project's WsgiServer, and small document-JSON helpers for the intake tests."""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from connector.edxml.build import build
from connector.edxml.jsonform import to_json
from connector.edxml.model import VN_TZ, Attachment, BytesData
from connector.edxml.parse import parse
from connector.edxml.samples import sample_edoc, sample_status
from connector.routing.config import WebhookDestinationConfig
from connector.routing.delivery import Delivery
from connector.routing.webhook_delivery import WebhookDestination
from connector.signing.devpki import create_dev_pki

H16, G22 = "000.00.00.H16", "000.00.00.G22"


@pytest.fixture
def make_delivery(tmp_path):
    """``make_delivery(delivery_id, kind="edoc", attachments=None, number=1)`` -> Delivery."""
    opened = []
    evidence = tmp_path / "evidence"
    evidence.mkdir()

    def make(delivery_id: str = "axis-1:000.00.00.H16", kind: str = "edoc", attachments=None, number: int = 1,
             document_id: str | None = None) -> Delivery:
        # an inbound document from G22 to us (H16), or G22's status on a document we sent it
        doc = sample_edoc(G22, H16, number) if kind == "edoc" else sample_edoc(H16, G22, number)
        if document_id:
            doc.document_id = document_id
        if attachments is not None:
            doc.attachments = [
                Attachment(content_id=f"c{i}", name=name, content_type="application/pdf", packaging="zip",
                           data=BytesData(data))
                for i, (name, data) in enumerate(attachments, start=1)
            ]
            doc.with_manifest()
        message = doc if kind == "edoc" else sample_status(doc, "03", by=G22)
        raw = evidence / f"{len(opened)}-{kind}.edxml"
        build(message, raw)
        raw.chmod(0o444)  # evidence is read-only; adapters copy it
        parsed = parse(raw)
        opened.append(parsed)
        metadata = to_json(parsed.message)
        metadata["signature"] = {"status": "placeholder", "reason": "test"}
        metadata["axis_id"] = "axis-42"
        metadata["received_at"] = datetime(2025, 3, 1, 9, 30, tzinfo=VN_TZ).isoformat()
        return Delivery(delivery_id=delivery_id, kind=kind, message=parsed.message, raw_path=raw, metadata=metadata)

    yield make
    for parsed in opened:
        parsed.close()


@dataclass
class Received:
    """One request the DMS stand-in got, with its form parts decoded by the stdlib's email parser
    (independent of the connector's own multipart code)."""

    headers: dict[str, str]
    metadata: dict | None = None
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (field name, filename, content)
    environ: dict = field(default_factory=dict)


class DmsStandIn:
    """A WSGI app playing a DMS's upload endpoint: answers from a script of status codes
    (then 201), records every request."""

    def __init__(self, script: list[int] | None = None, auth: str | None = None):
        self.script = list(script or [])
        self.auth = auth
        self.requests: list[Received] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        headers["content-length"] = environ.get("CONTENT_LENGTH", "")
        received = Received(headers, environ={k: v for k, v in environ.items() if k.startswith(("SSL", "connector."))})
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + headers["content-type"].encode() + b"\r\n\r\n" + body
        )
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if name == "metadata":
                received.metadata = json.loads(payload.decode("utf-8"))
            else:
                received.files.append((name, part.get_filename(), payload))
        with self.lock:
            self.requests.append(received)
            status = self.script.pop(0) if self.script else 201
        if self.auth is not None and headers.get("authorization") != self.auth:
            status = 401
        text = {201: "Created", 400: "Bad Request", 401: "Unauthorized", 409: "Conflict", 422: "Unprocessable",
                500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "X")
        answer = json.dumps({"status": status, "detail": "trường 'subject' bị thiếu" if status == 422 else text}, ensure_ascii=False).encode()
        extra = [("Location", "/dms/docs/77")] if status == 201 else []
        start_response(f"{status} {text}", [("Content-Type", "application/json"), ("Content-Length", str(len(answer))), *extra])
        return [answer]


def document_json(attachments: list[dict] | None = None, **changes) -> dict:
    """A valid outbound document JSON from H16 to G22 (attachments listed by name only)."""
    data = {
        "schema_version": "1",
        "kind": "edoc",
        "document_id": "000.00.00.H16,2025/03/01,12/UBND-VP",
        "from": {"organ_id": H16, "organ_name": "UBND tỉnh Đắk Nông"},
        "to": [{"organ_id": G22, "organ_name": "Văn phòng Chính phủ"}],
        "code": {"number": "12", "notation": "UBND-VP"},
        "promulgation": {"place": "Gia Nghĩa", "date": "2025-03-01"},
        "document_type": {"type": "1", "name": "Công văn"},
        "subject": "V/v kết nối liên thông văn bản",
        "attachments": attachments if attachments is not None else [{"name": "cong-van.pdf"}],
    }
    data.update(changes)
    return data


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A development PKI (TLS server and client certificates) for the DMS stand-ins."""
    return create_dev_pki(tmp_path_factory.mktemp("pki"))


def make_hook(url: str, sleeps: list | None = None, **settings) -> WebhookDestination:
    """A webhook destination named ``dms-api`` posting to ``url``; its backoff waits are noted
    in ``sleeps`` (when given) instead of slept."""
    config = WebhookDestinationConfig(type="webhook", url=url, **settings)
    return WebhookDestination("dms-api", config, sleep=(sleeps.append if sleeps is not None else lambda s: None))
