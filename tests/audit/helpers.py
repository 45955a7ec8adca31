"""Helpers shared by the audit tests: a settable clock, a log environment, filling a log."""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from connector.audit import AuditEvent, AuditLog
from connector.store.evidence import EvidenceStore


class FakeClock:
    """A settable clock for the log (fail-closed tests move time, they do not wait)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 26, 2, 0, 0, 123456, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Env:
    """One audit log on a fresh database, with its evidence store and folders."""

    engine: sa.Engine
    evidence: EvidenceStore
    log: AuditLog
    root: Path
    url: str

    @property
    def archive_dir(self) -> Path:
        return self.root / "archives"


def sqlite_engine(path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})


EVENTS_OUT = ["out.queued", "out.signed", "out.sent", "out.delivered", "out.status_received"]
EVENTS_IN = ["in.received", "in.verified", "in.routed", "in.acknowledged", "in.status_sent"]


def fill(env: Env, count: int, *, documents: int = 3, start: int = 0) -> list[int]:
    """Record ``count`` events over a few documents, both directions; every third carries evidence."""
    seqs = []
    for i in range(start, start + count):
        out = (i // documents) % 2 == 0
        names = EVENTS_OUT if out else EVENTS_IN
        digest = None
        if i % 3 == 0:
            digest = env.evidence.put_bytes(f"<edXML>document {i} bytes</edXML>".encode()).sha256
        seqs.append(env.log.record(AuditEvent(
            names[i % len(names)], "out" if out else "in", document_id=f"DOC-{i % documents}",
            tracking_id=f"T-{i % documents}" if out else None, axis_id=f"AX-{i}" if i % 2 else None,
            sha256=digest, detail={"step": i, "nơi nhận": "UBND tỉnh Nghệ An"})))
    return seqs


def flip_char(text: str) -> str:
    """The same text with its last character changed (one byte for ASCII)."""
    last = text[-1]
    return text[:-1] + ("0" if last != "0" else "1")


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Flip one byte of a file in place (middle by default), even if it is read-only."""
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))
