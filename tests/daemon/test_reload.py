"""SIGHUP reloads the configuration file: routing, trust anchors + revocation and the signature
policy take effect for the next document; any other changed key is named as needing a restart
and left as it runs; a new configuration that cannot be used changes nothing and is one error
line. Real files, the real dev PKI, the sandbox axis; ``Daemon.reload`` is called directly,
except in the last test, which sends a real SIGHUP to a real daemon process."""

from __future__ import annotations

import json
import logging
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.daemon.config import load_config
from connector.daemon.devsite import SiteAgency, write_site_config
from connector.daemon.runner import Daemon
from connector.daemon.runtime import needs_restart, open_runtime, with_reloaded
from connector.edxml.jsonform import to_json
from connector.edxml.samples import sample_edoc
from connector.engine.context import Routing
from connector.engine.inbox import CurrentRouting
from connector.sandbox.server import SandboxServer
from connector.signing.devpki import create_dev_pki
from connector.store.tables import inbound
from tests.support.sites import DaemonProcess, wait_for

H16, G22, H41 = "000.00.00.H16", "000.00.00.G22", "000.00.00.H41"
RESTART = "changed: restart the connector to apply it"


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    """The agencies' dev PKI, and a second one whose root plays another CA's."""
    base = tmp_path_factory.mktemp("pki")
    return create_dev_pki(base / "agencies"), create_dev_pki(base / "other")


@pytest.fixture
def sandbox(tmp_path):
    with SandboxServer(tmp_path / "sandbox", seed=11) as server:
        yield server


@dataclass
class Site:
    site: SiteAgency
    daemon: Daemon

    @property
    def config_path(self) -> Path:
        return self.site.config_path

    def edit(self, change: Callable[[str], str]) -> None:
        path = self.site.config_path
        path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


@pytest.fixture
def make_site(tmp_path, sandbox, pkis):
    """A site whose trust folder is its own copy (``trust``: the PEM files to put in it)."""
    opened: list[Daemon] = []
    creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
    agencies, _ = pkis

    def make(code: str, binding: str, *, trust: list[Path] | None = None, extra: str = "") -> Site:
        folder = tmp_path / code
        site = write_site_config(folder, code=code, name=code, binding=binding, sandbox_url=sandbox.url,
                                 credentials=creds[code], pki=agencies, retry_schedule=(0.0,), max_attempts=3,
                                 extra=extra + "\n[audit]\nenabled = false\n")
        own = folder / "trust"
        own.mkdir()
        for pem in trust if trust is not None else [agencies.root_ca.cert_path]:
            shutil.copy(pem, own / pem.name)
        text = site.config_path.read_text(encoding="utf-8")
        site.config_path.write_text(text.replace(f"trust_dir = {json.dumps(str(agencies.trust_dir))}",
                                                 'trust_dir = "trust"'), encoding="utf-8")
        daemon = Daemon(open_runtime(load_config(site.config_path)))
        opened.append(daemon)
        assert daemon.config.path(daemon.config.signing.trust_dir) == own
        return Site(site, daemon)

    yield make
    for daemon in opened:
        daemon.rt.close()


def send(sender: Site, recipient: str, number: int) -> str:
    """Submit a sample document from ``sender`` to ``recipient``; its DocumentId."""
    doc = sample_edoc(sender.site.code, recipient, number)
    data = to_json(doc)
    data["attachments"], data["manifest"] = [], []
    folder = sender.site.folder / "drops" / str(number)
    folder.mkdir(parents=True)
    pdf = doc.attachments[0]
    with pdf.data.open() as src:
        (folder / pdf.name).write_bytes(src.read())
    sender.daemon.engine.submit(data, [folder / pdf.name])
    return doc.document_id


def exchange(*sites: Site) -> None:
    for _ in range(3):
        for s in sites:
            s.daemon.engine.run_once()


def received(site: Site, document_id: str) -> dict:
    """The recipient's inbound row for ``document_id``: state, verdict status, reason."""
    with site.daemon.rt.db.connect() as conn:
        row = conn.execute(sa.select(inbound.c.state, inbound.c.verdict, inbound.c.reason)
                           .where(inbound.c.document_id == document_id, inbound.c.kind == "edoc")).one()
    return {"state": row.state, "verdict": json.loads(row.verdict)["status"], "reason": row.reason}


def daemon_records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "connector.daemon" and r.levelno == level]


