"""Configuration mistakes found by the audit: each one is refused when the file is loaded, with a
message that starts with the file's path, names the key, and never repeats a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.daemon.config import ConfigError, load_config, read_secret
from connector.redact import redact_url
from connector.store.db import DatabaseError, check_url, open_database

SECRET = "SECRET-TOKEN-12345"
BASE = """
[connector]
agency = "000.00.00.H16"
{connector}
[axis]
binding = "soap"
url = "http://127.0.0.1:1/soap"
token = "env:HUB_TOKEN"
{axis}
{rest}
"""


def write(tmp_path: Path, connector: str = "", axis: str = "", rest: str = "") -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(BASE.format(connector=connector, axis=axis, rest=rest), encoding="utf-8")
    return path


def refused(path: Path) -> str:
    """The error text of loading ``path``; it must start with the file's path."""
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: "), text
    return text


def test_the_base_configuration_loads(tmp_path):
    load_config(write(tmp_path))  # the cases below fail for the reason they set up, not another


# --------------------------------------------------------------------------- 1. axis.url


@pytest.mark.parametrize(
    "url, expected",
    [
        (f"http://u:{SECRET}@127.0.0.1:99999/soap", "axis.url: the URL must not carry credentials"),
        (f"https://{SECRET}@hub.example.gov.vn/soap", "axis.url: the URL must not carry credentials"),
        ("http://127.0.0.1:99999/soap", "axis.url: not a usable URL (bad port or brackets): 'http://127.0.0.1:99999/soap'"),
        ("http:///soap", "axis.url: expected an http:// or https:// URL with a host"),
        ("ftp://hub.example.gov.vn/soap", "axis.url: expected an http:// or https:// URL with a host"),
        ("http://[::1/soap", "axis.url: not a usable URL"),
    ],
)
def test_axis_url_is_refused_without_repeating_credentials(tmp_path, url, expected):
    text = refused(_with_axis_url(tmp_path, url))
    assert expected in text
    assert SECRET not in text
    if SECRET in url:
        assert "***@" in text


