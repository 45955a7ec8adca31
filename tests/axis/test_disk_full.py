"""A full local disk under the axis clients, on a real (small tmpfs) filesystem, against the
real sandbox on loopback.

What the clients write to local disk: the parts of a SOAP answer spooled under ``spool_dir``,
the attachments a GetDocument answer carries decoded there, a fetched edXML written to the
caller's file, a built edXML before it is sent, a status fetched to be read. When that disk is
full the error must be :class:`~connector.durable.DiskFull` naming the folder (or file): the
engine then waits for space with no attempt counted. Before, the hub client reported a full
spool as "connection broke while reading the answer" (a :class:`RetryableAxisError`), so every
poll counted an attempt and the document was given up until a manual ``resend``. A transfer
that the network really cuts short, while parts are being spooled, stays retryable.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from connector.axis.errors import RetryableAxisError
from connector.axis.multipart import MultipartLimits
from connector.daemon.config import load_config
from connector.daemon.devsite import write_site_config
from connector.daemon.runtime import open_runtime
from connector.durable import DiskFull
from connector.edxml.model import Attachment, BytesData, Edoc
from connector.edxml.parse import parse
from connector.edxml.samples import sample_edoc, sample_status
from connector.engine.inbox import read_fetch_failures
from connector.signing.devpki import create_dev_pki
from tests.support.raw_http import read_request
from tests.support.small_disk import SmallDisk, small_disk

from .conftest import G22, H16, attachment_bytes

NO_SPACE = "No space left on device"


@pytest.fixture
def mount():
    """``mount(path, size)``: a small tmpfs on ``path`` until the test ends (unmounted even when
    it fails). Ask for it before the clients' fixtures, so they are closed first."""
    with ExitStack() as stack:
        yield lambda path, size="4m": stack.enter_context(small_disk(path, size))


def large_edoc(number: int, size: int) -> tuple[Edoc, bytes]:
    """A document from H16 to G22 whose one attachment (random, ``size`` bytes) is larger than
    what the clients keep in memory, so receiving it spools to disk."""
    doc = sample_edoc(H16, G22, number)
    content = os.urandom(size)
    doc.attachments = [Attachment(content_id=f"big{number}", name=f"big-{number}.pdf", content_type="application/pdf",
                                  data=BytesData(content))]
    return doc.with_manifest(), content


