"""The engine's tables: outbound (+ recipients), inbound, agency directory, settings.

Revision ID: 0001_engine
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_engine"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("document_id", sa.String(200)),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("intake_key", sa.String(200), unique=True),
        sa.Column("staging", sa.String(500)),
        sa.Column("evidence_sha256", sa.String(64)),
        sa.Column("axis_id", sa.String(200)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("claimed_by", sa.String(100)),
        sa.Column("claimed_until", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
    )
    op.create_index("ix_outbound_due", "outbound", ["state", "next_attempt_at"])
    op.create_index("ix_outbound_document", "outbound", ["document_id"])
    op.create_table(
        "outbound_recipient",
        sa.Column("outbound_id", sa.String(40), sa.ForeignKey("outbound.id"), primary_key=True),
        sa.Column("recipient", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_code", sa.String(4)),
        sa.Column("status_description", sa.Text),
        sa.Column("status_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "inbound",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("axis_item", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("sender", sa.String(64)),
        sa.Column("document_id", sa.String(200)),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("verdict", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("delivered_to", sa.Text),
        sa.Column("status_code", sa.String(4)),
        sa.Column("duplicate_of", sa.String(40)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("claimed_by", sa.String(100)),
        sa.Column("claimed_until", sa.Float),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_inbound_due", "inbound", ["state", "next_attempt_at"])
    op.create_index("ix_inbound_dedup", "inbound", ["sender", "document_id", "sha256"])
    op.create_table(
        "agency",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("parent", sa.String(64)),
        sa.Column("refreshed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "setting",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for name in ("setting", "agency", "inbound", "outbound_recipient", "outbound"):
        op.drop_table(name)
