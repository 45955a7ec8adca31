"""The ``audit`` commands: verify, trail, export, verify-bundle; exit codes and messages."""

from __future__ import annotations

import datetime as dt
import stat
import types
import zipfile

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connector.audit import cli as audit_cli
from connector.audit.cli import audit_group
from connector.audit.tables import audit_entries
from tests.audit.helpers import FakeClock, fill, flip_byte


def invoke(args, obj=None):
    return CliRunner().invoke(audit_group, args, obj=obj, catch_exceptions=False)


@pytest.fixture
def logged(make_env, tsa_server):
    """A sealed, time-stamped log (seq 1..9, two batches) with one unsealed entry."""
    clock = FakeClock()
    env = make_env(tsa=True, clock=clock)
    fill(env, 5)
    env.log.seal()
    clock.advance(days=1)
    fill(env, 4, start=5)
    env.log.seal()
    fill(env, 1, start=9)
    return env


def base(env):
    return ["--database", env.url, "--evidence", str(env.root / "evidence")]


def test_verify_passes_on_an_intact_log(logged, audit_pki):
    ca = audit_pki.pki.chain_path
    result = invoke(base(logged) + ["verify", "--tsa-ca", str(ca), "--trust", str(audit_pki.pki.trust_dir)])
    assert result.exit_code == 0, result.output
    assert "OK: the log is intact (10 entries, 2 batches, 0 archive files, 4 evidence files, 2 time-stamps verified)" \
        in result.output
    assert "note: 1 entries (seq 10..10) are not sealed yet" in result.output
    assert "log head: seq 10, entry_hash " in result.output


