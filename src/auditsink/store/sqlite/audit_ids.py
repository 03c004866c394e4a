"""Lookups by auditID without a B-tree insert per event on the commit path (issue 16).

An index on ``events (audit_id)`` cost a third of every insert: auditIDs are random, so each
commit dirtied a leaf page per event all over it, which the WAL wrote and the checkpoint
wrote again (in a store of 10 million events, the rate into it halved). Instead the log is
indexed in **runs** of ``RUN`` events: once the log holds a whole run past the last one
indexed, the writer copies the run's (auditID, id) pairs into ``audit_ids`` at once, sorted,
under a key led by the run's number, which is new and the largest: an append, not a scatter.

A lookup seeks once in each run (about 300 for 10 million events, 1-2 ms) and scans the
tail the runs do not cover yet (at most about a run: a few ms), in one condition that reads
``meta`` in the same snapshot as the events, so what it finds is exact whatever the writer
is doing meanwhile. Retention deletes the runs whose events are all gone; entries of a run
it cut into point at nothing and match nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

from auditsink.store.sqlite import objects

log = logging.getLogger("auditsink.store")

# Events per run: a run is written in ~30 ms and the tail scan stays a few ms. Part of the
# file format (run k holds ids k * RUN + 1 .. (k + 1) * RUN): change it with a schema upgrade.
RUN = 1 << 15

_RUNS_KEY = "audit_ids_runs"
_RUNS = f"(SELECT coalesce(max(CAST(value AS INTEGER)), 0) FROM meta WHERE key = '{_RUNS_KEY}')"
# The numbers of the indexed runs (0 .. runs - 1), for one seek in each.
_EACH_RUN = (f"WITH RECURSIVE r(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM r"
             f" WHERE k + 1 < {_RUNS}) SELECT k FROM r")


def tail() -> str:
    """SQL for the last log position the runs cover: what is after it is read from events."""
    return f"{_RUNS} * {RUN}"


def indexed_runs(conn: sqlite3.Connection) -> int:
    """How many runs from the start of the log are in ``audit_ids``."""
    return int(conn.execute(f"SELECT {_RUNS}").fetchone()[0])


def index_runs(conn: sqlite3.Connection, most: int | None = 1) -> int:
    """Index the whole runs of the log not indexed yet, ``most`` at a time (None: all), in
    one transaction, here and in ``objects`` (objects.py); returns how many. On the writer
    thread, between commits; another process writing the same file sees the count in
    ``meta`` and does not do them twice."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        runs = indexed_runs(conn)
        top = int(conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
        done = 0
        while (runs + 1) * RUN <= top and (most is None or done < most):
            conn.execute(
                "INSERT OR IGNORE INTO audit_ids (run, audit_id, id) SELECT ?, audit_id, id"
                " FROM events WHERE id > ? AND id <= ? ORDER BY audit_id, id",
                (runs, runs * RUN, (runs + 1) * RUN))
            objects.index_run(conn, runs, runs * RUN, (runs + 1) * RUN)
            runs += 1
            done += 1
        if done:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                         " DO UPDATE SET value = excluded.value", (_RUNS_KEY, str(runs)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return done


def catch_up(conn: sqlite3.Connection, path: str) -> None:
    """At open: index every whole run still missing (all of them after an upgrade from a
    file that had per-event indexes), so that no lookup scans a long tail."""
    runs = indexed_runs(conn)
    top = int(conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
    missing = top // RUN - runs
    if missing > 8:
        log.warning("indexing the auditIDs and objects of %s once: %d runs of %d events "
                    "(about 2 s of CPU per million events)", path, missing, RUN)
    if missing > 0:
        index_runs(conn, most=None)


def condition(values: Sequence[object], params: list[object]) -> str:
    """The condition "auditID in ``values``" (stored forms) on ``events``."""
    marks = ", ".join("?" * len(values))
    params.extend(values)
    params.extend(values)
    # One IN on the rowid, so that the planner looks the few ids up instead of walking a
    # time index and testing each event (an OR of two terms made it do that: 1.3 s).
    return (f"events.id IN (SELECT a.id FROM audit_ids a WHERE a.run IN ({_EACH_RUN})"
            f" AND a.audit_id IN ({marks})"
            f" UNION ALL SELECT t.id FROM events t WHERE t.id > {tail()}"
            f" AND t.audit_id IN ({marks}))")


def forget_before(conn: sqlite3.Connection) -> None:
    """After retention (in its transaction): drop the runs whose events are all deleted,
    here and in ``objects``. SQLite hands out max(id) + 1, so when
    retention took the newest events too the ids after the remaining ones come again: the
    runs that covered them are dropped, to be indexed again once the log refills them (with
    no event left, all of them: the next event is id 1)."""
    first, top = conn.execute("SELECT min(id), coalesce(max(id), 0) FROM events").fetchone()
    runs = indexed_runs(conn)
    if first is not None:
        conn.execute("DELETE FROM audit_ids WHERE run < ?", ((int(first) - 1) // RUN,))
        objects.forget_before(conn, (int(first) - 1) // RUN)
    if top >= runs * RUN:
        return
    kept = top // RUN
    conn.execute("DELETE FROM audit_ids WHERE run >= ?", (kept,))
    objects.forget_after(conn, kept)
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                 " DO UPDATE SET value = excluded.value", (_RUNS_KEY, str(kept)))
