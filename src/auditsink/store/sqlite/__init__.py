"""The default store: one SQLite file in WAL mode, written by one thread with group commit.

Why this shape (design.md, "The store is the log"):
- One writer thread takes everything that is waiting and commits it in one ``BEGIN IMMEDIATE``
  transaction, so concurrent requests share a commit; each request's future resolves only
  after COMMIT returned, which is when the receiver answers 200.
- The queue into the writer is bounded (in events); a full queue raises ``Overloaded`` and the
  receiver answers 429 with Retry-After, so memory stays flat under overload.
- With ``synchronous=NORMAL`` (the default) a committed transaction survives the process being
  killed (SIGKILL) but the last commits before a power loss or kernel crash may roll back;
  ``sync="full"`` fsyncs every commit and survives power loss too (docs/store.md).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlparse

import zstandard

from auditsink.selector import Selector, bounded
from auditsink.store._rows import KEY_COLUMNS
from auditsink.store._writer import GroupCommitWriter, Task
from auditsink.store.base import StoreError, TimeKey
from auditsink.store.sql.dialect import SQLITE
from auditsink.store.sql.reads import PagePart, SQLReads, merge_rows
from auditsink.store.sqlite import audit_ids, objects, upgrade
from auditsink.store.sqlite.checkpoint import Checkpointer
from auditsink.store.sqlite.consumers import SQLiteConsumers
from auditsink.store.sqlite.writer import Interner, insert, pack_audit_id

__all__ = ["SQLiteStore", "Checkpointer", "pack_audit_id", "path_from_url", "SCHEMA_VERSION"]

SCHEMA_VERSION = upgrade.SCHEMA_VERSION
WRITER_CACHE_KIB = 16 * 1024
# Retention sweeps unreferenced strings at most this often (seconds): a sweep reads every
# event once.
SWEEP_EVERY = 3600.0
log = logging.getLogger("auditsink.store")


def path_from_url(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``; bare paths too.

    >>> path_from_url("sqlite:////var/lib/auditsink/a.db")
    '/var/lib/auditsink/a.db'
    """
    if "://" not in url:
        return url
    parsed = urlparse(url)
    path = unquote(parsed.netloc + parsed.path)
    if path.startswith("/") and not path.startswith("//"):
        path = path[1:]
    elif path.startswith("//"):
        path = path[1:]
    if not path:
        raise StoreError(f"store {url!r}: no file name; use sqlite:///auditsink.db")
    return path


