"""The daemon: scheduled rounds of the engine, signals, intake, health and metrics.

APScheduler 3 runs each job in its own thread, ``coalesce`` (a late job runs once, not once
per missed turn), ``max_instances=1`` (never two of the same job at once), with a misfire
grace time. SIGTERM and SIGINT stop it gracefully: no new rounds start, the step in flight
completes, then the process exits 0. SIGHUP re-reads the configuration file and applies what can
change while running (:meth:`Daemon.reload`): routing rules and destinations, trust anchors and
revocation, the signature policy; any other change is logged as needing a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler

from ..audit.log import AuditError
from ..audit.seal import SealError
from ..audit.tsa import TsaError
from ..axis.errors import AuthenticationError, AxisError, RetryableAxisError, TLSError
from ..durable import as_disk_full
from ..engine.context import GateClosed, Verification
from ..engine.outbox import IntakeError, StatusRequest
from ..edxml.model import StaffInfo
from .config import Config, ConfigError, config_error, load_config
from .health import Health, callable_check, certificate_expiry_check, folder_check, last_poll_check
from .metrics import Metrics, QueueSample
from .ops_http import ops_app, start_ops_server
from ..routing.config import RoutingConfigError, SecretError
from ..routing.delivery import DeliveryError, open_destination
from ..routing.http_intake import IntakeUnavailable
from ..signing.keys import KeySourceError, KeyUnavailableError
from ..signing.trust import TrustStoreError
from ..store.db import DatabaseError
from .runtime import (Runtime, intake_tls_context, intake_token_ref, make_router, make_verification, needs_restart,
                      with_reloaded)

log = logging.getLogger("connector.daemon")


class MetricsObserver:
    """The engine's observer, fed into the Prometheus metrics."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def sent(self, latency: float) -> None:
        self.m.document_sent(latency)

    def received(self, latency: float) -> None:
        self.m.document_received(latency)

    def failed(self, direction: str) -> None:
        self.m.document_failed(_DIRECTIONS[direction])

    def retried(self, direction: str) -> None:
        self.m.document_retried(_DIRECTIONS[direction])

    def dead(self, direction: str) -> None:
        self.m.document_dead(_DIRECTIONS[direction])

    def signed(self) -> None:
        self.m.signing_key_works()

    def key_unavailable(self) -> None:
        self.m.signing_key_lost()


_DIRECTIONS = {"out": "outbound", "in": "inbound"}


