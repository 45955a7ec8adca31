"""HTTP plumbing shared by both bindings: a requests session, error mapping, retries.

Retries use the one policy object (:class:`connector.retry.RetryPolicy`): exponential backoff
with full jitter, applied only to operations the caller marks safe (idempotent reads); a send
is never repeated here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import requests

from ..neterrors import short as _short
from ..neterrors import tls_cause as _tls_cause
from ..retry import RetryPolicy
from .errors import PermanentAxisError, ProtocolError, RetryableAxisError, TLSError, http_error_class

T = TypeVar("T")


#: The most an axis retry waits (seconds), however many retries are configured.
RETRY_CAP = 30.0


def retry_policy(retries: int, backoff: float) -> RetryPolicy:
    """The in-call policy of a binding: ``retries`` extra attempts, the n-th waiting a random
    time in [0, min(30 s, backoff * 2**(n-1))] (exponential backoff, full jitter)."""
    return RetryPolicy.exponential(backoff, retries=retries, cap=RETRY_CAP)


def call_with_retries(policy: RetryPolicy, call: Callable[[], T], *, safe: bool) -> T:
    """Run ``call``; a safe (idempotent) operation is retried on :class:`RetryableAxisError`
    by ``policy``, an unsafe one (a send, an acknowledgement) runs exactly once."""
    return policy.run(call, retry_on=RetryableAxisError) if safe else call()


def new_session(verify: bool | str, cert: tuple[str, str] | str | None) -> requests.Session:
    session = requests.Session()
    session.verify = verify
    session.cert = cert
    session.trust_env = False  # no proxies or netrc from the environment: the axis URL is explicit
    return session


def request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    operation: str,
    timeout: float | tuple[float, float],
    **kwargs,
) -> requests.Response:
    """Send; map transport failures to :class:`RetryableAxisError` (never a raw traceback).

    Redirects are not followed (a request carrying credentials must not be replayed to
    another address): a 3xx answer is a :class:`PermanentAxisError` naming where it pointed.
    """
    try:
        response = session.request(method, url, timeout=timeout, stream=True, allow_redirects=False, **kwargs)
    except requests.Timeout as exc:
        raise RetryableAxisError(f"timed out: {_short(exc)}", operation=operation) from None
    except requests.exceptions.SSLError as exc:
        raise TLSError(f"TLS failure: {_short(exc)}", operation=operation) from None
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        if _tls_cause(exc):  # e.g. TLS 1.3: the server's alert refusing our certificate comes on the first read
            raise TLSError(f"TLS failure: {_short(exc)}", operation=operation) from None
        raise RetryableAxisError(f"connection failed: {_short(exc)}", operation=operation) from None
    except requests.RequestException as exc:
        raise PermanentAxisError(f"HTTP request failed: {_short(exc)}", operation=operation) from None
    if 300 <= response.status_code < 400:
        target = (response.headers.get("Location") or "nowhere").split("?", 1)[0].split("#", 1)[0]
        response.close()
        raise PermanentAxisError(
            f"HTTP {response.status_code} redirect to {target[:200]}; redirects are not followed, "
            "configure the final endpoint URL",
            code=str(response.status_code),
            operation=operation,
        )
    return response


def raise_for_http(response: requests.Response, operation: str, detail: str = "") -> None:
    """An HTTP error status without a readable contract answer becomes the matching AxisError."""
    if response.status_code < 400:
        return
    cls = http_error_class(response.status_code)
    response.close()
    raise cls(f"HTTP {response.status_code} {response.reason or ''}{detail}".strip(), code=str(response.status_code), operation=operation)


def read_limited(response: requests.Response, limit: int, operation: str) -> bytes:
    """The whole (small) body, refusing more than ``limit`` bytes."""
    chunks, total = [], 0
    try:
        for chunk in response.iter_content(1 << 16):
            total += len(chunk)
            if total > limit:
                raise ProtocolError(f"answer larger than {limit} bytes", operation=operation)
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise RetryableAxisError(f"connection broke while reading the answer: {_short(exc)}", operation=operation) from None
    finally:
        response.close()
    return b"".join(chunks)


def is_html(response: requests.Response) -> bool:
    """True when the answer is labelled as a web page: what a proxy, load balancer or an
    application server's error handler sends instead of the protocol's answer."""
    return "html" in response.headers.get("Content-Type", "").lower()


class SizedIterable:
    """An iterable body with a known length, so requests sends Content-Length, not chunked."""

    def __init__(self, chunks: Iterable[bytes], length: int):
        self._chunks, self._length = chunks, length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)
