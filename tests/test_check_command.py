"""`check --config FILE [--json]`: the preflight, against a real sandbox axis on loopback and
the development PKI. Each test starts from a site as `make run` writes one (folder DMS
stand-ins, secrets in files) and breaks one thing."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from click.testing import CliRunner, Result

from connector.axis.errors import PermanentAxisError
from connector.axis.soap_hub import SoapHubAxis
from connector.cli.check_command import check_cmd
from connector.daemon.config import ConfigError
from connector.daemon.devsite import SiteAgency, write_site_config
from connector.daemon.runtime import open_runtime
from connector.routing.sql_delivery import create_example_tables
from connector.signing.devpki import DOCUMENT_SIGNING_EKU, agency_name, issue_certificate
from connector.store.db import MIGRATIONS, current_revision, head_revision, marker_path, open_database
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from tests.support.sites import DaemonProcess

H16 = "000.00.00.H16"
EVERY_CHECK = [
    "configuration", "database", "signing_key", "signing_certificate", "signing_identity", "trust_anchors",
    "signing_chain", "axis", "folders", "destination inbox", "destination statuses", "routing", "intake", "audit",
]
LINE = re.compile(r"^(ok|warning|FAILED|skipped) +([^:]+): (.*)$")


@pytest.fixture
def pki(dev_pki):
    """The session's development PKI (tests/conftest.py), read only."""
    return dev_pki


@pytest.fixture
def make_site(tmp_path, sandbox, pki):
    credentials = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}

    def make(binding: str = "soap", *, started: bool = True, extra: str = "") -> SiteAgency:
        site = write_site_config(tmp_path / binding, code=H16, name="UBND tỉnh Đắk Nông", binding=binding,
                                 sandbox_url=sandbox.url, credentials=credentials[H16], pki=pki, extra=extra)
        if started:  # what a first start leaves: the database created and migrated, its marker
            open_runtime(site.config_path).close()
        return site

    return make


def check(site: SiteAgency, *args: str) -> Result:
    result = CliRunner().invoke(check_cmd, ["--config", str(site.config_path), *args])
    assert isinstance(result.exception, SystemExit) or result.exception is None, result.output
    assert "Traceback" not in result.output
    return result


def verdicts(result: Result) -> dict[str, tuple[str, str]]:
    """name -> (status, detail) from the printed lines (the last line is the summary)."""
    *lines, last = result.output.splitlines()
    assert not LINE.match(last), last
    found = {}
    for line in lines:
        match = LINE.match(line)
        assert match, f"not a check line: {line!r}"
        found.setdefault(match[2], (match[1], match[3]))
    return found


def rewrite(site: SiteAgency, old: Path | str, new: Path | str) -> None:
    """Point the configuration at another file or folder."""
    text = site.config_path.read_text(encoding="utf-8")
    assert str(old) in text
    site.config_path.write_text(text.replace(str(old), str(new)), encoding="utf-8")


# --------------------------------------------------------------------------- all green


@pytest.mark.parametrize("binding", ["soap", "vxp"])
def test_a_site_ready_to_start_passes_every_check(make_site, sandbox, binding):
    site = make_site(binding)
    result = check(site)
    assert result.exit_code == 0, result.output
    found = verdicts(result)
    assert list(found) == EVERY_CHECK
    assert {name: status for name, (status, _) in found.items()} == {name: "ok" for name in EVERY_CHECK}
    url = sandbox.url + ("/soap" if binding == "soap" else "")
    assert found["axis"][1].startswith(f"{binding} axis {url} answers and accepts our credentials (OrganId {H16})")
    assert found["signing_identity"][1].endswith(f"names agency {H16}, the configured connector.agency, and may sign "
                                                 "documents")
    assert found["trust_anchors"][1].startswith("1 trust anchor(s) in ")
    assert "revision " + head_revision() + " (current)" in found["database"][1]
    assert result.output.splitlines()[-1] == f"{len(EVERY_CHECK)} ok, 0 warning(s), 0 FAILED: ready to start"


def test_json_has_the_same_verdicts_as_the_lines(make_site):
    site = make_site()
    shutil.rmtree(site.inbox)  # one failure
    marker_path(site.database).unlink()  # one warning
    text, as_json = check(site), check(site, "--json")
    assert text.exit_code == as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert data["ok"] is False and data["config"] == str(site.config_path)
    labels = {"ok": "ok", "warning": "warning", "failed": "FAILED", "skipped": "skipped"}
    assert [(c["name"], labels[c["status"]], c["detail"]) for c in data["checks"]] == \
        [(name, status, detail) for name, (status, detail) in verdicts(text).items()]
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["destination inbox"] == "failed" and statuses["database"] == "warning"


# --------------------------------------------------------------------------- the axis


