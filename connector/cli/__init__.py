"""The connector's command line: one click group, commands registered from small modules.

Exit codes everywhere: 0 success, 1 invalid input (the message says what and where),
2 usage error. No command prints a traceback; an unexpected failure is reported in one line
and exits 3.
"""

from __future__ import annotations

import sys

import click

from .edxml_commands import build_cmd, extract_cmd, inspect_cmd, validate_cmd
from .audit_commands import ConfigLoader, audit_group
from .daemon_commands import cancel_cmd, poll_cmd, resend_cmd, run_cmd, send_cmd, status_cmd
from .demo import demo_cmd
from .sandbox_command import sandbox_cmd
from .signing_commands import certs_group, sign_cmd, verify_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edoc-connector")
def cli() -> None:
    """Connector to Vietnam's national electronic-document axis (edXML, QCVN 102:2016)."""


cli.add_command(validate_cmd)
cli.add_command(inspect_cmd)
cli.add_command(build_cmd)
cli.add_command(extract_cmd)
cli.add_command(demo_cmd)
cli.add_command(sign_cmd)
cli.add_command(verify_cmd)
cli.add_command(certs_group)
cli.add_command(sandbox_cmd)
for _command in (run_cmd, status_cmd, poll_cmd, send_cmd, resend_cmd, cancel_cmd, audit_group):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning any unexpected exception into one readable line."""
    try:
        cli.main(args=argv, prog_name="cli.py", standalone_mode=True, obj=ConfigLoader())
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        sys.exit(3)
