"""Hostile edXML: every attack in ``tests/hostile/`` is refused with a clear, located message,
nothing is read from the disk or fetched from the network, and nothing is written anywhere.

The corpus files are real files (see ``tests/hostile/README.md``). Network attacks point at a
real loopback HTTP server started here, which counts the requests it gets (it must get none).
Local-file attacks that the corpus cannot carry (they need this test's own paths) point at a
FIFO watched by a separate process, which notices if anything ever opens it. Every check runs
through ``parse()`` in-process and through the command line (``python cli.py ...``) in a
subprocess, exactly as an operator would run it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from connector.edxml.errors import EdxmlError, Problem
from connector.edxml.files import ExtractError, extract_to
from connector.edxml.model import Attachment, BytesData, Edoc
from connector.edxml.parse import parse
from connector.edxml.reader import Limits
from tests.hostile import make_corpus

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli.py"
CORPUS = ROOT / "tests" / "hostile"
PORT_PLACEHOLDER = b"__PORT__"
LEAK_MARKERS = ("PWNED-BY-LOOPBACK", "PROBE-SECRET-CONTENT")
PASSWD = Path("/etc/passwd")


# --------------------------------------------------------------------------- what each file must do


@dataclasses.dataclass(frozen=True)
class Rejection:
    """How a hostile file must be refused: one of ``causes`` (all words of it, any case) on one
    of the lines ``lines(data)`` returns; or else as ``or_else`` says."""

    causes: tuple[tuple[str, ...], ...]
    lines: object  # Callable[[bytes], set[int]]
    or_else: "Rejection | None" = None

    def says(self, text: str) -> bool:
        low = text.lower()
        return any(all(word.lower() in low for word in cause) for cause in self.causes) or bool(
            self.or_else and self.or_else.says(text)
        )

    def accepts(self, message: str, line: int | None, data: bytes) -> bool:
        """True when an error with ``message`` on ``line`` is the refusal expected."""
        low = message.lower()
        if line in self.lines(data) and any(all(w.lower() in low for w in cause) for cause in self.causes):
            return True
        return bool(self.or_else and self.or_else.accepts(message, line, data))

    def located_in(self, out: str, data: bytes) -> bool:
        """True when some line of the CLI output names an expected line and cause."""
        for text in out.splitlines():
            for number in re.findall(r"line (\d+)", text):
                if self.accepts(text, int(number), data):
                    return True
        return False

    def describe(self, data: bytes) -> str:
        own = f"{' or '.join(' + '.join(c) for c in self.causes)} on line {sorted(self.lines(data))}"
        return own + (f", or else {self.or_else.describe(data)}" if self.or_else else "")


def lines_of(marker: bytes, *, before: int = 0):
    """The 1-based lines holding ``marker`` (and, with ``before``, the lines just above them)."""

    def find(data: bytes) -> set[int]:
        found = set()
        data = as_utf8(data)
        for line, text in enumerate(data.split(b"\n"), start=1):
            if marker in text:
                found.update(range(line - before, line + 1))
        assert found, f"marker {marker!r} not in the file"
        return found

    return find


def as_utf8(data: bytes) -> bytes:
    """UTF-16 and UTF-32 corpus files (known by their byte-order mark) as UTF-8, to find lines."""
    for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom) :].decode(codec).encode("utf-8")
    return data


def last_lines(data: bytes) -> set[int]:
    n = data.count(b"\n")
    return {n, n + 1}


DOCTYPE = Rejection((("DOCTYPE",),), lines_of(b"<!DOCTYPE"))
# UTF-32 is not an encoding every XML parser must support: refusing the encoding outright
# (on the first lines) is as good as refusing the DOCTYPE.
DOCTYPE_OR_NO_UTF32 = Rejection(
    (("DOCTYPE",),), lines_of(b"<!DOCTYPE"), Rejection((("encoding",), ("UTF-8",), ("UTF-32",)), lambda data: {1, 2})
)
PAYLOAD_LINE = lines_of(b"<edXML:ContentTransferEncoded")

REJECTED: dict[str, Rejection] = {
    "xxe-local-file.edxml": DOCTYPE,
    "xxe-network.edxml": DOCTYPE,
    "external-dtd.edxml": DOCTYPE,
    "external-dtd-local.edxml": DOCTYPE,
    "xxe-local-file-utf16.edxml": DOCTYPE,
    "external-dtd-local-utf16be.edxml": DOCTYPE,
    "external-dtd-local-utf32.edxml": DOCTYPE_OR_NO_UTF32,
    "parameter-entity.edxml": DOCTYPE,
    "billion-laughs.edxml": DOCTYPE,
    "quadratic-blowup.edxml": DOCTYPE,
    "deep-nesting.edxml": Rejection(((f"nest deeper than {Limits().max_depth}",),), lines_of(b"<x>")),
    "huge-attribute.edxml": Rejection(((f"longer than {Limits().max_attribute}",),), lines_of(b'note="')),
    "invalid-utf8.edxml": Rejection((("UTF-8",), ("encoding",)), lines_of(b"\xc3\x28")),
    "base64-bad-char.edxml": Rejection((("base64",),), PAYLOAD_LINE),
    "base64-truncated.edxml": Rejection((("base64",),), PAYLOAD_LINE),
    "zip-bomb.edxml": Rejection((("ZIP", "limit"),), PAYLOAD_LINE),
    "name-traversal-unix.edxml": Rejection((("path separator",),), lines_of(b"../../etc/passwd")),
    "name-traversal-windows.edxml": Rejection((("path separator",),), lines_of(b"..\\..\\win.ini")),
    "name-absolute.edxml": Rejection((("path separator",),), lines_of(b"/abs/path")),
    "name-control-char.edxml": Rejection((("invalid", "char"),), lines_of(b"&#x1;")),
    "name-device-con.edxml": Rejection((("reserved device name",),), lines_of(b"CON.pdf")),
    "manifest-reference-without-attachment.edxml": Rejection((("ghost",),), lines_of(b"cid:ghost", before=1)),
    "manifest-attachment-without-reference.edxml": Rejection((("stowaway",),), lines_of(b"cid:stowaway", before=1)),
    "truncated.edxml": Rejection((("truncated",), ("premature end",)), last_lines),
}

# Fine files: they must be accepted and carry exactly the base document.
ACCEPTED_SAME_AS_BASE = ["ok-utf8-bom.edxml", "ok-utf16le-bom.edxml", "ok-utf16be-bom.edxml", "ok-pi-and-comments.edxml"]
# Accepted (a warning at most), but a careless reader would have acted on them.
ACCEPTED_INERT = ["ok-zip-slip-entry-name.edxml", "xinclude-local-file.edxml", "schema-location-network.edxml"]
NAME_ATTACKS = [
    "name-traversal-unix.edxml",
    "name-traversal-windows.edxml",
    "name-absolute.edxml",
    "name-control-char.edxml",
    "name-device-con.edxml",
]
NETWORK_FILES = sorted(p.name for p in CORPUS.glob("*.edxml") if PORT_PLACEHOLDER in p.read_bytes())

BASE_SUBJECT = "V/v kết nối, liên thông phần mềm quản lý văn bản (số 1)"


def _has_streaming_switch() -> bool:
    return "in_memory_below" in {f.name for f in dataclasses.fields(Limits)}


# Both ways the reader may take: the default (libxml2 for small inputs) and the streaming
# expat reader forced, when the reader has the switch. An attack must fail on both.
READERS = {"default": Limits()}
if _has_streaming_switch():
    READERS["streaming"] = Limits(in_memory_below=0)


# --------------------------------------------------------------------------- helpers and fixtures


def clean_env() -> dict[str, str]:
    """The environment for the CLI, without proxies (a proxy would hide a fetch from the
    loopback server and make "zero requests" meaningless)."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def run_cli_raw(*args: object, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python cli.py ARGS`` as an operator runs it; stdout and stderr decoded as UTF-8."""
    proc = subprocess.run(
        [sys.executable, str(CLI), *map(str, args)],
        cwd=cwd or ROOT,
        capture_output=True,
        timeout=timeout,
        env=clean_env(),
    )
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def run_cli(*args: object, cwd: Path | None = None, timeout: float = 180) -> tuple[int, str]:
    """Exit code and everything printed (stdout then stderr)."""
    proc = run_cli_raw(*args, cwd=cwd, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def passwd_lines() -> list[str]:
    if not PASSWD.is_file():
        return ["root:x:0:0"]
    return [line for line in PASSWD.read_text(errors="replace").splitlines() if line.strip()][:3] or ["root:x:0:0"]


def assert_no_leak(out: str) -> None:
    assert "Traceback" not in out, out
    for marker in LEAK_MARKERS:
        assert marker not in out, f"content fetched or read by the parser appears in the output: {out[:2000]}"
    for line in passwd_lines():
        assert line not in out, f"/etc/passwd content appears in the output: {out[:2000]}"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with its SHA-256 (to prove nothing was written)."""
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_fifo():
            result[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif not path.is_dir():
            result[str(path.relative_to(folder))] = "special"
    return result


def payload_of(data: bytes) -> bytes:
    match = re.search(rb"<edXML:ContentTransferEncoded[^>]*>([^<]*)<", data)
    assert match, "no ContentTransferEncoded in the file"
    return base64.b64decode(match.group(1))


BASE_PDF = payload_of((CORPUS / "ok-utf8-bom.edxml").read_bytes())


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers everything (so a parser that fetches would get something) and records it."""

    def _answer(self) -> None:
        self.server.requests.append((self.command, self.path))  # type: ignore[attr-defined]
        if self.path.endswith(".dtd"):
            body = b'<!ENTITY exfiltrate "PWNED-BY-LOOPBACK">'
        else:
            body = b"PWNED-BY-LOOPBACK"
        self.send_response(200)
        self.send_header("Content-Type", "application/xml-dtd" if self.path.endswith(".dtd") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def loopback(monkeypatch):
    """A real HTTP server on 127.0.0.1 that counts requests; checked to work before use."""
    for key in list(os.environ):
        if "proxy" in key.lower():
            monkeypatch.delenv(key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/self-check", timeout=10) as answer:
        assert answer.read() == b"PWNED-BY-LOOPBACK"
    assert server.requests == [("GET", "/self-check")]  # type: ignore[attr-defined]
    server.requests.clear()  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


_WATCHER = r"""
import errno, os, sys, time
fifo, flag = sys.argv[1], sys.argv[2]
while True:
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        time.sleep(0.002)
        continue
    with open(flag, "a") as fh:
        fh.write("opened\n")
    try:
        os.write(fd, b"PROBE-SECRET-CONTENT\n")
    except OSError:
        pass
    os.close(fd)
    time.sleep(0.01)
"""


class FifoProbe:
    """A named pipe that tells whether anything opened it for reading.

    A separate process polls the pipe for a reader (a non-blocking open for writing succeeds
    only when someone has it open for reading); if one appears it records the fact and feeds
    the reader a marker, so a parser that opened it is never left blocked.
    """

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "secret-probe"
        self.flag = folder / "secret-probe.opened"
        os.mkfifo(self.path)
        self.process = subprocess.Popen([sys.executable, "-c", _WATCHER, str(self.path), str(self.flag)])

    @property
    def opened(self) -> bool:
        return self.flag.exists()

    def uri(self) -> bytes:
        return b"file://" + str(self.path).encode()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def fifo_probe(tmp_path):
    probe = FifoProbe(tmp_path / "probe")
    # Prove the probe works: opening the pipe for reading is noticed (and does not block).
    with open(probe.path, "rb") as fh:
        # Under load the watcher may feed a slow reader more than once before it sees EOF.
        content = fh.read()
    assert content and set(content.splitlines()) == {b"PROBE-SECRET-CONTENT"}
    time.sleep(0.1)  # let the watcher notice the reader is gone before the flag is reset
    deadline = time.monotonic() + 10
    while not probe.opened and time.monotonic() < deadline:
        time.sleep(0.01)
    assert probe.opened
    probe.flag.unlink()
    try:
        yield probe
    finally:
        probe.stop()


def corpus_file(name: str, folder: Path, port: int | None = None) -> Path:
    """The corpus file, or a copy in ``folder`` with the loopback port filled in."""
    source = CORPUS / name
    data = source.read_bytes()
    if PORT_PLACEHOLDER not in data:
        return source
    assert port is not None, f"{name} needs the loopback server"
    target = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.replace(PORT_PLACEHOLDER, str(port).encode()))
    return target


def problems_of(path: Path, limits: Limits) -> list[Problem]:
    """All problems parse() reports: the fatal ones (EdxmlError) or the report's errors."""
    try:
        with parse(path, limits=limits) as parsed:
            return [p for p in parsed.report.problems if p.severity == "error"]
    except EdxmlError as exc:
        return list(exc.problems)


def assert_rejected(problems: list[Problem], rejection: Rejection, data: bytes, source: Path) -> None:
    assert problems, f"{source.name} was accepted"
    good = [p for p in problems if rejection.accepts(p.message, p.line, data)]
    assert good, f"{source.name}: expected an error saying {rejection.describe(data)}; got {[str(p) for p in problems]}"
    assert all(p.source == str(source) for p in problems), [p.source for p in problems]
    for p in problems:
        assert_no_leak(p.message)


# --------------------------------------------------------------------------- the corpus itself


def test_corpus_files_are_small_listed_and_all_covered():
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in CORPUS.glob("*.edxml"))
    listed = sorted(set(re.findall(r"`([\w.-]+\.edxml)`", readme)))
    assert files == listed, "tests/hostile/README.md and the corpus files disagree"
    for name in files:
        assert (CORPUS / name).stat().st_size < 200_000, name
    covered = set(REJECTED) | set(ACCEPTED_SAME_AS_BASE) | set(ACCEPTED_INERT)
    assert set(files) == covered, f"files without assertions: {set(files) - covered}; missing: {covered - set(files)}"
    assert set(NETWORK_FILES) >= {"xxe-network.edxml", "external-dtd.edxml", "parameter-entity.edxml"}


# --------------------------------------------------------------------------- parse(): rejected, located


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("name", sorted(REJECTED))
def test_parse_rejects_with_line_and_cause(name, reader, loopback, tmp_path):
    path = corpus_file(name, tmp_path, loopback.server_address[1])
    problems = problems_of(path, READERS[reader])
    assert_rejected(problems, REJECTED[name], path.read_bytes(), path)
    assert loopback.requests == []


# --------------------------------------------------------------------------- the CLI: rejected, located


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_cli_validate_rejects_with_file_line_and_cause(name, loopback, tmp_path):
    path = corpus_file(name, tmp_path, loopback.server_address[1])
    code, out = run_cli("validate", path, cwd=tmp_path)
    assert code == 1, out
    assert_no_leak(out)
    assert str(path) in out, out
    rejection, data = REJECTED[name], path.read_bytes()
    assert rejection.located_in(out, data), f"expected {rejection.describe(data)} in the output: {out}"
    assert loopback.requests == []


def test_cli_validate_json_reports_every_hostile_file(loopback, tmp_path):
    paths = [corpus_file(name, tmp_path, loopback.server_address[1]) for name in sorted(REJECTED)]
    proc = run_cli_raw("validate", "--json", *paths, cwd=tmp_path)
    assert proc.returncode == 1
    assert_no_leak(proc.stdout + proc.stderr)
    results = json.loads(proc.stdout)
    assert [r["file"] for r in results] == [str(p) for p in paths]
    for path, result in zip(paths, results):
        rejection = REJECTED[path.name]
        assert result["valid"] is False, result
        assert result["errors"] >= 1, result
        data = path.read_bytes()
        assert any(
            p["severity"] == "error" and rejection.accepts(p["message"], p["line"], data) for p in result["problems"]
        ), result
    assert loopback.requests == []


@pytest.mark.parametrize("name", sorted(set(REJECTED) - set(NAME_ATTACKS)))
def test_cli_extract_refuses_and_writes_nothing(name, loopback, tmp_path):
    path = corpus_file(name, tmp_path / "in", loopback.server_address[1])
    workdir = tmp_path / "cwd" / "a" / "b" / "c"
    workdir.mkdir(parents=True)
    out_dir = tmp_path / "x" / "y" / "out"
    before = snapshot(tmp_path)
    code, out = run_cli("extract", path, "-d", out_dir, cwd=workdir)
    assert code == 1, out
    assert_no_leak(out)
    assert str(path) in out, out
    assert REJECTED[name].says(out), out
    assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())
    assert snapshot(tmp_path) == before
    assert loopback.requests == []


