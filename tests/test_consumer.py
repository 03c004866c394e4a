"""The consumer loop's commits: synchronous by default, in the background with ``commit_every``
(the rules), and exactly once either way, also when another process moved the cursor."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from auditsink.consumer import Consumer, ConsumerLoop, Progress
from auditsink.detect import Detector
from auditsink.model import decode_body
from auditsink.store.base import (
    Alert,
    AlertSelector,
    CursorMoved,
    Selector,
    StoredEvent,
    StoreError,
)
from auditsink.store.sqlite import SQLiteStore

EVENTS = 30
BATCH = 10


@pytest.fixture
def store(tmp_path: Path, fixtures_dir: Path) -> Iterator[SQLiteStore]:
    """A SQLite file holding EVENTS events: three full pages of BATCH."""
    items, bad = decode_body((fixtures_dir / "audit.log").read_bytes())
    assert not bad
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    store.write(items[:EVENTS])
    assert store.last_id() == EVENTS
    yield store
    store.close()


class Gated:
    """The store, but each commit_consumed sets ``entered`` and waits for ``release``."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.entered = threading.Event()
        self.release = threading.Event()
        self.commits: list[int] = []  # the positions commits were asked for

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def commit_consumed(self, name: str, position: int, alerts: list[Alert],
                        **options: Any) -> None:
        self.commits.append(position)
        self.entered.set()
        assert self.release.wait(10), "the commit was never released"
        self.store.commit_consumed(name, position, alerts, **options)


class OneAlertEach(Consumer):
    """Reads the events log like the rules do and raises one alert per event."""

    name = "test"
    batch = BATCH
    poll = 0.01

    def __init__(self, store: Any, commit_every: float, commit_alerts: int = 20_000) -> None:
        self.store = store
        self.commit_every = commit_every
        self.commit_alerts = commit_alerts
        self.processed: list[int] = []
        self.resumes = 0
        self.caught_up_after_resume = threading.Event()

    def fetch(self, after: int, limit: int) -> Sequence[StoredEvent]:
        return self.store.query(Selector(), limit=limit, after_id=after, newest_first=False)

    def process(self, entries: Sequence[StoredEvent], stop: threading.Event) -> Progress:
        self.processed += [e.id for e in entries]
        if entries[-1].id == EVENTS and self.resumes > 1:
            self.caught_up_after_resume.set()
        return Progress(entries[-1].id, [_alert(e.id) for e in entries])

    def resumed(self, position: int) -> None:
        self.resumes += 1

    def newest(self) -> int:
        return int(self.store.last_id())


def _alert(event: int) -> Alert:
    return Alert(time=event, rule="r", priority=5, output="o", audit_id=str(event), event=event)


def _alerted(store: SQLiteStore) -> list[int]:
    return sorted(a.event for a in store.alerts(AlertSelector(), limit=1000))


def test_pages_are_processed_while_a_commit_waits(store: SQLiteStore) -> None:
    gated = Gated(store)
    consumer = OneAlertEach(gated, commit_every=3600)
    loop = ConsumerLoop(gated, consumer)  # type: ignore[arg-type]
    assert loop.step() == BATCH
    assert gated.entered.wait(10)  # the first page's commit started and is blocked ...
    assert loop.step() == BATCH    # ... and the next page is evaluated meanwhile
    assert consumer.processed == list(range(1, 2 * BATCH + 1))
    assert gated.commits == [BATCH], "one commit at a time"
    assert loop.position == store.get_cursor("test") == 0 and loop.lag() == EVENTS
    gated.release.set()
    loop.flush()
    assert gated.commits == [BATCH, 2 * BATCH]
    assert loop.position == store.get_cursor("test") == 2 * BATCH
    assert _alerted(store) == list(range(1, 2 * BATCH + 1))
    assert loop.step() == BATCH and loop.step() == 0
    loop.flush()
    assert store.get_cursor("test") == EVENTS and loop.lag() == 0
    assert _alerted(store) == list(range(1, EVENTS + 1)), "each event's alert stored once"


def test_too_many_pending_alerts_wait_for_the_running_commit(store: SQLiteStore) -> None:
    gated = Gated(store)
    loop = ConsumerLoop(gated, OneAlertEach(gated, commit_every=3600,  # type: ignore[arg-type]
                                            commit_alerts=2 * BATCH))
    loop.step()
    assert gated.entered.wait(10)
    loop.step()  # 10 alerts wait: on
    third = threading.Thread(target=loop.step)  # 20 wait: it must wait for the first commit
    third.start()
    third.join(0.2)
    assert third.is_alive(), "pending alerts grew past commit_alerts while a commit ran"
    gated.release.set()
    third.join(10)
    assert not third.is_alive()
    loop.flush()
    assert gated.commits == [BATCH, EVENTS]
    assert store.get_cursor("test") == EVENTS and _alerted(store) == list(range(1, EVENTS + 1))


def test_without_commit_every_each_step_commits_before_it_returns(store: SQLiteStore) -> None:
    gated = Gated(store)
    gated.release.set()
    loop = ConsumerLoop(gated, OneAlertEach(gated, commit_every=0))  # type: ignore[arg-type]
    for page in (1, 2, 3):
        assert loop.step() == BATCH
        assert store.get_cursor("test") == loop.position == page * BATCH
        assert gated.commits == [n * BATCH for n in range(1, page + 1)]
        assert _alerted(store) == list(range(1, page * BATCH + 1))
    assert loop.step() == 0 and gated.commits == [BATCH, 2 * BATCH, EVENTS]


