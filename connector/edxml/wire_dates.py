"""Dates and times in the form QCVN 102:2016 writes them: ``yyyy/MM/dd`` and
``yyyy/MM/dd HH:mm:ss`` (Vietnam time), in ASCII digits.

One definition for the validator (a value in this form is one it has nothing to say about)
and the parser's fast path (which reads such a value and leaves any other to the careful
path). Decided without regular expressions: it is the common case on every document.
"""

from __future__ import annotations

from datetime import date, datetime

from .model import VN_TZ


def standard_date(value: str) -> date | None:
    """The date ``value`` names when it is a real date written ``yyyy/MM/dd``, else None."""
    if len(value) != 10 or value[4] != "/" or value[7] != "/" or not value.isascii():
        return None
    year, month, day = value[:4], value[5:7], value[8:]
    if not (year.isdigit() and month.isdigit() and day.isdigit()):
        return None
    try:
        return date(int(year), int(month), int(day))
    except ValueError:  # no 30 February
        return None


def standard_timestamp(value: str) -> datetime | None:
    """The moment ``value`` names, in Vietnam time, when it is a real time written
    ``yyyy/MM/dd HH:mm:ss``, else None."""
    if len(value) != 19 or value[10] != " " or value[13] != ":" or value[16] != ":":
        return None
    day = standard_date(value[:10])
    if day is None:
        return None
    hour, minute, second = value[11:13], value[14:16], value[17:]
    if not (hour.isascii() and minute.isascii() and second.isascii()):
        return None
    if not (hour.isdigit() and minute.isdigit() and second.isdigit()):
        return None
    try:  # no hour 24, no minute or second 60
        return datetime(day.year, day.month, day.day, int(hour), int(minute), int(second), tzinfo=VN_TZ)
    except ValueError:
        return None


__all__ = ["standard_date", "standard_timestamp"]