# --------------------------------------------------------------------------- names that escape the folder


@pytest.mark.parametrize("name", NAME_ATTACKS)
def test_extract_of_escaping_names_writes_nowhere(name, tmp_path):
    passwd_before = hashlib.sha256(PASSWD.read_bytes()).hexdigest() if PASSWD.is_file() else None
    parent_before = sorted(p.name for p in tmp_path.parent.iterdir())
    workdir = tmp_path / "cwd" / "a" / "b" / "c"
    workdir.mkdir(parents=True)
    out_dir = tmp_path / "x" / "y" / "out"
    code, out = run_cli("extract", CORPUS / name, "-d", out_dir, cwd=workdir)
    assert code == 1, out
    assert "Traceback" not in out
    assert str(CORPUS / name) in out
    assert REJECTED[name].says(out), out
    assert not out_dir.exists() or not any(out_dir.iterdir())
    # The places the names point at, relative to the target folder and to the working folder:
    for base in (out_dir, workdir):
        for target in ("../../etc/passwd", "..\\..\\win.ini", "../../win.ini", "CON.pdf", "CON"):
            assert not (base / target).exists(), base / target
    assert not (tmp_path / "x" / "etc").exists()
    assert not (tmp_path / "cwd" / "a" / "etc").exists()
    assert not Path("/abs/path").exists() and not Path("/abs").exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == parent_before
    stray = [p for p in tmp_path.rglob("*") if p.is_file() and p.name not in ("secret-probe",)]
    assert stray == [], stray
    if passwd_before is not None:
        assert hashlib.sha256(PASSWD.read_bytes()).hexdigest() == passwd_before


