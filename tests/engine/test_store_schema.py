"""The Alembic migrations build exactly the tables the queries are written against, on SQLite
and on PostgreSQL, and running them again is a no-op."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from connector.store import tables
from connector.store.db import head_revision, migrate, open_database


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_table_definitions(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = open_database(url)
    try:
        assert migrate(engine) == head_revision()
        assert migrate(engine) == head_revision()  # idempotent
        inspector = sa.inspect(engine)
        for table in tables.metadata.sorted_tables:
            reflected = {c["name"] for c in inspector.get_columns(table.name)}
            assert reflected == {c.name for c in table.columns}, table.name
    finally:
        engine.dispose()
