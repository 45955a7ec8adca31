"""``check --config FILE [--json]``: the preflight run after writing a configuration, before
starting the daemon, and again when something breaks.

Every check runs once and prints one line: ``ok``, ``warning`` (works, but look at it: a
certificate close to its end, a database the next start migrates) or ``FAILED`` with the reason
naming the file, folder, URL or agency; ``skipped`` when a check needs what an earlier one could
not open (the chain needs the key). Exit 0 when nothing failed (warnings do not fail), 1 when
something did, 2 on a usage error.

It changes nothing and can run beside a running daemon. So it does not call
:func:`connector.daemon.runtime.open_runtime`, which migrates the database, creates a missing
SQLite file and the folders, and (exclusive) takes the data folder's lock: it opens each piece
itself with the runtime's own builders (:func:`~connector.daemon.runtime.make_axis`,
:func:`~connector.signing.keys.load_signing_key`, :func:`~connector.routing.delivery.open_destination`),
reads a SQLite database read-only and takes no lock. On the axis it calls only the directory
(GetOrganizations / getAgenciesList): never a send, never a poll (the hub's GetTraces without a
TimeStamp consumes what it returns). The checks are the ones ``/healthz`` runs
(:mod:`connector.daemon.health`), plus what only a preflight can afford.

No traceback, no secret: a check that raises becomes a FAILED line with the reason (a library's
text passed through :func:`connector.daemon.logs.redact_text`, as logs are), and every line has
each secret the checks read (axis token or secret, intake token, webhook and database
passwords, key passphrase or PIN) replaced by ``***``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import click
import sqlalchemy as sa

from ..daemon.config import Config, ConfigError, load_config, read_secret
from ..daemon.health import CheckResult, certificate_expiry_check, folder_check
from ..daemon.logs import REDACTED, redact_text
from ..redact import http_url_problem, redact_url
from . import os_error_text

Status = Literal["ok", "warning", "failed", "skipped"]
LABELS: dict[str, str] = {"ok": "ok", "warning": "warning", "failed": "FAILED", "skipped": "skipped"}
PROBE = b"edoc-connector preflight: a test signature"
"""What the signing check signs (nothing is sent or stored)."""
MIN_SCRUBBED = 4
"""Shorter secrets are not searched for in the lines: replacing every "ab" would garble them,
and a secret that short protects nothing anyway."""


@dataclass(frozen=True)
class Verdict:
    """One printed line: the check's name, its status and the reason."""

    name: str
    status: Status
    detail: str


def from_health(name: str, result: CheckResult) -> Verdict:
    """A :mod:`health` check's result as a verdict: ok with ``data["warning"]`` is a warning."""
    if not result.ok:
        return Verdict(name, "failed", result.detail)
    return Verdict(name, "warning" if result.data.get("warning") else "ok", result.detail)


def reason(exc: BaseException) -> str:
    """One line for an exception a check met: a file error names the path; our own errors
    (configuration, key, trust, axis, database) already say what and where."""
    if isinstance(exc, OSError):
        return os_error_text(exc)
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error in a text with the SQL
    if isinstance(orig, BaseException):
        exc = orig
    text = " ".join(str(exc).split()) or "(no message)"
    if type(exc).__module__.startswith("connector."):
        return text
    # a library's text may quote a URL with its password or a header: redacted as logs are
    return redact_text(f"{type(exc).__name__}: {text}")


# --------------------------------------------------------------------------- the checks


