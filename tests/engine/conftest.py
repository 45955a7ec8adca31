"""Two agencies wired to a real sandbox on loopback, each with an in-process engine over its
own database (SQLite by default), the dev PKI's keys, and folder DMS stand-ins."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.daemon.config import load_config
from connector.daemon.devsite import SiteAgency, write_site_config
from connector.daemon.runtime import Runtime, open_runtime
from connector.edxml.jsonform import to_json
from connector.edxml.samples import sample_edoc
from connector.signing.keys import KeyUnavailableError

H16, G22 = "000.00.00.H16", "000.00.00.G22"


@dataclass
class Side:
    site: SiteAgency
    rt: Runtime

    @property
    def engine(self):
        return self.rt.engine

    @property
    def store(self):
        return self.rt.store


@pytest.fixture
def make_side(tmp_path, sandbox, dev_pki):
    opened: list[Runtime] = []
    creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}

    def make(code: str, binding: str, *, database_url: str | None = None, extra: str = "", audit: bool = False,
             folder: str | None = None, inbox: Path | None = None, data_dir: Path | None = None) -> Side:
        site = write_site_config(
            tmp_path / (folder or code), code=code, name=code, binding=binding, sandbox_url=sandbox.url,
            credentials=creds[code], pki=dev_pki, database_url=database_url,
            retry_schedule=(0.0,), max_attempts=3,
            extra=extra + ("" if audit else "\n[audit]\nenabled = false\n"), inbox=inbox, data_dir=data_dir,
        )
        rt = open_runtime(load_config(site.config_path))
        opened.append(rt)
        return Side(site, rt)

    yield make
    for rt in opened:
        rt.close()


def submit_sample(side: Side, recipient: str, number: int) -> tuple[str, str]:
    doc = sample_edoc(side.site.code, recipient, number)
    data = to_json(doc)
    pdf = doc.attachments[0]
    data["attachments"], data["manifest"] = [], []
    folder = side.site.folder / "drops" / str(number)
    folder.mkdir(parents=True)
    path = folder / pdf.name
    with pdf.data.open() as src:
        path.write_bytes(src.read())
    return side.engine.submit(data, [path]), doc.document_id


def rounds(*sides: Side, times: int = 4) -> None:
    for _ in range(times):
        for side in sides:
            side.engine.run_once()


def inbox_docs(side: Side) -> list[Path]:
    return sorted(p for p in side.site.inbox.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture
def pg_url_pair(postgres_server) -> tuple[str, str]:
    """Two fresh PostgreSQL databases (one per agency; instances of one agency share one)."""
    return postgres_server.new_database(), postgres_server.new_database()


class TokenOut:
    """A signing key whose token is out: every signature fails as a PKCS#11 key fails then."""

    def __init__(self, key):
        self._key = key

    def __getattr__(self, name):
        return getattr(self._key, name)

    def sign(self, data: bytes) -> bytes:
        raise KeyUnavailableError("pkcs11", "token 'edoc' is not present (removed?)")
