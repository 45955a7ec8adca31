"""The provincial hub's forwarding failure (status 999 "Gui that bai"), end to end through the
sandbox: a document sent through the hub to an agency it cannot forward to never reaches that
agency, and the sender's operator sees it (``status``, ``track``, a warning in the log) named
"Gửi thất bại", while a recipient the hub can reach gets the same document as usual."""

from __future__ import annotations

import json
import logging

import requests
from click.testing import CliRunner

from connector.cli.daemon_commands import resend_cmd, status_cmd

from .conftest import G22, H16, inbox_docs, rounds, submit_sample


def set_faults(sandbox, **settings) -> dict:
    r = requests.post(f"{sandbox.url}/admin/faults", json=settings,
                      headers={"Authorization": f"Bearer {sandbox.admin_token}"}, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_document_the_hub_cannot_forward_is_reported_not_delivered(make_side, sandbox, caplog):
    assert set_faults(sandbox, forward_fail=[G22])["forward_fail"] == [G22]
    h16 = make_side(H16, "soap")  # sends through the provincial hub
    g22 = make_side(G22, "vxp")
    tracking, document_id = submit_sample(h16, G22, 71)
    with caplog.at_level(logging.WARNING, logger="connector"):
        rounds(h16, g22)

    assert inbox_docs(g22) == []  # never forwarded: the recipient has nothing
    (recipient,) = h16.engine.track(tracking)["recipients"]
    assert (recipient["agency"], recipient["state"], recipient["status_code"]) == (G22, "status-999", "999")
    assert recipient["status_name"] == "Gửi thất bại (provincial hub: forwarding to the national axis failed)"
    assert any("NOT DELIVERED to " + G22 in r.getMessage() and "999 Gửi thất bại" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]

    config = str(h16.site.config_path)
    shown = CliRunner().invoke(status_cmd, ["--config", config])
    assert shown.exit_code == 0, shown.output
    assert f"{tracking} {document_id} -> {G22}: 999 Gửi thất bại (provincial hub: forwarding" in shown.output
    (entry,) = json.loads(CliRunner().invoke(status_cmd, ["--config", config, "--json"]).output)["not_delivered"]
    assert (entry["tracking_id"], entry["recipient"], entry["status_code"], entry["description"]) == (
        tracking, G22, "999", "Gui that bai")


def test_without_the_fault_the_same_exchange_is_delivered(make_side, sandbox):
    assert set_faults(sandbox, forward_fail=[])["forward_fail"] == []
    h16, g22 = make_side(H16, "soap"), make_side(G22, "vxp")
    tracking, _ = submit_sample(h16, G22, 72)
    rounds(h16, g22)
    assert len(inbox_docs(g22)) == 1
    (recipient,) = h16.engine.track(tracking)["recipients"]
    assert (recipient["state"], recipient["status_code"], recipient["status_name"]) == ("delivered", "01", "Đã đến")
    assert json.loads(CliRunner().invoke(status_cmd, ["--config", str(h16.site.config_path), "--json"]).output)[
        "not_delivered"] == []


def test_forward_fail_must_be_a_list_of_codes(sandbox):
    r = requests.post(f"{sandbox.url}/admin/faults", json={"forward_fail": G22},
                      headers={"Authorization": f"Bearer {sandbox.admin_token}"}, timeout=5)
    assert r.status_code == 400 and "forward_fail must be a list of agency codes" in r.text


def test_resend_of_a_document_the_hub_could_not_forward_says_why_and_what_to_do(make_side, sandbox):
    """The hub keeps the DocumentId of what it took: ``resend`` cannot send the same document
    again (M.Exist), and says so, naming the recipient it never reached and the way out."""
    assert set_faults(sandbox, forward_fail=[G22])["forward_fail"] == [G22]
    h16, g22 = make_side(H16, "soap"), make_side(G22, "vxp")
    tracking, _ = submit_sample(h16, G22, 73)
    rounds(h16, g22)
    result = CliRunner().invoke(resend_cmd, ["--config", str(h16.site.config_path), tracking])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"{tracking}: the document was sent (axis id {h16.engine.track(tracking)['axis_id']}): the axis holds its "
        "DocumentId, and the same document sent again is refused as a duplicate (the hub answers M.Exist). Not "
        f"delivered to {G22}: 999 Gửi thất bại (provincial hub: forwarding to the national axis failed). Send it "
        "again from the document software as a new document (a new number), or ask the provincial hub to forward it")
    unknown = CliRunner().invoke(resend_cmd, ["--config", str(h16.site.config_path), "out-nope"])
    assert (unknown.exit_code, unknown.output.strip()) == (1, "out-nope: no dead or cancelled document with this id")
