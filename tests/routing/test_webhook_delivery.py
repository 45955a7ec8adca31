"""Webhook delivery against a real HTTP(S) server standing in for a DMS: the multipart shape,
bearer / basic / TLS client authentication, retries with backoff, permanent 4xx, a DMS that
is down, and the Idempotency-Key on every attempt."""

from __future__ import annotations

import base64
import socket

import pytest

from connector.httpserver import WsgiServer, tls_context
from connector.routing.delivery import DeliveryError

from .conftest import DmsStandIn, make_hook


def test_bearer_post_carries_metadata_files_and_idempotency_key(make_delivery, monkeypatch):
    monkeypatch.setenv("DMS_TOKEN", "tok-123")
    dms = DmsStandIn(auth="Bearer tok-123")
    delivery = make_delivery("axis-5:000.00.00.H16", attachments=[("Quyết định 5.pdf", b"%PDF-5" * 1000), ("phu-luc.xlsx", b"PK..")])
    with WsgiServer(dms) as server:
        hook = make_hook(f"{server.url}/api/edoc", auth="bearer", token_env="DMS_TOKEN")
        assert hook.deliver(delivery) == f"{server.url}/dms/docs/77"  # the DMS's Location
        hook.close()
    (request,) = dms.requests
    assert request.headers["idempotency-key"] == "axis-5:000.00.00.H16"
    assert request.headers["x-edoc-kind"] == "edoc"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert "transfer-encoding" not in request.headers and int(request.headers["content-length"]) > 6000
    assert request.metadata["document_id"] == delivery.message.document_id
    assert request.metadata["delivery"]["id"] == "axis-5:000.00.00.H16"
    assert [f["file"] for f in request.metadata["delivery"]["attachments"]] == ["Quyết định 5.pdf", "phu-luc.xlsx"]
    assert request.files == [
        ("attachment", "Quyết định 5.pdf", b"%PDF-5" * 1000),
        ("attachment", "phu-luc.xlsx", b"PK.."),
        ("edxml", "message.edxml", delivery.raw_path.read_bytes()),
    ]


def test_basic_auth_with_password_file(tmp_path, make_delivery):
    secret = tmp_path / "dms-password"
    secret.write_text("mật-khẩu\n", encoding="utf-8")
    expected = "Basic " + base64.b64encode("vanthu:mật-khẩu".encode()).decode()
    dms = DmsStandIn(auth=expected)
    with WsgiServer(dms) as server:
        hook = make_hook(server.url, auth="basic", username="vanthu", password_file=secret, include_raw=False)
        assert hook.deliver(make_delivery("k-basic", kind="status")).endswith("/dms/docs/77")
    (request,) = dms.requests
    assert request.headers["x-edoc-kind"] == "status"
    assert request.metadata["status_code"] == "03" and request.files == []


def test_tls_client_certificate(pki, make_delivery):
    context = tls_context(pki.tls_server.cert_path, pki.tls_server.key_path, client_ca=pki.chain_path)
    dms = DmsStandIn()
    with WsgiServer(dms, ssl_context=context) as server:
        assert server.url.startswith("https://")
        hook = make_hook(server.url, auth="tls", client_cert=pki.tls_client.cert_path, client_key=pki.tls_client.key_path,
                     ca_bundle=pki.chain_path)
        assert hook.deliver(make_delivery("k-tls")).endswith("/dms/docs/77")
        (request,) = dms.requests
        assert request.environ["SSL_CLIENT_VERIFY"] == "SUCCESS"
        # without a client certificate the DMS refuses the handshake: permanent, says TLS
        with pytest.raises(DeliveryError) as info:
            make_hook(server.url, ca_bundle=pki.chain_path, retries=3).deliver(make_delivery("k-tls-2"))
        assert not info.value.retryable and "TLS failure" in str(info.value)
        # a server certificate the bundle does not vouch for: permanent as well
        with pytest.raises(DeliveryError, match="TLS failure") as info:
            make_hook(server.url, auth="tls", client_cert=pki.tls_client.cert_path, client_key=pki.tls_client.key_path,
                  ca_bundle=pki.tls_client.cert_path).deliver(make_delivery("k-tls-3"))
        assert not info.value.retryable
    assert len(dms.requests) == 1


def test_5xx_is_retried_with_backoff_then_delivered(make_delivery):
    dms = DmsStandIn(script=[503, 500])
    sleeps: list[float] = []
    with WsgiServer(dms) as server:
        hook = make_hook(server.url, sleeps, retries=3, backoff_s=0.5)
        assert hook.deliver(make_delivery("k-retry")).endswith("/dms/docs/77")
    assert len(dms.requests) == 3
    assert {r.headers["idempotency-key"] for r in dms.requests} == {"k-retry"}
    assert all(r.files == dms.requests[0].files and r.files for r in dms.requests)  # files re-streamed each time
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter, doubling cap


def test_5xx_after_all_retries_is_retryable(make_delivery):
    dms = DmsStandIn(script=[500] * 5)
    with WsgiServer(dms) as server, pytest.raises(DeliveryError) as info:
        make_hook(server.url, retries=2).deliver(make_delivery("k-500"))
    assert info.value.retryable and info.value.destination == "dms-api"
    assert "HTTP 500 Internal Server Error" in str(info.value) and "after 3 attempts" in str(info.value)
    assert len(dms.requests) == 3


@pytest.mark.parametrize(("status", "text"), [(422, "trường 'subject' bị thiếu"), (400, "Bad Request")])
def test_4xx_is_permanent_and_quotes_the_dms(make_delivery, status, text):
    dms = DmsStandIn(script=[status])
    with WsgiServer(dms) as server, pytest.raises(DeliveryError) as info:
        make_hook(server.url, retries=3).deliver(make_delivery("k-4xx"))
    assert not info.value.retryable
    assert f"the DMS refused the item: HTTP {status}" in str(info.value) and text in str(info.value)
    assert len(dms.requests) == 1  # not retried


def test_wrong_token_is_permanent(make_delivery, monkeypatch):
    monkeypatch.setenv("DMS_TOKEN", "wrong")
    dms = DmsStandIn(auth="Bearer right")
    with WsgiServer(dms) as server, pytest.raises(DeliveryError, match="HTTP 401") as info:
        make_hook(server.url, auth="bearer", token_env="DMS_TOKEN").deliver(make_delivery())
    assert not info.value.retryable


def test_dms_down_is_retryable(make_delivery):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sleeps: list[float] = []
    with pytest.raises(DeliveryError) as info:
        make_hook(f"http://127.0.0.1:{port}/api", sleeps, retries=2, timeout_s=5).deliver(make_delivery())
    assert info.value.retryable
    assert "cannot connect" in str(info.value) and "after 3 attempts" in str(info.value)
    assert len(sleeps) == 2


def test_missing_secret_is_permanent_and_names_it(make_delivery, monkeypatch):
    monkeypatch.delenv("DMS_TOKEN_UNSET", raising=False)
    dms = DmsStandIn()
    with WsgiServer(dms) as server, pytest.raises(DeliveryError, match="environment variable DMS_TOKEN_UNSET is not set") as info:
        make_hook(server.url, auth="bearer", token_env="DMS_TOKEN_UNSET").deliver(make_delivery())
    assert not info.value.retryable and dms.requests == []
