"""The sandbox's durable state: SQLite (WAL) for the rows, plain files for the documents.

Layout under the data directory::

    sandbox.sqlite3            agencies, documents, recipients (pending lists)
    documents/<sha256>.edxml   every document and status message received, as edXML
    tmp/                       request bodies and documents being spooled

A document (``kind`` ``edoc``) or a status message (``kind`` ``status``) is one row in
``documents`` plus one row per addressee in ``recipients``; ``pending`` stays 1 until that
addressee acknowledges it (ConfirmReceived, ``updateStatus``, or a destructive GetTraces
for statuses). A status is addressed to the original sender (``ResponseFor/OrganId``), so
"statuses readable by the sender" and "documents pending for a recipient" are one mechanism
and both bindings see the same state.

Everything is written (file fsynced and renamed, row committed) before the caller answers;
the schema is created when the store opens, so a restart on the same directory loses nothing.
One connection guarded by a lock: the sandbox's load is small and this keeps it simple.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from ..durable import fsync_dir

CHUNK = 1 << 16
log = logging.getLogger("connector.sandbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agencies (
    organ_id   TEXT PRIMARY KEY,
    system_id  TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    token      TEXT NOT NULL,
    secret     TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1,
    extra      TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS documents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL CHECK (kind IN ('edoc', 'status')),
    sender          TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    sender_doc_id   TEXT,
    sha256          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    binding         TEXT NOT NULL,
    created_at      REAL NOT NULL,
    status_code     TEXT,
    response_for    INTEGER,
    status_key      TEXT,
    meta            TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS documents_sender_doc ON documents (kind, sender, sender_doc_id);
CREATE INDEX IF NOT EXISTS documents_status_key ON documents (status_key);
CREATE TABLE IF NOT EXISTS recipients (
    doc_id     INTEGER NOT NULL REFERENCES documents (id),
    organ_id   TEXT NOT NULL,
    pending    INTEGER NOT NULL DEFAULT 1,
    outcome    TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (doc_id, organ_id)
);
CREATE INDEX IF NOT EXISTS recipients_pending ON recipients (organ_id, pending);
"""
# The hub's natural key of a new document: its sender and the sender's DocumentId. Unique, so
# two requests carrying the same document at once cannot both be stored (the check before the
# insert is only the fast path). Separate from _SCHEMA: a data directory written before this
# index existed may hold duplicates, and must still open.
_UNIQUE_EDOC = (
    "CREATE UNIQUE INDEX IF NOT EXISTS documents_edoc_natural_key ON documents (sender, sender_doc_id) "
    "WHERE kind = 'edoc' AND sender_doc_id IS NOT NULL"
)


class DuplicateDocument(Exception):
    """An edoc with this sender and DocumentId is already stored."""


@dataclass
class Agency:
    """An agency of the directory with its credentials on both bindings."""

    organ_id: str
    name: str
    token: str
    secret: str
    system_id: str = ""
    active: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.system_id:
            self.system_id = self.organ_id

    @classmethod
    def from_json(cls, data: dict) -> "Agency":
        """From an ``--agencies`` entry: ``organ_id``, ``name``, ``token``, ``secret`` required."""
        missing = [k for k in ("organ_id", "name", "token", "secret") if not str(data.get(k) or "").strip()]
        if missing:
            raise ValueError(f"agency {data.get('organ_id')!r} lacks {', '.join(missing)}")
        known = {"organ_id", "name", "token", "secret", "system_id", "active"}
        return cls(
            organ_id=str(data["organ_id"]),
            name=str(data["name"]),
            token=str(data["token"]),
            secret=str(data["secret"]),
            system_id=str(data.get("system_id") or data["organ_id"]),
            active=bool(data.get("active", True)),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "extra"}
        out.update(self.extra)
        return out


@dataclass
class DocumentRow:
    id: int
    kind: str
    sender: str
    recipients: list[str]
    sender_doc_id: str | None
    sha256: str
    size: int
    binding: str
    created_at: float
    status_code: str | None
    response_for: int | None
    path: Path


@dataclass
class RecipientRow:
    doc_id: int
    organ_id: str
    pending: bool
    outcome: str | None
    updated_at: float


