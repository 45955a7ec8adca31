"""A separate process appending to the audit log, for the concurrency and kill tests.

    python -m tests.audit.append_worker URL EVIDENCE_DIR COUNT ACTOR

COUNT 0 appends until killed. Each append runs in its own transaction together with nothing
else, like the engine's steps; every other entry names an evidence file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa

from connector.audit import AuditEvent, AuditLog
from connector.store.evidence import EvidenceStore


def main(url: str, evidence_dir: str, count: int, actor: str) -> None:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})
    else:
        engine = sa.create_engine(url, pool_size=1)
    log = AuditLog(engine, EvidenceStore(Path(evidence_dir)), actor=actor)
    digest = log.evidence.put_bytes(f"evidence of {actor}".encode()).sha256
    i = 0
    while count == 0 or i < count:
        with engine.begin() as conn:
            log.append(conn, AuditEvent("out.sent", "out", document_id=f"{actor}-{i}",
                                        sha256=digest if i % 2 else None, detail={"i": i}))
        i += 1
    print(f"{actor} appended {i}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
