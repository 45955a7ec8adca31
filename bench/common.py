"""What every benchmark here shares: test payloads, the sha256 + base64 baseline, peak RSS."""

from __future__ import annotations

import base64
import hashlib
import os
import resource
import time
from pathlib import Path

CHUNK = 1 << 20


def make_payload(path: Path, size: int) -> None:
    """A file of ``size`` random bytes (incompressible, like a signed PDF's streams)."""
    with path.open("wb") as fh:
        written = 0
        while written < size:
            n = min(CHUNK, size - written)
            fh.write(os.urandom(n))
            written += n


def baseline_seconds(path: Path) -> float:
    """sha256 + base64 over the file, chunk by chunk: the physical floor of moving it."""
    digest = hashlib.sha256()
    start = time.perf_counter()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            base64.b64encode(chunk)
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