def files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` but the filler (what a full disk may have left behind)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ".filler")


def assert_names(exc: DiskFull, where: Path) -> None:
    """``exc`` is the one-line "no space" error about ``where``."""
    assert (exc.errno, exc.filename) == (errno.ENOSPC, str(where))
    assert str(exc) == f"[Errno {errno.ENOSPC}] {NO_SPACE}: '{where}'"


# --------------------------------------------------------------------------- the SOAP hub


def test_hub_full_spool_while_reading_the_answer_is_disk_full_not_a_broken_connection(mount, hub_client, tmp_path):
    spool = tmp_path / "spool"
    disk = mount(spool)
    doc, content = large_edoc(1, 1_200_000)  # a 1,600,000-byte base64 part: spooled beyond 1 MiB
    doc_id = hub_client(H16).send(doc)
    receiver = hub_client(G22, spool_dir=spool)
    room = 512 * 1024
    disk.fill(leave=room)
    with pytest.raises(DiskFull) as info:  # before: RetryableAxisError "connection broke while reading the answer"
        receiver.fetch(doc_id, io.BytesIO())
    assert_names(info.value, spool)
    assert disk.available() >= room and files_under(spool) == []  # the half-spooled part was released
    assert [p.item_id for p in receiver.pending()] == [doc_id]  # still waiting on the hub

    disk.free()
    out = io.BytesIO()
    receiver.fetch(doc_id, out)
    out.seek(0)
    with parse(out, validate=False) as parsed:
        assert attachment_bytes(parsed.message) == [content]


def test_hub_decodes_attachments_into_its_spool_and_a_full_one_is_disk_full(mount, hub_client, tmp_path):
    """The answer's base64 part fits on the spool disk, its decoded copy does not: the decoding
    writes there too (before: into the system's temporary folder, whatever spool_dir said)."""
    spool = tmp_path / "spool"
    disk = mount(spool, "6m")
    doc, content = large_edoc(2, 1_500_000)  # a 2,000,000-byte base64 part
    doc_id = hub_client(H16).send(doc)
    receiver = hub_client(G22, spool_dir=spool)
    room = 562 * 4096  # 2,301,952 bytes: the base64 part, not the 1,500,000 bytes decoded beside it
    disk.fill(leave=room)
    with pytest.raises(DiskFull) as info:
        receiver.get_document(doc_id)
    assert_names(info.value, spool)
    assert disk.available() >= room  # the spooled part and the half-decoded copy were both released

    disk.free()
    edoc, related = receiver.get_document(doc_id)
    try:
        assert attachment_bytes(edoc) == [content]
    finally:
        edoc.attachments[0].data.close()
        related.close()


class CuttingRelay:
    """A TCP relay on loopback in front of the sandbox: it forwards one request whole but only
    the first ``limit`` bytes of the answer, then closes the client's connection (with a reset
    when ``reset``): a transfer the network cuts short, with a real server behind it."""

    def __init__(self, upstream_url: str, limit: int, reset: bool):
        target = urlsplit(upstream_url)
        self.upstream = (target.hostname, target.port)
        self.limit, self.reset = limit, reset
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        client.settimeout(10)
        with client, socket.create_connection(self.upstream, timeout=10) as upstream:
            upstream.sendall(read_request(client))
            sent = 0
            while sent < self.limit and (block := upstream.recv(min(65536, self.limit - sent))):
                client.sendall(block)
                sent += len(block)
            if self.reset:  # RST instead of FIN
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.cut.set()

    def close(self) -> None:
        self.listener.close()


@contextmanager
def cutting_relay(upstream_url: str, limit: int, reset: bool) -> Iterator[CuttingRelay]:
    relay = CuttingRelay(upstream_url, limit, reset)
    try:
        yield relay
    finally:
        relay.close()


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_hub_answer_cut_short_while_spooling_stays_retryable(mount, hub_client, sandbox, agencies, tmp_path, reset):
    """Spooling to the small disk is under way (parts spill beyond 64 KiB) when the network cuts
    the answer: that is the connection's failure, retryable, and the spool is left empty."""
    from connector.axis.soap_hub import SoapHubAxis

    spool = tmp_path / "spool"
    disk = mount(spool)
    doc_id = hub_client(H16).send(large_edoc(3, 1_200_000)[0])
    free = disk.available()
    with cutting_relay(sandbox.url, limit=900_000, reset=reset) as relay:
        receiver = SoapHubAxis(f"{relay.url}/soap", G22, agencies[G22].token, timeout=10, retries=0, spool_dir=spool,
                               multipart_limits=MultipartLimits(spool_memory=64 * 1024))
        try:
            with pytest.raises(RetryableAxisError) as info:
                receiver.fetch(doc_id, io.BytesIO())
        finally:
            receiver.close()
        assert relay.cut.is_set()
    assert not isinstance(info.value, DiskFull)
    assert "cut short" in info.value.text or "connection broke" in info.value.text, info.value.text
    assert info.value.operation == "GetDocument"
    assert disk.available() == free and files_under(spool) == []


# --------------------------------------------------------------------------- writing what was fetched


@pytest.mark.parametrize("binding", ["soap", "vxp"])
def test_fetch_into_a_file_on_a_full_disk_names_the_file(mount, hub_client, vxp_client, tmp_path, binding):
    """The caller's file is flushed inside fetch, so a full disk is met (and named) there, not
    later when the caller closes it."""
    disk = mount(tmp_path / "received")
    client = hub_client if binding == "soap" else vxp_client
    client(H16).send(sample_edoc(H16, G22, 4))
    receiver = client(G22)
    (item,) = receiver.pending()
    target = disk.path / "doc.edxml"
    with open(target, "wb") as dest:
        disk.fill()
        with pytest.raises(DiskFull) as info:  # before: a bare OSError naming nothing (or none at all until close)
            receiver.fetch(item.item_id, dest)
        assert_names(info.value, target)
        disk.free()
        dest.seek(0)
        dest.truncate()
        fetched = receiver.fetch(item.item_id, dest)
    assert target.stat().st_size == fetched.size > 0


def test_vxp_statuses_on_a_full_spool_are_disk_full_naming_it(mount, vxp_client, tmp_path):
    spool = tmp_path / "spool"
    disk = mount(spool)
    doc = sample_edoc(H16, G22, 5)
    vxp_client(H16).send(doc)
    vxp_client(G22).send(sample_status(doc, "01", by=G22))
    sender = vxp_client(H16, spool_dir=spool)
    disk.fill()
    with pytest.raises(DiskFull) as info:  # before: a bare OSError naming nothing
        sender.statuses_since(None)
    assert_names(info.value, spool)
    assert [p.kind for p in sender.pending("status")] == ["status"]  # not acknowledged, not lost

    disk.free()
    (status,) = sender.statuses_since(None)
    assert status.status_code == "01" and status.response_for[0].document_id == doc.document_id


def test_vxp_send_building_on_a_full_spool_is_disk_full_and_sends_nothing(mount, vxp_client, sandbox, tmp_path):
    spool = tmp_path / "spool"
    disk = mount(spool)
    sender = vxp_client(H16, spool_dir=spool)
    disk.fill()
    with pytest.raises(DiskFull) as info:  # before: a bare OSError naming nothing
        sender.send(sample_edoc(H16, G22, 6))
    assert_names(info.value, spool)
    assert files_under(spool) == []  # the half-built temporary file is gone
    assert sandbox.store.counts()["documents"] == {}

    disk.free()
    assert sender.send(sample_edoc(H16, G22, 6))


# --------------------------------------------------------------------------- through the engine


@pytest.fixture(scope="module")
def dev_pki(tmp_path_factory):
    return create_dev_pki(tmp_path_factory.mktemp("pki"))


def test_engine_waits_for_the_hub_clients_spool_and_never_gives_the_document_up(
    mount, hub_client, sandbox, agencies, dev_pki, tmp_path
):
    """G22 on the SOAP hub binding, its spool full while a large document waits: each poll stops
    on the full folder without counting an attempt (before: counted as a network failure, and
    given up after max_attempts, left on the hub until ``resend``); once space is back the
    next poll fetches it."""
    site = write_site_config(
        tmp_path / G22, code=G22, name=G22, binding="soap", sandbox_url=sandbox.url,
        credentials={"token": agencies[G22].token, "secret": agencies[G22].secret}, pki=dev_pki,
        retry_schedule=(0.0,), max_attempts=2, extra="\n[audit]\nenabled = false\n",
    )
    spool = site.folder / "data" / "spool"
    disk: SmallDisk = mount(spool, "8m")  # once free: the answer's parts, their decoded copy and the edXML
    rt = open_runtime(load_config(site.config_path))
    try:
        assert rt.engine.ctx.settings.spool_dir == spool
        doc_id = hub_client(H16).send(large_edoc(7, 1_200_000)[0])
        disk.fill()
        for _ in range(3):  # more polls than max_attempts
            with pytest.raises(DiskFull) as info:
                rt.engine.poll()
            assert_names(info.value, spool)
            assert read_fetch_failures(rt.store) == {}  # no attempt counted, nothing given up
        assert rt.store.summary().inbound == {}

        disk.free()
        assert rt.engine.poll() == 1
        assert rt.store.known_items([doc_id]) == {doc_id}
    finally:
        rt.close()