class Preflight:
    """The checks over one loaded configuration, in order; later checks use what earlier ones
    opened (the key for the chain, the database for the audit log)."""

    def __init__(self, config: Config):
        self.config = config
        self.secrets: set[str] = set()
        self.verdicts: list[Verdict] = []
        self.db: sa.Engine | None = None
        self.db_current = False  # the schema is at this version's head revision
        self.db_fresh = False  # no database or no schema yet: the first start makes it
        self.key: Any = None
        self.trust: Any = None

    def run(self) -> list[Verdict]:
        """Run every check; the verdicts, scrubbed of secrets."""
        steps: list[tuple[str, Callable[[], Iterator[Verdict]]]] = [
            ("database", self.database), ("signing_key", self.signing_key), ("trust_anchors", self.trust_anchors),
            ("signing_chain", self.signing_chain), ("axis", self.axis), ("folders", self.folders),
            ("destinations", self.destinations), ("routing", self.routing), ("intake", self.intake),
            ("audit", self.audit),
        ]
        try:
            for name, step in steps:
                self._collect(name, step)
        finally:
            self._drop_key()
            if self.db is not None:
                self.db.dispose()
        return [Verdict(v.name, v.status, self.scrub(v.detail)) for v in self.verdicts]

    def _drop_key(self) -> None:
        """Close the signing key (a PKCS#11 session) and forget it: later checks skip what needs it."""
        close = getattr(self.key, "close", None)
        self.key = None
        if close is not None:
            close()

    def _collect(self, name: str, step: Callable[[], Iterator[Verdict]]) -> None:
        """Run one step; an exception it raises becomes its FAILED line, never a traceback."""
        try:
            for verdict in step():
                self.verdicts.append(verdict)
        except Exception as exc:  # noqa: BLE001 - a check that breaks is reported, the others still run
            self.verdicts.append(Verdict(name, "failed", reason(exc)))

    def scrub(self, text: str) -> str:
        """``text`` without any secret a check read (longest first). Our own lines name files
        such as ``secrets/token``, which :func:`redact_text`'s patterns would garble: it is
        applied to the text libraries raise (:func:`reason`), not to whole lines."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= MIN_SCRUBBED:
                text = text.replace(secret, REDACTED)
        return text

    def secret(self, ref: str, what: str) -> str:
        """Read an ``env:NAME``/``file:/path`` secret as the daemon does, remembering it to scrub."""
        value = read_secret(ref, what, self.config.source)
        if value:
            self.secrets.add(value)
        return value

    # ------------------------------------------------------------------ database

    def database(self) -> Iterator[Verdict]:
        """Reachable, at this version's revision (older: the next start migrates it, a warning);
        for SQLite, the creation marker's state. Read-only: nothing is created or migrated."""
        from ..store.db import SqliteFile, check_url, marker_path, open_database

        url = check_url(self.config.database_url)
        shown = redact_url(self.config.database_url)  # the password hidden in user:pw@ and ?password= alike
        self.secrets.update(s for s in (url.password, url.query.get("password")) if isinstance(s, str) and s)
        notes: list[str] = []
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
                and not url.database.startswith("file:") and "uri" not in url.query:
            path = Path(url.database)
            marker = marker_path(path)
            if not path.exists():
                if marker.exists():
                    yield Verdict("database", "failed", SqliteFile(path).disappeared(running=False))
                else:
                    self.db_fresh = True
                    yield Verdict("database", "warning", f"database file {path} does not exist yet: the first start "
                                                         "creates and migrates it")
                return
            if not os.access(path, os.R_OK | os.W_OK):
                yield Verdict("database", "failed", f"database file {path} is not readable and writable by this process")
                return
            if path.stat().st_size == 0 and marker.exists():
                yield Verdict("database", "failed", SqliteFile(path).emptied(running=False))
                return
            if not marker.exists():
                notes.append(f"the creation marker {marker} is missing: the next start writes it (until then a lost "
                             "database file would not be noticed)")
            self.db = read_only_sqlite(path)
        else:
            self.db = open_database(self.config.database_url, pool_size=1)
        yield self._revision(shown, notes)

    def _revision(self, shown: str, notes: list[str]) -> Verdict:
        from ..store.db import current_revision, head_revision
        from ..store.repo import Store

        assert self.db is not None
        with self.db.connect() as conn:
            current = current_revision(conn)
        head = head_revision()
        if current == head:
            self.db_current = True
            summary = Store(self.db).summary(recent=0)
            queued = sum(summary.outbound.values()) + sum(summary.inbound.values())
            detail = f"{shown} reachable, at revision {head} (current), {queued} document(s) on record"
            return Verdict("database", "warning" if notes else "ok", "; ".join([detail, *notes]))
        if current is None:
            self.db_fresh = True
            detail = f"{shown} reachable but holds no connector schema yet: the first start migrates it to {head}"
        elif known_revision(current):
            detail = (f"{shown} is at revision {current}; this version needs {head}: the next start migrates it "
                      "(back it up first)")
        else:
            return Verdict("database", "failed", f"{shown} is at revision {current}, unknown to this version of the "
                                                 f"connector (its newest is {head}): was it run by a newer version?")
        return Verdict("database", "warning", "; ".join([detail, *notes]))

    # ------------------------------------------------------------------ signing

    def signing_key(self) -> Iterator[Verdict]:
        """The key loads and makes a signature its certificate verifies; the certificate's
        validity (warning within 30 days of its end, as ``/healthz``); it names our agency."""
        from ..signing.keys import KeySourceError, load_signing_key, verify_signature_value

        spec = self.config.signing.key
        if not spec:
            yield Verdict("signing_key", "warning", "no signing key configured ([signing] key): documents are sent "
                                                    "unsigned, and receivers whose policy is 'require' refuse them")
            yield from _not_checked(("signing_certificate", "signing_identity"), "no signing key is configured")
            return
        self._remember_key_secrets(spec)
        try:
            self.key = load_signing_key(spec, base_dir=self.config.base_dir)  # closed by run()
            signature = self.key.sign(PROBE)
        except KeySourceError as exc:
            yield Verdict("signing_key", "failed", f"signing.key: {exc}")
            yield from _not_checked(("signing_certificate", "signing_identity"), "the signing key is not usable")
            self._drop_key()
            return
        key = self.key
        if not verify_signature_value(key.public_key(), key.algorithm, signature, PROBE):
            yield Verdict("signing_key", "failed", f"signing.key ({spec.get('type')}): a test signature does not verify "
                                                   "with the certificate's public key (key and certificate differ?)")
            self._drop_key()
            return
        algorithm = key.algorithm.rsplit("#", 1)[-1]
        yield Verdict("signing_key", "ok", f"signing.key ({spec.get('type')}) loads and makes a test signature that "
                                           f"verifies ({algorithm})")
        cert = key.certificate
        yield from_health("signing_certificate", certificate_expiry_check(cert, name="signing_certificate").fn())
        yield self._identity(cert)

    def _identity(self, cert: Any) -> Verdict:
        """The certificate names the configured agency and may sign documents (the verifier's
        own rules, :func:`signing_certificate_problems`; validity is the line above)."""
        from ..signing.identity import agency_code_of
        from ..signing.signer_check import signing_certificate_problems

        agency = self.config.connector.agency
        subject = cert.subject.rfc4514_string()
        # asked at a moment inside the validity period: expiry is the signing_certificate line
        problems = signing_certificate_problems(cert, sender=agency, at=cert.not_valid_before_utc)
        if problems:
            return Verdict("signing_identity", "failed", f"certificate {subject}: " + "; ".join(problems))
        code = agency_code_of(cert)
        if code is None:
            return Verdict("signing_identity", "warning", f"certificate {subject} carries no agency code (UID): "
                                                          f"receivers cannot tie its signatures to {agency}")
        return Verdict("signing_identity", "ok", f"certificate {subject} names agency {code}, the configured "
                                                 "connector.agency, and may sign documents")

    def _remember_key_secrets(self, spec: dict[str, str]) -> None:
        """The key's passphrase or PIN, read only to keep it out of every line (best effort)."""
        from ..signing.keys import KeySourceError, SecretRef

        for field, what in (("passphrase", "passphrase"), ("pin", "PIN")):
            if spec.get(field):
                try:
                    ref = SecretRef(spec[field], what=what)
                    if ref.scheme == "file":
                        ref = SecretRef(f"file:{self.config.base_dir / ref.target}", what=what)
                    self.secrets.add(ref.read().decode("utf-8", "replace"))
                except (KeySourceError, OSError):
                    continue  # the key's own loading says what is wrong with it

    def trust_anchors(self) -> Iterator[Verdict]:
        """The trust-anchor folder is readable and holds anchors; files skipped are named."""
        from ..signing.trust import TrustStore, TrustStoreError

        folder = self.config.path(self.config.signing.trust_dir)
        try:
            store = TrustStore.from_directory(folder)
        except TrustStoreError as exc:
            yield Verdict("trust_anchors", "failed", f"signing.trust_dir: {exc}")
            return
        except OSError as exc:
            yield Verdict("trust_anchors", "failed", f"signing.trust_dir: trust-anchor folder {folder} cannot be read: "
                                                     f"{exc.strerror or exc}")
            return
        self.trust = store
        if not store.anchors:
            yield Verdict("trust_anchors", "failed", f"signing.trust_dir: no trust anchor in {folder}: every signature "
                                                     "received would be untrusted")
            return
        detail = f"{len(store)} trust anchor(s) in {folder}"
        if store.skipped:
            yield Verdict("trust_anchors", "warning", detail + "; skipped: " + "; ".join(str(s) for s in store.skipped))
            return
        yield Verdict("trust_anchors", "ok", detail)

    def signing_chain(self) -> Iterator[Verdict]:
        """Our signing certificate chains to one of our trust anchors (a warning if not: a
        receiver trusting the same anchors may refuse our signatures)."""
        from ..signing.trust import validate_chain

        if self.key is None or self.trust is None:
            if not self.config.signing.key:
                why = "no signing key is configured"
            else:
                why = "the signing key is not usable" if self.key is None else "the trust anchors did not load"
            yield from _not_checked(("signing_chain",), why)
            return
        cert = self.key.certificate
        result = validate_chain(cert, self.key.chain, at=datetime.now(timezone.utc), store=self.trust)
        subject = cert.subject.rfc4514_string()
        if result.trusted:
            yield Verdict("signing_chain", "ok", f"certificate {subject}: {result.reason}")
            return
        folder = self.config.path(self.config.signing.trust_dir)
        yield Verdict("signing_chain", "warning", f"certificate {subject} does not chain to a trust anchor in {folder} "
                                                  f"({result.reason}): receivers may refuse our signatures")

    # ------------------------------------------------------------------ axis

    def axis(self) -> Iterator[Verdict]:
        """The axis answers and accepts our credentials: the directory, the one call that
        changes and consumes nothing; the TLS client certificate, when configured."""
        from ..axis.errors import AuthenticationError, AxisError
        from ..daemon.runner import Daemon
        from ..daemon.runtime import make_axis

        a = self.config.axis
        if a.client_cert is not None:
            tls = Daemon._tls_certificate_check(self.config.path(a.client_cert)).fn()
            yield from_health("axis_tls_certificate", tls)
        ref = a.token if a.binding == "soap" else a.secret
        if ref:
            self.secret(ref, "axis.token" if a.binding == "soap" else "axis.secret")
        # one attempt: a preflight reports what it meets (the daemon's rounds retry)
        once = self.config.model_copy(update={"axis": a.model_copy(update={"retries": 0})})
        spool = self.config.data_dir / "spool"
        axis = make_axis(once, spool if spool.is_dir() else None)
        organ = a.organ_id or self.config.connector.agency
        where = f"{a.binding} axis {redact_url(a.url)}"  # a hub URL may carry ?api_key=...
        try:
            agencies = axis.directory()
        except AuthenticationError as exc:
            what = "token" if a.binding == "soap" else "secret"
            yield Verdict("axis", "failed", f"{where} refused our credentials (OrganId {organ}, {what} from {ref}): {exc}")
            return
        except AxisError as exc:
            yield Verdict("axis", "failed", f"{where}: {exc}")
            return
        finally:
            axis.close()
        codes = {agency.code for agency in agencies}
        detail = (f"{where} answers and accepts our credentials (OrganId {organ}); its directory lists "
                  f"{len(agencies)} agencies")
        if self.config.connector.agency not in codes:
            yield Verdict("axis", "warning", f"{detail}, but not ours ({self.config.connector.agency}): ask the axis "
                                             "operator whether our agency is registered")
            return
        yield Verdict("axis", "ok", detail)

    # ------------------------------------------------------------------ folders and routing

    def folders(self) -> Iterator[Verdict]:
        """The folders the connector owns (data, spool, evidence, intake, audit archive)
        present and writable, as ``/healthz`` checks them; one still missing is fine when the
        start creates it (its nearest existing parent must then be writable). The DMS's
        destination folders are each destination's own line."""
        existing: list[tuple[str, Path]] = []
        created: list[str] = []
        problems: list[str] = []
        for role, path in self._own_folders():
            if path.exists() or path.is_symlink():
                existing.append((role, path))
                continue
            parent = nearest_existing(path)
            trouble = folder_check("parent", [("parent", parent)]).fn()
            if trouble.ok:
                created.append(f"{role} {path}")
            else:
                problems.append(f"{role} {path}: missing, and cannot be created: {trouble.detail.removeprefix('parent ')}")
        result = folder_check("folders", existing).fn()
        if not result.ok:
            problems.insert(0, result.detail)
        if problems:
            yield Verdict("folders", "failed", "; ".join(problems))
            return
        detail = result.detail + (f"; created at start: {', '.join(created)}" if created else "")
        yield Verdict("folders", "ok", detail)

    def _own_folders(self) -> list[tuple[str, Path]]:
        """What :meth:`Daemon._folders` lists, without the destinations, from the configuration
        alone (the daemon lists the intake's once it opened them)."""
        config = self.config
        data = config.data_dir
        folders = [("data folder", data), ("spool folder", data / "spool"), ("evidence folder", data / "evidence")]
        intake = config.routing.intake
        if intake.folder is not None:
            root = config.path(intake.folder)
            status = config.path(config.routing.status_folder) if config.routing.status_folder else root / "status"
            folders += [("intake folder", root), ("status folder", status)]
        if config.audit.enabled:
            archive = config.path(config.audit.archive_dir) if config.audit.archive_dir else data / "audit-archive"
            folders.append(("audit archive folder", archive))
        return folders

    def destinations(self) -> Iterator[Verdict]:
        """Each destination opens: a folder present and writable, a webhook's URL and
        credentials usable (it is not called: a check sends nothing), a SQL database reachable
        with the tables delivery writes to."""
        from ..routing.config import FolderDestinationConfig, SqlDestinationConfig, WebhookDestinationConfig

        for name, dest in sorted(self.config.routing.destinations.items()):
            label = f"destination {name}"
            try:
                if isinstance(dest, FolderDestinationConfig):
                    yield self._folder_destination(label, dest)
                elif isinstance(dest, WebhookDestinationConfig):
                    yield self._webhook_destination(label, name, dest)
                elif isinstance(dest, SqlDestinationConfig):
                    yield self._sql_destination(label, name, dest)
            except Exception as exc:  # noqa: BLE001 - one broken destination does not hide the others
                yield Verdict(label, "failed", reason(exc))

    def _folder_destination(self, label: str, dest: Any) -> Verdict:
        result = folder_check(label, [("folder", Path(dest.path))]).fn()
        if result.ok:
            return Verdict(label, "ok", f"folder {dest.path} present and writable")
        return Verdict(label, "failed", result.detail)

    def _webhook_destination(self, label: str, name: str, dest: Any) -> Verdict:
        from ..routing.config import resolve_secret

        shown = redact_url(dest.url)
        problem = http_url_problem(dest.url, "use a token or basic credentials")
        if problem:
            return Verdict(label, "failed", f"webhook {problem}")
        if dest.auth == "bearer":
            self.secrets.add(resolve_secret(dest.token_env, dest.token_file, f"bearer token of destination {name!r}"))
        if dest.auth == "basic":
            self.secrets.add(resolve_secret(dest.password_env, dest.password_file, f"password of destination {name!r}"))
        for what, path in (("client certificate", dest.client_cert), ("client key", dest.client_key),
                           ("CA bundle", dest.ca_bundle)):
            if path is not None and not Path(path).is_file():
                return Verdict(label, "failed", f"webhook {shown}: {what} file {path} does not exist")
        return Verdict(label, "ok", f"webhook {shown}: URL and credentials usable (auth {dest.auth}); not called, "
                                    "a check sends nothing")

    def _sql_destination(self, label: str, name: str, dest: Any) -> Verdict:
        from ..routing.config import resolve_secret
        from ..routing.delivery import DeliveryError, open_destination

        url = sa.engine.make_url(dest.url)
        shown = redact_url(dest.url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
                and not Path(url.database).exists():
            # connecting would create an empty file: a check changes nothing
            return Verdict(label, "failed", f"SQL database {shown}: file {url.database} does not exist")
        if dest.password_env or dest.password_file:
            self.secrets.add(resolve_secret(dest.password_env, dest.password_file,
                                            f"database password of destination {name!r}"))
        adapter = open_destination(name, dest)
        try:
            # what a delivery does first: connect, then read the tables' shape (no write)
            with adapter._connect().connect() as conn:
                adapter._reflect(conn)
        except DeliveryError as exc:
            return Verdict(label, "failed", f"SQL database {shown}: {exc.message}")
        except sa.exc.NoSuchTableError as exc:
            return Verdict(label, "failed", f"SQL database {shown}: table {exc} does not exist")
        except sa.exc.SQLAlchemyError as exc:
            return Verdict(label, "failed", f"SQL database {shown}: {reason(exc).splitlines()[0]}")
        finally:
            adapter.close()
        return Verdict(label, "ok", f"SQL database {shown} reachable; tables {dest.table} and "
                                    f"{dest.attachments_table} have the columns delivery writes")

    def routing(self) -> Iterator[Verdict]:
        """The rules' shape: a document no rule matches goes to the default route, or is
        quarantined when there is none (a warning: usually an oversight)."""
        r = self.config.routing
        detail = f"{len(r.rules)} rule(s), {len(r.destinations)} destination(s)"
        if not r.destinations:
            yield Verdict("routing", "warning", f"{detail}: every document received is quarantined ([routing."
                                                "destinations] is empty)")
        elif not r.default:
            yield Verdict("routing", "warning", f"{detail}, no default route: a document no rule matches is "
                                                "quarantined (set [routing] default)")
        else:
            yield Verdict("routing", "ok", f"{detail}, default route {', '.join(r.default)}")

    def intake(self) -> Iterator[Verdict]:
        """Where outbound documents come from: the folder (its folders are in ``folders``),
        the HTTP API's token and TLS files as the daemon loads them. The API's port is not
        tried: beside a running daemon it is taken, as it should be."""
        from ..daemon.runtime import intake_tls_context, intake_token_ref

        config = self.config
        intake = config.routing.intake
        parts: list[str] = []
        warnings: list[str] = []
        if intake.folder is not None:
            parts.append(f"folder {config.path(intake.folder)} (settle {intake.settle_s:g} s)")
        http = intake.http
        if http is not None:
            ref = intake_token_ref(config)
            if not self.secret(ref, "routing.intake.http.token"):  # the daemon refuses to start with it
                yield Verdict("intake", "failed", f"routing.intake.http.token: the intake API's token ({ref}) is empty")
                return
            scheme = "http"
            if http.tls_cert is not None:
                try:
                    intake_tls_context(config)  # as the daemon's start loads them
                except ConfigError as exc:
                    yield Verdict("intake", "failed", str(exc))
                    return
                scheme = "https"
            parts.append(f"HTTP API {scheme}://{http.host}:{http.port} (token readable)")
            if scheme == "http" and not is_loopback(http.host):
                warnings.append(f"the HTTP API is served on {http.host}, beyond this machine, over plain HTTP: set "
                                "[routing.intake.http] tls_cert and tls_key, or restrict it with a firewall")
        if not parts:
            yield Verdict("intake", "warning", "no intake configured ([routing.intake] folder or http): documents can "
                                               "be queued only with `send`")
            return
        detail = "; ".join(parts + warnings)
        yield Verdict("intake", "warning" if warnings else "ok", detail)

    # ------------------------------------------------------------------ audit

    def audit(self) -> Iterator[Verdict]:
        """The exchange log: its head and whether it lets exchanges run (a time-stamping
        authority failing past ``fail_closed_after_s`` stops them). Its chain is not verified
        here: that re-hashes every evidence file (``audit verify``), not a preflight's cost."""
        a = self.config.audit
        if not a.enabled:
            yield Verdict("audit", "ok", "exchange log disabled ([audit] enabled = false)")
            return
        notes = []
        if not self.config.signing.key:  # (with a tsa_url the configuration itself is refused)
            notes.append("no signing key: its batches are sealed without a signature")
        if self.db_fresh:
            yield Verdict("audit", "warning" if notes else "ok",
                          "; ".join(["exchange log enabled; it starts with the database's first start", *notes]))
            return
        if self.db is None or not self.db_current:
            yield from _not_checked(("audit",), "the database is not readable at this version's revision (see database)")
            return
        from ..audit.reader import LogReader

        head = LogReader(self.db).head()
        detail = (f"exchange log enabled, {head[0] if head else 0} entries; its chain is not verified here "
                  f"(`cli.py audit verify --config {self.config.source}` does)")
        gate = self._audit_gate()
        if gate:
            yield Verdict("audit", "failed", gate)
            return
        yield Verdict("audit", "warning" if notes else "ok", "; ".join([detail, *notes]))

    def _audit_gate(self) -> str | None:
        """Why the audit log stops exchanges now (fail closed), or None."""
        a = self.config.audit
        if not (a.tsa_url and a.fail_closed_after_s and self.key is not None):
            return None
        import datetime as dt

        from ..audit.log import AuditLog, AuditUnavailable
        from ..audit.seal import Sealer
        from ..audit.tsa import TsaClient

        log = AuditLog(self.db, None, actor=self.config.connector.agency, sealer=Sealer(self.key),  # type: ignore[arg-type]
                       tsa=TsaClient(a.tsa_url), fail_closed_after=dt.timedelta(seconds=a.fail_closed_after_s))
        try:
            log.ensure_can_exchange()
        except AuditUnavailable as exc:
            return str(exc)
        return None


# --------------------------------------------------------------------------- helpers


def _not_checked(names: tuple[str, ...], why: str) -> Iterator[Verdict]:
    """``skipped`` lines for checks that need what an earlier check could not open."""
    for name in names:
        yield Verdict(name, "skipped", f"not checked: {why}")


def read_only_sqlite(path: Path) -> sa.Engine:
    """An engine reading the SQLite file at ``path`` without creating, writing or locking it
    for writing (the daemon's own engine opens it read-write and writes its marker). With no
    ``-wal`` file beside it no connection is open (SQLite removes it when the last one closes),
    so it is opened ``immutable``: even a read-only open of a WAL database would otherwise
    create ``-wal`` and ``-shm`` files in the data folder."""
    mode = "ro" if Path(f"{path}-wal").exists() else "ro&immutable=1"
    uri = f"file:{quote(os.path.abspath(path))}?mode={mode}"
    return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, timeout=10,
                                                                        check_same_thread=False))


