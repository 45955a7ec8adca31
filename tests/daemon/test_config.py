"""The configuration file: the example parses; every kind of mistake is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.daemon.config import ConfigError, load_config, read_secret

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
[connector]
agency = "000.00.00.H16"
[axis]
binding = "soap"
url = "http://127.0.0.1:1/soap"
token = "env:HUB_TOKEN"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_configuration_is_valid_and_documents_every_section():
    config = load_config(ROOT / "config" / "connector.example.toml")
    assert config.connector.agency == "000.00.00.H16"
    assert config.routing.destinations["vanthu"].path == ROOT / "config" / "dms" / "inbox"
    example = (ROOT / "config" / "connector.example.toml").read_text(encoding="utf-8")
    for section in type(config).model_fields:
        if section == "source":
            continue
        assert f"[{section}]" in example, section
        sub = getattr(config, section)
        for key in type(sub).model_fields:
            assert f"{key} =" in example or f"{section}.{key}" in example, f"{section}.{key} is not documented"


def test_minimal_configuration_takes_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'connector.db'}"
    assert config.retry.schedule_s == [5, 30, 120, 600, 1800]


@pytest.mark.parametrize(
    "text, expected",
    [
        (MINIMAL + "\n[schedule]\npoll_every = 5\n", "schedule.poll_every: unknown key"),
        (MINIMAL.replace('binding = "soap"', 'binding = "ftp"'), "axis.binding: Input should be 'soap' or 'vxp'"),
        (MINIMAL.replace('agency = "000.00.00.H16"', 'agency = "H16"'), "connector.agency: String should match pattern"),
        (MINIMAL.replace('url = "http://127.0.0.1:1/soap"\n', ""), "axis.url: required key is missing"),
        (MINIMAL + "\n[retry]\nmax_attempts = 0\n", "retry.max_attempts: Input should be greater than or equal to 1"),
        (MINIMAL + "\n[routing]\ndefault = [\n", "not valid TOML"),
    ],
)
def test_mistakes_are_named(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert expected in str(err.value)
    assert str(tmp_path / "connector.toml") in str(err.value)


def test_inline_secret_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, MINIMAL.replace('token = "env:HUB_TOKEN"', 'token = "s3cr3t-value"')))
    assert "axis.token" in str(err.value) and "env:NAME or file:/path" in str(err.value)
    assert "s3cr3t-value" not in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_secrets_from_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_TOKEN", "abc\n")
    assert read_secret("env:HUB_TOKEN", "axis.token") == "abc"
    (tmp_path / "s").write_text("xyz\n")
    assert read_secret(f"file:{tmp_path / 's'}", "axis.secret") == "xyz"
    monkeypatch.delenv("HUB_TOKEN")
    with pytest.raises(ConfigError, match="environment variable HUB_TOKEN is not set"):
        read_secret("env:HUB_TOKEN", "axis.token")
