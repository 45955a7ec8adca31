"""Folder delivery: a complete directory appears in one rename, re-delivery is a no-op, other
deliveries never overwrite, odd names stay inside the folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from connector.edxml.model import BytesData
from connector.routing.config import FolderDestinationConfig
from connector.routing.delivery import DeliveryError, Destination, open_destination


def _dest(root: Path, keep_raw: bool = True):
    return open_destination("vanthu", FolderDestinationConfig(type="folder", path=root, keep_raw=keep_raw))


def _visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def test_delivers_one_complete_directory(tmp_path, make_delivery):
    root = tmp_path / "dms"
    delivery = make_delivery("axis-7:000.00.00.H16", number=7)
    dest = _dest(root)
    assert isinstance(dest, Destination) and dest.name == "vanthu"
    where = Path(dest.deliver(delivery))
    assert where.parent == root
    assert where.name == f"{delivery.message.document_id.replace('/', '_')}__axis-7_000.00.00.H16"
    assert sorted(p.name for p in where.iterdir()) == ["cong-van-7.pdf", "message.edxml", "metadata.json"]
    metadata = json.loads((where / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["document_id"] == delivery.message.document_id
    assert metadata["signature"]["status"] == "placeholder" and metadata["axis_id"] == "axis-42"
    assert metadata["delivery"] == {
        "id": "axis-7:000.00.00.H16",
        "destination": "vanthu",
        "attachments": [{"content_id": "doc7", "name": "cong-van-7.pdf", "file": "cong-van-7.pdf"}],
        "raw_file": "message.edxml",
    }
    # the clerk gets the unwrapped PDF (the wire carried it zipped), the raw bytes untouched
    assert (where / "cong-van-7.pdf").read_bytes().startswith(b"%PDF-")
    assert (where / "message.edxml").read_bytes() == delivery.raw_path.read_bytes()
    assert delivery.raw_path.exists()  # copied, never moved
    assert [p.name for p in root.iterdir()] == [where.name]  # no temporary left behind


def test_redelivery_of_the_same_id_is_a_no_op(tmp_path, make_delivery):
    root = tmp_path / "dms"
    dest = _dest(root)
    first = dest.deliver(make_delivery("d-1"))
    before = {p.name: p.stat().st_mtime_ns for p in Path(first).iterdir()}
    assert dest.deliver(make_delivery("d-1")) == first
    assert _dest(root).deliver(make_delivery("d-1")) == first  # a restarted connector too
    assert {p.name: p.stat().st_mtime_ns for p in Path(first).iterdir()} == before
    assert len(_visible(root)) == 1


def test_collisions_between_deliveries_never_overwrite(tmp_path, make_delivery):
    root = tmp_path / "dms"
    dest = _dest(root)
    # two delivery ids that make the same folder label ("/" and ":" both become "_")
    a = Path(dest.deliver(make_delivery("x/1", document_id="DOC-1")))
    b = Path(dest.deliver(make_delivery("x:1", document_id="DOC-1")))
    assert a.name == "DOC-1__x_1" and b.name == "DOC-1__x_1 (2)"
    # a folder the DMS made itself under the label is left alone too
    (root / "DOC-1__y").mkdir()
    (root / "DOC-1__y" / "note.txt").write_text("the clerk's own file")
    c = Path(dest.deliver(make_delivery("y", document_id="DOC-1")))
    assert c.name == "DOC-1__y (2)"
    assert (root / "DOC-1__y" / "note.txt").read_text() == "the clerk's own file"
    assert [json.loads((p / "metadata.json").read_text())["delivery"]["id"] for p in (a, b, c)] == ["x/1", "x:1", "y"]
    # and each still de-duplicates on its own id
    assert dest.deliver(make_delivery("x:1", document_id="DOC-1")) == str(b)


def test_odd_names_stay_inside_the_folder(tmp_path, make_delivery):
    root = tmp_path / "dms"
    delivery = make_delivery(
        "../../etc/passwd",
        document_id="000.00.00.G22,2025/03/01,1/QĐ-UBND",
        attachments=[("Quyết định số 1.pdf", b"%PDF-1 a"), ("quyết định số 1.PDF", b"%PDF-1 b"),
                     ("message.edxml", b"<x/>"), ("metadata.json", b"{}")],
    )
    # a hostile name in the model (the parser refuses such names; the adapter must not trust that)
    delivery.message.attachments.append(type(delivery.message.attachments[0])(
        content_id="evil", name="../../outside.sh", data=BytesData(b"#!/bin/sh\n")))
    where = Path(_dest(root).deliver(delivery))
    assert where.parent == root
    assert where.name == "000.00.00.G22,2025_03_01,1_QĐ-UBND___.._etc_passwd"
    files = sorted(p.name for p in where.iterdir())
    assert files == sorted(["Quyết định số 1.pdf", "quyết định số 1 (2).PDF", "message (2).edxml", "metadata (2).json",
                            "attachment-5.sh", "message.edxml", "metadata.json"])
    assert not (tmp_path / "outside.sh").exists()
    meta = json.loads((where / "metadata.json").read_text())
    assert meta["delivery"]["attachments"][4] == {"content_id": "evil", "name": "../../outside.sh", "file": "attachment-5.sh"}
    assert (where / "metadata (2).json").read_bytes() == b"{}"


def test_failure_midway_leaves_no_half_directory(tmp_path, make_delivery):
    """A DMS that skips dot-names sees nothing at all until the directory is complete."""
    root = tmp_path / "dms"
    delivery = make_delivery("d-broken", attachments=[("a.pdf", b"%PDF-a"), ("b.pdf", b"%PDF-b")])

    class Failing:
        size, sha256 = 10, "0" * 64

        def open(self):
            raise OSError(28, "No space left on device")

    delivery.message.attachments[1].data = Failing()
    with pytest.raises(DeliveryError) as info:
        _dest(root).deliver(delivery)
    assert info.value.retryable and info.value.destination == "vanthu"
    assert "No space left on device" in str(info.value)
    assert list(root.iterdir()) == []  # neither a half directory nor a temporary one
    # the same delivery succeeds once the fault is gone
    good = make_delivery("d-broken", attachments=[("a.pdf", b"%PDF-a"), ("b.pdf", b"%PDF-b")])
    where = Path(_dest(root).deliver(good))
    assert sorted(p.name for p in where.iterdir()) == ["a.pdf", "b.pdf", "message.edxml", "metadata.json"]


def test_partial_directories_are_hidden_while_written(tmp_path, make_delivery, monkeypatch):
    """Look at the destination from inside the write: only a dot-named temporary exists."""
    root = tmp_path / "dms"
    seen = []
    real_rename = os.rename

    def observing_rename(src, dst):
        seen.append((sorted(p.name for p in root.iterdir()), sorted(p.name for p in Path(src).iterdir())))
        return real_rename(src, dst)

    monkeypatch.setattr("connector.routing.folder_delivery.os.rename", observing_rename)
    where = Path(_dest(root).deliver(make_delivery("d-9", number=9)))
    (visible_before, complete_content), = seen
    assert all(name.startswith(".partial-") for name in visible_before)
    assert complete_content == ["cong-van-9.pdf", "message.edxml", "metadata.json"]
    assert _visible(root) == [where.name]


def test_status_delivery_and_keep_raw_off(tmp_path, make_delivery):
    root = tmp_path / "dms"
    delivery = make_delivery("st-1", kind="status")
    where = Path(_dest(root, keep_raw=False).deliver(delivery))
    assert where.name.startswith("status-03__000.00.00.H16,")
    assert sorted(p.name for p in where.iterdir()) == ["metadata.json"]
    meta = json.loads((where / "metadata.json").read_text())
    assert meta["kind"] == "status" and meta["status_code"] == "03"
    assert meta["response_for"][0]["document_id"] == delivery.document_id
    assert meta["delivery"]["raw_file"] is None


def test_unmounted_share_is_not_created(tmp_path, make_delivery):
    root = tmp_path / "mnt" / "dms-share" / "inbox"
    with pytest.raises(DeliveryError, match="does not exist and neither does its parent"):
        _dest(root).deliver(make_delivery())
    assert not (tmp_path / "mnt").exists()


def test_stale_partial_folders_of_a_killed_delivery_are_swept(tmp_path):
    import os
    import time

    from connector.routing.config import FolderDestinationConfig
    from connector.routing.folder_delivery import FolderDestination

    root = tmp_path / "inbox"
    (root / ".partial-old").mkdir(parents=True)
    (root / ".partial-old" / "half.pdf").write_bytes(b"%PDF-")
    (root / ".partial-young").mkdir()
    old = time.time() - 7200
    os.utime(root / ".partial-old", (old, old))
    destination = FolderDestination("inbox", FolderDestinationConfig(type="folder", path=root))
    destination._ensure_root()
    assert not (root / ".partial-old").exists()
    assert (root / ".partial-young").exists()  # may be another instance's delivery in progress
