"""The daemon's own health checks: the axis TLS client certificate's expiry and readability."""

from __future__ import annotations

from connector.daemon.runner import Daemon
from connector.signing.devpki import create_dev_pki


def test_axis_tls_certificate_check(tmp_path):
    pki = create_dev_pki(tmp_path / "pki")
    good = Daemon._tls_certificate_check(pki.tls_client.cert_path).fn()
    assert good.ok and "valid until" in good.detail
    expired = Daemon._tls_certificate_check(pki.expired.cert_path).fn()
    assert not expired.ok and "expired on" in expired.detail
    missing = Daemon._tls_certificate_check(tmp_path / "nope.pem").fn()
    assert not missing.ok and "nope.pem cannot be read" in missing.detail
