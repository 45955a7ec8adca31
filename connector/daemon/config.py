"""The configuration file: one TOML file, validated at start (pydantic).

An unknown key, a missing file or a bad value stops the start with a message naming the key
(``axis.url: ...``). Secrets (the hub token, the VXP secret, key passphrases) are never
written in the file: they are referenced as ``env:NAME`` or ``file:/path`` and read when
needed, and never logged. Relative paths are taken from the configuration file's folder.
``config/connector.example.toml`` documents every key.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from ..input_files import not_regular_reason
from ..redact import http_url_problem, redact_url
from ..routing.config import RoutingConfig, folder_problems, not_a_folder

DAY_S = 86400.0  # the longest scheduling interval: a job that runs less than daily is a mistake


class ConfigError(Exception):
    """The configuration cannot be used; the text names the file and the key."""


def config_error(source: Path | None, key: str, problem: str) -> ConfigError:
    """A :class:`ConfigError` in the one shape every configuration error has:
    ``FILE: section.key: problem`` (no ``FILE: `` when the configuration did not come from a
    file)."""
    return ConfigError(f"{source}: {key}: {problem}" if source else f"{key}: {problem}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


_OUR_ERROR = "connector_config"


def _error(message: str) -> PydanticCustomError:
    """A validation error shown as written: no "Value error, " prefix and no ``(got ...)``
    echo of the value (the message itself says what is wrong, redacted where needed)."""
    return PydanticCustomError(_OUR_ERROR, message)


def _check_http_url(value: str, purpose: str) -> str:
    """``value`` if it is an http(s) URL with a host, a valid port and no credentials."""
    problem = http_url_problem(value, purpose)
    if problem:
        raise _error(problem)
    return value


def read_secret(ref: str, what: str, source: Path | None = None) -> str:
    """``env:NAME`` or ``file:/path`` -> the secret's text (stripped). ``what`` is the key
    (``axis.token``); ``source``, the configuration file, starts the error text when given."""
    if ref.startswith("env:"):
        value = os.environ.get(ref[4:])
        if value is None:
            raise config_error(source, what, f"environment variable {ref[4:]} is not set")
        return value.strip()
    if ref.startswith("file:"):
        try:
            return Path(ref[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise config_error(source, what, f"cannot read {ref[5:]}: {exc.strerror}") from None
    raise config_error(source, what, "write secrets as env:NAME or file:/path, never inline")


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
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    retries: int = Field(default=2, ge=0, le=100)
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    _check_token = field_validator("token", "secret")(_secret_ref)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value, "the axis is authenticated by token (SOAP hub) or secret (VXP), never by the URL")

    def problems(self) -> list[str]:
        """``axis.key: problem`` for settings that only make sense together."""
        problems = []
        if (self.client_cert is None) != (self.client_key is None):
            given, missing = ("client_cert", "client_key") if self.client_cert else ("client_key", "client_cert")
            problems.append(f"axis.{given}: given without axis.{missing}; mutual TLS needs both "
                            "client_cert and client_key (PEM files)")
        if self.binding == "soap" and not self.token:
            problems.append("axis.token: the SOAP hub binding needs the hub's token (env:NAME or file:/path)")
        if self.binding == "vxp" and not self.secret:
            problems.append("axis.secret: the VXP binding needs the system's secret (env:NAME or file:/path)")
        return problems


class SigningSection(_Strict):
    key: dict[str, str] | None = None  # as connector.signing.keys.load_signing_key takes it
    trust_dir: Path = Path("certs/trust")
    revocation: Literal["off", "soft-fail", "hard-fail"] = "off"
    policy: Literal["require", "if-present", "record"] = "if-present"
    senders: dict[str, Literal["require", "if-present", "record"]] = Field(default_factory=dict)
    allow_weak: list[str] = Field(default_factory=list)  # sender patterns allowed SHA-1 / short RSA


class ScheduleSection(_Strict):
    """Intervals in seconds: finite, positive, at most one day (:data:`DAY_S`)."""

    send_every_s: float = Field(default=2.0, gt=0, le=DAY_S)
    poll_every_s: float = Field(default=10.0, gt=0, le=DAY_S)
    intake_every_s: float = Field(default=2.0, gt=0, le=DAY_S)
    directory_every_s: float = Field(default=3600.0, gt=0, le=DAY_S)
    seal_every_s: float = Field(default=60.0, gt=0, le=DAY_S)
    misfire_grace_s: float = Field(default=30.0, gt=0, le=DAY_S)


MAX_RETRY_DELAY_S = 7 * DAY_S


class RetrySection(_Strict):
    schedule_s: list[float] = Field(default_factory=lambda: [5, 30, 120, 600, 1800], min_length=1)
    max_attempts: int = Field(default=10, ge=1, le=1_000_000)
    max_age_h: float = Field(default=72.0, gt=0, le=24 * 3650)
    jitter: float = Field(default=0.2, ge=0, lt=1)

    @field_validator("schedule_s", mode="before")
    @classmethod
    def _delays(cls, value: Any) -> Any:
        """Each delay: a number of seconds from 0 to a week (the engine's RetryPolicy would
        refuse a negative one only when the daemon starts, as an unexpected error)."""
        if isinstance(value, list):
            for index, delay in enumerate(value):
                ok = isinstance(delay, (int, float)) and not isinstance(delay, bool)
                if not ok or not (math.isfinite(delay) and 0 <= delay <= MAX_RETRY_DELAY_S):
                    raise _error(
                        f"delay #{index + 1} must be a number of seconds from 0 to {MAX_RETRY_DELAY_S:.0f} "
                        f"(one week), got {delay!r}"
                    )
        return value


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
    fail_closed_after_s: float | None = Field(default=None, gt=0, le=365 * DAY_S)
    archive_dir: Path | None = None  # default: data_dir/audit-archive
    archive_after_days: float = Field(default=30.0, gt=0, le=36500)  # sealed entries older than this move to archive files

    @field_validator("tsa_url")
    @classmethod
    def _tsa_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "a time-stamping authority is reached without them")


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

    def error(self, key: str, problem: str) -> ConfigError:
        """A :class:`ConfigError` about ``key`` that starts with this configuration's file."""
        return config_error(self.source, key, problem)