@pytest.mark.parametrize("bad_name", ["../../etc/passwd", "..\\..\\win.ini", "/abs/path", "a\x01b.pdf", "CON.pdf", "..", ""])
def test_extract_to_refuses_unsafe_names_even_without_validation(bad_name, tmp_path):
    """Defence in depth: the writer itself refuses, before creating anything."""
    doc = Edoc(
        attachments=[
            Attachment(content_id="ok", name="ok.pdf", content_type="application/pdf", data=BytesData(b"%PDF ok")),
            Attachment(content_id="bad", name=bad_name, content_type="application/pdf", data=BytesData(b"%PDF bad")),
        ]
    )
    out_dir = tmp_path / "x" / "y" / "out"
    with pytest.raises(ExtractError):
        extract_to(doc, out_dir)
    assert not out_dir.exists() or not any(out_dir.iterdir())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_zip_entry_name_is_ignored_on_extract(tmp_path):
    """The VNPT packaging's ZIP entry name never becomes a path: the AttachmentName does."""
    name = "ok-zip-slip-entry-name.edxml"
    workdir = tmp_path / "cwd" / "a" / "b" / "c"
    workdir.mkdir(parents=True)
    out_dir = tmp_path / "x" / "y" / "out"
    code, out = run_cli("extract", CORPUS / name, "-d", out_dir, cwd=workdir)
    assert code == 0, out
    assert sorted(p.name for p in out_dir.iterdir()) == ["cong-van-1.pdf", "metadata.json"]
    assert (out_dir / "cong-van-1.pdf").read_bytes() == BASE_PDF
    assert [p for p in tmp_path.rglob("zip-slip-owned*")] == []
    assert not Path("/tmp/zip-slip-owned.pdf").exists()


