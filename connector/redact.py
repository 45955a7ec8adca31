"""Hiding credentials in URLs before they are shown (error messages, status lines, logs),
and the one check of an http(s) URL the operator configured, whose message shows it hidden.

A neutral module every part of the connector may import (configuration checks, the store,
routing). :mod:`connector.daemon.logs` redacts log lines as a safety net; this helper is for
the code that builds a message out of a URL the operator wrote and must not repeat the
password in it, even when the URL is malformed (``postgresql:/u:secret@host/db``).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["REDACTED", "http_url_problem", "redact_url"]

REDACTED = "***"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/{0,3}")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[\w.-]*(?:passw(?:or)?d|pwd|token|secret|api_?key|sslpassword)[\w.-]*)=)[^&;#]*"
)


def redact_url(url: str) -> str:
    """``url`` with its user information (``user:password@``) replaced by ``***`` and the values
    of secret-named query parameters (``?password=...``) hidden.

    Errs on the side of hiding: in a malformed URL, everything before the last ``@`` that may
    belong to the authority (it has a ``:`` or no ``/`` before it) is hidden, so a password
    holding ``/`` or ``@`` does not leak in part.
    """
    match = _SCHEME.match(url)
    head = match.group(0) if match else ""
    rest = url[len(head):]
    at = rest.rfind("@")
    if at >= 0:
        before = rest[:at]
        if ":" in before or "/" not in before:
            rest = REDACTED + rest[at:]
    return _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, head + rest)


def http_url_problem(url: str, credentials_advice: str) -> str | None:
    """Why ``url`` is not a usable http(s) URL for a peer (None when it is): not parseable, a
    bad port, no host, another scheme, or credentials in it (``credentials_advice`` says where
    they go instead). The URL appears redacted.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # unbalanced [brackets]
        return f"not a usable URL (bad port or brackets): {shown!r}"
    if "@" in parts.netloc:  # checked first: a URL with credentials is refused whatever else is wrong
        return f"the URL must not carry credentials (user:password@); {credentials_advice} (got {shown!r})"
    try:
        parts.port  # noqa: B018 - a bad port (99999, "x") only fails when read
    except ValueError:
        return f"not a usable URL (bad port or brackets): {shown!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http:// or https:// URL with a host (got {shown!r})"
    return None