def test_a_ca_added_to_the_trust_folder_is_trusted_after_reload(make_site, pkis, caplog):
    agencies, other = pkis
    g22 = make_site(G22, "vxp")  # signs; VXP carries the signed edXML
    h41 = make_site(H41, "vxp", trust=[other.root_ca.cert_path])  # does not trust G22's CA yet
    first = send(g22, H41, 1)
    exchange(g22, h41)
    assert received(h41, first)["verdict"] == "untrusted"
    assert received(h41, first)["state"] == "rejected"

    shutil.copy(agencies.root_ca.cert_path, h41.config_path.parent / "trust" / "agencies-root.pem")
    caplog.set_level(logging.INFO, logger="connector")
    h41.daemon.reload()
    (summary,) = daemon_records(caplog, logging.INFO)
    assert "trust anchors reloaded (2 certificate(s)" in summary.getMessage()

    second = send(g22, H41, 2)
    exchange(g22, h41)
    assert received(h41, second) == {"state": "done", "verdict": "valid", "reason": None}
    assert received(h41, first)["verdict"] == "untrusted"  # what was recorded stays as it was


SENDER_POLICY = '\n[signing.senders]\n"000.00.00.H16" = "if-present"\n'


def test_a_sender_policy_changed_to_require_refuses_the_next_unsigned_document(make_site, caplog):
    h16 = make_site(H16, "soap")  # the hub carries fields, not the signed edXML: no signature arrives
    h41 = make_site(H41, "vxp", extra=SENDER_POLICY)
    first = send(h16, H41, 3)
    exchange(h16, h41)
    assert received(h41, first) == {"state": "done", "verdict": "absent", "reason": None}

    h41.edit(lambda text: text.replace('"000.00.00.H16" = "if-present"', '"000.00.00.H16" = "require"'))
    caplog.set_level(logging.INFO, logger="connector")
    h41.daemon.reload()
    assert "sender rule(s)" in daemon_records(caplog, logging.INFO)[0].getMessage()
    assert h41.daemon.config.signing.senders == {H16: "require"}

    second = send(h16, H41, 4)
    exchange(h16, h41)
    refused = received(h41, second)
    assert refused["state"] == "rejected" and refused["verdict"] == "absent"
    assert "refused under policy 'require'" in refused["reason"]