# --------------------------------------------------------------------------- fine files stay fine


@pytest.mark.parametrize("reader", sorted(READERS))
def test_bom_utf16_comments_and_pis_give_the_same_document(reader, loopback, tmp_path):
    port = loopback.server_address[1]
    models = {}
    for name in ACCEPTED_SAME_AS_BASE:
        path = corpus_file(name, tmp_path, port)
        with parse(path, limits=READERS[reader]) as parsed:
            assert parsed.report.problems == [], [str(p) for p in parsed.report.problems]
            models[name] = parsed.message
            assert parsed.message.subject == BASE_SUBJECT
            with parsed.message.attachments[0].data.open() as fh:
                assert fh.read() == BASE_PDF
    first = models.pop(ACCEPTED_SAME_AS_BASE[0])
    for name, model in models.items():
        assert model == first, name
    assert loopback.requests == []


@pytest.mark.parametrize("name", ACCEPTED_SAME_AS_BASE)
def test_cli_accepts_bom_utf16_comments_and_pis(name, loopback, tmp_path):
    path = corpus_file(name, tmp_path / "in", loopback.server_address[1])
    code, out = run_cli("validate", path)
    assert code == 0, out
    assert "valid" in out and "INVALID" not in out
    code, out = run_cli("inspect", path)
    assert code == 0, out
    assert BASE_SUBJECT in out
    assert "commented out" not in out
    out_dir = tmp_path / "out"
    code, out = run_cli("extract", path, "-d", out_dir)
    assert code == 0, out
    assert (out_dir / "cong-van-1.pdf").read_bytes() == BASE_PDF
    assert json.loads((out_dir / "metadata.json").read_text(encoding="utf-8"))["subject"] == BASE_SUBJECT
    assert loopback.requests == []