def _with_axis_url(tmp_path: Path, url: str) -> Path:
    path = write(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("http://127.0.0.1:1/soap", url), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- 2. database_url


@pytest.mark.parametrize(
    "url, expected",
    [
        (f"postgresql:/u:{SECRET}@127.0.0.1/x", "is not valid"),
        (f"mysql://u:{SECRET}@h/db", "'mysql' is not supported"),
        (f"postgresql://u:{SECRET}@127.0.0.1:notaport/x", "is not valid"),
        (f"postgresql+asyncpg://u:{SECRET}@h/db", "'postgresql+asyncpg' is not supported"),
        (f"postgresql+psycopg2://u:{SECRET}@h/db", "'postgresql+psycopg2' is not supported"),
    ],
)
def test_database_url_is_refused_without_its_password(tmp_path, url, expected):
    text = refused(write(tmp_path, connector=f'database_url = "{url}"'))
    assert "connector.database_url: database URL" in text
    assert expected in text
    assert "supported: sqlite:///PATH, or postgresql://" in text
    assert SECRET not in text


def test_supported_database_urls_load(tmp_path):
    config = load_config(write(tmp_path, connector='database_url = "postgresql://dms@db.local:5432/connector"'))
    assert config.database_url == "postgresql://dms@db.local:5432/connector"
    assert check_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    assert check_url("sqlite:///x.db").get_backend_name() == "sqlite"


def test_open_database_does_not_show_the_password(tmp_path):
    with pytest.raises(DatabaseError) as err:
        open_database(f"postgresql+asyncpg://u:{SECRET}@h/db")
    assert SECRET not in str(err.value) and "postgresql+asyncpg" in str(err.value)


# --------------------------------------------------------------------------- 3, 4. routing URLs, token_env


@pytest.mark.parametrize(
    "destination, expected",
    [
        (f'type = "webhook"\nurl = "https://u:{SECRET}@dms.local/api"', "routing.destinations.d.url: the URL must not carry credentials"),
        (f'type = "webhook"\nurl = "ftp://u:{SECRET}@dms.local/api"', "routing.destinations.d.url: the URL must not carry credentials"),
        ('type = "webhook"\nurl = "ftp://dms.local/api"', "routing.destinations.d.url: expected an http:// or https:// URL"),
        (f'type = "webhook"\nurl = "https://u:{SECRET}@dms.local:99999/api"', "routing.destinations.d.url: the URL must not carry credentials"),
        (f'type = "sql"\nurl = "postgresql://u:{SECRET}@db/x"', "routing.destinations.d.url: the URL must not carry a password"),
        (f'type = "sql"\nurl = "postgresql:/u:{SECRET}@db/x"', "routing.destinations.d.url: not a database URL"),
        (f'type = "sql"\nurl = "postgresql://u:{SECRET}@db:port/x"', "routing.destinations.d.url: not a database URL"),
        (f'type = "webhook"\nurl = "https://dms.local/api"\nauth = "bearer"\ntoken_env = "{SECRET}"',
         "routing.destinations.d.token_env: not a valid environment variable name"),
    ],
)
def test_routing_secrets_are_not_repeated(tmp_path, destination, expected):
    text = refused(write(tmp_path, rest=f"[routing.destinations.d]\n{destination}\n"))
    assert expected in text
    assert SECRET not in text


def test_pasted_token_is_called_a_secret(tmp_path):
    dest = f'type = "webhook"\nurl = "https://dms.local/api"\nauth = "bearer"\ntoken_env = "{SECRET}"'
    text = refused(write(tmp_path, rest=f"[routing.destinations.d]\n{dest}\n"))
    assert "looks like a secret was pasted instead of a variable name" in text


def test_redact_url_hides_user_information_even_in_malformed_urls():
    assert redact_url(f"http://u:{SECRET}@h:1/x") == "http://***@h:1/x"
    assert redact_url(f"postgresql:/u:{SECRET}@h/x") == "postgresql:/***@h/x"
    assert redact_url(f"postgresql://u:pa/{SECRET}@h/x") == "postgresql://***@h/x"
    assert redact_url(f"postgres://h/db?password={SECRET}&sslmode=require") == "postgres://h/db?password=***&sslmode=require"
    assert redact_url("https://dms.local/users/@me") == "https://dms.local/users/@me"


# --------------------------------------------------------------------------- 5. TLS files


@pytest.mark.parametrize(
    "axis, expected",
    [
        ('client_cert = "c.pem"', "axis.client_cert: given without axis.client_key"),
        ('client_key = "k.pem"', "axis.client_key: given without axis.client_cert"),
        ('ca_bundle = "missing.pem"', "axis.ca_bundle: {dir}/missing.pem does not exist"),
        ('client_cert = "c.pem"\nclient_key = "missing.pem"', "axis.client_key: {dir}/missing.pem does not exist"),
        ('client_cert = "folder"\nclient_key = "k.pem"', "axis.client_cert: {dir}/folder is not a file"),
    ],
)
def test_axis_tls_files_are_checked(tmp_path, axis, expected):
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    (tmp_path / "folder").mkdir()
    text = refused(write(tmp_path, axis=axis))
    assert expected.format(dir=tmp_path) in text


def test_axis_tls_files_that_exist_load(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    config = load_config(write(tmp_path, axis='client_cert = "c.pem"\nclient_key = "k.pem"\nca_bundle = "c.pem"'))
    assert config.axis.client_key == Path("k.pem")


# --------------------------------------------------------------------------- 6, 7. numbers


@pytest.mark.parametrize(
    "rest, expected",
    [
        ("[retry]\nschedule_s = [-5]", "retry.schedule_s: delay #1 must be a number of seconds from 0"),
        ("[retry]\nschedule_s = [5, inf]", "retry.schedule_s: delay #2 must be a number of seconds from 0"),
        ("[retry]\nmax_age_h = 1e300", "retry.max_age_h: Input should be less than or equal to"),
        ("[schedule]\nsend_every_s = inf", "schedule.send_every_s: Input should be a finite number"),
        ("[schedule]\npoll_every_s = nan", "schedule.poll_every_s: Input should be a finite number"),
        ("[schedule]\nseal_every_s = 1e300", "schedule.seal_every_s: Input should be less than or equal to 86400"),
        ("[schedule]\nintake_every_s = 86401", "schedule.intake_every_s: Input should be less than or equal to 86400"),
        ("[audit]\nfail_closed_after_s = inf", "audit.fail_closed_after_s: Input should be a finite number"),
        ("[routing.intake]\nsettle_s = nan", "routing.intake.settle_s: Input should be a finite number"),
    ],
)
def test_numbers_out_of_range_are_named(tmp_path, rest, expected):
    assert expected in refused(write(tmp_path, rest=rest))


def test_a_day_and_a_zero_delay_are_accepted(tmp_path):
    config = load_config(write(tmp_path, rest="[schedule]\ndirectory_every_s = 86400\n[retry]\nschedule_s = [0, 60]"))
    assert config.schedule.directory_every_s == 86400 and config.retry.schedule_s == [0, 60]


# --------------------------------------------------------------------------- 8. folders


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("x")
    text = refused(write(tmp_path))
    assert f"connector.data_dir: {tmp_path / 'data'} is not a folder" in text


def test_data_dir_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    text = refused(write(tmp_path, connector='data_dir = "file/data"'))
    assert f"connector.data_dir: {tmp_path / 'file' / 'data'} is not a folder ({tmp_path / 'file'} is a file)" in text


@pytest.mark.parametrize(
    "name, rest, key",
    [
        ("trust", '[signing]\ntrust_dir = "trust"', "signing.trust_dir"),
        ("inbox", '[routing.destinations.d]\ntype = "folder"\npath = "inbox"', "routing.destinations.d.path"),
        ("dms", '[routing.intake]\nfolder = "dms"', "routing.intake.folder"),
    ],
)
def test_configured_folder_that_is_a_file(tmp_path, name, rest, key):
    (tmp_path / name).write_text("x")
    text = refused(write(tmp_path, rest=rest))
    assert f"{key}: {tmp_path / name} is not a folder" in text


# --------------------------------------------------------------------------- 9. audit TSA


def test_tsa_url_that_is_not_a_url(tmp_path):
    text = refused(write(tmp_path, rest='[audit]\ntsa_url = "not a url"'))
    assert "audit.tsa_url: expected an http:// or https:// URL with a host (got 'not a url')" in text


def test_tsa_url_with_credentials(tmp_path):
    text = refused(write(tmp_path, rest=f'[audit]\ntsa_url = "https://u:{SECRET}@tsa.local/"'))
    assert "audit.tsa_url: the URL must not carry credentials" in text and SECRET not in text


def test_tsa_ca_missing_or_not_certificates(tmp_path):
    text = refused(write(tmp_path, rest='[audit]\ntsa_url = "https://tsa.local/"\ntsa_ca = "ca.pem"'))
    assert f"audit.tsa_ca: {tmp_path / 'ca.pem'} does not exist" in text
    (tmp_path / "ca.pem").write_text("not a certificate")
    text = refused(write(tmp_path, rest='[audit]\ntsa_url = "https://tsa.local/"\ntsa_ca = "ca.pem"'))
    assert "audit.tsa_ca: TSA CA certificates" in text and "no readable certificate" in text


# --------------------------------------------------------------------------- 10. unknown destination


def test_unknown_destination_names_only_it_and_the_known_ones(tmp_path):
    rest = (
        '[routing]\ndefault = ["nowhere"]\n'
        f'[routing.destinations.api]\ntype = "webhook"\nurl = "https://dms.local/api"\nauth = "bearer"\ntoken_env = "DMS_TOKEN"\n'
        '[routing.destinations.inbox]\ntype = "folder"\npath = "inbox"\n'
    )
    text = refused(write(tmp_path, rest=rest))
    assert "routing: default: unknown destination 'nowhere' (known: api, inbox)" in text
    assert "{" not in text and "DMS_TOKEN" not in text


# --------------------------------------------------------------------------- 11. the file is named


@pytest.mark.parametrize(
    "axis, expected",
    [
        ("", "axis.token: the SOAP hub binding needs the hub's token"),
        ('binding = "vxp"', "axis.secret: the VXP binding needs the system's secret"),
    ],
)
def test_missing_axis_credentials_are_refused_at_load(tmp_path, axis, expected):
    path = write(tmp_path)
    text = path.read_text(encoding="utf-8").replace('token = "env:HUB_TOKEN"\n', "")
    if axis:
        text = text.replace('binding = "soap"', axis)
    path.write_text(text, encoding="utf-8")
    assert expected in refused(path)


def test_secret_errors_can_start_with_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_X", raising=False)
    config = load_config(write(tmp_path))
    with pytest.raises(ConfigError) as err:
        read_secret("env:NOPE_X", "axis.token", config.source)
    assert str(err.value) == f"{config.source}: axis.token: environment variable NOPE_X is not set"
    assert str(config.error("signing.key", "bad")) == f"{config.source}: signing.key: bad"


def test_echoed_values_are_redacted_and_tables_are_not_dumped(tmp_path):
    text = refused(write(tmp_path, rest=f'[ops]\nhost = "h"\nport = "http://u:{SECRET}@x"'))
    assert "ops.port:" in text and SECRET not in text


def test_errors_found_when_the_runtime_opens_name_the_file(tmp_path, monkeypatch):
    """Problems only found when the daemon opens its parts (an unset token variable, a signing
    key file that is not a key) start with the configuration file too."""
    from connector.daemon.runtime import open_runtime

    monkeypatch.delenv("HUB_TOKEN", raising=False)
    path = write(tmp_path, connector=f'data_dir = "{tmp_path / "data"}"')
    with pytest.raises(ConfigError) as err:
        open_runtime(path)
    assert str(err.value) == f"{path}: axis.token: environment variable HUB_TOKEN is not set"

    monkeypatch.setenv("HUB_TOKEN", SECRET)
    (tmp_path / "key.pem").write_text("not a key")
    (tmp_path / "cert.pem").write_text("not a certificate")
    path = write(tmp_path, connector=f'data_dir = "{tmp_path / "data"}"',
                 rest='[signing.key]\ntype = "pem"\nkey = "key.pem"\ncert = "cert.pem"')
    with pytest.raises(ConfigError) as err:
        open_runtime(path)
    assert str(err.value).startswith(f"{path}: signing.key: "), str(err.value)
    assert SECRET not in str(err.value)


def test_a_time_stamping_authority_without_a_signing_key_is_refused_at_load(tmp_path):
    """Found when the file is read, not as "unexpected AuditError" (exit 3) once the runtime opens."""
    path = write(tmp_path, rest='[audit]\ntsa_url = "http://127.0.0.1:9/tsa"\n')
    assert refused(path) == (f"{path}: audit.tsa_url: a time-stamping authority needs a signing key ([signing] key): "
                             "time-stamps cover the batches' signatures")
    load_config(write(tmp_path, rest='[audit]\nenabled = false\ntsa_url = "http://127.0.0.1:9/tsa"\n'))
