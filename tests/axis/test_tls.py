"""TLS between the clients and the sandbox: a CA bundle to trust the server, an optional client
certificate (mutual TLS). Certificate failures are :class:`TLSError`, a PermanentAxisError
(retrying cannot fix a configuration problem)."""

from __future__ import annotations

import io

import pytest
import requests

from connector.axis.errors import PermanentAxisError, RetryableAxisError, TLSError
from connector.axis.soap_hub import SoapHubAxis
from connector.axis.vxp import VxpAxis
from connector.edxml.parse import parse
from connector.edxml.samples import sample_edoc
from connector.sandbox.server import SandboxServer
from connector.signing.devpki import create_dev_pki

from .conftest import G22, H16


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    create_dev_pki(root)
    tls = root / "tls"
    # The CA bundle a client trusts: issuing CA + root (the server sends only its own certificate).
    bundle = root / "ca-bundle.pem"
    bundle.write_bytes((root / "chain.pem").read_bytes())
    return {
        "server": (tls / "server.pem", tls / "server.key"),
        "client": (str(tls / "client.pem"), str(tls / "client.key")),
        "ca": str(bundle),
    }


def _server(tmp_path, pki, *, mutual: bool) -> SandboxServer:
    cert, key = pki["server"]
    return SandboxServer(tmp_path / "data", tls_cert=cert, tls_key=key, client_ca=pki["ca"] if mutual else None, seed=1)


def _creds(server):
    return {a.organ_id: a for a in server.store.agencies()}


def _hub(server, organ, **kwargs) -> SoapHubAxis:
    kwargs.setdefault("timeout", 10)
    return SoapHubAxis(f"{server.url}/soap", organ, _creds(server)[organ].token, retries=0, **kwargs)


def _vxp(server, organ, **kwargs) -> VxpAxis:
    kwargs.setdefault("timeout", 10)
    return VxpAxis(server.url, organ, _creds(server)[organ].secret, retries=0, **kwargs)


@pytest.mark.parametrize("mutual", [False, True], ids=["server-tls", "mutual-tls"])
def test_both_clients_over_https(tmp_path, pki, mutual):
    cert = pki["client"] if mutual else None
    with _server(tmp_path, pki, mutual=mutual) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with _hub(server, H16, verify=pki["ca"], cert=cert) as hub, _vxp(server, G22, verify=pki["ca"], cert=cert) as vxp:
            hub.check_permission()
            doc = sample_edoc(H16, G22, 71)
            doc_id = hub.send(doc)
            assert [p.item_id for p in vxp.pending()] == [doc_id]
            out = io.BytesIO()
            vxp.fetch(doc_id, out)
            assert parse(out.getvalue(), validate=False).message.document_id == doc.document_id
            vxp.acknowledge(doc_id)
            assert [s.status_code for s in hub.statuses_since(None)] == ["01"]
        # the WSDL served over https names an https endpoint
        wsdl = requests.get(f"{server.url}/soap?wsdl", verify=pki["ca"], cert=cert, timeout=10).text
        assert f'location="{server.url}/soap"' in wsdl


def test_client_without_ca_bundle_gets_tls_error(tmp_path, pki):
    with _server(tmp_path, pki, mutual=False) as server:
        # verify=True: the system trust store, which does not hold the dev CA
        with _hub(server, H16, verify=True) as hub, _vxp(server, G22, verify=True) as vxp:
            with pytest.raises(TLSError) as hub_err:
                hub.check_permission()
            with pytest.raises(TLSError) as vxp_err:
                vxp.pending()
        for err in (hub_err.value, vxp_err.value):
            assert isinstance(err, PermanentAxisError) and not isinstance(err, RetryableAxisError)
            assert "certificate" in str(err).lower()


def test_tls_error_is_not_retried(tmp_path, pki):
    with _server(tmp_path, pki, mutual=False) as server:
        client = VxpAxis(server.url, G22, _creds(server)[G22].secret, verify=True, retries=3, backoff=5.0, timeout=10)
        with client:
            with pytest.raises(TLSError):
                client.directory()  # a safe read: would sleep for retries if it were retryable


def test_mutual_tls_refuses_a_client_without_certificate(tmp_path, pki):
    with _server(tmp_path, pki, mutual=True) as server:
        with _hub(server, H16, verify=pki["ca"]) as hub, _vxp(server, G22, verify=pki["ca"]) as vxp:
            with pytest.raises(TLSError):
                hub.check_permission()
            with pytest.raises(TLSError):
                vxp.pending()
            assert server.store.counts()["documents"] == {}
        # and the server keeps serving clients that do present one
        with _vxp(server, G22, verify=pki["ca"], cert=pki["client"]) as vxp:
            assert vxp.pending() == []


def test_tls_settings_are_checked(tmp_path, pki):
    cert, key = pki["server"]
    with pytest.raises(ValueError):
        SandboxServer(tmp_path / "a", tls_cert=cert)
    with pytest.raises(ValueError):
        SandboxServer(tmp_path / "b", client_ca=pki["ca"])


def _odd_server_certificate(tmp_path, *, san: list, days: tuple[int, int]) -> tuple:
    """A server certificate from the dev issuing CA with the given names and validity (in days from now)."""
    import datetime as dt
    import ipaddress  # noqa: F401 - used by callers' SAN lists

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from connector.signing.devpki import issue_certificate

    pki = create_dev_pki(tmp_path / "pki")
    now = dt.datetime.now(dt.timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = issue_certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd server")]),
        key.public_key(),
        pki.issuing_ca.certificate,
        pki.issuing_ca.private_key(),
        not_before=now + dt.timedelta(days=days[0]),
        not_after=now + dt.timedelta(days=days[1]),
        key_usage=("digital_signature", "key_encipherment"),
        extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        san=san,
    )
    cert_path, key_path = tmp_path / "odd.pem", tmp_path / "odd.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.chain_path.read_bytes())
    return cert_path, key_path, str(bundle)


@pytest.mark.parametrize(
    "case, san, days, words",
    [
        # the axis URL names 127.0.0.1, the certificate another host: a redirected or spoofed endpoint
        ("hostname-mismatch", ["axis.example.vn"], (-1, 365), ("mismatch",)),
        ("expired", ["localhost", "127.0.0.1"], (-30, -1), ("expired",)),
        ("not-yet-valid", ["localhost", "127.0.0.1"], (2, 365), ("not yet valid",)),
    ],
)
def test_a_server_certificate_that_does_not_fit_is_a_permanent_tls_error(tmp_path, case, san, days, words):
    import ipaddress

    from cryptography import x509

    names = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in san]
    cert, key, bundle = _odd_server_certificate(tmp_path, san=names, days=days)
    with SandboxServer(tmp_path / "data", tls_cert=cert, tls_key=key, seed=1) as server:
        with _hub(server, H16, verify=bundle) as hub, _vxp(server, G22, verify=bundle) as vxp:
            with pytest.raises(TLSError) as hub_err:
                hub.check_permission()
            with pytest.raises(TLSError) as vxp_err:
                vxp.pending()
        assert server.store.counts()["documents"] == {}
    for err in (hub_err.value, vxp_err.value):
        assert isinstance(err, PermanentAxisError) and not isinstance(err, RetryableAxisError)
        message = str(err).lower()
        assert any(w in message for w in words), message
        assert "connectionpool" not in message  # the verifier's reason, not the HTTP pool's wrapper
