"""Benchmark: build and parse an edXML carrying one large attachment (default 500 MB).

Prints, as lines a script can read:
    ratio build-<packaging> <v> target 0.5      our build throughput / (sha256 + base64) throughput
    ratio parse-<packaging> <v> target 0.5      our parse throughput / (sha256 + base64) throughput
    peak_rss_mb build-<size>MB <v> limit 200    peak RSS of the process that built the file
    peak_rss_mb parse-<size>MB <v> limit 200    peak RSS of the process that parsed it

The baseline (hashlib.sha256 + base64 over the same bytes, chunk by chunk) is measured in the
same run on the same machine, so the ratios hold on a noisy or slow machine too. Build and
parse each run in a fresh child process so their peak RSS is their own.

Usage: python bench/attachments.py [--size-mb 500] [--packaging zip|plain] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import baseline_seconds, make_payload, peak_rss_mb  # noqa: E402

CHUNK = 1 << 20






def child_build(payload: str, out: str, packaging: str) -> dict:
    from connector.edxml.build import build
    from connector.edxml.model import FileData
    from connector.edxml.samples import sample_edoc

    doc = sample_edoc()
    attachment = doc.attachments[0]
    attachment.packaging = packaging
    attachment.name = "large-attachment.pdf"
    attachment.data = FileData(Path(payload))
    attachment.size, attachment.sha256 = attachment.data.size, attachment.data.sha256
    doc.with_manifest()
    start = time.perf_counter()
    build(doc, out)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_mb": peak_rss_mb(), "sha256": attachment.sha256}


def child_parse(path: str, spool: str) -> dict:
    from connector.edxml.parse import parse

    start = time.perf_counter()
    with parse(path, spool_dir=spool) as parsed:
        seconds = time.perf_counter() - start
        attachment = parsed.message.attachments[0]
        problems = [str(p) for p in parsed.report.errors]
        return {
            "seconds": seconds,
            "rss_mb": peak_rss_mb(),
            "sha256": attachment.sha256,
            "size": attachment.size,
            "errors": problems,
        }




def run_child(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if result.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--packaging", choices=["zip", "plain"], default="zip")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_build(*rest) if kind == "build" else child_parse(*rest)
        print(json.dumps(result))
        return

    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        payload, edxml, spool = work / "payload.bin", work / "large.edxml", work / "spool"
        spool.mkdir()
        make_payload(payload, size)
        base = min(baseline_seconds(payload) for _ in range(2))
        built = run_child("build", str(payload), str(edxml), args.packaging)
        parsed = run_child("parse", str(edxml), str(spool))
        if parsed["errors"] or parsed["sha256"] != built["sha256"] or parsed["size"] != size:
            raise SystemExit(f"round trip failed: {parsed}")
        print(f"payload {args.size_mb} MB, edXML {edxml.stat().st_size / 1e6:.0f} MB, packaging {args.packaging}")
        print(f"baseline sha256+base64 {size / base / 1e6:.0f} MB/s")
        print(f"build {size / built['seconds'] / 1e6:.0f} MB/s, parse {size / parsed['seconds'] / 1e6:.0f} MB/s")
        print(f"ratio build-{args.packaging} {base / built['seconds']:.2f} target 0.5")
        print(f"ratio parse-{args.packaging} {base / parsed['seconds']:.2f} target 0.5")
        print(f"peak_rss_mb build-{args.size_mb}MB {built['rss_mb']:.0f} limit 200")
        print(f"peak_rss_mb parse-{args.size_mb}MB {parsed['rss_mb']:.0f} limit 200")


if __name__ == "__main__":
    main()
