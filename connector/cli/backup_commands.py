"""Commands that back up and restore a connector's state: backup, restore.

``backup`` runs beside a running daemon: it reads the configuration only (no axis, key or
routing is opened, the database is neither migrated nor created) and copies a consistent
snapshot (see :mod:`connector.store.backup`). ``restore`` holds the data folder's lock while
it works, so it refuses a running connector and no daemon can start meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import os_error_text

_config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The connector's TOML configuration file.",
)


def _layout(config_path: Path):
    """The connector's data layout from its configuration; exit 1 with one line when the
    configuration cannot be used or its database cannot be backed up (PostgreSQL)."""
    from ..daemon.config import ConfigError, load_config
    from ..store.backup import BackupError, DataLayout, database_file

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(1)
    try:
        database = database_file(config.database_url)
    except BackupError as exc:
        click.echo(f"{config_path}: connector.database_url: {exc}", err=True)
        sys.exit(1)
    archive = config.path(config.audit.archive_dir) if config.audit.archive_dir else config.data_dir / "audit-archive"
    return DataLayout(config.data_dir, database, archive, agency=config.connector.agency)


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _fail(command: str, exc: Exception) -> None:
    """One line for a refused or failed backup or restore, and exit 1."""
    text = os_error_text(exc) if isinstance(exc, OSError) else str(exc)
    click.echo(f"{command}: {text}", err=True)
    sys.exit(1)


@click.command("backup")
@_config_option
@click.argument("dest", type=click.Path(path_type=Path))
def backup_cmd(config_path: Path, dest: Path) -> None:
    """Back up the connector's database (a consistent snapshot, taken beside a running daemon)
    and the files it needs into DEST, a new or empty folder; manifest.json is written last."""
    from ..durable import DiskFull
    from ..store.backup import BackupError, backup

    layout = _layout(config_path)
    try:
        manifest = backup(layout, dest)
    except DiskFull as exc:
        click.echo(f"backup: {exc.filename}: {exc.strerror}: the partial backup was removed; free space there or "
                   "back up into a folder on another disk", err=True)
        sys.exit(1)
    except (BackupError, OSError) as exc:
        _fail("backup", exc)
    kinds: dict[str, int] = {}
    for entry in manifest["files"]:
        kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    click.echo(f"backed up {layout.data_dir} into {dest}: the database ({manifest['database']['size']} bytes, "
               f"schema {manifest['alembic_revision']}) and {_files(len(manifest['files']))}"
               + (f" ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})" if kinds else ""))
    outbound = manifest["counts"].get("outbound") or {}
    click.echo("outbound:   " + (", ".join(f"{k} {v}" for k, v in sorted(outbound.items())) or "nothing"))


@click.command("restore")
@_config_option
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing database (it is moved aside, not deleted).")
def restore_cmd(config_path: Path, src: Path, force: bool) -> None:
    """Restore the backup in SRC into the connector's data folder (stop the connector first);
    every file is checked against the backup's manifest before anything is written."""
    from ..store.backup import BackupError, restore

    layout = _layout(config_path)
    try:
        result = restore(layout, src, force=force)
    except (BackupError, OSError) as exc:
        _fail("restore", exc)
    manifest = result.manifest
    click.echo(f"restored the snapshot of {manifest['created']} from {src} into {layout.data_dir}: the database and "
               f"{_files(result.written)} put in place, {_files(result.kept)} already there")
    for path in result.aside:
        click.echo(f"the previous database file is kept as {path}")
