"""One object's history without a scattered B-tree insert per event at each commit (issue 16).

An index on ``events (name, resource, namespace, time)`` cost a quarter of every insert
(``bench_indexes``: 19.3 against 14.4 µs per event): names are many, so each commit touched a
leaf page for nearly every event that names an object, and wrote each such page to the WAL
again at every commit; in a store of 10 million events those pages are no longer cached and
are read from disk first. Instead ``objects`` holds the same keys, sorted, for the **runs** of
the log that ``audit_ids`` indexes (audit_ids.py): written at once per run of 32,768 events,
so a page takes all of a run's entries for its objects in one write, off the commit path.

Reads see the same events as before:
- :func:`condition` (counts, log order, any read): the ids in ``objects`` plus a scan of the
  tail of the log no run covers yet (at most about a run, by rowid: a few ms);
- :func:`page_parts` (pages in time order): ``objects`` walked backwards in (time, id) order
  and joined to the events, stopping at the page size however long the history is, merged
  with the tail's matches, as the union of the user's two branches is (reads.py).

Retention leaves entries of deleted events behind (they join to nothing); :func:`sweep`
deletes them in small chunks once they are an eighth of the table.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["condition", "forget_after", "index_run", "page_parts", "sweep"]

RUN_COLUMNS = "obj_name, obj_resource, obj_namespace, obj_time, event_id"
_SWEEP_CHUNK = 5000
_SWEPT_KEY = "objects_swept_below"


def index_run(conn: sqlite3.Connection, low: int, high: int) -> None:
    """Add the object keys of the events ``low < id <= high`` (in the run's transaction)."""
    conn.execute(
        f"INSERT OR IGNORE INTO objects ({RUN_COLUMNS})"
        " SELECT name, resource, namespace, time, id FROM events"
        " WHERE id > ? AND id <= ? AND name <> ''"
        " ORDER BY name, resource, namespace, time, id", (low, high))


def condition(names: Sequence[str], params: list[object], tail: str) -> str:
    """The condition "names one of ``names``" on ``events``; ``tail`` is the SQL of the
    first log position no run covers (audit_ids.py)."""
    marks = ", ".join("?" * len(names))
    params.extend(names)
    params.extend(names)
    return (f"events.id IN (SELECT o.event_id FROM objects o WHERE o.obj_name IN ({marks})"
            f" UNION ALL SELECT t.id FROM events t WHERE t.id > {tail}"
            f" AND t.name IN ({marks}))")


def page_parts(select: Callable[[str, str], str], names: Sequence[str],
               narrowing: Sequence[tuple[str, list[int]]], seek: Sequence[tuple[str, object]],
               where: str, params: list[object], order: str, limit: int, tail: str,
               key: tuple[str, tuple[int, int]] | None) -> list[tuple[str, list[object]]]:
    """The two SELECTs whose union holds a page (each ordered by time and id, cut at
    ``limit``): the runs, read through ``objects`` in time order, and the tail.

    ``select(where, sources)`` is the store's SELECT of events rows; ``where`` the page's
    condition on the events (its name clause included); ``narrowing`` the (objects column,
    ids) the selector implies and ``seek`` its time range as (clause on ``o``, value), so
    that the walk seeks on them; ``key`` the page cursor (``"<"`` or ``">"``, (time, id)),
    applied to the walk as well so that a page deep in a long history seeks to it instead
    of reading past the newer entries.
    """
    clauses = [f"o.obj_name IN ({', '.join('?' * len(names))})"]
    own: list[object] = list(names)
    for column, ids in narrowing:
        clauses.append(f"o.{column} IN ({', '.join('?' * len(ids))})")
        own.extend(ids)
    for clause, value in seek:
        clauses.append(clause)
        own.append(value)
    if key is not None:
        op, (when, ident) = key
        clauses.append(f"o.obj_time {op}= ? AND (o.obj_time {op} ? OR o.event_id {op} ?)")
        own.extend((when, when, ident))
    runs = (select(" AND ".join([*clauses, where]),
                   "objects o CROSS JOIN events ON events.id = o.event_id")
            + f" ORDER BY o.obj_time {order}, o.event_id {order} LIMIT ?")
    # NOT INDEXED: the tail is read by rowid, never by walking a time index over the log.
    rest = (select(f"events.id > {tail} AND {where}", "events NOT INDEXED")
            + f" ORDER BY events.time {order}, events.id {order} LIMIT ?")
    return [(runs, [*own, *params, limit]), (rest, [*params, limit])]


def sweep(reader: sqlite3.Connection, call_in_writer: Callable[[Callable[[Any], int]], int],
          indexed_events: int) -> int:
    """After retention: delete the entries of events that are gone, once they are an eighth
    of the table or more (``indexed_events``: how many events the runs cover); returns how
    many. The entries are found on ``reader`` (a full read of ``objects``, while ingest goes
    on) and deleted by key on the writer, a chunk at a time, so no commit waits long."""
    first = reader.execute("SELECT min(id) FROM events").fetchone()[0]
    if first is None:
        return 0  # forget_after did it
    row = reader.execute("SELECT value FROM meta WHERE key = ?", (_SWEPT_KEY,)).fetchone()
    swept_below = int(row[0]) if row else 1
    if (first - swept_below) * 8 < indexed_events:
        return 0
    deleted = 0
    after: tuple[object, ...] | None = None
    while True:
        bound = "" if after is None else f" AND ({RUN_COLUMNS}) > (?, ?, ?, ?, ?)"
        keys = reader.execute(
            f"SELECT {RUN_COLUMNS} FROM objects WHERE event_id < ?{bound}"
            f" ORDER BY {RUN_COLUMNS} LIMIT {_SWEEP_CHUNK}",
            (first, *(after or ()))).fetchall()
        if keys:
            deleted += int(call_in_writer(functools.partial(_delete, keys=keys)))
        if len(keys) < _SWEEP_CHUNK:
            break
        after = tuple(keys[-1])

    def done(conn: sqlite3.Connection) -> int:
        with conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                         " DO UPDATE SET value = excluded.value", (_SWEPT_KEY, str(first)))
        return 0

    call_in_writer(done)
    return deleted


def _delete(conn: sqlite3.Connection, keys: list[tuple[Any, ...]]) -> int:
    with conn:
        conn.executemany("DELETE FROM objects WHERE obj_name = ? AND obj_resource = ? AND"
                         " obj_namespace = ? AND obj_time = ? AND event_id = ?", keys)
    return len(keys)


def forget_after(conn: sqlite3.Connection, last: int) -> None:
    """Drop the entries of the ids after ``last`` (in retention's transaction, audit_ids.py:
    those ids come again). 0, every entry: the store is empty."""
    if last == 0:
        conn.execute("DELETE FROM objects")
        conn.execute("DELETE FROM meta WHERE key = ?", (_SWEPT_KEY,))
    else:  # rare (retention took the newest events): a scan of the table
        conn.execute("DELETE FROM objects WHERE event_id > ?", (last,))