BAD_RELOADS = {
    "bad PEM in the trust folder": (
        lambda site: (site.config_path.parent / "trust" / "new-agency.pem").write_text(
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"),
        "new-agency.pem",
    ),
    "missing trust folder": (
        lambda site: site.edit(lambda t: t.replace('trust_dir = "trust"', 'trust_dir = "no-such-trust"')),
        "signing.trust_dir: trust-anchor folder",
    ),
    "invalid values": (
        lambda site: site.edit(lambda t: t.replace('policy = "if-present"', 'policy = "sometimes"\nbogus = 1')),
        "signing.policy:",
    ),
    "not TOML": (lambda site: site.edit(lambda t: t + "\n[signing\n"), "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_RELOADS))
def test_an_unusable_new_configuration_keeps_every_old_setting(make_site, caplog, case):
    h16 = make_site(H16, "soap")
    h41 = make_site(H41, "vxp", extra=SENDER_POLICY)
    daemon = h41.daemon
    before = (daemon.config, daemon.engine.ctx.verification, daemon.engine.inbox.routing.current, daemon.rt.destinations)
    # the same edit also tightens the policy and reroutes: none of it may be applied
    h41.edit(lambda t: t.replace('"000.00.00.H16" = "if-present"', '"000.00.00.H16" = "require"')
             .replace('default = ["inbox"]', 'default = ["statuses"]'))
    spoil, named = BAD_RELOADS[case]
    spoil(h41)
    caplog.set_level(logging.INFO, logger="connector")
    daemon.reload()

    (error,) = daemon_records(caplog, logging.ERROR)
    message = error.getMessage()
    assert message.startswith("configuration NOT reloaded, keeping all the old settings: ")
    assert named in message and "\n" not in message and error.exc_info is None
    assert daemon_records(caplog, logging.INFO) == [] and daemon_records(caplog, logging.WARNING) == []
    after = (daemon.config, daemon.engine.ctx.verification, daemon.engine.inbox.routing.current, daemon.rt.destinations)
    assert all(now is then for now, then in zip(after, before))
    # still the old policy and routes: an unsigned document from H16 is accepted into the inbox
    document_id = send(h16, H41, 5)
    exchange(h16, h41)
    assert received(h41, document_id) == {"state": "done", "verdict": "absent", "reason": None}
    assert len(list(h41.site.inbox.glob("*/metadata.json"))) == 1


def delivered_to(site: Site, document_id: str) -> list[str]:
    """The destinations the recipient delivered ``document_id`` to (names), and its state."""
    with site.daemon.rt.db.connect() as conn:
        row = conn.execute(sa.select(inbound.c.state, inbound.c.delivered_to, inbound.c.last_error)
                           .where(inbound.c.document_id == document_id, inbound.c.kind == "edoc")).one()
    assert row.state == "done", (row.state, row.last_error)
    return sorted(json.loads(row.delivered_to))


RENAME_INBOX = (lambda t: t.replace('default = ["inbox"]', 'default = ["dms"]')
                .replace("[routing.destinations.inbox]", "[routing.destinations.dms]"))


def test_a_reload_between_routing_and_delivery_delivers_under_the_routing_that_chose(make_site, monkeypatch):
    """A SIGHUP handled while a round has routed an item but not yet delivered it (the reload
    runs from inside route(), as the main loop may run it while a round thread is there): the
    item is delivered under the routing it was routed by (its destination ``inbox`` still open),
    never dead because the new routing renamed ``inbox`` to ``dms``; the retired destinations
    are closed once that round is done with them, not under it; the next item goes by the new
    routing."""
    h16, g22 = make_site(H16, "soap"), make_site(G22, "vxp")
    first = send(h16, G22, 6)
    old = g22.daemon.engine.inbox.routing.current
    closed: list[str] = []
    for name, destination in old.destinations.items():
        monkeypatch.setattr(destination, "close", lambda name=name: closed.append(name))
    closed_at_reload: list[list[str]] = []
    real_route = old.router.route

    def route_then_reload(facts):
        targets = real_route(facts)
        if facts.kind == "edoc" and not closed_at_reload:
            g22.edit(RENAME_INBOX)
            g22.daemon.reload()
            closed_at_reload.append(list(closed))
        return targets

    monkeypatch.setattr(old.router, "route", route_then_reload)
    exchange(h16, g22)
    assert closed_at_reload == [[]]  # the reload closed nothing the round was about to use
    assert delivered_to(g22, first) == ["inbox"]
    assert len(list(g22.site.inbox.glob("*/metadata.json"))) == 1
    assert sorted(closed) == ["inbox", "statuses"]  # closed when the round was done with them

    second = send(h16, G22, 7)
    exchange(h16, g22)
    assert delivered_to(g22, second) == ["dms"]
    assert len(list(g22.site.inbox.glob("*/metadata.json"))) == 2  # "dms" is the same folder, renamed


class CountingDestination:
    def __init__(self):
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_retired_destinations_are_closed_when_unused_except_those_the_new_routing_keeps():
    """Engine.set_routing given some of the same destination objects (as tests and tools do):
    those stay open; the others close once the last item using the old routing is done."""
    kept, dropped, added = CountingDestination(), CountingDestination(), CountingDestination()
    switch = CurrentRouting(Routing.of("old rules", {"a": kept, "b": dropped}))
    with switch.use() as routing:
        switch.swap(Routing.of("new rules", {"a": kept, "c": added}))
        assert routing.router == "old rules" and routing.destinations["b"] is dropped
        assert (kept.closed, dropped.closed) == (0, 0)  # an item is still using the old routing
    assert (kept.closed, dropped.closed, added.closed) == (0, 1, 0)
    switch.swap(Routing.of("newer rules", {}))  # nobody uses the retired one: closed at once
    assert (kept.closed, dropped.closed, added.closed) == (1, 1, 1)


def test_changes_that_need_a_restart_are_named_and_not_applied(make_site, sandbox, caplog, tmp_path):
    g22 = make_site(G22, "vxp")
    daemon = g22.daemon
    old_url, old_database = daemon.config.axis.url, daemon.config.database_url
    g22.edit(lambda t: t.replace(f"url = {json.dumps(sandbox.url)}", 'url = "http://127.0.0.1:9/"')
             .replace("# database_url: SQLite at data/connector.db", f'database_url = "sqlite:///{tmp_path}/other.db"')
             .replace("settle_s = 0.2", "settle_s = 1.5")
             .replace('policy = "if-present"', 'policy = "require"'))
    caplog.set_level(logging.INFO, logger="connector")
    for _ in range(2):  # not applied, so named again at the next reload
        caplog.clear()
        daemon.reload()
        assert [r.getMessage() for r in daemon_records(caplog, logging.WARNING)] == [
            f"connector.database_url {RESTART}", f"axis.url {RESTART}", f"routing.intake.settle_s {RESTART}",
        ]
        (summary,) = daemon_records(caplog, logging.INFO)
        assert "signature policy reloaded (default require" in summary.getMessage()
    assert daemon.config.axis.url == old_url and daemon.config.database_url == old_database
    assert daemon.config.routing.intake.settle_s == 0.2
    assert daemon.config.signing.policy == "require"  # the reloadable part of the same edit is applied
    assert daemon.engine.refresh_directory() > 0  # still talking to the sandbox, not to port 9
    assert not (tmp_path / "other.db").exists()


def test_needs_restart_names_exactly_what_the_reload_leaves_unapplied(make_site, tmp_path):
    site = make_site(G22, "vxp")
    old = site.daemon.config
    site.edit(lambda t: t.replace("send_every_s = 0.5", "send_every_s = 3")
              .replace('default = ["inbox"]', 'default = ["statuses"]')
              .replace('policy = "if-present"', 'policy = "record"')
              + '\n[routing.intake.http]\nport = 8999\ntoken_env = "T"\n')
    new = load_config(site.config_path)
    assert needs_restart(old, new) == ["schedule.send_every_s", "routing.intake.http"]
    applied = with_reloaded(old, new)
    assert needs_restart(old, applied) == []  # only reloadable keys differ from what ran
    assert needs_restart(applied, new) == needs_restart(old, new)
    assert applied.routing.default == ["statuses"] and applied.signing.policy == "record"


def test_sighup_to_a_running_daemon_reloads_and_logs_the_summary(tmp_path, sandbox, pkis):
    agencies, _ = pkis
    creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
    site = write_site_config(tmp_path / H16, code=H16, name=H16, binding="soap", sandbox_url=sandbox.url,
                             credentials=creds[H16], pki=agencies)
    process = DaemonProcess(site)

    def log() -> str:
        return (site.folder / "daemon.log").read_text(encoding="utf-8", errors="replace")

    process.start()
    try:
        assert process.wait_running(60), process.log_tail()
        text = site.config_path.read_text(encoding="utf-8").replace("poll_every_s = 1.0", "poll_every_s = 2.0")
        site.config_path.write_text(text + '\n[signing.senders]\n"*.G22" = "require"\n', encoding="utf-8")
        process.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration reloaded: " in log(), 30, step=0.1), process.log_tail()
        assert "signature policy reloaded (default if-present, 1 sender rule(s))" in log()
        assert f"schedule.poll_every_s {RESTART}" in log()
    finally:
        code = process.terminate()
    assert code == 0, process.log_tail()
    assert "Traceback" not in log()


EARLY_SIGHUP = """
import os, signal, sys
import connector.daemon.runtime as runtime
from connector.cli import main

opening = runtime.open_runtime

def open_with_a_reload_asked(config):
    os.kill(os.getpid(), signal.SIGHUP)  # `systemctl reload` while the runtime opens
    return opening(config)

runtime.open_runtime = open_with_a_reload_asked
main(["run", "--config", sys.argv[1]])
"""


def test_a_sighup_while_the_daemon_starts_is_kept_for_after_the_start(tmp_path, sandbox, pkis):
    """SIGHUP's default action ends a process: one arriving while the runtime opens (before the
    daemon's loop installs its handler) must not kill the daemon, and is honoured once it runs."""
    import subprocess
    import sys

    agencies, _ = pkis
    creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
    site = write_site_config(tmp_path / H16, code=H16, name=H16, binding="soap", sandbox_url=sandbox.url,
                             credentials=creds[H16], pki=agencies)
    log = site.folder / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", EARLY_SIGHUP, str(site.config_path)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
    try:
        assert wait_for(lambda: proc.poll() is not None or "configuration reloaded: " in log.read_text(errors="replace"),
                        60, step=0.1), log.read_text(errors="replace")
        assert proc.poll() is None, f"the daemon ended ({proc.returncode}):\n{log.read_text(errors='replace')}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text(errors="replace")
