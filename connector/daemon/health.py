"""Health checks behind ``/healthz``.

The daemon registers one :class:`HealthCheck` per thing that must work (database, axis
reachability, signing and TLS certificate expiry, age of the last good poll, folders).
:meth:`Health.run` runs them all, each in its own thread under one timeout, so a hung dependency
shows up as a failing check instead of a hung probe. A check still running from an earlier
probe is waited for again rather than started twice: however often a monitor probes a hung
database, each check holds at most one thread, and that thread never delays the process's exit.
The report is ``200`` when every check is ok and ``503`` otherwise; a check may be ok with
``data["warning"]`` set (a certificate close to expiry), which makes the overall status
``degraded`` but still ``200``.

Check details are shown to whoever can reach the endpoint, so exception messages pass through
:func:`connector.daemon.logs.redact_text` (a database URL's password, for instance), and a
database driver's error is shown without the SQL statement and parameters SQLAlchemy adds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509

from connector.daemon.logs import redact_text

log = logging.getLogger("connector.daemon.health")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ``ok``, a readable ``detail``, and machine-readable ``data``."""

    ok: bool
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthCheck:
    """A named check; ``fn`` should answer quickly (it runs on every probe)."""

    name: str
    fn: Callable[[], CheckResult]


@dataclass(frozen=True)
class HealthReport:
    """The results of one :meth:`Health.run`, in registration order."""

    results: dict[str, CheckResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results.values())

    @property
    def status(self) -> str:
        """``ok``, ``degraded`` (all ok, some warning) or ``failing``."""
        if not self.ok:
            return "failing"
        return "degraded" if any(r.data.get("warning") for r in self.results.values()) else "ok"

    @property
    def status_code(self) -> int:
        return 200 if self.ok else 503

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checks": {name: {"ok": r.ok, "detail": r.detail, "data": r.data} for name, r in self.results.items()},
        }


