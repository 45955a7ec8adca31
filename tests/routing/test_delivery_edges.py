"""Delivery destinations against a failing or misbehaving DMS: every failure is a
:class:`DeliveryError` naming the destination and the cause (never a secret), classified
retryable or permanent, and never leaves half a delivery where the DMS looks.

Real parts throughout: a loopback HTTP server (the project's WsgiServer, or a bare socket for a
server that never answers), SQLite files and the session's PostgreSQL, real folders. Faults
the test machine cannot produce for real (a full disk, an unreadable directory: tests run as
root) are injected by making one OS call raise the ``OSError`` the kernel would.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.edxml.model import BytesData
from connector.httpserver import WsgiServer
from connector.routing import folder_delivery, sql_delivery
from connector.routing.config import FolderDestinationConfig, SqlDestinationConfig
from connector.routing.delivery import DeliveryError
from connector.routing.folder_delivery import FolderDestination
from connector.routing.sql_delivery import SqlDestination, create_example_tables

from .conftest import make_hook

TOKEN = "s3cret-token-value-42"


# --------------------------------------------------------------------------- helpers


class _BrokenReader(io.RawIOBase):
    """A stream that yields ``good`` bytes and then fails like a disk that went away."""

    def __init__(self, good: bytes, error: BaseException):
        self._good = io.BytesIO(good)
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        block = self._good.read(len(buffer))
        if not block:
            raise self._error
        buffer[: len(block)] = block
        return len(block)


class _FailingData(BytesData):
    """Attachment content whose reading fails part way through (the spool file vanished, EIO)."""

    def __init__(self, data: bytes, error: BaseException | None = None):
        super().__init__(data)
        self._head = data[: len(data) // 2]
        self._fail = error or OSError(errno.EIO, "Input/output error")

    def open(self):
        return io.BufferedReader(_BrokenReader(self._head, self._fail), buffer_size=64)


def _break_first_attachment(delivery, error: BaseException | None = None):
    attachment = delivery.message.attachments[0]
    attachment.data = _FailingData(b"%PDF-" + b"x" * 5000, error)
    return delivery


class _App:
    """A WSGI DMS that answers every request with one scripted answer."""

    def __init__(self, status: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None):
        self.status, self.body, self.headers = status, body, headers or []
        self.calls = 0

    def __call__(self, environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.calls += 1
        start_response(self.status, [("Content-Length", str(len(self.body))), *self.headers])
        return [self.body]


def _deliver_hook(app: _App, delivery, **settings) -> DeliveryError:
    with WsgiServer(app) as server, pytest.raises(DeliveryError) as info:
        make_hook(f"{server.url}/api", **settings).deliver(delivery)
    assert info.value.destination == "dms-api" and "dms-api" in str(info.value)
    return info.value


# --------------------------------------------------------------------------- webhook


@pytest.mark.parametrize(
    ("status", "retryable", "calls"),
    [
        ("400 Bad Request", False, 1),
        ("401 Unauthorized", False, 1),
        ("403 Forbidden", False, 1),
        ("404 Not Found", False, 1),
        ("409 Conflict", True, 3),  # the Idempotency-Key is still being processed: retried (module docstring)
        ("413 Payload Too Large", False, 1),
        ("422 Unprocessable Entity", False, 1),
        ("429 Too Many Requests", True, 3),
        ("500 Internal Server Error", True, 3),
        ("502 Bad Gateway", True, 3),
        ("503 Service Unavailable", True, 3),
    ],
)
def test_webhook_status_classification(make_delivery, status, retryable, calls):
    app = _App(status, b'{"error": "nope"}', [("Content-Type", "application/json")])
    error = _deliver_hook(app, make_delivery(), retries=2)
    assert error.retryable is retryable
    assert f"HTTP {status}" in str(error) and '{"error": "nope"}' in str(error)
    assert app.calls == calls


@pytest.mark.parametrize("code", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect", "308 Permanent Redirect"])
def test_webhook_redirect_is_not_followed_and_permanent(make_delivery, code):
    app = _App(code, b"", [("Location", "https://dms.example/new")])
    error = _deliver_hook(app, make_delivery(), retries=3)
    assert not error.retryable and app.calls == 1
    assert f"HTTP {code.split()[0]} redirect to https://dms.example/new (not followed; fix the url)" in str(error)


def test_webhook_html_error_page_is_quoted_as_one_line_text(make_delivery):
    page = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title>\n<style>body{color:red}</style></head>\n"
            b"<body>\n  <h1>502 Bad Gateway</h1>\n  <p>nginx/1.24</p>\n</body></html>\n")
    app = _App("502 Bad Gateway", page, [("Content-Type", "text/html")])
    error = _deliver_hook(app, make_delivery(), retries=0)
    assert error.retryable
    text = str(error)
    assert "\n" not in text and "<" not in text and "color:red" not in text
    assert "502 Bad Gateway nginx/1.24" in text


def test_webhook_never_quotes_the_token_the_dms_echoes(make_delivery, monkeypatch):
    monkeypatch.setenv("DMS_TOKEN", TOKEN)
    app = _App("401 Unauthorized", f"invalid credentials: Authorization: Bearer {TOKEN}".encode())
    error = _deliver_hook(app, make_delivery(), auth="bearer", token_env="DMS_TOKEN")
    assert not error.retryable and "HTTP 401" in str(error)
    assert TOKEN not in str(error) and TOKEN not in error.message and "invalid credentials" in str(error)


def test_webhook_never_quotes_the_basic_password_the_dms_echoes(make_delivery, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("mật-khẩu-bí-mật\n", encoding="utf-8")
    import base64

    encoded = base64.b64encode("vanthu:mật-khẩu-bí-mật".encode()).decode()
    body = f"bad login vanthu / mật-khẩu-bí-mật (header Basic {encoded})".encode()
    app = _App("403 Forbidden", body, [("Content-Type", "text/plain; charset=utf-8")])
    error = _deliver_hook(app, make_delivery(), auth="basic", username="vanthu", password_file=secret)
    assert not error.retryable
    assert "mật-khẩu-bí-mật" not in str(error) and encoded not in str(error) and "bad login" in str(error)


def test_webhook_secret_query_parameter_never_in_the_error(make_delivery):
    app = _App("500 Internal Server Error", b"boom")
    with WsgiServer(app) as server, pytest.raises(DeliveryError) as info:
        make_hook(f"{server.url}/api?api_key={TOKEN}&x=1", retries=0).deliver(make_delivery())
    assert info.value.retryable and TOKEN not in str(info.value) and "api_key=***" in str(info.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(DeliveryError) as info:
        make_hook(f"http://127.0.0.1:{port}/api?api_key={TOKEN}", retries=0).deliver(make_delivery())
    assert info.value.retryable and "cannot connect" in str(info.value) and TOKEN not in str(info.value)


def test_webhook_2xx_is_delivered_whatever_the_body(make_delivery):
    """The contract: 2xx is delivered (the body is not read); no body-level failure is defined."""
    app = _App("200 OK", b'{"ok": false}')
    with WsgiServer(app) as server:
        assert make_hook(f"{server.url}/api").deliver(make_delivery()) == f"{server.url}/api"


def test_webhook_429_retry_after_is_not_hammered(make_delivery):
    """A DMS that says "come back in 120 s" is not retried within the call; the engine's own
    schedule retries it later, and the error says how long the DMS asked to wait."""
    app = _App("429 Too Many Requests", b"slow down", [("Retry-After", "120")])
    sleeps: list[float] = []
    with WsgiServer(app) as server, pytest.raises(DeliveryError) as info:
        make_hook(f"{server.url}/api", sleeps, retries=3, backoff_s=0.5).deliver(make_delivery())
    error = info.value
    assert error.retryable and app.calls == 1 and sleeps == []
    assert "HTTP 429" in str(error) and "Retry-After 120" in str(error)


def test_webhook_short_retry_after_is_waited_in_call(make_delivery):
    app = _App("503 Service Unavailable", b"", [("Retry-After", "1")])
    sleeps: list[float] = []
    with WsgiServer(app) as server, pytest.raises(DeliveryError) as info:
        make_hook(f"{server.url}/api", sleeps, retries=2, backoff_s=0.1).deliver(make_delivery())
    assert info.value.retryable and app.calls == 3 and sleeps == [1.0, 1.0]


def test_webhook_429_without_retry_after_backs_off(make_delivery):
    app = _App("429 Too Many Requests", b"")
    sleeps: list[float] = []
    with WsgiServer(app) as server, pytest.raises(DeliveryError, match="after 3 attempts") as info:
        make_hook(f"{server.url}/api", sleeps, retries=2, backoff_s=0.5).deliver(make_delivery())
    assert info.value.retryable and app.calls == 3 and len(sleeps) == 2


@pytest.fixture
def silent_server():
    """A TCP server that accepts, reads, and never answers (a hung DMS)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def run():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_webhook_hung_dms_times_out_retryable(make_delivery, silent_server):
    sleeps: list[float] = []
    with pytest.raises(DeliveryError) as info:
        make_hook(silent_server, sleeps, retries=1, timeout_s=0.3).deliver(make_delivery())
    assert info.value.retryable and "timed out" in str(info.value) and "after 2 attempts" in str(info.value)


