"""The JSON form of an edXML message: what the CLI prints and what local DMSs exchange with us.

The form is defined by ``schemas/document.schema.json`` (schema version "1"). Writing is total:
:func:`to_json` turns any model into a dict, always with every key of its kind (``null`` or
``[]`` when a value is absent) so that a DMS can rely on the shape. Reading is strict:
:func:`from_json` validates against the schema first and reports *every* problem at once, each
named by its JSON path (``to[1].organ_id: expected a string, got number 5``), because a DMS
integrator fixes a payload faster from one complete list than from one error per attempt.

Dates are ISO ``YYYY-MM-DD``; timestamps ISO with the Vietnam offset. On input a timestamp
without offset is taken as Vietnam time, and one with another offset is converted to Vietnam
time (the instant is kept), since the model holds Vietnam time. Attachments travel without
their bytes: only size and SHA-256 are carried, and the model's ``data`` stays ``None``.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from .errors import Problem
from .model import (
    VN_TZ,
    Attachment,
    Business,
    BusinessDocumentInfo,
    Code,
    DocumentType,
    Edoc,
    ManifestReference,
    Message,
    Organization,
    OtherInfo,
    PromulgationInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    Status,
    TraceHeader,
    UnknownElement,
)

__all__ = [
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "JsonFormError",
    "dumps",
    "from_json",
    "loads",
    "schema",
    "to_json",
    "validate",
]

SCHEMA_VERSION = "1"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "document.schema.json"

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?"
)


class JsonFormError(ValueError):
    """A JSON document that does not follow the schema; lists every problem with its path."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(self.messages))

    @property
    def messages(self) -> list[str]:
        """One ``path: message`` line per problem."""
        return [f"{p.path}: {p.message}" for p in self.problems]


# --------------------------------------------------------------------------- schema


@cache
def schema() -> dict[str, Any]:
    """The document JSON schema, loaded once."""
    with SCHEMA_PATH.open(encoding="utf-8") as fh:
        return json.load(fh)


_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    """A real calendar date; the shape itself is left to the schema's pattern (one error each)."""
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        date.fromisoformat(value)
    return True


@_FORMATS.checks("edxml-timestamp", raises=ValueError)
def _is_timestamp(value: object) -> bool:
    """A real date and time of day (offset optional); the shape is left to the pattern."""
    if isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value):
        datetime.fromisoformat(value)
    return True


@cache
def _validator() -> Draft202012Validator:
    """One validator for the process: compiling the schema's references once."""
    return Draft202012Validator(schema(), format_checker=_FORMATS)


def validate(data: Any) -> list[Problem]:
    """Every problem of ``data`` against the document schema (empty when valid), in order.

    One problem per fact: a value checked by two subschemas (``from.organ_id`` is text in
    "organization" and required text in "sender") is reported once, by the stricter rule.
    """
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    type_rank: dict[str, tuple[int, int]] = {}  # path -> (allowed type count, index)
    for error in _validator().iter_errors(data):
        for problem in _explain(error):
            key = (problem.path, problem.message)
            if key in seen:
                continue
            seen.add(key)
            if problem.code == "json-type":
                allowed = _type_count(error.validator_value)
                earlier = type_rank.get(problem.path)
                if earlier is not None:
                    if earlier[0] <= allowed:
                        continue
                    problems[earlier[1]] = problem
                    type_rank[problem.path] = (allowed, earlier[1])
                    continue
                type_rank[problem.path] = (allowed, len(problems))
            problems.append(problem)
    return problems


def _type_count(value: str | list[str]) -> int:
    return 1 if isinstance(value, str) else len(value)


