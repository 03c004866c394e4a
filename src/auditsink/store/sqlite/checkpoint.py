"""WAL checkpoints beside the writer, never inside a commit."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Protocol

from auditsink.store.base import StoreError


class _Writer(Protocol):
    """What the checkpointer needs of the store: its file, a connection, the writer thread."""

    path: str

    def _connect(self) -> sqlite3.Connection: ...

    def run_in_writer(self, job: Callable[[Any], None]) -> None: ...

log = logging.getLogger("auditsink.store")


class Checkpointer:
    """Copies committed WAL frames back into the database file beside the writer.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, so that
    commit, and every request waiting on it, stalls: 50-60 ms per 80 MB of WAL, which set the
    p99 of blocking-mode ingest. Here a thread with its own connection runs a PASSIVE
    checkpoint once per ``interval``; it blocks nobody (SQLite releases the GIL while it
    copies). But a busy writer keeps appending while it copies, so it never catches up, and
    the WAL is only rewound to its start once every frame is copied: alone, the WAL would
    grow without end. So after each background pass the writer thread finishes the job
    between two commits: it copies the few frames written meanwhile (a short pause instead of
    a long one), and its next commit rewinds the WAL.
    """

    def __init__(self, store: _Writer, interval: float = 1.0,
                 max_wal_bytes: int = 256 << 20, max_passes: int = 4,
                 finish_frames: int = 256) -> None:
        self.store = store
        self.interval = interval
        self.max_wal_bytes = max_wal_bytes
        self.max_passes = max_passes  # background passes per interval, at most
        self.finish_frames = finish_frames  # what the writer may be left to copy (pages)
        self.checkpoints = 0
        self._finishing = threading.Event()  # a writer-side pass is queued
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auditsink-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = self.store._connect()
        database = os.open(self.store.path, os.O_RDONLY)
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.checkpoint(conn, database)
                except (sqlite3.Error, StoreError, OSError) as exc:
                    # e.g. disk full, or the store closing; the writer reports its own errors
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            os.close(database)
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection, database: int | None = None) -> None:
        """Background passes until little is left, then queue the writer's finishing pass.

        The finishing pass must stay short, and two things made it as long as the whole
        checkpoint on a large store (45-80 ms a second into 10M events, benchmarks/README.md):
        the frames the writer appended while a long background pass copied, which now a
        second pass copies here (a pass copies the frames there were when it began, so the
        next one copies what came meanwhile, and each is shorter than the one before); and the
        database file's fsync, which SQLite does only in the pass that reaches the WAL's end,
        the writer's, and which then flushed every page the background had written.
        ``database`` (a descriptor of the file) is synced here after each pass instead.
        """
        frames = done = 0
        for _ in range(self.max_passes):
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if frames > 0 and database is not None:
                os.fsync(database)
            if frames - done <= self.finish_frames or frames < done:
                break  # this pass had little to copy (or the WAL was rewound meanwhile)
            done = frames
        if frames > 0 and not self._finishing.is_set():
            self._finishing.set()
            self.store.run_in_writer(self._finish)

    def _finish(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, so no frame is appended meanwhile."""
        self._finishing.clear()
        try:
            wal_bytes = os.path.getsize(self.store.path + "-wal")
        except OSError:
            wal_bytes = 0
        # Past the cap (a reader kept the WAL from rewinding), also give the disk space back.
        mode = "TRUNCATE" if wal_bytes > self.max_wal_bytes else "PASSIVE"
        # TRUNCATE waits for readers of old snapshots: briefly, not the usual 30 s, so that a
        # slow UI query cannot hold up ingest (the next attempt comes a second later).
        conn.execute("PRAGMA busy_timeout=200")
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})")
        finally:
            conn.execute("PRAGMA busy_timeout=30000")
