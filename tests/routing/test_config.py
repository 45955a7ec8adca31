"""The [routing] configuration: valid shapes load with paths resolved; mistakes are refused with
the key path and what was expected; secrets are referenced, read only when used."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.routing.config import (
    FolderDestinationConfig,
    RoutingConfig,
    RoutingConfigError,
    SecretError,
    SqlDestinationConfig,
    WebhookDestinationConfig,
    load_routing,
    resolve_secret,
)


def _problems(data: dict) -> list[str]:
    with pytest.raises(RoutingConfigError) as info:
        load_routing(data, Path("/etc/edoc"))
    return info.value.problems


def test_full_config_loads_with_relative_paths_resolved(tmp_path):
    config = load_routing(
        {
            "destinations": {
                "vanthu": {"type": "folder", "path": "dms/inbox"},
                "api": {"type": "webhook", "url": "https://dms.local/api", "auth": "tls",
                        "client_cert": "certs/c.pem", "client_key": "certs/c.key", "ca_bundle": "/abs/ca.pem"},
                "db": {"type": "sql", "url": "postgresql+psycopg://dms@db/dms", "password_file": "secrets/db",
                       "attachments": "path", "path_root": "files"},
            },
            "rules": [{"recipient": "*.H16", "kind": "edoc", "to": ["api", "vanthu"]},
                      {"sender": ["000.00.00.G22"], "priority": [3, 4], "to": ["db"]}],
            "default": ["vanthu"],
            "intake": {"folder": "exchange", "settle_s": 5, "http": {"port": 8088, "token_env": "INTAKE_TOKEN"}},
        },
        tmp_path,
    )
    assert isinstance(config, RoutingConfig)
    folder, hook, db = config.destinations["vanthu"], config.destinations["api"], config.destinations["db"]
    assert isinstance(folder, FolderDestinationConfig) and folder.path == tmp_path / "dms/inbox" and folder.keep_raw
    assert isinstance(hook, WebhookDestinationConfig)
    assert hook.client_cert == tmp_path / "certs/c.pem" and hook.ca_bundle == Path("/abs/ca.pem")
    assert isinstance(db, SqlDestinationConfig) and db.path_root == tmp_path / "files"
    assert db.password_file == tmp_path / "secrets/db"
    assert config.intake.folder == tmp_path / "exchange" and config.intake.http.host == "127.0.0.1"
    assert config.rules[1].priority == [3, 4]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"destinations": {"a": {"type": "ftp"}}}, "destinations.a: Input tag 'ftp'"),
        ({"destinations": {"a": {"type": "folder", "path": "x", "keep": True}}}, "destinations.a.keep: unknown key"),
        ({"destinations": {"a": {"type": "folder"}}}, "destinations.a.path: required key missing"),
        ({"destinations": {"a": {"type": "webhook", "url": "ftp://x"}}}, "destinations.a.url: expected an http:// or https:// URL"),
        ({"destinations": {"a": {"type": "webhook", "url": "https://u:p@x/"}}}, "must not carry credentials"),
        ({"destinations": {"a": {"type": "webhook", "url": "https://x/", "auth": "bearer"}}},
         "auth 'bearer': token_env (an environment variable name) or token_file (a file path) is required"),
        ({"destinations": {"a": {"type": "webhook", "url": "https://x/", "auth": "bearer", "token_env": "1BAD"}}},
         "destinations.a.token_env: not a valid environment variable name"),
        ({"destinations": {"a": {"type": "webhook", "url": "https://x/", "token_env": "T"}}}, "token_env/token_file given but not used"),
        ({"destinations": {"a": {"type": "webhook", "url": "https://x/", "auth": "tls", "client_cert": "c"}}},
         "auth \"tls\" needs client_cert and client_key"),
        ({"destinations": {"a": {"type": "webhook", "url": "https://x/", "auth": "basic", "password_env": "P"}}},
         "auth \"basic\" needs username"),
        ({"destinations": {"a": {"type": "sql", "url": "postgresql://dms:secret@db/dms"}}}, "must not carry a password"),
        ({"destinations": {"a": {"type": "sql", "url": "postgresql://db/dms", "table": "x; drop"}}}, "is not a plain table name"),
        ({"destinations": {"a": {"type": "sql", "url": "postgresql://db/dms", "attachments": "path"}}}, "needs path_root"),
        ({"destinations": {"a b": {"type": "folder", "path": "x"}}}, "'a b' is not a usable destination name"),
        ({"destinations": {"a": {"type": "folder", "path": "x"}}, "rules": [{"to": ["b"]}]},
         "rules[0].to: unknown destination 'b' (known: a)"),
        ({"destinations": {}, "default": ["x"]}, "default: unknown destination 'x' (known: none defined)"),
        ({"rules": [{"to": []}]}, "rules[0].to: List should have at least 1 item"),
        ({"rules": [{"to": ["a"], "recipient": []}]}, "rules[0].recipient: an empty list matches nothing"),
        ({"rules": [{"to": ["a"], "priority": 12}]}, "rules[0].priority: priority 12 is out of range"),
        ({"rules": [{"to": ["a"], "kind": "letter"}]}, "rules[0].kind: Input should be 'edoc' or 'status'"),
        ({"intake": {"http": {"port": 8080}}}, "intake.http: the intake API's token: token_env"),
        ({"intake": {"http": {"port": 0, "token_env": "T"}}}, "intake.http.port: Input should be greater than or equal to 1"),
    ],
)
def test_mistakes_are_named_precisely(data, expected):
    problems = _problems(data)
    assert any(expected in p for p in problems), problems


def test_secrets_are_read_when_used_and_errors_name_the_source(tmp_path, monkeypatch):
    monkeypatch.delenv("EDOC_TEST_TOKEN", raising=False)
    with pytest.raises(SecretError, match="bearer token: environment variable EDOC_TEST_TOKEN is not set"):
        resolve_secret("EDOC_TEST_TOKEN", None, "bearer token")
    monkeypatch.setenv("EDOC_TEST_TOKEN", "  t0ken \n")
    assert resolve_secret("EDOC_TEST_TOKEN", None, "bearer token") == "t0ken"
    secret = tmp_path / "pw"
    with pytest.raises(SecretError, match=f"cannot read {secret}"):
        resolve_secret(None, secret, "password")
    secret.write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        resolve_secret(None, secret, "password")
    secret.write_text("s3cret\n")
    assert resolve_secret(None, secret, "password") == "s3cret"


def test_model_embeds_as_a_plain_pydantic_model(tmp_path):
    """The daemon validates the table itself, then resolves paths with ``resolved``."""
    config = RoutingConfig.model_validate({"destinations": {"f": {"type": "folder", "path": "in"}}, "default": ["f"]})
    assert config.destinations["f"].path == Path("in")
    assert config.resolved(tmp_path).destinations["f"].path == tmp_path / "in"
    assert config.intake.folder is None and config.rules == []
