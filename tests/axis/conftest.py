"""Fixtures for the axis tests: a real sandbox on a free loopback port with a tmp data dir,
its development agencies' credentials, and small raw-protocol helpers (``requests`` + the wire
modules, no zeep) for the hand-built checks."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from connector.axis import multipart
from connector.axis import soap_wire
from connector.axis import vxp_wire
from connector.sandbox.server import SandboxServer
from connector.sandbox.store import Agency

H16, G22, H41, H14 = "000.00.00.H16", "000.00.00.G22", "000.00.00.H41", "000.00.00.H14"


@pytest.fixture
def sandbox(tmp_path):
    """A running sandbox (threaded server on 127.0.0.1, ephemeral port), stopped after the test."""
    with SandboxServer(tmp_path / "sandbox-data", seed=1234) as server:
        yield server


@pytest.fixture
def agencies(sandbox) -> dict[str, Agency]:
    return {a.organ_id: a for a in sandbox.store.agencies()}


@pytest.fixture
def set_faults(sandbox):
    """POST a change to /admin/faults (the run-time path tests and rehearsals use)."""

    def change(**settings):
        r = requests.post(
            f"{sandbox.url}/admin/faults", json=settings, headers={"Authorization": f"Bearer {sandbox.admin_token}"}, timeout=5
        )
        assert r.status_code == 200, r.text
        return r.json()

    return change


# --------------------------------------------------------------------------- raw helpers


@dataclass
class RawHub:
    """The hub's SOAP contract spoken with requests + soap_wire/multipart (no zeep, no client)."""

    url: str
    organ_id: str
    token: str
    timeout: float = 10

    def call(self, operation: str, envelope: bytes) -> requests.Response:
        return requests.post(
            f"{self.url}/soap",
            data=envelope,
            headers={"SOAPAction": operation, "Content-Type": soap_wire.SOAP_CONTENT_TYPE},
            timeout=self.timeout,
        )

    def root(self, response: requests.Response):
        assert response.status_code == 200, response.text[:500]
        if multipart.is_multipart(response.headers.get("Content-Type")):
            related = multipart.parse(io.BytesIO(response.content), response.headers["Content-Type"])
            return soap_wire.parse_envelope(related.root_bytes()), related
        return soap_wire.parse_envelope(response.content), None

    def send(self, edoc) -> int:
        envelope, parts = soap_wire.edoc_to_send_document(edoc, self.organ_id, self.token)
        boundary = multipart.new_boundary()
        body = b"".join(multipart.generate(envelope, parts, boundary))
        r = requests.post(
            f"{self.url}/soap",
            data=body,
            headers={"SOAPAction": "SendDocument", "Content-Type": multipart.content_type(boundary)},
            timeout=self.timeout,
        )
        root, _ = self.root(r)
        return soap_wire.parse_send_document_response(root)

    def simple(self, operation: str, **kwargs):
        r = self.call(operation, soap_wire.build_request(operation, self.organ_id, self.token, **kwargs))
        return self.root(r)

    def pending(self) -> list[int]:
        root, _ = self.simple("GetPendingDocumentIds")
        return soap_wire.parse_pending_ids_response(root)

    def get(self, doc_id: int):
        root, related = self.simple("GetDocument", document_id=doc_id)
        return soap_wire.get_document_response_to_edoc(root, related.parts if related else {})

    def confirm(self, doc_id: int):
        root, _ = self.simple("ConfirmReceived", document_id=doc_id)
        return soap_wire.parse_report_response(root, "ConfirmReceived")

    def update_traces(self, status):
        r = self.call("UpdateTraces", soap_wire.status_to_update_traces(status, self.organ_id, self.token))
        root, _ = self.root(r)
        return soap_wire.parse_report_response(root, "UpdateTraces")

    def traces(self, timestamp=None):
        root, _ = self.simple("GetTraces", timestamp=timestamp)
        return soap_wire.parse_traces_response(root)

    def organizations(self):
        root, _ = self.simple("GetOrganizations")
        return soap_wire.parse_organizations_response(root)


