"""The group-commit writer both SQL stores use.

The writer contract (design.md, "The store is the log"): one thread takes every batch that
is waiting and commits it in one transaction; each submitter's future resolves only after the
commit; the queue is bounded in events and a full queue raises ``Overloaded`` (HTTP 429).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from auditsink.model import BadItem, Item
from auditsink.store.base import Overloaded, StoreError, WriteResult

log = logging.getLogger("auditsink.store")
T = TypeVar("T")

class Task:
    """A batch waiting for the writer, and how to tell its submitter it is committed."""

    __slots__ = ("items", "cluster", "bad", "done", "result", "error", "prepared", "size")

    def __init__(self, items: list[Item], cluster: str, done: Callable[[Task], None],
                 bad: Sequence[BadItem] = (), prepared: Any = None) -> None:
        self.items = items
        self.cluster = cluster
        self.bad = bad
        self.done = done
        self.result = WriteResult()
        self.error: BaseException | None = None
        # Rows a receiver process already built (store/sqlite/rows.py), instead of items.
        self.prepared = prepared
        self.size = len(prepared.rows) if prepared is not None else len(items)


def settle(future: asyncio.Future[WriteResult], task: Task) -> None:
    """Resolve a submitter's future with its task's outcome (on the event loop)."""
    if future.cancelled():
        return
    if task.error is not None:
        future.set_exception(task.error)
    else:
        future.set_result(task.result)


class GroupCommitWriter:
    """Mixin: the bounded queue and the writer thread; stores implement ``_commit_group``
    (commit the tasks, setting each ``result`` or ``error``) and ``_writer_conn``."""

    queue_events: int
    group_events: int

    def _init_writer(self, queue_events: int, group_events: int) -> None:
        self.queue_events = queue_events
        self.group_events = group_events
        self._queue: deque[Task | Callable[[Any], None]] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._closing = False
        self._writer: threading.Thread | None = None
        self.last_commit_seconds = 0.0
        self.duplicates = 0
        self.commits = 0

    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._run, name="auditsink-writer", daemon=True)
        self._writer.start()

    def _stop_writer(self) -> None:
        """Drain what was submitted (graceful stop) and end the writer thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def _commit_group(self, tasks: list[Task]) -> None:
        raise NotImplementedError

    def _writer_conn(self) -> Any:
        raise NotImplementedError

    def submit(self, items: list[Item], cluster: str = "",
               bad: Sequence[BadItem] = ()) -> asyncio.Future[WriteResult]:
        """Queue a batch (and its undecodable items); the future resolves once committed."""
        return self._submit(items, cluster, bad, None)

    def submit_prepared(self, prepared: Any) -> asyncio.Future[WriteResult]:
        """Queue the rows a receiver process built (``serve --receivers``; only stores whose
        ``_commit_group`` reads ``Task.prepared``: SQLite's)."""
        return self._submit([], prepared.cluster, (), prepared)

    def _submit(self, items: list[Item], cluster: str, bad: Sequence[BadItem],
                prepared: Any) -> asyncio.Future[WriteResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()

        def done(task: Task) -> None:
            loop.call_soon_threadsafe(settle, future, task)

        self._enqueue(Task(items, cluster, done, bad, prepared))
        return future

    def write(self, items: list[Item], cluster: str = "",
              bad: Sequence[BadItem] = ()) -> WriteResult:
        """Write from a plain thread and wait for the commit (import, tests)."""
        finished = threading.Event()
        task = Task(items, cluster, lambda _task: finished.set(), bad)
        while True:
            try:
                self._enqueue(task)
                break
            except Overloaded:
                time.sleep(0.01)
        finished.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def reject(self, bad: list[BadItem], cluster: str = "") -> None:
        """Keep undecodable items for ``auditsink rejected`` (committed before returning)."""
        if bad:
            self.write([], cluster, bad)

    def _enqueue(self, task: Task) -> None:
        with self._cond:
            if self._closing:
                raise StoreError("store is closing")
            if self._pending and self._pending + task.size > self.queue_events:
                raise Overloaded(retry_after=1)
            self._pending += task.size
            self._queue.append(task)
            self._cond.notify()

    def run_in_writer(self, job: Callable[[Any], None]) -> None:
        """Run maintenance (retention, cursors) on the writer thread, between commits."""
        with self._cond:
            if self._closing or self._writer is None:
                raise StoreError("store is closing")  # no writer would ever run the job
            self._queue.append(job)
            self._cond.notify()

    def call_in_writer(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` on the writer thread between commits; wait for its result."""
        done = threading.Event()
        outcome: list[tuple[bool, Any]] = []

        def job(conn: Any) -> None:
            try:
                outcome.append((True, fn(conn)))
            except BaseException as exc:  # handed back to the caller below
                outcome.append((False, exc))
            finally:
                done.set()

        self.run_in_writer(job)
        done.wait()
        ok, value = outcome[0]
        if not ok:
            raise value
        result: T = value
        return result

    def queue_depth(self) -> int:
        """Events waiting for the writer."""
        return self._pending

    def has_room(self) -> bool:
        """Whether a batch may still be queued: the receiver refuses before reading a body
        when not, which spares the CPU the writer needs."""
        return self._pending < self.queue_events

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                tasks: list[Task] = []
                jobs: list[Callable[[Any], None]] = []
                count = 0
                while self._queue and (count < self.group_events or not tasks):
                    entry = self._queue.popleft()
                    if isinstance(entry, Task):
                        tasks.append(entry)
                        count += entry.size
                    else:
                        jobs.append(entry)
            if tasks:
                self._commit_group(tasks)
                with self._cond:
                    self._pending -= count
                for task in tasks:
                    task.done(task)
            for job in jobs:
                try:
                    job(self._writer_conn())
                except Exception:  # maintenance must never stop ingest
                    log.exception("store maintenance failed")