def load_config(path: str | Path) -> Config:
    """Read and check the TOML file at ``path``."""
    path = Path(path)
    odd = not_regular_reason(path)
    if odd:  # reading a FIFO or a device would block or never end
        raise ConfigError(f"configuration file {path} is {odd}")
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
    problems = _file_problems(config)
    if problems:
        where = f"{source}: " if source else ""
        raise ConfigError("\n".join(where + problem for problem in problems))
    return config


def _file_problems(config: Config) -> list[str]:
    """``key: problem`` for every file, folder or database URL the configuration names that
    cannot be what it should be, found now rather than as an unexpected error at first use.
    A folder that does not exist yet is fine (it is created); a file must exist."""
    from ..store.db import DatabaseError, check_url

    problems = config.axis.problems()
    if config.audit.enabled and config.audit.tsa_url and not config.signing.key:
        problems.append("audit.tsa_url: a time-stamping authority needs a signing key ([signing] key): "
                        "time-stamps cover the batches' signatures")
    for key, path in (
        ("connector.data_dir", config.data_dir),
        ("signing.trust_dir", config.path(config.signing.trust_dir)),
        ("audit.archive_dir", config.path(config.audit.archive_dir) if config.audit.archive_dir else None),
    ):
        if path is not None and (problem := not_a_folder(path)):
            problems.append(f"{key}: {problem}")
    a = config.axis
    for key, value in (("axis.ca_bundle", a.ca_bundle), ("axis.client_cert", a.client_cert),
                       ("axis.client_key", a.client_key), ("audit.tsa_ca", config.audit.tsa_ca)):
        if value is not None and (problem := _not_a_file(config.path(value))):
            problems.append(f"{key}: {problem}")
    http = config.routing.intake.http
    if http is not None:
        for key in ("tls_cert", "tls_key", "tls_client_ca"):
            value = getattr(http, key)
            if value is not None and (problem := _not_a_file(config.path(value))):
                problems.append(f"routing.intake.http.{key}: {problem}")
    if config.audit.tsa_ca is not None and not any(p.startswith("audit.tsa_ca:") for p in problems):
        problems.extend(_tsa_ca_problem(config.path(config.audit.tsa_ca)))
    problems.extend(f"routing.{problem}" for problem in folder_problems(config.routing))
    if config.connector.database_url is not None:
        try:
            check_url(config.connector.database_url)
        except DatabaseError as exc:  # the text shows the URL with its password as ***
            problems.append(f"connector.database_url: {exc}")
    return problems


def _not_a_file(path: Path) -> str | None:
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    return None


def _tsa_ca_problem(path: Path) -> list[str]:
    from ..audit.tsa import TsaError, load_ca_certs

    try:
        load_ca_certs(path)
    except TsaError as exc:
        return [f"audit.tsa_ca: {exc}"]
    return []


_UNION_TAGS = ("folder", "webhook", "sql")


def _explain(exc: ValidationError, source: Path | None) -> str:
    where = f"{source}: " if source else ""
    lines = []
    for error in exc.errors():
        loc = list(error["loc"])
        if len(loc) > 3 and loc[:2] == ["routing", "destinations"] and loc[3] in _UNION_TAGS:
            del loc[3]  # the union's tag, already implied by the destination's "type"
        key = ".".join(str(p) for p in loc)
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}{key}: unknown key")
        elif error["type"] == "missing":
            lines.append(f"{where}{key}: required key is missing")
        elif error["type"] in (_OUR_ERROR, "routing_config") or _is_secret(key):
            lines.append(f"{where}{key}: {error['msg']}")  # says it all; never echo what might be a secret
        else:
            lines.append(f"{where}{key}: {error['msg']}{_shown_input(error.get('input'))}")
    return "\n".join(lines)


def _shown_input(value: Any) -> str:
    """`` (got ...)`` for a plain value, redacted and shortened; nothing for a table or list
    (a whole section dumped into one line helps nobody and may hold secrets)."""
    if isinstance(value, (dict, list, tuple)) or value is None:
        return ""
    text = redact_url(value) if isinstance(value, str) else value
    shown = repr(text)
    return f" (got {shown[:200]}{'...' if len(shown) > 200 else ''})"


def _is_secret(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].lower()
    return any(word in last for word in ("token", "secret", "passphrase", "password", "pin", "key"))
