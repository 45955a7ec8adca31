"""Inbound rows keep what a status answering them needs (the document's ResponseFor), so the
answer is built without reading the document again.

Revision ID: 0003_inbound_answer
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_inbound_answer"
down_revision = "0002_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound") as batch:
        batch.add_column(sa.Column("answer_for", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("inbound") as batch:
        batch.drop_column("answer_for")