def test_xinclude_is_kept_as_an_unknown_element_never_processed(tmp_path):
    path = CORPUS / "xinclude-local-file.edxml"
    with parse(path) as parsed:
        assert [p.severity for p in parsed.report.problems] == ["warning"]
        assert "include" in parsed.report.problems[0].message
        assert [u.path.rsplit("/", 1)[-1] for u in parsed.message.unknown] == ["include"]
        assert parsed.message.subject == BASE_SUBJECT
    for args in (["validate", path], ["inspect", path], ["inspect", "--json", path]):
        code, out = run_cli(*args)
        assert code == 0, out
        assert_no_leak(out)


def test_schema_location_is_never_fetched(loopback, tmp_path):
    path = corpus_file("schema-location-network.edxml", tmp_path, loopback.server_address[1])
    with parse(path) as parsed:
        assert parsed.report.errors == []
        assert parsed.message.subject == BASE_SUBJECT
    for args in (["validate", path], ["inspect", "--json", path], ["extract", path, "-d", tmp_path / "out"]):
        code, out = run_cli(*args)
        assert code == 0, out
        assert_no_leak(out)
    assert loopback.requests == []


# --------------------------------------------------------------------------- nothing fetched, nothing read


@pytest.mark.parametrize("name", NETWORK_FILES)
def test_no_command_fetches_anything(name, loopback, tmp_path):
    path = corpus_file(name, tmp_path, loopback.server_address[1])
    expected = 1 if name in REJECTED else 0
    for args in (["inspect", path], ["inspect", "--json", path]):
        code, out = run_cli(*args, cwd=tmp_path)
        assert code == expected, (args, out)
        assert_no_leak(out)
    code, out = run_cli("extract", path, "-d", tmp_path / "out", cwd=tmp_path)
    assert code == expected, out
    assert_no_leak(out)
    assert loopback.requests == [], loopback.requests


