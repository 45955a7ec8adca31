"""``sandbox``: run the local axis (provincial SOAP hub + national VXP axis) in the foreground."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from ..input_files import InputFile


@click.command("sandbox")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Data directory (created if missing).")
@click.option("--agencies", "agencies_file", type=InputFile(), help="JSON list of agencies (organ_id, name, token, secret).")
@click.option("--latency-ms", type=click.IntRange(min=0), default=0, show_default=True, help="Delay added to every binding request.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Share of requests answered with a server failure.")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Share of connections closed without an answer.")
@click.option("--outage-start", type=float, default=None, help="Outage begins this many seconds after start.")
@click.option("--outage-seconds", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Length of the outage window.")
@click.option("--admin-token", default=None, help="Token for /admin/faults (default: generated and printed).")
@click.option("--seed", type=int, default=None, help="Seed of the fault generator (reproducible runs).")
@click.option("--tls-cert", type=InputFile(), default=None, help="Serve HTTPS with this PEM certificate (chain allowed).")
@click.option("--tls-key", type=InputFile(), default=None, help="The TLS certificate's PEM private key.")
@click.option("--client-ca", type=InputFile(), default=None, help="Require a client certificate issued under this PEM CA bundle (mutual TLS).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
def sandbox_cmd(
    port: int,
    data_dir: Path,
    agencies_file: Path | None,
    latency_ms: int,
    failure_rate: float,
    drop_rate: float,
    outage_start: float | None,
    outage_seconds: float,
    admin_token: str | None,
    seed: int | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    verbose: bool,
) -> None:
    """Serve the provincial hub (SOAP, /soap) and the national axis (VXP, /vxp/) on 127.0.0.1."""
    from ..sandbox.faults import FaultSettings
    from ..sandbox.server import SandboxServer

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faults = FaultSettings(
        latency_ms=latency_ms,
        failure_rate=failure_rate,
        drop_rate=drop_rate,
        outage_start=(time.time() + outage_start) if outage_start is not None else None,
        outage_seconds=outage_seconds,
    )
    try:
        server = SandboxServer(
            data_dir, port=port, agencies_file=agencies_file, faults=faults, admin_token=admin_token, seed=seed,
            tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca,
        )
    except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    agencies = server.store.agencies()
    click.echo(f"sandbox listening on {server.url}")
    click.echo(f"  SOAP hub:  {server.url}/soap   (WSDL: {server.url}/soap?wsdl)")
    click.echo(f"  VXP axis:  {server.url}/vxp/")
    click.echo(f"  admin:     {server.url}/admin/faults   token: {server.admin_token}")
    if tls_cert:
        click.echo(f"  TLS:       {tls_cert}" + (f", client certificate required ({client_ca})" if client_ca else ""))
    click.echo(f"  data:      {data_dir.resolve()}")
    click.echo(f"  agencies:  {', '.join(a.organ_id for a in agencies)}")
    if not agencies_file:
        click.echo(f"  credentials: {(data_dir / 'agencies.json').resolve()}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    finally:
        server.httpd.server_close()
        server.app.close()
