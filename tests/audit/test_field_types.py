"""Stored fields of the wrong type or form (an edited database, an edited bundle manifest) are
reported as a broken log at their entry or batch, naming the field: ``verify`` exits 1 with
BROKEN lines, ``trail`` and ``export`` refuse with the same message, nothing raises."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zipfile

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connector.audit.cli import audit_group
from tests.audit.helpers import fill

DOC = "DOC-1"  # has entries at seq 2 and 5 (fill: documents=3), both sealed in batch 1


def invoke(args):
    return CliRunner().invoke(audit_group, args, catch_exceptions=False)


@pytest.fixture
def env(make_env):
    """Batch 1 = seq 1..6, seq 7..8 unsealed; the log is intact."""
    env = make_env()
    fill(env, 6)
    env.log.seal()
    fill(env, 2, start=6)
    return env


def base(env):
    return ["--database", env.url, "--evidence", str(env.root / "evidence")]


def edit(env, sql: str, **params) -> None:
    """Raw SQL, as someone with access to the database file would do it (no type conversion)."""
    with env.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


ENTRY_EDITS = [  # (SET clause for seq 2, field named in the message)
    ("at = 'garbage'", "at"),
    ("at = at + 1", "at"),
    ("at = 1.5", "at"),
    ("at = x'00ff'", "at"),
    ("at = '2026-13-45 99:00:00.000000'", "at"),
    ("event = x'6f75742e73656e74'", "event"),
    ("event = ''", "event"),
    ("direction = x'00'", "direction"),
    ("actor = ''", "actor"),
    ("tracking_id = x'01'", "tracking_id"),
    ("axis_id = x'01'", "axis_id"),
    ("detail = x'7b7d'", "detail"),
    ("sha256 = 'not-a-digest'", "sha256"),
    ("sha256 = upper(entry_hash)", "sha256"),
    ("sha256 = 12", "sha256"),
    ("prev_hash = 'zz'", "prev_hash"),
    ("prev_hash = x'0000'", "prev_hash"),
    ("entry_hash = 'garbage'", "entry_hash"),
    ("entry_hash = 7", "entry_hash"),
]

BATCH_EDITS = [  # (SET clause for batch 1, field named in the message)
    ("signature = 'garbage'", "signature"),
    ("signature = 5", "signature"),
    ("signature = x''", "signature"),
    ("signer_cert = x'2d2d'", "signer_cert"),
    ("signer_cert = ''", "signer_cert"),
    ("algorithm = x'00'", "algorithm"),
    ("timestamp_token = 'garbage'", "timestamp_token"),
    ("timestamp_token = 3", "timestamp_token"),
    ("sealed_at = 'garbage'", "sealed_at"),
    ("sealed_at = 20", "sealed_at"),
    ("merkle_root = 'garbage'", "merkle_root"),
    ("merkle_root = x'00'", "merkle_root"),
    ("first_seq = 'one'", "first_seq"),
    ("last_seq = 2.5", "last_seq"),
    ("last_seq = x'06'", "last_seq"),
]


@pytest.mark.parametrize(("assignment", "field"), ENTRY_EDITS)
def test_an_undecodable_entry_field_is_a_broken_entry(env, assignment, field):
    edit(env, f"UPDATE audit_entries SET {assignment} WHERE seq = 2")
    result = invoke(base(env) + ["verify"])
    assert result.exit_code == 1, result.output
    broken = [line for line in result.output.splitlines() if line.startswith("BROKEN")]
    assert broken, result.output
    assert broken[0].startswith("BROKEN  database: entry seq 2"), broken
    assert f"field {field} is " in broken[0] and "(a field of this entry was altered)" in broken[0], broken
    assert "FAILED" in result.output

    for args in (["trail", DOC], ["export", "--document", DOC, "-o", str(env.root / "b.zip")]):
        refused = invoke(base(env) + args)
        assert refused.exit_code == 1, refused.output
        assert refused.output.startswith("database: entry seq 2"), refused.output
        assert f"field {field} is " in refused.output and "run 'audit verify'" in refused.output
    assert not (env.root / "b.zip").exists()


@pytest.mark.parametrize(("assignment", "field"), BATCH_EDITS)
def test_an_undecodable_batch_field_is_a_broken_batch(env, assignment, field):
    edit(env, f"UPDATE audit_batches SET {assignment} WHERE id = 1")
    result = invoke(base(env) + ["verify"])
    assert result.exit_code == 1, result.output
    broken = [line for line in result.output.splitlines() if line.startswith("BROKEN")]
    assert any(line.startswith("BROKEN  database (audit_batches id 1): batch 1")
               and f"field {field} is " in line and "(a field of this batch was altered)" in line
               for line in broken), broken

    for args in (["trail", DOC], ["export", "--document", DOC, "-o", str(env.root / "b.zip")]):
        refused = invoke(base(env) + args)
        assert refused.exit_code == 1, refused.output
        assert refused.output.startswith("database (audit_batches id 1): batch 1"), refused.output
        assert f"field {field} is " in refused.output and "run 'audit verify'" in refused.output


def test_only_the_damaged_entry_is_reported_when_its_time_cannot_be_read(env):
    edit(env, "UPDATE audit_entries SET at = 'garbage' WHERE seq = 3")
    result = invoke(base(env) + ["verify"])
    broken = [line for line in result.output.splitlines() if line.startswith("BROKEN")]
    assert len(broken) == 1, broken
    assert "entry seq 3 (" in broken[0] and "field at is 'garbage' (text), not a time" in broken[0]


def test_an_undecodable_archive_record_is_reported(env):
    assert env.log.archive(dt.datetime.now(dt.UTC) + dt.timedelta(days=1), env.archive_dir) is not None
    edit(env, "UPDATE audit_archives SET first_at = 'garbage'")
    result = invoke(base(env) + ["verify"])
    assert result.exit_code == 1, result.output
    assert "BROKEN  database (audit_archives id 1): archive record: field first_at is 'garbage' (text)" \
        in result.output, result.output


# ---------------------------------------------------------------------- bundle manifests


@pytest.fixture
def unpacked(env, tmp_path):
    bundle = tmp_path / "bundle.zip"
    assert invoke(base(env) + ["export", "--document", DOC, "-o", str(bundle)]).exit_code == 0
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(folder)
    assert invoke(["verify-bundle", str(folder)]).exit_code == 0
    return folder


def rewrite_manifest(folder, change) -> None:
    """Edit manifest.json and recompute its SHA256SUMS line (a consistent edit)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    data = json.dumps(manifest, indent=2).encode()
    (folder / "manifest.json").write_bytes(data)
    lines = []
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.partition("  ")
        lines.append(f"{hashlib.sha256(data).hexdigest() if name == 'manifest.json' else digest}  {name}\n")
    (folder / "SHA256SUMS").write_text("".join(lines))


