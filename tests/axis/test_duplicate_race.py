"""Two requests carrying the same document (same sender + DocumentId) at once: the store's
UNIQUE index on that natural key lets exactly one through; the other is refused as a
duplicate (hub ``M.Exist`` / VXP ``DUPLICATE``, both :class:`DuplicateError`)."""

from __future__ import annotations

import threading

import pytest

from connector.axis.errors import DuplicateError
from connector.edxml.samples import sample_edoc
from connector.sandbox.store import DuplicateDocument

from .conftest import G22, H16


def _hold_both_at_keep(sandbox, monkeypatch):
    """Make both requests pass the duplicate pre-check before either inserts its row: each
    waits at ``Store.keep`` (after the check, before the insert) until the other arrives."""
    barrier = threading.Barrier(2, timeout=10)
    original = sandbox.store.keep
    arrived = []

    def keep(spool):
        arrived.append(threading.current_thread().name)
        barrier.wait()
        return original(spool)

    monkeypatch.setattr(sandbox.store, "keep", keep)
    return arrived


@pytest.mark.parametrize("bindings", [("hub", "hub"), ("vxp", "vxp"), ("hub", "vxp")])
def test_concurrent_duplicates_exactly_one_accepted(sandbox, hub_client, vxp_client, monkeypatch, bindings):
    arrived = _hold_both_at_keep(sandbox, monkeypatch)
    doc = sample_edoc(H16, G22, 91)
    clients = [hub_client(H16) if b == "hub" else vxp_client(H16) for b in bindings]
    results: list[object] = [None, None]

    def send(i):
        try:
            results[i] = clients[i].send(doc)
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i,), name=f"send-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(arrived) == 2, "both requests must have passed the pre-check (the race really happened)"
    accepted = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(accepted) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], DuplicateError), refused[0]
    assert refused[0].code in ("M.Exist", "DUPLICATE")
    # one row, one pending item for the recipient
    assert sandbox.store.counts()["documents"] == {"edoc": 1}
    assert [p.item_id for p in hub_client(G22).pending()] == accepted


def test_store_refuses_a_second_row_for_the_natural_key(sandbox):
    kwargs = dict(kind="edoc", sender=H16, recipients=[G22], sha256="0" * 64, size=1, binding="hub", sender_doc_id="X-1")
    sandbox.store.add_document(**kwargs)
    with pytest.raises(DuplicateDocument):
        sandbox.store.add_document(**kwargs)
    # same DocumentId from another sender, and statuses about it: not duplicates
    sandbox.store.add_document(**{**kwargs, "sender": G22, "recipients": [H16]})
    sandbox.store.add_document(**{**kwargs, "kind": "status", "status_key": "k"})
    sandbox.store.add_document(**{**kwargs, "kind": "status", "status_key": "k2"})
