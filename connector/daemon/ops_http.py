"""The operations endpoint: ``GET /healthz`` (JSON, 200 or 503) and ``GET /metrics``
(Prometheus text), served by the project's one HTTP stack, :mod:`connector.httpserver`.

It listens on loopback by default: the details name certificates and queue sizes, which is
for the site's monitoring, not for the network at large.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from connector.daemon.health import Health
from connector.daemon.metrics import Metrics
from connector.httpserver import WsgiServer

log = logging.getLogger("connector.daemon.ops")

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]

_TEXT = "text/plain; charset=utf-8"


def ops_app(health: Health, metrics: Metrics) -> WsgiApp:
    """A WSGI app: ``/healthz`` runs ``health``, ``/metrics`` renders ``metrics``; other paths
    are 404, other methods 405. ``HEAD`` answers like ``GET`` without the body."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        headers = [("Cache-Control", "no-store")]
        if path not in ("/healthz", "/metrics"):
            status, body, ctype = "404 Not Found", b"not found: try /healthz or /metrics\n", _TEXT
        elif method not in ("GET", "HEAD"):
            status, body, ctype = "405 Method Not Allowed", f"{method} not allowed\n".encode(), _TEXT
            headers.append(("Allow", "GET, HEAD"))
        elif path == "/healthz":
            report = health.run()
            status = "200 OK" if report.ok else "503 Service Unavailable"
            body = json.dumps(report.as_dict(), ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
            ctype = "application/json; charset=utf-8"
        else:
            status = "200 OK"
            body, ctype = metrics.render()
        headers += [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [b""] if method == "HEAD" else [body]

    return app


def start_ops_server(app: WsgiApp, host: str = "127.0.0.1", *, port: int) -> WsgiServer:
    """Serve ``app`` on ``host:port`` (0: a free port) in a background thread and return the
    running server (``.url``, ``.stop()``). A port that cannot be bound is an :class:`OSError`
    naming the address."""
    try:
        server = WsgiServer(app, host=host, port=port)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port} for health and metrics: {exc.strerror or exc}") from exc
    server.start()
    log.info("health and metrics at %s/healthz and %s/metrics", server.url, server.url)
    return server
