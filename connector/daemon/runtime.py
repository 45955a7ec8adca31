"""Assembling a running connector from its configuration: database, evidence, audit log,
axis binding, keys, trust, routing and the engine. The CLI commands and the daemon share it."""

from __future__ import annotations

import fcntl
import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from ..axis.soap_hub import SoapHubAxis
from ..axis.transport import AxisTransport
from ..axis.vxp import VxpAxis
from ..edxml.model import Organization, StaffInfo
from ..engine.context import EngineContext, EngineSettings, GateClosed, Verification, default_worker_id
from ..engine.engine import Engine
from ..engine.events import ExchangeEvent
from ..retry import RetryPolicy
from ..routing.delivery import open_destination
from ..routing.rules import Router
from ..signing.keys import KeySourceError, SigningKey, load_signing_key
from ..signing.policy import SenderRule, SignaturePolicy
from ..signing.revocation import RevocationChecker
from ..signing.trust import TrustStore, TrustStoreError
from ..signing.verify import TrustOptions
from ..store.backup import LOCK_NAME
from ..store.db import DatabaseError, is_postgres, migrate, open_database
from ..store.evidence import EvidenceStore
from ..store.repo import Store
from .config import Config, ConfigError, load_config, read_secret

log = logging.getLogger("connector.daemon")


@dataclass
class Runtime:
    config: Config
    db: sa.Engine
    store: Store
    evidence: EvidenceStore
    axis: AxisTransport
    key: SigningKey | None
    engine: Engine
    audit: Any = None
    destinations: dict[str, Any] = field(default_factory=dict)
    lock_fd: int | None = None
    instance_hold: Any = None

    def close(self) -> None:
        for destination in self.destinations.values():
            try:
                destination.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self.axis.close()
        if self.instance_hold is not None:
            self.instance_hold.close()
            self.instance_hold = None
        self.db.dispose()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def make_axis(config: Config, spool_dir: Path) -> AxisTransport:
    a = config.axis
    organ = a.organ_id or config.connector.agency
    verify: bool | str = str(config.path(a.ca_bundle)) if a.ca_bundle else True
    cert = (str(config.path(a.client_cert)), str(config.path(a.client_key))) if a.client_cert and a.client_key else None
    timeout = (min(10.0, a.timeout_s), a.timeout_s)
    if a.binding == "soap":
        if not a.token:
            raise config.error("axis.token", "the SOAP hub binding needs the hub's token (env:NAME or file:/path)")
        return SoapHubAxis(a.url, organ, read_secret(a.token, "axis.token", config.source), timeout=timeout, verify=verify, cert=cert,
                           retries=a.retries, spool_dir=spool_dir)
    if not a.secret:
        raise config.error("axis.secret", "the VXP binding needs the system's secret (env:NAME or file:/path)")
    return VxpAxis(a.url, organ, read_secret(a.secret, "axis.secret", config.source), timeout=timeout, verify=verify, cert=cert,
                   retries=a.retries, spool_dir=spool_dir)


def signature_policy(config: Config) -> SignaturePolicy:
    s = config.signing
    weak = set(s.allow_weak)
    senders = {p: SenderRule(mode, allow_weak=p in weak) for p, mode in s.senders.items()}
    for p in weak - set(senders):
        senders[p] = SenderRule(s.policy, allow_weak=True)
    return SignaturePolicy(SenderRule(s.policy), senders)


def make_router(config: Config) -> Router:
    return Router(config.routing)


def trust_options(config: Config, *, known: TrustStore | None = None) -> TrustOptions:
    """The trust anchors in ``signing.trust_dir`` with the ``signing.revocation`` checker.

    A folder that cannot be read is a :class:`ConfigError` naming ``signing.trust_dir``. With
    ``known`` (the anchors in use, on a reload), a file that is not a usable CA certificate and
    was not already skipped by ``known`` is one too: the operator just put it there, so it is
    refused rather than silently ignored (at start such files are skipped with a warning)."""
    folder = config.path(config.signing.trust_dir)
    mode = config.signing.revocation
    try:
        trust = TrustOptions.from_directory(folder, revocation=RevocationChecker(mode) if mode != "off" else None)
    except (TrustStoreError, OSError) as exc:
        raise config.error("signing.trust_dir", str(exc)) from None
    if known is not None:
        before = {skipped.path for skipped in known.skipped}
        new = [skipped for skipped in trust.store.skipped if skipped.path not in before]
        if new:
            problems = "; ".join(f"{s.path}: {s.reason}" for s in new)
            raise config.error("signing.trust_dir", f"{problems} (fix or remove it, then reload again)")
    return trust


