"""The PostgreSQL store: the same log as SQLiteStore, shareable by several auditsink replicas.

Why this shape (docs/postgres.md):
- One writer thread per replica group-commits what is waiting, as in sqlite.py: the batch is
  COPYed into a temporary table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` moves it
  into ``events``; the dedup unique index holds across replicas, so a batch retried to another
  replica is stored once.
- Log positions (``events.id``) are taken from a sequence while holding a transaction-level
  advisory lock (``LOG_LOCK``) up to COMMIT, so positions grow in commit order even when
  replicas commit concurrently, and a consumer paging by ``after_id`` never skips an event.
- ``events`` is range-partitioned by day on time: retention drops whole partitions.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from auditsink.store._writer import GroupCommitWriter, Task
from auditsink.store.base import StoreError
from auditsink.store.postgres import schema as pg_schema
from auditsink.store.postgres.consumers import PostgresConsumers
from auditsink.store.postgres.writer import _INCOMING, FRAME_EVENTS, PostgresWrites
from auditsink.store.sql.dialect import POSTGRES
from auditsink.store.sql.reads import SQLReads

__all__ = ["PostgresStore", "FRAME_EVENTS"]
log = logging.getLogger("auditsink.store")


class PostgresStore(GroupCommitWriter, PostgresWrites, PostgresConsumers, SQLReads):
    """PostgreSQL store; see the module docstring for the commit-order and dedup contract."""

    dialect = POSTGRES

    def __init__(self, url: str, sync: str = "normal", queue_events: int = 16_000,
                 group_events: int = 8_000, compression_level: int = 3) -> None:
        if sync not in ("normal", "full"):
            raise StoreError(f"sync {sync!r}: expected 'normal' or 'full'")
        self.url = url
        self.sync = sync
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._init_reads()
        self._init_writer(queue_events, group_events)
        self._level = compression_level
        self._conn: Any = None
        self._ids: dict[str, int] = {}
        self._key_ids: dict[tuple[Any, ...], tuple[int, ...]] = {}
        self._ahead_day = -1
        self._claims: dict[str, Any] = {}  # consumer name -> the connection holding its lock
        self._held: set[str] = set()
        self._clusters: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, start_writer: bool = True) -> None:
        """Connect; a writer applies pending migrations first, a reader checks the version."""
        conn = self._connect()
        try:
            if start_writer:
                pg_schema.migrate(conn)
            else:
                pg_schema.check_version(conn, self.url)
        finally:
            conn.close()
        if start_writer:
            self._start_writer()

    def migrate(self) -> list[str]:
        """Apply pending schema migrations (``auditsink db migrate``); the names of those
        applied (``0005_identity``)."""
        conn = self._connect()
        try:
            return [f"{m.version:04d}_{m.name}" for m in pg_schema.migrate(conn)]
        finally:
            conn.close()

    def _writer_conn(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            conn = self._connect()
            if self.sync == "full":
                # "full" insists on a flushed WAL at COMMIT whatever the server default says.
                conn.execute("SET synchronous_commit = on")
            conn.execute(_INCOMING)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Drain the queue (graceful stop), then close the connections."""
        self._stop_writer()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        for conn in self._claims.values():
            # Unlock before closing: a closed session's locks go only when its backend has
            # exited, which a busy server does a moment later, so another replica asking
            # right after the close would still be refused.
            try:
                if not (conn.closed or conn.broken):
                    conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception:  # noqa: BLE001 - closing anyway; the session's end releases them
                pass
            conn.close()  # ends the session: its consumer claims pass to another replica
        self._claims.clear()
        self._held.clear()
        self._close_readers()

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise StoreError("the PostgreSQL store needs psycopg: pip install 'auditsink[postgres]'"
                             ) from None
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"store {self.url!r}: cannot connect: {exc}".strip()) from None

    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _close_readers(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # -- writing ---------------------------------------------------------------------------

    def _commit_group(self, tasks: list[Task]) -> None:
        started = time.perf_counter()
        try:
            conn = self._writer_conn()
            self._insert(conn, tasks)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the waiting senders
            # The outcome of a COMMIT lost with its connection is unknown: the sender gets an
            # error, retries, and the dedup index makes the retry harmless.
            log.warning("store commit failed: %s", exc)
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                self._conn = None
            for task in tasks:
                task.error = exc
            return
        self.commits += 1
        self.last_commit_seconds = time.perf_counter() - started

    def size_bytes(self) -> int:
        """The database's size on disk, in bytes."""
        query = "SELECT pg_database_size(current_database())"
        size: int = self._reader().execute(query).fetchone()[0]
        return size