@pytest.mark.parametrize("binding", ["soap", "vxp"])
def test_wrong_axis_credentials_fail_naming_the_url_never_the_secret(make_site, sandbox, binding):
    site = make_site(binding)
    secret_file = site.folder / "secrets" / ("token" if binding == "soap" else "secret")
    right = secret_file.read_text()
    wrong = "wrong-credential-4f1c9a7e2b"
    secret_file.write_text(wrong)
    for result in (check(site), check(site, "--json")):
        assert result.exit_code == 1
        assert wrong not in result.output and right not in result.output
    found = verdicts(check(site))
    status, detail = found["axis"]
    url = sandbox.url + ("/soap" if binding == "soap" else "")
    assert status == "FAILED"
    assert detail.startswith(f"{binding} axis {url} refused our credentials (OrganId {H16}, "
                             f"{'token' if binding == 'soap' else 'secret'} from file:{secret_file})")
    assert [n for n, (s, _) in found.items() if s != "ok"] == ["axis"]


def test_a_secret_the_axis_echoes_back_is_not_printed(make_site, monkeypatch):
    """A hub whose fault quotes our request (token included) must not make the check print it."""
    site = make_site("soap")
    token = (site.folder / "secrets" / "token").read_text()

    def echoing(self):
        raise PermanentAxisError(f"bad request <Token>{self.token}</Token>", operation="GetOrganizations")

    monkeypatch.setattr(SoapHubAxis, "directory", echoing)
    for result in (check(site), check(site, "--json")):
        assert result.exit_code == 1
        assert token not in result.output
    assert verdicts(check(site))["axis"][1].endswith("GetOrganizations: bad request <Token>***</Token>")


# --------------------------------------------------------------------------- signing


def test_missing_trust_folder_and_key_file_fail_naming_them(make_site, pki, tmp_path):
    site = make_site()
    trust, key = tmp_path / "no-trust", tmp_path / "keys" / "key.pem"
    rewrite(site, pki.trust_dir, trust)
    rewrite(site, pki.agencies[H16].key_path, key)
    result = check(site)
    assert result.exit_code == 1
    found = verdicts(result)
    assert found["signing_key"] == ("FAILED", f"signing.key: {key}: private key file not found")
    assert found["trust_anchors"] == ("FAILED", f"signing.trust_dir: trust-anchor folder {trust} does not exist")
    for dependent in ("signing_certificate", "signing_identity", "signing_chain"):
        assert found[dependent][0] == "skipped"
    assert found["axis"][0] == found["database"][0] == "ok"


def _signing_cert(pki, tmp_path: Path, *, days_left: int) -> Path:
    """The H16 key certified again by the dev issuing CA, ending in ``days_left`` days."""
    agency = pki.agencies[H16]
    now = dt.datetime.now(dt.timezone.utc)
    cert = issue_certificate(
        agency_name(H16, agency.name), agency.private_key().public_key(), pki.issuing_ca.certificate,
        pki.issuing_ca.private_key(), not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=days_left),
        key_usage=("digital_signature", "content_commitment"),
        extended_key_usage=[DOCUMENT_SIGNING_EKU, ExtendedKeyUsageOID.EMAIL_PROTECTION],
    )
    path = tmp_path / "renewed" / "cert.pem"
    path.parent.mkdir()
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_certificate_ending_within_30_days_is_a_warning_not_a_failure(make_site, pki, tmp_path):
    site = make_site()
    rewrite(site, pki.agencies[H16].cert_path, _signing_cert(pki, tmp_path, days_left=10))
    result = check(site)
    assert result.exit_code == 0, result.output
    status, detail = verdicts(result)["signing_certificate"]
    assert status == "warning"
    assert re.fullmatch(r"certificate UID=000\.00\.00\.H16,.* expires on \d{4}-\d\d-\d\d \(9 days left\): renew it", detail)
    assert result.output.splitlines()[-1].endswith("1 warning(s), 0 FAILED: ready to start")


def test_an_expired_certificate_of_another_agency_fails(make_site, pki):
    site = make_site()
    rewrite(site, pki.agencies[H16].key_path, pki.expired.key_path)
    rewrite(site, pki.agencies[H16].cert_path, pki.expired.cert_path)
    result = check(site)
    assert result.exit_code == 1
    found = verdicts(result)
    assert found["signing_certificate"][0] == "FAILED" and " expired on " in found["signing_certificate"][1]
    status, detail = found["signing_identity"]
    assert status == "FAILED"
    assert f"the certificate belongs to agency 000.00.00.Z99, but the document comes from {H16}" in detail


# --------------------------------------------------------------------------- folders and routing


