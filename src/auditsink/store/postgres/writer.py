"""What the PostgreSQL writer thread does in a commit: intern, compress, COPY, move under the
log lock (see the package docstring for why)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import zstandard

from auditsink.model import LEVEL_RANK, Item
from auditsink.selector import bounded
from auditsink.store._rows import (
    KEY_COLUMNS,
    NOBODY,
    REJECTED_BODY_BYTES,
    decision_value,
    row_strings,
)
from auditsink.store._writer import Task
from auditsink.store.base import WriteResult
from auditsink.store.postgres import schema as pg_schema
from auditsink.store.sql.where import STAGE_INDEX
from auditsink.timeutil import parse_timestamp

# Events per zstd frame: 128 keeps 89% of the whole-group compression (measured on the 1.20
# fixture: 6.5% of the raw size vs 5.7% for one frame per group, 59% per event) while a read of
# one event decompresses ~100 KB, not a whole group.
FRAME_EVENTS = 128
STRING_CACHE = 200_000
_COLUMNS = ("time, audit_id, cluster, stage, level, name, code, decision, blob, start, length, "
            + ", ".join('"user"' if c == "user" else c for c in KEY_COLUMNS))
_INCOMING = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming (seq integer, task integer, time bigint,"
    " audit_id text, cluster integer, stage smallint, level smallint, name text, code integer,"
    " decision smallint, blob bigint, start integer, length integer, "
    + ", ".join(('"user"' if c == "user" else c) + " integer" for c in KEY_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
# nextval runs over rows already sorted by arrival, so positions keep the batch's order.
_MOVE = (
    f"WITH ins AS (INSERT INTO events (id, {_COLUMNS})"
    f" SELECT nextval('events_position'), {_COLUMNS} FROM (SELECT * FROM incoming ORDER BY seq) s"
    " ON CONFLICT DO NOTHING RETURNING audit_id, stage, time, cluster)"
    " SELECT i.task, count(*) FROM ins JOIN incoming i USING (audit_id, stage, time, cluster)"
    " GROUP BY i.task"
)
# The incoming rows of one task that this transaction inserted (after _MOVE).
_NEW_SEQS = (
    "SELECT i.seq FROM incoming i JOIN events e USING (audit_id, stage, time, cluster)"
    " WHERE i.task = %s AND e.xmin = xid(pg_current_xact_id())"
)


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, which JSON can ("\u0000").
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


class PostgresWrites:
    """Mixed into PostgresStore: the commit of one group, and retention."""

    _ids: dict[str, int]
    _key_ids: dict[tuple[Any, ...], tuple[int, ...]]
    _clusters: set[str]
    _ahead_day: int
    _level: int
    duplicates: int
    _connect: Callable[[], Any]

    def _note_clusters(self, conn: Any, names: set[str]) -> None:
        new = sorted(names - self._clusters)
        if new:
            conn.execute("INSERT INTO clusters (name) SELECT unnest(%s::text[])"
                         " ON CONFLICT DO NOTHING", (new,))
            self._clusters.update(new)

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
        if len(self._ids) > STRING_CACHE:  # bounded, whatever senders send
            self._ids.clear()
            keys.clear()
        prepared: list[tuple[int, int, Item, int, tuple[Any, ...]]] = []
        strings = {_text(task.cluster) for task in tasks}
        new_keys: dict[tuple[Any, ...], tuple[str, ...]] = {}
        days = set()
        for number, task in enumerate(tasks):
            for item in task.items:
                event = item.event
                key = row_strings(event)
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
            # "" impersonated user (the next to last string) is nobody: 0, not the id of "".
            keys[key] = (*(ids[v] for v in clean[:-2]), ids[clean[-2]] if clean[-2] else NOBODY,
                         ids[clean[-1]])
        self._note_clusters(conn, {_text(task.cluster) for task in tasks})
        rows, frames, seen = [], [], set()
        duplicates = [0] * len(tasks)
        frame_raws: list[bytes] = []
        frame_max = offset = 0
        blob_ids: Iterator[int] = iter(())
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
            dedup = (bounded(event.auditID), event.stage, when, cluster)
            if dedup in seen:  # the same event twice in this group (a retry still queued)
                duplicates[number] += 1
                continue
            seen.add(dedup)
            ident = keys[key]
            ref = event.objectRef
            status = event.responseStatus
            length = len(item.raw)
            rows.append((seq, number, when, _text(bounded(event.auditID)), cluster,
                         STAGE_INDEX.get(event.stage, 0), LEVEL_RANK[event.level],
                         _text(bounded(ref.name)) if ref else "",
                         status.code if status is not None else 0,
                         decision_value(event), blob, offset, length) + ident)
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
            # Only for a batch with duplicates (a retry): which of its rows were new, told by
            # the rows this transaction wrote (xmin), so the common case costs nothing more.
            partial = [n for n, task in enumerate(tasks) if 0 < stored.get(n, 0) < len(task.items)]
            fresh: set[int] = set()
            for number in partial:
                fresh.update(seq for (seq,) in cur.execute(_NEW_SEQS, (number,)))
        start = 0
        for number, task in enumerate(tasks):
            kept, count = stored.get(number, 0), len(task.items)
            repeated: tuple[int, ...] = ()
            if kept == 0:
                repeated = tuple(range(count))
            elif kept < count:
                repeated = tuple(i for i in range(count) if start + i not in fresh)
            task.result = WriteResult(stored=kept, duplicates=count - kept,
                                      duplicate_items=repeated)
            self.duplicates += count - kept
            start += count

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