def test_verify_prints_where_the_log_is_broken_and_exits_1(logged):
    with logged.engine.begin() as conn:
        conn.execute(audit_entries.update().where(audit_entries.c.seq == 3).values(actor="someone-else"))
    digest = logged.evidence.put_bytes(b"<edXML>document 6 bytes</edXML>").sha256
    flip_byte(logged.evidence.path_for(digest))
    result = invoke(base(logged) + ["verify"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("BROKEN  database: entry seq 3 (") for line in lines)
    assert f"BROKEN  evidence file {logged.evidence.path_for(digest)}: content does not match its digest" \
        in result.output
    assert "FAILED: 2 problem(s) found in the log" in result.output


def test_verify_shows_a_progress_bar_on_long_runs(logged, monkeypatch):
    monkeypatch.setattr(audit_cli, "PROGRESS_THRESHOLD", 5)
    result = CliRunner().invoke(audit_group, base(logged) + ["verify"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "checking entries" in result.stderr
    monkeypatch.setattr(audit_cli, "PROGRESS_THRESHOLD", 10_000)
    quiet = CliRunner().invoke(audit_group, base(logged) + ["verify"], catch_exceptions=False)
    assert "checking entries" not in quiet.stderr


def test_verify_a_period(logged):
    with logged.engine.begin() as conn:
        conn.execute(audit_entries.update().where(audit_entries.c.seq == 2).values(actor="someone-else"))
    day_two = (FakeClock().now + dt.timedelta(days=1)).astimezone(dt.timezone(dt.timedelta(hours=7)))
    result = invoke(base(logged) + ["verify", "--from", day_two.strftime("%Y-%m-%d")])
    assert result.exit_code == 0, result.output
    assert "(5 entries, 1 batches" in result.output
    first_day = invoke(base(logged) + ["verify", "--to", "2026-11-26"])
    assert first_day.exit_code == 1 and "entry seq 2 (" in first_day.output


def test_trail_shows_a_documents_life(logged):
    result = invoke(base(logged) + ["trail", "DOC-0"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Document DOC-0: 4 step(s) in the exchange log (times in Vietnam time, UTC+07:00)"
    assert lines[2] == "2026-11-26 09:00:00  OUT ->  out.queued  (xếp hàng chờ gửi)"
    assert "tracking T-0" in lines[3] and "sealed in batch 1, time-stamped" in lines[3]
    assert '"nơi nhận": "UBND tỉnh Nghệ An"' in lines[4]
    assert any(line.endswith("IN  <-  in.acknowledged  (đã xác nhận với trục)") for line in lines)
    assert "seq 10, not sealed yet" in result.output
    by_tracking = invoke(base(logged) + ["trail", "T-0"])
    assert by_tracking.exit_code == 0 and "out.queued" in by_tracking.output
    missing = invoke(base(logged) + ["trail", "NO-SUCH-DOC"])
    assert missing.exit_code == 1 and "no audit entries for document NO-SUCH-DOC" in missing.output


def test_export_then_verify_bundle(logged, tmp_path, audit_pki):
    bundle = tmp_path / "out" / "DOC-0.zip"
    result = invoke(base(logged) + ["export", "--document", "DOC-0", "-o", str(bundle),
                                    "--tsa-ca", str(audit_pki.pki.chain_path)])
    assert result.exit_code == 0, result.output
    assert f"{bundle}: 9 entries (3 selected) in 2 batch(es), 3 evidence file(s)" in result.output
    assert "note: 1 selected entries (seq 10..10) are not sealed yet and were NOT exported" in result.output
    checked = invoke(["verify-bundle", str(bundle)])
    assert checked.exit_code == 0, checked.output
    assert f"OK: bundle {bundle} is intact" in checked.output
    names = zipfile.ZipFile(bundle).namelist()
    damaged = tmp_path / "damaged"
    zipfile.ZipFile(bundle).extractall(damaged)
    target = damaged / "batches" / "000002.sig"
    target.chmod(stat.S_IRUSR | stat.S_IWUSR)
    flip_byte(target)
    broken = invoke(["verify-bundle", str(damaged)])
    assert broken.exit_code == 1
    assert "BROKEN  bundle file batches/000002.sig: its SHA-256 differs from SHA256SUMS" in broken.output
    assert "batches/000002.statement" in names


def test_export_by_period(logged, tmp_path):
    bundle = tmp_path / "period.zip"
    result = invoke(base(logged) + ["export", "--from", "2026-11-26", "--to", "2026-11-26", "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "5 entries (5 selected) in 1 batch(es)" in result.output
    assert invoke(["verify-bundle", str(bundle)]).exit_code == 0


@pytest.mark.parametrize(("args", "message"), [
    (["export", "-o", "x.zip"], "give --document ID, or both --from DATE and --to DATE"),
    (["export", "--document", "D", "--from", "2026-01-01", "-o", "x.zip"], "either --document ID or --from/--to"),
    (["verify", "--from", "yesterday"], "'yesterday' is not a date"),
])
def test_usage_errors_exit_2(logged, args, message):
    result = invoke(base(logged) + args)
    assert result.exit_code == 2 and message in result.output


def test_where_the_log_is_must_be_given_and_usable(tmp_path, logged):
    result = invoke(["verify"])
    assert result.exit_code == 2 and "give 'audit --database URL'" in result.output
    result = invoke(["--database", f"sqlite:///{tmp_path / 'none.db'}", "--evidence", str(tmp_path), "verify"])
    assert result.exit_code == 1 and f"database file {tmp_path / 'none.db'} does not exist" in result.output
    assert not (tmp_path / "none.db").exists()
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    result = invoke(["--database", f"sqlite:///{empty}", "trail", "X"])
    assert result.exit_code == 1 and "holds no audit log (table audit_entries)" in result.output
    result = invoke(["--database", logged.url, "--evidence", str(tmp_path / "nope"), "verify"])
    assert result.exit_code == 1 and "evidence folder" in result.output
    result = invoke(["--database", "mysql://x/y", "trail", "X"])
    assert result.exit_code == 1 and "only sqlite and postgresql are supported" in result.output


def test_settings_can_come_from_the_callers_context(logged, tmp_path):
    settings = types.SimpleNamespace(database=logged.url, evidence=logged.root / "evidence")
    result = invoke(["verify"], obj=settings)
    assert result.exit_code == 0, result.output
    config = tmp_path / "connector.toml"
    config.write_text("# read by the caller's loader\n")
    loader = types.SimpleNamespace(load_config=lambda path: settings)
    result = invoke(["--config", str(config), "trail", "DOC-2"], obj=loader)
    assert result.exit_code == 0 and "Document DOC-2" in result.output
    result = invoke(["--config", str(config), "trail", "DOC-2"])
    assert result.exit_code == 2 and "--config is not available here" in result.output


def test_verify_bundle_of_a_missing_file_is_a_usage_error(tmp_path):
    result = invoke(["verify-bundle", str(tmp_path / "nothing.zip")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_verify_on_postgresql(make_env, pg_url):
    env = make_env(pg_url)
    fill(env, 4)
    env.log.seal()
    result = invoke(base(env) + ["verify"])
    assert result.exit_code == 0, result.output
    assert "OK: the log is intact (4 entries, 1 batches" in result.output


def test_trail_names_a_damaged_archive(make_env):
    clock = FakeClock()
    env = make_env(clock=clock)
    fill(env, 3)
    env.log.seal()
    clock.advance(hours=1)
    path = env.log.archive(clock.now, env.archive_dir)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(path.read_bytes()[:-20])
    result = invoke(base(env) + ["trail", "DOC-0"])
    assert result.exit_code == 1
    assert f"archive file {path} line " in result.output and "run 'audit verify'" in result.output