def test_a_missing_destination_folder_fails_naming_it(make_site):
    site = make_site()
    shutil.rmtree(site.inbox)
    result = check(site)
    assert result.exit_code == 1
    found = verdicts(result)
    assert found["destination inbox"] == ("FAILED", f"folder {site.inbox}: missing")
    assert found["destination statuses"][0] == "ok"


def test_a_file_in_place_of_a_destination_folder_fails_naming_it(make_site):
    site = make_site()
    shutil.rmtree(site.inbox)
    site.inbox.write_text("a file where the DMS's folder was")
    result = check(site)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == (f"FAILED   configuration: {site.config_path}: routing.destinations.inbox.path: "
                        f"{site.inbox} is not a folder")
    assert lines[1] == "skipped  other checks: not run: they need a configuration that loads"


def test_sql_and_webhook_destinations(make_site, tmp_path):
    dms_db, gone_db, token = tmp_path / "dms.db", tmp_path / "gone" / "dms.db", tmp_path / "hook.token"
    create_example_tables(f"sqlite:///{dms_db}")
    extra = (f'\n[routing.destinations.dms_db]\ntype = "sql"\nurl = "sqlite:///{dms_db}"\n'
             f'\n[routing.destinations.gone_db]\ntype = "sql"\nurl = "sqlite:///{gone_db}"\n'
             f'\n[routing.destinations.hook]\ntype = "webhook"\nurl = "https://dms.example/in?api_key=k-123456"\n'
             f'auth = "bearer"\ntoken_file = "{token}"\n')
    site = make_site(extra=extra)
    result = check(site)
    assert result.exit_code == 1
    found = verdicts(result)
    assert found["destination dms_db"] == ("ok", f"SQL database sqlite:///{dms_db} reachable; tables edoc_documents "
                                                 "and edoc_attachments have the columns delivery writes")
    assert found["destination gone_db"] == ("FAILED", f"SQL database sqlite:///{gone_db}: file {gone_db} does not exist")
    assert not gone_db.parent.exists()  # nothing created
    assert found["destination hook"][0] == "FAILED"
    assert f"bearer token of destination 'hook': cannot read {token}" in found["destination hook"][1]

    token.write_text("hook-bearer-token-9f8e7d")
    found = verdicts(check(site))
    assert found["destination hook"] == ("ok", "webhook https://dms.example/in?api_key=***: URL and credentials usable "
                                               "(auth bearer); not called, a check sends nothing")
    assert "k-123456" not in check(site).output


# --------------------------------------------------------------------------- the database; changing nothing


def test_a_site_never_started_gets_a_warning_and_is_left_untouched(make_site):
    site = make_site(started=False)
    before = sorted(p.relative_to(site.folder) for p in site.folder.rglob("*"))
    result = check(site)
    assert result.exit_code == 0, result.output
    found = verdicts(result)
    assert found["database"] == ("warning", f"database file {site.database} does not exist yet: the first start "
                                            "creates and migrates it")
    assert found["folders"][0] == "ok" and f"created at start: data folder {site.folder / 'data'}" in found["folders"][1]
    assert sorted(p.relative_to(site.folder) for p in site.folder.rglob("*")) == before


def test_a_database_at_an_older_revision_is_a_warning_and_stays_there(make_site):
    site = make_site(started=False)
    engine = open_database(f"sqlite:///{site.database}")
    with engine.begin() as conn:  # as an older version of the connector left it
        alembic = AlembicConfig()
        alembic.set_main_option("script_location", str(MIGRATIONS))
        alembic.attributes["connection"] = conn
        command.upgrade(alembic, "0003_inbound_answer")
    engine.dispose()
    result = check(site)
    assert result.exit_code == 0, result.output
    status, detail = verdicts(result)["database"]
    assert (status, detail) == ("warning", f"sqlite:///{site.database} is at revision 0003_inbound_answer; this version "
                                           f"needs {head_revision()}: the next start migrates it (back it up first)")
    engine = sa.create_engine(f"sqlite:///{site.database}")
    with engine.connect() as conn:
        assert current_revision(conn) == "0003_inbound_answer"
    engine.dispose()


def test_a_database_file_lost_after_its_creation_fails_naming_it_and_its_marker(make_site):
    site = make_site()
    site.database.unlink()
    result = check(site)
    assert result.exit_code == 1
    status, detail = verdicts(result)["database"]
    assert status == "FAILED"
    assert str(site.database) in detail and f"remove {marker_path(site.database)} to start empty" in detail
    assert not site.database.exists()


def test_check_runs_beside_a_running_daemon(make_site):
    site = make_site()
    daemon = DaemonProcess(site)
    daemon.start()
    try:
        assert daemon.wait_running(60), daemon.log_tail()
        with pytest.raises(ConfigError, match="another connector is running"):
            open_runtime(site.config_path)  # the daemon holds the data folder's lock
        result = check(site)
        assert result.exit_code == 0, result.output
        assert {s for s, _ in verdicts(result).values()} == {"ok"}
        assert daemon.alive()
    finally:
        assert daemon.terminate() == 0, daemon.log_tail()


