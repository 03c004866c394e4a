"""Consumer cursors, claims and alerts in SQLite: written through the writer thread."""

from __future__ import annotations

import fcntl
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from auditsink.store.base import Alert, CursorMoved, DeadLetter


class SQLiteConsumers:
    """Mixed into SQLiteStore: needs ``path``, ``call_in_writer`` and ``_writer``."""

    path: str
    _claims: dict[str, Any]  # consumer name -> its open, flocked lock file
    _writer: Any
    call_in_writer: Callable[[Callable[[sqlite3.Connection], Any]], Any]

    def commit_consumed(self, name: str, position: int, alerts: list[Alert],
                        expected: int | None = None,
                        dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Store a consumer's alerts (or dead letters) and advance its cursor in one
        transaction (exactly once)."""
        dead = [(name, d.first, d.last, d.events, d.attempts, d.error, d.time or time.time())
                for d in dead_letters]
        rows = [
            (a.time, a.rule, a.priority, a.output, a.audit_id, a.event, a.cluster,
             json.dumps(a.tags), json.dumps(a.fields, default=str))
            for a in alerts
        ]

        def store_them(conn: sqlite3.Connection) -> None:
            # An explicit transaction: the connection autocommits each statement otherwise,
            # and a crash between the alerts and the cursor would raise the alerts twice.
            conn.execute("BEGIN IMMEDIATE")
            try:
                if expected is not None:
                    row = conn.execute("SELECT position FROM cursors WHERE name = ?",
                                       (name,)).fetchone()
                    if (row[0] if row else 0) != expected:
                        raise CursorMoved(f"consumer {name!r} is at {row[0] if row else 0}, "
                                          f"not {expected}")
                conn.executemany(
                    "INSERT INTO alerts (time, rule, priority, output, audit_id, event, cluster,"
                    " tags, fields) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                conn.executemany(
                    "INSERT INTO dead_letters (consumer, first, last, events, attempts, error,"
                    " time) VALUES (?,?,?,?,?,?,?)", dead)
                conn.execute(
                    "INSERT INTO cursors (name, position) VALUES (?, ?) ON CONFLICT (name)"
                    " DO UPDATE SET position = excluded.position", (name, position))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self.call_in_writer(store_them)

    def drop_dead_letter(self, ident: int) -> None:
        """Forget a dead letter (it was replayed)."""
        self.call_in_writer(lambda conn: conn.execute("DELETE FROM dead_letters WHERE id = ?",
                                                      (ident,)))

    def set_cursor(self, name: str, position: int) -> None:
        """Move a consumer's durable cursor."""
        self.commit_consumed(name, position, [])

    def claim_consumer(self, name: str) -> bool:
        """Hold consumer ``name`` for this process: an exclusive flock on a file beside the
        database (``auditsink.db-consumer-<hash>.lock``), released when the store closes or
        the process dies, so processes sharing one file run each consumer once."""
        if name in self._claims:
            return True
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        handle = open(f"{self.path}-consumer-{digest}.lock", "a+b")  # noqa: SIM115 - held open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._claims[name] = handle
        return True

    def save_state(self, name: str, data: bytes) -> None:
        """Keep a component's state beside the log (through the writer, between commits)."""
        if self._writer is None:
            return  # opened for reading only
        self.call_in_writer(lambda conn: conn.execute(
            "INSERT INTO state (name, data) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET data = excluded.data", (name, data)))
