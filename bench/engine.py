"""Benchmark: the engine's exchange throughput against the bare bindings, in the same run.

One sandbox on loopback; agency H16 (SOAP hub binding) sends small signed công văn (5 KB + a
PDF) to G22 (VXP binding).

    baseline  per document, with the bindings alone: sign + SendDocument, then getReceivedEdocList
              + getEdoc + updateStatus(done), then the 01 status back (sendEdoc) and GetTraces:
              the network work the engine must do, with nothing durable in between.
    engine    the same documents through two in-process engines (SQLite, evidence files,
              audit log): intake, sign, send, poll, verify, deliver into a DMS folder,
              acknowledge, status 01 back and applied, every step committed.

Prints ``ratio engine-exchange <engine docs/s / baseline docs/s> target 0.3``. The target is a
floor we set (no requirement names one): durability costs (fsyncs, transactions, the audit
chain, verification) must not cost more than about 3x the bare network round trips.

Usage: python bench/engine.py [--documents 60]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.axis.soap_hub import SoapHubAxis  # noqa: E402
from connector.axis.vxp import VxpAxis  # noqa: E402
from connector.daemon.config import load_config  # noqa: E402
from connector.daemon.devsite import write_site_config  # noqa: E402
from connector.daemon.runtime import open_runtime  # noqa: E402
from connector.edxml.jsonform import to_json  # noqa: E402
from connector.edxml.samples import sample_edoc, sample_status  # noqa: E402
from connector.sandbox.server import SandboxServer  # noqa: E402
from connector.signing.devpki import create_dev_pki  # noqa: E402
from connector.signing.keys import load_signing_key  # noqa: E402
from connector.signing.sign import sign  # noqa: E402

H16, G22 = "000.00.00.H16", "000.00.00.G22"
TARGET = 0.3


def baseline(sandbox: SandboxServer, pki, creds, numbers: range) -> float:
    agency = pki.agencies[H16]
    key = load_signing_key({"type": "pem", "key": str(agency.key_path), "cert": str(agency.cert_path),
                            "chain": str(pki.chain_path)})
    hub = SoapHubAxis(sandbox.url + "/soap", H16, creds[H16]["token"], retries=0)
    vxp = VxpAxis(sandbox.url, G22, creds[G22]["secret"], retries=0)
    started = time.perf_counter()
    for n in numbers:
        doc = sample_edoc(H16, G22, n)
        sign(doc, key, io.BytesIO())
        hub.send(doc)
        for item in vxp.pending("edoc"):
            vxp.fetch(item.item_id, io.BytesIO())
            vxp.acknowledge(item.item_id)
        vxp.send(sample_status(doc, "01", by=G22))
        hub.statuses_since(None)
    elapsed = time.perf_counter() - started
    hub.close(), vxp.close()
    return len(numbers) / elapsed


def engine(sandbox: SandboxServer, pki, creds, numbers: range, work: Path) -> float:
    sides = []
    for code, binding in ((H16, "soap"), (G22, "vxp")):
        site = write_site_config(work / code, code=code, name=code, binding=binding, sandbox_url=sandbox.url,
                                 credentials=creds[code], pki=pki)
        sides.append(open_runtime(load_config(site.config_path)))
    h16, g22 = sides
    drops = work / "drops"
    drops.mkdir()
    prepared = []
    for n in numbers:
        doc = sample_edoc(H16, G22, n)
        data = to_json(doc)
        data["attachments"], data["manifest"] = [], []
        pdf = drops / doc.attachments[0].name
        with doc.attachments[0].data.open() as src:
            pdf.write_bytes(src.read())
        prepared.append((data, pdf))
    started = time.perf_counter()
    for data, pdf in prepared:
        h16.engine.submit(data, [pdf])
    while True:
        h16.engine.run_once()
        g22.engine.run_once()
        if h16.store.summary(recent=0).recipients.get("delivered", 0) >= len(numbers):
            break
    elapsed = time.perf_counter() - started
    for rt in sides:
        rt.close()
    return len(numbers) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        work = Path(tmp)
        pki = create_dev_pki(work / "pki")
        with SandboxServer(work / "sandbox-baseline", seed=1) as sandbox:
            creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
            base = baseline(sandbox, pki, creds, range(1, args.documents + 1))
        with SandboxServer(work / "sandbox-engine", seed=1) as sandbox:  # a fresh axis: nothing left over
            creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
            ours = engine(sandbox, pki, creds, range(10_001, 10_001 + args.documents), work)
    print(f"baseline_docs_per_s {base:.1f}")
    print(f"engine_docs_per_s {ours:.1f}")
    print(f"ratio engine-exchange {ours / base:.2f} target {TARGET}")


if __name__ == "__main__":
    main()
