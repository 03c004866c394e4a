"""What the SQLite writer thread does in a commit: intern strings, compress bodies, insert rows.

Runs only on the writer thread (store/_writer.py), inside its ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

import zstandard

from auditsink.model import LEVEL_RANK, Item
from auditsink.selector import bounded
from auditsink.store._rows import NOBODY, REJECTED_BODY_BYTES, decision_value, row_strings
from auditsink.store._writer import Task
from auditsink.store.base import WriteResult
from auditsink.store.sql.where import STAGE_INDEX
from auditsink.timeutil import parse_timestamp

INSERT = (
    "INSERT OR IGNORE INTO events (time, audit_id, cluster, stage, level, name, code, decision,"
    " blob, offset, length, verb, user, groups, source_ip, user_agent, api_group, resource,"
    " subresource, namespace, impersonated_user, uri)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
# Past this many distinct (verb, user, ..., uri) tuples the lookup cache starts over, and past
# this many strings the dictionary cache does: memory stays bounded whatever senders send.
KEY_CACHE = 100_000
STRING_CACHE = 200_000


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
        """Dictionary ids of :func:`row_strings`; most events share all of them with others,
        so the whole tuple is looked up at once instead of one string at a time."""
        ids = self.keys.get(strings)
        if ids is None:
            if len(self.keys) > KEY_CACHE:
                self.keys.clear()
            intern = self.intern
            found = [intern(conn, value) for value in strings[:-2]]
            found.append(intern(conn, strings[-2]) if strings[-2] else NOBODY)
            found.append(intern(conn, strings[-1]))
            ids = self.keys[strings] = tuple(found)
        return ids

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
    task's result and returns how many rows were duplicates."""
    now = time.time()
    items: list[Item] = []
    for task in tasks:
        items.extend(task.items)
        if task.bad:
            conn.executemany(
                "INSERT INTO rejected (time, cluster, error, body) VALUES (?,?,?,?)",
                [(now, task.cluster, f"item {b.index}: {b.error}",
                  b.snippet.encode()[:REJECTED_BODY_BYTES]) for b in task.bad])
    if not items:
        return 0  # only undecodable items in this group
    places = _write_blobs(conn, items, level, blob_events)
    duplicates = 0
    position = 0
    for task in tasks:
        cluster = interner.cluster(conn, task.cluster)
        rows: list[tuple[Any, ...]] = []
        for item in task.items:
            event = item.event
            ref = event.objectRef
            status = event.responseStatus
            rows.append(
                (parse_timestamp(event.stageTimestamp), pack_audit_id(bounded(event.auditID)),
                 cluster, STAGE_INDEX.get(event.stage, 0), LEVEL_RANK[event.level],
                 bounded(ref.name) if ref else "", status.code if status is not None else 0,
                 decision_value(event))
                + places[position] + interner.row_ids(conn, row_strings(event)))
            position += 1
        before = conn.total_changes
        conn.executemany(INSERT, rows)
        stored = conn.total_changes - before
        repeated = _duplicate_items(conn, rows, stored) if stored < len(rows) else ()
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


def _write_blobs(conn: sqlite3.Connection, items: list[Item], level: int,
                 blob_events: int) -> list[tuple[int, int, int]]:
    """Compress bodies in chunks of ``blob_events``; (blob, offset, length) per item.

    Chunks keep one event's read cheap (decompress ~100 KB, not a whole group commit) while
    still compressing the repeated keys and values of neighbouring events.
    """
    compressor = zstandard.ZstdCompressor(level=level)
    places: list[tuple[int, int, int]] = []
    for start in range(0, len(items), blob_events):
        chunk = items[start:start + blob_events]
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
