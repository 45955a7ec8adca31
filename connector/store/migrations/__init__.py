"""Alembic migrations of the connector's database (run by :func:`connector.store.db.migrate`)."""
