"""``audit`` commands: verify, trail, export, verify-bundle.

Where the log is comes from, in this order: the group's options (``--database URL``,
``--evidence DIR``, ``--archive-dir DIR``); ``--config FILE``, read by ``ctx.obj.load_config``
when the caller (the connector's CLI) provides one; the attributes ``database``, ``evidence``,
``archive_dir``, ``tsa_ca`` and ``trust`` of ``ctx.obj`` when present.

Exit codes: 0 all checked and intact, 1 a break was found or the input is unusable (the
message says what and where), 2 a usage error. Databases are opened read-only where the
driver allows it (SQLite); nothing is ever written by these commands except the bundle file.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import sqlalchemy as sa

from ..input_files import InputFile
from ..signing.trust import TrustStore, TrustStoreError
from ..store.db import normalize_url
from ..store.evidence import EvidenceStore
from .bundle import export_bundle, verify_bundle
from .log import AuditError
from .reader import LogReader, LogReadError
from .trail import VIETNAM, document_trail, format_trail
from .tsa import TsaError, load_ca_certs
from .verify import VerifyReport, verify_log

EXIT_BROKEN = 1
#: Show a progress bar when a check covers at least this many entries.
PROGRESS_THRESHOLD = 5000

_dir = click.Path(file_okay=False, path_type=Path)
_file = InputFile()


@dataclass
class AuditSettings:
    database: str | None = None
    evidence: Path | None = None
    archive_dir: Path | None = None
    tsa_ca: Path | None = None
    trust: Path | None = None


class _ReadOnlyEvidence(EvidenceStore):
    """The evidence store opened only to read (the base class creates its folders)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(EXIT_BROKEN)


@click.group("audit")
@click.option("--database", metavar="URL", help="The connector's database (sqlite:///path or postgresql://...).")
@click.option("--evidence", type=_dir, metavar="DIR", help="The evidence store folder.")
@click.option("--archive-dir", type=_dir, metavar="DIR",
              help="Where the archive files are, if moved from where they were written.")
@click.option("--config", "config_file", type=_file, metavar="FILE", help="The connector's configuration file.")
@click.pass_context
def audit_group(ctx: click.Context, database: str | None, evidence: Path | None, archive_dir: Path | None,
                config_file: Path | None) -> None:
    """The exchange log (nhật ký trao đổi): check it, follow a document, export for auditors."""
    base: Any = ctx.obj
    if config_file is not None:
        loader = getattr(base, "load_config", None)
        if not callable(loader):
            raise click.UsageError("--config is not available here; give --database and --evidence")
        try:
            base = loader(config_file)
        except Exception as exc:  # noqa: BLE001 - the loader's own error text names the problem
            _fail(f"{config_file}: {exc}")

    def pick(value: Any, name: str) -> Any:
        return value if value is not None else getattr(base, name, None)

    def as_path(value: Any) -> Path | None:
        return Path(value) if value is not None else None

    ctx.obj = AuditSettings(
        database=pick(database, "database"), evidence=as_path(pick(evidence, "evidence")),
        archive_dir=as_path(pick(archive_dir, "archive_dir")), tsa_ca=as_path(getattr(base, "tsa_ca", None)),
        trust=as_path(getattr(base, "trust", None)))


# ---------------------------------------------------------------------- helpers


def _settings(ctx: click.Context, *, evidence: bool) -> AuditSettings:
    settings: AuditSettings = ctx.obj
    if not settings.database:
        raise click.UsageError("where is the log? give 'audit --database URL' (or --config FILE)")
    if evidence and settings.evidence is None:
        raise click.UsageError("give 'audit --evidence DIR' (the evidence store folder)")
    if evidence and not settings.evidence.is_dir():  # type: ignore[union-attr]
        _fail(f"evidence folder {settings.evidence} does not exist")
    return settings


