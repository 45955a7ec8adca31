"""The audit log: hash-chained entries, signed batches, archive files.

The same tables as ``connector/audit/tables.py`` (written out here on purpose: a migration
must not change when that module does).

Revision ID: 0002_audit
Revises: 0001_engine
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_audit"
down_revision = "0001_engine"
branch_labels = None
depends_on = None

_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_entries",
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
    op.create_index("ix_audit_entries_document", "audit_entries", ["document_id"])
    op.create_index("ix_audit_entries_tracking", "audit_entries", ["tracking_id"])
    op.create_index("ix_audit_entries_at", "audit_entries", ["at"])
    op.create_table(
        "audit_batches",
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
    op.create_table(
        "audit_archives",
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


def downgrade() -> None:
    op.drop_table("audit_archives")
    op.drop_table("audit_batches")
    op.drop_index("ix_audit_entries_at", table_name="audit_entries")
    op.drop_index("ix_audit_entries_tracking", table_name="audit_entries")
    op.drop_index("ix_audit_entries_document", table_name="audit_entries")
    op.drop_table("audit_entries")
