"""Connector daemons as real subprocesses against a sandbox: start, kill, stop, and read
their state from the outside (the DMS folders and the SQLite databases, read-only)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from connector.daemon.devsite import SiteAgency
from connector.edxml.jsonform import to_json
from connector.edxml.samples import sample_edoc

ROOT = Path(__file__).resolve().parents[2]


class DaemonProcess:
    """``python cli.py run --config ...`` for one site, its output appended to ``daemon.log``."""

    def __init__(self, site: SiteAgency):
        self.site = site
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        log = open(self.site.folder / "daemon.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "run", "--config", str(self.site.config_path)],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.site.folder, env=env)
        log.close()
        self.starts += 1

    def wait_running(self, timeout: float) -> bool:
        """Wait until this start of the daemon logged that it runs (its jobs are scheduled)."""
        path = self.site.folder / "daemon.log"
        return wait_for(lambda: self.alive() and path.exists()
                        and path.read_text(encoding="utf-8", errors="replace").count(" running (") >= self.starts,
                        timeout, step=0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        """Stop gracefully and return the exit code. A start still in progress is awaited first:
        SIGTERM before the daemon installed its handlers ends it by the signal (exit -15), which
        is not the graceful stop this checks."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.wait_running(timeout=timeout)
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        path = self.site.folder / "daemon.log"
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]) if path.exists() else ""


def drop_sample(site: SiteAgency, recipient: str, number: int) -> str:
    """Drop a document folder into the site's outbox the way a DMS does (built aside, renamed)."""
    doc = sample_edoc(site.code, recipient, number)
    data = to_json(doc)
    data["attachments"], data["manifest"] = [], []
    staging = site.dms / f".drop-{number}"
    staging.mkdir(parents=True)
    (staging / "metadata.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    pdf = doc.attachments[0]
    with pdf.data.open() as src:
        (staging / pdf.name).write_bytes(src.read())
    os.replace(staging, site.outbox / f"doc-{number}")
    return doc.document_id or ""


def inbox_document_ids(site: SiteAgency) -> list[str]:
    ids = []
    for meta in sorted(site.inbox.glob("*/metadata.json")):
        if meta.parent.name.startswith("."):
            continue  # a temporary folder a killed delivery left (DMSs skip dot-names)
        ids.append(json.loads(meta.read_text(encoding="utf-8"))["document_id"])
    return ids


def query(site: SiteAgency, sql: str) -> list[tuple]:
    if not site.database.exists():
        return []
    with sqlite3.connect(f"file:{site.database}?mode=ro", uri=True, timeout=10) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []


def recipient_codes(site: SiteAgency) -> dict[str, str | None]:
    """DocumentId -> the status code its recipient last reported (our edocs only)."""
    rows = query(site, "SELECT o.document_id, r.status_code FROM outbound o JOIN outbound_recipient r "
                       "ON r.outbound_id = o.id WHERE o.kind = 'edoc'")
    return {d: c for d, c in rows}


def states(site: SiteAgency, table: str) -> dict[str, int]:
    return dict(query(site, f"SELECT state, count(*) FROM {table} GROUP BY state"))


def wait_for(predicate, timeout: float, step: float = 0.5) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
