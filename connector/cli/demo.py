"""``demo`` (``make run``): two agencies exchanging documents through the local sandbox axis.

It creates the development PKI, starts the sandbox (provincial SOAP hub + national VXP axis),
starts two connector daemons as separate processes (``000.00.00.H16`` UBND tỉnh Đắk Nông on
the SOAP hub binding, ``000.00.00.G22`` Văn phòng Chính phủ on the VXP binding) with SQLite
and folder DMS stand-ins under the work folder, drops sample documents (Vietnamese content,
PDF attachments) into each side's ``dms/outbox``, and shows them arriving in the other side's
``dms/inbox`` while statuses (01 Đã đến) flow back to the sender.

``--once`` exits 0 when every sample was delivered and acknowledged (1 otherwise, after the
timeout) and prints a JSON summary; without it the daemons keep running until Ctrl-C, and
anything dropped into an outbox is sent.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..daemon.devsite import SiteAgency, write_site_config
from ..edxml.jsonform import to_json
from ..edxml.samples import sample_edoc

CLI = Path(__file__).resolve().parents[2] / "cli.py"
AGENCIES = (("000.00.00.H16", "UBND tỉnh Đắk Nông", "soap"), ("000.00.00.G22", "Văn phòng Chính phủ", "vxp"))


@dataclass
class Sample:
    document_id: str
    subject: str
    sender: str
    recipient: str
    dropped: float
    arrived: float | None = None
    acknowledged: float | None = None
    status: str | None = None


@dataclass
class Flow:
    sites: dict[str, SiteAgency]
    samples: list[Sample] = field(default_factory=list)

    def drop(self, sender: str, recipient: str, number: int) -> Sample:
        """Write a drop the way a DMS would: a folder built aside, then renamed into the outbox."""
        doc = sample_edoc(sender, recipient, number)
        data = to_json(doc)
        pdf = doc.attachments[0]
        data["attachments"], data["manifest"] = [], []
        site = self.sites[sender]
        staging = site.dms / f".drop-{number}"
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "metadata.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        with pdf.data.open() as src:
            (staging / pdf.name).write_bytes(src.read())
        os.replace(staging, site.outbox / f"cong-van-{number}")
        sample = Sample(doc.document_id or "", doc.subject or "", sender, recipient, time.time())
        self.samples.append(sample)
        return sample

    def refresh(self) -> list[str]:
        """Look at the inboxes and the senders' databases; returns lines describing what changed."""
        news = []
        arrived = {code: _inbox_documents(site.inbox) for code, site in self.sites.items()}
        states = {code: _recipient_states(site.database) for code, site in self.sites.items()}
        for s in self.samples:
            if s.arrived is None and s.document_id in arrived[s.recipient]:
                s.arrived = time.time()
                news.append(f"  {s.recipient} received {s.subject!r} from {s.sender} (in {self.sites[s.recipient].inbox})")
            state = states[s.sender].get((s.document_id, s.recipient))
            if state and state[1] and state[1] != s.status:
                s.status = state[1]
                news.append(f"  {s.sender} sees status {state[1]} ({state[2] or ''}) from {s.recipient} on {s.document_id}")
                if state[0] == "delivered" or state[1] == "01":
                    s.acknowledged = s.acknowledged or time.time()
        return news

    def complete(self) -> bool:
        return all(s.arrived and s.acknowledged for s in self.samples)

    def summary(self) -> dict:
        return {
            "ok": self.complete(),
            "documents": len(self.samples),
            "delivered": sum(1 for s in self.samples if s.arrived),
            "acknowledged": sum(1 for s in self.samples if s.acknowledged),
            "samples": [
                {"document_id": s.document_id, "from": s.sender, "to": s.recipient, "delivered": bool(s.arrived),
                 "status": s.status, "seconds": round((s.acknowledged or time.time()) - s.dropped, 2)}
                for s in self.samples
            ],
        }


