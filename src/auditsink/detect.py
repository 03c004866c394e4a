"""Run detection rules as a consumer of the store: committed events in log order, a durable
cursor, alerts stored in the same transaction that advances the cursor.

A restart therefore re-evaluates nothing twice and misses nothing (design.md, "The store is the
log"), and ingest never waits for the rules. With several replicas on one store, one of them
runs the rules and the others stand by (consumer.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from auditsink.consumer import Consumer, ConsumerLoop, Progress
from auditsink.rules.engine import EventContext
from auditsink.rules.priority import RANK
from auditsink.store.base import Alert, Page, Store, StoredEvent
from auditsink.timeutil import parse_timestamp

CURSOR = "rules"


class Detector(Consumer):
    """Evaluates a compiled rule set over every committed event, in commit order."""

    name = CURSOR
    # Commit in the background, at most once a second while behind: under heavy ingest a
    # synchronous commit waits for SQLite's write lock, and the rules would stop meanwhile
    # (consumer.py).
    commit_every = 1.0

    def __init__(self, store: Store, ruleset: Any, batch: int = 1000, poll: float = 0.2,
                 on_alerts: Callable[[list[Alert]], None] | None = None,
                 stateful: Any = None) -> None:
        self.store = store
        self.ruleset = ruleset
        # Burst detectors (secret-read bursts, repeated 401/403) keep their windows in memory:
        # a restart starts them afresh, the stateless rules lose nothing.
        self.stateful = stateful
        self.batch = batch
        self.poll = poll
        self.on_alerts = on_alerts
        self.raised = 0
        self.decoded = 0  # events read and evaluated: those some filter kept
        self.filters = ruleset.row_filters() + (
            stateful.row_filters() if stateful is not None else ())
        self.loop = ConsumerLoop(store, self)

    def fetch(self, after: int, limit: int) -> Page:
        # Only the events some rule or detector may want: for most of a cluster's events
        # (reads, status updates) the store rules that out from the row, in SQL.
        return self.store.follow(after, limit, self.filters)

    def process(self, entries: Sequence[StoredEvent], stop: threading.Event) -> Progress:
        alerts: list[Alert] = []
        for stored in entries:
            ctx = EventContext(stored.raw)  # decoded once for the rules and the detectors
            self.decoded += 1
            found_all = self.ruleset.evaluate(ctx)
            if self.stateful is not None:
                found_all += self.stateful.observe(ctx)
            for found in found_all:
                alerts.append(Alert(
                    time=parse_timestamp(found.time), rule=found.rule,
                    priority=RANK[found.priority],
                    output=found.output, audit_id=found.auditID, event=stored.id,
                    cluster=stored.cluster, tags=list(found.tags), fields=dict(found.output_fields),
                ))
        self.raised += len(alerts)
        if alerts and self.on_alerts is not None:
            self.on_alerts(alerts)
        return Progress(entries.last if isinstance(entries, Page) else entries[-1].id, alerts)

    def newest(self) -> int:
        return getattr(self.store, "last_id", lambda: self.loop.position)()

    # The loop's state, under the names the metrics and tests use.
    def step(self) -> int:
        """Evaluate the next page of events and commit it (durable on return); returns how
        many were read."""
        read = self.loop.step()
        self.loop.flush()
        return read

    def run(self, stop: threading.Event) -> None:
        """Follow the store until ``stop`` is set, in one replica at a time (consumer.py);
        errors are logged and retried."""
        self.loop.run(stop)

    @property
    def position(self) -> int:
        return self.loop.position

    @property
    def evaluated(self) -> int:
        return self.loop.read

    @property
    def active(self) -> bool:
        return self.loop.active

    def lag(self) -> int:
        """Events committed but not yet evaluated."""
        return self.loop.lag()