def _local_file_attack(probe: FifoProbe, attack: str, encoding: str) -> bytes:
    """A document that names the probe's FIFO as an entity, DTD or XInclude, in ``encoding``."""
    uri = probe.uri()
    doctypes = {
        "entity": (b'<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "' + uri + b'">]>', b"&xxe;"),
        "external-dtd": (b'<!DOCTYPE edXML SYSTEM "' + uri + b'">', None),
        "external-dtd-bare-path": (b'<!DOCTYPE edXML SYSTEM "' + str(probe.path).encode() + b'">', None),
        "external-dtd-public": (b'<!DOCTYPE edXML PUBLIC "-//X//DTD X//EN" "' + uri + b'">', None),
        "parameter-entity": (b'<!DOCTYPE edXML [<!ENTITY % p SYSTEM "' + uri + b'"> %p;]>', b"&exfiltrate;"),
    }
    if attack == "xinclude":
        data = make_corpus.replace_once(
            make_corpus.base_bytes(),
            b"</edXML:ToPlaces>",
            b'</edXML:ToPlaces><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="' + uri + b'" parse="text"/>',
        )
    else:
        doctype, subject = doctypes[attack]
        data = make_corpus.with_doctype(doctype, subject=subject)
    return data if encoding == "UTF-8" else make_corpus.reencode(data, encoding)


