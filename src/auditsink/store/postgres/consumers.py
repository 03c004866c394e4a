"""Consumer cursors, claims and alerts in PostgreSQL, shared by every replica."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from auditsink.store.base import Alert, CursorMoved, DeadLetter
from auditsink.store.postgres import schema as pg_schema
from auditsink.store.postgres.writer import _text

log = logging.getLogger("auditsink.store")


class PostgresConsumers:
    """Mixed into PostgresStore: needs ``_connect``, ``_reader`` and ``_writer``."""

    _claims: dict[str, Any]  # consumer name -> the connection holding its lock
    _held: set[str]
    _writer: Any
    _connect: Callable[[], Any]
    _reader: Callable[[], Any]

    def commit_consumed(self, name: str, position: int, alerts: list[Alert],
                        expected: int | None = None,
                        dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Store a consumer's alerts (or dead letters) and advance its cursor in one
        transaction (exactly once)."""
        dead = [(name, d.first, d.last, d.events, d.attempts, _text(d.error),
                 d.time or time.time()) for d in dead_letters]
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
                row = cur.execute("SELECT position FROM cursors WHERE name = %s",
                                  (name,)).fetchone()
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