def json_path(parts: Iterable[str | int]) -> str:
    """``to[1].organ_id`` for the parts ('to', 1, 'organ_id'); ``(root)`` for the document."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "an array",
    "object": "an object",
    "null": "null",
}

_PATTERN_HINTS = {
    "date": "expected a date YYYY-MM-DD",
    "timestamp": "expected a timestamp YYYY-MM-DDTHH:MM:SS+07:00",
    "sha256": "expected 64 lowercase hexadecimal digits",
}


def _explain(error: ValidationError) -> Iterator[Problem]:
    """Turn one jsonschema error into problems a DMS integrator can act on."""
    parts = list(error.absolute_path)
    kind = str(error.validator)
    instance = error.instance
    value = error.validator_value
    if kind == "required":
        for key in value:
            if isinstance(instance, dict) and key not in instance:
                yield _problem(parts + [key], "required key missing", kind)
        return
    if kind == "additionalProperties":
        known = error.schema.get("properties", {})
        for key in instance:
            if key not in known:
                yield _problem(parts + [key], "unknown key", kind)
        return
    yield _problem(parts, _message(kind, value, instance, error), kind)


def _message(kind: str, value: Any, instance: Any, error: ValidationError) -> str:
    """The human sentence for one failed keyword."""
    got = _describe(instance)
    if kind == "type":
        types = [value] if isinstance(value, str) else list(value)
        return f"expected {' or '.join(_TYPE_NAMES.get(t, t) for t in types)}, got {got}"
    if kind == "const":
        return f"expected {json.dumps(value, ensure_ascii=False)}, got {got}"
    if kind == "enum":
        choices = ", ".join(json.dumps(v, ensure_ascii=False) for v in value)
        return f"expected one of {choices}, got {got}"
    if kind == "minLength":
        return "must not be empty"
    if kind == "minItems":
        return f"must have at least {value} {'entry' if value == 1 else 'entries'}"
    if kind == "minimum":
        return f"must be at least {value}, got {got}"
    if kind == "pattern":
        return f"{_PATTERN_HINTS.get(_pattern_name(value), 'unexpected form')}, got {got}"
    if kind == "format":
        what = "date" if value == "date" else "timestamp"
        return f"not a valid {what}: {got} ({error.cause or 'out of range'})"
    return error.message


def _pattern_name(pattern: str) -> str:
    """Which of the schema's patterns this is, to phrase the expectation."""
    if "T[0-9]{2}" in pattern:
        return "timestamp"
    if "[0-9a-f]{64}" in pattern:
        return "sha256"
    if "[0-9]{4}-" in pattern:
        return "date"
    return ""