def _inbox_documents(inbox: Path) -> set[str]:
    found = set()
    for meta in inbox.glob("*/metadata.json"):
        try:
            found.add(json.loads(meta.read_text(encoding="utf-8")).get("document_id"))
        except (OSError, ValueError):
            continue
    return found


def _recipient_states(database: Path) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
    if not database.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute(
                "SELECT o.document_id, r.recipient, r.state, r.status_code, r.status_description FROM outbound o "
                "JOIN outbound_recipient r ON r.outbound_id = o.id WHERE o.kind = 'edoc'"
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {(d, r): (state, code, text) for d, r, state, code, text in rows}


def start_daemon(site: SiteAgency) -> subprocess.Popen:
    log = open(site.folder / "daemon.log", "ab")
    return subprocess.Popen([sys.executable, str(CLI), "run", "--config", str(site.config_path)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=site.folder)


def stop_daemons(daemons: list[subprocess.Popen]) -> None:
    for p in daemons:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in daemons:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


@click.command("demo")
@click.option("--workdir", default="demo", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--once", is_flag=True, help="Exit when every sample was delivered and acknowledged; print a JSON summary.")
@click.option("--documents", default=2, show_default=True, type=click.IntRange(1, 500), help="Samples each side sends.")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="With --once: give up after this many seconds.")
def demo_cmd(workdir: Path, once: bool, documents: int, timeout: float) -> None:
    """Run the sandbox and two connectors under WORKDIR and show documents flowing between them."""
    from ..sandbox.server import SandboxServer
    from ..signing.devpki import create_dev_pki

    workdir = workdir.resolve()
    say = (lambda *a, **k: click.echo(*a, err=True, **k)) if once else click.echo
    pki = create_dev_pki(workdir / "pki")
    say(f"1. Development PKI in {workdir / 'pki'} (root CA, issuing CA, one certificate per agency)")
    sandbox = SandboxServer(workdir / "sandbox", port=0).start()
    credentials = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
    say(f"2. Sandbox axis on {sandbox.url} (SOAP hub /soap, VXP /vxp/)")
    sites = {
        code: write_site_config(workdir / code, code=code, name=name, binding=binding, sandbox_url=sandbox.url,
                                credentials=credentials[code], pki=pki)
        for code, name, binding in AGENCIES
    }
    daemons = [start_daemon(site) for site in sites.values()]
    for site in sites.values():
        say(f"3. Connector {site.code} ({site.name}) on the {site.binding.upper()} binding: {site.config_path}, log {site.folder / 'daemon.log'}")
    flow = Flow(sites)
    (h16, g22) = (AGENCIES[0][0], AGENCIES[1][0])
    base = int(time.time()) % 100000 * 10
    for i in range(documents):
        flow.drop(h16, g22, base + 2 * i + 1)
        flow.drop(g22, h16, base + 2 * i + 2)
    say(f"4. Dropped {2 * documents} documents into {sites[h16].outbox} and {sites[g22].outbox}")
    interrupted = False
    try:
        deadline = time.time() + timeout
        while True:
            for line in flow.refresh():
                say(line)
            dead = [p for p in daemons if p.poll() is not None]
            if dead:
                say(f"a connector stopped unexpectedly (exit {dead[0].returncode}); see its daemon.log")
                break
            if flow.complete():
                if once:
                    break
                if not getattr(flow, "_announced", False):
                    say("5. Every document arrived and every sender saw status 01 (Đã đến). "
                        "Drop more into an outbox; Ctrl-C stops.")
                    flow._announced = True  # type: ignore[attr-defined]
            if once and time.time() > deadline:
                say(f"timed out after {timeout:.0f} s")
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        interrupted = True
        say("stopping")
    finally:
        stop_daemons(daemons)
        sandbox.stop()
    if once:
        click.echo(json.dumps(flow.summary(), ensure_ascii=False, indent=2))
        sys.exit(0 if flow.complete() else 1)
    sys.exit(0 if interrupted or flow.complete() else 1)
