"""Reading network failures the same way in every HTTP client (axis bindings, DMS webhooks)."""

from __future__ import annotations

import ssl


def tls_cause(exc: BaseException) -> bool:
    """Whether an ssl.SSLError (not a mere EOF or reset) sits in ``exc``'s chain or arguments
    (with TLS 1.3 a refused client certificate shows only on the first read)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLError) and not isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return True
        todo.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args) if isinstance(x, BaseException))
    return False


def short(exc: BaseException, limit: int = 300) -> str:
    """The exception's text, cut to ``limit`` characters for a log line or an error field."""
    text = str(exc)
    return text if len(text) < limit else text[:limit] + "…"
