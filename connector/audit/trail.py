"""A document's life as a readable timeline (both directions), from the log.

Times are shown in Vietnam time (UTC+07:00), as clerks and auditors read them; each event
carries its Vietnamese name beside the code the log stores.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .reader import LogReader
from .standalone import parse_time

VIETNAM = dt.timezone(dt.timedelta(hours=7), "UTC+07:00")

#: Vietnamese names of the events (what clerks call each step).
LABELS: dict[str, str] = {
    "out.queued": "xếp hàng chờ gửi",
    "out.signed": "đã ký số",
    "out.sent": "đã gửi lên trục",
    "out.delivered": "đã đến nơi nhận",
    "out.status_received": "nhận trạng thái xử lý",
    "out.dead": "gửi không thành công",
    "in.received": "đã nhận từ trục",
    "in.verified": "đã kiểm tra chữ ký số",
    "in.routed": "đã chuyển vào hệ thống QLVB",
    "in.acknowledged": "đã xác nhận với trục",
    "in.rejected": "đã từ chối",
    "in.status_sent": "đã gửi trạng thái xử lý",
    "in.fetch_given_up": "không tải được từ trục, đã dừng thử lại",
    "in.fetch_retried": "tải lại từ trục theo yêu cầu",
    "audit.archived": "lưu trữ nhật ký",
}


@dataclass(frozen=True)
class TrailEntry:
    seq: int
    at: dt.datetime  # UTC
    event: str
    direction: str
    document_id: str | None
    tracking_id: str | None
    axis_id: str | None
    actor: str
    sha256: str | None
    detail: dict[str, Any] | None
    batch: int | None  # the batch that seals it; None: not sealed yet
    stamped: bool

    @property
    def label(self) -> str:
        return LABELS.get(self.event, "")


def document_trail(engine: sa.Engine, document_id: str, archive_dir: Path | None = None) -> list[TrailEntry]:
    """The entries about ``document_id`` (its document id or tracking id), oldest first."""
    reader = LogReader(engine, archive_dir)
    found = [fields for fields, _ in reader.find(document_id)]
    if not found:
        return []
    batches = [b for b, _ in reader.batches(found[0]["seq"], found[-1]["seq"])]
    out = []
    for f in found:
        batch = next((b for b in batches if b.first_seq <= f["seq"] <= b.last_seq), None)
        try:
            detail = json.loads(f["detail"]) if f["detail"] else None
        except ValueError:
            detail = {"unreadable": f["detail"]}
        out.append(TrailEntry(f["seq"], parse_time(f["at"]), f["event"], f["direction"], f["document_id"],
                              f["tracking_id"], f["axis_id"], f["actor"], f["sha256"], detail,
                              batch.id if batch else None, bool(batch and batch.timestamp_token)))
    return out


def format_trail(document_id: str, entries: list[TrailEntry]) -> list[str]:
    """Lines for people: one per step, details indented beneath."""
    lines = [(f"Document {document_id}: {len(entries)} step(s) in the exchange log "
             f"(times in Vietnam time, UTC+07:00)"), ""]
    for e in entries:
        arrow = {"out": "OUT ->", "in": "IN  <-"}.get(e.direction, "LOG   ")
        when = e.at.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S")
        label = f"  ({e.label})" if e.label else ""
        lines.append(f"{when}  {arrow}  {e.event}{label}")
        facts = []
        if e.tracking_id and e.tracking_id != document_id:
            facts.append(f"tracking {e.tracking_id}")
        if e.document_id and e.document_id != document_id:
            facts.append(f"document {e.document_id}")
        if e.axis_id:
            facts.append(f"axis id {e.axis_id}")
        if e.sha256:
            facts.append(f"sha256 {e.sha256}")
        facts.append(f"by {e.actor}")
        seal = (f"sealed in batch {e.batch}" + (", time-stamped" if e.stamped else "")) if e.batch else "not sealed yet"
        facts.append(f"seq {e.seq}, {seal}")
        lines.append("      " + "; ".join(facts))
        if e.detail:
            lines.append("      " + json.dumps(e.detail, ensure_ascii=False, sort_keys=True))
    return lines
