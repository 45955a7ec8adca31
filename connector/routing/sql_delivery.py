"""SQL delivery: rows in tables of the DMS's own database (PostgreSQL, or anything SQLAlchemy
speaks), one transaction per item, idempotent on the delivery id.

Expected shape (:func:`create_example_tables` creates it; the DMS may add its own columns,
with defaults, and may leave out the optional ones)::

    <table>                         one row per delivered item
      delivery_id   varchar(255)    PRIMARY KEY (or UNIQUE)     required: the idempotency key
      kind          varchar(16)     'edoc' | 'status'           required
      document_id   text            the document's id; for a status, the id of the document it
                                    answers (so the DMS matches it to its own row)   required
      metadata      jsonb / text    document JSON + signature + axis_id + received_at + delivery
                                                                required
      sender        varchar(64)     From agency code            optional
      code          text            số/ký hiệu                   optional
      subject       text            trích yếu                    optional
      status_code   varchar(2)      a status's code (01..16)    optional
      received_at   timestamptz     when the connector received it   optional
      delivered_at  timestamptz     DEFAULT now()               (filled by the database)

    <attachments_table>             one row per attachment
      delivery_id   varchar(255)    REFERENCES <table>          required
      position      integer         1, 2, ... (PRIMARY KEY with delivery_id)   required
      name          text            the attachment's name as sent   required
      content       bytea           the file (attachments = "bytea")  required in that mode
      path          text            where the file was copied (attachments = "path") required there
      file_name     text            the safe file name used     optional
      content_id, content_type text; size bigint; sha256 varchar(64)  optional

Idempotency: the document row is looked for first and the insert runs in the same transaction;
a concurrent insert of the same delivery id loses on the primary key and is then found, so the
DMS gets one row set whatever happens. With ``attachments = "path"`` the files are copied under
``path_root/<document id>__<delivery id>/`` (never over a different file) before the rows
are written; a retry reuses files already there with the same SHA-256.

Errors: the database unreachable (or the connection lost) or read-only (a standby after a
failover, a database put in read-only mode) is retryable, and so is an
attachment that cannot be read or copied (named in the error); a missing table or column, a
type or constraint the DMS's schema refuses, a database driver that is not installed, or an
attachment over ``max_inline_bytes`` in bytea mode is permanent and says which.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, NoSuchTableError, SQLAlchemyError

from connector.edxml.model import CHUNK, Edoc, Status

from .config import SecretError, SqlDestinationConfig, resolve_secret
from .delivery import Delivery, DeliveryError
from .naming import attachment_file_names, delivery_label, metadata_bytes

__all__ = ["SqlDestination", "create_example_tables", "example_tables"]

DOCUMENT_REQUIRED = ("delivery_id", "kind", "document_id", "metadata")
DOCUMENT_OPTIONAL = ("sender", "code", "subject", "status_code", "received_at")
ATTACHMENT_REQUIRED = ("delivery_id", "position", "name")
ATTACHMENT_OPTIONAL = ("file_name", "content_id", "content_type", "size", "sha256")
# SQLSTATEs the DB-API reports outside OperationalError that a later try can get past:
# 25006 read_only_sql_transaction (PostgreSQL's answer from a standby or a read-only database)
TRANSIENT_SQLSTATES = frozenset({"25006"})


def _timeouts(url: sa.engine.URL, seconds: float) -> dict[str, Any]:
    """Driver arguments that bound every wait of a delivery to ``seconds``: connecting, each
    statement and each lock wait on PostgreSQL; a locked database file on SQLite. Settings the
    URL already carries (``?connect_timeout=``, ``?options=``) are left as written."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {"timeout": seconds}
    if backend != "postgresql":
        return {}
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = max(1, int(seconds + 0.999))
    if "options" not in url.query:
        ms = max(1, int(seconds * 1000))
        args["options"] = f"-c statement_timeout={ms} -c lock_timeout={ms}"
    return args


