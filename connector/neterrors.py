"""Reading network failures the same way in every HTTP client (axis bindings, DMS webhooks)."""

from __future__ import annotations

import ssl
from typing import Callable


def tls_cause(exc: BaseException) -> bool:
    """Whether an ssl.SSLError (not a mere EOF or reset) sits in ``exc``'s chain or arguments
    (with TLS 1.3 a refused client certificate shows only on the first read)."""
    return _find(exc, lambda e: isinstance(e, ssl.SSLError)
                 and not isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError))) is not None


def short(exc: BaseException, limit: int = 300) -> str:
    """The exception's text, cut to ``limit`` characters for a log line or an error field.

    A refused server certificate is said in the verifier's words ("certificate has expired",
    "IP address mismatch, certificate is not valid for '10.0.0.5'"), and a connection that
    failed as ``host:port: <the system's reason>`` ("dms.local:443: Connection refused"),
    rather than in the connection pool's long wrapper text ("HTTPConnectionPool(...): Max
    retries exceeded with url: ... (Caused by NewConnectionError(...))"), where the reason
    comes last and is often cut off.
    """
    verification = _find(exc, lambda e: isinstance(e, ssl.SSLCertVerificationError))
    if verification is not None and getattr(verification, "verify_message", None):
        text = f"certificate verify failed: {verification.verify_message}"
    else:
        text = _pool_failure(exc) or str(exc)
    return text if len(text) < limit else text[:limit] + "…"


def _pool_failure(exc: BaseException) -> str | None:
    """``host:port: reason`` for a failure the connection pool wrapped (urllib3's
    MaxRetryError, which knows the pool it came from): the system's reason for a socket error
    (refused, unreachable, name not known, reset), or the pool's own words for a timeout."""
    retried = _find(exc, lambda e: hasattr(getattr(e, "pool", None), "host"))
    if retried is None:
        return None
    pool = retried.pool  # type: ignore[attr-defined]
    where = f"{pool.host}:{pool.port}" if pool.port else str(pool.host)
    system = _find(exc, lambda e: isinstance(e, OSError) and bool(e.strerror))
    if system is not None:
        return f"{where}: {system.strerror}"
    timeout = _find(exc, lambda e: "Timeout" in type(e).__name__ and bool(e.args) and isinstance(e.args[-1], str))
    if timeout is not None:
        text = str(timeout.args[-1])
        pool_said = f"{pool}: "  # urllib3 puts the pool's repr before its own words
        return f"{where}: {text[len(pool_said):] if text.startswith(pool_said) else text}"
    return None


def _find(exc: BaseException, wanted: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception ``wanted`` accepts in ``exc``'s chain, causes or arguments."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if wanted(e):
            return e
        todo.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args) if isinstance(x, BaseException))
    return None