class Daemon:
    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.config = runtime.config
        self.engine = runtime.engine
        self.metrics = Metrics()
        self.engine.ctx.observer = MetricsObserver(self.metrics)
        self.metrics.set_queue_sampler(self._queue_sample)
        self.health = self._health()
        self.stopping = threading.Event()
        self.scheduler = BackgroundScheduler(job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": int(self.config.schedule.misfire_grace_s),
        })
        self.folder_intake = None
        self._stale_after = 600.0
        self.http_intake = None
        self.ops = None
        self._traced: set[tuple[str, str]] = set()  # (round, exception type) whose traceback was logged

    # ------------------------------------------------------------------ jobs

    def _job(self, name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            if self.stopping.is_set():
                return
            try:
                fn()
            except GateClosed as exc:
                log.error("exchange stopped (fail closed): %s", exc)
            except AxisError as exc:
                # Expected weather (a busy or unreachable axis): one line; the next round retries.
                log.warning("%s round: the axis did not answer as expected: %s", name, exc)
            except Exception as exc:  # noqa: BLE001 - a job never kills the daemon; the error is logged with its cause
                known = operational(exc)
                if known is not None:
                    # A known operational problem (a missing file, a full disk, a bad setting): the
                    # reason is what the operator needs, a traceback would only bury it.
                    log.error("%s round failed: %s", name, operational_reason(known))
                else:
                    self._unexpected(name, exc)

        run.__name__ = name
        return run

    def _unexpected(self, name: str, exc: Exception) -> None:
        """An exception of a type no round expects (a bug): its traceback is logged the first
        time this round meets this type in this run, one line after that."""
        kind = (name, type(exc).__qualname__)
        if kind in self._traced:
            log.error("%s round failed: unexpected %s: %s (traceback logged earlier)", name, type(exc).__name__, exc)
            return
        self._traced.add(kind)
        log.error("%s round failed: unexpected %s: %s", name, type(exc).__name__, exc, exc_info=exc)

    def _round_send(self) -> None:
        self.engine.send_due()

    def _round_poll(self) -> None:
        try:
            self.engine.poll()
        except Exception as exc:
            self.metrics.poll_failed(poll_failure_reason(exc))
            raise  # logged by _job, like any round's failure
        self.engine.process_due()
        self.engine.send_due()  # the statuses the processing queued

    def _round_process(self) -> None:
        self.engine.process_due()

    def _round_directory(self) -> None:
        self.engine.refresh_directory()

    def _round_intake(self) -> None:
        intake = self.folder_intake
        if intake is None:
            return
        self.engine.ctx.gate()  # exchanges stopped: leave the drops where the DMS put them, claim nothing
        items = intake.recover(self._stale_after) + intake.claim()
        reports = intake.recover_status_reports(self._stale_after) + intake.status_reports()
        self._stale_after = max(self._stale_after, 600.0)
        for item in items:
            if self.stopping.is_set():
                break
            try:
                tracking = self.engine.submit(item.document, item.files, intake_key=f"folder:{item.drop_id}")
            except IntakeError as exc:
                intake.fail(item, exc.problems)
                continue
            intake.complete(item, tracking)
        for report in reports:
            try:
                tracking = self.engine.submit_status(_status_request(report), intake_key=f"status-folder:{report.report_id}")
            except IntakeError as exc:
                intake.fail_status(report, exc.problems)
                continue
            intake.complete_status(report, tracking)

    def _round_seal(self) -> None:
        audit = self.rt.audit
        if audit is None:
            return
        try:
            batch = audit.seal()
        except KeyUnavailableError:
            self.metrics.signing_key_lost()  # the seals are signed with the documents' key
            raise
        if batch is not None and audit.sealer is not None:
            self.metrics.signing_key_works()

    def _round_archive(self) -> None:
        if self.rt.audit is None:
            return
        a = self.config.audit
        folder = self.config.path(a.archive_dir) if a.archive_dir else self.config.data_dir / "audit-archive"
        folder.mkdir(parents=True, exist_ok=True)
        before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=a.archive_after_days)
        path = self.rt.audit.archive(before, folder)
        if path is not None:
            log.info("audit log: archived old entries to %s", path)

    # ------------------------------------------------------------------ health & metrics

    def _queue_sample(self) -> QueueSample:
        summary = self.rt.store.summary(recent=0)
        states = {f"out_{k}": v for k, v in summary.outbound.items()}
        states.update({f"in_{k}": v for k, v in summary.inbound.items()})
        return QueueSample(states, summary.oldest_pending_age)

    def _last_poll(self) -> dt.datetime | None:
        value = self.rt.store.get_setting("last_good_poll")
        return dt.datetime.fromtimestamp(float(value), dt.timezone.utc) if value else None

    def _health(self) -> Health:
        health = Health()
        health.register(callable_check("database", lambda: self.rt.store.summary(recent=0)))
        health.register(callable_check("axis", lambda: self.rt.axis.directory()))
        poll_limit = dt.timedelta(seconds=max(60.0, 5 * self.config.schedule.poll_every_s))
        health.register(last_poll_check(self._last_poll, poll_limit))
        if self.rt.key is not None:
            cert = getattr(self.rt.key, "certificate", None)
            if cert is not None:
                health.register(certificate_expiry_check(cert, name="signing_certificate"))
        if self.config.axis.client_cert is not None:
            health.register(self._tls_certificate_check(self.config.path(self.config.axis.client_cert)))
        health.register(folder_check("folders", self._folders))
        return health

    def _folders(self) -> list[tuple[str, Path]]:
        """The folders the connector reads or writes, as ``(role, path)`` for the ``folders``
        health check; read at each probe, so the destinations follow a SIGHUP reload and the
        intake folders appear once :meth:`start` has opened them."""
        from ..routing.folder_delivery import FolderDestination

        data = self.config.data_dir
        folders = [("data folder", data), ("spool folder", data / "spool"), ("evidence folder", self.rt.evidence.root)]
        intake = self.folder_intake
        if intake is not None:
            folders += [("intake folder", intake.root), ("status folder", intake.status)]
        folders += [(f"destination {name}", d.root) for name, d in sorted(self.rt.destinations.items())
                    if isinstance(d, FolderDestination)]
        if self.rt.audit is not None and self.config.audit.archive_dir is not None:
            folders.append(("audit archive folder", self.config.path(self.config.audit.archive_dir)))
        return folders

    @staticmethod
    def _tls_certificate_check(path: Path):
        from cryptography import x509

        from .health import CheckResult, HealthCheck

        try:
            cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
        except (OSError, ValueError) as exc:
            detail = f"axis TLS client certificate {path} cannot be read: {exc}"
            return HealthCheck("axis_tls_certificate", lambda: CheckResult(False, detail, {"path": str(path)}))
        return certificate_expiry_check(cert, name="axis_tls_certificate")

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Open the intake, the servers and the scheduled rounds. A start that fails (a setting
        that cannot be used is a :class:`ConfigError` naming the key) first stops the servers it
        had started, then raises; the runtime is left to the caller (:meth:`run_forever`
        closes it)."""
        try:
            self._start()
        except BaseException:
            self._stop_servers()
            raise

    def _start(self) -> None:
        from ..routing.folder_intake import FolderIntake

        routing = self.config.routing
        self._make_own_folders()
        if routing.intake.folder is not None:
            intake = routing.intake
            self.folder_intake = FolderIntake(
                self.config.path(intake.folder), settle_s=intake.settle_s, max_file_bytes=intake.max_file_bytes,
                status_dir=self.config.path(routing.status_folder) if routing.status_folder else None,
            )
            # Drops and reports a killed run had claimed: ours at once when we are the only
            # instance (SQLite), otherwise once they are clearly abandoned.
            self._stale_after = 0.0 if self.rt.lock_fd is not None else 600.0
        if routing.intake.http is not None:
            self._start_http_intake()
        if self.config.ops.port is not None:
            try:
                self.ops = start_ops_server(ops_app(self.health, self.metrics), self.config.ops.host, port=self.config.ops.port)
            except OSError as exc:  # the port is taken or not ours to open: the setting cannot be used as it is
                raise config_error(self.config.source, "ops.port", exc.strerror or str(exc)) from None
        s = self.config.schedule
        now = dt.datetime.now()
        jobs = [
            ("directory", self._round_directory, s.directory_every_s),
            ("intake", self._round_intake, s.intake_every_s),
            ("send", self._round_send, s.send_every_s),
            ("poll", self._round_poll, s.poll_every_s),
            ("process", self._round_process, max(s.send_every_s, 5.0)),
            ("seal", self._round_seal, s.seal_every_s),
            ("archive", self._round_archive, 24 * 3600.0),
        ]
        for name, fn, every in jobs:
            self.scheduler.add_job(self._job(name, fn), "interval", seconds=every, id=name, next_run_time=now)
        self.scheduler.start()
        log.info("connector %s running (%s binding, database %s)", self.config.connector.agency, self.config.axis.binding,
                 self.rt.db.url.render_as_string(hide_password=True))

    def _make_own_folders(self) -> None:
        """Create the folders the connector owns and fills on demand (the spool; the audit
        archive folder, which the archive round creates anyway), so the ``folders`` health
        check fails only when one goes missing, not before its first use. The DMS's folders
        (destinations) are never created here: a missing one may be a share not mounted."""
        own = [self.config.data_dir / "spool"]
        if self.rt.audit is not None and self.config.audit.archive_dir is not None:
            own.append(self.config.path(self.config.audit.archive_dir))
        for folder in own:
            folder.mkdir(parents=True, exist_ok=True)

    def _start_http_intake(self) -> None:
        from ..routing.http_intake import IntakeRejected, intake_app
        from ..httpserver import WsgiServer
        from .config import read_secret

        http = self.config.routing.intake.http

        def submit(document: dict, files: list[Path]) -> str:
            try:
                return self.engine.submit(document, files)
            except IntakeError as exc:
                raise IntakeRejected(exc.problems) from None
            except UNAVAILABLE as exc:
                raise intake_unavailable(exc) from None

        def track(tracking_id: str) -> dict | None:
            try:
                return self.engine.track(tracking_id)
            except UNAVAILABLE as exc:
                raise intake_unavailable(exc) from None

        def report_status(report) -> str:
            try:
                return self.engine.submit_status(_status_request(report))
            except IntakeError as exc:
                raise IntakeRejected(exc.problems) from None
            except UNAVAILABLE as exc:
                raise intake_unavailable(exc) from None

        ref = intake_token_ref(self.config)
        token = read_secret(ref, "routing.intake.http.token", self.config.source)
        if not token:  # intake_app would refuse it with a bare ValueError
            raise config_error(self.config.source, "routing.intake.http.token", f"the intake API's token ({ref}) is empty")
        app = intake_app(submit, track, report_status, token, spool_dir=self.rt.config.data_dir / "spool")
        context = intake_tls_context(self.config)
        try:
            server = WsgiServer(app, host=http.host, port=http.port, ssl_context=context)
        except OSError as exc:  # the port is taken or not ours to open
            raise config_error(self.config.source, "routing.intake.http.port",
                               f"cannot listen on {http.host}:{http.port} for the intake API: {exc.strerror or exc}") from None
        self.http_intake = server.start()
        if not self.http_intake.loopback_only and context is None:
            log.warning("the intake API is served on %s, beyond this machine, over plain HTTP: its access token and "
                        "the documents cross the network in clear; set [routing.intake.http] tls_cert and tls_key, "
                        "or restrict it with a firewall", self.http_intake.url)
        log.info("intake API on %s", self.http_intake.url)

    def reload(self) -> None:
        """Re-read the configuration file (SIGHUP) and apply, each part swapped whole, what can
        change while running: routing rules and destinations, trust anchors and revocation,
        the signature policy. Any other changed key is logged as needing a restart and left
        as it runs. A new configuration that cannot be used (a bad value, a trust folder that
        cannot be read, a file in it that is not a CA certificate) changes nothing: one error
        line names the problem."""
        try:
            fresh = load_config(self.config.source) if self.config.source else self.config
            verification = make_verification(fresh, known=self.engine.ctx.verification.trust.store)
            router = make_router(fresh)
            destinations = {name: open_destination(name, d) for name, d in fresh.routing.destinations.items()}
        except (ConfigError, TrustStoreError, OSError) as exc:
            reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            log.error("configuration NOT reloaded, keeping all the old settings: %s", reason)
            return
        except Exception as exc:  # noqa: BLE001 - a bug in reloading must not stop the daemon
            log.error("configuration NOT reloaded, keeping all the old settings: unexpected %s: %s",
                      type(exc).__name__, exc, exc_info=exc)
            return
        for key in needs_restart(self.config, fresh):
            log.warning("%s changed: restart the connector to apply it", key)
        # One swap each: an item sees the old rules with the old destinations or the new with the
        # new; the old destinations are closed by the engine once no item in flight uses them.
        self.engine.set_routing(router, destinations)
        self.engine.ctx.verification = verification  # one assignment: a document sees the old pair or the new
        self.rt.destinations = destinations
        self.config = self.rt.config = with_reloaded(self.config, fresh)
        log.info("configuration reloaded: %s", _reload_summary(fresh, verification))

    def stop(self) -> None:
        self.stopping.set()
        self.scheduler.shutdown(wait=True)  # the steps in flight complete
        self._stop_servers()
        if self.rt.audit is not None:
            self._final_seal()
        self.rt.close()

    def _stop_servers(self) -> None:
        """Stop the intake API and the health/metrics server, those that run."""
        for server in (self.http_intake, self.ops):
            if server is not None:
                server.stop()
        self.http_intake = self.ops = None

    def _final_seal(self) -> None:
        """Seal what the last rounds logged, best effort: the next start seals what is left. A
        full disk or another operational problem is one line with the reason; only an error
        of a type nobody expects (a bug) keeps its traceback."""
        try:
            self.rt.audit.seal()
        except Exception as exc:  # noqa: BLE001 - the stop goes on whatever happened
            known = operational(exc)
            if known is not None:
                log.error("final seal failed (the next start seals what is left): %s", operational_reason(known))
            else:
                log.error("final seal failed: unexpected %s: %s", type(exc).__name__, exc, exc_info=exc)

    def run_forever(self, reload_asked: list[bool] | None = None) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code. The runtime is closed when this
        returns, and also when the start fails (its error is raised: a :class:`ConfigError` for
        a setting that cannot be used), so the instance lock is never left held. The signal
        handlers it installs are put back as they were."""
        stop = threading.Event()
        # A plain flag: the handler takes no lock, the reload runs in the loop below. The caller
        # may pass the one its own early handler set (a SIGHUP while the runtime was opening).
        reload_asked = reload_asked if reload_asked is not None else [False]

        def on_hup(*_) -> None:
            reload_asked[0] = True

        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGHUP, on_hup)
        try:
            try:
                self.start()
            except BaseException:
                self.rt.close()
                raise
            while not stop.wait(0.5):
                if reload_asked[0]:
                    reload_asked[0] = False
                    self.reload()
            log.info("stopping: finishing the step in flight")
            self.stop()
            log.info("stopped")
            return 0
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


