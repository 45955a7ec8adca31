"""RFC 3161 time-stamps from a real TSA on loopback (openssl ts), their verification, and
failing closed when the TSA stays down."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import socket

import pytest
import sqlalchemy as sa

from connector.audit import AuditEvent, AuditLog, AuditUnavailable, TsaClient, TsaError
from connector.audit.tables import audit_batches
from connector.audit.tsa import token_info, verify_token
from connector.audit.verify import verify_log
from tests.audit.helpers import FakeClock, fill


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"


def test_a_stamp_from_the_tsa_verifies_against_its_ca(tsa_server, audit_pki):
    client = TsaClient(tsa_server.url, 10, audit_pki.tsa_ca)
    data = b"batch signature bytes"
    token = client.stamp(data)
    info = verify_token(token, data, audit_pki.tsa_ca)
    assert info.tsa_subject == audit_pki.tsa.certificate.subject.rfc4514_string()
    assert info.imprint == hashlib.sha256(data).digest()
    assert abs(info.gen_time - dt.datetime.now(dt.UTC)) < dt.timedelta(hours=1)
    with pytest.raises(TsaError, match="does not verify: Mismatch between messages"):
        verify_token(token, b"other bytes", audit_pki.tsa_ca)
    with pytest.raises(TsaError, match="does not verify"):
        verify_token(token, data, [audit_pki.pki.tls_server.certificate])


def test_the_ca_bundle_can_be_a_pem_file(tsa_server, audit_pki):
    client = TsaClient(tsa_server.url, 10, audit_pki.pki.chain_path)
    assert len(client.ca_certs) == 2 and client.stamp(b"x")


@pytest.mark.parametrize(("mode", "message"), [
    ("error", "answered HTTP 500"),
    ("drop", "cannot reach it"),
    ("garbage", "the answer is not a time-stamp response"),
    ("rogue", "the time-stamp does not verify"),
])
def test_tsa_failures_are_named(tsa_server, audit_pki, mode, message):
    tsa_server.app.mode = mode
    with pytest.raises(TsaError, match=message) as caught:
        TsaClient(tsa_server.url, 10, audit_pki.tsa_ca).stamp(b"data")
    assert tsa_server.url in str(caught.value)


def test_an_unreachable_tsa_is_named(audit_pki):
    url = closed_port_url()
    with pytest.raises(TsaError, match=f"TSA {url}: cannot reach it"):
        TsaClient(url, 5, audit_pki.tsa_ca).stamp(b"data")


def test_bad_configuration_is_named(tmp_path):
    with pytest.raises(TsaError, match="must start with http"):
        TsaClient("ftp://tsa.example/", 5, [])
    with pytest.raises(TsaError, match=f"TSA CA certificates {tmp_path / 'none.pem'}: cannot be read"):
        TsaClient("http://tsa.example/", 5, tmp_path / "none.pem")
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TsaError, match="no readable certificate"):
        TsaClient("http://tsa.example/", 5, tmp_path / "junk.pem")


def test_without_ca_certificates_the_answer_is_still_checked_and_a_warning_given(tsa_server, caplog):
    with caplog.at_level(logging.WARNING, logger="connector.audit"):
        client = TsaClient(tsa_server.url)
    assert "not checked against a CA" in caplog.text
    token = client.stamp(b"data")
    assert token_info(token).imprint == hashlib.sha256(b"data").digest()


def test_sealing_time_stamps_the_batch_signature(make_env, tsa_server, audit_pki):
    env = make_env(tsa=True)
    fill(env, 3)
    batch = env.log.seal()
    assert batch.timestamp_token is not None
    assert verify_token(batch.timestamp_token, batch.signature, audit_pki.tsa_ca)
    report = verify_log(env.engine, env.evidence, tsa_ca=audit_pki.tsa_ca, require_timestamps=True)
    assert report.ok and report.timestamps_checked == 1
    unchecked = verify_log(env.engine, env.evidence)
    assert unchecked.ok and unchecked.timestamps_unchecked == 1
    assert any("NOT verified" in n for n in unchecked.notes)


def test_an_altered_time_stamp_is_located(make_env, tsa_server, audit_pki):
    env = make_env(tsa=True)
    fill(env, 3)
    batch = env.log.seal()
    token = bytearray(batch.timestamp_token)
    token[-40] ^= 0x01  # inside the TSA's signature value
    with env.engine.begin() as conn:
        conn.execute(audit_batches.update().values(timestamp_token=bytes(token)))
    report = verify_log(env.engine, env.evidence, tsa_ca=audit_pki.tsa_ca)
    assert [str(p) for p in report.problems] == [
        "database (audit_batches id 1): batch 1 (seq 1..3): time-stamp: the time-stamp does not verify: "
        + str(report.problems[0]).split("does not verify: ", 1)[1]]


def test_a_time_stamp_moved_to_another_batch_is_located(make_env, tsa_server, audit_pki):
    env = make_env(tsa=True)
    fill(env, 2)
    first = env.log.seal()
    fill(env, 2, start=2)
    env.log.seal()
    with env.engine.begin() as conn:
        conn.execute(audit_batches.update().where(audit_batches.c.id == 2).values(timestamp_token=first.timestamp_token))
    found = [str(p) for p in verify_log(env.engine, env.evidence).problems]
    assert found == [("database (audit_batches id 2): batch 2 (seq 3..4): time-stamp: the time-stamp covers other "
                     "bytes than the batch signature")]
    assert not verify_log(env.engine, env.evidence, tsa_ca=audit_pki.tsa_ca).ok


def test_a_missing_time_stamp_fails_only_when_required(make_env, tsa_server, audit_pki):
    env = make_env(tsa=True)
    tsa_server.app.mode = "error"
    fill(env, 2)
    env.log.seal()
    assert verify_log(env.engine, env.evidence).ok
    report = verify_log(env.engine, env.evidence, require_timestamps=True)
    assert [str(p) for p in report.problems] == ["database (audit_batches id 1): batch 1 (seq 1..2): no time-stamp"]


def test_tsa_down_longer_than_allowed_fails_closed_then_recovers(make_env, tsa_server, audit_pki):
    clock = FakeClock()
    env = make_env(tsa=True, fail_closed_after=dt.timedelta(minutes=10), clock=clock)
    fill(env, 2)
    assert env.log.seal().timestamp_token is not None
    env.log.ensure_can_exchange()

    tsa_server.app.mode = "error"
    fill(env, 2, start=2)
    clock.advance(minutes=1)
    unstamped = env.log.seal()
    assert unstamped.timestamp_token is None
    assert env.log.tsa_failing_since == clock.now
    clock.advance(minutes=9)
    env.log.ensure_can_exchange()  # down for 9 minutes: still within the allowance
    clock.advance(minutes=2)
    with pytest.raises(AuditUnavailable, match=f"time-stamping at {tsa_server.url} has failed since .* longer than "
                                               "the allowed 0:10:00; exchanges are stopped") as stopped:
        env.log.ensure_can_exchange()
    assert "answered HTTP 500" in str(stopped.value)

    # a restarted connector remembers: the oldest batch waiting for a stamp dates the outage
    again = AuditLog(env.engine, env.evidence, actor="connector-1", sealer=env.log.sealer, tsa=env.log.tsa,
                     fail_closed_after=dt.timedelta(minutes=10), clock=clock)
    with pytest.raises(AuditUnavailable):
        again.ensure_can_exchange()

    tsa_server.app.mode = "ok"
    assert env.log.seal() is None  # nothing new to seal, but the pending stamp is fetched
    env.log.ensure_can_exchange()
    assert env.log.tsa_failing_since is None
    with env.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_batches)
                            .where(audit_batches.c.timestamp_token.is_(None))).scalar() == 0
    report = verify_log(env.engine, env.evidence, tsa_ca=audit_pki.tsa_ca, require_timestamps=True)
    assert report.ok and report.timestamps_checked == 2


def test_an_unreachable_tsa_fails_closed_too(make_env, audit_pki):
    clock = FakeClock()
    env = make_env(tsa_url=closed_port_url(), fail_closed_after=dt.timedelta(seconds=30), clock=clock)
    env.log.record(AuditEvent("out.queued", "out", document_id="D"))
    env.log.seal()
    clock.advance(seconds=31)
    with pytest.raises(AuditUnavailable, match="cannot reach it"):
        env.log.ensure_can_exchange()


def test_without_fail_closed_exchanges_go_on(make_env, tsa_server):
    clock = FakeClock()
    env = make_env(tsa=True, clock=clock)
    tsa_server.app.mode = "error"
    fill(env, 1)
    env.log.seal()
    clock.advance(days=30)
    env.log.ensure_can_exchange()
    assert env.log.tsa_failing_since is not None
