"""The ingest pipeline, top to bottom: admit (match, policy, redact) -> store -> print.

The receiver and ``auditsink import`` both go through :class:`Pipeline`, so a file imported
is treated exactly like a batch received.
"""

from __future__ import annotations

import logging

from collections.abc import Callable


from auditsink.admit.redact import redact_item
from auditsink.model import BadItem, Event, Item
from auditsink.printer import Printer
from auditsink.metrics import OTHER, VERB_LABELS, Metrics
from auditsink.store.base import Store, WriteResult

log = logging.getLogger("auditsink.pipeline")

Match = Callable[[Event, str], bool]
ApplyPolicy = Callable[[Item], "Item | None"]


class Pipeline:
    """What happens to every decoded batch, whichever door it came in by."""

    def __init__(
        self,
        store: Store | None = None,
        printer: Printer | None = None,
        match: Match | None = None,
        policy: ApplyPolicy | None = None,
        redact: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.printer = printer
        self.match = match
        self.policy = policy
        self.redact = redact
        self.metrics = metrics or Metrics()

    def admit(self, items: list[Item], cluster: str) -> list[Item]:
        """Filter, apply the server-side policy and redact secrets, in that order."""
        match, policy, redact = self.match, self.policy, self.redact
        counts = self.metrics.events
        label = self.metrics.cluster_label(cluster)  # labels from fixed sets (metrics.py)
        kept: list[Item] = []
        for item in items:
            event = item.event
            if match is not None and not match(event, cluster):
                continue
            if policy is not None:
                admitted = policy(item)
                if admitted is None:
                    continue
                item = admitted
            if redact:
                item = redact_item(item)
            counts[(label, VERB_LABELS.get(event.verb, OTHER), item.event.level, event.stage)] += 1
            kept.append(item)
        self.metrics.dropped_by_policy += len(items) - len(kept)
        return kept

    def note_bad(self, bad: list[BadItem], cluster: str) -> None:
        """Count and log undecodable items (a snippet, never a whole object)."""
        if not bad:
            return
        self.metrics.bad_items += len(bad)
        for item in bad[:5]:
            log.warning(
                "rejected item %d of a batch from cluster %r: %s; starts with %s",
                item.index, cluster, item.error, item.snippet[:120],
            )
        if len(bad) > 5:
            log.warning("... and %d more rejected items in the same batch", len(bad) - 5)

    async def ingest(self, items: list[Item], bad: list[BadItem], cluster: str = "") -> WriteResult:
        """Admit, commit (waits for durability), then print; returns what was stored.

        Undecodable items are committed in the same transaction, for ``auditsink rejected``.
        """
        self.note_bad(bad, cluster)
        kept = self.admit(items, cluster)
        if self.store is not None and (kept or bad):
            result = await self.store.submit(kept, cluster, bad)
            self.metrics.duplicates += result.duplicates
        else:
            result = WriteResult(stored=len(kept))
        if self.printer is not None and kept:
            self.printer.write(stored_items(kept, result), cluster)
        return result

    def ingest_sync(self, items: list[Item], bad: list[BadItem], cluster: str = "") -> WriteResult:
        """The same as :meth:`ingest` from a plain thread (``auditsink import``)."""
        self.note_bad(bad, cluster)
        kept = self.admit(items, cluster)
        if self.store is not None and (kept or bad):
            result = self.store.write(kept, cluster, bad)
            self.metrics.duplicates += result.duplicates
        else:
            result = WriteResult(stored=len(kept))
        if self.printer is not None and kept:
            self.printer.write(stored_items(kept, result), cluster)
        return result


def stored_items(items: list[Item], result: WriteResult) -> list[Item]:
    """The items a write stored, in their order: a retried batch is printed once.

    A sink that counts duplicates without saying which (the bus: a whole batch is a duplicate
    or not) gives nothing when nothing was stored, else everything.
    """
    if not result.duplicates:
        return items
    if result.duplicate_items:
        repeated = set(result.duplicate_items)
        return [item for index, item in enumerate(items) if index not in repeated]
    return [] if not result.stored else items