OPERATIONAL_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ConfigError, RoutingConfigError, SecretError, KeySourceError, TrustStoreError, DeliveryError,
    AuditError, SealError, TsaError, DatabaseError,
)
"""What a round may meet in normal operation (files, settings, peers); logged as one line."""


def operational(exc: BaseException) -> BaseException | None:
    """``exc`` when it is an operational error, or the full disk behind an error of another
    type (a library's wrapper around ENOSPC); None for what no round expects (a bug)."""
    return as_disk_full(exc) or (exc if isinstance(exc, OPERATIONAL_ERRORS) else None)


def operational_reason(exc: BaseException) -> str:
    """One line for an operational error: its type when that says something, the reason, and
    for a file error the path (when the message does not already name it)."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
        named = [p for p in paths if p not in reason]
        return f"{reason}: {' -> '.join(named)}" if named else reason
    return f"{type(exc).__name__}: {exc}"


def poll_failure_reason(exc: BaseException) -> str:
    """The class of a failed poll, as the ``reason`` label of ``poll_failures_total``: what an
    operator looks at first (the axis, our credentials or TLS, the local disk or files, the
    audit gate, or a bug)."""
    if isinstance(exc, GateClosed):
        return "exchange_stopped"
    if isinstance(exc, AuthenticationError):
        return "authentication"
    if isinstance(exc, TLSError):
        return "tls"
    if isinstance(exc, RetryableAxisError):
        return "axis_unavailable"
    if isinstance(exc, AxisError):
        return "axis_refused"
    if as_disk_full(exc) is not None:
        return "disk_full"
    if isinstance(exc, OPERATIONAL_ERRORS):
        return "local"
    return "internal"


UNAVAILABLE: tuple[type[BaseException], ...] = (
    GateClosed, DatabaseError, sa.exc.DBAPIError, sa.exc.TimeoutError, OSError,
)
"""What the intake API's calls into the engine may meet when the connector itself cannot take
anything in for now: the audit gate closed (exchanges stopped, fail-closed), the database
unreachable, gone, locked, damaged, its connection lost, or every pooled connection busy, or
the staging folder not writable (the request's files are the connector's own copies by then:
an OSError there is the connector's, never the DMS's). Answered 503 with Retry-After (:func:`intake_unavailable`)."""


def intake_unavailable(exc: BaseException) -> IntakeUnavailable:
    """The intake API's answer to ``exc`` (one of :data:`UNAVAILABLE`): ``reason`` for the DMS
    (no path, no SQL), ``detail`` for the operator's one log line (the cause, without the SQL
    statement and parameters SQLAlchemy adds to a driver's error)."""
    if isinstance(exc, GateClosed):
        return IntakeUnavailable("the connector has stopped exchanging documents for now",
                                 f"exchange stopped (fail closed): {exc}")
    if isinstance(exc, OSError):
        full = as_disk_full(exc)
        if full is not None:
            return IntakeUnavailable("the connector's storage is full", operational_reason(full))
        return IntakeUnavailable("the connector cannot store documents for now", operational_reason(exc))
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig if isinstance(exc.orig, BaseException) else exc
        lines = str(orig).strip().splitlines()
        return IntakeUnavailable("the connector's database is unavailable",
                                 f"database unavailable: {lines[0] if lines else type(orig).__name__}")
    return IntakeUnavailable("the connector's database is unavailable", f"database unavailable: {exc}")


def _reload_summary(config: Config, verification: Verification) -> str:
    """What a reload applied, for its one info line (counts and modes, never a secret)."""
    routing, signing = config.routing, config.signing
    trust = verification.trust
    return (f"routing rules reloaded ({len(routing.rules)} rule(s), {len(routing.destinations)} destination(s)); "
            f"trust anchors reloaded ({len(trust.store)} certificate(s) from {trust.store.source}, "
            f"revocation {signing.revocation}); signature policy reloaded (default {signing.policy}, "
            f"{len(verification.policy.senders)} sender rule(s))")


def _status_request(report) -> StatusRequest:
    staff = None
    if getattr(report, "staff", None):
        s = report.staff
        get = s.get if isinstance(s, dict) else (lambda k, o=s: getattr(o, k, None))
        staff = StaffInfo(get("department"), get("name"), get("email"), get("mobile"))
    return StatusRequest(document_id=report.document_id, to=report.to, status_code=report.status_code,
                         description=report.description, staff=staff)
