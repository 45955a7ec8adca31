"""The CLI's last line of defence: no traceback, and a refused file is named with the reason."""

from __future__ import annotations

import errno

import pytest

import connector.cli as cli_module


def run_failing(monkeypatch, capsys, exc: BaseException) -> tuple[int, str]:
    def fail(*_args, **_kwargs):
        raise exc

    monkeypatch.setattr(cli_module.cli, "main", fail)
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["validate", "x.edxml"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return exit_info.value.code, captured.err.strip()


def test_a_refused_path_is_named_with_the_systems_reason(monkeypatch, capsys):
    code, err = run_failing(monkeypatch, capsys, NotADirectoryError(errno.ENOTDIR, "Not a directory", "/tmp/afile/sub"))
    assert code == 3
    assert err == "error: /tmp/afile/sub: Not a directory"


def test_a_refused_rename_names_both_paths(monkeypatch, capsys):
    exc = OSError(errno.ENAMETOOLONG, "File name too long", "/out/.tmp-1", None, "/out/" + "x" * 300)
    code, err = run_failing(monkeypatch, capsys, exc)
    assert code == 3
    assert err == f"error: /out/.tmp-1 -> /out/{'x' * 300}: File name too long"


def test_an_os_error_without_a_path_still_says_why(monkeypatch, capsys):
    code, err = run_failing(monkeypatch, capsys, OSError(errno.ENOSPC, "No space left on device"))
    assert code == 3
    assert err == "error: No space left on device"


def test_any_other_failure_is_one_line_naming_its_kind(monkeypatch, capsys):
    code, err = run_failing(monkeypatch, capsys, RuntimeError("boom"))
    assert code == 3
    assert err == "error: unexpected RuntimeError: boom"
