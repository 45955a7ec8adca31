"""Routing configuration: named destinations, ordered rules, a default route, and intake.

Plain pydantic v2 models (``extra="forbid"``), so the daemon's TOML loader can embed
:class:`RoutingConfig` as its ``[routing]`` table and a typo is an error that names the key.
:func:`load_routing` validates a dict and resolves relative paths against the folder of the
file it came from.

Secrets are never written in the configuration: a token or password is referenced by the name
of an environment variable (``token_env``) or a file (``token_file``) and read only when it is
used (:func:`resolve_secret`), so rotating it needs no reload and it never sits in a config dump.

Example (TOML)::

    [routing.destinations.vanthu-folder]
    type = "folder"
    path = "/srv/dms/inbox"

    [routing.destinations.dms-api]
    type = "webhook"
    url = "https://dms.local/api/edoc"
    auth = "bearer"
    token_env = "DMS_TOKEN"

    [[routing.rules]]
    recipient = "*.H16"          # UBND tỉnh Đắk Nông and its whole department tree
    kind = "edoc"
    to = ["dms-api", "vanthu-folder"]

    [routing]
    default = ["vanthu-folder"]
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..redact import http_url_problem, redact_url

__all__ = [
    "DestinationConfig",
    "FolderDestinationConfig",
    "IntakeConfig",
    "IntakeHttpConfig",
    "RoutingConfig",
    "RoutingConfigError",
    "RuleConfig",
    "SecretError",
    "SqlDestinationConfig",
    "WebhookDestinationConfig",
    "folder_problems",
    "not_a_folder",
    "format_validation_error",
    "load_routing",
    "resolve_secret",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _error(message: str) -> PydanticCustomError:
    """A validation error whose text is shown as written (no "Value error, " prefix)."""
    return PydanticCustomError("routing_config", message)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_env_name(value: str | None) -> str | None:
    """The value is never repeated: a secret pasted here instead of a name must not be shown."""
    if value is not None and not _ENV_RE.match(value):
        raise _error(
            "not a valid environment variable name (letters, digits and _, not starting with a digit); "
            "it looks like a secret was pasted instead of a variable name: give the name of the variable "
            "that holds it"
        )
    return value


def _one_secret(env: str | None, file: Path | None, what: str, env_key: str, file_key: str, needed: bool) -> None:
    if env and file:
        raise _error(f"{what}: give {env_key} or {file_key}, not both")
    if needed and not (env or file):
        raise _error(f"{what}: {env_key} (an environment variable name) or {file_key} (a file path) is required")
    if not needed and (env or file):
        raise _error(f"{env_key}/{file_key} given but not used here")


# --------------------------------------------------------------------------- destinations


class FolderDestinationConfig(_Model):
    """One directory per document under ``path`` (see :mod:`.folder_delivery`)."""

    type: Literal["folder"]
    path: Path
    keep_raw: bool = True


class WebhookDestinationConfig(_Model):
    """A multipart POST to the DMS (see :mod:`.webhook_delivery`)."""

    type: Literal["webhook"]
    url: str
    auth: Literal["none", "bearer", "basic", "tls"] = "none"
    token_env: str | None = None
    token_file: Path | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    ca_bundle: Path | None = None
    timeout_s: float = Field(30.0, gt=0, le=3600)
    retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(1.0, ge=0, le=600)
    include_raw: bool = True

    _env = field_validator("token_env", "password_env")(_check_env_name)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        problem = http_url_problem(
            value, 'use auth = "basic" with username and password_env/password_file, or a token'
        )
        if problem:
            raise _error(problem)
        return value

    @model_validator(mode="after")
    def _auth(self) -> WebhookDestinationConfig:
        _one_secret(self.token_env, self.token_file, f"auth {self.auth!r}", "token_env", "token_file", self.auth == "bearer")
        basic = self.auth == "basic"
        if basic and not self.username:
            raise _error("auth \"basic\" needs username")
        if not basic and self.username:
            raise _error(f"username given but auth is {self.auth!r}")
        _one_secret(self.password_env, self.password_file, "auth \"basic\"", "password_env", "password_file", basic)
        tls = self.auth == "tls"
        if tls and not (self.client_cert and self.client_key):
            raise _error("auth \"tls\" needs client_cert and client_key (PEM files)")
        if not tls and (self.client_cert or self.client_key):
            raise _error(f"client_cert/client_key given but auth is {self.auth!r}")
        return self


class SqlDestinationConfig(_Model):
    """Rows in the DMS's database tables (see :mod:`.sql_delivery`).

    ``url`` is a SQLAlchemy URL without a password (``postgresql+psycopg://dms@db/dms``); the
    password comes from ``password_env`` or ``password_file``. ``attachments = "path"`` copies
    the files under ``path_root`` and stores their paths; ``"bytea"`` stores the bytes in the
    row (one attachment at a time in memory, at most ``max_inline_bytes``). ``timeout_s``
    bounds connecting, each statement and each wait for a lock (PostgreSQL), or the wait for a
    locked database (SQLite): a DMS transaction holding the table must not hang delivery.
    """

    type: Literal["sql"]
    url: str
    password_env: str | None = None
    password_file: Path | None = None
    table: str = "edoc_documents"
    attachments: Literal["bytea", "path"] = "bytea"
    attachments_table: str = "edoc_attachments"
    path_root: Path | None = None
    max_inline_bytes: int = Field(64 * 1024**2, gt=0)
    timeout_s: float = Field(30.0, gt=0, le=3600)

    _env = field_validator("password_env")(_check_env_name)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        shown = redact_url(value)
        try:
            url = make_url(value)
            url.port  # noqa: B018 - a non-numeric port only fails when read
        except (ArgumentError, ValueError):
            raise _error(f"not a database URL: {shown!r} (expected e.g. postgresql+psycopg://user@host/db)") from None
        if url.password or url.query.keys() & {"password", "sslpassword"}:
            raise _error(f"the URL must not carry a password; use password_env or password_file (got {shown!r})")
        return value

    @field_validator("table", "attachments_table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENT_RE.match(value):
            raise _error(f"{value!r} is not a plain table name (letters, digits, _; optionally schema.table)")
        return value

    @model_validator(mode="after")
    def _paths(self) -> SqlDestinationConfig:
        if self.password_env and self.password_file:
            raise _error("give password_env or password_file, not both")
        if self.attachments == "path" and self.path_root is None:
            raise _error("attachments = \"path\" needs path_root (the folder the files are copied to)")
        if self.attachments == "bytea" and self.path_root is not None:
            raise _error("path_root given but attachments is \"bytea\"")
        return self


DestinationConfig = Annotated[
    FolderDestinationConfig | WebhookDestinationConfig | SqlDestinationConfig,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- rules


class RuleConfig(_Model):
    """One routing rule: every criterion given must match; a list matches any of its entries.

    ``recipient`` and ``sender`` are agency codes, exact or with ``*`` (``000.00.*``, ``*.H16``);
    ``document_type`` is the type name (``Công văn``; case and Unicode composition ignored,
    ``*`` allowed); ``priority`` is 0-4.
    """

    name: str | None = None
    recipient: str | list[str] | None = None
    sender: str | list[str] | None = None
    kind: Literal["edoc", "status"] | None = None
    document_type: str | list[str] | None = None
    priority: int | list[int] | None = None
    to: list[str] = Field(min_length=1)

    @field_validator("recipient", "sender", "document_type")
    @classmethod
    def _patterns(cls, value: str | list[str] | None) -> str | list[str] | None:
        items = [value] if isinstance(value, str) else (value or [])
        if isinstance(value, list) and not value:
            raise _error("an empty list matches nothing; leave the key out to match anything")
        for item in items:
            if not item.strip():
                raise _error("a pattern must not be empty")
        return value

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: int | list[int] | None) -> int | list[int] | None:
        items = [value] if isinstance(value, int) else (value or [])
        if isinstance(value, list) and not value:
            raise _error("an empty list matches nothing; leave the key out to match anything")
        for item in items:
            if not 0 <= item <= 9:
                raise _error(f"priority {item} is out of range (0 normal ... 4 hỏa tốc hẹn giờ)")
        return value


# --------------------------------------------------------------------------- intake


class IntakeHttpConfig(_Model):
    """The local HTTP API the DMS posts documents and statuses to (loopback by default)."""

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    token_env: str | None = None
    token_file: Path | None = None
    max_body_bytes: int = Field(2 * 1024**3, gt=0)
    # HTTPS: the server's certificate (PEM, may carry its chain) and key; with tls_client_ca a
    # DMS must also present a client certificate issued under that CA bundle (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    _env = field_validator("token_env")(_check_env_name)

    @model_validator(mode="after")
    def _token(self) -> IntakeHttpConfig:
        _one_secret(self.token_env, self.token_file, "the intake API's token", "token_env", "token_file", True)
        return self

    @model_validator(mode="after")
    def _tls(self) -> IntakeHttpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("HTTPS needs both tls_cert and tls_key (or neither, for plain HTTP)")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (client certificates) needs HTTPS: set tls_cert and tls_key too")
        return self


class IntakeConfig(_Model):
    """Where outbound documents come from: a watched folder and/or the local HTTP API."""

    folder: Path | None = None
    settle_s: float = Field(2.0, ge=0, le=3600)
    max_file_bytes: int = Field(1024**3, gt=0)
    http: IntakeHttpConfig | None = None


# --------------------------------------------------------------------------- the whole


class RoutingConfig(_Model):
    """Destinations by name, rules in order (first match wins), the default route, intake.

    An empty ``default`` means a document no rule matches is unroutable (quarantined).
    ``status_folder`` is where the DMS drops status reports, when not ``<intake.folder>/status``.
    """

    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)
    default: list[str] = Field(default_factory=list)
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    status_folder: Path | None = None

    @model_validator(mode="after")
    def _names(self) -> RoutingConfig:
        for name in self.destinations:
            if not _NAME_RE.match(name):
                raise _error(
                    f"destinations: {name!r} is not a usable destination name (letters, digits, . _ -; at most 64)"
                )
        known = ", ".join(sorted(self.destinations)) or "none defined"
        for index, rule in enumerate(self.rules):
            for target in rule.to:
                if target not in self.destinations:
                    raise _error(f"rules[{index}].to: unknown destination {target!r} (known: {known})")
        for target in self.default:
            if target not in self.destinations:
                raise _error(f"default: unknown destination {target!r} (known: {known})")
        return self

    def resolved(self, base_dir: Path) -> RoutingConfig:
        """A copy with every relative path made absolute against ``base_dir`` (``~`` expanded)."""
        return _resolve_paths(self, Path(base_dir))


def _resolve_paths(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        value = value.expanduser()
        return value if value.is_absolute() else (base / value).absolute()
    if isinstance(value, BaseModel):
        updates = {}
        for key in type(value).model_fields:
            current = getattr(value, key)
            new = _resolve_paths(current, base)
            if new is not current:
                updates[key] = new
        return value.model_copy(update=updates) if updates else value
    if isinstance(value, dict):
        new_dict = {k: _resolve_paths(v, base) for k, v in value.items()}
        return new_dict if any(new_dict[k] is not value[k] for k in value) else value
    if isinstance(value, list):
        new_list = [_resolve_paths(v, base) for v in value]
        return new_list if any(a is not b for a, b in zip(new_list, value)) else value
    return value


def folder_problems(config: RoutingConfig) -> list[str]:
    """One ``key: problem`` line per configured folder that exists as something else than a
    folder (a file, or under a file), so it is refused at load, not at the first delivery.

    Takes a :meth:`RoutingConfig.resolved` config (absolute paths); a folder that does not
    exist yet is fine (it is created when needed)."""
    folders: list[tuple[str, Path | None]] = [
        ("intake.folder", config.intake.folder),
        ("status_folder", config.status_folder),
    ]
    for name, dest in config.destinations.items():
        if isinstance(dest, FolderDestinationConfig):
            folders.append((f"destinations.{name}.path", dest.path))
        elif isinstance(dest, SqlDestinationConfig):
            folders.append((f"destinations.{name}.path_root", dest.path_root))
    return [f"{key}: {problem}" for key, path in folders if path is not None and (problem := not_a_folder(path))]


def not_a_folder(path: Path) -> str | None:
    """Why ``path`` cannot be used as a folder (it, or a folder above it, is a file), or None."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return None
        if candidate.exists() or candidate.is_symlink():
            return f"{path} is not a folder" + ("" if candidate == path else f" ({candidate} is a file)")
    return None


class RoutingConfigError(ValueError):
    """The routing configuration is invalid; ``problems`` has one ``where: what`` line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid routing configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``key.path: message`` line per pydantic error (``rules[2].to``, ...)."""
    lines = []
    for err in exc.errors():
        where = prefix
        loc = list(err["loc"])
        if len(loc) > 2 and loc[0] == "destinations" and loc[2] in ("folder", "webhook", "sql"):
            del loc[2]  # the union's tag, already implied by the destination's "type"
        for part in loc:
            if isinstance(part, int):
                where += f"[{part}]"
            else:
                where += f".{part}" if where else str(part)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key missing"
        lines.append(f"{where or '(routing)'}: {message}")
    return lines


def load_routing(data: dict, base_dir: Path) -> RoutingConfig:
    """Validate ``data`` (the ``[routing]`` table) and resolve relative paths against ``base_dir``.

    Raises :class:`RoutingConfigError` listing every problem with its key path.
    """
    try:
        config = RoutingConfig.model_validate(data)
    except ValidationError as exc:
        raise RoutingConfigError(format_validation_error(exc)) from None
    config = config.resolved(base_dir)
    problems = folder_problems(config)
    if problems:
        raise RoutingConfigError(problems)
    return config


# --------------------------------------------------------------------------- secrets


class SecretError(ValueError):
    """A referenced secret cannot be read (the message names the variable or file, never a value)."""


def resolve_secret(env: str | None, file: Path | None, what: str) -> str:
    """The secret named by ``env`` (an environment variable) or ``file``, read now.

    ``what`` says what it is for ("bearer token of destination 'dms'"), for the error text.
    Surrounding whitespace (a trailing newline in a file) is removed.
    """
    if env:
        value = os.environ.get(env)
        if value is None:
            raise SecretError(f"{what}: environment variable {env} is not set")
        if not value.strip():
            raise SecretError(f"{what}: environment variable {env} is empty")
        return value.strip()
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SecretError(f"{what}: cannot read {file}: {reason}") from None
        if not value.strip():
            raise SecretError(f"{what}: file {file} is empty")
        return value.strip()
    raise SecretError(f"{what}: no environment variable or file is configured")
