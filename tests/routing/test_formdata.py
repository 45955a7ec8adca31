"""multipart/form-data both ways: what FormBody writes, parse_form reads back, whatever the
read sizes (boundaries straddling reads), and a malformed body is a FormError."""

from __future__ import annotations

import io
import random

import pytest

from connector.multipart import MultipartError as FormError
from connector.routing.formdata import (
    FormBody,
    FormField,
    FormFile,
    parse_form,
)


class Trickle(io.RawIOBase):
    """A stream that hands out its bytes in small random pieces."""

    def __init__(self, data: bytes, seed: int):
        self.data, self.pos, self.rng = data, 0, random.Random(seed)

    def read(self, n: int = -1) -> bytes:
        size = self.rng.randint(1, 97)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_with_boundaries_straddling_reads(tmp_path, seed):
    payload = bytes(random.Random(seed).getrandbits(8) for _ in range(5000)) + b"\r\n--almost-a-boundary\r\n"
    body = FormBody([
        FormField("metadata", '{"subject": "Công văn"}'.encode(), "application/json"),
        FormFile("attachment", "Tờ trình số 5.pdf", len(payload), lambda: io.BytesIO(payload), "application/pdf"),
        FormFile("attachment", "empty.txt", 0, lambda: io.BytesIO(b"")),
    ])
    data = b"".join(body)
    assert len(data) == len(body)
    form = parse_form(Trickle(data, seed), body.content_type, tmp_path, file_path=lambda i, name: tmp_path / f"p{i}")
    assert form.fields == {"metadata": ['{"subject": "Công văn"}'.encode()]}
    assert [(f.field, f.filename, f.content_type, f.size) for f in form.files] == [
        ("attachment", "Tờ trình số 5.pdf", "application/pdf", len(payload)),
        ("attachment", "empty.txt", "application/octet-stream", 0),
    ]
    assert form.files[0].path.read_bytes() == payload


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no boundary at all", "no boundary found"),
        (b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue without end", "no closing boundary"),
        (b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n", "part 1 has no Content-Disposition name"),
        (b"--B\r\nbroken header\r\n\r\nx\r\n--B--\r\n", "malformed part header line"),
    ],
)
def test_malformed_bodies(tmp_path, body, message):
    with pytest.raises(FormError, match=message):
        parse_form(io.BytesIO(body), "multipart/form-data; boundary=B", tmp_path)