@dataclass
class RawVxp:
    """VXP spoken with requests + vxp_wire (signing by hand)."""

    url: str
    system_id: str
    secret: str
    timeout: float = 10

    def call(self, name: str, *, query=None, body: bytes = b"", extra=None) -> requests.Response:
        method, path = vxp_wire.METHODS[name], vxp_wire.PATHS[name]
        headers = vxp_wire.sign_request(
            method,
            path,
            system_id=self.system_id,
            secret=self.secret,
            query=query,
            content_sha256=vxp_wire.body_sha256(body),
            extra=extra,
        )
        return requests.request(method, f"{self.url}{path}", params=query, data=body or None, headers=headers, timeout=self.timeout)

    def answer(self, name: str, **kwargs) -> dict:
        r = self.call(name, **kwargs)
        return vxp_wire.parse_answer(r.content, name)

    def send_file(self, path: Path, *, to: list[str], messagetype: str = "edoc") -> str:
        data = Path(path).read_bytes()
        extra = {"from": self.system_id, "to": ",".join(to), "servicetype": "eDoc", "messagetype": messagetype}
        return str(self.answer("sendEdoc", body=data, extra=extra)["DocId"])

    def received(self, messagetype: str = "edoc") -> list[vxp_wire.ReceivedItem]:
        data = self.answer("getReceivedEdocList", query={"messagetype": messagetype})["data"]
        return [vxp_wire.ReceivedItem.from_json(d) for d in data]

    def get(self, doc_id: str) -> bytes:
        r = self.call("getEdoc", query={"docid": doc_id})
        if r.headers.get("Content-Type", "").startswith("application/json"):
            vxp_wire.parse_answer(r.content, "getEdoc")
        assert r.status_code == 200
        return r.content

    def update(self, doc_id: str, status: str = "done") -> dict:
        return self.answer("updateStatus", query={"docid": doc_id, "status": status})


@pytest.fixture
def raw_hub(sandbox, agencies):
    def make(organ_id: str, token: str | None = None) -> RawHub:
        return RawHub(sandbox.url, organ_id, agencies[organ_id].token if token is None else token)

    return make


@pytest.fixture
def raw_vxp(sandbox, agencies):
    def make(organ_id: str, secret: str | None = None) -> RawVxp:
        return RawVxp(sandbox.url, agencies[organ_id].system_id, agencies[organ_id].secret if secret is None else secret)

    return make


# --------------------------------------------------------------------------- comparing documents


def hub_view(edoc):
    """The fields the hub's SOAP contract carries (it has no TypeDetail, Direction, To's
    OrganizationInCharge, and no packaging), attachments as (name, type, description, size,
    sha256): what must be identical whichever binding a document went through."""
    from dataclasses import replace

    return replace(
        edoc,
        to=[replace(t, organization_in_charge=None) for t in edoc.to],
        document_type=replace(edoc.document_type, type_detail=None),
        other_info=replace(edoc.other_info, direction=None),
        manifest=[],
        attachments=[(a.name, a.content_type, a.description, a.size, a.sha256) for a in edoc.attachments],
    )


def attachment_bytes(edoc) -> list[bytes]:
    out = []
    for a in edoc.attachments:
        with a.data.open() as fh:
            out.append(fh.read())
    return out


@pytest.fixture
def hub_client(sandbox, agencies):
    """SoapHubAxis (the teammate's client) for one agency against the sandbox."""
    from connector.axis.soap_hub import SoapHubAxis

    made = []

    def make(organ_id: str, token: str | None = None, **kwargs):
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("retries", 0)
        client = SoapHubAxis(f"{sandbox.url}/soap", organ_id, agencies[organ_id].token if token is None else token, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def vxp_client(sandbox, agencies):
    """VxpAxis (the teammate's client) for one agency against the sandbox."""
    from connector.axis.vxp import VxpAxis

    made = []

    def make(organ_id: str, secret: str | None = None, **kwargs):
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("retries", 0)
        a = agencies[organ_id]
        client = VxpAxis(sandbox.url, a.system_id, a.secret if secret is None else secret, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