# (attack, encoding): every attack in UTF-8; the DTD ones also in UTF-16 and UTF-32, where
# the bytes "<!DOCTYPE" do not appear as such.
LOCAL_ATTACKS = [
    (attack, "UTF-8")
    for attack in ["entity", "external-dtd", "external-dtd-bare-path", "external-dtd-public", "parameter-entity", "xinclude"]
] + [
    (attack, encoding)
    for attack in ["entity", "external-dtd", "parameter-entity"]
    for encoding in ["UTF-16LE", "UTF-16BE", "UTF-32"]
]


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("attack,encoding", LOCAL_ATTACKS)
def test_parse_never_opens_a_local_file(attack, encoding, reader, fifo_probe, tmp_path):
    path = tmp_path / f"{attack}-{encoding}.edxml"
    data = _local_file_attack(fifo_probe, attack, encoding)
    path.write_bytes(data)
    problems = problems_of(path, READERS[reader])
    time.sleep(0.05)  # give the watcher a moment to notice a late open
    assert not fifo_probe.opened, f"parse() opened {fifo_probe.path}, named in the document ({attack}, {encoding})"
    for p in problems:
        assert_no_leak(p.message)
    if attack != "xinclude":
        assert_rejected(problems, DOCTYPE_OR_NO_UTF32 if encoding == "UTF-32" else DOCTYPE, data, path)


@pytest.mark.parametrize("attack,encoding", LOCAL_ATTACKS)
def test_cli_never_opens_a_local_file(attack, encoding, fifo_probe, tmp_path):
    path = tmp_path / f"{attack}-{encoding}.edxml"
    data = _local_file_attack(fifo_probe, attack, encoding)
    path.write_bytes(data)
    expected = 0 if attack == "xinclude" else 1
    rejection = DOCTYPE_OR_NO_UTF32 if encoding == "UTF-32" else DOCTYPE
    for args in (["validate", path], ["inspect", "--json", path], ["extract", path, "-d", tmp_path / "out"]):
        code, out = run_cli(*args, cwd=tmp_path)
        assert code == expected, (args, out)
        assert_no_leak(out)
        if expected:
            assert rejection.located_in(out, data), out
    time.sleep(0.05)
    assert not fifo_probe.opened, f"the CLI opened {fifo_probe.path}, named in the document ({attack}, {encoding})"


# --------------------------------------------------------------------------- large inputs (made here)


def _padded(data: bytes) -> bytes:
    """``data`` grown past the in-memory threshold with a trailing comment (legal after the root)."""
    size = getattr(Limits(), "in_memory_below", 8 << 20) + (1 << 20)
    return data + b"\n<!--" + b" " * size + b"-->\n"


