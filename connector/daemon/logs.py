"""One logging setup for the whole process (stdlib :mod:`logging`, no extra dependency).

- :func:`setup_logging` installs a single handler on the root logger: JSON lines (for log
  shippers) or console lines (for people), on stderr by default, which journald collects.
- :func:`document_context` puts a document's ids in a context variable; every line logged
  inside it, by any logger in this thread or task, carries them (JSON: ``document_id``,
  ``tracking_id``, ``axis_id`` fields; console: a ``[doc=... tracking=... axis=...]`` suffix).
- Before anything is written, secrets are redacted: a field (``extra=``) or mapping argument
  whose name looks like a token, secret, passphrase, password or key material becomes
  ``***``, and so do PEM private-key blocks, ``name=value`` secrets, bearer tokens and URL
  passwords inside messages and exception text. Redaction is a safety net, not a licence:
  code still must not log secrets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from types import MappingProxyType
from typing import IO, Any, Literal

REDACTED = "***"
ID_FIELDS = ("document_id", "tracking_id", "axis_id")
_CONSOLE_TAGS = {"document_id": "doc", "tracking_id": "tracking", "axis_id": "axis"}

# Third-party loggers that are chatty at INFO (APScheduler logs every job run); quieted to
# WARNING unless the level is DEBUG.
_NOISY_LOGGERS = ("apscheduler.executors", "apscheduler.scheduler", "zeep", "urllib3")

_ids: ContextVar[Mapping[str, str]] = ContextVar("connector_log_ids", default=MappingProxyType({}))


@contextlib.contextmanager
def document_context(
    document_id: str | None = None, tracking_id: str | None = None, axis_id: str | None = None
) -> Iterator[None]:
    """Within the block, every log line carries the given ids. Nested blocks add to (and may
    override) the outer ids; ``None`` leaves an outer id in place."""
    given = {"document_id": document_id, "tracking_id": tracking_id, "axis_id": axis_id}
    token = _ids.set(MappingProxyType({**_ids.get(), **{k: str(v) for k, v in given.items() if v is not None}}))
    try:
        yield
    finally:
        _ids.reset(token)


def current_ids() -> dict[str, str]:
    """The ids set by the enclosing :func:`document_context` blocks (empty outside any)."""
    return dict(_ids.get())


# --------------------------------------------------------------------------- redaction

_SECRET_NAME = re.compile(
    r"token|secret|passphrase|passw(?:or)?d|pwd|credential|authorization|cookie|hmac|api_?key|private_?key"
    r"|(?:^|_)key(?:$|_pem|_bytes|_material|_data)",
    re.IGNORECASE,
)
# A PEM private-key block, begun and (perhaps) ended; the dashes are written as {5} so this
# source file is not itself mistaken for a key by scanners.
_PEM_PRIVATE_KEY = re.compile(r"-{5}BEGIN [A-Z0-9 ]*PRIVATE KEY-{5}.*?(?:-{5}END [A-Z0-9 ]*PRIVATE KEY-{5}|\Z)", re.DOTALL)
_NAMED_SECRET = re.compile(
    r"(?i)\b([\w.-]*(?:token|secret|passphrase|passw(?:or)?d|api_?key|private_?key)[\w.-]*)(\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")


def is_secret_name(name: object) -> bool:
    """True when a field or key name looks like it holds secret material (``hmac_secret``,
    ``passphrase``, ``signing_key``, ``api_token``; not ``key_id`` or ``key_path``)."""
    return bool(_SECRET_NAME.search(str(name)))


def redact_text(text: str) -> str:
    """``text`` with PEM private keys, ``name=value`` secrets, bearer/basic credentials and URL
    passwords replaced by ``***``."""
    text = _PEM_PRIVATE_KEY.sub(REDACTED, text)
    text = _NAMED_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


def redact_value(value: Any) -> Any:
    """``value`` with secret-named mapping entries replaced and strings passed through
    :func:`redact_text`, recursively through mappings, lists and tuples."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_name(k) else redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and k not in ID_FIELDS}


class ContextFilter(logging.Filter):
    """Copies the :func:`document_context` ids onto the record (an id passed in ``extra=``
    wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _ids.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class RedactFilter(logging.Filter):
    """Redacts secrets in the record's extra fields, its arguments, its formatted message and
    its exception text, in place, before any formatter sees it."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _extras(record).items():
            setattr(record, name, REDACTED if is_secret_name(name) else redact_value(value))
        if isinstance(record.args, Mapping):
            record.args = redact_value(record.args)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not raise out of the log call
            message = f"{record.msg} [log arguments did not match the format]"
        record.msg, record.args = redact_text(str(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


# --------------------------------------------------------------------------- formatters


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO-8601 UTC), ``level``, ``logger``, ``message``,
    the document ids that are set, extra fields, and ``exception``/``stack`` when present."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "time": time.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            if (value := getattr(record, name, None)) is not None:
                entry[name] = value
        for name, value in _extras(record).items():
            entry.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """``2024-05-02 09:15:00,123 INFO connector.engine: message [doc=... tracking=...]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s%(id_suffix)s")

    def format(self, record: logging.LogRecord) -> str:
        tags = [f"{_CONSOLE_TAGS[n]}={v}" for n in ID_FIELDS if (v := getattr(record, n, None)) is not None]
        record.id_suffix = f" [{' '.join(tags)}]" if tags else ""
        try:
            return super().format(record)
        finally:
            del record.id_suffix


class _ConnectorHandler(logging.StreamHandler):
    """The handler :func:`setup_logging` installs (so a second call replaces it)."""


def setup_logging(
    format: Literal["json", "console"] = "console",
    level: str = "INFO",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install the process's one log handler on the root logger (replacing one installed by an
    earlier call) and return it. ``stream`` defaults to stderr. Raises :class:`ValueError`
    naming the bad value for an unknown format or level."""
    if format not in ("json", "console"):
        raise ValueError(f"log format must be 'json' or 'console', not {format!r}")
    levels = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    if not isinstance(level, str) or level.upper() not in levels:
        raise ValueError(f"log level must be one of {', '.join(sorted(levels))}, not {level!r}")
    numeric = logging.getLevelName(level.upper())

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ConnectorHandler)]:
        root.removeHandler(old)
    handler = _ConnectorHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if format == "json" else ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)
    return handler
