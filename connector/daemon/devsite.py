"""A development site: connector configurations wired to a local sandbox and the dev PKI.

The demo (``make run``) and the reliability tests use it to stand up agencies on one machine:
each gets a folder with its TOML configuration, secrets in files (never in the TOML), its
data folder and folder-based DMS stand-ins (``dms/outbox`` for documents to send,
``dms/inbox`` where received documents appear, ``dms/statuses`` for statuses on what it sent).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..signing.devpki import DevPki


@dataclass(frozen=True)
class SiteAgency:
    code: str
    name: str
    binding: str  # "soap" | "vxp"
    folder: Path

    @property
    def config_path(self) -> Path:
        return self.folder / "connector.toml"

    @property
    def dms(self) -> Path:
        return self.folder / "dms"

    @property
    def outbox(self) -> Path:
        return self.dms / "outbox"

    @property
    def inbox(self) -> Path:
        return self.dms / "inbox"

    @property
    def statuses(self) -> Path:
        return self.dms / "statuses"

    @property
    def database(self) -> Path:
        return self.folder / "data" / "connector.db"


def _q(value: object) -> str:
    """A TOML value (JSON strings, numbers and booleans are valid TOML)."""
    return json.dumps(str(value) if isinstance(value, Path) else value, ensure_ascii=False)


def write_site_config(
    folder: Path,
    *,
    code: str,
    name: str,
    binding: str,
    sandbox_url: str,
    credentials: dict,
    pki: DevPki,
    database_url: str | None = None,
    ops_port: int | None = None,
    send_every_s: float = 0.5,
    poll_every_s: float = 1.0,
    retry_schedule: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0),
    max_attempts: int = 50,
    extra: str = "",
    inbox: Path | None = None,
    data_dir: Path | None = None,
    instance_id: str | None = None,
) -> SiteAgency:
    """Write ``folder/connector.toml`` (and the secret files) for one agency; returns its layout."""
    folder.mkdir(parents=True, exist_ok=True)
    site = SiteAgency(code, name, binding, folder)
    secrets = folder / "secrets"
    secrets.mkdir(exist_ok=True)
    for key in ("token", "secret"):
        path = secrets / key
        path.write_text(credentials[key], encoding="utf-8")
        os.chmod(path, 0o600)
    for sub in ("outbox", "inbox", "statuses"):
        (site.dms / sub).mkdir(parents=True, exist_ok=True)
    agency = pki.agencies[code]
    if binding == "soap":
        axis = f'binding = "soap"\nurl = {_q(sandbox_url + "/soap")}\ntoken = {_q("file:" + str(secrets / "token"))}\n'
    else:
        axis = f'binding = "vxp"\nurl = {_q(sandbox_url)}\nsecret = {_q("file:" + str(secrets / "secret"))}\n'
    text = f"""# Development configuration for {code} ({name}): written by the demo, safe to read.
[connector]
agency = {_q(code)}
name = {_q(name)}
data_dir = {_q(data_dir or "data")}
{f'database_url = {_q(database_url)}' if database_url else '# database_url: SQLite at data/connector.db'}
{f'instance_id = {_q(instance_id)}' if instance_id else '# instance_id: host:pid:random'}
clerk_name = "Văn thư"
clerk_department = "Văn phòng"

[axis]
{axis}timeout_s = 30
retries = 1

[signing]
key = {{ type = "pem", key = {_q(agency.key_path)}, cert = {_q(agency.cert_path)}, chain = {_q(pki.chain_path)} }}
trust_dir = {_q(pki.trust_dir)}
policy = "if-present"  # the SOAP hub carries fields, not the signed edXML: signatures do not survive it

[schedule]
send_every_s = {send_every_s}
poll_every_s = {poll_every_s}
intake_every_s = 0.5
seal_every_s = 5

[retry]
schedule_s = {list(retry_schedule)}
max_attempts = {max_attempts}
jitter = 0.2

[routing]
default = ["inbox"]
rules = [{{ kind = "status", to = ["statuses"] }}]

[routing.destinations.inbox]
type = "folder"
path = {_q(inbox or "dms/inbox")}

[routing.destinations.statuses]
type = "folder"
path = "dms/statuses"
keep_raw = false

[routing.intake]
folder = "dms"
settle_s = 0.2

[logging]
format = "console"
level = "INFO"
{f'''
[ops]
port = {ops_port}''' if ops_port is not None else ''}
{extra}"""
    site.config_path.write_text(text, encoding="utf-8")
    return site
