"""Durable state: outbox, inbox, de-duplication, statuses, agency directory, evidence files."""