def intake_token_ref(config: Config) -> str:
    """Where the intake API's bearer token is read from (``env:NAME`` or ``file:/path``)."""
    http = config.routing.intake.http
    return f"env:{http.token_env}" if http.token_env else f"file:{config.path(http.token_file)}"


def intake_tls_context(config: Config) -> ssl.SSLContext | None:
    """The intake API's TLS context when HTTPS is configured; a certificate, key or client CA
    that cannot be loaded is a :class:`ConfigError` naming the files."""
    from ..httpserver import tls_context

    http = config.routing.intake.http
    if http is None or http.tls_cert is None:
        return None
    paths = [config.path(p) if p is not None else None for p in (http.tls_cert, http.tls_key, http.tls_client_ca)]
    try:
        return tls_context(*paths)
    except (ssl.SSLError, OSError, ValueError) as exc:
        named = ", ".join(str(p) for p in paths if p is not None)
        raise config.error("routing.intake.http", f"the TLS certificate, key or client CA ({named}) cannot be "
                                                  f"loaded: {getattr(exc, 'reason', None) or exc}") from None


def make_verification(config: Config, *, known: TrustStore | None = None) -> Verification:
    """Trust anchors and signature policy as one object (see :func:`trust_options` for ``known``)."""
    return Verification(trust_options(config, known=known), signature_policy(config))


RELOADABLE: tuple[str, ...] = (
    "routing.destinations", "routing.rules", "routing.default",
    "signing.trust_dir", "signing.revocation", "signing.policy", "signing.senders", "signing.allow_weak",
)
"""The keys a running daemon applies on reload (SIGHUP); any other change needs a restart."""


def needs_restart(old: Config, new: Config) -> list[str]:
    """The keys that differ between ``old`` and ``new`` and are not :data:`RELOADABLE`, in the
    file's order (``axis.url``, ``connector.database_url``, ...). A section that appears or
    disappears (``routing.intake.http``) is named once; tables and lists are compared whole."""
    return [key for key in _changed_keys(old, new, "")
            if not any(key == r or key.startswith(r + ".") for r in RELOADABLE)]


def _changed_keys(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, BaseModel) and type(old) is type(new):
        keys: list[str] = []
        for name in type(old).model_fields:
            keys += _changed_keys(getattr(old, name), getattr(new, name), f"{prefix}{name}.")
        return keys
    return [] if old == new else [prefix.rstrip(".")]


def with_reloaded(old: Config, new: Config) -> Config:
    """``old`` with the :data:`RELOADABLE` parts of ``new``: what a daemon runs with after a
    reload (a change that needs a restart stays unapplied, and is reported again next time)."""
    routing = new.routing.model_copy(update={"intake": old.routing.intake, "status_folder": old.routing.status_folder})
    signing = new.signing.model_copy(update={"key": old.signing.key})
    return old.model_copy(update={"routing": routing, "signing": signing})


def _instance_lock(data_dir: Path) -> int:
    """One instance per data folder on SQLite (several instances need PostgreSQL)."""
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"another connector is running on {data_dir} (SQLite serves one instance; use PostgreSQL for several)") from None
    return fd


def open_runtime(config: Config | str | Path, *, exclusive: bool = True) -> Runtime:
    """Everything the engine needs, opened and checked. ``exclusive`` (the daemon and commands
    that do work; not ``status``): take the data folder's lock on SQLite, the instance's name on
    PostgreSQL when ``connector.instance_id`` is set; either way, claims left by a killed run
    of this instance are taken back."""
    if not isinstance(config, Config):
        config = load_config(config)
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        db = open_database(config.database_url)
        migrate(db)
    except DatabaseError as exc:
        raise config.error("connector.database_url", str(exc)) from None
    lock_fd = None
    if exclusive and not is_postgres(db):
        lock_fd = _instance_lock(data_dir)
    try:
        runtime = _assemble(config, db, lock_fd)
    except BaseException:
        db.dispose()
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    if exclusive and is_postgres(db) and config.connector.instance_id:
        try:
            _take_instance_name(runtime, config.connector.instance_id)
        except BaseException:
            runtime.close()
            raise
    return runtime


