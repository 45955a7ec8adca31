"""The ``audit`` commands, reading where the log is from the connector's configuration."""

from __future__ import annotations

from pathlib import Path

from ..audit.cli import AuditSettings, audit_group

__all__ = ["audit_group", "ConfigLoader"]


class ConfigLoader:
    """Given to the CLI as ``ctx.obj``: ``audit --config FILE`` finds the database, the evidence
    store, the archives and the trust anchors where the daemon keeps them."""

    def load_config(self, path: Path) -> AuditSettings:
        from ..daemon.config import load_config

        config = load_config(path)
        audit = config.audit
        return AuditSettings(
            database=config.database_url,
            evidence=config.data_dir / "evidence",
            archive_dir=config.path(audit.archive_dir) if audit.archive_dir else config.data_dir / "audit-archive",
            tsa_ca=config.path(audit.tsa_ca) if audit.tsa_ca else None,
            trust=config.path(config.signing.trust_dir),
        )
