"""Network failures read the same way everywhere: the endpoint and the system's reason, not
the connection pool's wrapper text."""

from __future__ import annotations

import socket

import pytest
import requests

from connector.neterrors import short
from tests.support.raw_http import unreachable_port


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _failure(url: str, **kwargs) -> requests.RequestException:
    with pytest.raises(requests.RequestException) as info:
        requests.get(url, **kwargs)
    return info.value


def test_a_refused_connection_is_the_endpoint_and_the_reason():
    port = _closed_port()
    assert short(_failure(f"http://127.0.0.1:{port}/soap", timeout=5)) == f"127.0.0.1:{port}: Connection refused"


def test_a_name_that_does_not_resolve_names_the_host():
    text = short(_failure("http://no-such-host.invalid:8080/", timeout=5))
    assert text.startswith("no-such-host.invalid:8080: ") and "Max retries" not in text


def test_a_read_timeout_names_the_endpoint_and_the_limit():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog) and never answers
        port = silent.getsockname()[1]
        text = short(_failure(f"http://127.0.0.1:{port}/", timeout=0.3))
    assert text.startswith(f"127.0.0.1:{port}: ") and "timed out" in text.lower() and "Max retries" not in text


def test_other_errors_keep_their_own_text():
    assert short(ValueError("bad header")) == "bad header"
    assert short(RuntimeError("x" * 500)).endswith("…") and len(short(RuntimeError("x" * 500))) == 301


def test_a_connect_timeout_names_the_endpoint_and_the_limit_not_the_url():
    with unreachable_port() as port:
        failure = _failure(f"http://127.0.0.1:{port}/soap?api_key=SECRET", timeout=(0.3, 5))
    text = short(failure)
    assert text.startswith(f"127.0.0.1:{port}: ") and "timed out" in text, text
    assert "Max retries" not in text and "SECRET" not in text, text
