"""Commands that run or drive the daemon: run, status, poll, send, resend, cancel."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from ..audit.log import AuditError
from ..daemon.config import ConfigError, load_config
from ..edxml.model import NOT_DELIVERED_CODES
from ..engine.outbox import IntakeError
from ..input_files import InputFile

_config_option = click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The connector's TOML configuration file.",
)


@contextmanager
def _runtime(config_path: Path, *, exclusive: bool = True):
    """The runtime for one command. Commands that only read or change rows (status, send,
    resend, cancel) are not ``exclusive``: they run beside a running daemon, whose claims
    they leave alone."""
    from ..daemon.runtime import open_runtime

    try:
        runtime = open_runtime(config_path, exclusive=exclusive)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(1)
    try:
        yield runtime
    finally:
        runtime.close()


@click.command("run")
@_config_option
def run_cmd(config_path: Path) -> None:
    """Run the connector in the foreground until SIGTERM or Ctrl-C (SIGHUP reloads routing, trust anchors and signature policy)."""
    from ..daemon.logs import setup_logging
    from ..daemon.runner import Daemon
    from ..daemon.runtime import open_runtime

    # SIGHUP's default action ends the process: a `systemctl reload` while the runtime opens
    # (migrations, the key, the axis) is kept for the daemon's loop instead.
    reload_asked = [False]
    signal.signal(signal.SIGHUP, lambda *_: reload_asked.__setitem__(0, True))
    try:
        config = load_config(config_path)
        setup_logging(config.logging.format, config.logging.level)
        runtime = open_runtime(config)
        # a setting only starting can test (the intake's TLS files or port, the ops port) is
        # the same kind of error; run_forever has closed the runtime (and its lock) by then
        code = Daemon(runtime).run_forever(reload_asked)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(1)
    except AuditError as exc:  # the exchange log cannot be opened as it is (damaged, altered): say so, plainly
        click.echo(f"audit log error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


@click.command("status")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(config_path: Path, as_json: bool) -> None:
    """Queue summary (by state) and the most recent failures."""
    from ..engine.inbox import read_fetch_failures

    from ..edxml.model import NOT_DELIVERED_CODES, status_label

    with _runtime(config_path, exclusive=False) as rt:
        s = rt.store.summary()
        fetch_failures = read_fetch_failures(rt.store)
        not_delivered = rt.store.recipients_with_status(NOT_DELIVERED_CODES)
    data = {
        "outbound": s.outbound, "inbound": s.inbound, "recipients": s.recipients,
        "oldest_pending_age_s": round(s.oldest_pending_age, 1) if s.oldest_pending_age is not None else None,
        "recent_failures": [
            {k: (v if k != "updated_at" else _iso(v)) for k, v in f.items()} for f in s.recent_failures
        ],
        "not_delivered": [
            {"tracking_id": r["outbound_id"], "document_id": r["document_id"], "recipient": r["recipient"],
             "status_code": r["status_code"], "status_name": status_label(r["status_code"]),
             "description": r["status_description"], "status_at": _iso(r["status_at"])}
            for r in not_delivered
        ],
        "inbound_fetch_failures": [
            {"axis_item": item, "kind": f.get("kind"), "state": f.get("state"), "attempts": f.get("attempts"),
             "last_attempt_at": _iso(f.get("last_at")), "last_error": f.get("reason") or f.get("last_error")}
            for item, f in sorted(fetch_failures.items())
        ],
    }
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo("outbound:   " + (", ".join(f"{k} {v}" for k, v in sorted(s.outbound.items())) or "nothing"))
    click.echo("recipients: " + (", ".join(f"{k} {v}" for k, v in sorted(s.recipients.items())) or "nothing"))
    click.echo("inbound:    " + (", ".join(f"{k} {v}" for k, v in sorted(s.inbound.items())) or "nothing"))
    if s.oldest_pending_age is not None:
        click.echo(f"oldest pending: {s.oldest_pending_age:.0f} s")
    if s.recent_failures:
        click.echo("recent failures:")
        for f in s.recent_failures:
            click.echo(f"  {_iso(f['updated_at'])} {f['direction']} {f['id']} [{f['state']}, {f['attempts']} attempt(s)] "
                       f"{f['document_id'] or ''}: {f['last_error']}")
    if not_delivered:
        click.echo("documents a recipient did not get (rejected, or the hub could not forward them; newest first):")
        for r in data["not_delivered"]:
            said = f": {r['description']}" if r["description"] else ""
            click.echo(f"  {r['status_at']} {r['tracking_id']} {r['document_id'] or ''} -> {r['recipient']}: "
                       f"{r['status_code']} {r['status_name']}{said}")
    if fetch_failures:
        click.echo("inbound items the axis would not serve (not fetched; `resend <axis item>` retries a dead one):")
        for f in data["inbound_fetch_failures"]:
            click.echo(f"  {f['last_attempt_at']} {f['kind']} {f['axis_item']} [{f['state']}, {f['attempts']} attempt(s)]: "
                       f"{f['last_error']}")


@click.command("poll")
@_config_option
@click.option("--once", is_flag=True, required=True, help="Poll once, process what arrived, send the answers, exit.")
def poll_cmd(config_path: Path, once: bool) -> None:
    """One round: send what is due, poll the axis, process what arrived."""
    from ..axis.errors import AxisError

    with _runtime(config_path) as rt:
        try:
            counts = rt.engine.run_once()
        except AxisError as exc:
            click.echo(f"axis error: {exc}", err=True)
            sys.exit(1)
    click.echo(json.dumps(counts))


@click.command("send")
@_config_option
@click.argument("document", type=InputFile())
@click.option("--attach", "files", multiple=True, type=InputFile(),
              help="An attachment file (repeatable).")
def send_cmd(config_path: Path, document: Path, files: tuple[Path, ...]) -> None:
    """Queue DOCUMENT (document JSON) with its attachments; prints the tracking id."""
    try:
        data = json.loads(document.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        click.echo(f"{document}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})", err=True)
        sys.exit(1)
    except RecursionError:
        click.echo(f"{document}: not valid document JSON: nested too deeply (arrays or objects inside each other "
                   "more than the parser allows)", err=True)
        sys.exit(1)
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"{document}: cannot read: {exc}", err=True)
        sys.exit(1)
    with _runtime(config_path, exclusive=False) as rt:
        try:
            tracking = rt.engine.submit(data, list(files))
        except IntakeError as exc:
            click.echo(f"{document}: not queued:", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            sys.exit(1)
    click.echo(tracking)


@click.command("resend")
@_config_option
@click.argument("ident")
def resend_cmd(config_path: Path, ident: str) -> None:
    """Put a dead document (tracking id or DocumentId; or a dead inbound id) back in the queue,
    or fetch again an axis item whose fetching was given up (its axis item id)."""
    with _runtime(config_path, exclusive=False) as rt:
        ok = rt.engine.resend(ident)
        tracked = None if ok else rt.engine.track(ident)
    if not ok:
        click.echo(f"{ident}: {_why_not_resent(tracked)}", err=True)
        sys.exit(1)
    click.echo(f"{ident}: queued again")


def _why_not_resent(tracked: dict | None) -> str:
    """Why ``resend`` found nothing to queue again, in words the operator can act on."""
    if tracked is None:
        return "no dead or cancelled document with this id"
    if tracked["state"] != "sent":
        return f"the document is {tracked['state']}, not dead or cancelled: it is still on its way (see `status`)"
    failed = [r for r in tracked["recipients"] if r["status_code"] in NOT_DELIVERED_CODES]
    text = (f"the document was sent (axis id {tracked['axis_id']}): the axis holds its DocumentId, and the same "
            "document sent again is refused as a duplicate (the hub answers M.Exist)")
    if failed:
        names = "; ".join(f"{r['agency']}: {r['status_code']} {r['status_name']}" for r in failed)
        text += (f". Not delivered to {names}. Send it again from the document software as a new document "
                 "(a new number), or ask the provincial hub to forward it")
    return text


@click.command("cancel")
@_config_option
@click.argument("ident")
def cancel_cmd(config_path: Path, ident: str) -> None:
    """Cancel a document not yet sent (tracking id or DocumentId)."""
    with _runtime(config_path, exclusive=False) as rt:
        ok = rt.engine.cancel(ident)
    if not ok:
        click.echo(f"{ident}: no queued, retrying or dead document with this id "
                   "(one being sent this moment cannot be cancelled; look again with `status`)", err=True)
        sys.exit(1)
    click.echo(f"{ident}: cancelled")


def _iso(epoch: float | None) -> str | None:
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds") if epoch else None
