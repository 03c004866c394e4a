"""One object's history without a scattered B-tree insert per event at each commit (issue 16).

An index on ``events (name, resource, namespace, time)`` cost a quarter of every insert
(``bench_indexes``: 19.3 against 14.4 µs per event): names are many, so each commit touched a
leaf page for nearly every event that names an object. Instead ``objects`` holds the same
keys for the **runs** of the log that ``audit_ids`` indexes (audit_ids.py), written at once
per run of 32,768 events, off the commit path, and led by the run's number as ``audit_ids``
is: each run is an append. (Schema 5 led with the name, so that a run's entries landed on
leaf pages all over a table of 400 MB in a store of 10 million events: 130-150 ms of the
writer per run against 36 ms into an empty store, three quarters of what a full store added
to ingest; bench_stages --store-from.) ``runs`` keeps each run's time range.

Reads see the same events as before:
- :func:`condition` (counts, log order, any read): one seek per run in ``objects``, as for
  auditIDs, plus a scan of the tail of the log no run covers yet (at most about a run);
- :func:`page_walk` (pages in time order): the runs, newest first by time range, a few at a
  time, each read in time order and cut at the page size, stopping as soon as the page is
  full and no run left can hold an event that sorts before its last; merged with the tail's
  matches (the store's ``_page_rows``).

Retention drops the runs whose events are all gone, as for auditIDs; the entries of the one
run it cut into join to nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from auditsink.store.sql.reads import merge_rows

__all__ = ["condition", "forget_after", "forget_before", "index_run", "page_walk"]

RUN_COLUMNS = "run, obj_name, obj_resource, obj_namespace, obj_time, event_id"
# Runs read by one statement of a walk, at most: the first reads one (a busy object's page is
# usually all in the newest run), each next twice as many (a rare object's few events are
# spread over all of them: 300 runs for 10 million events in 9 statements).
_MOST_RUNS = 64

Row = Sequence[Any]


def index_run(conn: sqlite3.Connection, run: int, low: int, high: int) -> None:
    """Add the object keys of the events ``low < id <= high``, run ``run``, and its time
    range (in the run's transaction)."""
    conn.execute(
        f"INSERT OR IGNORE INTO objects ({RUN_COLUMNS})"
        " SELECT ?, name, resource, namespace, time, id FROM events"
        " WHERE id > ? AND id <= ? AND name <> ''"
        " ORDER BY name, resource, namespace, time, id", (run, low, high))
    conn.execute(
        "INSERT OR REPLACE INTO runs (run, min_time, max_time) SELECT ?, min(time), max(time)"
        " FROM events WHERE id > ? AND id <= ? AND name <> '' HAVING count(*) > 0",
        (run, low, high))


def condition(names: Sequence[str], params: list[object], tail: str) -> str:
    """The condition "names one of ``names``" on ``events``; ``tail`` is the SQL of the
    first log position no run covers (audit_ids.py)."""
    marks = ", ".join("?" * len(names))
    params.extend(names)
    params.extend(names)
    return (f"events.id IN (SELECT o.event_id FROM objects o WHERE o.run IN"
            f" (SELECT run FROM runs) AND o.obj_name IN ({marks})"
            f" UNION ALL SELECT t.id FROM events t WHERE t.id > {tail}"
            f" AND t.name IN ({marks}))")


def page_walk(select: Callable[[str, str], str], names: Sequence[str],
              narrowing: Sequence[tuple[str, list[int]]], since: int | None,
              until: int | None, where: str, params: list[object], newest_first: bool, limit: int,
              key: tuple[str, tuple[int, int]] | None) -> Callable[[sqlite3.Connection],
                                                                    list[Row]]:
    """The part of a page the runs hold: a function of a connection (in the page's read
    transaction) that returns up to ``limit`` rows of ``select`` in time order.

    ``select(where, sources)`` is the store's SELECT of events rows (id and time first);
    ``where`` the page's condition on the events (its name clause included); ``narrowing``
    the (objects column, ids) the selector implies and ``since``/``until`` its time range, so
    that each run is read from its key and the runs outside the range are skipped; ``key`` the
    page cursor (``"<"`` or ``">"``, (time, id)), which skips the runs wholly past it too.
    """
    clauses = [f"o.obj_name IN ({', '.join('?' * len(names))})"]
    own: list[object] = list(names)
    for column, ids in narrowing:
        clauses.append(f"o.{column} IN ({', '.join('?' * len(ids))})")
        own.extend(ids)
    # Which runs can hold a match at all, from their time ranges.
    bounds: list[str] = []
    bound_params: list[object] = []
    if since is not None:
        clauses.append("o.obj_time >= ?")
        own.append(since)
        bounds.append("max_time >= ?")
        bound_params.append(since)
    if until is not None:
        clauses.append("o.obj_time < ?")
        own.append(until)
        bounds.append("min_time < ?")
        bound_params.append(until)
    if key is not None:
        op, (when, ident) = key
        clauses.append(f"o.obj_time {op}= ? AND (o.obj_time {op} ? OR o.event_id {op} ?)")
        own.extend((when, when, ident))
        bounds.append(f"{'min_time' if op == '<' else 'max_time'} {op}= ?")
        bound_params.append(when)
    order = "DESC" if newest_first else "ASC"
    # Newest first, the runs by their newest time: once the page is full, a run whose
    # newest event is older than the page's last cannot change it, nor can any after it.
    edge = "max_time" if newest_first else "min_time"
    runs_sql = (f"SELECT run, {edge} FROM runs"
                f"{' WHERE ' + ' AND '.join(bounds) if bounds else ''} ORDER BY {edge} {order}")
    fixed = " AND ".join([*clauses, where])
    sources = "objects o CROSS JOIN events ON events.id = o.event_id"

    def read(conn: sqlite3.Connection) -> list[Row]:
        runs = conn.execute(runs_sql, bound_params).fetchall()
        found: list[Row] = []
        taken, batch = 0, 1
        while taken < len(runs):
            chosen = []
            for run, run_edge in runs[taken:taken + batch]:
                if len(found) >= limit and (run_edge < found[-1][1] if newest_first
                                            else run_edge > found[-1][1]):
                    break
                chosen.append(run)
            if not chosen:
                break
            taken += len(chosen)
            batch = min(batch * 2, _MOST_RUNS)
            marks = ", ".join("?" * len(chosen))
            sql = (select(f"o.run IN ({marks}) AND {fixed}", sources)
                   + f" ORDER BY o.obj_time {order}, o.event_id {order} LIMIT ?")
            rows = conn.execute(sql, [*chosen, *own, *params, limit]).fetchall()
            found = merge_rows([found, rows], newest_first, limit)
        return found

    return read


def forget_before(conn: sqlite3.Connection, first_run: int) -> None:
    """Drop the runs before ``first_run`` (in retention's transaction: their events are all
    gone, audit_ids.py)."""
    conn.execute("DELETE FROM objects WHERE run < ?", (first_run,))
    conn.execute("DELETE FROM runs WHERE run < ?", (first_run,))


def forget_after(conn: sqlite3.Connection, kept: int) -> None:
    """Drop the runs from ``kept`` on (in retention's transaction, audit_ids.py: the ids they
    covered come again)."""
    conn.execute("DELETE FROM objects WHERE run >= ?", (kept,))
    conn.execute("DELETE FROM runs WHERE run >= ?", (kept,))
