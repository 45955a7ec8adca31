"""The log's records as Python values: entries as the canonical field dicts the hash covers,
batches as :class:`Batch`, and their JSON forms in archive files."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .standalone import format_time, statement


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


class RecordError(ValueError):
    """A stored record holds a field that cannot be decoded (wrong type or form).

    ``label`` names the record (``entry seq 3 (out.sent)``, ``batch 2 (seq 6..10)``), ``fields``
    the names of the unreadable fields; ``str()`` is the whole message, in the form the
    verifier reports an altered entry."""

    def __init__(self, label: str, kind: str, problems: list[str], fields: list[str]) -> None:
        self.label = label
        self.problems = problems
        self.fields = fields
        #: A batch's (id, first_seq, last_seq, merkle_root), each None when unreadable.
        self.range: tuple[int | None, int | None, int | None, str | None] | None = None
        super().__init__(f"{label}: {'; '.join(problems)} (a field of this {kind} was altered)")


#: How SQLite stores a DateTime (SQLAlchemy's form); PostgreSQL hands back datetimes.
_DB_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}:\d{2}|Z)?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ENTRY_REQUIRED = ("event", "direction", "actor")
_ENTRY_OPTIONAL = ("document_id", "tracking_id", "axis_id", "detail")
_MISSING = object()


def describe_value(value: Any) -> str:
    """A field's value for a message: short, with its type (often what is wrong)."""
    if value is None:
        return "empty (NULL)"
    text = repr(bytes(value) if isinstance(value, memoryview) else value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({_TYPE_NAMES.get(type(value).__name__, type(value).__name__)})"


_TYPE_NAMES = {"str": "text", "int": "integer", "float": "number", "bool": "true/false", "bytes": "binary",
               "memoryview": "binary", "bytearray": "binary", "list": "list", "dict": "object",
               "datetime": "time"}


class FieldDecoder:
    """Decodes the fields of one stored record (a database row or a JSON object), checking each
    one's type and form and collecting what cannot be read instead of raising at the first."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = row
        self.problems: list[str] = []
        self.bad: list[str] = []

    def fail(self, name: str, expected: str) -> None:
        self.bad.append(name)
        self.problems.append(f"field {name} is {describe_value(self.row.get(name))}, not {expected}")

    def integer(self, name: str) -> int | None:
        value = self.row.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        self.fail(name, "a positive integer")
        return None

    def text(self, name: str, *, required: bool) -> str | None:
        value = self.row.get(name)
        if isinstance(value, str) and (value or not required):
            return value
        if value is None and not required:
            return None
        self.fail(name, "text" if not required else "non-empty text")
        return None

    def digest(self, name: str, *, required: bool = True) -> str | None:
        value = self.row.get(name)
        if value is None and not required:
            return None
        if isinstance(value, str) and _HEX64.match(value):
            return value
        self.fail(name, "a lowercase hex SHA-256")
        return None

    def time(self, name: str) -> dt.datetime | None:
        value = self.row.get(name)
        if isinstance(value, str) and _DB_TIME.match(value):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
        if isinstance(value, dt.datetime):
            return utc(value)
        self.fail(name, "a time")
        return None

    def blob(self, name: str, *, required: bool) -> bytes | None:
        value = self.row.get(name)
        if value is None and not required:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)) and (len(value) or not required):
            return bytes(value)
        self.fail(name, "binary data" if not required else "non-empty binary data")
        return None


def decode_entry(row: Mapping[str, Any]) -> tuple[dict[str, Any], RecordError | None]:
    """A stored ``audit_entries`` row as the canonical fields (+ entry_hash), each checked for
    type and form. Unreadable fields come back as None, with a :class:`RecordError` naming them."""
    f = FieldDecoder(row)
    fields: dict[str, Any] = {"seq": f.integer("seq")}
    at = f.time("at")
    fields["at"] = format_time(at) if at is not None else None
    for name in _ENTRY_REQUIRED:
        fields[name] = f.text(name, required=True)
    for name in _ENTRY_OPTIONAL:
        fields[name] = f.text(name, required=False)
    fields["sha256"] = f.digest("sha256", required=False)
    fields["prev_hash"] = f.digest("prev_hash")
    fields["entry_hash"] = f.digest("entry_hash")
    if not f.problems:
        return fields, None
    label = f"entry seq {fields['seq'] if fields['seq'] is not None else describe_value(row.get('seq'))}"
    if fields["event"] is not None:
        label += f" ({fields['event']})"
    return fields, RecordError(label, "entry", f.problems, f.bad)


def entry_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row of ``audit_entries`` as the canonical fields (+ entry_hash);
    :class:`RecordError` when a field cannot be decoded."""
    fields, error = decode_entry(row)
    if error is not None:
        raise error
    return fields


def batch_from_row(row: Mapping[str, Any]) -> Batch:
    """A database row of ``audit_batches``; :class:`RecordError` when a field cannot be decoded."""
    return _batch(FieldDecoder(row), row, lambda f, name: f.blob(name, required=name == "signature"))


def _batch(f: FieldDecoder, source: Mapping[str, Any], binary: Any) -> Batch:
    values = {name: f.integer(name) for name in ("id", "first_seq", "last_seq")}
    root = f.digest("merkle_root")
    signature = binary(f, "signature")
    signer_cert = f.text("signer_cert", required=True)
    algorithm = f.text("algorithm", required=True)
    token = binary(f, "timestamp_token")
    sealed_at = f.time("sealed_at")
    if f.problems:
        label = f"batch {values['id'] if values['id'] is not None else describe_value(source.get('id'))}"
        if values["first_seq"] is not None and values["last_seq"] is not None:
            label += f" (seq {values['first_seq']}..{values['last_seq']})"
        error = RecordError(label, "batch", f.problems, f.bad)
        error.range = (values["id"], values["first_seq"], values["last_seq"], root)
        raise error
    return Batch(values["id"], values["first_seq"], values["last_seq"], root, signature,  # type: ignore[arg-type]
                 signer_cert, algorithm, token, sealed_at)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DamagedBatch:
    """A stored batch with unreadable fields: what could be read (None otherwise) and why."""

    id: int | None
    first_seq: int | None
    last_seq: int | None
    merkle_root: str | None
    error: RecordError

    @classmethod
    def from_error(cls, error: RecordError) -> DamagedBatch:
        return cls(*(error.range or (None, None, None, None)), error)


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
    """A batch record of an archive file; ValueError names what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("a batch record must be a JSON object")
    missing = [name for name in _BATCH_JSON if name not in data]
    if missing:
        raise ValueError(f"batch record lacks {missing[0]!r}")
    f = FieldDecoder(data)
    try:
        return _batch(f, data, _base64)
    except RecordError as exc:
        raise ValueError(f"batch record is malformed: {exc}") from None


_BATCH_JSON = ("id", "first_seq", "last_seq", "merkle_root", "signature", "signer_cert", "algorithm",
               "timestamp_token", "sealed_at")


def _base64(f: FieldDecoder, name: str) -> bytes | None:
    value = f.row.get(name)
    if name == "timestamp_token" and not value:
        return None
    if isinstance(value, str) and value:
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            pass
    f.fail(name, "base64 text")
    return None
