"""The connector's command line: one click group, commands registered from small modules.

Exit codes everywhere: 0 success, 1 invalid input (the message says what and where),
2 usage error. No command prints a traceback; a file the system refuses to read or write is
named with the system's reason, and any other unexpected failure is reported in one line; both
exit 3. A command's module is imported only when that command runs, so a quick command
(``validate``) does not pay for the daemon's libraries.
"""

from __future__ import annotations

import importlib
import sys

import click

#: command name -> "module:attribute" (modules relative to this package)
COMMANDS: dict[str, str] = {
    "validate": "edxml_commands:validate_cmd",
    "inspect": "edxml_commands:inspect_cmd",
    "build": "edxml_commands:build_cmd",
    "extract": "edxml_commands:extract_cmd",
    "demo": "demo:demo_cmd",
    "sign": "signing_commands:sign_cmd",
    "verify": "signing_commands:verify_cmd",
    "certs": "signing_commands:certs_group",
    "sandbox": "sandbox_command:sandbox_cmd",
    "run": "daemon_commands:run_cmd",
    "status": "daemon_commands:status_cmd",
    "poll": "daemon_commands:poll_cmd",
    "send": "daemon_commands:send_cmd",
    "resend": "daemon_commands:resend_cmd",
    "cancel": "daemon_commands:cancel_cmd",
    "check": "check_command:check_cmd",
    "audit": "audit_commands:audit_group",
    "backup": "backup_commands:backup_cmd",
    "restore": "backup_commands:restore_cmd",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edoc-connector")
def cli() -> None:
    """Connector to Vietnam's national electronic-document axis (edXML, QCVN 102:2016)."""


class _AuditConfigLoader:
    """``ctx.obj`` for ``audit --config FILE`` (imported lazily, like the commands)."""

    def load_config(self, path):
        from .audit_commands import ConfigLoader

        return ConfigLoader().load_config(path)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning any unexpected exception into one readable line."""
    try:
        cli.main(args=argv, prog_name="cli.py", standalone_mode=True, obj=_AuditConfigLoader())
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # a file or folder the command could not read or write: name it
        click.echo(f"error: {os_error_text(exc)}", err=True)
        sys.exit(3)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        sys.exit(3)


def os_error_text(exc: OSError) -> str:
    """What the operating system refused, and on which path: ``PATH: Not a directory``."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    where = str(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    return f"{where}: {reason}"