@pytest.mark.parametrize(
    "name", ["xxe-local-file.edxml", "xxe-network.edxml", "external-dtd.edxml", "parameter-entity.edxml", "billion-laughs.edxml"]
)
def test_large_doctype_attacks_are_refused_too(name, loopback, tmp_path):
    """Past the in-memory threshold the streaming reader takes over: same refusal."""
    path = tmp_path / name
    data = (CORPUS / name).read_bytes().replace(PORT_PLACEHOLDER, str(loopback.server_address[1]).encode())
    path.write_bytes(_padded(data))
    code, out = run_cli("validate", path, cwd=tmp_path)
    assert code == 1, out
    assert_no_leak(out)
    assert str(path) in out and DOCTYPE.located_in(out, path.read_bytes()), out
    assert loopback.requests == []


def _too_many_elements() -> bytes:
    count = Limits().max_elements + 1
    return make_corpus.replace_once(
        make_corpus.base_bytes(),
        b"<edXML:Content>",
        b"<edXML:Content>" + b"<x/>" * count,
    )


@pytest.mark.parametrize("reader", sorted(READERS))
def test_parse_refuses_too_many_elements(reader, tmp_path):
    path = tmp_path / "too-many-elements.edxml"
    data = _too_many_elements()
    path.write_bytes(data)
    rejection = Rejection(((f"more than {Limits().max_elements} elements",),), lines_of(b"<x/>"))
    assert_rejected(problems_of(path, READERS[reader]), rejection, data, path)


def test_cli_refuses_too_many_elements(tmp_path):
    path = tmp_path / "too-many-elements.edxml"
    data = _too_many_elements()
    path.write_bytes(data)
    code, out = run_cli("validate", path, cwd=tmp_path)
    assert code == 1, out
    assert "Traceback" not in out
    (line,) = lines_of(b"<x/>")(data)
    assert str(path) in out, out
    assert Rejection(((f"more than {Limits().max_elements} elements",),), lambda _: {line}).located_in(out, data), out


def _zip_bomb_claiming(real_size: int, claimed_size: int | None = None) -> bytes:
    """A deflated one-entry ZIP of ``real_size`` zeros; optionally lying about its size."""
    payload = bytearray(make_corpus.zip_bomb_payload(real_size))
    if claimed_size is not None:
        with zipfile.ZipFile(io.BytesIO(bytes(payload))) as archive:
            info = archive.infolist()[0]
        local = info.header_offset
        assert payload[local : local + 4] == b"PK\x03\x04"
        payload[local + 22 : local + 26] = claimed_size.to_bytes(4, "little")
        central = payload.rindex(b"PK\x01\x02")
        payload[central + 24 : central + 28] = claimed_size.to_bytes(4, "little")
        with zipfile.ZipFile(io.BytesIO(bytes(payload))) as archive:
            assert archive.infolist()[0].file_size == claimed_size
    return bytes(payload)


@pytest.mark.parametrize(
    "label,real,claimed",
    [("200 MiB of zeros", 200 << 20, None), ("50 MiB claiming 100 bytes", 50 << 20, 100)],
)
def test_zip_bombs_are_refused_without_expanding(label, real, claimed, tmp_path):
    path = tmp_path / "bomb.edxml"
    path.write_bytes(make_corpus.with_zip_payload(_zip_bomb_claiming(real, claimed)))
    spool = tmp_path / "spool"
    spool.mkdir()
    with parse(path, spool_dir=spool) as parsed:
        errors = parsed.report.errors
        assert errors, label
        assert any("ZIP" in p.message for p in errors), [str(p) for p in errors]
        assert all(a.size is None or a.size < real for a in parsed.message.attachments)
    code, out = run_cli("validate", path, cwd=tmp_path)
    assert code == 1, out
    assert "Traceback" not in out and "ZIP" in out and str(path) in out, out
    out_dir = tmp_path / "out"
    code, out = run_cli("extract", path, "-d", out_dir, cwd=tmp_path)
    assert code == 1, out
    assert not out_dir.exists() or not any(out_dir.iterdir())
