"""The exchange log is searched by axis item id too (``audit trail <axis item>``: an item the
axis offered that was never fetched has no document or tracking id).

Revision ID: 0004_audit_axis_index
"""
from alembic import op

revision = "0004_audit_axis_index"
down_revision = "0003_inbound_answer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_entries_axis", "audit_entries", ["axis_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_entries_axis", table_name="audit_entries")
