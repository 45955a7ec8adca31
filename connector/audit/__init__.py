"""The signed, hash-chained exchange log and what auditors check it with.

Modeled on X-Road's message log: the exact bytes exchanged stay in the evidence store
(``connector.store.evidence``); the log records each exchange step with their SHA-256; every
entry carries the hash of the one before; entries are sealed in batches whose Merkle root the
connector's key signs and an RFC 3161 authority time-stamps; old segments move to archive
files chained by digest; ``audit verify`` and ``audit verify-bundle`` check it all offline.

Modules: ``tables`` (schema), ``log`` (append, seal, fail closed, archive), ``seal``
(signatures), ``tsa`` (time-stamps), ``archive`` (archive files), ``reader`` (reading across
archives and database), ``verify`` (the full check), ``bundle`` (export and bundle check),
``trail`` (a document's timeline), ``cli`` (the ``audit`` commands), ``standalone`` (the rules
in plain Python; shipped in every bundle as the auditor's checker).
"""

from .log import (
    AuditError,
    AuditEvent,
    AuditIntegrityError,
    AuditLog,
    AuditUnavailable,
    Batch,
    InvalidEvent,
    Sealer,
)
from .tables import audit_metadata, create_tables
from .tsa import TsaClient, TsaError

__all__ = [
    "AuditError",
    "AuditEvent",
    "AuditIntegrityError",
    "AuditLog",
    "AuditUnavailable",
    "Batch",
    "InvalidEvent",
    "Sealer",
    "TsaClient",
    "TsaError",
    "audit_metadata",
    "create_tables",
]
