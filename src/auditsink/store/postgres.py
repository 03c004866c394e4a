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

import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import zstandard

from auditsink.model import LEVEL_RANK, Item
from auditsink.query.builder import STAGE_INDEX
from auditsink.store import pg_schema
from auditsink.store._shared import GROUPS_PREFIX, REJECTED_BODY_BYTES, GroupCommitWriter, Task
from auditsink.store.base import (
    Alert,
    CursorMoved,
    DeadLetter,
    Rejected,
    Selector,
    StoredEvent,
    StoreError,
    WriteResult,
)
from auditsink.store.pg_queries import PostgresQueries
from auditsink.timeutil import parse_timestamp

log = logging.getLogger("auditsink.store")

# Events per zstd frame: 128 keeps 89% of the whole-group compression (measured on the 1.20
# fixture: 6.5% of the raw size vs 5.7% for one frame per group, 59% per event) while a read of
# one event decompresses ~100 KB, not a whole group.
FRAME_EVENTS = 128
_COLUMNS = ("time, audit_id, cluster, stage, level, name, code, blob, start, length, verb,"
            ' "user", groups, source_ip, user_agent, api_group, resource, subresource, namespace')
_INCOMING = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming (seq integer, task integer, time bigint,"
    " audit_id text, cluster integer, stage smallint, level smallint, name text, code integer,"
    " blob bigint, start integer, length integer, verb integer, \"user\" integer, groups integer,"
    " source_ip integer, user_agent integer, api_group integer, resource integer,"
    " subresource integer, namespace integer) ON COMMIT DELETE ROWS"
)
# nextval runs over rows already sorted by arrival, so positions keep the batch's order.
_MOVE = (
    f"WITH ins AS (INSERT INTO events (id, {_COLUMNS})"
    f" SELECT nextval('events_position'), {_COLUMNS} FROM (SELECT * FROM incoming ORDER BY seq) s"
    " ON CONFLICT DO NOTHING RETURNING audit_id, stage, time, cluster)"
    " SELECT i.task, count(*) FROM ins JOIN incoming i USING (audit_id, stage, time, cluster)"
    " GROUP BY i.task"
)


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, which JSON can ("\u0000").
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


