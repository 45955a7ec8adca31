"""Where the signer puts the Signature, on both of its paths (small: one build; large: two passes)."""

from __future__ import annotations

import pytest
from lxml import etree

from connector.edxml.build import DECLARATION
from connector.edxml.model import NS
from connector.edxml.samples import sample_edoc
from connector.signing import sign as sign_module
from connector.signing.dsig import DSIG_NS
from connector.signing.keys import load_signing_key
from connector.signing.verify import TrustOptions, verify


@pytest.fixture(scope="module")
def key(dev_pki):
    agency = dev_pki.agencies["000.00.00.H16"]
    return load_signing_key(
        {"type": "pem", "key": str(agency.key_path), "cert": str(agency.cert_path), "chain": str(dev_pki.chain_path)}
    )


@pytest.mark.parametrize("path", ["one-build", "two-pass"])
def test_signature_is_the_last_child_of_the_header(path, key, tmp_path, trust_store, monkeypatch):
    if path == "two-pass":
        monkeypatch.setattr(sign_module, "IN_MEMORY_BELOW", 0)
    out = tmp_path / "signed.edxml"
    sign_module.sign(sample_edoc(), key, out)
    data = out.read_bytes()
    assert data.startswith(DECLARATION)
    header = etree.fromstring(data).find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader")
    children = [c for c in header if isinstance(c.tag, str)]
    assert [etree.QName(c).localname for c in children] == ["MessageHeader", "TraceHeaderList", "Signature"]
    assert etree.QName(children[-1]).namespace == DSIG_NS
    certificates = children[-1].findall(f".//{{{DSIG_NS}}}X509Certificate")
    assert len(certificates) == 2  # the signer and the issuing CA; never the root
    with verify(out, TrustOptions(trust_store)) as result:
        assert result.verdict.status == "valid", result.verdict.describe()
        assert result.verdict.signing_time is not None
