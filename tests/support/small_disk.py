"""A real, small filesystem for disk-full tests: a tmpfs of a few megabytes mounted on a
folder, with a filler file that takes the space left (ENOSPC for everyone else) and gives it
back.

Mounting needs root (CI runs as root). Where it is impossible the caller is skipped with the
reason, except under ``CI=true``, where it fails: a skip there would hide that the disk-full
tests never ran.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_BLOCK = 64 * 1024


class SmallDisk:
    """A tmpfs mounted at ``path``; :meth:`fill` uses up its space, :meth:`free` returns it."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / ".filler"

    def fill(self, leave: int = 0) -> None:
        """Grow the filler file until the disk is full (then give back ``leave`` bytes)."""
        block = b"\0" * _BLOCK
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (_BLOCK, 4096, 1):
                try:
                    while os.write(fd, block[:size]):
                        pass
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)
        if leave:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))
        assert self.available() <= leave + 4096, f"{self.path} is not full: {self.available()} bytes free"

    def free(self) -> None:
        """Give the filler's space back."""
        self.filler.unlink(missing_ok=True)

    def available(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


def _refuse(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"disk-full tests need a tmpfs mount (CI runs as root): {reason}")
    pytest.skip(f"cannot mount a small tmpfs: {reason}")


@contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[SmallDisk]:
    """Mount a tmpfs of ``size`` on ``path`` (created) for the duration; always unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        _refuse("not running as root")
    try:
        run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        _refuse(f"mount could not run: {exc}")
    if run.returncode != 0:
        _refuse(f"mount -t tmpfs failed: {(run.stderr or run.stdout).strip()}")
    try:
        yield SmallDisk(path)
    finally:
        result = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
