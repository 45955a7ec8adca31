"""Serve the sandbox on 127.0.0.1 with the project's HTTP stack (:mod:`connector.httpserver`).

:class:`SandboxServer` is a context manager: tests start one on a free port, the CLI runs
one in the foreground until interrupted.
"""

from __future__ import annotations

from pathlib import Path

from ..httpserver import WsgiServer, tls_context
from .app import SandboxApp, build_app
from .faults import FaultSettings


class SandboxServer:
    """The sandbox on ``127.0.0.1:port`` (0: a free port), served from a background thread.

    TLS: with ``tls_cert`` and ``tls_key`` (PEM; the certificate file may carry its chain) the
    server speaks only HTTPS; ``client_ca`` (a PEM CA bundle) additionally requires every client
    to present a certificate issued under it (connections without one are refused during the
    handshake).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int = 0,
        agencies_file: str | Path | None = None,
        faults: FaultSettings | None = None,
        admin_token: str | None = None,
        seed: int | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        client_ca: str | Path | None = None,
    ):
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("TLS needs both a certificate and its key")
        if client_ca is not None and tls_cert is None:
            raise ValueError("a client CA (mutual TLS) needs a server certificate and key")
        context = tls_context(tls_cert, tls_key, client_ca) if tls_cert is not None else None
        self.app: SandboxApp = build_app(
            data_dir, agencies_file=agencies_file, faults=faults, admin_token=admin_token, seed=seed
        )
        self.server = WsgiServer(self.app, port=port, ssl_context=context)
        self.httpd = self.server.httpd
        self.port = self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def admin_token(self) -> str:
        return self.app.admin_token

    @property
    def store(self):
        return self.app.store

    @property
    def faults(self):
        return self.app.faults

    def start(self) -> "SandboxServer":
        self.server.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.stop()
        self.app.close()

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
