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
from auditsink.store.sqlite.rows import PreparedBatch, Row, pack_audit_id, row_of

__all__ = ["Interner", "insert", "pack_audit_id"]

INSERT = (
    "INSERT OR IGNORE INTO events (time, audit_id, cluster, stage, level, name, code, decision,"
    " blob, offset, length, verb, user, groups, source_ip, user_agent, api_group, resource,"
    " subresource, namespace, impersonated_user, uri)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
# Past this many distinct (verb, user, ..., uri) tuples the lookup cache starts over, and past
# this many strings the dictionary cache does: memory stays bounded whatever senders send.
KEY_CACHE = 100_000
STRING_CACHE = 200_000


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
        self.ids: dict[str, int] = {}
        self.keys: dict[tuple[str, ...], tuple[int, ...]] = {}
        self.clusters: set[str] = {row[0] for row in conn.execute("SELECT name FROM clusters")}
        self.generation = generation(conn)

    def check(self, conn: sqlite3.Connection) -> None:
        """Inside the commit's transaction: start over if strings were swept since."""
        if generation(conn) != self.generation:
            self.reload(conn)

    def intern(self, conn: sqlite3.Connection, value: str) -> int:
        ident = self.ids.get(value)
        if ident is None:
            if len(self.ids) > STRING_CACHE:
                self.ids.clear()
            row = conn.execute("SELECT id FROM strings WHERE value = ?", (value,)).fetchone()
            if row is None:
                row = conn.execute("INSERT INTO strings (value) VALUES (?) RETURNING id",
                                   (value,)).fetchone()
            ident = self.ids[value] = int(row[0])
        return ident

    def row_ids(self, conn: sqlite3.Connection, strings: tuple[str, ...]) -> tuple[int, ...]:
        """Dictionary ids of :func:`row_strings`. All but the last (the request path) are
        few and shared by most events, so they are looked up at once, as one tuple; the path
        names objects and has as many values as a cluster has objects (a fifth of the
        generated events brought a new one), so it is looked up alone: a new path costs one
        lookup, not eleven."""
        head = strings[:-1]
        ids = self.keys.get(head)
        if ids is None:
            if len(self.keys) > KEY_CACHE:
                self.keys.clear()
            intern = self.intern
            found = [intern(conn, value) for value in head[:-1]]
            found.append(intern(conn, head[-1]) if head[-1] else NOBODY)
            ids = self.keys[head] = tuple(found)
        uri = self.ids.get(strings[-1])
        if uri is None:
            uri = self.intern(conn, strings[-1])
        return (*ids, uri)

    def cluster(self, conn: sqlite3.Connection, name: str) -> int:
        if name not in self.clusters:
            conn.execute("INSERT OR IGNORE INTO clusters (name) VALUES (?)", (name,))
            self.clusters.add(name)
        return self.intern(conn, name)


def generation(conn: sqlite3.Connection) -> int:
    """How many times strings were swept from this file."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'strings_generation'").fetchone()
    return int(row[0]) if row else 0


def insert(conn: sqlite3.Connection, interner: Interner, tasks: list[Task], level: int,
           blob_events: int) -> int:
    """Compress the group's bodies into blobs, then insert one row per event; sets each
    task's result and returns how many rows were duplicates.

    A task holds decoded items (this process received them) or a :class:`PreparedBatch` a
    receiver process built; bodies a receiver did not compress are compressed here with the
    rest of the group.
    """
    now = time.time()
    loose: list[tuple[int, bytes]] = []  # (time, bytes) of the bodies compressed here
    batches: list[tuple[Task, list[Row], list[tuple[int, int, int]] | None]] = []
    for task in tasks:
        prepared: PreparedBatch | None = task.prepared
        bad = prepared.bad_items() if prepared is not None else task.bad
        if bad:
            conn.executemany(
                "INSERT INTO rejected (time, cluster, error, body) VALUES (?,?,?,?)",
                [(now, task.cluster, f"item {b.index}: {b.error}",
                  b.snippet.encode()[:REJECTED_BODY_BYTES]) for b in bad])
        if prepared is None:
            rows = [row_of(item.event) for item in task.items]
            loose.extend(zip([row[0] for row in rows], [item.raw for item in task.items]))
            batches.append((task, rows, None))
        elif prepared.blobs:
            ids = [_insert_blob(conn, max_time, data) for max_time, data in prepared.blobs]
            batches.append((task, prepared.rows,
                            [(ids[blob], offset, length)
                             for blob, offset, length in prepared.places]))
        else:
            loose.extend(zip([row[0] for row in prepared.rows], prepared.raws))
            batches.append((task, prepared.rows, None))
    places = _write_blobs(conn, loose, level, blob_events)
    duplicates = 0
    position = 0
    for task, rows, own_places in batches:
        if not rows:
            continue  # only undecodable items in this batch
        cluster = interner.cluster(conn, task.cluster)
        row_ids = interner.row_ids
        if own_places is None:
            own_places = places[position:position + len(rows)]
            position += len(rows)
        values = [(when, audit_id, cluster, stage, rank, name, code, decision, *place,
                   *row_ids(conn, strings))
                  for (when, audit_id, stage, rank, name, code, decision, strings), place
                  in zip(rows, own_places)]
        before = conn.total_changes
        conn.executemany(INSERT, values)
        stored = conn.total_changes - before
        repeated = _duplicate_items(conn, values, stored) if stored < len(rows) else ()
        task.result = WriteResult(stored=stored, duplicates=len(rows) - stored,
                                  duplicate_items=repeated)
        duplicates += len(rows) - stored
    return duplicates


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


def _write_blobs(conn: sqlite3.Connection, bodies: list[tuple[int, bytes]], level: int,
                 blob_events: int) -> list[tuple[int, int, int]]:
    """Compress bodies in chunks of ``blob_events``; (blob, offset, length) per body.

    Chunks keep one event's read cheap (decompress ~100 KB, not a whole group commit) while
    still compressing the repeated keys and values of neighbouring events.
    """
    compressor = zstandard.ZstdCompressor(level=level)
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
