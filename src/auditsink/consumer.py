"""The one loop every store consumer runs: the rules, each notifier and each output.

A consumer reads one of the store's logs (events, or the alerts the rules raised) in log
order after a durable cursor of its own, and commits its progress (plus what it produced:
alerts, dead letters) in the same transaction that moves the cursor. So a restart, a crash or
an outage downstream delays a consumer but never makes it skip anything (design.md, "The store
is the log"), and ingest never waits for it.

Every replica on a shared store starts every consumer; ``Store.claim_consumer`` lets one of
them run it while the others stand by, and one of those takes over within ``standby`` seconds
when the holder stops, dies or loses its database connection. Cursor commits are
compare-and-set (``CursorMoved``), so even at a takeover, when two processes may briefly both
believe they hold the consumer, nothing is committed twice.

A consumer with ``commit_every`` (the rules) commits in the background while it evaluates the
next pages: with ``serve --receivers`` the ingest writer holds SQLite's write lock almost all
the time, and a rules process that waited for each commit stopped evaluating meanwhile (its lag
grew without bound, 430k events after 25 s; committing in the background kept it under 90k).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from auditsink.store.base import Alert, CursorMoved, DeadLetter, Page, Store

log = logging.getLogger("auditsink.consumer")


@dataclass
class Progress:
    """What a consumer made of a page: where its cursor may move, and what to store with it.

    ``position`` may stay behind the last entry read (a notifier holding alerts back for a
    rate-limit summary): those entries are read again after a restart, never lost.
    """

    position: int
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    read: int | None = None   # how far the page was handled, when stopped part way


class Consumer:
    """Base class: a durable cursor ``name`` over one log, and what to do with each page.

    Subclasses implement ``fetch`` and ``process``; ``idle`` runs when nothing new came (to
    flush what waits for time rather than for entries), ``resumed`` when the cursor was re-read
    (drop what was held in memory: it will be read again).
    """

    name = "consumer"
    batch = 1000          # entries per page
    linger = 0.0          # seconds a partial page waits for more entries (batching by time)
    poll = 0.2            # seconds between looks at the log when caught up
    # Seconds between cursor commits while behind, made in the background as the next pages
    # are processed (the module docstring says why); 0: each page commits before the next.
    commit_every = 0.0
    commit_alerts = 20_000  # ... or as soon as this many alerts wait (bounds the memory)

    def fetch(self, after: int, limit: int) -> Sequence[Any]:
        """Up to ``limit`` entries after position ``after``, in log order; each has ``.id``.
        A :class:`~auditsink.store.base.Page` may hold fewer: those a filter kept of ``limit``."""
        raise NotImplementedError

    def process(self, entries: Sequence[Any], stop: threading.Event) -> Progress | None:
        """Handle a page; None when stopping before it was handled (nothing is committed)."""
        raise NotImplementedError

    def idle(self, stop: threading.Event) -> Progress | None:
        """Called when the log has nothing new; may return progress (a flushed summary)."""
        return None

    def resumed(self, position: int) -> None:
        """The cursor was (re)read at ``position``: forget anything held in memory."""

    def newest(self) -> int:
        """The position of the newest entry in the log (for the lag)."""
        return 0


class ConsumerLoop:
    """Runs one :class:`Consumer`: claim, read after the cursor, process, commit, repeat."""

    def __init__(self, store: Store, consumer: Consumer, standby: float = 2.0) -> None:
        self.store = store
        self.consumer = consumer
        self.standby = standby
        self.active = False
        self.position = store.get_cursor(consumer.name)   # committed
        self.read_position = self.position                # read (may be ahead: held entries)
        self.read = 0                                     # entries handled since start
        # commit_every > 0: what was processed but not yet handed to a commit, and the commit
        # running in the background (with what it commits).
        self._pending: Progress | None = None
        self._running: tuple[Future[None], Progress] | None = None
        self._started = float("-inf")                     # when the last commit started
        self._executor: ThreadPoolExecutor | None = None

    @property
    def name(self) -> str:
        return self.consumer.name

    def step(self, stop: threading.Event | None = None) -> int:
        """Read, process and commit the next page; returns how many entries were read.

        With ``commit_every`` the commit may run on after this returns: its error (such as
        ``CursorMoved``) is raised by the next call, and :meth:`flush` waits for it.
        """
        stop = stop or threading.Event()
        consumer = self.consumer
        self._settle(wait=False)
        fetched = consumer.fetch(self.read_position, consumer.batch)
        # A Page (store.follow) covers more of the log than the entries it returns: the
        # others were ruled out by its filters, and count as read.
        examined = fetched.examined if isinstance(fetched, Page) else len(fetched)
        entries: list[Any] = fetched if isinstance(fetched, Page) else list(fetched)
        if entries and examined < consumer.batch and consumer.linger > 0 \
                and not isinstance(entries, Page):
            # Batching by time: a partial page waits up to `linger` for more entries.
            deadline = time.monotonic() + consumer.linger
            while len(entries) < consumer.batch and not stop.wait(
                    min(consumer.poll, max(0.0, deadline - time.monotonic()))):
                entries += list(consumer.fetch(entries[-1].id, consumer.batch - len(entries)))
                if time.monotonic() >= deadline:
                    break
            examined = len(entries)
        if not examined:
            progress = consumer.idle(stop)
            if consumer.commit_every > 0:
                self._offer(progress, caught_up=True)
            elif progress is not None:
                self._commit(progress)
            return 0
        progress = consumer.process(entries, stop)
        if progress is None:
            return 0  # stopping: the cursor stays, the page is read again next time
        if progress.read is None:  # the whole page handled
            self.read_position = entries.last if isinstance(entries, Page) else entries[-1].id
            self.read += examined
        else:
            self.read_position = progress.read
            self.read += sum(1 for entry in entries if entry.id <= self.read_position)
        if consumer.commit_every > 0:
            self._offer(progress, caught_up=examined < consumer.batch)
        else:
            self._commit(progress)
        return examined

    def _commit(self, progress: Progress) -> None:
        if progress.position == self.position and not progress.alerts and not progress.dead_letters:
            return
        self.store.commit_consumed(self.name, progress.position, progress.alerts,
                                   expected=self.position, dead_letters=progress.dead_letters)
        self.position = progress.position

    def _offer(self, progress: Progress | None, caught_up: bool) -> None:
        """Add a page's progress to what waits, and start a commit of it in the background
        when none runs and it is time: ``commit_every`` seconds since the last one started,
        ``commit_alerts`` waiting, or the log caught up with alerts (or dead letters) waiting.
        A cursor alone waits for ``commit_every`` even when caught up: a consumer following a
        steady trickle of events (blocking mode) catches up at every page, and a commit each
        time took SQLite's write lock from ingest several times a second."""
        if progress is not None:
            self._pending = _merged(self._pending, progress)
        self._settle(wait=False)
        pending = self._pending
        if pending is None:
            return
        full = len(pending.alerts) >= self.consumer.commit_alerts
        if full:
            self._settle(wait=True)  # backpressure: no more pages until that commit is done
        news = bool(pending.alerts or pending.dead_letters)
        if self._running is None and (
                (caught_up and news) or full
                or time.monotonic() - self._started >= self.consumer.commit_every):
            self._start()

    def _start(self) -> None:
        """Hand what waits to a commit in the background (the store's commit is thread-safe:
        SQLite's runs on its writer thread, PostgreSQL's on a connection of the thread)."""
        pending, self._pending = self._pending, None
        if pending is None or (pending.position == self.position and not pending.alerts
                               and not pending.dead_letters):
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{self.name}")
        self._started = time.monotonic()
        future = self._executor.submit(
            self.store.commit_consumed, self.name, pending.position, pending.alerts,
            expected=self.position, dead_letters=pending.dead_letters)
        self._running = (future, pending)

    def _settle(self, wait: bool) -> None:
        """Take the outcome of the background commit once it is done (``wait``: wait for it):
        the committed position, or its error, raised here in the loop's thread."""
        if self._running is None or not (wait or self._running[0].done()):
            return
        (future, progress), self._running = self._running, None
        try:
            future.result()
        except CursorMoved:
            raise  # the caller resumes: what waits is read again
        except BaseException:
            # Nothing of it was stored (one transaction): commit it with what came since.
            self._pending = _merged(progress, self._pending)
            raise
        self.position = progress.position

    def flush(self) -> None:
        """Wait for the background commit, then commit what waits (no-op without
        ``commit_every``): after this, everything processed is durable, and the commit
        thread is gone (the next background commit starts another)."""
        try:
            self._settle(wait=True)
            self._start()
            self._settle(wait=True)
        finally:
            if self._executor is not None and self._running is None:
                self._executor.shutdown()
                self._executor = None

    def resume(self) -> None:
        """Re-read the durable cursor (another process may have moved it meanwhile)."""
        if self._running is not None:
            self._running[0].exception()  # wait for it; its outcome is in the cursor read below
        self._running = self._pending = None
        self.position = self.read_position = self.store.get_cursor(self.name)
        self.consumer.resumed(self.position)

    def run(self, stop: threading.Event) -> None:
        """Follow the log until ``stop`` is set, while this process holds the consumer;
        errors are logged and retried."""
        while not stop.is_set():
            try:
                if not self.store.claim_consumer(self.name):
                    if self.active:
                        log.warning("consumer %r: another process holds it now; standing by",
                                    self.name)
                    self.active = False
                    stop.wait(self.standby)
                    continue
                if not self.active:
                    self.resume()
                    self.active = True
                    log.info("consumer %r: running in this process", self.name)
                if self.step(stop) >= self.consumer.batch:
                    continue  # behind: the next page at once
                # Caught up (a partial page, or none): wait before looking again. Following a
                # trickle (blocking mode) page by page without a pause spun on pages of a few
                # events, each a query and often a commit that took SQLite's write lock from
                # ingest (receivers, blocking: 2,164 events/s against 3,543, 12-06).
            except CursorMoved as exc:
                log.warning("consumer %r: %s; re-reading the cursor", self.name, exc)
                self.resume()
                continue
            except Exception:
                log.exception("consumer %r failed; retrying", self.name)
            stop.wait(self.consumer.poll)
        try:
            self.flush()
        except Exception:
            log.exception("consumer %r: the last commit failed; what came since it is read "
                          "again at the next start", self.name)

    def lag(self) -> int:
        """Entries in the log not yet committed past."""
        return max(0, self.consumer.newest() - self.position)


