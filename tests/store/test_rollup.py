"""query/rollup.py on every store backend: the overview's counts over long ranges, answered
from memory for whole hours, must equal the store's own answers, through late events,
retried duplicates and retention."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from typing import Any

from auditsink.model import decode_body
from auditsink.query.rollup import HOUR_US, STATE_NAME, Rollup, usable
from auditsink.store.base import Selector, open_store
from auditsink.timeutil import format_micros

START = 1_790_000_000 * 1_000_000 // HOUR_US * HOUR_US  # an hour boundary in 2026


def _events(rng: random.Random, count: int, low: int, high: int) -> list[Any]:
    lines = []
    for _ in range(count):
        stamp = format_micros(rng.randrange(low, high))
        lines.append({
            "level": "Metadata", "auditID": str(uuid.UUID(int=rng.getrandbits(128))),
            "stage": "ResponseComplete", "verb": rng.choice(["get", "list", "create", "delete"]),
            "user": {"username": rng.choice(["alice", "bob", "system:apiserver", "ci"])},
            "objectRef": {"resource": rng.choice(["pods", "secrets", "deployments"]),
                          "apiGroup": rng.choice(["", "apps"]), "namespace": "demo", "name": "x"},
            "responseStatus": {"code": rng.choice([200, 200, 201, 403, 404, 500])},
            "requestReceivedTimestamp": stamp, "stageTimestamp": stamp,
        })
    items, bad = decode_body("\n".join(json.dumps(line) for line in lines).encode())
    assert not bad
    return items


def _open(store_url: str, seed: int) -> tuple[random.Random, Any]:
    store = open_store(store_url)
    store.open()
    return random.Random(seed), store


def _same_answers(store: Any, rollup: Rollup, selector: Selector) -> None:
    assert usable(selector)
    for columns, failures in ((["user"], False), (["resource", "api_group"], False),
                              (["code", "verb", "resource"], True)):
        expected = store.group_counts(selector, columns, 1000, failures_only=failures)
        got = rollup.group_counts(selector, columns, 1000, failures_only=failures)

        def key(row: dict[str, object]) -> str:
            return json.dumps(row, sort_keys=True)

        assert sorted(got, key=key) == sorted(expected, key=key), columns
    for width in (300_000_000, 900_000_000, HOUR_US):
        assert rollup.counts_by_time(selector, width) == sorted(
            store.counts_by_time(selector, width, "verb"))


def test_rollup_answers_what_the_store_answers(store_url: str) -> None:
    rng, store = _open(store_url, seed=7)
    batch = _events(rng, 3000, START, START + 10 * HOUR_US)
    store.write(batch[:1500])
    store.write(batch[1500:], cluster="prod")
    store.write(batch[:400])  # a retried batch: duplicates must not be counted
    rollup = Rollup(store)
    ranges = [
        Selector(since=START + 1234567, until=START + 9 * HOUR_US + 7654321),  # partial ends
        Selector(since=START, until=START + 10 * HOUR_US),  # whole hours only
        Selector(clusters=["prod"], since=START + 30 * 60_000_000, until=START + 8 * HOUR_US),
    ]
    for selector in ranges:
        _same_answers(store, rollup, selector)
    # Late events (old timestamps, new log positions) land in their hours.
    store.write(_events(rng, 300, START + HOUR_US, START + 3 * HOUR_US))
    for selector in ranges:
        _same_answers(store, rollup, selector)
    # Retention: the hours before the cutoff go, the hour it falls in is counted again.
    store.prune(START + 2 * HOUR_US + 600_000_000)
    for selector in ranges:
        _same_answers(store, rollup, selector)
    store.close()


def test_only_long_ranges_of_whole_clusters_use_it() -> None:
    assert not usable(Selector(since=0, until=HOUR_US))
    assert not usable(Selector(users=["alice"], since=0, until=24 * HOUR_US))
    assert not usable(Selector(since=0))
    assert usable(Selector(clusters=["prod"], since=0, until=24 * HOUR_US))


def _first_fold_position(store: Any, rollup: Rollup, selector: Selector) -> int:
    """Answer once through ``rollup``; return where its first read of the log started."""
    asked: list[int] = []
    facets_after = store.facets_after

    def spy(after_id: int, limit: int) -> Any:
        asked.append(after_id)
        return facets_after(after_id, limit)

    store.facets_after = spy
    try:
        _same_answers(store, rollup, selector)
    finally:
        del store.facets_after
    return asked[0]


def test_a_restart_starts_from_the_snapshot(store_url: str) -> None:
    # Folding the whole log costs 3.4 s per million events; after a restart the rollup must
    # start from the snapshot serve saved, fold only the rest, and still answer exactly.
    rng, store = _open(store_url, seed=11)
    store.write(_events(rng, 2000, START, START + 10 * HOUR_US))
    everything = Selector(since=START, until=START + 10 * HOUR_US)
    first = Rollup(store)
    assert _first_fold_position(store, first, everything) == 0
    first.save()
    saved_at = store.last_id()
    # Meanwhile: new events, late ones (older hours, new positions), and retention.
    store.write(_events(rng, 500, START + 2 * HOUR_US, START + 10 * HOUR_US), cluster="prod")
    store.prune(START + HOUR_US + 900_000_000)
    restarted = Rollup(store)
    assert _first_fold_position(store, restarted, everything) == saved_at
    _same_answers(store, restarted,
                  Selector(clusters=["prod"], since=START, until=START + 9 * HOUR_US))
    store.close()


def test_a_snapshot_ahead_of_its_log_is_ignored(store_url: str) -> None:
    # A database restored from an older backup holds fewer events than a snapshot taken later
    # would count: start from scratch instead.
    rng, store = _open(store_url, seed=12)
    store.write(_events(rng, 300, START, START + 8 * HOUR_US))
    rollup = Rollup(store)
    rollup.refresh()
    rollup._after += 1000  # as if it had counted events this log does not have
    store.save_state(STATE_NAME, rollup.snapshot())
    fresh = Rollup(store)
    assert _first_fold_position(store, fresh, Selector(since=START, until=START + 8 * HOUR_US)) == 0
    store.close()


def test_serve_keeps_the_snapshot_fresh_and_saves_it_when_stopping(store_url: str) -> None:
    rng, store = _open(store_url, seed=13)
    store.write(_events(rng, 400, START, START + 7 * HOUR_US))
    assert store.load_state(STATE_NAME) is None
    stop = threading.Event()
    background = Rollup(store)
    background._used.set()  # someone opened the overview
    thread = threading.Thread(target=background.run, args=(stop,), kwargs={"every": 0.05})
    thread.start()
    store.write(_events(rng, 100, START, START + 7 * HOUR_US))
    deadline = time.monotonic() + 10
    while background._after < store.last_id() and time.monotonic() < deadline:
        stop.wait(0.05)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    restarted = Rollup(store)
    position = _first_fold_position(store, restarted,
                                    Selector(since=START, until=START + 7 * HOUR_US))
    assert position == store.last_id()  # nothing left to fold: the snapshot was complete
    store.close()
