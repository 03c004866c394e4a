"""Run detection rules as a consumer of the store: committed events in log order, a durable
cursor, alerts stored in the same transaction that advances the cursor.

A restart therefore re-evaluates nothing twice and misses nothing (design.md, "The store is the
log"), and ingest never waits for the rules. With several replicas on one store, one of them
runs the rules and the others stand by (consumer.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from auditsink.consumer import Follower
from auditsink.rules.priority import RANK
from auditsink.store.base import Alert, Selector, Store
from auditsink.timeutil import parse_timestamp

CURSOR = "rules"


class Detector:
    """Evaluates a compiled rule set over every committed event, in commit order."""

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
        self.position = store.get_cursor(CURSOR)
        self.evaluated = 0
        self.raised = 0
        self.follower = Follower(store, CURSOR, self.step, self._resume, poll)

    def step(self) -> int:
        """Evaluate the next page of events; returns how many were read."""
        page = self.store.query(Selector(), limit=self.batch, after_id=self.position, newest_first=False)
        if not page:
            return 0
        alerts: list[Alert] = []
        for stored in page:
            found_all = self.ruleset.evaluate(stored.raw)
            if self.stateful is not None:
                found_all += self.stateful.observe(stored.raw)
            for found in found_all:
                alerts.append(Alert(
                    time=parse_timestamp(found.time), rule=found.rule, priority=RANK[found.priority],
                    output=found.output, audit_id=found.auditID, event=stored.id,
                    cluster=stored.cluster, tags=list(found.tags), fields=dict(found.output_fields),
                ))
        self.store.commit_consumed(CURSOR, page[-1].id, alerts, expected=self.position)
        self.position = page[-1].id
        self.evaluated += len(page)
        self.raised += len(alerts)
        if alerts and self.on_alerts is not None:
            self.on_alerts(alerts)
        return len(page)

    def run(self, stop: threading.Event) -> None:
        """Follow the store until ``stop`` is set, in one replica at a time (consumer.py);
        errors are logged and retried."""
        self.follower.run(stop)

    def _resume(self) -> None:
        self.position = self.store.get_cursor(CURSOR)

    def lag(self) -> int:
        """Events committed but not yet evaluated."""
        last = getattr(self.store, "last_id", lambda: self.position)()
        return max(0, last - self.position)
