"""Status reports from the DMS: business progress on a document we received.

The DMS says, in a small JSON object (a file in the status folder, or POST /statuses)::

    {
      "document_id": "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT",   the received document's DocumentId
      "to": "000.00.00.G22",                                      the original sender's agency code
      "status_code": "03",          01-06, 13, 15, 16 (QCVN 102:2016; 02 is a rejection)
      "description": "Đã tiếp nhận",  required for 02 (the reason); default: the code's name
      "staff": {"name": "...", "department": "...", "email": "...", "mobile": "..."}   optional
    }

and the engine turns it into a status edXML to the original sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.edxml.model import STATUS_CODES

from .intake_checks import IntakeRejected

__all__ = ["REPORT_KEYS", "STAFF_KEYS", "StaffContact", "StatusReport", "parse_status_report"]

REPORT_KEYS = ("document_id", "to", "status_code", "description", "staff")
STAFF_KEYS = ("name", "department", "email", "mobile")


@dataclass(frozen=True)
class StaffContact:
    """The officer who set the status (edXML StaffInfo)."""

    name: str | None = None
    department: str | None = None
    email: str | None = None
    mobile: str | None = None


@dataclass(frozen=True)
class StatusReport:
    """One status the DMS reports; ``report_id`` is stable for a folder report (the
    idempotency key), empty for one posted over HTTP; ``source`` its claimed file, if any."""

    document_id: str
    to: str
    status_code: str
    description: str
    staff: StaffContact | None = None
    report_id: str = ""
    source: Path | None = None


def parse_status_report(data: Any, *, source: str = "status", report_id: str = "",
                        path: Path | None = None) -> StatusReport:
    """Validate ``data`` (parsed JSON) into a :class:`StatusReport`; raise
    :class:`IntakeRejected` listing every problem (``source: field: what was expected``)."""
    if not isinstance(data, dict):
        raise IntakeRejected([f"{source}: expected a JSON object {{...}} at the top level"])
    problems: list[str] = []
    for key in data:
        if key not in REPORT_KEYS:
            problems.append(f"{source}: {key}: unknown key (expected: {', '.join(REPORT_KEYS)})")
    document_id = _text(data, "document_id", source, problems, required=True,
                        hint="the DocumentId of the received document")
    to = _text(data, "to", source, problems, required=True, hint="the original sender's agency code, e.g. 000.00.00.G22")
    if to and any(c.isspace() for c in to):
        problems.append(f"{source}: to: an agency code has no spaces, got {to!r}")
    code = data.get("status_code")
    codes = ", ".join(STATUS_CODES)
    if "status_code" not in data:
        problems.append(f"{source}: status_code: required key missing (one of {codes})")
    elif isinstance(code, int) and not isinstance(code, bool):
        problems.append(f"{source}: status_code: expected a string such as \"{code:02d}\", got number {code}")
    elif not isinstance(code, str) or code not in STATUS_CODES:
        problems.append(f"{source}: status_code: expected one of {codes}, got {code!r}")
    description = _text(data, "description", source, problems, required=False, hint="")
    if code == "02" and not description:
        problems.append(f"{source}: description: a rejection (02) must give its reason")
    staff = _staff(data.get("staff"), source, problems)
    if problems:
        raise IntakeRejected(problems)
    return StatusReport(
        document_id=document_id or "",
        to=to or "",
        status_code=code,
        description=description or STATUS_CODES[code],
        staff=staff,
        report_id=report_id,
        source=path,
    )


def _text(data: dict, key: str, source: str, problems: list[str], *, required: bool, hint: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            problems.append(f"{source}: {key}: required, {hint}")
        return None
    if not isinstance(value, str):
        problems.append(f"{source}: {key}: expected a string, got {type(value).__name__} {value!r}")
        return None
    return value.strip() or None


def _staff(value: Any, source: str, problems: list[str]) -> StaffContact | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(f"{source}: staff: expected an object with {', '.join(STAFF_KEYS)}")
        return None
    fields: dict[str, str | None] = {}
    for key, item in value.items():
        if key not in STAFF_KEYS:
            problems.append(f"{source}: staff.{key}: unknown key (expected: {', '.join(STAFF_KEYS)})")
        elif item is not None and not isinstance(item, str):
            problems.append(f"{source}: staff.{key}: expected a string, got {type(item).__name__} {item!r}")
        else:
            fields[key] = item or None
    return StaffContact(**fields)