def _take_instance_name(runtime: Runtime, instance_id: str) -> None:
    """On PostgreSQL, a named instance holds its name while it runs; claims left in that name
    by a killed run of it are dropped at once instead of waiting out their lease."""
    hold = runtime.store.hold_instance(instance_id)
    if hold is None:
        raise ConfigError(
            f"connector.instance_id: another running connector uses the name {instance_id!r} on this database "
            "(each instance needs its own name; stop the daemon before running work commands under its name)"
        )
    runtime.instance_hold = hold
    released = runtime.store.release_claims(instance_id)
    if released:
        log.info("took back %d item(s) claimed by an earlier run of instance %s", released, instance_id)


def _assemble(config: Config, db: sa.Engine, lock_fd: int | None) -> Runtime:
    data_dir = config.data_dir
    evidence = EvidenceStore(data_dir / "evidence")
    key = None
    if config.signing.key:
        try:
            key = load_signing_key(config.signing.key, base_dir=config.base_dir)
        except KeySourceError as exc:
            raise config.error("signing.key", str(exc)) from None
    audit = _audit(config, db, evidence, key)
    store = Store(db, journal=_journal(audit) if audit else None)
    if lock_fd is not None:
        store.release_claims()  # the only instance: claims left by a killed run are ours to retake
    axis = make_axis(config, data_dir / "spool")
    verification = make_verification(config)
    c = config.connector
    staff = StaffInfo(c.clerk_department, c.clerk_name, c.clerk_email, c.clerk_phone) if c.clerk_name else None
    r = config.retry
    settings = EngineSettings(
        agency=Organization(organ_id=c.agency, organ_name=c.name),
        data_dir=data_dir,
        staff=staff,
        retry=RetryPolicy(
            tuple(r.schedule_s), max_attempts=r.max_attempts, max_age=r.max_age_h * 3600, jitter=r.jitter
        ),
        worker_id=c.instance_id or default_worker_id(),
    )
    ctx = EngineContext(settings, store, evidence, axis, key, verification, gate=_gate(audit))
    destinations = {name: open_destination(name, dest) for name, dest in config.routing.destinations.items()}
    engine = Engine(ctx, make_router(config), destinations)
    return Runtime(config, db, store, evidence, axis, key, engine, audit, destinations, lock_fd)


def _audit(config: Config, db: sa.Engine, evidence: EvidenceStore, key: SigningKey | None):
    if not config.audit.enabled:
        return None
    import datetime as dt

    from ..audit.log import AuditLog
    from ..audit.seal import Sealer
    from ..audit.tsa import TsaClient

    a = config.audit
    tsa = TsaClient(a.tsa_url, ca_certs=config.path(a.tsa_ca) if a.tsa_ca else None) if a.tsa_url else None
    return AuditLog(
        db, evidence, actor=config.connector.instance_id or config.connector.agency,
        sealer=Sealer(key) if key else None, tsa=tsa,
        fail_closed_after=dt.timedelta(seconds=a.fail_closed_after_s) if a.fail_closed_after_s else None,
    )


def _journal(audit):
    from ..audit.log import AuditEvent

    def append(conn: sa.Connection, event: ExchangeEvent) -> None:
        audit.append(conn, AuditEvent(event.event, event.direction, event.document_id, event.tracking_id, event.axis_id,
                                      event.sha256, event.detail))

    return append


def _gate(audit):
    if audit is None:
        return lambda: None

    def gate() -> None:
        from ..audit.log import AuditUnavailable

        try:
            audit.ensure_can_exchange()
        except AuditUnavailable as exc:
            raise GateClosed(str(exc)) from None

    return gate
