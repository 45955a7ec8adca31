"""Fixtures for the audit-log tests: a development PKI with a TSA certificate, signing keys of
each algorithm, a real TSA on loopback (openssl ts behind WsgiServer), and fresh logs on
SQLite (a file in tmp_path) or PostgreSQL (``pg_url``)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from connector.audit import AuditLog, Sealer, TsaClient, create_tables
from connector.signing.devpki import (
    DOCUMENT_SIGNING_EKU,
    DevPki,
    agency_name,
    create_dev_pki,
    issue_certificate,
)
from connector.signing.keys import SigningKey, SoftwareKey, load_signing_key
from connector.store.evidence import EvidenceStore
from tests.audit.helpers import Env, sqlite_engine
from tests.audit.tsa_server import (
    TestTsa,
    TsaCredential,
    TsaServer,
    issue_tsa_certificate,
)

H16 = "000.00.00.H16"


@dataclass(frozen=True)
class AuditPki:
    pki: DevPki
    tsa: TsaCredential
    rogue_tsa: TsaCredential
    ec_cert: x509.Certificate
    ec_key: ec.EllipticCurvePrivateKey

    @property
    def tsa_ca(self) -> list[x509.Certificate]:
        """The CA certificates a TSA answer must chain to (issuing CA + root)."""
        return [self.pki.issuing_ca.certificate, self.pki.root_ca.certificate]


@pytest.fixture(scope="session")
def audit_pki(tmp_path_factory: pytest.TempPathFactory) -> AuditPki:
    folder = tmp_path_factory.mktemp("audit-pki")
    pki = create_dev_pki(folder / "pki", agencies={H16: "UBND tỉnh Đắk Nông"})
    issuing_key = pki.issuing_ca.private_key()
    tsa = issue_tsa_certificate(folder / "tsa", pki.issuing_ca.certificate, issuing_key)  # type: ignore[arg-type]
    rogue = issue_tsa_certificate(folder / "rogue-tsa", None, None, name="Rogue TSA")
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_certificate(agency_name(H16, "UBND tỉnh Đắk Nông"), key.public_key(), pki.issuing_ca.certificate,
                             issuing_key, not_before=now - dt.timedelta(days=1),  # type: ignore[arg-type]
                             not_after=now + dt.timedelta(days=365),
                             key_usage=("digital_signature", "content_commitment"),
                             extended_key_usage=[DOCUMENT_SIGNING_EKU])
    return AuditPki(pki, tsa, rogue, cert, key)


@pytest.fixture(scope="session")
def signing_keys(audit_pki: AuditPki) -> dict[str, SigningKey]:
    """The connector's key in each algorithm the log can seal with."""
    agency = audit_pki.pki.agencies[H16]
    base = {"type": "pem", "key": str(agency.key_path), "cert": str(agency.cert_path),
            "chain": str(audit_pki.pki.chain_path)}
    chain = [audit_pki.pki.issuing_ca.certificate, audit_pki.pki.root_ca.certificate]
    return {
        "rsa-sha256": load_signing_key(base),
        "rsa-pss-sha256": load_signing_key({**base, "algorithm": "rsa-pss-sha256"}),
        "ecdsa-sha256": SoftwareKey(audit_pki.ec_key, audit_pki.ec_cert, chain),
    }


@pytest.fixture(scope="session")
def tsa_session(audit_pki: AuditPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TsaServer]:
    app = TestTsa(tmp_path_factory.mktemp("tsa-run"), audit_pki.tsa, audit_pki.rogue_tsa)
    server = TsaServer(app)
    yield server
    server.stop()


@pytest.fixture
def tsa_server(tsa_session: TsaServer) -> Iterator[TsaServer]:
    tsa_session.app.mode = "ok"
    yield tsa_session
    tsa_session.app.mode = "ok"


_counter = itertools.count()


@pytest.fixture
def make_env(tmp_path: Path, signing_keys: dict[str, SigningKey], tsa_session: TsaServer,
             audit_pki: AuditPki) -> Iterator[Callable[..., Env]]:
    made: list[Env] = []

    def make(url: str | None = None, *, key: str | None = "rsa-sha256", tsa: bool = False,
             tsa_url: str | None = None, fail_closed_after: dt.timedelta | None = None,
             clock: Callable[[], dt.datetime] | None = None, actor: str = "connector-1") -> Env:
        root = tmp_path / f"env{next(_counter)}"
        root.mkdir()
        if url is None:
            url = f"sqlite:///{root / 'audit.db'}"
            engine = sqlite_engine(root / "audit.db")
        else:
            engine = sa.create_engine(url)
        create_tables(engine)
        client = TsaClient(tsa_url or tsa_session.url, 10, audit_pki.tsa_ca) if (tsa or tsa_url) else None
        log = AuditLog(engine, EvidenceStore(root / "evidence"), actor=actor,
                       sealer=Sealer(signing_keys[key]) if key else None, tsa=client,
                       fail_closed_after=fail_closed_after, clock=clock)
        env = Env(engine, log.evidence, log, root, url)
        made.append(env)
        return env

    yield make
    for env in made:
        env.engine.dispose()
