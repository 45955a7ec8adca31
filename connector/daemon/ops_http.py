"""The operations endpoint: ``GET /healthz`` (JSON, 200 or 503) and ``GET /metrics``
(Prometheus text), served by the project's one HTTP stack, :mod:`connector.httpserver`.

It listens on loopback by default: the details name certificates and queue sizes, which is
for the site's monitoring, not for the network at large. There is no token and no TLS on this
endpoint, so another address is allowed (a monitoring host must reach it) but logged as a
warning when the server starts.

Errors are JSON ``{"error": ...}`` like the intake API's: 404 for another path, 405 (with
``Allow``) for another method, 500 with a one-line message, never a traceback, should rendering
fail.
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

_JSON = "application/json; charset=utf-8"
_PATHS = ("/healthz", "/metrics")


def _error(message: str) -> tuple[bytes, str]:
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8") + b"\n", _JSON


def ops_app(health: Health, metrics: Metrics) -> WsgiApp:
    """A WSGI app: ``/healthz`` runs ``health``, ``/metrics`` renders ``metrics``; other paths
    are 404, other methods 405. ``HEAD`` answers like ``GET`` without the body. The query
    string is ignored."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        headers = [("Cache-Control", "no-store")]
        if path not in _PATHS:
            status = "404 Not Found"
            body, ctype = _error(f"no such resource {path[:200]!r}; try GET /healthz or GET /metrics")
        elif method not in ("GET", "HEAD"):
            status = "405 Method Not Allowed"
            body, ctype = _error(f"method {method[:20]} not allowed on {path}; use GET or HEAD")
            headers.append(("Allow", "GET, HEAD"))
        else:
            try:
                status, body, ctype = _healthz(health) if path == "/healthz" else _metrics(metrics)
            except Exception:  # noqa: BLE001 - a bug in a check or collector: logged, answered in one line
                log.exception("%s failed", path)
                status = "500 Internal Server Error"
                body, ctype = _error(f"{path} failed inside the connector; the operator finds the detail in its log")
        headers += [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [b""] if method == "HEAD" else [body]

    return app


def _healthz(health: Health) -> tuple[str, bytes, str]:
    report = health.run()
    status = "200 OK" if report.ok else "503 Service Unavailable"
    return status, json.dumps(report.as_dict(), ensure_ascii=False, indent=2).encode("utf-8") + b"\n", _JSON


def _metrics(metrics: Metrics) -> tuple[str, bytes, str]:
    body, ctype = metrics.render()
    return "200 OK", body, ctype


def start_ops_server(app: WsgiApp, host: str = "127.0.0.1", *, port: int) -> WsgiServer:
    """Serve ``app`` on ``host:port`` (0: a free port) in a background thread and return the
    running server (``.url``, ``.stop()``). A port that cannot be bound is an :class:`OSError`
    naming the address. An address other than loopback is served, with a warning: anyone who
    can reach it reads the health details and metrics, unauthenticated and in clear."""
    try:
        server = WsgiServer(app, host=host, port=port)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port} for health and metrics: {exc.strerror or exc}") from exc
    server.start()
    if not server.loopback_only:
        log.warning("health and metrics are served on %s, beyond this machine, without authentication or TLS: "
                    "anyone who can reach it reads certificate subjects, queue sizes and error details; restrict it "
                    "with a firewall, or set [ops] host = \"127.0.0.1\" behind a proxy", server.url)
    log.info("health and metrics at %s/healthz and %s/metrics", server.url, server.url)
    return server
