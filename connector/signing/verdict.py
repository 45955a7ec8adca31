"""The verdict on one document's signature: what was found, why, and who signed."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["valid", "invalid", "absent", "placeholder", "partial", "untrusted", "revoked", "expired"]


@dataclass
class Verdict:
    """The outcome of checking one document's signature."""

    status: Status
    reason: str
    signer_subject: str | None = None
    signer_issuer: str | None = None
    signer_serial: str | None = None
    signing_time: dt.datetime | None = None
    algorithm: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["signing_time"] = self.signing_time.isoformat() if self.signing_time else None
        return data

    def describe(self) -> str:
        """One line for a person: the verdict, why, and who signed."""
        who = f"; signer {self.signer_subject} (serial {self.signer_serial})" if self.signer_subject else ""
        when = f"; signed {self.signing_time.isoformat()}" if self.signing_time else ""
        return f"{self.status}: {self.reason}{who}{when}"
