"""The log's records as Python values: entries as the canonical field dicts the hash covers,
batches as :class:`Batch`, and their JSON forms in archive files."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .standalone import ENTRY_FIELDS, format_time, parse_time, statement


def utc(moment: dt.datetime) -> dt.datetime:
    """Aware UTC (SQLite hands datetimes back naive; they were stored as UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


@dataclass(frozen=True)
class Batch:
    """A seal over the entries ``first_seq..last_seq``."""

    id: int
    first_seq: int
    last_seq: int
    merkle_root: str
    signature: bytes
    signer_cert: str  # PEM, the signer's certificate first, then its chain
    algorithm: str  # rsa-sha256 | rsa-pss-sha256 | ecdsa-sha256
    timestamp_token: bytes | None
    sealed_at: dt.datetime

    def statement(self) -> bytes:
        """The bytes the signature covers."""
        return statement(self.id, self.first_seq, self.last_seq, self.merkle_root)

    @property
    def label(self) -> str:
        return f"batch {self.id} (seq {self.first_seq}..{self.last_seq})"


def entry_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row of ``audit_entries`` as the canonical fields (+ entry_hash)."""
    fields = {name: row[name] for name in ENTRY_FIELDS if name != "at"}
    fields["seq"] = int(row["seq"])
    fields["at"] = format_time(utc(row["at"]))
    fields["entry_hash"] = row["entry_hash"]
    return fields


def batch_from_row(row: Mapping[str, Any]) -> Batch:
    token = row["timestamp_token"]
    return Batch(int(row["id"]), int(row["first_seq"]), int(row["last_seq"]), row["merkle_root"],
                 bytes(row["signature"]), row["signer_cert"], row["algorithm"],
                 bytes(token) if token is not None else None, utc(row["sealed_at"]))


def batch_to_json(batch: Batch) -> dict[str, Any]:
    return {
        "id": batch.id, "first_seq": batch.first_seq, "last_seq": batch.last_seq,
        "merkle_root": batch.merkle_root, "algorithm": batch.algorithm,
        "signature": base64.b64encode(batch.signature).decode("ascii"),
        "signer_cert": batch.signer_cert,
        "timestamp_token": base64.b64encode(batch.timestamp_token).decode("ascii") if batch.timestamp_token else None,
        "sealed_at": format_time(batch.sealed_at),
    }


def batch_from_json(data: Any) -> Batch:
    """ValueError names what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("a batch record must be a JSON object")
    try:
        token = data["timestamp_token"]
        return Batch(
            int(data["id"]), int(data["first_seq"]), int(data["last_seq"]), str(data["merkle_root"]),
            base64.b64decode(data["signature"], validate=True), str(data["signer_cert"]),
            str(data["algorithm"]), base64.b64decode(token, validate=True) if token else None,
            parse_time(data["sealed_at"]))
    except KeyError as exc:
        raise ValueError(f"batch record lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"batch record is malformed ({exc})") from None