def test_webhook_connection_dropped_mid_answer_is_retryable(make_delivery):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def run():
        for _ in range(2):
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.close()  # hangs up without an answer

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        with pytest.raises(DeliveryError) as info:
            make_hook(f"http://127.0.0.1:{listener.getsockname()[1]}/api", retries=1, timeout_s=5).deliver(make_delivery())
    finally:
        thread.join(timeout=10)
        listener.close()
    assert info.value.retryable and "after 2 attempts" in str(info.value)


def test_webhook_attachment_unreadable_mid_send_names_it(make_delivery):
    app = _App("201 Created")
    delivery = _break_first_attachment(make_delivery(attachments=[("cong-van.pdf", b"x")]))
    error = _deliver_hook(app, delivery, retries=2, timeout_s=5)
    assert error.retryable
    assert "cong-van.pdf" in str(error) and "Input/output error" in str(error)
    assert "cannot connect" not in str(error)


# --------------------------------------------------------------------------- SQL


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dms.sqlite'}"
    return request.getfixturevalue("pg_url")


def _sql(url: str, **settings) -> SqlDestination:
    return SqlDestination("dms-db", SqlDestinationConfig(type="sql", url=url, **settings))


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def _exec(url: str, *statements: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_sql_constraint_violation_on_attachments_leaves_no_rows(db_url, make_delivery):
    create_example_tables(db_url)
    # the DMS's own rule, broken by the second attachment: no .pdf names
    _exec(db_url, "DROP TABLE edoc_attachments",
          "CREATE TABLE edoc_attachments (delivery_id varchar(255) REFERENCES edoc_documents(delivery_id), "
          "position integer, name text NOT NULL CHECK (name NOT LIKE '%.pdf'), content bytea)"
          if db_url.startswith("postgresql") else
          "CREATE TABLE edoc_attachments (delivery_id varchar(255) REFERENCES edoc_documents(delivery_id), "
          "position integer, name text NOT NULL CHECK (name NOT LIKE '%.pdf'), content blob)")
    dest = _sql(db_url)
    with pytest.raises(DeliveryError) as info:
        dest.deliver(make_delivery("c-1", attachments=[("a.docx", b"PK"), ("b.pdf", b"%PDF")]))
    dest.close()
    assert not info.value.retryable and "dms-db" in str(info.value) and "check" in str(info.value).lower()
    assert _count(db_url, "edoc_documents") == 0 and _count(db_url, "edoc_attachments") == 0


def test_sql_not_null_column_without_default_is_permanent(db_url, make_delivery):
    create_example_tables(db_url)
    _exec(db_url, "ALTER TABLE edoc_documents ADD COLUMN owner_id integer NOT NULL DEFAULT 0")
    if db_url.startswith("postgresql"):
        _exec(db_url, "ALTER TABLE edoc_documents ALTER COLUMN owner_id DROP DEFAULT")
    else:  # SQLite cannot drop a default: build the table again
        _exec(db_url, "DROP TABLE edoc_attachments", "DROP TABLE edoc_documents",
              "CREATE TABLE edoc_documents (delivery_id varchar(255) primary key, kind text, document_id text, "
              "metadata text, owner_id integer NOT NULL)",
              "CREATE TABLE edoc_attachments (delivery_id varchar(255), position integer, name text, content blob)")
    dest = _sql(db_url)
    with pytest.raises(DeliveryError, match="owner_id") as info:
        dest.deliver(make_delivery("nn-1"))
    dest.close()
    assert not info.value.retryable
    assert _count(db_url, "edoc_documents") == 0 and _count(db_url, "edoc_attachments") == 0


def test_sql_connection_lost_mid_transaction_is_retryable_and_leaves_no_rows(pg_url, make_delivery):
    create_example_tables(pg_url)
    dest = _sql(pg_url)
    engine = dest._connect()
    killer = sa.create_engine(pg_url)

    @sa.event.listens_for(engine, "before_cursor_execute")
    def cut(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO EDOC_ATTACHMENTS"):
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with killer.begin() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    try:
        with pytest.raises(DeliveryError) as info:
            dest.deliver(make_delivery("lost-1", attachments=[("a.pdf", b"%PDF-a")]))
        assert info.value.retryable and "database error" in str(info.value)
        assert _count(pg_url, "edoc_documents") == 0 and _count(pg_url, "edoc_attachments") == 0
        sa.event.remove(engine, "before_cursor_execute", cut)
        assert dest.deliver(make_delivery("lost-1", attachments=[("a.pdf", b"%PDF-a")]))  # the retry goes through
        assert _count(pg_url, "edoc_documents") == 1 and _count(pg_url, "edoc_attachments") == 1
    finally:
        dest.close()
        killer.dispose()


def test_sql_read_only_database_fails_cleanly(tmp_path, make_delivery):
    path = tmp_path / "ro.sqlite"
    create_example_tables(f"sqlite:///{path}")
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    with pytest.raises(DeliveryError, match="readonly database") as info:
        _sql(url).deliver(make_delivery("ro-1"))
    assert "dms-db" in str(info.value) and info.value.retryable
    assert _count(f"sqlite:///{path}", "edoc_documents") == 0


def test_sql_read_only_postgres_transaction_fails_cleanly(pg_url, make_delivery):
    create_example_tables(pg_url)
    database = sa.engine.make_url(pg_url).database
    _exec(pg_url, f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    try:
        with pytest.raises(DeliveryError, match="read-only transaction") as info:
            _sql(pg_url).deliver(make_delivery("ro-2"))
        assert "dms-db" in str(info.value) and info.value.retryable  # a standby after failover: try later
    finally:
        _exec(pg_url, "SET TRANSACTION READ WRITE", f'ALTER DATABASE "{database}" SET default_transaction_read_only = off')
    assert _count(pg_url, "edoc_documents") == 0


def test_sql_missing_driver_is_a_delivery_error(make_delivery):
    with pytest.raises(DeliveryError) as info:
        _sql("mysql+mysqldb://dms@127.0.0.1/dms").deliver(make_delivery())
    assert not info.value.retryable and "dms-db" in str(info.value) and "mysqldb" in str(info.value).lower()


def test_sql_password_never_in_the_error(make_delivery, monkeypatch):
    monkeypatch.setenv("DMS_DB_PASSWORD", "pg-s3cret-pw")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError) as info:
        _sql(f"postgresql+psycopg://dms@127.0.0.1:{port}/dms?connect_timeout=3",
             password_env="DMS_DB_PASSWORD").deliver(make_delivery())
    assert info.value.retryable and "pg-s3cret-pw" not in str(info.value)


def test_sql_bytea_attachment_unreadable_names_it(tmp_path, make_delivery):
    url = f"sqlite:///{tmp_path / 'dms.sqlite'}"
    create_example_tables(url)
    delivery = _break_first_attachment(make_delivery("rd-1", attachments=[("cong-van.pdf", b"x")]))
    with pytest.raises(DeliveryError) as info:
        _sql(url).deliver(delivery)
    text = str(info.value)
    assert info.value.retryable and "cong-van.pdf" in text and "Input/output error" in text and "None" not in text
    assert _count(url, "edoc_documents") == 0 and _count(url, "edoc_attachments") == 0


def test_sql_path_mode_disk_full_leaves_no_rows_and_no_visible_file(tmp_path, make_delivery, monkeypatch):
    url = f"sqlite:///{tmp_path / 'dms.sqlite'}"
    create_example_tables(url)
    store = tmp_path / "files"
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sql_delivery.os, "fsync", full)
    with pytest.raises(DeliveryError, match="No space left on device") as info:
        _sql(url, attachments="path", path_root=store).deliver(make_delivery("full-1", attachments=[("a.pdf", b"%PDF")]))
    monkeypatch.setattr(sql_delivery.os, "fsync", real_fsync)
    assert info.value.retryable and str(store) in str(info.value)
    assert [p for p in store.rglob("*") if p.is_file()] == []
    assert _count(url, "edoc_documents") == 0


def test_sql_path_root_is_a_file(tmp_path, make_delivery):
    url = f"sqlite:///{tmp_path / 'dms.sqlite'}"
    create_example_tables(url)
    store = tmp_path / "files"
    store.write_text("not a folder")
    with pytest.raises(DeliveryError) as info:
        _sql(url, attachments="path", path_root=store).deliver(make_delivery("pf-1"))
    assert str(store) in str(info.value) and "dms-db" in str(info.value)
    assert _count(url, "edoc_documents") == 0


# --------------------------------------------------------------------------- folder


def _folder(path: Path, **settings) -> FolderDestination:
    return FolderDestination("dms-folder", FolderDestinationConfig(type="folder", path=path, **settings))


def _visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def test_folder_path_became_a_file(tmp_path, make_delivery):
    root = tmp_path / "inbox"
    root.write_text("oops")
    with pytest.raises(DeliveryError) as info:
        _folder(root).deliver(make_delivery())
    assert info.value.retryable and str(root) in str(info.value) and "dms-folder" in str(info.value)


def test_folder_path_under_a_file(tmp_path, make_delivery):
    blocker = tmp_path / "share"
    blocker.write_text("a file, not the mount point")
    with pytest.raises(DeliveryError) as info:
        _folder(blocker / "inbox").deliver(make_delivery())
    assert info.value.retryable and str(blocker / "inbox") in str(info.value)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EIO])
