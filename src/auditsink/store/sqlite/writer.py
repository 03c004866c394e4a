"""What the SQLite writer thread does in a commit: intern strings, compress bodies, insert rows.

Runs only on the writer thread (store/_writer.py), inside its ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import zstandard

from auditsink.store._rows import NOBODY, REJECTED_BODY_BYTES
from auditsink.store._writer import Task
from auditsink.store.base import WriteResult
from auditsink.store.sqlite.rows import PreparedBatch, Row, pack_audit_id, rows_of

__all__ = ["Interner", "insert", "pack_audit_id"]

INSERT = (
    "INSERT OR IGNORE INTO events (time, audit_id, cluster, stage, level, name, code, decision,"
    " blob, offset, length, verb, user, groups, source_ip, user_agent, api_group, resource,"
    " subresource, namespace, impersonated_user, uri)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
# Past this many strings the dictionary cache starts over: memory stays bounded whatever
# senders send.
STRING_CACHE = 200_000
# Strings looked up in one statement (a power of two; SQLite allows 32,766 parameters).
LOOKUP_CHUNK = 512


class Interner:
    """The writer's cache of the ``strings`` dictionary: value -> id, new values inserted.

    Bounded (:data:`STRING_CACHE` entries, then it starts over) and filled as values are met,
    not loaded whole at start: a store that saw millions of distinct request paths or user
    agents costs no more memory than one that saw a few. ``generation`` follows the store's
    ``strings_generation``: when a sweep (``SQLiteStore.sweep_strings``) deleted strings,
    every writer on the file drops what it cached before using an id again.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.reload(conn)

    def reload(self, conn: sqlite3.Connection) -> None:
        """Start over (after a rollback took the ids it handed out, or a sweep)."""
        self.known: dict[str, int] = {}
        self.clusters: set[str] = {row[0] for row in conn.execute("SELECT name FROM clusters")}
        self.generation = generation(conn)

    def check(self, conn: sqlite3.Connection) -> None:
        """Inside the commit's transaction: start over if strings were swept since."""
        if generation(conn) != self.generation:
            self.reload(conn)

    def intern(self, conn: sqlite3.Connection, value: str) -> int:
        ident = self.known.get(value)
        if ident is None:
            if len(self.known) > STRING_CACHE:
                self.known.clear()
            row = conn.execute("SELECT id FROM strings WHERE value = ?", (value,)).fetchone()
            if row is None:
                row = conn.execute("INSERT INTO strings (value) VALUES (?) RETURNING id",
                                   (value,)).fetchone()
            ident = self.known[value] = int(row[0])
        return ident

    def ids(self, conn: sqlite3.Connection, strings: list[str]) -> tuple[list[int], list[int]]:
        """Dictionary ids of a batch's string table (rows.rows_of), and the same for the
        impersonated-user column, where "" (index 0) is :data:`NOBODY`.

        The strings not cached are looked up, and the new ones inserted, a few statements
        for the whole batch: new request paths come with a fifth of the generated events,
        and two statements for each were a sixth of the writer thread (bench_stages).
        """
        known = self.known
        missing = [value for value in strings if value not in known]
        if missing:
            if len(known) + len(missing) > STRING_CACHE:
                known.clear()
                missing = strings
            self._look_up(conn, missing)
        ids = [known[value] for value in strings]
        as_user = ids.copy()
        as_user[0] = NOBODY
        return ids, as_user

    def _look_up(self, conn: sqlite3.Connection, values: list[str]) -> None:
        """Cache the ids of ``values`` (distinct), inserting those the file lacks."""
        known = self.known
        for start in range(0, len(values), LOOKUP_CHUNK):
            chunk = values[start:start + LOOKUP_CHUNK]
            # Padded to a power of two with repeats: a few statements to prepare, not one
            # per length.
            size = 1 << (len(chunk) - 1).bit_length()
            known.update(conn.execute(
                f"SELECT value, id FROM strings WHERE value IN ({','.join('?' * size)})",
                chunk + chunk[:1] * (size - len(chunk))))
        new = [(value,) for value in values if value not in known]
        if new:
            # One writer, inside its transaction: the new rows are those past the last id.
            last = conn.execute("SELECT max(id) FROM strings").fetchone()[0] or 0
            conn.executemany("INSERT INTO strings (value) VALUES (?)", new)
            known.update(conn.execute("SELECT value, id FROM strings WHERE id > ?", (last,)))

    def cluster(self, conn: sqlite3.Connection, name: str) -> int:
        if name not in self.clusters:
            conn.execute("INSERT OR IGNORE INTO clusters (name) VALUES (?)", (name,))
            self.clusters.add(name)
        return self.intern(conn, name)


