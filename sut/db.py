"""One small database layer over SQLite and PostgreSQL, so every service runs the same SQL on
both: `?` placeholders (rewritten to `%s` for psycopg), one connection per thread, each
connection instrumented by the OTel driver instrumentation with the service's tracer provider.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sut.errors import SutError

#: PostgreSQL connections per service process (SUT_DB_POOL)
PG_POOL_SIZE = int(os.environ.get("SUT_DB_POOL") or 4)
INVENTORY_INDEX = "idx_inventory_product"
INVENTORY_INDEX_SQL = f"CREATE INDEX IF NOT EXISTS {INVENTORY_INDEX} ON inventory (product_id)"
STOCK_SQL = "SELECT product_id, SUM(quantity) FROM inventory WHERE product_id IN ({}) GROUP BY product_id"


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> Path:
    """'sqlite:///x.db', 'sqlite:x.db' or a plain path -> Path."""
    if url.startswith("sqlite:///"):  # sqlite:///relative, sqlite:////absolute
        return Path(url[10:])
    if url.startswith("sqlite:"):
        return Path(url[7:])
    return Path(url)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


def raw_connect(url: str, *, connect_timeout: int = 5) -> Any:
    """An uninstrumented connection (seeding, DDL, checks). SutError when unreachable."""
    if is_postgres(url):
        import psycopg

        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout)
        except psycopg.Error as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise SutError(f"cannot connect to database {redact(url)}: {reason}") from e
    if "://" in url and not url.startswith("sqlite:"):
        raise SutError(f"unsupported database URL {redact(url)}: use postgresql://... or a SQLite path")
    path = sqlite_path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn
    except (OSError, sqlite3.Error) as e:
        raise SutError(f"cannot open SQLite database {path}: {e}") from e


class Database:
    """Instrumented connections to one database: one per thread for SQLite (cheap, local), a
    small shared pool for PostgreSQL (five services x threads must stay far below the server's
    connection limit, which other users of the server share)."""

    def __init__(self, url: str, tracer_provider: Any = None, pool_size: int = PG_POOL_SIZE) -> None:
        self.url = url
        self.postgres = is_postgres(url)
        self.system = "postgresql" if self.postgres else "sqlite"
        self._tracer_provider = tracer_provider
        self._local = threading.local()
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)

    def _open(self) -> Any:
        conn = raw_connect(self.url)
        if not self.postgres:
            conn.execute("PRAGMA busy_timeout=30000")
        if self._tracer_provider is not None:
            if self.postgres:
                from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

                conn = PsycopgInstrumentor().instrument_connection(
                    conn, tracer_provider=self._tracer_provider)
            else:
                from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

                conn = SQLite3Instrumentor().instrument_connection(
                    conn, tracer_provider=self._tracer_provider)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if not self.postgres:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._open()
            yield conn
            return
        if not self._slots.acquire(timeout=30):
            raise SutError("no free database connection within 30 s")
        try:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = self._open()
            broken = False
            try:
                yield conn
            except Exception:
                broken = bool(getattr(conn, "closed", False)) or getattr(conn, "broken", False)
                raise
            finally:
                if not broken:
                    self._pool.put(conn)
        finally:
            self._slots.release()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement through a cursor (the instrumentation traces cursor.execute)."""
        with self._connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(self._sql(sql), tuple(params))
                return list(cur.fetchall()) if cur.description else []
            finally:
                cur.close()

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """INSERT ... RETURNING id (SQLite >= 3.35 and PostgreSQL both have RETURNING)."""
        rows = self.query(sql + " RETURNING id", params)
        return int(rows[0][0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        while not self._pool.empty():
            self._pool.get_nowait().close()


def set_inventory_index(url: str, present: bool) -> None:
    """Create or drop the index on inventory.product_id: the `missing_index` bug, for real.

    Idempotent, so several workers noticing the same switch do not fight over it."""
    conn = raw_connect(url)
    try:
        if present:
            conn.execute(INVENTORY_INDEX_SQL)
        else:
            conn.execute(f"DROP INDEX IF EXISTS {INVENTORY_INDEX}")
        if is_postgres(url):
            conn.execute("ANALYZE inventory")
    except Exception as e:  # a concurrent twin did it first; verify below
        if inventory_index_present(url) != present:
            raise SutError(f"could not {'create' if present else 'drop'} the inventory index: {e}") from e
    finally:
        conn.close()


def inventory_index_present(url: str) -> bool:
    conn = raw_connect(url)
    try:
        if is_postgres(url):
            cur = conn.execute(
                "SELECT 1 FROM pg_indexes WHERE indexname = %s AND schemaname = current_schema()",
                (INVENTORY_INDEX,))
        else:
            cur = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (INVENTORY_INDEX,))
        return cur.fetchone() is not None
    finally:
        conn.close()


def stock_plan(url: str, product_ids: Sequence[int]) -> str:
    """The database's own plan for the stock look-up (EXPLAIN), one line per step."""
    conn = raw_connect(url)
    try:
        sql = STOCK_SQL.format(placeholders(len(product_ids)))
        if is_postgres(url):
            rows = conn.execute("EXPLAIN " + sql.replace("?", "%s"), tuple(product_ids)).fetchall()
            return "\n".join(r[0] for r in rows)
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, tuple(product_ids)).fetchall()
        return "\n".join(str(r[-1]) for r in rows)
    finally:
        conn.close()