def _describe(value: Any) -> str:
    """A short rendering of a JSON value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, list):
        return "an array"
    return "an object"


def _problem(parts: list[str | int], message: str, validator: str) -> Problem:
    return Problem(message=message, path=json_path(parts), code=f"json-{validator}")


# --------------------------------------------------------------------------- model -> JSON


def to_json(msg: Message) -> dict[str, Any]:
    """The JSON form of a message: every key present, ``None`` / ``[]`` when absent.

    Total on purpose: a received document that lacks a required field still gets printed
    (its JSON then fails :func:`validate`, which says what is missing).
    """
    if isinstance(msg, Edoc):
        return _edoc_out(msg)
    if isinstance(msg, Status):
        return _status_out(msg)
    raise TypeError(f"not an edXML message: {type(msg).__name__}")


def dumps(msg: Message) -> str:
    """The JSON form as text: UTF-8 friendly (Vietnamese stays readable), indented, stable order."""
    return json.dumps(to_json(msg), ensure_ascii=False, indent=2)


def _edoc_out(e: Edoc) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "edoc",
        "document_id": e.document_id,
        "from": _organization_out(e.from_),
        "to": [_organization_out(o) for o in e.to],
        "code": {"number": e.code.number, "notation": e.code.notation},
        "promulgation": {"place": e.promulgation.place, "date": _date_out(e.promulgation.date)},
        "document_type": {
            "type": e.document_type.type,
            "type_detail": e.document_type.type_detail,
            "name": e.document_type.type_name,
        },
        "subject": e.subject,
        "content": e.content,
        "signer_info": {
            "competence": e.signer_info.competence,
            "position": e.signer_info.position,
            "full_name": e.signer_info.full_name,
        },
        "due_date": _date_out(e.due_date),
        "steering_type": e.steering_type,
        "other_info": _other_info_out(e.other_info),
        "to_places": list(e.to_places),
        "response_for": [_response_for_out(r) for r in e.response_for],
        "trace_headers": [
            {"organ_id": t.organ_id, "timestamp": _timestamp_out(t.timestamp)} for t in e.trace_headers
        ],
        "business": _business_out(e.business),
        "manifest": [_manifest_out(m) for m in e.manifest],
        "attachments": [_attachment_out(a) for a in e.attachments],
        "unknown_elements": _unknown_out(e.unknown),
    }


def _status_out(s: Status) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "status",
        "from": _organization_out(s.from_),
        "response_for": [_response_for_out(r) for r in s.response_for],
        "status_code": s.status_code,
        "description": s.description,
        "timestamp": _timestamp_out(s.timestamp),
        "staff_info": _staff_out(s.staff_info),
        "unknown_elements": _unknown_out(s.unknown),
    }


def _organization_out(o: Organization) -> dict[str, Any]:
    return {
        "organ_id": o.organ_id,
        "organization_in_charge": o.organization_in_charge,
        "organ_name": o.organ_name,
        "organ_add": o.organ_add,
        "email": o.email,
        "telephone": o.telephone,
        "fax": o.fax,
        "website": o.website,
    }


def _other_info_out(o: OtherInfo) -> dict[str, Any]:
    return {
        "priority": o.priority,
        "sphere_of_promulgation": o.sphere_of_promulgation,
        "typer_notation": o.typer_notation,
        "promulgation_amount": o.promulgation_amount,
        "page_amount": o.page_amount,
        "direction": o.direction,
        "appendixes": list(o.appendixes),
    }


def _response_for_out(r: ResponseFor) -> dict[str, Any]:
    return {
        "organ_id": r.organ_id,
        "code": r.code,
        "promulgation_date": _date_out(r.promulgation_date),
        "document_id": r.document_id,
    }


def _staff_out(s: StaffInfo | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"department": s.department, "staff": s.staff, "email": s.email, "mobile": s.mobile}


def _business_out(b: Business | None) -> dict[str, Any] | None:
    if b is None:
        return None
    info = b.business_document_info
    return {
        "document_id": b.document_id,
        "business_doc_type": b.business_doc_type,
        "business_doc_reason": b.business_doc_reason,
        "paper": b.paper,
        "business_document_info": None
        if info is None
        else {
            "document_info": info.document_info,
            "document_receiver": info.document_receiver,
            "receivers": [
                {"organ_id": r.organ_id, "receiver_type": r.receiver_type} for r in info.receivers
            ],
        },
        "replacement_info": [
            {"document_id": r.document_id, "organ_ids": list(r.organ_ids)} for r in b.replacement_info
        ],
        "staff_info": _staff_out(b.staff_info),
    }


def _manifest_out(m: ManifestReference) -> dict[str, Any]:
    return {
        "content_id": m.content_id,
        "attachment_name": m.attachment_name,
        "content_type": m.content_type,
        "description": m.description,
        "href": m.href,
    }


def _attachment_out(a: Attachment) -> dict[str, Any]:
    return {
        "content_id": a.content_id,
        "name": a.name,
        "content_type": a.content_type,
        "description": a.description,
        "packaging": a.packaging,
        "size": a.size,
        "sha256": a.sha256,
    }


def _unknown_out(unknown: list[UnknownElement]) -> list[dict[str, Any]]:
    return [{"path": u.path, "line": u.line, "xml": u.xml} for u in unknown]


def _date_out(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _timestamp_out(t: datetime | None) -> str | None:
    """ISO 8601 in Vietnam time; a naive value is taken to be Vietnam time already."""
    if t is None:
        return None
    t = t.replace(tzinfo=VN_TZ) if t.tzinfo is None else t.astimezone(VN_TZ)
    return t.isoformat()


# --------------------------------------------------------------------------- JSON -> model


def from_json(data: Any) -> Message:
    """The model of a JSON document; raises :class:`JsonFormError` listing every problem."""
    problems = validate(data)
    if problems:
        raise JsonFormError(problems)
    return _edoc_in(data) if data["kind"] == "edoc" else _status_in(data)


def loads(text: str | bytes) -> Message:
    """The model of a JSON text; malformed JSON is a :class:`JsonFormError` too."""
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise JsonFormError([Problem(f"not valid JSON: {exc}", path="(root)", code="json-syntax")]) from exc
    return from_json(data)


def _edoc_in(d: dict[str, Any]) -> Edoc:
    code = d["code"]
    promulgation = d["promulgation"]
    doc_type = d["document_type"]
    signer = d.get("signer_info") or {}
    return Edoc(
        from_=_organization_in(d["from"]),
        to=[_organization_in(o) for o in d["to"]],
        document_id=_text(d, "document_id"),
        code=Code(number=_text(code, "number"), notation=_text(code, "notation")),
        promulgation=PromulgationInfo(
            place=_text(promulgation, "place"), date=_date_in(promulgation.get("date"))
        ),
        document_type=DocumentType(
            type=_text(doc_type, "type"),
            type_detail=_text(doc_type, "type_detail"),
            type_name=_text(doc_type, "name"),
        ),
        subject=_text(d, "subject"),
        content=_text(d, "content"),
        signer_info=SignerInfo(
            competence=_text(signer, "competence"),
            position=_text(signer, "position"),
            full_name=_text(signer, "full_name"),
        ),
        due_date=_date_in(d.get("due_date")),
        other_info=_other_info_in(d.get("other_info") or {}),
        steering_type=_int(d, "steering_type"),
        to_places=list(d.get("to_places", [])),
        response_for=[_response_for_in(r) for r in d.get("response_for", [])],
        trace_headers=[
            TraceHeader(organ_id=_text(t, "organ_id"), timestamp=_timestamp_in(t.get("timestamp")))
            for t in d.get("trace_headers", [])
        ],
        business=_business_in(d.get("business")),
        manifest=[_manifest_in(m) for m in d.get("manifest", [])],
        attachments=[_attachment_in(a) for a in d.get("attachments", [])],
        unknown=_unknown_in(d.get("unknown_elements", [])),
    )


def _status_in(d: dict[str, Any]) -> Status:
    return Status(
        from_=_organization_in(d["from"]),
        response_for=[_response_for_in(r) for r in d["response_for"]],
        staff_info=_staff_in(d.get("staff_info")),
        status_code=d["status_code"],
        description=_text(d, "description"),
        timestamp=_timestamp_in(d.get("timestamp")),
        unknown=_unknown_in(d.get("unknown_elements", [])),
    )


def _text(d: dict[str, Any], key: str) -> str | None:
    """An optional text value: missing, null and "" all mean absent (the model's None)."""
    value = d.get(key)
    return value if value else None


def _int(d: dict[str, Any], key: str) -> int | None:
    """An optional integer; JSON Schema counts 1.0 as an integer, the model wants int 1."""
    value = d.get(key)
    return None if value is None else int(value)


def _organization_in(d: dict[str, Any]) -> Organization:
    return Organization(
        organ_id=_text(d, "organ_id"),
        organization_in_charge=_text(d, "organization_in_charge"),
        organ_name=_text(d, "organ_name"),
        organ_add=_text(d, "organ_add"),
        email=_text(d, "email"),
        telephone=_text(d, "telephone"),
        fax=_text(d, "fax"),
        website=_text(d, "website"),
    )


def _other_info_in(d: dict[str, Any]) -> OtherInfo:
    return OtherInfo(
        priority=_int(d, "priority"),
        sphere_of_promulgation=_text(d, "sphere_of_promulgation"),
        typer_notation=_text(d, "typer_notation"),
        promulgation_amount=_int(d, "promulgation_amount"),
        page_amount=_int(d, "page_amount"),
        direction=d.get("direction"),
        appendixes=list(d.get("appendixes", [])),
    )


def _response_for_in(d: dict[str, Any]) -> ResponseFor:
    return ResponseFor(
        organ_id=_text(d, "organ_id"),
        code=_text(d, "code"),
        promulgation_date=_date_in(d.get("promulgation_date")),
        document_id=_text(d, "document_id"),
    )


def _staff_in(d: dict[str, Any] | None) -> StaffInfo | None:
    if d is None:
        return None
    return StaffInfo(
        department=_text(d, "department"),
        staff=_text(d, "staff"),
        email=_text(d, "email"),
        mobile=_text(d, "mobile"),
    )


def _business_in(d: dict[str, Any] | None) -> Business | None:
    if d is None:
        return None
    info = d.get("business_document_info")
    return Business(
        document_id=_text(d, "document_id"),
        business_doc_type=_int(d, "business_doc_type"),
        business_doc_reason=_text(d, "business_doc_reason"),
        paper=_int(d, "paper"),
        business_document_info=None
        if info is None
        else BusinessDocumentInfo(
            document_info=_int(info, "document_info"),
            document_receiver=_int(info, "document_receiver"),
            receivers=[
                Receiver(organ_id=_text(r, "organ_id"), receiver_type=_int(r, "receiver_type"))
                for r in info.get("receivers", [])
            ],
        ),
        replacement_info=[
            ReplacementInfo(document_id=_text(r, "document_id"), organ_ids=list(r.get("organ_ids", [])))
            for r in d.get("replacement_info", [])
        ],
        staff_info=_staff_in(d.get("staff_info")),
    )


def _manifest_in(d: dict[str, Any]) -> ManifestReference:
    return ManifestReference(
        content_id=d["content_id"],
        attachment_name=_text(d, "attachment_name"),
        content_type=_text(d, "content_type"),
        description=_text(d, "description"),
        href=_text(d, "href"),
    )


def _attachment_in(d: dict[str, Any]) -> Attachment:
    return Attachment(
        content_id=d["content_id"],
        name=d["name"],
        content_type=d["content_type"],
        description=_text(d, "description"),
        packaging=d.get("packaging", "plain"),
        size=int(d["size"]),
        sha256=d["sha256"],
    )


def _unknown_in(items: list[dict[str, Any]]) -> list[UnknownElement]:
    return [UnknownElement(path=u["path"], line=_int(u, "line"), xml=u["xml"]) for u in items]


def _date_in(value: str | None) -> date | None:
    return None if not value else date.fromisoformat(value)


def _timestamp_in(value: str | None) -> datetime | None:
    """Vietnam time: a naive value is taken as Vietnam time, another offset is converted."""
    if not value:
        return None
    t = datetime.fromisoformat(value)
    return t.replace(tzinfo=VN_TZ) if t.tzinfo is None else t.astimezone(VN_TZ)