def _merged(first: Progress | None, then: Progress | None) -> Progress:
    """Two pages' progress as one: the later position, the alerts and dead letters of both.
    ``first``, when given, is the loop's own (extended in place); ``then`` is left alone."""
    if first is None:
        assert then is not None
        return Progress(then.position, list(then.alerts), list(then.dead_letters))
    if then is not None:
        first.position = then.position
        first.alerts += then.alerts
        first.dead_letters += then.dead_letters
    return first


@dataclass
class Backoff:
    """Waits between attempts: ``first`` seconds, doubling up to ``most``."""

    first: float = 1.0
    most: float = 60.0

    def delays(self) -> Any:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2, self.most)


@dataclass
class Attempts:
    """How delivering one payload went: whether it got through, after how many tries, and
    the last error."""

    delivered: bool
    tries: int
    error: str = ""


def deliver(send: Callable[[], None], stop: threading.Event, backoff: Backoff,
            max_attempts: int = 0,
            on_failure: Callable[[int, Exception, float], None] | None = None) -> Attempts | None:
    """Call ``send`` until it succeeds, or ``max_attempts`` tries failed (0: no limit).

    Returns None when ``stop`` was set while waiting to retry: nothing is decided then, the
    caller commits nothing and the payload is sent again after the restart.
    """
    tries = 0
    for delay in backoff.delays():
        tries += 1
        try:
            send()
            return Attempts(True, tries)
        except Exception as exc:  # any failure of the destination: keep the payload, retry
            error = str(exc) or type(exc).__name__
            if max_attempts and tries >= max_attempts:
                return Attempts(False, tries, error)
            if on_failure is not None:
                on_failure(tries, exc, delay)
            if stop.wait(delay):
                return None
    raise AssertionError("unreachable")  # pragma: no cover - delays() never ends