class PostgresStore(GroupCommitWriter, PostgresQueries):
    """PostgreSQL store; see the module docstring for the commit-order and dedup contract."""

    def __init__(self, url: str, sync: str = "normal", queue_events: int = 16_000,
                 group_events: int = 8_000, compression_level: int = 3) -> None:
        if sync not in ("normal", "full"):
            raise StoreError(f"sync {sync!r}: expected 'normal' or 'full'")
        super().__init__(url)
        self.sync = sync
        self._init_writer(queue_events, group_events)
        self._level = compression_level
        self._conn: Any = None
        self._ids: dict[str, int] = {}
        self._key_ids: dict[tuple[Any, ...], tuple[int, ...]] = {}
        self._ahead_day = -1
        self._claims: dict[str, Any] = {}  # consumer name -> the connection holding its lock
        self._held: set[str] = set()

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

    def migrate(self) -> list[pg_schema.Migration]:
        """Apply pending schema migrations (``auditsink db migrate``); returns those applied."""
        conn = self._connect()
        try:
            return pg_schema.migrate(conn)
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
            conn.close()  # ends the session: its consumer claims pass to another replica
        self._claims.clear()
        self._held.clear()
        self._close_readers()

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

    def _intern_all(self, conn: Any, values: set[str]) -> None:
        """Give every new string an id, committed on its own (outside the log transaction)."""
        new = sorted(v for v in values if v not in self._ids)
        if not new:
            return
        # Sorted, so replicas interning overlapping sets take row locks in one order (no
        # deadlock); committed at once, so the log transaction never waits on another's strings.
        conn.execute("INSERT INTO strings (value) SELECT v FROM unnest(%s::text[]) AS v ORDER BY v"
                     " ON CONFLICT (value) DO NOTHING", (new,))
        for value, ident in conn.execute("SELECT value, id FROM strings WHERE value = ANY(%s)",
                                         (new,)):
            self._ids[value] = ident

    def _insert(self, conn: Any, tasks: list[Task]) -> None:
        """Prepare rows and frames, then COPY and move them into ``events`` under the log lock."""
        keys = self._key_ids
        if len(keys) > 100_000:
            keys.clear()
        prepared: list[tuple[int, int, Item, int, tuple[Any, ...]]] = []
        strings = {_text(task.cluster) for task in tasks}
        new_keys: dict[tuple[Any, ...], tuple[str, ...]] = {}
        days = set()
        for number, task in enumerate(tasks):
            for item in task.items:
                event = item.event
                ref = event.objectRef
                user = event.user
                key = (
                    event.verb, user.username, GROUPS_PREFIX + "\n".join(user.groups),
                    event.sourceIPs[0] if event.sourceIPs else "", event.userAgent,
                    ref.apiGroup if ref else "", ref.resource if ref else "",
                    ref.subresource if ref else "", ref.namespace if ref else "",
                )
                if key not in keys and key not in new_keys:
                    clean = new_keys[key] = tuple(_text(v) for v in key)
                    strings.update(clean)
                when = parse_timestamp(event.stageTimestamp)
                days.add(pg_schema.day_of(when))
                prepared.append((number, len(prepared), item, when, key))
        self._intern_all(conn, strings)
        today = pg_schema.day_of(int(time.time() * 1_000_000))
        if today != self._ahead_day:
            days.update((today, today + 1))  # partitions created ahead for today and tomorrow
        if days:
            pg_schema.ensure_partitions(conn, days)
            self._ahead_day = today
        ids = self._ids
        for key, clean in new_keys.items():
            keys[key] = tuple(ids[v] for v in clean)
        rows, frames, seen = [], [], set()
        duplicates = [0] * len(tasks)
        frame_raws: list[bytes] = []
        frame_max = offset = 0
        blob_ids = iter(())  # type: Iterator[int]
        if prepared:
            blob_ids = iter([r[0] for r in conn.execute(
                "SELECT nextval(pg_get_serial_sequence('blobs', 'id'))"
                " FROM generate_series(1, %s)", (-(-len(prepared) // FRAME_EVENTS),))])
        blob = next(blob_ids, 0)
        compressor = zstandard.ZstdCompressor(level=self._level)
        for number, seq, item, when, key in prepared:
            event = item.event
            task = tasks[number]
            cluster = ids[_text(task.cluster)]
            dedup = (event.auditID, event.stage, when, cluster)
            if dedup in seen:  # the same event twice in this group (a retry still queued)
                duplicates[number] += 1
                continue
            seen.add(dedup)
            ident = keys[key]
            ref = event.objectRef
            status = event.responseStatus
            length = len(item.raw)
            rows.append((seq, number, when, _text(event.auditID), cluster,
                         STAGE_INDEX.get(event.stage, 0), LEVEL_RANK[event.level],
                         _text(ref.name) if ref else "", status.code if status is not None else 0,
                         blob, offset, length) + ident)
            frame_raws.append(item.raw)
            frame_max = max(frame_max, when)
            offset += length + 1
            if len(frame_raws) == FRAME_EVENTS:
                frames.append((blob, frame_max, compressor.compress(b"\n".join(frame_raws))))
                frame_raws, frame_max, offset, blob = [], 0, 0, next(blob_ids, 0)
        if frame_raws:
            frames.append((blob, frame_max, compressor.compress(b"\n".join(frame_raws))))
        now = time.time()
        with conn.transaction(), conn.cursor() as cur:
            if frames:
                with cur.copy("COPY blobs (id, max_time, data) FROM STDIN") as copy:
                    for frame in frames:
                        copy.write_row(frame)
            if rows:
                with cur.copy("COPY incoming (seq, task, " + _COLUMNS + ") FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            for task in tasks:
                if task.bad:
                    cur.executemany(
                        "INSERT INTO rejected (time, cluster, error, body) VALUES (%s,%s,%s,%s)",
                        [(now, _text(task.cluster), _text(f"item {b.index}: {b.error}"),
                          b.snippet.encode()[:REJECTED_BODY_BYTES]) for b in task.bad])
            stored: dict[int, int] = {}
            if rows:
                # Held until COMMIT: positions are handed out one transaction at a time, so they
                # grow in commit order across replicas (docs/postgres.md, "Commit order").
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.LOG_LOCK,))
                stored = dict(cur.execute(_MOVE).fetchall())
        for number, task in enumerate(tasks):
            kept = stored.get(number, 0)
            task.result = WriteResult(stored=kept, duplicates=len(task.items) - kept)
            self.duplicates += len(task.items) - kept

    # -- retention -------------------------------------------------------------------------

    def prune(self, older_than: int, chunk: int = 20_000) -> int:
        """Delete events with time < ``older_than`` (µs): drop whole days, delete the rest."""
        conn = self._connect()
        deleted = 0
        try:
            for name, day in pg_schema.partitions(conn):
                if (day + 1) * pg_schema.DAY_US > older_than:
                    break
                with conn.transaction():
                    deleted += int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
                    conn.execute(f"DROP TABLE {name}")
            # The partially expired day: small transactions, so ingest interleaves.
            while True:
                count = conn.execute(
                    "DELETE FROM events WHERE time < %s AND id IN (SELECT id FROM events"
                    " WHERE time < %s ORDER BY time LIMIT %s)", (older_than, older_than, chunk)
                ).rowcount
                deleted += int(count)
                if count < chunk:
                    break
            # Every event of these frames is older than the cutoff: all gone.
            conn.execute("DELETE FROM blobs WHERE max_time < %s", (older_than,))
        finally:
            conn.close()
        return deleted

    # -- consumers and alerts ---------------------------------------------------------------

    def commit_consumed(self, name: str, position: int, alerts: list[Alert],
                        expected: int | None = None,
                        dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Store a consumer's alerts (or dead letters) and advance its cursor in one
        transaction (exactly once)."""
        dead = [(name, d.first, d.last, d.events, d.attempts, _text(d.error), d.time or time.time())
                for d in dead_letters]
        rows = [
            (a.time, a.rule, a.priority, a.output, a.audit_id, a.event, a.cluster,
             json.dumps(a.tags), json.dumps(a.fields, default=str))
            for a in alerts
        ]
        conn = self._reader()
        with conn.transaction(), conn.cursor() as cur:
            if expected is not None:
                # Compare-and-set: one consumer's commits take turns (a lock that also covers
                # a cursor row not inserted yet); a stale position rolls everything back.
                cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                            (pg_schema.CURSOR_LOCK_CLASS, name))
                row = cur.execute("SELECT position FROM cursors WHERE name = %s", (name,)).fetchone()
                if (row[0] if row else 0) != expected:
                    raise CursorMoved(f"consumer {name!r} is at {row[0] if row else 0}, "
                                      f"not {expected}")
            if rows:
                # Alert ids are positions notifiers page by: hand them out in commit order too.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (pg_schema.LOG_LOCK,))
                cur.executemany(
                    "INSERT INTO alerts (id, time, rule, priority, output, audit_id, event,"
                    " cluster, tags, fields) VALUES (nextval('alerts_position'),"
                    " %s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
            if dead:
                cur.executemany(
                    "INSERT INTO dead_letters (consumer, first, last, events, attempts, error,"
                    " time) VALUES (%s,%s,%s,%s,%s,%s,%s)", dead)
            cur.execute(
                "INSERT INTO cursors (name, position) VALUES (%s, %s) ON CONFLICT (name)"
                " DO UPDATE SET position = excluded.position", (name, position))

    def cursors(self) -> dict[str, int]:
        """Every consumer's durable position, by name."""
        rows = self._reader().execute("SELECT name, position FROM cursors ORDER BY name")
        return {name: int(position) for name, position in rows}

    def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters of one consumer (or all), oldest first."""
        where, params = ("WHERE consumer = %s", [consumer]) if consumer else ("", [])
        rows = self._reader().execute(
            "SELECT consumer, first, last, events, attempts, error, time, id FROM dead_letters"
            f" {where} ORDER BY id LIMIT %s", [*params, limit])
        return [DeadLetter(*row) for row in rows]

    def drop_dead_letter(self, ident: int) -> None:
        """Forget a dead letter (it was replayed)."""
        self._reader().execute("DELETE FROM dead_letters WHERE id = %s", (ident,))

    def claim_consumer(self, name: str) -> bool:
        """Hold consumer ``name`` among all replicas: a session advisory lock on a connection
        of its own, released when the store closes, the process dies or the connection
        breaks (then this answers False until it is won again)."""
        conn = self._claims.get(name)
        try:
            if conn is None or conn.closed or conn.broken:
                conn = self._claims[name] = self._connect()
                self._held.discard(name)
            if name in self._held:
                conn.execute("SELECT 1")  # still connected, so still held
                return True
            got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                               (pg_schema.CLAIM_LOCK_CLASS, name)).fetchone()[0]
        except Exception as exc:  # StoreError from connecting, psycopg.Error from the query
            log.warning("consumer %r: cannot reach PostgreSQL to hold it (%s)", name, exc)
            self._held.discard(name)
            return False
        if got:
            self._held.add(name)
        return bool(got)

    def set_cursor(self, name: str, position: int) -> None:
        """Advance a consumer's durable cursor."""
        self.commit_consumed(name, position, [])

    def save_state(self, name: str, data: bytes) -> None:
        """Keep a component's state beside the log; replicas share it (the same log)."""
        if self._writer is None:
            return  # opened for reading only
        conn = self._reader()
        with conn.transaction():
            conn.execute("INSERT INTO state (name, data) VALUES (%s, %s) ON CONFLICT (name)"
                         " DO UPDATE SET data = excluded.data", (name, data))

    def load_state(self, name: str) -> bytes | None:
        """What :meth:`save_state` kept under ``name``, or None."""
        row = self._reader().execute("SELECT data FROM state WHERE name = %s", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def get_cursor(self, name: str) -> int:
        """A consumer's durable position in the log."""
        row = self._reader().execute("SELECT position FROM cursors WHERE name = %s",
                                     (name,)).fetchone()
        return int(row[0]) if row else 0

    def rejected(self, limit: int = 100) -> list[Rejected]:
        """The most recent undecodable items."""
        rows = self._reader().execute(
            "SELECT id, time, cluster, error, body FROM rejected ORDER BY id DESC LIMIT %s",
            (limit,))
        return [Rejected(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def iter_all(self, selector: Selector, batch: int = 5000) -> Iterator[StoredEvent]:
        """Every matching event in log order (export, replays)."""
        after = 0
        while True:
            page = self.query(selector, limit=batch, after_id=after, newest_first=False)
            yield from page
            if len(page) < batch:
                return
            after = page[-1].id

    def size_bytes(self) -> int:
        """The database's size on disk, in bytes."""
        size: int = self._reader().execute("SELECT pg_database_size(current_database())").fetchone()[0]
        return size