class SQLiteStore(GroupCommitWriter, SQLiteConsumers, SQLReads):
    """SQLite store; see the module docstring for the durability and batching contract."""

    dialect = SQLITE

    def __init__(
        self,
        url: str,
        sync: str = "normal",
        queue_events: int = 16_000,
        group_events: int = 8_000,
        compression_level: int = 3,
        blob_events: int = 128,
        checkpoint_interval: float = 1.0,
    ) -> None:
        self.url = url
        self.path = path_from_url(url)
        if sync not in ("normal", "full"):
            raise StoreError(f"sync {sync!r}: expected 'normal' or 'full'")
        self.sync = sync
        self._init_writer(queue_events, group_events)
        self._init_reads()
        # Reused by every commit (the writer thread's alone): a new one cost as much as
        # compressing a few events' bodies, which is what a blocking-mode commit compresses.
        self._compressor = zstandard.ZstdCompressor(level=compression_level)
        self.blob_events = blob_events
        self._conn: sqlite3.Connection | None = None
        self._interner: Interner | None = None
        self._local = threading.local()
        self._checkpointer: Checkpointer | None = None
        self._claims: dict[str, Any] = {}
        self.checkpoint_interval = checkpoint_interval
        self._swept_at = float("-inf")
        self._audit_runs = 0  # runs of audit_ids known to be indexed (audit_ids.py)
        self._top = 0  # the log's last position as this writer counted it (_index_audit_ids)

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, start_writer: bool = True) -> None:
        """Create the file and schema if needed (upgrading an older one); start the writer."""
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StoreError(f"store {self.url!r}: directory {directory} does not exist")
        try:
            conn = self._connect()
            schema = resources.files("auditsink.store.sqlite").joinpath("schema.sql").read_text()
            found = upgrade.version(conn)
            if found is not None and found > SCHEMA_VERSION:
                raise StoreError(f"store {self.url!r}: schema version {found} is newer than "
                                 f"this auditsink ({SCHEMA_VERSION}): upgrade auditsink")
            with conn:
                upgrade.before_schema(conn, found)
                conn.executescript(schema)
                conn.execute("INSERT OR IGNORE INTO strings (value) VALUES ('')")
                upgrade.after_schema(conn, found, self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.url!r}: cannot open {self.path}: {exc}") from None
        self._conn = conn
        self._interner = Interner(conn)
        if start_writer or (found is not None and found < "4"):  # just upgraded: now
            try:
                audit_ids.catch_up(conn, self.path)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"store {self.url!r}: cannot index {self.path}: {exc}") from None
        self._top = conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        if start_writer:
            self._audit_runs = audit_ids.indexed_runs(conn)
            # No commit waits for a checkpoint: the writer never checkpoints on its own, a
            # background thread copies the WAL back instead (see Checkpointer).
            conn.execute("PRAGMA wal_autocheckpoint=0")
            # The writer touches every index's newest pages at each commit: with SQLite's
            # default 2 MB cache it re-read them from the OS each time (measured in-process:
            # 8 instead of 13 µs of system CPU per event with 16 MB; 32 MB saved little more
            # and cost the overload RSS budget 35 MB). Readers keep the default.
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            if self.checkpoint_interval > 0:  # 0: another process on the file checkpoints
                self._checkpointer = Checkpointer(self, self.checkpoint_interval)
                self._checkpointer.start()
            self._start_writer()

    def migrate(self) -> list[str]:
        """SQLite files are upgraded when opened: opening is the migration."""
        return []

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.sync.upper()}")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def close(self) -> None:
        """Drain the queue (graceful stop), then close the file."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self._stop_writer()
        for handle in self._claims.values():
            handle.close()  # releases the flock: another process may take the consumer over
        self._claims.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- writing ---------------------------------------------------------------------------

    def _writer_conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "store is not open"
        return self._conn

    def _commit_group(self, tasks: list[Task]) -> None:
        conn = self._writer_conn()
        assert self._interner is not None
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._interner.check(conn)
            stored, duplicates = insert(conn, self._interner, tasks, self._compressor,
                                        self.blob_events)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # Ids handed out inside the failed transaction are gone: reload the dictionary.
            self._interner.reload(conn)
            for task in tasks:
                task.error = exc
            return
        self.commits += 1
        self.duplicates += duplicates
        self.last_commit_seconds = time.perf_counter() - started
        self._index_audit_ids(conn, stored)

    def _index_audit_ids(self, conn: sqlite3.Connection, stored: int) -> None:
        """Once the log holds a whole run past the indexed ones, index it (audit_ids.py):
        after the commit, so that no acknowledgement waits for it.

        The writer counts the rows it stores instead of asking for ``max(id)`` after every
        commit (a tenth of a one-event commit); the file is asked only when the count
        reaches a run, so rows another process added (``auditsink import`` into the same
        file) are found then, at most a run late: lookups scan the tail meanwhile."""
        self._top += stored
        if self._top < (self._audit_runs + 1) * audit_ids.RUN:
            return
        top = self._top = conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0
        if top < (self._audit_runs + 1) * audit_ids.RUN:
            return
        try:
            audit_ids.index_runs(conn, most=None)  # one, unless a group was bigger than a run
            self._audit_runs = audit_ids.indexed_runs(conn)
        except sqlite3.Error as exc:  # the next commit tries again; lookups scan meanwhile
            log.warning("indexing auditIDs failed, retried after the next commit: %s", exc)

    # -- retention -------------------------------------------------------------------------

    def prune(self, older_than: int, chunk: int = 20_000) -> int:
        """Delete events with time < ``older_than`` (µs), in small transactions; returns count.

        Runs on the writer thread in chunks so ingest commits interleave with pruning.
        """
        def delete_chunk(conn: sqlite3.Connection) -> int:
            with conn:
                cur = conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time < ?"
                    " ORDER BY time LIMIT ?)",
                    (older_than, chunk),
                )
                if cur.rowcount < chunk:
                    # Every event of these blobs is older than the cutoff: all gone.
                    conn.execute("DELETE FROM blobs WHERE max_time < ?", (older_than,))
                    audit_ids.forget_before(conn)
                    self._audit_runs = audit_ids.indexed_runs(conn)
                return int(cur.rowcount)

        deleted = 0
        while True:
            count = self.call_in_writer(delete_chunk)
            deleted += count
            if count < chunk:
                break
        if deleted and time.monotonic() - self._swept_at > SWEEP_EVERY:
            self.sweep_strings()
        return deleted

    def sweep_strings(self) -> int:
        """Delete the strings no stored event refers to any more (retention took their
        events); returns how many.

        The references are gathered on a reader connection (one pass per column, seconds for
        ten million events, while ingest goes on); then, on the writer thread, the events
        committed meanwhile are checked too, the rest deleted, and ``strings_generation``
        raised so that every writer of the file drops the ids it had cached.
        """
        self._swept_at = time.monotonic()
        reader = self._reader()
        position = self.last_id()
        top = reader.execute("SELECT coalesce(max(id), 0) FROM strings").fetchone()[0]
        used = _referenced(reader, "")
        candidates = [ident for (ident,) in reader.execute(
            "SELECT id FROM strings WHERE id <= ? AND value <> ''", (top,)) if ident not in used]
        if not candidates:
            return 0

        def delete(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                recent = _referenced(conn, f" WHERE id > {int(position)}")
                gone = [(ident,) for ident in candidates if ident not in recent]
                conn.executemany("DELETE FROM strings WHERE id = ?", gone)
                conn.execute("INSERT INTO meta (key, value) VALUES ('strings_generation', '1')"
                             " ON CONFLICT (key) DO UPDATE SET value = value + 1")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            assert self._interner is not None
            self._interner.reload(conn)
            return len(gone)

        swept: int = self.call_in_writer(delete)
        if swept:
            log.info("retention: %d strings no stored event refers to were deleted", swept)
        return swept

    # -- reading ---------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                check_same_thread=False, timeout=30,
            )
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _audit_id(self, value: str) -> object:
        return pack_audit_id(value)

    def _audit_id_condition(self, values: list[object], params: list[object]) -> str:
        return audit_ids.condition(values, params)

    def _name_condition(self, names: list[str], params: list[object]) -> str:
        return objects.condition(names, params, audit_ids.tail())

    def _own_object_pages(self, selector: Selector) -> bool:
        return bool(selector.names) and "" not in selector.names

    def _page_selects(self, selector: Selector, where: str, params: list[object], order: str,
                      limit: int, key: tuple[str, TimeKey] | None) -> list[PagePart]:
        if not self._own_object_pages(selector):
            return super()._page_selects(selector, where, params, order, limit, key)
        # What else the selector says of the object, so that the walk of objects seeks on it
        # (its key leads with name, resource, namespace, then time) instead of sorting.
        narrowing = []
        resources = self._resolve(sorted({bounded(spec.partition("/")[0])
                                          for spec in selector.resources}))
        if resources:
            narrowing.append(("obj_resource", resources))
        namespaces = self._resolve(sorted({bounded(n) for n in selector.namespaces}))
        if namespaces:
            narrowing.append(("obj_namespace", namespaces))
        walk = objects.page_walk(self._select, [bounded(n) for n in selector.names],
                                 narrowing, selector.since, selector.until, where, params,
                                 order == "DESC", limit, key)
        # The tail, read by rowid (NOT INDEXED), never by walking a time index over the log.
        tail = (self._select(f"events.id > {audit_ids.tail()} AND {where}", "events NOT INDEXED")
                + f" ORDER BY events.time {order}, events.id {order} LIMIT ?")
        return [walk, (tail, [*params, limit])]

    def _page_rows(self, parts: Sequence[PagePart], newest_first: bool,
                   limit: int) -> list[Sequence[Any]]:
        if all(isinstance(part, tuple) for part in parts):
            return super()._page_rows(parts, newest_first, limit)
        # An object's runs are read a few statements at a time (objects.py): all of them and
        # the tail in one read transaction, so that they see the same runs.
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return merge_rows([part(conn) if callable(part) else
                               conn.execute(*part).fetchall() for part in parts],
                              newest_first, limit)
        finally:
            conn.execute("COMMIT")

    def size_bytes(self) -> int:
        """The database file plus its WAL, in bytes."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total


def _referenced(conn: sqlite3.Connection, where: str) -> set[int]:
    """Every string id the events (``where``: a condition on them) refer to."""
    used: set[int] = set()
    for column in (*KEY_COLUMNS, "cluster"):
        quoted = '"user"' if column == "user" else column
        used.update(row[0] for row in conn.execute(f"SELECT DISTINCT {quoted} FROM events{where}"))
    return used
