"""Audit findings on the engine, end to end through the sandbox: an attachment named
``document.json`` is sent (CLI and folder drop), empty attachments and over-nested JSON are
refused at intake naming the file, and one inbound item the hub will not serve neither blocks
the items behind it nor is skipped silently: it is retried by the retry policy, then recorded
as dead (visible in ``status``, fetched again after ``resend``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.audit.trail import document_trail
from connector.axis.errors import PermanentAxisError
from connector.cli.daemon_commands import resend_cmd, send_cmd, status_cmd
from connector.edxml.jsonform import to_json
from connector.edxml.samples import sample_edoc
from connector.engine.inbox import read_fetch_failures
from connector.engine.outbox import IntakeError
from connector.routing.folder_intake import FolderIntake
from connector.signing.keys import KeyUnavailableError

from .conftest import G22, H16, TokenOut, inbox_docs, rounds, submit_sample

INNER_JSON = b'{"so": 12, "note": "an attachment that happens to be JSON"}'


def _document(side, number: int, folder: Path) -> tuple[dict, Path]:
    """A document JSON (attachments unlisted) and its sample PDF written into ``folder``."""
    doc = sample_edoc(side.site.code, G22, number)
    data = to_json(doc)
    data["attachments"], data["manifest"] = [], []
    pdf = doc.attachments[0]
    folder.mkdir(parents=True, exist_ok=True)
    with pdf.data.open() as src:
        (folder / "real.pdf").write_bytes(src.read())
    return data, folder / "real.pdf"


def _received_files(side) -> dict[str, bytes]:
    (doc,) = inbox_docs(side)
    return {p.name: p.read_bytes() for p in doc.iterdir() if p.name != "metadata.json"}


def _staged_names(side, tracking: str) -> list[str]:
    row = side.store.find_outbound(tracking)
    return sorted(a.name for a in side.engine.outbox.load(row).attachments)


def test_cli_send_keeps_an_attachment_named_document_json(make_side, tmp_path):
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "vxp")
    data, pdf = _document(h16, 31, tmp_path / "cli")
    (tmp_path / "cli" / "document.json").write_bytes(INNER_JSON)
    (tmp_path / "doc.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(send_cmd, ["--config", str(h16.site.config_path), str(tmp_path / "doc.json"),
                                           "--attach", str(pdf), "--attach", str(tmp_path / "cli" / "document.json")])
    assert result.exit_code == 0, result.output
    tracking = result.output.strip().splitlines()[-1]
    assert _staged_names(h16, tracking) == ["document.json", "real.pdf"]
    rounds(h16, g22)
    assert h16.engine.track(tracking)["state"] == "sent"
    files = _received_files(g22)
    assert files["document.json"] == INNER_JSON and files["real.pdf"] == pdf.read_bytes()


def test_folder_drop_keeps_an_attachment_named_document_json(make_side, tmp_path):
    h16, g22 = make_side(H16, "vxp"), make_side(G22, "vxp")
    intake = FolderIntake(tmp_path / "exchange", settle_s=0)
    data, pdf = _document(h16, 32, intake.outbox / "cv-32")
    (intake.outbox / "cv-32" / "metadata.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (intake.outbox / "cv-32" / "document.json").write_bytes(INNER_JSON)
    pdf_bytes = pdf.read_bytes()
    (item,) = intake.claim()
    tracking = h16.engine.submit(item.document, item.files, intake_key=f"folder:{item.drop_id}")
    intake.complete(item, tracking)
    assert _staged_names(h16, tracking) == ["document.json", "real.pdf"]
    rounds(h16, g22)
    files = _received_files(g22)
    assert files["document.json"] == INNER_JSON and files["real.pdf"] == pdf_bytes


def test_empty_attachment_is_refused_at_intake_naming_the_file(make_side, tmp_path):
    h16 = make_side(H16, "vxp")
    data, pdf = _document(h16, 33, tmp_path / "empty")
    empty = tmp_path / "empty" / "phu-luc.pdf"
    empty.write_bytes(b"")
    with pytest.raises(IntakeError) as err:
        h16.engine.submit(data, [pdf, empty])
    assert err.value.problems == [f"attachment file {str(empty)!r}: is empty (0 bytes); the axis refuses empty attachments"]
    (tmp_path / "doc.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(send_cmd, ["--config", str(h16.site.config_path), str(tmp_path / "doc.json"),
                                           "--attach", str(pdf), "--attach", str(empty)])
    assert result.exit_code == 1
    assert "phu-luc.pdf" in result.output and "is empty (0 bytes)" in result.output
    assert h16.store.summary().outbound == {}


def test_cli_send_refuses_deeply_nested_json_naming_the_file(make_side, tmp_path):
    h16 = make_side(H16, "vxp")
    deep = tmp_path / "d.json"
    deep.write_text("[" * 100_000 + "\n", encoding="utf-8")
    result = CliRunner().invoke(send_cmd, ["--config", str(h16.site.config_path), str(deep)])
    assert result.exit_code == 1
    assert f"{deep}: not valid document JSON: nested too deeply" in result.output
    assert "RecursionError" not in result.output and isinstance(result.exception, SystemExit)


class RefusingAxis:
    """The hub binding, except that GetDocument always fails for the ids in ``refused``."""

    def __init__(self, axis, refused: set[str]):
        self.axis = axis
        self.refused = refused
        self.tries: dict[str, int] = {}

    def fetch(self, item_id, dest):
        if item_id in self.refused:
            self.tries[item_id] = self.tries.get(item_id, 0) + 1
            raise PermanentAxisError("the hub cannot read this document's file", code="M.GetDocument", operation="GetDocument")
        return self.axis.fetch(item_id, dest)

    def __getattr__(self, name):
        return getattr(self.axis, name)


def test_one_unfetchable_item_does_not_block_the_others(make_side):
    h16 = make_side(H16, "vxp")
    g22 = make_side(G22, "soap", audit=True)  # g22 reads from the SOAP hub, and keeps the exchange log
    docs = [submit_sample(h16, G22, n)[1] for n in (41, 42, 43)]
    h16.engine.send_due()
    pending = [i.item_id for i in g22.rt.axis.pending("edoc")]
    assert len(pending) == 3
    bad = pending[0]
    axis = RefusingAxis(g22.engine.ctx.axis, {bad})
    g22.engine.ctx.axis = axis

    g22.engine.run_once()  # first round: the two others arrive despite the first failing
    got = sorted(json.loads((p / "metadata.json").read_text(encoding="utf-8"))["document_id"] for p in inbox_docs(g22))
    assert len(got) == 2 and set(got) < set(docs)
    entry = read_fetch_failures(g22.store)[bad]
    assert entry["state"] == "retrying" and entry["attempts"] == 1
    assert "the hub cannot read this document's file" in entry["last_error"]

    rounds(g22, times=3)  # the retry policy (max 3 attempts, no delay in the tests) gives up
    assert axis.tries[bad] == 3
    entry = read_fetch_failures(g22.store)[bad]
    assert entry["state"] == "dead" and entry["reason"].startswith("gave up fetching after 3 attempt(s)")
    (given_up,) = [e for e in document_trail(g22.rt.db, bad) if e.event == "in.fetch_given_up"]
    assert given_up.axis_id == bad and given_up.detail["attempts"] == 3  # in the exchange log, by axis item id
    assert "the hub cannot read this document's file" in given_up.detail["error"]
    g22.engine.run_once()
    assert axis.tries[bad] == 3  # given up: not fetched again each round...
    status = CliRunner().invoke(status_cmd, ["--config", str(g22.site.config_path)])
    assert status.exit_code == 0 and f"edoc {bad} [dead, 3 attempt(s)]: gave up fetching" in status.output
    as_json = json.loads(CliRunner().invoke(status_cmd, ["--config", str(g22.site.config_path), "--json"]).output)
    assert [(f["axis_item"], f["state"]) for f in as_json["inbound_fetch_failures"]] == [(bad, "dead")]

    # ...until the operator asks again, once the hub serves it
    axis.refused.clear()
    resend = CliRunner().invoke(resend_cmd, ["--config", str(g22.site.config_path), bad])
    assert resend.exit_code == 0, resend.output
    assert [e.event for e in document_trail(g22.rt.db, bad)][-1] == "in.fetch_retried"
    rounds(g22, times=2)
    got = sorted(json.loads((p / "metadata.json").read_text(encoding="utf-8"))["document_id"] for p in inbox_docs(g22))
    assert got == sorted(docs)
    assert read_fetch_failures(g22.store) == {}


def test_a_resend_beside_a_poll_round_is_not_undone_by_the_rounds_save(tmp_path):
    """The poller loads the failures at the start of a round and saves at its end; a `resend`
    in between must survive that save (and the round's own changes must too)."""
    from connector.engine.inbox import FetchFailures
    from connector.store.db import migrate, open_database
    from connector.store.repo import Store

    engine = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(engine)
    store = Store(engine)
    setup = FetchFailures.load(store)
    setup.failed("dead-item", "edoc", G22, "the hub refused", 1.0)
    setup.entries["dead-item"]["state"] = "dead"
    setup.save()

    poller = FetchFailures.load(store)  # a round starts
    operator = FetchFailures.load(store)  # `resend dead-item` meanwhile
    operator.forget("dead-item")
    operator.save()
    poller.failed("other-item", "edoc", G22, "timed out", 2.0)  # the round goes on
    poller.save()

    assert sorted(read_fetch_failures(store)) == ["other-item"]
    assert read_fetch_failures(store)["other-item"]["attempts"] == 1
    engine.dispose()


def test_a_key_that_cannot_sign_for_now_keeps_the_document_queued(make_side):
    h16 = make_side(H16, "vxp")
    g22 = make_side(G22, "soap")
    out_id, _ = submit_sample(h16, G22, 51)
    key = h16.engine.ctx.key
    h16.engine.ctx.key = TokenOut(key)
    for _ in range(5):  # more rounds than max_attempts (3): a token that is out never kills a document
        with pytest.raises(KeyUnavailableError):  # the round stops at once (the daemon logs one line)
            h16.engine.send_due()
    row = h16.rt.store.outbound(out_id)
    assert row["state"] != "dead" and row["attempts"] == 0, row
    assert "waiting for the signing key" in row["last_error"] and "token 'edoc' is not present" in row["last_error"]
    h16.engine.ctx.key = key  # the token is back
    rounds(h16, g22)
    assert [json.loads((p / "metadata.json").read_text(encoding="utf-8"))["document_id"] for p in inbox_docs(g22)]