def known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this version's migrations (an older one: migrated at start)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from ..store.db import MIGRATIONS

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        return ScriptDirectory.from_config(config).get_revision(revision) is not None
    except CommandError:
        return False


def nearest_existing(path: Path) -> Path:
    """``path``'s nearest folder above it that exists (where the start would create it)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor or ".")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Library warnings (a skipped trust anchor, a TLS retry) are this command's lines, not
    log records printed around them; restored afterwards."""
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(before)


def run_checks(config_path: Path) -> tuple[list[Verdict], str]:
    """Every check for the configuration at ``config_path``, and the file as shown. A
    configuration that does not load is one FAILED line per problem, and the rest is skipped."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()] or [str(exc)]
        return [Verdict("configuration", "failed", line) for line in lines] + [
            Verdict("other checks", "skipped", "not run: they need a configuration that loads")], str(config_path)
    shown = str(config.source or config_path)
    first = Verdict("configuration", "ok", f"{shown} loads (agency {config.connector.agency}, "
                                           f"{config.axis.binding} binding)")
    return [first, *Preflight(config).run()], shown


def summary_text(verdicts: list[Verdict]) -> str:
    """The last line: the counts, and whether the connector may be started."""
    counts = {s: sum(1 for v in verdicts if v.status == s) for s in LABELS}
    words = f"{counts['ok']} ok, {counts['warning']} warning(s), {counts['failed']} FAILED"
    if counts["skipped"]:
        words += f", {counts['skipped']} skipped"
    return words + (": fix what FAILED before starting" if counts["failed"] else ": ready to start")


@click.command("check")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The connector's TOML configuration file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check_cmd(config_path: Path, as_json: bool) -> None:
    """Check a configuration before starting the daemon: every check once, one line each
    (ok / warning / FAILED). Changes nothing; safe beside a running daemon."""
    with quiet_logs():
        verdicts, shown = run_checks(config_path)
    failed = any(v.status == "failed" for v in verdicts)
    if as_json:
        click.echo(json.dumps({"config": shown, "ok": not failed, "checks": [asdict(v) for v in verdicts]},
                              ensure_ascii=False, indent=2))
    else:
        width = max(len(label) for label in LABELS.values())
        for v in verdicts:
            click.echo(f"{LABELS[v.status]:<{width}}  {v.name}: {v.detail}")
        click.echo(summary_text(verdicts))
    sys.exit(1 if failed else 0)