@contextmanager
def _database(url: str) -> Iterator[sa.Engine]:
    """Open the log's database read-only where possible; fail with one line when unusable."""
    url = normalize_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        _fail(f"database URL {url!r} is not valid")
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:" or not Path(parsed.database).is_file():
            _fail(f"database file {parsed.database} does not exist")
        engine = sa.create_engine(f"sqlite:///file:{Path(parsed.database).resolve()}?mode=ro&uri=true")
    elif parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(url, pool_pre_ping=True,  # this session only reads
                                  connect_args={"options": "-c default_transaction_read_only=on"})
    else:
        _fail(f"database {shown}: only sqlite and postgresql are supported")
    try:
        try:
            has_log = sa.inspect(engine).has_table("audit_entries")
        except sa.exc.OperationalError as exc:
            _fail(f"cannot open the database {shown}: {str(exc.orig).strip()}")
        if not has_log:
            _fail(f"the database {shown} holds no audit log (table audit_entries); run the connector's migrations")
        yield engine
    finally:
        engine.dispose()


def _tsa_ca(option: Path | None, settings: AuditSettings) -> list[Any] | None:
    path = option or settings.tsa_ca
    if path is None:
        return None
    try:
        return load_ca_certs(path)
    except TsaError as exc:
        _fail(str(exc))


def _trust(option: Path | None, settings: AuditSettings) -> TrustStore | None:
    path = option or settings.trust
    if path is None:
        return None
    try:
        return TrustStore.from_directory(path)
    except TrustStoreError as exc:
        _fail(str(exc))


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(text: str | None, *, end: bool, option: str) -> dt.datetime | None:
    """A date (a whole day in Vietnam time; ``end``: up to the end of that day) or an ISO time
    (without an offset: Vietnam time)."""
    if text is None:
        return None
    try:
        if _DATE.match(text):
            day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=VIETNAM)
            return day + dt.timedelta(days=1) if end else day
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (2026-11-26) or a time (2026-11-26T08:30)",
                                 param_hint=option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=VIETNAM)


def _print_report(report: VerifyReport, what: str) -> None:
    for problem in report.problems:
        click.echo(f"BROKEN  {problem}")
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.head is not None:
        click.echo(f"log head: seq {report.head[0]}, entry_hash {report.head[1]}")
    if report.problems:
        click.echo(f"FAILED: {len(report.problems)} problem(s) found in {what} ({report.summary()})")
    else:
        click.echo(f"OK: {what} is intact ({report.summary()})")


# ---------------------------------------------------------------------- commands


@audit_group.command("verify")
@click.option("--from", "since", metavar="DATE", help="Check the entries from this day (Vietnam time) or time.")
@click.option("--to", "until", metavar="DATE", help="... up to the end of this day, or up to this time.")
@click.option("--tsa-ca", type=_file, metavar="FILE", help="The TSA's CA certificates (PEM), to verify time-stamps.")
@click.option("--trust", "trust_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR",
              help="Trust anchors the signer certificate must chain to.")
@click.option("--require-timestamps", is_flag=True, help="A batch without a time-stamp is a failure.")
@click.pass_context
def verify_cmd(ctx: click.Context, since: str | None, until: str | None, tsa_ca: Path | None,
               trust_dir: Path | None, require_timestamps: bool) -> None:
    """Check the chain, every seal, signature and time-stamp, and every evidence file.

    Every break is printed with where it is (entry seq, archive file, evidence file); the exit
    code is 1 when there is one.
    """
    settings = _settings(ctx, evidence=True)
    start, stop = parse_when(since, end=False, option="--from"), parse_when(until, end=True, option="--to")
    ca, trust = _tsa_ca(tsa_ca, settings), _trust(trust_dir, settings)
    evidence = _ReadOnlyEvidence(settings.evidence)  # type: ignore[arg-type]
    with _database(settings.database) as engine:  # type: ignore[arg-type]
        try:
            try:
                total = LogReader(engine, settings.archive_dir).count()
            except LogReadError:
                total = 0  # an unreadable archive record: verify_log reports it
            with _progress(total) as tick:
                report = verify_log(engine, evidence, since=start, until=stop, archive_dir=settings.archive_dir,
                                    tsa_ca=ca, trust=trust, require_timestamps=require_timestamps, progress=tick)
        except (AuditError, LogReadError) as exc:
            _fail(str(exc))
    _print_report(report, "the log")
    if not report.ok:
        sys.exit(EXIT_BROKEN)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None] | None]:
    if total < PROGRESS_THRESHOLD:
        yield None
        return
    with click.progressbar(length=total, label="checking entries", file=sys.stderr) as bar:
        yield bar.update


