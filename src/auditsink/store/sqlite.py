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

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlparse

import zstandard

from auditsink.model import LEVEL_RANK, LEVELS, STAGES, Item
from auditsink.query.builder import STAGE_INDEX, build_where
from auditsink.store._shared import (
    GROUPABLE,
    GROUPS_PREFIX,
    INTERNED,
    REJECTED_BODY_BYTES,
    GroupCommitWriter,
    Task,
    group_rows,
)
from auditsink.store.base import (
    Alert,
    AlertSelector,
    CursorMoved,
    DeadLetter,
    Rejected,
    Selector,
    StoredEvent,
    StoreError,
    WriteResult,
)
from auditsink.store.windows import newest_page_in_windows
from auditsink.timeutil import parse_timestamp

SCHEMA_VERSION = "2"
_INSERT = (
    "INSERT OR IGNORE INTO events (time, audit_id, cluster, stage, level, name, code, blob,"
    " offset, length, verb, user, groups, source_ip, user_agent, api_group, resource,"
    " subresource, namespace) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_BLOB_CACHE = 16
WRITER_CACHE_KIB = 16 * 1024
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
log = logging.getLogger("auditsink.store")


def pack_audit_id(audit_id: str) -> bytes | str:
    """A canonical (lower-case) UUID as its 16 bytes, anything else unchanged.

    auditIDs are usually UUIDs: 16 bytes instead of 36 characters in the row and two indexes
    saves ~60 bytes per event. Non-canonical IDs stay text, so no two distinct IDs collide.

    >>> pack_audit_id("6f0c2b4e-1d2a-4c3b-9e8f-0a1b2c3d4e5f").hex()
    '6f0c2b4e1d2a4c3b9e8f0a1b2c3d4e5f'
    >>> pack_audit_id("my-id")
    'my-id'
    >>> pack_audit_id("6f0c2b4e-1d2a-4c3b-9e8f-0a1b2c3d4e 5f")  # fromhex would skip the space
    '6f0c2b4e-1d2a-4c3b-9e8f-0a1b2c3d4e 5f'
    """
    if _CANONICAL_UUID(audit_id):
        return bytes.fromhex(audit_id.replace("-", ""))
    return audit_id


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


class Checkpointer:
    """Copies committed WAL frames back into the database file beside the writer.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, so that
    commit, and every request waiting on it, stalls: 50-60 ms per 80 MB of WAL, which set the
    p99 of blocking-mode ingest. Here a thread with its own connection runs a PASSIVE
    checkpoint once per ``interval``; it blocks nobody (SQLite releases the GIL while it
    copies). But a busy writer keeps appending while it copies, so it never catches up, and
    the WAL is only rewound to its start once every frame is copied: alone, the WAL would
    grow without end. So after each background pass the writer thread finishes the job
    between two commits: it copies the few frames written meanwhile (a short pause instead of
    a long one), and its next commit rewinds the WAL.
    """

    def __init__(self, store: SQLiteStore, interval: float = 1.0,
                 max_wal_bytes: int = 256 << 20) -> None:
        self.store = store
        self.interval = interval
        self.max_wal_bytes = max_wal_bytes
        self.checkpoints = 0
        self._finishing = threading.Event()  # a writer-side pass is queued
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditsink-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = self.store._connect()
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.checkpoint(conn)
                except (sqlite3.Error, StoreError) as exc:
                    # e.g. disk full, or the store closing; the writer reports its own errors
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One background pass, then queue the writer's short finishing pass."""
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        if frames > 0 and not self._finishing.is_set():
            self._finishing.set()
            self.store.run_in_writer(self._finish)

    def _finish(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, so no frame is appended meanwhile."""
        self._finishing.clear()
        try:
            wal_bytes = os.path.getsize(self.store.path + "-wal")
        except OSError:
            wal_bytes = 0
        # Past the cap (a reader kept the WAL from rewinding), also give the disk space back.
        mode = "TRUNCATE" if wal_bytes > self.max_wal_bytes else "PASSIVE"
        # TRUNCATE waits for readers of old snapshots: briefly, not the usual 30 s, so that a
        # slow UI query cannot hold up ingest (the next attempt comes a second later).
        conn.execute("PRAGMA busy_timeout=200")
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})")
        finally:
            conn.execute("PRAGMA busy_timeout=30000")


class SQLiteStore(GroupCommitWriter):
    """SQLite store; see the module docstring for the durability and batching contract."""

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
        self._level = compression_level
        self.blob_events = blob_events
        self._conn: sqlite3.Connection | None = None
        self._ids: dict[str, int] = {}
        self._key_ids: dict[tuple[Any, ...], tuple[int, ...]] = {}
        self._blobs: OrderedDict[int, bytes] = OrderedDict()
        self._local = threading.local()
        self._checkpointer: Checkpointer | None = None
        self._claims: dict[str, Any] = {}  # consumer name -> its open, flocked lock file
        self.checkpoint_interval = checkpoint_interval

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, start_writer: bool = True) -> None:
        """Create the file and schema if needed; start the writer thread."""
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StoreError(f"store {self.url!r}: directory {directory} does not exist")
        try:
            conn = self._connect()
            schema = resources.files("auditsink.store").joinpath("schema.sql").read_text()
            upgrading = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'events_object'"
            ).fetchone()
            if upgrading:
                log.warning("upgrading %s to schema %s: rebuilding the object index once "
                            "(about 15 s per 10 million events)", self.path, SCHEMA_VERSION)
            with conn:
                conn.executescript(schema)
                # Schema 1's object index ended in time and made object history sort.
                conn.execute("DROP INDEX IF EXISTS events_object")
                conn.execute("INSERT OR IGNORE INTO strings (value) VALUES ('')")
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (SCHEMA_VERSION,),
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"store {self.url!r}: cannot open {self.path}: {exc}") from None
        self._conn = conn
        self._ids = dict(conn.execute("SELECT value, id FROM strings"))
        if start_writer:
            # No commit waits for a checkpoint: the writer never checkpoints on its own, a
            # background thread copies the WAL back instead (see Checkpointer).
            conn.execute("PRAGMA wal_autocheckpoint=0")
            # The writer touches every index's newest pages at each commit: with SQLite's
            # default 2 MB cache it re-read them from the OS each time (measured in-process:
            # 8 instead of 13 µs of system CPU per event with 16 MB; 32 MB saved little more
            # and cost the overload RSS budget 35 MB). Readers keep the default.
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            self._checkpointer = Checkpointer(self, self.checkpoint_interval)
            self._checkpointer.start()
            self._start_writer()

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
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._insert(conn, tasks)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # Ids handed out inside the failed transaction are gone: reload the dictionary.
            self._ids = dict(conn.execute("SELECT value, id FROM strings"))
            self._key_ids.clear()
            for task in tasks:
                task.error = exc
            return
        self.commits += 1
        self.last_commit_seconds = time.perf_counter() - started

    def _intern(self, conn: sqlite3.Connection, value: str) -> int:
        ident = self._ids.get(value)
        if ident is None:
            ident = conn.execute(
                "INSERT INTO strings (value) VALUES (?) ON CONFLICT (value) DO UPDATE SET value=value"
                " RETURNING id",
                (value,),
            ).fetchone()[0]
            self._ids[value] = ident
        return ident

    def _intern_key(self, conn: sqlite3.Connection, key: tuple[Any, ...]) -> tuple[int, ...]:
        verb, user, groups, source_ip, agent, api_group, resource, subresource, namespace = key
        intern = self._intern
        return (
            intern(conn, verb), intern(conn, user), intern(conn, GROUPS_PREFIX + "\n".join(groups)),
            intern(conn, source_ip), intern(conn, agent), intern(conn, api_group),
            intern(conn, resource), intern(conn, subresource), intern(conn, namespace),
        )

    def _insert(self, conn: sqlite3.Connection, tasks: list[Task]) -> None:
        """Compress the group's bodies into blobs, then insert one row per event."""
        now = time.time()
        items: list[Item] = []
        for task in tasks:
            items.extend(task.items)
            if task.bad:
                conn.executemany(
                    "INSERT INTO rejected (time, cluster, error, body) VALUES (?,?,?,?)",
                    [(now, task.cluster, f"item {b.index}: {b.error}",
                      b.snippet.encode()[:REJECTED_BODY_BYTES]) for b in task.bad],
                )
        if not items:
            return  # only undecodable items in this group
        places = self._write_blobs(conn, items)
        keys = self._key_ids
        if len(keys) > 100_000:
            keys.clear()
        position = 0
        for task in tasks:
            cluster = self._intern(conn, task.cluster)
            rows = []
            for item in task.items:
                event = item.event
                ref = event.objectRef
                user = event.user
                status = event.responseStatus
                # Most events share who/what/where with many others: look the whole tuple of
                # dictionary ids up at once instead of one string at a time.
                key = (
                    event.verb, user.username, tuple(user.groups),
                    event.sourceIPs[0] if event.sourceIPs else "", event.userAgent,
                    ref.apiGroup if ref else "", ref.resource if ref else "",
                    ref.subresource if ref else "", ref.namespace if ref else "",
                )
                ids = keys.get(key)
                if ids is None:
                    ids = keys[key] = self._intern_key(conn, key)
                rows.append(
                    (parse_timestamp(event.stageTimestamp), pack_audit_id(event.auditID), cluster,
                     STAGE_INDEX.get(event.stage, 0), LEVEL_RANK[event.level],
                     ref.name if ref else "", status.code if status is not None else 0)
                    + places[position] + ids
                )
                position += 1
            before = conn.total_changes
            conn.executemany(_INSERT, rows)
            stored = conn.total_changes - before
            task.result = WriteResult(stored=stored, duplicates=len(rows) - stored)
            self.duplicates += len(rows) - stored

    def _write_blobs(self, conn: sqlite3.Connection, items: list[Item]) -> list[tuple[int, int, int]]:
        """Compress bodies in chunks of ``blob_events``; (blob, offset, length) per item.

        Chunks keep one event's read cheap (decompress ~100 KB, not a whole group commit)
        while still compressing the repeated keys and values of neighbouring events.
        """
        compressor = zstandard.ZstdCompressor(level=self._level)
        places: list[tuple[int, int, int]] = []
        for start in range(0, len(items), self.blob_events):
            chunk = items[start : start + self.blob_events]
            max_time = max(parse_timestamp(i.event.stageTimestamp) for i in chunk)
            data = compressor.compress(b"\n".join(i.raw for i in chunk))
            blob = conn.execute(
                "INSERT INTO blobs (max_time, data) VALUES (?, ?) RETURNING id", (max_time, data)
            ).fetchone()[0]
            offset = 0
            for item in chunk:
                length = len(item.raw)
                places.append((blob, offset, length))
                offset += length + 1
        return places

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
                return int(cur.rowcount)

        deleted = 0
        while True:
            count = self.call_in_writer(delete_chunk)
            deleted += count
            if count < chunk:
                return deleted

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

    def _resolve(self, values: Sequence[str]) -> list[int]:
        conn = self._reader()
        marks = ",".join("?" * len(values))
        return [row[0] for row in conn.execute(f"SELECT id FROM strings WHERE value IN ({marks})", list(values))]

    def _resolve_groups(self, groups: Sequence[str]) -> list[int]:
        wanted = set(groups)
        conn = self._reader()
        ids = []
        rows = conn.execute(
            "SELECT id, value FROM strings WHERE substr(value, 1, ?) = ?",
            (len(GROUPS_PREFIX), GROUPS_PREFIX),
        )
        for ident, value in rows:
            if wanted.intersection(value[len(GROUPS_PREFIX) :].split("\n")):
                ids.append(ident)
        return ids

    @staticmethod
    def _packed(selector: Selector) -> Selector:
        """The selector with auditIDs in their stored form (see :func:`pack_audit_id`)."""
        if not selector.audit_ids:
            return selector
        return dataclasses.replace(selector, audit_ids=[pack_audit_id(a) for a in selector.audit_ids])

    def _blob(self, conn: sqlite3.Connection, blob: int) -> bytes:
        data = self._blobs.get(blob)
        if data is None:
            row = conn.execute("SELECT data FROM blobs WHERE id = ?", (blob,)).fetchone()
            data = zstandard.ZstdDecompressor().decompress(row[0]) if row else b""
            self._blobs[blob] = data
            if len(self._blobs) > _BLOB_CACHE:
                self._blobs.popitem(last=False)
        else:
            self._blobs.move_to_end(blob)
        return data

    def query(
        self,
        selector: Selector,
        limit: int = 100,
        after_id: int = 0,
        newest_first: bool = True,
        before_id: int | None = None,
    ) -> list[StoredEvent]:
        """Matching events, newest first by default; page with ``before_id``/``after_id``."""
        if newest_first and not after_id:
            found = newest_page_in_windows(
                selector, limit, before_id, page=self._newest_page, time_bounds=self._time_bounds,
                time_before=self._time_before, times_between=self._times_between,
                last_id=self.last_id)
            if found is not None:
                return found
        return self._query(selector, limit, after_id, newest_first, before_id)

    def _newest_page(self, selector: Selector, limit: int, before_id: int | None) -> list[StoredEvent]:
        return self._query(selector, limit, 0, True, before_id)

    def _time_bounds(self) -> tuple[int, int] | None:
        return self.time_bounds(Selector())

    def _time_before(self, position: int) -> int | None:
        row = self._reader().execute(
            "SELECT time FROM events WHERE id < ? ORDER BY id DESC LIMIT 1", (position,)).fetchone()
        return int(row[0]) if row else None

    def _times_between(self, after_id: int, before_id: int) -> tuple[int, int] | None:
        # +time: through the rowid range, not the time index
        row = self._reader().execute(
            "SELECT min(+time), max(+time) FROM events WHERE id > ? AND id < ?",
            (after_id, before_id)).fetchone()
        return None if row is None or row[0] is None else (row[0], row[1])

    def _query(self, selector: Selector, limit: int, after_id: int, newest_first: bool,
               before_id: int | None) -> list[StoredEvent]:
        where, params = build_where(self._packed(selector), self._resolve, self._resolve_groups)
        if after_id:
            where += " AND events.id > ?"
            params.append(after_id)
        if before_id is not None:
            where += " AND events.id < ?"
            params.append(before_id)
        order = "DESC" if newest_first else "ASC"
        # Order by time for time-ordered answers; id breaks ties and keeps paging stable.
        sql = (
            "SELECT events.id, strings.value, blob, offset, length FROM events"
            f" JOIN strings ON strings.id = events.cluster WHERE {where}"
            f" ORDER BY events.id {order} LIMIT ?"
        )
        params.append(limit)
        conn = self._reader()
        rows = conn.execute(sql, params).fetchall()
        return [
            StoredEvent(id=ident, cluster=cluster, raw=self._blob(conn, blob)[offset : offset + length])
            for ident, cluster, blob, offset, length in rows
        ]

    def iter_all(self, selector: Selector, batch: int = 5000) -> Iterator[StoredEvent]:
        """Every matching event in log order (export, replays)."""
        after = 0
        while True:
            page = self.query(selector, limit=batch, after_id=after, newest_first=False)
            yield from page
            if len(page) < batch:
                return
            after = page[-1].id

    def facets_after(self, after_id: int, limit: int) -> list[tuple[int, ...]]:
        """(id, time, cluster, verb, user, resource, api_group, code) of the events after a
        log position, in log order, names as dictionary ids (query/rollup.py folds these)."""
        return self._reader().execute(
            "SELECT id, time, cluster, verb, user, resource, api_group, code FROM events"
            " WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()

    def facets_between(self, since: int, until: int, upto_id: int) -> list[tuple[int, ...]]:
        """The same for the events of a time range up to a log position, in any order."""
        return self._reader().execute(
            "SELECT id, time, cluster, verb, user, resource, api_group, code FROM events"
            # +id: through the time index; a rowid range would scan the whole log.
            " WHERE time >= ? AND time < ? AND +id <= ?", (since, until, upto_id)).fetchall()

    def last_id(self) -> int:
        """The newest log position (0 for an empty store)."""
        row = self._reader().execute("SELECT max(id) FROM events").fetchone()
        return row[0] or 0

    def rejected(self, limit: int = 100) -> list[Rejected]:
        """The most recent undecodable items."""
        rows = self._reader().execute(
            "SELECT id, time, cluster, error, body FROM rejected ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [Rejected(*row) for row in rows]

    def stats(self, selector: Selector, top: int = 10) -> dict[str, object]:
        """Counts for the overview: totals, top values, failures and events per hour."""
        where, params = build_where(self._packed(selector), self._resolve, self._resolve_groups)
        conn = self._reader()

        def top_of(column: str) -> list[dict[str, object]]:
            sql = (
                f"SELECT s.value, count(*) AS n FROM events JOIN strings s ON s.id = events.{column}"
                f" WHERE {where} GROUP BY events.{column} ORDER BY n DESC LIMIT ?"
            )
            return [{"value": v, "count": n} for v, n in conn.execute(sql, [*params, top])]

        total = conn.execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0]
        failures_sql = (
            f"SELECT code, count(*) AS n FROM events WHERE {where} AND code >= 400"
            " GROUP BY code ORDER BY n DESC"
        )
        hours_sql = (
            f"SELECT time / 3600000000 AS hour, count(*) FROM events WHERE {where}"
            " GROUP BY hour ORDER BY hour"
        )
        levels_sql = f"SELECT level, count(*) FROM events WHERE {where} GROUP BY level"
        stages_sql = f"SELECT stage, count(*) FROM events WHERE {where} GROUP BY stage"
        return {
            "events": total,
            "users": top_of("user"),
            "verbs": top_of("verb"),
            "resources": top_of("resource"),
            "namespaces": top_of("namespace"),
            "failures": [{"code": c, "count": n} for c, n in conn.execute(failures_sql, params)],
            "levels": {LEVELS[lv]: n for lv, n in conn.execute(levels_sql, params)},
            "stages": {STAGES[st]: n for st, n in conn.execute(stages_sql, params)},
            "per_hour": [
                {"hour": h * 3600, "count": n} for h, n in conn.execute(hours_sql, params)
            ],
            "rejected": conn.execute("SELECT count(*) FROM rejected").fetchone()[0],
        }

    # -- consumers and alerts ---------------------------------------------------------------

    def commit_consumed(self, name: str, position: int, alerts: list[Alert],
                        expected: int | None = None,
                        dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Store a consumer's alerts (or dead letters) and advance its cursor in one
        transaction (exactly once)."""
        dead = [(name, d.first, d.last, d.events, d.attempts, d.error, d.time or time.time())
                for d in dead_letters]
        rows = [
            (a.time, a.rule, a.priority, a.output, a.audit_id, a.event, a.cluster,
             json.dumps(a.tags), json.dumps(a.fields, default=str))
            for a in alerts
        ]

        def store_them(conn: sqlite3.Connection) -> None:
            # An explicit transaction: the connection autocommits each statement otherwise,
            # and a crash between the alerts and the cursor would raise the alerts twice.
            conn.execute("BEGIN IMMEDIATE")
            try:
                if expected is not None:
                    row = conn.execute("SELECT position FROM cursors WHERE name = ?",
                                       (name,)).fetchone()
                    if (row[0] if row else 0) != expected:
                        raise CursorMoved(f"consumer {name!r} is at {row[0] if row else 0}, "
                                          f"not {expected}")
                conn.executemany(
                    "INSERT INTO alerts (time, rule, priority, output, audit_id, event, cluster,"
                    " tags, fields) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                conn.executemany(
                    "INSERT INTO dead_letters (consumer, first, last, events, attempts, error,"
                    " time) VALUES (?,?,?,?,?,?,?)", dead)
                conn.execute(
                    "INSERT INTO cursors (name, position) VALUES (?, ?) ON CONFLICT (name)"
                    " DO UPDATE SET position = excluded.position", (name, position))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self.call_in_writer(store_them)

    def cursors(self) -> dict[str, int]:
        """Every consumer's durable position, by name."""
        return dict(self._reader().execute("SELECT name, position FROM cursors ORDER BY name"))

    def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters of one consumer (or all), oldest first."""
        where, params = ("WHERE consumer = ?", [consumer]) if consumer else ("", [])
        rows = self._reader().execute(
            "SELECT consumer, first, last, events, attempts, error, time, id FROM dead_letters"
            f" {where} ORDER BY id LIMIT ?", [*params, limit])
        return [DeadLetter(*row) for row in rows]

    def drop_dead_letter(self, ident: int) -> None:
        """Forget a dead letter (it was replayed)."""
        self.call_in_writer(lambda conn: conn.execute("DELETE FROM dead_letters WHERE id = ?",
                                                      (ident,)))

    def claim_consumer(self, name: str) -> bool:
        """Hold consumer ``name`` for this process: an exclusive flock on a file beside the
        database (``auditsink.db-consumer-<hash>.lock``), released when the store closes or
        the process dies, so processes sharing one file run each consumer once."""
        if name in self._claims:
            return True
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        handle = open(f"{self.path}-consumer-{digest}.lock", "a+b")  # noqa: SIM115 - held open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._claims[name] = handle
        return True

    def set_cursor(self, name: str, position: int) -> None:
        """Advance a consumer's durable cursor."""
        self.commit_consumed(name, position, [])

    def alerts(self, selector: AlertSelector, limit: int = 100, after_id: int = 0,
               newest_first: bool = True, before_id: int | None = None) -> list[Alert]:
        """Alerts matching ``selector``, newest first by default."""
        clauses, params = ["1"], []  # type: tuple[list[str], list[object]]
        if selector.rules:
            clauses.append(f"rule IN ({','.join('?' * len(selector.rules))})")
            params.extend(selector.rules)
        if selector.min_priority is not None:
            clauses.append("priority <= ?")
            params.append(selector.min_priority)
        if selector.clusters:
            clauses.append(f"cluster IN ({','.join('?' * len(selector.clusters))})")
            params.extend(selector.clusters)
        if selector.audit_ids:
            clauses.append(f"audit_id IN ({','.join('?' * len(selector.audit_ids))})")
            params.extend(selector.audit_ids)
        if selector.since is not None:
            clauses.append("time >= ?")
            params.append(selector.since)
        if selector.until is not None:
            clauses.append("time < ?")
            params.append(selector.until)
        if after_id:
            clauses.append("id > ?")
            params.append(after_id)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        order = "DESC" if newest_first else "ASC"
        rows = self._reader().execute(
            "SELECT id, time, rule, priority, output, audit_id, event, cluster, tags, fields"
            f" FROM alerts WHERE {' AND '.join(clauses)} ORDER BY id {order} LIMIT ?",
            [*params, limit],
        )
        return [
            Alert(id=r[0], time=r[1], rule=r[2], priority=r[3], output=r[4], audit_id=r[5],
                  event=r[6], cluster=r[7], tags=json.loads(r[8]), fields=json.loads(r[9]))
            for r in rows
        ]

    def save_state(self, name: str, data: bytes) -> None:
        """Keep a component's state beside the log (through the writer, between commits)."""
        if self._writer is None:
            return  # opened for reading only
        self.call_in_writer(lambda conn: conn.execute(
            "INSERT INTO state (name, data) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET data = excluded.data", (name, data)))

    def load_state(self, name: str) -> bytes | None:
        """What :meth:`save_state` kept under ``name``, or None."""
        row = self._reader().execute("SELECT data FROM state WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def get_cursor(self, name: str) -> int:
        """A consumer's durable position in the log."""
        row = self._reader().execute("SELECT position FROM cursors WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def size_bytes(self) -> int:
        """The database file plus its WAL, in bytes."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    # -- web UI questions (issue 7): grouped counts over indexed ranges -----------------------


    def time_bounds(self, selector: Selector) -> tuple[int, int] | None:
        """The oldest and newest stageTimestamp (µs) of matching events; None when none match."""
        where, params = build_where(self._packed(selector), self._resolve, self._resolve_groups)
        conn = self._reader()
        # Two queries: SQLite answers a lone min() or max() from the end of an index, but
        # scans every matching row for both in one SELECT.
        low = conn.execute(f"SELECT min(time) FROM events WHERE {where}", params).fetchone()[0]
        if low is None:
            return None
        high = conn.execute(f"SELECT max(time) FROM events WHERE {where}", params).fetchone()[0]
        return low, high

    def counts_by_time(self, selector: Selector, bucket_us: int,
                       column: str = "verb") -> list[tuple[int, str, int]]:
        """(bucket start µs, value of ``column``, count) for matching events, oldest first.

        ``bucket_us`` 60_000_000 gives events per minute.
        """
        if column not in GROUPABLE:
            raise ValueError(f"cannot group by {column!r}")
        where, params = build_where(self._packed(selector), self._resolve, self._resolve_groups)
        rows = self._reader().execute(
            f"SELECT time / ? AS bucket, {column}, count(*) FROM events WHERE {where}"
            f" GROUP BY bucket, {column} ORDER BY bucket", [bucket_us, *params]).fetchall()
        names = self._names({r[1] for r in rows}) if column in INTERNED else {}
        return [(b * bucket_us, str(names.get(v, v)), n) for b, v, n in rows]

    def group_counts(self, selector: Selector, columns: Sequence[str], limit: int = 10,
                     failures_only: bool = False) -> list[dict[str, object]]:
        """Counts of matching events grouped by ``columns``, largest first.

        ``group_counts(Selector(users=["alice"]), ["resource", "verb"])`` ->
        ``[{"resource": "pods", "verb": "list", "count": 2}, ...]``
        """
        unknown = [c for c in columns if c not in GROUPABLE]
        if unknown or not columns:
            raise ValueError(f"cannot group by {unknown or columns!r}")
        where, params = build_where(self._packed(selector), self._resolve, self._resolve_groups)
        if failures_only:
            where += " AND code >= 400"  # lets SQLite use the partial index events_code
        cols = ", ".join(columns)
        rows = self._reader().execute(
            f"SELECT {cols}, count(*) AS n FROM events WHERE {where} GROUP BY {cols}"
            " ORDER BY n DESC LIMIT ?", [*params, limit]).fetchall()
        ids = {r[i] for r in rows for i, c in enumerate(columns) if c in INTERNED}
        return group_rows(rows, columns, self._names(ids))

    def clusters_seen(self, selector: Selector, sample: int = 20_000) -> list[str]:
        """Cluster names of matching events among the newest ``sample`` stored (bounded work)."""
        where, params = build_where(self._packed(selector), self._resolve, self._resolve_groups)
        # A range of log positions reads rows in place; ORDER BY ... LIMIT would sort them.
        rows = self._reader().execute(
            "SELECT DISTINCT cluster FROM events WHERE id > (SELECT coalesce(max(id), 0)"
            f" FROM events) - ? AND {where}", [sample, *params]).fetchall()
        names = self._names({r[0] for r in rows})
        return sorted(names.get(r[0], "") for r in rows)

    def alert_counts(self, selector: AlertSelector) -> dict[int, int]:
        """Number of matching alerts per priority rank."""
        found = self._alert_where(selector)
        rows = self._reader().execute(
            f"SELECT priority, count(*) FROM alerts WHERE {found[0]} GROUP BY priority", found[1])
        return {priority: n for priority, n in rows}

    def alerts_for_events(self, selector: AlertSelector, events: Selector,
                          limit: int = 100) -> list[Alert]:
        """Alerts matching ``selector`` whose event also matches ``events`` (e.g. one user's)."""
        clauses, params = self._alert_where(selector)
        where, event_params = build_where(self._packed(events), self._resolve, self._resolve_groups)
        # The alert's own time range narrows first (alerts_time); each candidate then costs one
        # primary-key lookup. Inside EXISTS, bare column names resolve to events.
        rows = self._reader().execute(
            "SELECT id, time, rule, priority, output, audit_id, event, cluster, tags, fields"
            f" FROM alerts WHERE {clauses} AND EXISTS (SELECT 1 FROM events"
            f" WHERE events.id = alerts.event AND {where}) ORDER BY id DESC LIMIT ?",
            [*params, *event_params, limit])
        return [
            Alert(id=r[0], time=r[1], rule=r[2], priority=r[3], output=r[4], audit_id=r[5],
                  event=r[6], cluster=r[7], tags=json.loads(r[8]), fields=json.loads(r[9]))
            for r in rows
        ]

    def _alert_where(self, selector: AlertSelector) -> tuple[str, list[object]]:
        clauses: list[str] = ["1"]
        params: list[object] = []
        for column, values in (("rule", selector.rules), ("cluster", selector.clusters),
                               ("audit_id", selector.audit_ids)):
            if values:
                clauses.append(f"alerts.{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        if selector.min_priority is not None:
            clauses.append("alerts.priority <= ?")
            params.append(selector.min_priority)
        if selector.since is not None:
            clauses.append("alerts.time >= ?")
            params.append(selector.since)
        if selector.until is not None:
            clauses.append("alerts.time < ?")
            params.append(selector.until)
        return " AND ".join(clauses), params

    def _names(self, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return dict(self._reader().execute(
            f"SELECT id, value FROM strings WHERE id IN ({marks})", list(ids)))