def test_folder_write_failure_leaves_nothing_visible(tmp_path, make_delivery, monkeypatch, code):
    root = tmp_path / "inbox"
    root.mkdir()
    calls = {"n": 0}
    real = folder_delivery._write

    def failing(path, src):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(path, "xb") as out:
                out.write(b"half")
            raise OSError(code, os.strerror(code), str(path))
        real(path, src)

    monkeypatch.setattr(folder_delivery, "_write", failing)
    with pytest.raises(DeliveryError) as info:
        _folder(root).deliver(make_delivery(attachments=[("a.pdf", b"%PDF-a"), ("b.pdf", b"%PDF-b")]))
    assert info.value.retryable and os.strerror(code) in str(info.value) and str(root) in str(info.value)
    assert list(root.iterdir()) == []  # neither a visible folder nor a leftover temporary one


def test_folder_rename_refused_leaves_nothing(tmp_path, make_delivery, monkeypatch):
    root = tmp_path / "inbox"
    root.mkdir()

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    monkeypatch.setattr(folder_delivery.os, "rename", refuse)
    with pytest.raises(DeliveryError, match="Permission denied") as info:
        _folder(root).deliver(make_delivery())
    assert info.value.retryable and list(root.iterdir()) == []


def test_folder_unreadable_root_listing_is_a_delivery_error(tmp_path, make_delivery, monkeypatch):
    root = tmp_path / "inbox"
    root.mkdir()

    def broken(path):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(folder_delivery.os, "scandir", broken)
    with pytest.raises(DeliveryError) as info:
        _folder(root).deliver(make_delivery())
    assert info.value.retryable and str(root) in str(info.value) and "Input/output error" in str(info.value)