# --------------------------------------------------------------------------- usage


def test_configuration_problems_are_one_failed_line_each(make_site):
    site = make_site(started=False)
    site.config_path.write_text(site.config_path.read_text() + "\n[ops]\nport = \"x\"\n\n[bogus]\nkey = 1\n")
    result = check(site)
    assert result.exit_code == 1
    failed = [line for line in result.output.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2
    assert all(line.startswith(f"FAILED   configuration: {site.config_path}: ") for line in failed)
    assert any(line.endswith("bogus: unknown key") for line in failed)
    assert any("ops.port: " in line for line in failed)


def test_a_missing_configuration_file_fails_and_no_option_is_a_usage_error(tmp_path):
    missing = tmp_path / "connector.toml"
    result = CliRunner().invoke(check_cmd, ["--config", str(missing)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"FAILED   configuration: configuration file {missing} does not exist"
    assert CliRunner().invoke(check_cmd, []).exit_code == 2


def test_a_postgresql_database_without_schema_then_migrated(make_site, pg_url):
    site = make_site(started=False)
    rewrite(site, "# database_url: SQLite at data/connector.db", f'database_url = "{pg_url}"')
    status, detail = verdicts(check(site))["database"]
    assert status == "warning" and detail.endswith("holds no connector schema yet: the first start migrates it to "
                                                   f"{head_revision()}")
    open_runtime(site.config_path).close()
    result = check(site)
    assert result.exit_code == 0, result.output
    assert verdicts(result)["database"][0] == verdicts(result)["audit"][0] == "ok"


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_check_of_a_stopped_site_leaves_its_folders_untouched(make_site):
    """Not even the -wal and -shm files a read-only open of a WAL database would create."""
    site = make_site(started=True)
    before = _listing(site.folder)
    result = check(site)
    assert result.exit_code == 0, result.output
    assert _listing(site.folder) == before


@pytest.mark.parametrize("form", ["query", "userinfo"])
def test_the_database_password_is_never_printed(make_site, pg_url, form):
    secret = "S3cretPw-xyz"
    url = f"{pg_url}?password={secret}" if form == "query" else pg_url.replace("postgres@", f"postgres:{secret}@")
    assert secret in url
    site = make_site(started=False)
    rewrite(site, "# database_url: SQLite at data/connector.db", f'database_url = "{url}"')
    for output in (check(site).output, check(site, "--json").output):
        assert "database" in output and secret not in output


def test_a_database_emptied_to_zero_bytes_fails_as_the_start_would(make_site):
    site = make_site(started=True)
    site.database.write_bytes(b"")
    result = check(site)
    assert result.exit_code == 1
    status, detail = verdicts(result)["database"]
    assert status == "FAILED" and "is empty (0 bytes)" in detail and "cli.py restore" in detail


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_empty_intake_token_fails_as_the_start_would(make_site, tmp_path):
    token = tmp_path / "intake-token"
    token.write_text("\n")
    site = make_site(extra=f'[routing.intake.http]\nport = {_free_port()}\ntoken_file = "{token}"\n')
    result = check(site)
    assert result.exit_code == 1
    assert verdicts(result)["intake"] == (
        "FAILED", f"routing.intake.http.token: the intake API's token (file:{token}) is empty")


def test_a_time_stamping_authority_without_a_signing_key_fails_as_the_start_would(make_site):
    site = make_site(extra='[audit]\nenabled = true\ntsa_url = "http://127.0.0.1:9/tsa"\n')
    text = re.sub(r"^key = \{.*\}\n", "", site.config_path.read_text(encoding="utf-8"), flags=re.M)
    site.config_path.write_text(text, encoding="utf-8")
    result = check(site)
    assert result.exit_code == 1
    assert verdicts(result)["configuration"] == (
        "FAILED", f"{site.config_path}: audit.tsa_url: a time-stamping authority needs a signing key ([signing] key): "
                  "time-stamps cover the batches' signatures")


def test_a_secret_in_the_axis_url_is_not_printed(make_site):
    site = make_site()
    text = site.config_path.read_text(encoding="utf-8")
    text = re.sub(r'^(url = "[^"]*/soap)"', r'\1?api_key=HUBKEY-s3cr3t-777"', text, count=1, flags=re.M)
    assert "HUBKEY-s3cr3t-777" in text
    site.config_path.write_text(text, encoding="utf-8")
    for output in (check(site).output, check(site, "--json").output):
        assert "axis" in output and "HUBKEY-s3cr3t-777" not in output
