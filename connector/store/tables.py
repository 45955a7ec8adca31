"""The engine's tables (SQLAlchemy Core). The schema is created and upgraded by Alembic
(:mod:`connector.store.migrations`); these objects are what the queries are written against."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

outbound = sa.Table(
    "outbound",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # the tracking id
    sa.Column("kind", sa.String(8), nullable=False),  # edoc | status
    sa.Column("document_id", sa.String(200)),  # edXML DocumentId (a status: the document it answers)
    sa.Column("sender", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # queued signed retrying sent dead cancelled
    sa.Column("intake_key", sa.String(200), unique=True),  # makes re-submitting the same drop idempotent
    sa.Column("staging", sa.String(500)),  # folder with document.json and the attachments
    sa.Column("evidence_sha256", sa.String(64)),  # the exact (signed) bytes built for sending
    sa.Column("axis_id", sa.String(200)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),  # epoch seconds
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("claimed_until", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float),
)
sa.Index("ix_outbound_due", outbound.c.state, outbound.c.next_attempt_at)
sa.Index("ix_outbound_document", outbound.c.document_id)

recipient = sa.Table(
    "outbound_recipient",
    metadata,
    sa.Column("outbound_id", sa.String(40), sa.ForeignKey("outbound.id"), primary_key=True),
    sa.Column("recipient", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # pending sent delivered + business statuses
    sa.Column("status_code", sa.String(4)),
    sa.Column("status_description", sa.Text),
    sa.Column("status_at", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
)

inbound = sa.Table(
    "inbound",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("axis_item", sa.String(200), nullable=False, unique=True),  # the binding's id (or a status digest)
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("sender", sa.String(64)),
    sa.Column("document_id", sa.String(200)),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    # received delivered acknowledged done | quarantined rejected | duplicate | unmatched | dead
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("verdict", sa.Text),  # JSON of the signature verdict
    sa.Column("reason", sa.Text),  # why quarantined / dead / unmatched
    sa.Column("delivered_to", sa.Text),  # JSON {destination: location}
    sa.Column("status_code", sa.String(4)),  # status messages: the code they carry
    sa.Column("duplicate_of", sa.String(40)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("claimed_until", sa.Float),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("answer_for", sa.Text),  # JSON ResponseFor of the document, for the statuses answering it
    sa.Column("updated_at", sa.Float, nullable=False),
)
sa.Index("ix_inbound_due", inbound.c.state, inbound.c.next_attempt_at)
sa.Index("ix_inbound_dedup", inbound.c.sender, inbound.c.document_id, inbound.c.sha256)

agency = sa.Table(
    "agency",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("parent", sa.String(64)),
    sa.Column("refreshed_at", sa.Float, nullable=False),
)

setting = sa.Table(
    "setting",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