def example_tables(metadata: sa.MetaData, table: str = "edoc_documents",
                   attachments_table: str = "edoc_attachments") -> tuple[sa.Table, sa.Table]:
    """The expected tables (see the module docstring) added to ``metadata``."""
    schema, doc_name = _split(table)
    att_schema, att_name = _split(attachments_table)
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    documents = sa.Table(
        doc_name, metadata,
        sa.Column("delivery_id", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("document_id", sa.Text, nullable=True, index=True),
        sa.Column("sender", sa.String(64)),
        sa.Column("code", sa.Text),
        sa.Column("subject", sa.Text),
        sa.Column("status_code", sa.String(2)),
        sa.Column("received_at", sa.DateTime(timezone=True)),
        sa.Column("metadata", json_type, nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )
    target = f"{schema}.{doc_name}.delivery_id" if schema else f"{doc_name}.delivery_id"
    attachments = sa.Table(
        att_name, metadata,
        sa.Column("delivery_id", sa.String(255), sa.ForeignKey(target, ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("content_id", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("file_name", sa.Text),
        sa.Column("content_type", sa.Text),
        sa.Column("size", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("content", sa.LargeBinary),
        sa.Column("path", sa.Text),
        schema=att_schema,
    )
    return documents, attachments


def create_example_tables(url: str, *, table: str = "edoc_documents", attachments_table: str = "edoc_attachments",
                          password: str | None = None) -> None:
    """Create the expected tables in the database at ``url`` (if absent): for a new DMS
    integration, a test, or as the reference a DMS's own migration follows."""
    sa_url = make_url(url)
    if password:
        sa_url = sa_url.set(password=password)
    engine = sa.create_engine(sa_url)
    try:
        metadata = sa.MetaData()
        example_tables(metadata, table, attachments_table)
        metadata.create_all(engine)
    finally:
        engine.dispose()


def _split(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


class SqlDestination:
    """Inserts each item into ``config.table`` (+ ``config.attachments_table``)."""

    def __init__(self, name: str, config: SqlDestinationConfig):
        self.name = name
        self.config = config
        self._engine: Engine | None = None
        self._tables: tuple[sa.Table, sa.Table] | None = None

    def deliver(self, delivery: Delivery) -> str:
        ref = f"{self.config.table}[delivery_id={delivery.delivery_id}]"
        attachments = delivery.attachments
        for attachment in attachments:
            if attachment.data is None:
                raise self._error(f"attachment {attachment.name!r} has no content to store", retryable=False)
            if self.config.attachments == "bytea" and attachment.data.size > self.config.max_inline_bytes:
                raise self._error(
                    f"attachment {attachment.name!r} is {attachment.data.size} bytes, over max_inline_bytes "
                    f"({self.config.max_inline_bytes}); use attachments = \"path\" for large files",
                    retryable=False,
                )
        try:
            engine = self._connect()
            with engine.connect() as conn:
                documents, files_table = self._reflect(conn)
                if self._exists(conn, documents, delivery.delivery_id):
                    return ref
            names = attachment_file_names(attachments)
            paths = self._copy_files(delivery, names) if self.config.attachments == "path" else []
            extra = {
                "id": delivery.delivery_id,
                "destination": self.name,
                "attachments": [
                    {"content_id": a.content_id, "name": a.name, "file": n, **({"path": str(p)} if paths else {})}
                    for a, n, p in zip(attachments, names, paths or [None] * len(names))
                ],
                "raw_file": None,
            }
            try:
                with engine.begin() as conn:
                    conn.execute(documents.insert().values(**self._document_row(documents, delivery, extra)))
                    for position, (attachment, file_name) in enumerate(zip(attachments, names), start=1):
                        row = self._attachment_row(files_table, delivery, position, attachment, file_name,
                                                   paths[position - 1] if paths else None)
                        conn.execute(files_table.insert().values(**row))
            except IntegrityError:
                with engine.connect() as conn:
                    if self._exists(conn, documents, delivery.delivery_id):
                        return ref  # a concurrent attempt delivered it first
                raise
            return ref
        except DeliveryError:
            raise
        except NoSuchTableError as exc:
            raise self._error(f"table {exc} does not exist (see create_example_tables for the expected shape)",
                              retryable=False) from None
        except DBAPIError as exc:
            retryable = (exc.connection_invalidated
                         or isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))
                         or _sqlstate(exc.orig) in TRANSIENT_SQLSTATES)
            raise self._error(f"database error: {_first_line(exc.orig or exc)}", retryable=retryable) from None
        except SQLAlchemyError as exc:
            raise self._error(f"database error: {_first_line(exc)}", retryable=False) from None
        except OSError as exc:
            raise self._error(f"cannot copy attachments under {self.config.path_root}: {exc.strerror or exc}",
                              retryable=True) from None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # ------------------------------------------------------------------ internals

    def _error(self, message: str, *, retryable: bool) -> DeliveryError:
        return DeliveryError(message, destination=self.name, retryable=retryable)

    def _connect(self) -> Engine:
        if self._engine is None:
            url = make_url(self.config.url)
            if self.config.password_env or self.config.password_file:
                try:
                    password = resolve_secret(self.config.password_env, self.config.password_file,
                                              f"database password of destination {self.name!r}")
                except SecretError as exc:
                    raise self._error(str(exc), retryable=False) from None
                url = url.set(password=password)
            try:
                self._engine = sa.create_engine(url, pool_pre_ping=True,
                                                connect_args=_timeouts(url, self.config.timeout_s))
            except ImportError as exc:  # the dialect's driver module is not installed
                raise self._error(f"cannot load the database driver for {url.drivername!r}: {exc}",
                                  retryable=False) from None
        return self._engine

    def _reflect(self, conn: Connection) -> tuple[sa.Table, sa.Table]:
        if self._tables is None:
            metadata = sa.MetaData()
            schema, name = _split(self.config.table)
            documents = sa.Table(name, metadata, schema=schema, autoload_with=conn)
            att_schema, att_name = _split(self.config.attachments_table)
            files = sa.Table(att_name, metadata, schema=att_schema, autoload_with=conn)
            content = "content" if self.config.attachments == "bytea" else "path"
            _require(documents, DOCUMENT_REQUIRED, self)
            _require(files, ATTACHMENT_REQUIRED + (content,), self)
            self._tables = (documents, files)
        return self._tables

    @staticmethod
    def _exists(conn: Connection, documents: sa.Table, delivery_id: str) -> bool:
        query = sa.select(documents.c.delivery_id).where(documents.c.delivery_id == delivery_id)
        return conn.execute(query).first() is not None

    def _document_row(self, table: sa.Table, delivery: Delivery, extra: dict) -> dict[str, Any]:
        message = delivery.message
        values: dict[str, Any] = {
            "delivery_id": delivery.delivery_id,
            "kind": delivery.kind,
            "document_id": delivery.document_id,
            "sender": message.from_.organ_id,
            "code": None,
            "subject": None,
            "status_code": None,
            "received_at": delivery.metadata.get("received_at"),
        }
        if isinstance(message, Edoc):
            values["code"] = "/".join(x for x in (message.code.number, message.code.notation) if x) or None
            values["subject"] = message.subject
        elif isinstance(message, Status):
            values["status_code"] = message.status_code
        text = metadata_bytes(delivery, extra).decode("utf-8")
        row = {k: _coerce(table.c[k], v) for k, v in values.items() if k in table.c}
        row["metadata"] = _json_value(table.c["metadata"], text)
        return row

    def _attachment_row(self, table: sa.Table, delivery: Delivery, position: int, attachment, file_name: str,
                        path: Path | None) -> dict[str, Any]:
        values: dict[str, Any] = {
            "delivery_id": delivery.delivery_id,
            "position": position,
            "name": attachment.name,
            "file_name": file_name,
            "content_id": attachment.content_id,
            "content_type": attachment.content_type,
            "size": attachment.data.size,
            "sha256": attachment.data.sha256,
        }
        if path is not None:
            values["path"] = str(path)
        else:
            try:
                with attachment.data.open() as fh:
                    values["content"] = fh.read(self.config.max_inline_bytes + 1)
            except OSError as exc:
                raise self._error(f"cannot read attachment {attachment.name!r}: {exc.strerror or exc}",
                                  retryable=True) from None
        return {k: v for k, v in values.items() if k in table.c}

    def _copy_files(self, delivery: Delivery, names: list[str]) -> list[Path]:
        """Copy the attachments under ``path_root/<label>/`` (idempotent; never over other content)."""
        root = Path(self.config.path_root)  # type: ignore[arg-type]
        folder = root / delivery_label(delivery)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for attachment, name in zip(delivery.attachments, names):
            target = folder / name
            if target.exists():
                if _sha256(target) != attachment.data.sha256:
                    raise self._error(f"{target} already exists with other content; not overwritten", retryable=False)
            else:
                try:
                    with attachment.data.open() as src:
                        _write_new(target, src)
                except OSError as exc:
                    raise self._error(f"cannot copy attachment {attachment.name!r} to {target}: "
                                      f"{exc.strerror or exc}", retryable=True) from None
            paths.append(target)
        return paths


def _require(table: sa.Table, columns: tuple[str, ...], dest: SqlDestination) -> None:
    missing = [c for c in columns if c not in table.c]
    if missing:
        raise dest._error(
            f"table {table.fullname} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            "(see create_example_tables for the expected shape)",
            retryable=False,
        )


def _coerce(column: sa.Column, value: Any) -> Any:
    """``received_at`` as a datetime for a timestamp column, as text otherwise."""
    if value is None:
        return None
    if isinstance(column.type, sa.DateTime):
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _json_value(column: sa.Column, text: str) -> Any:
    """The metadata as the column wants it: a parsed object for a JSON column, else the text."""
    if isinstance(column.type, sa.JSON):
        return json.loads(text)
    return text


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _write_new(target: Path, src) -> None:
    """Write to a temporary name and link it into place: a crash leaves no half file under
    ``target``, and an existing ``target`` is never replaced."""
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            while block := src.read(CHUNK):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a DB-API error (psycopg 3 ``sqlstate``, psycopg2 ``pgcode``), if it has one."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