@audit_group.command("trail")
@click.argument("document_id")
@click.pass_context
def trail_cmd(ctx: click.Context, document_id: str) -> None:
    """Show DOCUMENT_ID's life (sent or received) as a timeline; a tracking id or an axis item id works too."""
    settings = _settings(ctx, evidence=False)
    with _database(settings.database) as engine:  # type: ignore[arg-type]
        try:
            entries = document_trail(engine, document_id, settings.archive_dir)
        except LogReadError as exc:
            _fail(str(exc))
    if not entries:
        _fail(f"no audit entries for document {document_id}")
    for line in format_trail(document_id, entries):
        click.echo(line)


@audit_group.command("export")
@click.option("--document", "document_id", metavar="ID", help="The document (its document id or tracking id).")
@click.option("--from", "since", metavar="DATE", help="Entries from this day (Vietnam time) or time ...")
@click.option("--to", "until", metavar="DATE", help="... up to the end of this day, or up to this time.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, metavar="BUNDLE.zip")
@click.option("--tsa-ca", type=_file, metavar="FILE", help="Include the TSA's CA certificates (PEM) in the bundle.")
@click.pass_context
def export_cmd(ctx: click.Context, document_id: str | None, since: str | None, until: str | None, output: Path,
               tsa_ca: Path | None) -> None:
    """Write a self-contained bundle an auditor can check offline (README.txt inside says how)."""
    if document_id is not None and (since or until):
        raise click.UsageError("give either --document ID or --from/--to, not both")
    if document_id is None and not (since and until):
        raise click.UsageError("give --document ID, or both --from DATE and --to DATE")
    settings = _settings(ctx, evidence=True)
    start, stop = parse_when(since, end=False, option="--from"), parse_when(until, end=True, option="--to")
    ca = _tsa_ca(tsa_ca, settings)
    evidence = _ReadOnlyEvidence(settings.evidence)  # type: ignore[arg-type]
    with _database(settings.database) as engine:  # type: ignore[arg-type]
        try:
            result = export_bundle(engine, evidence, output, document_id=document_id, since=start, until=stop,
                                   archive_dir=settings.archive_dir, tsa_ca=ca)
        except AuditError as exc:
            _fail(str(exc))
    if result.not_sealed:
        click.echo(f"note: {len(result.not_sealed)} selected entries (seq {result.not_sealed[0]}.."
                   f"{result.not_sealed[-1]}) are not sealed yet and were NOT exported", err=True)
    click.echo(f"{result.path}: {result.entries} entries ({result.selected} selected) in {result.batches} "
               f"batch(es), {result.evidence_files} evidence file(s)")


@audit_group.command("verify-bundle")
@click.argument("bundle", type=InputFile(dir_okay=True))
@click.option("--tsa-ca", type=_file, metavar="FILE", help="The TSA's CA certificates (PEM); default: the bundle's.")
@click.option("--trust", "trust_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR",
              help="Trust anchors the signer certificate must chain to.")
@click.pass_context
def verify_bundle_cmd(ctx: click.Context, bundle: Path, tsa_ca: Path | None, trust_dir: Path | None) -> None:
    """Check an exported BUNDLE (the ZIP, or its extracted folder) offline."""
    settings: AuditSettings = ctx.obj
    ca, trust = _tsa_ca(tsa_ca, settings), _trust(trust_dir, settings)
    report = verify_bundle(bundle, tsa_ca=ca, trust=trust)
    _print_report(report, f"bundle {bundle}")
    if not report.ok:
        sys.exit(EXIT_BROKEN)
