"""Bring an SQLite file written by an older auditsink up to the current schema, once, at open.

Version 2 -> 3 (issue 18): three columns (impersonated user, authorization decision, request
path) filled in from the stored bodies, the cluster list, and the object index in time order.
About 25 s of CPU per million events (4.7 s for 200,000, measured), logged before it
starts; afterwards the file is readable by this code only.

Version 3 -> 4 (issue 16): the index on events (audit_id) is dropped; lookups by auditID use
the runs of ``audit_ids`` (audit_ids.py), written once at the first open (about 1 s of CPU per
million events) and then as the log grows.

Version 4 -> 5 (issue 16): the index on events (name, resource, namespace, time) is dropped;
object histories read ``objects`` (objects.py), filled for the runs already indexed, about
1 s of CPU per million events.

Version 5 -> 6 (issue 16): ``objects`` is keyed by run first, so that each run is an append;
it is rebuilt from the events of the runs already indexed (about 1 s of CPU per million).
"""

from __future__ import annotations

import logging
import sqlite3

import msgspec
import zstandard

from auditsink.model import Event
from auditsink.store._rows import NOBODY, decision_value
from auditsink.selector import bounded, request_path
from auditsink.store.sqlite import audit_ids, objects

SCHEMA_VERSION = "6"
log = logging.getLogger("auditsink.store")
_decode = msgspec.json.Decoder(Event).decode
_CHUNK_EVENTS = 50_000


def version(conn: sqlite3.Connection) -> str | None:
    """The file's schema version; None for a new, empty file."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return row[0] if row else "1"


def before_schema(conn: sqlite3.Connection, found: str | None) -> None:
    """What must change before schema.sql runs (its new indexes name the new columns)."""
    if found is None or found >= SCHEMA_VERSION:
        return
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    for column in ("impersonated_user", "decision", "uri"):
        if column not in columns:
            conn.execute(f"ALTER TABLE events ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    conn.execute("DROP TABLE IF EXISTS objects")  # keyed by name before 6: rebuilt
    conn.execute("DELETE FROM meta WHERE key = 'objects_swept_below'")  # schema 5's sweep


def after_schema(conn: sqlite3.Connection, found: str | None, path: str) -> None:
    """Fill what the new schema adds from what the file already holds."""
    if found is not None and found < "3":
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        log.warning("upgrading %s from schema %s to %s: reading its %d events once to index "
                    "impersonation, decisions and request paths (about 25 s of CPU per million)",
                    path, found, SCHEMA_VERSION, events)
        _backfill(conn)
        conn.execute("DROP INDEX IF EXISTS events_object_log")
        conn.execute("DROP INDEX IF EXISTS events_object")
        conn.execute("INSERT OR IGNORE INTO clusters (name) SELECT DISTINCT s.value FROM"
                     " events JOIN strings s ON s.id = events.cluster")
    if found is not None and found < "4":
        conn.execute("DROP INDEX IF EXISTS events_audit_id")  # audit_ids replaces it
    if found is not None and found < "6":
        conn.execute("DROP INDEX IF EXISTS events_object_time")  # objects replaces it
        runs = audit_ids.indexed_runs(conn)
        if runs:
            log.warning("upgrading %s to schema %s: indexing the objects of its first %d events"
                        " once (about 1 s of CPU per million)", path, SCHEMA_VERSION,
                        runs * audit_ids.RUN)
        for run in range(runs):
            objects.index_run(conn, run, run * audit_ids.RUN, (run + 1) * audit_ids.RUN)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (SCHEMA_VERSION,))


def _backfill(conn: sqlite3.Connection) -> None:
    ids = dict(conn.execute("SELECT value, id FROM strings"))

    def intern(value: str) -> int:
        ident = ids.get(value)
        if ident is None:
            ident = ids[value] = conn.execute(
                "INSERT INTO strings (value) VALUES (?) RETURNING id", (value,)).fetchone()[0]
        return int(ident)

    decompress = zstandard.ZstdDecompressor().decompress
    after = 0
    cached_blob, body = -1, b""
    while True:
        # In log order: the events of one blob are neighbours, so each blob is read once.
        rows = conn.execute("SELECT id, blob, offset, length FROM events WHERE id > ?"
                            " ORDER BY id LIMIT ?", (after, _CHUNK_EVENTS)).fetchall()
        if not rows:
            return
        updates = []
        for ident, blob, offset, length in rows:
            if blob != cached_blob:
                found = conn.execute("SELECT data FROM blobs WHERE id = ?", (blob,)).fetchone()
                cached_blob, body = blob, decompress(found[0]) if found else b""
            try:
                event = _decode(body[offset:offset + length])
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # kept as it was: nothing to index
            who = event.impersonatedUser
            updates.append((intern(bounded(who.username)) if who is not None and who.username
                            else NOBODY, decision_value(event),
                            intern(bounded(request_path(event.requestURI))), ident))
        conn.executemany("UPDATE events SET impersonated_user = ?, decision = ?, uri = ?"
                         " WHERE id = ?", updates)
        after = rows[-1][0]