def test_folder_attachment_unreadable_mid_copy_names_it(tmp_path, make_delivery):
    root = tmp_path / "inbox"
    root.mkdir()
    delivery = _break_first_attachment(make_delivery(attachments=[("cong-van.pdf", b"x")]))
    with pytest.raises(DeliveryError) as info:
        _folder(root).deliver(delivery)
    assert info.value.retryable and "cong-van.pdf" in str(info.value) and "Input/output error" in str(info.value)
    assert list(root.iterdir()) == []


def test_folder_missing_evidence_names_it(tmp_path, make_delivery):
    root = tmp_path / "inbox"
    root.mkdir()
    delivery = make_delivery()
    delivery.raw_path.chmod(0o644)
    delivery.raw_path.unlink()
    with pytest.raises(DeliveryError) as info:
        _folder(root).deliver(delivery)
    assert str(delivery.raw_path) in str(info.value) and list(root.iterdir()) == []


def test_folder_retry_after_failure_delivers_once(tmp_path, make_delivery, monkeypatch):
    root = tmp_path / "inbox"
    root.mkdir()
    delivery = make_delivery("again-1")

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(folder_delivery, "_write_bytes", full)
        with pytest.raises(DeliveryError):
            _folder(root).deliver(delivery)
    first = _folder(root).deliver(delivery)
    assert _folder(root).deliver(delivery) == first and _visible(root) == [Path(first).name]


def test_webhook_413_sent_before_the_body_is_read_is_permanent(make_delivery):
    """A proxy refusing a large upload answers 413 at once and hangs up while we still send."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def run():
        conn, _ = listener.accept()
        conn.recv(4096)  # the headers, not the 8 MB body
        conn.sendall(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 17\r\nConnection: close\r\n\r\n"
                     b"body too large!!\n")
        conn.settimeout(10)
        try:  # drain what the client still sends, so the close is not a reset that could eat the answer
            while conn.recv(1 << 16):
                pass
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        with pytest.raises(DeliveryError) as info:
            make_hook(f"http://127.0.0.1:{listener.getsockname()[1]}/api", retries=0, timeout_s=5).deliver(
                make_delivery(attachments=[("big.pdf", b"%PDF" * (2 * 1024**2))]))
    finally:
        thread.join(timeout=10)
        listener.close()
    assert "HTTP 413" in str(info.value) and not info.value.retryable
