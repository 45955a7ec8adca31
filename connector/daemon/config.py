"""The configuration file: one TOML file, validated at start (pydantic).

An unknown key, a missing file or a bad value stops the start with a message naming the key
(``axis.url: ...``). Secrets (the hub token, the VXP secret, key passphrases) are never
written in the file: they are referenced as ``env:NAME`` or ``file:/path`` and read when
needed, and never logged. Relative paths are taken from the configuration file's folder.
``config/connector.example.toml`` documents every key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..routing.config import RoutingConfig


class ConfigError(Exception):
    """The configuration cannot be used; the text names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def read_secret(ref: str, what: str) -> str:
    """``env:NAME`` or ``file:/path`` -> the secret's text (stripped)."""
    if ref.startswith("env:"):
        value = os.environ.get(ref[4:])
        if value is None:
            raise ConfigError(f"{what}: environment variable {ref[4:]} is not set")
        return value.strip()
    if ref.startswith("file:"):
        try:
            return Path(ref[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {ref[5:]}: {exc.strerror}") from None
    raise ConfigError(f"{what}: write secrets as env:NAME or file:/path, never inline")


def _secret_ref(value: str | None) -> str | None:
    if value is not None and not value.startswith(("env:", "file:")):
        raise ValueError("write secrets as env:NAME or file:/path, never inline")
    return value


class ConnectorSection(_Strict):
    agency: str = Field(pattern=r"^[0-9A-Za-z]{3}\.[0-9A-Za-z]{2}\.[0-9A-Za-z]{2}\.[0-9A-Za-z]{3}$")
    name: str | None = None
    data_dir: Path = Path("data")
    database_url: str | None = None  # default: SQLite at data_dir/connector.db
    instance_id: str | None = None
    clerk_name: str | None = None  # the văn thư named in status messages
    clerk_email: str | None = None
    clerk_phone: str | None = None
    clerk_department: str | None = None


class AxisSection(_Strict):
    binding: Literal["soap", "vxp"]
    url: str
    organ_id: str | None = None  # the hub's OrganId / VXP's system id (default: connector.agency)
    token: str | None = None  # the hub's Token: env:NAME or file:/path
    secret: str | None = None  # the VXP HMAC secret: env:NAME or file:/path
    timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=2, ge=0)
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    _check_token = field_validator("token", "secret")(_secret_ref)


class SigningSection(_Strict):
    key: dict[str, str] | None = None  # as connector.signing.keys.load_signing_key takes it
    trust_dir: Path = Path("certs/trust")
    revocation: Literal["off", "soft-fail", "hard-fail"] = "off"
    policy: Literal["require", "if-present", "record"] = "if-present"
    senders: dict[str, Literal["require", "if-present", "record"]] = Field(default_factory=dict)
    allow_weak: list[str] = Field(default_factory=list)  # sender patterns allowed SHA-1 / short RSA


class ScheduleSection(_Strict):
    send_every_s: float = Field(default=2.0, gt=0)
    poll_every_s: float = Field(default=10.0, gt=0)
    intake_every_s: float = Field(default=2.0, gt=0)
    directory_every_s: float = Field(default=3600.0, gt=0)
    seal_every_s: float = Field(default=60.0, gt=0)
    misfire_grace_s: float = Field(default=30.0, gt=0)


class RetrySection(_Strict):
    schedule_s: list[float] = Field(default_factory=lambda: [5, 30, 120, 600, 1800], min_length=1)
    max_attempts: int = Field(default=10, ge=1)
    max_age_h: float = Field(default=72.0, gt=0)
    jitter: float = Field(default=0.2, ge=0, lt=1)


class OpsSection(_Strict):
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)  # None: no health/metrics endpoint


class LoggingSection(_Strict):
    format: Literal["console", "json"] = "console"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AuditSection(_Strict):
    enabled: bool = True
    tsa_url: str | None = None
    tsa_ca: Path | None = None
    fail_closed_after_s: float | None = Field(default=None, gt=0)
    archive_dir: Path | None = None  # default: data_dir/audit-archive
    archive_after_days: float = Field(default=30.0, gt=0)  # sealed entries older than this move to archive files


class Config(_Strict):
    connector: ConnectorSection
    axis: AxisSection
    signing: SigningSection = Field(default_factory=SigningSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    retry: RetrySection = Field(default_factory=RetrySection)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    ops: OpsSection = Field(default_factory=OpsSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    audit: AuditSection = Field(default_factory=AuditSection)

    source: Path | None = Field(default=None, exclude=True)

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else self.base_dir / value

    @property
    def data_dir(self) -> Path:
        return self.path(self.connector.data_dir)

    @property
    def database_url(self) -> str:
        return self.connector.database_url or f"sqlite:///{self.data_dir / 'connector.db'}"


def load_config(path: str | Path) -> Config:
    """Read and check the TOML file at ``path``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(data, path)


def config_from_dict(data: dict[str, Any], source: Path | None = None) -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from None
    config.source = source.resolve() if source else None
    config.routing = config.routing.resolved(config.base_dir)
    return config


def _explain(exc: ValidationError, source: Path | None) -> str:
    where = f"{source}: " if source else ""
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}{key}: unknown key")
        elif error["type"] == "missing":
            lines.append(f"{where}{key}: required key is missing")
        elif _is_secret(key):
            lines.append(f"{where}{key}: {error['msg']}")  # never echo what might be a secret
        else:
            lines.append(f"{where}{key}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)


def _is_secret(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].lower()
    return any(word in last for word in ("token", "secret", "passphrase", "password", "pin", "key"))