def test_a_cursor_moved_under_a_background_commit_resumes_from_there(
        store: SQLiteStore) -> None:
    gated = Gated(store)
    consumer = OneAlertEach(gated, commit_every=3600)
    loop = ConsumerLoop(gated, consumer)  # type: ignore[arg-type]
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,))
    runner.start()
    try:
        assert gated.entered.wait(10)  # committing 1..10, blocked
        # Meanwhile another process evaluated and committed the first page itself.
        store.commit_consumed("test", BATCH, [_alert(e) for e in range(1, BATCH + 1)],
                              expected=0)
        gated.release.set()  # the loop's commit now fails: CursorMoved
        assert consumer.caught_up_after_resume.wait(10)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert consumer.resumes == 2, "the loop re-read the cursor once after its commit failed"
    assert consumer.processed[:BATCH] == list(range(1, BATCH + 1))
    assert consumer.processed[-2 * BATCH:] == list(range(BATCH + 1, EVENTS + 1)), \
        "the pages after the moved cursor are read again"
    assert store.get_cursor("test") == loop.position == EVENTS
    assert _alerted(store) == list(range(1, EVENTS + 1)), "nothing committed twice or lost"


class FailsOnce(Gated):
    def commit_consumed(self, name: str, position: int, alerts: list[Alert],
                        **options: Any) -> None:
        self.commits.append(position)
        if len(self.commits) == 1:
            raise StoreError("database is locked")
        self.store.commit_consumed(name, position, alerts, **options)


def test_a_failed_background_commit_is_raised_and_retried(store: SQLiteStore) -> None:
    failing = FailsOnce(store)
    loop = ConsumerLoop(failing, OneAlertEach(failing, commit_every=3600))  # type: ignore[arg-type]
    loop.step()  # its commit fails in the background
    with pytest.raises(StoreError, match="locked"):
        loop.flush()
    assert store.get_cursor("test") == loop.position == 0
    loop.step()
    loop.step()
    loop.flush()  # the first page's alerts are committed with the later ones
    assert failing.commits == [BATCH, EVENTS]
    assert store.get_cursor("test") == EVENTS and _alerted(store) == list(range(1, EVENTS + 1))


def test_a_stale_background_commit_surfaces_at_the_next_step(store: SQLiteStore) -> None:
    gated = Gated(store)
    loop = ConsumerLoop(gated, OneAlertEach(gated, commit_every=3600))  # type: ignore[arg-type]
    loop.step()
    assert gated.entered.wait(10)
    store.set_cursor("test", 5)
    gated.release.set()
    loop._running[0].exception()  # type: ignore[index]  # the commit is done (it failed)
    with pytest.raises(CursorMoved):
        loop.step()
    loop.resume()
    assert loop.position == loop.read_position == 5
    while loop.step():
        pass
    loop.flush()
    assert store.get_cursor("test") == EVENTS
    assert _alerted(store) == list(range(6, EVENTS + 1))


def test_the_rules_commit_in_the_background_and_step_is_durable(store: SQLiteStore) -> None:
    from auditsink.rules.engine import load_rules

    assert Detector.commit_every > 0 and Consumer.commit_every == 0
    detector = Detector(store, load_rules(), batch=BATCH)
    for page in (1, 2):  # the second within commit_every of the first commit: flushed by step
        assert detector.step() == BATCH
        assert store.get_cursor("rules") == detector.position == page * BATCH


def test_resume_waits_for_the_running_commit(store: SQLiteStore) -> None:
    gated = Gated(store)
    loop = ConsumerLoop(gated, OneAlertEach(gated, commit_every=3600))  # type: ignore[arg-type]
    loop.step()
    assert gated.entered.wait(10)
    loop.step()  # pending: dropped by the resume, read again after it
    resume = threading.Thread(target=loop.resume)
    resume.start()
    resume.join(0.2)
    assert resume.is_alive(), "the cursor was re-read while a commit could still move it"
    gated.release.set()
    resume.join(10)
    assert loop.position == loop.read_position == BATCH
    while loop.step():
        pass
    loop.flush()
    assert store.get_cursor("test") == EVENTS and _alerted(store) == list(range(1, EVENTS + 1))


class AlertsOn(OneAlertEach):
    """Raises an alert only for the events in ``alerting``."""

    alerting: set[int] = set()

    def process(self, entries: Sequence[StoredEvent], stop: threading.Event) -> Progress:
        self.processed += [e.id for e in entries]
        return Progress(entries[-1].id, [_alert(e.id) for e in entries if e.id in self.alerting])


def test_caught_up_a_cursor_waits_for_commit_every_but_alerts_do_not(
        store: SQLiteStore, fixtures_dir: Path) -> None:
    # In blocking mode the rules catch up at every page: committing the cursor each time
    # took SQLite's write lock from ingest several times a second.
    more, _ = decode_body((fixtures_dir / "audit.log").read_bytes())
    gated = Gated(store)
    gated.release.set()
    consumer = AlertsOn(gated, commit_every=3600)
    loop = ConsumerLoop(gated, consumer)  # type: ignore[arg-type]
    while loop.step():
        pass
    loop._settle(wait=True)
    assert gated.commits == [BATCH], "only the first page's (no commit had run yet)"
    store.write(more[EVENTS:EVENTS + 1])  # a trickle: a partial page, caught up, no alert
    assert loop.step() == 1 and loop.step() == 0
    assert gated.commits == [BATCH]
    consumer.alerting = {EVENTS + 2}
    store.write(more[EVENTS + 1:EVENTS + 2])  # caught up with an alert: committed at once
    assert loop.step() == 1
    loop._settle(wait=True)
    assert gated.commits == [BATCH, EVENTS + 2]
    assert _alerted(store) == [EVENTS + 2] and store.get_cursor("test") == EVENTS + 2