class Spool:
    """A file being written under ``tmp/`` with its size and SHA-256 computed on the way."""

    def __init__(self, directory: Path):
        fd, name = tempfile.mkstemp(dir=directory, suffix=".part")
        self.path = Path(name)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()
        self.size = 0
        self.sha256 = ""

    def write(self, data: bytes) -> int:
        assert self._fh is not None
        self._fh.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def copy_from(self, stream: BinaryIO, limit: int | None = None) -> None:
        """Copy ``stream`` (at most ``limit`` bytes) in chunks."""
        left = limit
        while left is None or left > 0:
            chunk = stream.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            self.write(chunk)
            if left is not None:
                left -= len(chunk)

    def finish(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            self.sha256 = self._digest.hexdigest()

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


class Store:
    """The sandbox's state under one data directory; safe to share between threads."""

    def __init__(self, data_dir: str | Path):
        self.dir = Path(data_dir)
        self.documents_dir = self.dir / "documents"
        self.tmp_dir = self.dir / "tmp"
        for d in (self.dir, self.documents_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp_dir.glob("*.part"):
            stale.unlink(missing_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.dir / "sandbox.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        try:
            self._db.execute(_UNIQUE_EDOC)
        except sqlite3.IntegrityError:
            log.warning("%s holds duplicate documents; the sender+DocumentId uniqueness is not enforced", self.dir)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ helpers

    def _tx(self):
        return _Transaction(self._db, self._lock)

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ agencies

    def upsert_agency(self, agency: Agency) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO agencies (organ_id, system_id, name, token, secret, active, extra) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (organ_id) DO UPDATE SET system_id=excluded.system_id, "
                "name=excluded.name, token=excluded.token, secret=excluded.secret, active=excluded.active, "
                "extra=excluded.extra",
                (
                    agency.organ_id,
                    agency.system_id,
                    agency.name,
                    agency.token,
                    agency.secret,
                    int(agency.active),
                    json.dumps(agency.extra, ensure_ascii=False),
                ),
            )

    def agencies(self) -> list[Agency]:
        return [_agency(r) for r in self._query("SELECT * FROM agencies ORDER BY organ_id")]

    def agency(self, organ_id: str | None) -> Agency | None:
        if not organ_id:
            return None
        rows = self._query("SELECT * FROM agencies WHERE organ_id = ?", (organ_id,))
        return _agency(rows[0]) if rows else None

    def agency_by_system_id(self, system_id: str | None) -> Agency | None:
        if not system_id:
            return None
        rows = self._query("SELECT * FROM agencies WHERE system_id = ?", (system_id,))
        return _agency(rows[0]) if rows else None

    def authenticate_token(self, organ_id: str | None, token: str | None) -> Agency | None:
        """The active agency whose OrganId and Token both match (the hub's check)."""
        agency = self.agency(organ_id)
        if agency is None or not agency.active or token is None:
            return None
        return agency if secrets.compare_digest(agency.token.encode(), token.encode()) else None

    # ------------------------------------------------------------------ files

    def spool(self) -> Spool:
        return Spool(self.tmp_dir)

    def keep(self, spool: Spool) -> Path:
        """Move a finished spool to ``documents/<sha256>.edxml`` (identical content is kept once)."""
        spool.finish()
        target = self.documents_dir / f"{spool.sha256}.edxml"
        if target.exists():
            spool.path.unlink(missing_ok=True)
        else:
            os.replace(spool.path, target)
            fsync_dir(self.documents_dir)
        return target

    def path_for(self, sha256: str) -> Path:
        return self.documents_dir / f"{sha256}.edxml"

    # ------------------------------------------------------------------ documents

    def add_document(
        self,
        *,
        kind: str,
        sender: str,
        recipients: list[str],
        sha256: str,
        size: int,
        binding: str,
        sender_doc_id: str | None = None,
        status_code: str | None = None,
        response_for: int | None = None,
        status_key: str | None = None,
        meta: dict | None = None,
    ) -> int:
        """Record a kept file as a document pending for each recipient; its axis id.

        Raises :class:`DuplicateDocument` when an edoc with the same sender and
        ``sender_doc_id`` is already recorded (nothing is written then)."""
        now = time.time()
        try:
            return self._add_document(
                now, kind, sender, recipients, sha256, size, binding, sender_doc_id, status_code, response_for,
                status_key, meta,
            )
        except sqlite3.IntegrityError as exc:
            if kind == "edoc" and "documents" in str(exc) and "sender" in str(exc):
                raise DuplicateDocument(f"document {sender_doc_id!r} from {sender} is already stored") from None
            raise

    def _add_document(
        self, now, kind, sender, recipients, sha256, size, binding, sender_doc_id, status_code, response_for,
        status_key, meta,
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO documents (kind, sender, recipients, sender_doc_id, sha256, size, binding, created_at, "
                "status_code, response_for, status_key, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    sender,
                    json.dumps(recipients, ensure_ascii=False),
                    sender_doc_id,
                    sha256,
                    size,
                    binding,
                    now,
                    status_code,
                    response_for,
                    status_key,
                    json.dumps(meta or {}, ensure_ascii=False, default=str),
                ),
            )
            doc_id = int(cur.lastrowid)
            for organ in dict.fromkeys(recipients):
                db.execute(
                    "INSERT INTO recipients (doc_id, organ_id, pending, updated_at) VALUES (?, ?, 1, ?)",
                    (doc_id, organ, now),
                )
        return doc_id

    def document(self, doc_id: int) -> DocumentRow | None:
        rows = self._query("SELECT * FROM documents WHERE id = ?", (doc_id,))
        return self._doc(rows[0]) if rows else None

    def find_edoc(self, sender: str | None, sender_doc_id: str | None) -> DocumentRow | None:
        """The edoc ``sender`` sent under its own DocumentId (for duplicates and ResponseFor)."""
        if not sender_doc_id:
            return None
        if sender:
            rows = self._query(
                "SELECT * FROM documents WHERE kind='edoc' AND sender=? AND sender_doc_id=? ORDER BY id LIMIT 1",
                (sender, sender_doc_id),
            )
        else:
            rows = self._query(
                "SELECT * FROM documents WHERE kind='edoc' AND sender_doc_id=? ORDER BY id LIMIT 1", (sender_doc_id,)
            )
        return self._doc(rows[0]) if rows else None

    def meta(self, doc_id: int) -> dict:
        rows = self._query("SELECT meta FROM documents WHERE id = ?", (doc_id,))
        return json.loads(rows[0]["meta"]) if rows else {}

    def status_exists(self, status_key: str) -> bool:
        return bool(self._query("SELECT 1 FROM documents WHERE status_key = ? LIMIT 1", (status_key,)))

    def recipient(self, doc_id: int, organ_id: str) -> RecipientRow | None:
        rows = self._query("SELECT * FROM recipients WHERE doc_id = ? AND organ_id = ?", (doc_id, organ_id))
        return _recipient(rows[0]) if rows else None

    def recipients_of(self, doc_id: int) -> list[RecipientRow]:
        return [_recipient(r) for r in self._query("SELECT * FROM recipients WHERE doc_id = ? ORDER BY organ_id", (doc_id,))]

    def pending(self, organ_id: str, kind: str = "edoc") -> list[DocumentRow]:
        """Documents (or statuses) addressed to ``organ_id`` and not yet acknowledged, oldest first."""
        rows = self._query(
            "SELECT d.* FROM documents d JOIN recipients r ON r.doc_id = d.id "
            "WHERE r.organ_id = ? AND r.pending = 1 AND d.kind = ? ORDER BY d.id",
            (organ_id, kind),
        )
        return [self._doc(r) for r in rows]

    def received_since(self, organ_id: str, since: float, kind: str = "status") -> list[DocumentRow]:
        """Everything of ``kind`` addressed to ``organ_id`` recorded at or after ``since``."""
        rows = self._query(
            "SELECT d.* FROM documents d JOIN recipients r ON r.doc_id = d.id "
            "WHERE r.organ_id = ? AND d.kind = ? AND d.created_at >= ? ORDER BY d.id",
            (organ_id, kind, since),
        )
        return [self._doc(r) for r in rows]

    def sent_by(self, organ_id: str, doc_id: int | None = None) -> list[DocumentRow]:
        if doc_id is None:
            rows = self._query("SELECT * FROM documents WHERE sender = ? AND kind='edoc' ORDER BY id", (organ_id,))
        else:
            rows = self._query("SELECT * FROM documents WHERE sender = ? AND id = ?", (organ_id, doc_id))
        return [self._doc(r) for r in rows]

    def acknowledge(self, doc_id: int, organ_id: str, outcome: str = "done") -> bool:
        """Take ``doc_id`` off ``organ_id``'s pending list; True if it was pending."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE recipients SET pending = 0, outcome = ?, updated_at = ? "
                "WHERE doc_id = ? AND organ_id = ? AND pending = 1",
                (outcome, time.time(), doc_id, organ_id),
            )
            return cur.rowcount > 0

    def take_pending(self, organ_id: str, kind: str = "status") -> list[DocumentRow]:
        """Pending rows of ``kind`` for ``organ_id``, marked taken in the same transaction."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT d.* FROM documents d JOIN recipients r ON r.doc_id = d.id "
                "WHERE r.organ_id = ? AND r.pending = 1 AND d.kind = ? ORDER BY d.id",
                (organ_id, kind),
            ).fetchall()
            now = time.time()
            for r in rows:
                db.execute(
                    "UPDATE recipients SET pending = 0, outcome = 'read', updated_at = ? WHERE doc_id = ? AND organ_id = ?",
                    (now, r["id"], organ_id),
                )
        return [self._doc(r) for r in rows]

    def counts(self) -> dict:
        with self._lock:
            docs = self._db.execute("SELECT kind, COUNT(*) FROM documents GROUP BY kind").fetchall()
            pending = self._db.execute("SELECT COUNT(*) FROM recipients WHERE pending = 1").fetchone()[0]
            agencies = self._db.execute("SELECT COUNT(*) FROM agencies").fetchone()[0]
        return {"documents": {k: n for k, n in docs}, "pending": pending, "agencies": agencies}

    def _doc(self, r: sqlite3.Row) -> DocumentRow:
        return DocumentRow(
            id=r["id"],
            kind=r["kind"],
            sender=r["sender"],
            recipients=json.loads(r["recipients"]),
            sender_doc_id=r["sender_doc_id"],
            sha256=r["sha256"],
            size=r["size"],
            binding=r["binding"],
            created_at=r["created_at"],
            status_code=r["status_code"],
            response_for=r["response_for"],
            path=self.path_for(r["sha256"]),
        )


def iter_file(path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    """The file's bytes in chunks (a WSGI response body that never holds the file whole)."""
    with open(path, "rb") as fh:
        while data := fh.read(chunk):
            yield data


class _Transaction:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


def _agency(r: sqlite3.Row) -> Agency:
    return Agency(
        organ_id=r["organ_id"],
        name=r["name"],
        token=r["token"],
        secret=r["secret"],
        system_id=r["system_id"],
        active=bool(r["active"]),
        extra=json.loads(r["extra"] or "{}"),
    )


def _recipient(r: sqlite3.Row) -> RecipientRow:
    return RecipientRow(r["doc_id"], r["organ_id"], bool(r["pending"]), r["outcome"], r["updated_at"])



# ---------------------------------------------------------------------- development agencies

DEV_AGENCIES: list[dict] = [
    {
        "organ_id": "000.00.00.H16",
        "name": "UBND tỉnh Đắk Nông",
        "organization_in_charge": "UBND tỉnh Đắk Nông",
        "organ_add": "Đường 23/3, phường Nghĩa Đức, thành phố Gia Nghĩa, tỉnh Đắk Nông",
        "email": "ubnd@daknong.gov.vn",
        "telephone": "0261 3544 130",
        "website": "daknong.gov.vn",
    },
    {
        "organ_id": "000.00.00.G22",
        "name": "Văn phòng Chính phủ",
        "organization_in_charge": "Văn phòng Chính phủ",
        "organ_add": "Số 1 Hoàng Hoa Thám, Quận Ba Đình, Hà Nội",
        "email": "vpcp@chinhphu.vn",
        "telephone": "080 43100",
        "website": "vpcp.chinhphu.vn",
    },
    {
        "organ_id": "000.00.00.H41",
        "name": "UBND tỉnh Nghệ An",
        "organization_in_charge": "UBND tỉnh Nghệ An",
        "organ_add": "Số 03 Trường Thi, thành phố Vinh, tỉnh Nghệ An",
        "email": "ubnd@nghean.gov.vn",
    },
    {
        "organ_id": "000.00.00.H14",
        "name": "UBND tỉnh Cao Bằng",
        "organization_in_charge": "UBND tỉnh Cao Bằng",
        "organ_add": "Số 011 Hoàng Đình Giong, thành phố Cao Bằng, tỉnh Cao Bằng",
        "email": "ubnd@caobang.gov.vn",
    },
]


def load_agencies_file(path: str | Path) -> list[Agency]:
    """Read an ``--agencies`` file: a JSON list of agency objects."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of agencies")
    agencies = [Agency.from_json(item) for item in data]
    seen: set[str] = set()
    for a in agencies:
        if a.organ_id in seen:
            raise ValueError(f"{path}: agency {a.organ_id} appears twice")
        seen.add(a.organ_id)
    return agencies


def setup_agencies(store: Store, agencies_file: str | Path | None) -> list[Agency]:
    """Load ``--agencies`` into the store, or seed the development agencies (keeping any
    credentials a previous run generated) and write them to ``DIR/agencies.json``."""
    if agencies_file:
        for agency in load_agencies_file(agencies_file):
            store.upsert_agency(agency)
        return store.agencies()
    if not store.agencies():
        for item in DEV_AGENCIES:
            store.upsert_agency(
                Agency.from_json({**item, "token": secrets.token_urlsafe(18), "secret": secrets.token_hex(32)})
            )
    agencies = store.agencies()
    target = store.dir / "agencies.json"
    tmp = target.with_suffix(".json.part")
    tmp.write_text(json.dumps([a.to_json() for a in agencies], ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return agencies