def top(name, value):
    return lambda m: m.__setitem__(name, value)


def in_batch(name, value):
    return lambda m: m["batches"][0].__setitem__(name, value)


def without(name):
    return lambda m: m["batches"][0].pop(name)


MANIFEST_EDITS = [  # (change, text expected in a BROKEN line)
    (top("batches", 5), "field batches is 5, not a list of batch records"),
    (top("batches", None), "field batches is None"),
    (top("batches", [5]), "batch record 1: not a JSON object"),
    (top("batches", ["x"]), "batch record 1: not a JSON object"),
    (top("files", [1]), "field files is [1] (list)"),
    (top("files", {"README.txt": 5}), "field files is"),
    (top("selected_entries", 5), "field selected_entries is not a list of entry seq numbers"),
    (top("selected_entries", [[1]]), "field selected_entries is not a list of entry seq numbers"),
    (top("version", "1"), "field version is '1' (text)"),
    (top("created", 3), "field created is 3 (integer)"),
    (top("selection", 5), "field selection is 5 (integer)"),
    (top("entries", "x"), "field entries is 'x' (text)"),
    (in_batch("id", "1"), "batch record 1: field id is '1', not a positive integer"),
    (in_batch("first_seq", None), "batch record 1: field first_seq is None"),
    (in_batch("last_seq", 6.5), "batch record 1: field last_seq is 6.5"),
    (in_batch("merkle_root", "zz"), "batch record 1: field merkle_root is 'zz'"),
    (in_batch("statement", 3), "batch record 1: field statement is 3, not a file name"),
    (in_batch("signature", 7), "batch 1: field signature is 7 (integer), not non-empty text"),
    (in_batch("signature", "../../etc/passwd"), "batch 1 cannot be read: the manifest names a file outside"),
    (in_batch("signer_certificate", ["a"]), "batch 1: field signer_certificate is ['a'] (list)"),
    (in_batch("signer_chain", {}), "batch 1: field signer_chain is {} (object), not text"),
    (in_batch("public_key", 1.5), "batch 1: field public_key is 1.5 (number)"),
    (in_batch("algorithm", True), "batch 1: field algorithm is True (true/false)"),
    (in_batch("timestamp_token", 5), "batch 1: field timestamp_token is 5 (integer), not text"),
    (in_batch("sealed_at", None), "batch 1: field sealed_at is empty (NULL), not a UTC time"),
    (in_batch("sealed_at", "yesterday"), "batch 1: field sealed_at is 'yesterday' (text), not a UTC time"),
    (without("algorithm"), "batch 1: field algorithm is empty (NULL)"),
]


@pytest.mark.parametrize(("change", "expected"), MANIFEST_EDITS)
def test_a_manifest_field_of_the_wrong_type_is_reported(unpacked, change, expected):
    rewrite_manifest(unpacked, change)
    result = invoke(["verify-bundle", str(unpacked)])
    assert result.exit_code == 1, result.output
    broken = [line for line in result.output.splitlines() if line.startswith("BROKEN")]
    assert any(line.startswith("BROKEN  bundle file manifest.json: ") and expected in line for line in broken), broken
    assert len(broken) <= 2, broken  # the field, not a cascade of consequences
