"""The daemon's operations plumbing: /healthz and /metrics on a real loopback server, health
checks (certificate expiry, last poll, failing dependencies), and the log setup (JSON and
console lines with document ids, secrets redacted)."""

from __future__ import annotations

import io
import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from connector.daemon.health import (
    CheckResult,
    Health,
    HealthCheck,
    callable_check,
    certificate_expiry_check,
    last_poll_check,
)
from connector.daemon.logs import document_context, setup_logging
from connector.daemon.metrics import Metrics, QueueSample
from connector.daemon.ops_http import ops_app, start_ops_server

NOW = datetime.now(timezone.utc)


def make_cert(not_before: datetime, not_after: datetime, cn: str = "UBND tỉnh Đắk Nông") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


@pytest.fixture
def serve():
    """Start ops_app(health, metrics) on a free loopback port; stopped after the test."""
    servers = []

    def start(health: Health, metrics: Metrics | None = None):
        server = start_ops_server(ops_app(health, metrics or Metrics()), port=0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# --------------------------------------------------------------------------- /healthz


def test_healthz_all_ok_is_200_with_each_check(serve):
    health = Health([callable_check("database", lambda: None), callable_check("axis", lambda: "hub answered")])
    server = serve(health)
    r = requests.get(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True, "detail": "ok", "data": {}}
    assert body["checks"]["axis"]["detail"] == "hub answered"


def test_healthz_failing_check_is_503_with_its_detail_and_no_password(serve):
    def database():
        raise ConnectionError("could not connect to postgresql://connector:S3cretPw@db.local/edoc")

    health = Health([callable_check("database", database), callable_check("axis", lambda: None)])
    r = requests.get(f"{serve(health).url}/healthz", timeout=5)
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "failing"
    assert body["checks"]["axis"]["ok"] is True
    database_result = body["checks"]["database"]
    assert database_result["ok"] is False
    assert database_result["detail"].startswith("ConnectionError: could not connect to postgresql://connector:***@db.local")
    assert "S3cretPw" not in r.text


def test_a_raising_or_hung_check_fails_instead_of_breaking_the_probe(serve):
    release = threading.Event()

    def broken() -> CheckResult:
        raise RuntimeError("sampler bug")

    health = Health(
        [HealthCheck("broken", broken), HealthCheck("hung", lambda: release.wait(30) and CheckResult(True))],
        timeout=0.2,
    )
    try:
        r = requests.get(f"{serve(health).url}/healthz", timeout=10)
    finally:
        release.set()
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["broken"]["detail"] == "check raised RuntimeError: sampler bug"
    assert checks["hung"] == {"ok": False, "detail": "no answer within 0.2 s", "data": {}}


def test_certificate_expiry(serve):
    valid = make_cert(NOW - timedelta(days=10), NOW + timedelta(days=365))
    soon = make_cert(NOW - timedelta(days=300), NOW + timedelta(days=10), cn="Văn phòng Chính phủ")
    expired = make_cert(NOW - timedelta(days=400), NOW - timedelta(days=2))

    r = requests.get(f"{serve(Health([certificate_expiry_check(valid, name='signing')])).url}/healthz", timeout=5)
    assert r.status_code == 200
    signing = r.json()["checks"]["signing"]
    assert signing["ok"] is True and "warning" not in signing["data"]
    assert signing["data"]["days_left"] in (364, 365)

    r = requests.get(f"{serve(Health([certificate_expiry_check(soon, warn_days=30)])).url}/healthz", timeout=5)
    assert r.status_code == 200
    assert r.json()["status"] == "degraded"
    cert = r.json()["checks"]["certificate"]
    assert cert["ok"] is True and cert["data"]["warning"] is True
    assert "CN=Văn phòng Chính phủ expires on" in cert["detail"] and "renew it" in cert["detail"]

    r = requests.get(
        f"{serve(Health([certificate_expiry_check(valid), certificate_expiry_check(expired, name='tls')])).url}/healthz",
        timeout=5,
    )
    assert r.status_code == 503
    tls = r.json()["checks"]["tls"]
    assert tls["ok"] is False
    assert tls["detail"].startswith("certificate CN=UBND tỉnh Đắk Nông expired on")
    assert tls["data"]["days_left"] < 0


def test_certificate_not_yet_valid_fails():
    future = make_cert(NOW + timedelta(days=1), NOW + timedelta(days=100))
    result = Health([certificate_expiry_check(future)]).run()
    assert result.status_code == 503
    assert "is not valid before" in result.results["certificate"].detail


def test_last_poll_check():
    recent = last_poll_check(lambda: NOW - timedelta(seconds=30), timedelta(minutes=5), clock=lambda: NOW)
    stale = last_poll_check(lambda: NOW - timedelta(minutes=20), timedelta(minutes=5), name="stale", clock=lambda: NOW)
    never = last_poll_check(lambda: None, timedelta(minutes=5), name="never")
    report = Health([recent, stale, never]).run()
    assert report.results["last_poll"] == CheckResult(
        True,
        "last successful poll 30 s ago",
        {"last_good": (NOW - timedelta(seconds=30)).isoformat(), "age_seconds": 30.0, "max_age_seconds": 300.0},
    )
    assert report.results["stale"].ok is False
    assert report.results["stale"].detail == "last successful poll 1200 s ago (limit 300 s)"
    assert report.results["never"] == CheckResult(False, "no successful poll yet", {"max_age_seconds": 300.0})
    assert report.status_code == 503


def test_duplicate_check_name_is_refused():
    health = Health([callable_check("database", lambda: None)])
    with pytest.raises(ValueError, match="'database' is already registered"):
        health.register(callable_check("database", lambda: None))


# --------------------------------------------------------------------------- /metrics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_expose_counters_gauges_and_histograms(serve):
    metrics = Metrics()
    metrics.document_sent(latency_seconds=0.3)
    metrics.document_sent(latency_seconds=4.0)
    metrics.document_received(latency_seconds=1.5)
    metrics.document_failed("outbound")
    metrics.document_retried("outbound")
    metrics.document_dead("inbound")
    metrics.set_queue_sampler(lambda: QueueSample({"queued": 3, "failed-retrying": 1}, oldest_pending_age=42.5))

    r = requests.get(f"{serve(Health(), metrics).url}/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    got = samples(r.text)
    assert got[("documents_sent_total", ())] == 2
    assert got[("documents_received_total", ())] == 1
    assert got[("documents_failed_total", (("direction", "outbound"),))] == 1
    assert got[("documents_failed_total", (("direction", "inbound"),))] == 0
    assert got[("documents_retried_total", (("direction", "outbound"),))] == 1
    assert got[("documents_dead_total", (("direction", "inbound"),))] == 1
    assert got[("queue_depth", (("state", "queued"),))] == 3
    assert got[("queue_depth", (("state", "failed-retrying"),))] == 1
    assert got[("oldest_pending_age_seconds", ())] == 42.5
    assert got[("send_latency_seconds_count", ())] == 2
    assert got[("send_latency_seconds_sum", ())] == pytest.approx(4.3)
    assert got[("send_latency_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("receive_latency_seconds_count", ())] == 1


def test_two_metrics_instances_are_independent_and_a_failing_sampler_keeps_the_scrape(serve):
    first, second = Metrics(), Metrics()
    first.document_sent()

    def sampler() -> QueueSample:
        raise OSError("database is locked")

    second.set_queue_sampler(sampler)
    r = requests.get(f"{serve(Health(), second).url}/metrics", timeout=5)
    assert r.status_code == 200
    got = samples(r.text)
    assert got[("documents_sent_total", ())] == 0
    assert not any(name in ("queue_depth", "oldest_pending_age_seconds") for name, _ in got)
    assert samples(first.render()[0].decode())[("documents_sent_total", ())] == 1
    with pytest.raises(ValueError, match="'sideways'"):
        first.document_failed("sideways")


def test_unknown_path_is_404_and_other_methods_405(serve):
    server = serve(Health())
    assert requests.get(f"{server.url}/", timeout=5).status_code == 404
    assert requests.get(f"{server.url}/admin", timeout=5).status_code == 404
    r = requests.post(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = requests.head(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 200 and r.content == b""


def test_a_taken_port_is_a_clear_error(serve):
    server = serve(Health())
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{server.port} for health and metrics"):
        start_ops_server(ops_app(Health(), Metrics()), port=server.port)


# --------------------------------------------------------------------------- logs

PEM_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    .decode()
)


@pytest.fixture
def log_stream():
    """setup_logging's handler writes to a StringIO; root logger restored afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handlers: list[logging.Handler] = []

    def setup(fmt: str, level: str = "DEBUG") -> io.StringIO:
        handlers.append(setup_logging(fmt, level, stream=stream))
        return stream

    yield setup
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_json_lines_carry_ids_and_redact_secrets(log_stream):
    stream = log_stream("json")
    log = logging.getLogger("connector.engine.test")
    with document_context(document_id="doc-1", tracking_id="trk-9"):
        log.info("signed %s", "công văn 12/UBND", extra={"passphrase": "hunter2", "recipient": "000.00.00.G22"})
        with document_context(axis_id="axis-77"):
            log.warning("loaded key %s", PEM_KEY.strip())
        try:
            raise ValueError(f"bad key material:\n{PEM_KEY}")
        except ValueError:
            log.exception("signing failed for hmac_secret=abc123")
    log.info("no document %(token)s", {"token": "t0ps3cret"})

    text = stream.getvalue()
    assert "hunter2" not in text and "PRIVATE KEY" not in text and "abc123" not in text and "t0ps3cret" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 4

    first = lines[0]
    assert first["level"] == "INFO" and first["logger"] == "connector.engine.test"
    assert first["message"] == "signed công văn 12/UBND"
    assert first["document_id"] == "doc-1" and first["tracking_id"] == "trk-9" and "axis_id" not in first
    assert first["passphrase"] == "***" and first["recipient"] == "000.00.00.G22"
    assert datetime.fromisoformat(first["time"]).utcoffset() == timedelta(0)
    assert first["time"].endswith("Z")

    assert lines[1]["message"] == "loaded key ***"
    assert (lines[1]["document_id"], lines[1]["axis_id"]) == ("doc-1", "axis-77")

    assert lines[2]["level"] == "ERROR" and lines[2]["message"] == "signing failed for hmac_secret=***"
    assert "ValueError: bad key material:\n***" in lines[2]["exception"]
    assert "axis_id" not in lines[2]  # the inner context ended

    assert lines[3]["message"] == "no document ***"
    assert not any(k in lines[3] for k in ("document_id", "tracking_id", "axis_id"))


def test_console_lines_have_an_id_suffix(log_stream):
    stream = log_stream("console", "INFO")
    log = logging.getLogger("connector.engine.test")
    with document_context(document_id="doc-2", axis_id="ax-5"):
        log.info("sent to the hub with Authorization: Bearer eyJhbGciOi.x.y")
    log.debug("not shown at INFO")
    log.info("idle")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" INFO connector.engine.test: sent to the hub with Authorization: Bearer *** [doc=doc-2 axis=ax-5]")
    assert lines[1].endswith(" INFO connector.engine.test: idle")


def test_setup_logging_replaces_its_handler_and_names_bad_values(log_stream):
    log_stream("console")
    log_stream("json")
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_ConnectorHandler"]
    assert len(ours) == 1
    with pytest.raises(ValueError, match="log format must be 'json' or 'console', not 'xml'"):
        setup_logging("xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level must be one of .* not 'LOUD'"):
        setup_logging("json", "LOUD")