def _describe(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's error (``.orig``) in a text that adds the SQL statement, its
    # parameters (document ids) and a link: the driver's own message is the reason.
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        exc = orig
    text = str(exc).strip() or "(no message)"
    return redact_text(f"{type(exc).__name__}: {text}")[:1000]


def _run_one(check: HealthCheck) -> CheckResult:
    try:
        result = check.fn()
    except Exception as exc:
        return CheckResult(False, f"check raised {_describe(exc)}")
    if not isinstance(result, CheckResult):
        return CheckResult(False, f"check returned {type(result).__name__}, not a CheckResult")
    return result


class _Running:
    """A check running in its own (daemon) thread, and when it started."""

    def __init__(self, check: HealthCheck):
        self.future: Future[CheckResult] = Future()
        self.started = time.monotonic()
        threading.Thread(target=self._run, args=(check,), name=f"health-{check.name}", daemon=True).start()

    def _run(self, check: HealthCheck) -> None:
        self.future.set_result(_run_one(check))  # _run_one never raises


class Health:
    """The registered checks; :meth:`run` gives a :class:`HealthReport`. Failing checks and
    recoveries are logged once per change, not on every probe."""

    def __init__(self, checks: Iterable[HealthCheck] = (), *, timeout: float = 5.0):
        self.timeout = timeout
        self._checks: dict[str, HealthCheck] = {}
        self._last_ok: dict[str, bool] = {}
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        for check in checks:
            self.register(check)

    def register(self, check: HealthCheck) -> None:
        """Add ``check``; a second check with the same name is a :class:`ValueError`."""
        if check.name in self._checks:
            raise ValueError(f"a health check named {check.name!r} is already registered")
        self._checks[check.name] = check

    def run(self) -> HealthReport:
        """Run every check concurrently; one that has not answered within ``timeout`` seconds fails.

        A check whose previous run (from this probe or a concurrent one) has not ended is not
        started again: this probe waits for that run, and reports how long it has been going."""
        checks = list(self._checks.values())
        if not checks:
            return HealthReport({})
        started = time.monotonic()
        with self._lock:
            running = {}
            for check in checks:
                current = self._running.get(check.name)
                if current is None or current.future.done():
                    current = self._running[check.name] = _Running(check)
                running[check.name] = current
        wait([r.future for r in running.values()], timeout=self.timeout)
        results = {name: r.future.result() if r.future.done() else self._no_answer(r, started)
                   for name, r in running.items()}
        self._log_changes(results)
        return HealthReport(results)

    def _no_answer(self, running: _Running, probe_started: float) -> CheckResult:
        detail = f"no answer within {self.timeout:g} s"
        if running.started < probe_started:  # started by an earlier probe and still going
            detail += f" (the check started by an earlier probe has been running for {time.monotonic() - running.started:.0f} s)"
        return CheckResult(False, detail)

    def _log_changes(self, results: dict[str, CheckResult]) -> None:
        with self._lock:
            for name, result in results.items():
                if self._last_ok.get(name, True) != result.ok:
                    if result.ok:
                        log.info("health check %s recovered: %s", name, result.detail)
                    else:
                        log.warning("health check %s failing: %s", name, result.detail)
                self._last_ok[name] = result.ok


# --------------------------------------------------------------------------- built-in checks


def certificate_expiry_check(
    cert: x509.Certificate, warn_days: int = 30, *, name: str = "certificate", clock: Clock = _utcnow
) -> HealthCheck:
    """Fails when ``cert`` has expired or is not yet valid; ok with a warning (status
    ``degraded``) within ``warn_days`` of its end."""

    def check() -> CheckResult:
        now = clock()
        subject = cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        days_left = (not_after - now).days
        data: dict[str, Any] = {"subject": subject, "not_after": not_after.isoformat(), "days_left": days_left}
        if now < not_before:
            return CheckResult(False, f"certificate {subject} is not valid before {not_before:%Y-%m-%d %H:%M} UTC", data)
        if now >= not_after:
            return CheckResult(False, f"certificate {subject} expired on {not_after:%Y-%m-%d %H:%M} UTC", data)
        if not_after - now <= timedelta(days=warn_days):
            data["warning"] = True
            return CheckResult(
                True, f"certificate {subject} expires on {not_after:%Y-%m-%d} ({days_left} days left): renew it", data
            )
        return CheckResult(True, f"certificate {subject} valid until {not_after:%Y-%m-%d} ({days_left} days)", data)

    return HealthCheck(name, check)


def last_poll_check(
    get_last_good: Callable[[], datetime | None],
    max_age: timedelta,
    *,
    name: str = "last_poll",
    clock: Clock = _utcnow,
) -> HealthCheck:
    """Fails when no poll of the axis has succeeded yet or the last good one is older than
    ``max_age`` (a naive time is taken as UTC)."""

    def check() -> CheckResult:
        last = get_last_good()
        limit = max_age.total_seconds()
        if last is None:
            return CheckResult(False, "no successful poll yet", {"max_age_seconds": limit})
        if last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        age = (clock() - last).total_seconds()
        data = {"last_good": last.isoformat(), "age_seconds": round(age, 3), "max_age_seconds": limit}
        if age > limit:
            return CheckResult(False, f"last successful poll {age:.0f} s ago (limit {limit:.0f} s)", data)
        return CheckResult(True, f"last successful poll {age:.0f} s ago", data)

    return HealthCheck(name, check)


def folder_check(name: str, folders: Callable[[], Iterable[tuple[str, Path]]] | Iterable[tuple[str, Path]]) -> HealthCheck:
    """Fails, naming each one, when a folder the connector reads or writes (``(role, path)``
    pairs: the data folder, the intake outbox, a destination) is missing, is not a folder, or
    cannot be written by this process; ok with the list checked otherwise."""

    def check() -> CheckResult:
        pairs = list(folders() if callable(folders) else folders)
        problems = [f"{role} {path}: {reason}" for role, path in pairs if (reason := _folder_problem(Path(path)))]
        data = {"folders": {role: str(path) for role, path in pairs}}
        if problems:
            return CheckResult(False, "; ".join(problems), data)
        return CheckResult(True, f"{len(pairs)} folder(s) present and writable", data)

    return HealthCheck(name, check)


def _folder_problem(path: Path) -> str | None:
    try:
        if not path.exists():
            return "missing"
        if not path.is_dir():
            return "not a folder"
    except OSError as exc:  # a dead network mount, a permission error on a parent
        return f"cannot be checked: {exc.strerror or exc}"
    if not os.access(path, os.W_OK | os.X_OK):
        return "not writable by this process"
    return None


def callable_check(name: str, fn: Callable[[], object]) -> HealthCheck:
    """A check that is ok when ``fn`` returns and failing, with the exception's type and
    message, when it raises (database ``SELECT 1``, axis reachability). A returned
    :class:`CheckResult` is used as is; a returned string becomes the detail."""

    def check() -> CheckResult:
        try:
            value = fn()
        except Exception as exc:
            return CheckResult(False, _describe(exc))
        if isinstance(value, CheckResult):
            return value
        return CheckResult(True, value if isinstance(value, str) else "ok")

    return HealthCheck(name, check)
