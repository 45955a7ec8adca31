"""connector.edxml.files extract_to: names as written, the reserved metadata name, no partial folder.

Each test writes into its own temporary folder and checks exactly which files are there after.
"""

from __future__ import annotations

import io
import json

import pytest

from connector.edxml.files import ExtractError, _free_name, extract_to
from connector.edxml.model import Attachment, BytesData, Edoc
from connector.edxml.names import MAX_NAME_BYTES, SUFFIX_ROOM


def _doc(*attachments: Attachment) -> Edoc:
    return Edoc(document_id="000.00.00.H16,2024/05/20,15/UBND-VP", attachments=list(attachments))


def _pdf(name: str, content: bytes = b"%PDF-1.4 x", content_id: str | None = None) -> Attachment:
    return Attachment(content_id=content_id or name, name=name, content_type="application/pdf",
                      data=BytesData(content))


class _Breaks(BytesData):
    """Content whose reading fails half-way, as a disk or a spool file can."""

    def open(self):
        class Failing(io.BytesIO):
            def read(self, *args):
                raise OSError(5, "Input/output error")

        return Failing(self._data)


def test_an_attachment_named_metadata_json_is_saved_under_another_name(tmp_path):
    folder = tmp_path / "out"
    written = extract_to(_doc(_pdf("metadata.json", b"the sender's file"), _pdf("cv.pdf")), folder)
    assert [p.name for p in written] == ["metadata (2).json", "cv.pdf", "metadata.json"]
    assert (folder / "metadata (2).json").read_bytes() == b"the sender's file"
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["document_id"] == "000.00.00.H16,2024/05/20,15/UBND-VP"
    assert metadata["saved_as"] == [{"content_id": "metadata.json", "name": "metadata.json", "file": "metadata (2).json"}]


def test_metadata_records_no_saved_as_when_every_file_has_its_own_name(tmp_path):
    extract_to(_doc(_pdf("cv.pdf")), tmp_path)
    assert "saved_as" not in json.loads((tmp_path / "metadata.json").read_text(encoding="utf-8"))


def test_names_taken_in_the_folder_are_recorded_where_saved(tmp_path):
    (tmp_path / "CV.pdf").write_bytes(b"already here")
    (tmp_path / "metadata.json").write_bytes(b"{}")
    written = extract_to(_doc(_pdf("cv.pdf", b"new")), tmp_path)
    assert [p.name for p in written] == ["cv (2).pdf", "metadata (2).json"]
    assert (tmp_path / "CV.pdf").read_bytes() == b"already here"
    metadata = json.loads((tmp_path / "metadata (2).json").read_text(encoding="utf-8"))
    assert metadata["saved_as"] == [{"content_id": "cv.pdf", "name": "cv.pdf", "file": "cv (2).pdf"}]


def test_a_name_too_long_after_nfc_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "a" / "out"
    with pytest.raises(ExtractError, match="502 bytes"):
        extract_to(_doc(_pdf("cv.pdf"), _pdf("\u0958" * 83 + ".pdf")), folder)
    assert list(tmp_path.iterdir()) == []


def test_an_attachment_without_content_is_refused_naming_it(tmp_path):
    empty = Attachment(content_id="cv15", name="cv.pdf", content_type="application/pdf")
    with pytest.raises(ExtractError, match=r"'cv\.pdf' \(ContentId 'cv15'\) has no content"):
        extract_to(_doc(_pdf("ok.pdf"), empty), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_half_way_leaves_no_partial_folder(tmp_path):
    folder = tmp_path / "x" / "out"
    broken = Attachment(content_id="b", name="b.pdf", content_type="application/pdf", data=_Breaks(b"%PDF b"))
    with pytest.raises(OSError, match="Input/output error"):
        extract_to(_doc(_pdf("a.pdf"), broken), folder)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_in_an_existing_folder_removes_only_what_it_wrote(tmp_path):
    (tmp_path / "keep.txt").write_bytes(b"the clerk's")
    broken = Attachment(content_id="b", name="b.pdf", content_type="application/pdf", data=_Breaks(b"%PDF b"))
    with pytest.raises(OSError):
        extract_to(_doc(_pdf("a.pdf"), broken), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_the_longest_accepted_name_still_takes_a_suffix(tmp_path):
    name = "a" * (MAX_NAME_BYTES - SUFFIX_ROOM - 4) + ".pdf"
    (tmp_path / name).write_bytes(b"first")
    written = extract_to(_doc(_pdf(name, b"second")), tmp_path)
    assert written[0].name == name[:-4] + " (2).pdf"
    assert written[0].read_bytes() == b"second"


def test_no_suffix_beyond_the_file_name_limit(tmp_path):
    """Past " (999)" the longest accepted name has no free name left: refused, never cut."""
    name = "a" * (MAX_NAME_BYTES - SUFFIX_ROOM - 4) + ".pdf"
    taken = {name.casefold()} | {f"{name[:-4]} ({n}).pdf".casefold() for n in range(2, 1000)}
    with pytest.raises(ExtractError, match="too long a file name"):
        _free_name(tmp_path.resolve(), name, taken)


def test_metadata_with_saved_as_is_schema_valid_and_reads_back_as_the_document(tmp_path):
    from connector.edxml.jsonform import from_json, to_json, validate
    from tests.edxml.test_jsonform import sample_edoc

    doc = sample_edoc()
    doc.attachments[0].name = "metadata.json"
    extract_to(doc, tmp_path)
    metadata = json.loads((tmp_path / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["saved_as"] == [{"content_id": "209", "name": "metadata.json", "file": "metadata (2).json"}]
    assert validate(metadata) == []
    assert to_json(from_json(metadata)) == {k: v for k, v in metadata.items() if k != "saved_as"}
    metadata["saved_as"][0]["extra"] = 1
    assert [(p.path, p.message) for p in validate(metadata)] == [("saved_as[0].extra", "unknown key")]
