"""The audit log's tables (SQLAlchemy Core), on their own MetaData so the log can be created,
migrated and read apart from the engine's tables.

In production the schema comes from the Alembic revision
``connector/store/migrations/versions/0002_audit_log.py`` (which repeats these definitions,
because a migration must not change when this module does); :func:`create_tables` is for tests
and tools. Keep the two in step.

- ``audit_entries``: the hash-chained log. ``seq`` is assigned by the writer (last + 1 under a
  lock), not by the database, so that seq order is chain order. ``prev_hash`` is unique: two
  entries can never claim the same predecessor (a fork), whatever a writer does wrong.
- ``audit_batches``: a seal over ``first_seq..last_seq``: Merkle root, the signature over the
  statement (openssl-compatible bytes), the signer's certificate with its chain (PEM, leaf
  first), the algorithm name, and the RFC 3161 token (DER) once the TSA answered.
- ``audit_archives``: segments moved to files; each file names the previous file's SHA-256.
  ``last_entry_hash`` and ``last_batch_id`` let the log continue when every older entry and
  batch has been archived.
"""

from __future__ import annotations

import sqlalchemy as sa

audit_metadata = sa.MetaData()

#: BIGINT everywhere; on SQLite an INTEGER primary key is the rowid (the table is stored in seq order).
_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Time = sa.DateTime(timezone=True)

audit_entries = sa.Table(
    "audit_entries",
    audit_metadata,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=False),
    sa.Column("at", _Time, nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("document_id", sa.String(200)),
    sa.Column("tracking_id", sa.String(200)),
    sa.Column("axis_id", sa.String(200)),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("detail", sa.Text),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("prev_hash", name="uq_audit_entries_prev_hash"),
)
sa.Index("ix_audit_entries_document", audit_entries.c.document_id)
sa.Index("ix_audit_entries_tracking", audit_entries.c.tracking_id)
sa.Index("ix_audit_entries_axis", audit_entries.c.axis_id)
sa.Index("ix_audit_entries_at", audit_entries.c.at)

audit_batches = sa.Table(
    "audit_batches",
    audit_metadata,
    sa.Column("id", _Seq, primary_key=True, autoincrement=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("merkle_root", sa.String(64), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    sa.Column("signer_cert", sa.Text, nullable=False),
    sa.Column("algorithm", sa.String(20), nullable=False),
    sa.Column("timestamp_token", sa.LargeBinary),
    sa.Column("sealed_at", _Time, nullable=False),
    sa.UniqueConstraint("first_seq", name="uq_audit_batches_first_seq"),
)

audit_archives = sa.Table(
    "audit_archives",
    audit_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("prev_archive_sha256", sa.String(64)),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("last_entry_hash", sa.String(64), nullable=False),
    sa.Column("last_batch_id", sa.BigInteger, nullable=False),
    sa.Column("first_at", _Time, nullable=False),
    sa.Column("last_at", _Time, nullable=False),
    sa.Column("created", _Time, nullable=False),
)


def create_tables(engine: sa.Engine) -> None:
    """Create the audit tables if missing (tests and tools; production uses the migration)."""
    audit_metadata.create_all(engine)
