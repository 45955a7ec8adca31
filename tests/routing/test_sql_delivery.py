"""SQL delivery into a DMS's tables on real PostgreSQL and on SQLite: one transaction per item,
idempotent on the delivery id (also under a concurrent race), bytea or stored paths, and
precise errors for a wrong schema or a database that is down."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.routing.config import SqlDestinationConfig
from connector.routing.delivery import DeliveryError
from connector.routing.sql_delivery import SqlDestination, create_example_tables


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dms.sqlite'}"
    return request.getfixturevalue("pg_url")


def _dest(url: str, **settings) -> SqlDestination:
    return SqlDestination("dms-db", SqlDestinationConfig(type="sql", url=url, **settings))


def _rows(url: str, query: str) -> list[dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()


def _metadata(value) -> dict:
    return value if isinstance(value, dict) else json.loads(value)


def test_bytea_rows_in_one_transaction_and_idempotent(db_url, make_delivery):
    create_example_tables(db_url)
    dest = _dest(db_url)
    delivery = make_delivery("axis-3:000.00.00.H16", attachments=[("Quyết định.pdf", b"%PDF-q"), ("phu-luc.docx", b"PK\x03\x04x")])
    assert dest.deliver(delivery) == "edoc_documents[delivery_id=axis-3:000.00.00.H16]"
    assert dest.deliver(delivery) == "edoc_documents[delivery_id=axis-3:000.00.00.H16]"
    assert _dest(db_url).deliver(make_delivery("axis-3:000.00.00.H16")) == "edoc_documents[delivery_id=axis-3:000.00.00.H16]"
    dest.close()
    (row,) = _rows(db_url, "SELECT * FROM edoc_documents")
    assert row["kind"] == "edoc" and row["document_id"] == delivery.message.document_id
    assert row["sender"] == "000.00.00.G22" and row["code"] == "1/VPCP-TTĐT" and row["status_code"] is None
    assert row["subject"] == delivery.message.subject and row["delivered_at"] is not None
    meta = _metadata(row["metadata"])
    assert meta["signature"]["status"] == "placeholder" and meta["delivery"]["id"] == "axis-3:000.00.00.H16"
    files = _rows(db_url, "SELECT position, name, file_name, content, size, sha256, path FROM edoc_attachments ORDER BY position")
    assert [(f["position"], f["name"], bytes(f["content"]), f["size"], f["path"]) for f in files] == [
        (1, "Quyết định.pdf", b"%PDF-q", 6, None),
        (2, "phu-luc.docx", b"PK\x03\x04x", 5, None),
    ]


def test_status_row_matches_the_original_document(db_url, make_delivery):
    create_example_tables(db_url)
    delivery = make_delivery("st-9", kind="status")
    _dest(db_url).deliver(delivery)
    (row,) = _rows(db_url, "SELECT kind, document_id, status_code, sender FROM edoc_documents")
    assert row == {"kind": "status", "document_id": delivery.document_id, "status_code": "03", "sender": "000.00.00.G22"}
    assert delivery.document_id.startswith("000.00.00.H16,")  # the id of the document we sent
    assert _rows(db_url, "SELECT count(*) AS n FROM edoc_attachments") == [{"n": 0}]


def test_path_mode_copies_files_and_stores_paths(db_url, make_delivery, tmp_path):
    create_example_tables(db_url)
    store = tmp_path / "dms-files"
    dest = _dest(db_url, attachments="path", path_root=store)
    delivery = make_delivery("p-1", attachments=[("a.pdf", b"%PDF-a"), ("b.pdf", b"%PDF-b")])
    dest.deliver(delivery)
    dest.deliver(delivery)
    rows = _rows(db_url, "SELECT name, path, content FROM edoc_attachments ORDER BY position")
    assert [r["content"] for r in rows] == [None, None]
    assert [Path(r["path"]).read_bytes() for r in rows] == [b"%PDF-a", b"%PDF-b"]
    assert all(Path(r["path"]).parent.parent == store for r in rows)
    assert _rows(db_url, "SELECT count(*) AS n FROM edoc_documents") == [{"n": 1}]


def test_concurrent_deliveries_of_one_id_make_one_row(pg_url, make_delivery):
    create_example_tables(pg_url)
    deliveries = [make_delivery("race-1") for _ in range(4)]
    results, errors = [], []

    def run(delivery):
        dest = _dest(pg_url)
        try:
            results.append(dest.deliver(delivery))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            dest.close()

    threads = [threading.Thread(target=run, args=(d,)) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and set(results) == {"edoc_documents[delivery_id=race-1]"} and len(results) == 4
    assert _rows(pg_url, "SELECT count(*) AS n FROM edoc_documents") == [{"n": 1}]
    assert _rows(pg_url, "SELECT count(*) AS n FROM edoc_attachments") == [{"n": 1}]


def test_missing_table_or_column_is_permanent_and_says_which(db_url, make_delivery):
    with pytest.raises(DeliveryError, match="table edoc_documents does not exist") as info:
        _dest(db_url).deliver(make_delivery())
    assert not info.value.retryable and "create_example_tables" in str(info.value)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE edoc_documents (delivery_id varchar(255) primary key, kind text)"))
        conn.execute(sa.text("CREATE TABLE edoc_attachments (delivery_id varchar(255), position integer, name text)"))
    engine.dispose()
    with pytest.raises(DeliveryError, match="table edoc_documents lacks columns document_id, metadata") as info:
        _dest(db_url).deliver(make_delivery())
    assert not info.value.retryable


def test_dms_own_table_shape_with_text_metadata(tmp_path, make_delivery):
    """Optional columns may be missing, the DMS may add its own; metadata may be plain text."""
    url = f"sqlite:///{tmp_path / 'own.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE inbox (delivery_id text primary key, kind text, document_id text, "
                             "metadata text, handled integer default 0)"))
        conn.execute(sa.text("CREATE TABLE inbox_files (delivery_id text, position integer, name text, content blob)"))
    engine.dispose()
    _dest(url, table="inbox", attachments_table="inbox_files").deliver(make_delivery("own-1"))
    (row,) = _rows(url, "SELECT * FROM inbox")
    assert row["handled"] == 0 and json.loads(row["metadata"])["delivery"]["id"] == "own-1"
    assert [r["name"] for r in _rows(url, "SELECT name FROM inbox_files")] == ["cong-van-1.pdf"]


def test_database_down_is_retryable(make_delivery):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError, match="database error") as info:
        _dest(f"postgresql+psycopg://dms@127.0.0.1:{port}/dms?connect_timeout=3").deliver(make_delivery())
    assert info.value.retryable


def test_oversized_bytea_attachment_is_refused_before_any_write(tmp_path, make_delivery):
    url = f"sqlite:///{tmp_path / 'dms.sqlite'}"
    create_example_tables(url)
    with pytest.raises(DeliveryError, match="over max_inline_bytes \\(4\\); use attachments = \"path\"") as info:
        _dest(url, max_inline_bytes=4).deliver(make_delivery(attachments=[("big.pdf", b"%PDF-12345")]))
    assert not info.value.retryable
    assert _rows(url, "SELECT count(*) AS n FROM edoc_documents") == [{"n": 0}]


def test_a_dms_transaction_holding_the_table_does_not_hang_delivery(db_url, make_delivery):
    """The DMS holds a lock on its table (a long transaction): delivery gives up after
    ``timeout_s`` with a retryable error, leaves no rows, and succeeds once the lock is gone."""
    create_example_tables(db_url)
    blocker = sa.create_engine(db_url, connect_args={"timeout": 0} if db_url.startswith("sqlite") else {})
    dest = _dest(db_url, timeout_s=1)
    outcome: list[BaseException | str] = []
    with blocker.connect() as conn:
        if db_url.startswith("sqlite"):
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("LOCK TABLE edoc_documents IN ACCESS EXCLUSIVE MODE")

        def deliver() -> None:
            try:
                outcome.append(dest.deliver(make_delivery("axis-lock:000.00.00.H16")))
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                outcome.append(exc)

        worker = threading.Thread(target=deliver, daemon=True)
        worker.start()
        worker.join(60)  # without a bound, the delivery waits for the lock for ever
        assert not worker.is_alive(), "delivery hung behind the DMS's lock"
        conn.exec_driver_sql("ROLLBACK")
    blocker.dispose()
    (error,) = outcome
    assert isinstance(error, DeliveryError) and error.retryable, error
    assert "dms-db" in str(error) and ("lock" in str(error).lower() or "timeout" in str(error).lower()), str(error)
    assert _rows(db_url, "SELECT count(*) AS n FROM edoc_documents") == [{"n": 0}]
    assert dest.deliver(make_delivery("axis-lock:000.00.00.H16")) == "edoc_documents[delivery_id=axis-lock:000.00.00.H16]"
    dest.close()


def test_timeouts_leave_what_the_url_sets_alone():
    from connector.routing.sql_delivery import _timeouts

    pg = sa.engine.make_url("postgresql+psycopg://dms@db/dms")
    assert _timeouts(pg, 2.5) == {"connect_timeout": 3, "options": "-c statement_timeout=2500 -c lock_timeout=2500"}
    assert _timeouts(sa.engine.make_url("postgresql+psycopg://dms@db/dms?connect_timeout=7&options=-c%20x%3D1"), 2) == {}
    assert _timeouts(sa.engine.make_url("sqlite:///x.db"), 4) == {"timeout": 4}