def generation(conn: sqlite3.Connection) -> int:
    """How many times strings were swept from this file."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'strings_generation'").fetchone()
    return int(row[0]) if row else 0


def insert(conn: sqlite3.Connection, interner: Interner, tasks: list[Task],
           compressor: zstandard.ZstdCompressor, blob_events: int) -> tuple[int, int]:
    """Compress the group's bodies into blobs, then insert one row per event; sets each
    task's result and returns how many rows were stored and how many were duplicates.

    A task holds decoded items (this process received them) or a :class:`PreparedBatch` a
    receiver process built; bodies a receiver did not compress are compressed here with the
    rest of the group. The whole group is one ``executemany``, and the rows of this
    process's tasks share one table of strings: in blocking mode a group is a few one-event
    tasks, and a table, a lookup and an ``executemany`` for each were a third of a commit.
    """
    now = time.time()
    own = [item for task in tasks if task.prepared is None for item in task.items]
    own_rows, own_strings = rows_of([item.event for item in own])
    own_ids = interner.ids(conn, own_strings) if own else ([], [])
    loose: list[tuple[int, bytes]] = []  # (time, bytes) of the bodies compressed here
    # Per task: its rows, the ids of their strings, and their places when its blobs are its own.
    parts: list[tuple[Task, list[Row], tuple[list[int], list[int]],
                      list[tuple[int, int, int]] | None]] = []
    taken = 0
    for task in tasks:
        prepared: PreparedBatch | None = task.prepared
        bad = prepared.bad_items() if prepared is not None else task.bad
        if bad:
            conn.executemany(
                "INSERT INTO rejected (time, cluster, error, body) VALUES (?,?,?,?)",
                [(now, task.cluster, f"item {b.index}: {b.error}",
                  b.snippet.encode()[:REJECTED_BODY_BYTES]) for b in bad])
        if prepared is None:
            rows = own_rows[taken:taken + len(task.items)]
            taken += len(rows)
            loose.extend(zip([row[0] for row in rows], [item.raw for item in task.items]))
            parts.append((task, rows, own_ids, None))
            continue
        table = interner.ids(conn, prepared.strings) if prepared.rows else ([], [])
        if prepared.blobs:
            blobs = [_insert_blob(conn, max_time, data) for max_time, data in prepared.blobs]
            parts.append((task, prepared.rows, table,
                          [(blobs[blob], offset, length)
                           for blob, offset, length in prepared.places]))
        else:
            loose.extend(zip([row[0] for row in prepared.rows], prepared.raws))
            parts.append((task, prepared.rows, table, None))
    places = _write_blobs(conn, loose, compressor, blob_events)
    position = 0
    values: list[tuple[Any, ...]] = []
    spans: list[tuple[Task, int, int]] = []
    for task, rows, (ids, as_user), task_places in parts:
        if task_places is None:  # its bodies are in ``loose``, in task order
            task_places = places[position:position + len(rows)]
            position += len(rows)
        cluster = interner.cluster(conn, task.cluster) if rows else 0
        spans.append((task, len(values), len(rows)))
        # Spelled out, not sliced and mapped: this builds every row the store inserts, and
        # indexing is the cheapest (bench_stages). The order is INSERT's (KEY_COLUMNS').
        values += [(r[0], r[1], cluster, r[2], r[3], r[4], r[5], r[6], *place,
                    ids[r[7]], ids[r[8]], ids[r[9]], ids[r[10]], ids[r[11]], ids[r[12]],
                    ids[r[13]], ids[r[14]], ids[r[15]], as_user[r[16]], ids[r[17]])
                   for r, place in zip(rows, task_places)]
    before = conn.total_changes
    conn.executemany(INSERT, values)
    stored = conn.total_changes - before
    repeated = set(_duplicate_items(conn, values, stored)) if stored < len(values) else set()
    for task, first, count in spans:
        left_out = tuple(index - first for index in range(first, first + count)
                         if index in repeated) if repeated else ()
        task.result = WriteResult(stored=count - len(left_out), duplicates=len(left_out),
                                  duplicate_items=left_out)
    return stored, len(values) - stored


def _duplicate_items(conn: sqlite3.Connection, rows: list[tuple[Any, ...]],
                     stored: int) -> tuple[int, ...]:
    """Which rows INSERT OR IGNORE left out. Only for a batch with duplicates (a retry): the
    rows it did insert are the last ``stored`` of the log, one writer and one transaction."""
    if not stored:
        return tuple(range(len(rows)))
    new = set(conn.execute("SELECT time, audit_id, stage FROM events ORDER BY id DESC LIMIT ?",
                           (stored,)))
    repeated = []
    for index, row in enumerate(rows):
        key = (row[0], row[1], row[3])
        if key in new:
            new.discard(key)  # its first occurrence is the one stored
        else:
            repeated.append(index)
    return tuple(repeated)


def _insert_blob(conn: sqlite3.Connection, max_time: int, data: bytes) -> int:
    row = conn.execute("INSERT INTO blobs (max_time, data) VALUES (?, ?) RETURNING id",
                       (max_time, data)).fetchone()
    return int(row[0])


def _write_blobs(conn: sqlite3.Connection, bodies: list[tuple[int, bytes]],
                 compressor: zstandard.ZstdCompressor,
                 blob_events: int) -> list[tuple[int, int, int]]:
    """Compress bodies in chunks of ``blob_events``; (blob, offset, length) per body.

    Chunks keep one event's read cheap (decompress ~100 KB, not a whole group commit) while
    still compressing the repeated keys and values of neighbouring events.
    """
    places: list[tuple[int, int, int]] = []
    for start in range(0, len(bodies), blob_events):
        chunk = bodies[start:start + blob_events]
        blob = _insert_blob(conn, max(when for when, _ in chunk),
                            compressor.compress(b"\n".join(raw for _, raw in chunk)))
        offset = 0
        for _, raw in chunk:
            length = len(raw)
            places.append((blob, offset, length))
            offset += length + 1
    return places
