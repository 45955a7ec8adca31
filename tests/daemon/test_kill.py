"""Reliability: two connector daemons exchange 200 documents through the sandbox with injected
axis faults while being SIGKILLed at random moments (at least 20 kills) and restarted. At the
end every document was delivered exactly once to the recipient's DMS, every sender saw status
01 for each, nothing is pending, a last SIGTERM stops both cleanly (exit 0), and each side's
exchange log verifies (no kill corrupted it)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter

import pytest

from connector.daemon.devsite import write_site_config
from connector.sandbox.faults import FaultSettings
from connector.sandbox.server import SandboxServer
from connector.signing.devpki import create_dev_pki
from tests.support.sites import (ROOT, DaemonProcess, drop_sample, inbox_document_ids, recipient_codes, states,
                                 wait_for)

H16, G22 = "000.00.00.H16", "000.00.00.G22"
PER_SIDE = 100
KILLS = 24


@pytest.mark.slow
def test_sigkill_chaos_delivers_everything_exactly_once(tmp_path):
    rng = random.Random(20261126)
    pki = create_dev_pki(tmp_path / "pki")
    faults = FaultSettings(failure_rate=0.05, drop_rate=0.03)
    with SandboxServer(tmp_path / "sandbox", seed=5, faults=faults) as sandbox:
        creds = {a.organ_id: {"token": a.token, "secret": a.secret} for a in sandbox.store.agencies()}
        sites = {
            code: write_site_config(tmp_path / code, code=code, name=code, binding=binding, sandbox_url=sandbox.url,
                                    credentials=creds[code], pki=pki, send_every_s=0.3, poll_every_s=0.5,
                                    retry_schedule=(0.2, 0.5, 1.0, 2.0), max_attempts=10_000)
            for code, binding in ((H16, "soap"), (G22, "vxp"))
        }
        daemons = {code: DaemonProcess(site) for code, site in sites.items()}
        for d in daemons.values():
            d.start()
        sent: dict[str, list[str]] = {H16: [], G22: []}
        try:
            numbers = iter(range(1, 2 * PER_SIDE + 1))
            kills = 0
            while kills < KILLS or len(sent[H16]) < PER_SIDE:
                for _ in range(rng.randint(5, 12)):
                    if len(sent[H16]) < PER_SIDE:
                        sent[H16].append(drop_sample(sites[H16], G22, next(numbers)))
                        sent[G22].append(drop_sample(sites[G22], H16, next(numbers)))
                victim = daemons[rng.choice((H16, G22))]
                # at a random moment of real work: after the daemon is up, not during its start
                assert victim.wait_running(timeout=60), victim.log_tail()
                time.sleep(rng.uniform(0.05, 1.5))
                victim.kill()
                kills += 1
                if rng.random() < 0.3:
                    time.sleep(rng.uniform(0.1, 1.0))
                victim.start()
            sandbox.faults.update({"failure_rate": 0.0, "drop_rate": 0.0})

            def finished() -> bool:
                for d in daemons.values():
                    assert d.alive(), f"{d.site.code} died:\n{d.log_tail()}"
                return (
                    sorted(inbox_document_ids(sites[G22])) == sorted(sent[H16])
                    and sorted(inbox_document_ids(sites[H16])) == sorted(sent[G22])
                    and all(recipient_codes(sites[c]).get(doc) == "01" for c in sent for doc in sent[c])
                    and all(set(states(sites[c], "inbound")) <= {"done", "duplicate"} for c in sites)
                    and all(set(states(sites[c], "outbound")) == {"sent"} for c in sites)
                )

            done = wait_for(finished, timeout=300, step=1.0)
            report = {
                c: {
                    "inbox": len(inbox_document_ids(sites[c])),
                    "duplicates": [k for k, n in Counter(inbox_document_ids(sites[c])).items() if n > 1],
                    "inbound": states(sites[c], "inbound"),
                    "outbound": states(sites[c], "outbound"),
                    "statuses": Counter(recipient_codes(sites[c]).values()),
                    "starts": daemons[c].starts,
                }
                for c in sites
            }
            assert done, f"not finished: {report}\n{daemons[H16].log_tail()}\n{daemons[G22].log_tail()}"
            assert kills >= 20
            for c in sites:
                assert report[c]["duplicates"] == []
                assert report[c]["inbox"] == PER_SIDE
                outbox = sites[c].dms
                assert list((outbox / "outbox").iterdir()) == []
                assert not any((outbox / "processing").iterdir())
                assert not any((outbox / "failed").iterdir())
        finally:
            codes = {c: d.terminate() for c, d in daemons.items() if d.proc is not None}
        assert codes == {H16: 0, G22: 0}
        # the exchange log survived every kill: chain, batch signatures and evidence all check
        for site in sites.values():
            audit = subprocess.run([sys.executable, str(ROOT / "cli.py"), "audit", "--config", str(site.config_path), "verify"],
                                   capture_output=True, text=True, timeout=300)
            assert audit.returncode == 0, audit.stdout + audit.stderr
            assert "OK: the log is intact" in audit.stdout
