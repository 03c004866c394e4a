"""What every store provides, and the registry that opens one from a URL.

A store is the log (design.md): an event is acknowledged only after the store committed it,
and every consumer reads the store in commit order. Backends register here by URL scheme and
are imported late, so optional ones (PostgreSQL) cost nothing when unused.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from auditsink.model import BadItem, Item

STORES = {
    "sqlite": "auditsink.store.sqlite:SQLiteStore",
    "postgresql": "auditsink.store.postgres:PostgresStore",
    "postgres": "auditsink.store.postgres:PostgresStore",
}

DEFAULT_STORE_URL = "sqlite:///auditsink.db"


class Overloaded(Exception):
    """The writer is behind and its bounded queue is full: answer 429 and let the sender retry."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("store queue full")
        self.retry_after = retry_after


class StoreError(Exception):
    """A store could not be opened or used; the message says what to do."""


class CursorMoved(StoreError):
    """Another process advanced a consumer's cursor first: nothing was stored, re-read it.

    With several replicas on one store, this keeps each consumer exactly-once even in the
    moments when two processes both believe they hold it (see ``claim_consumer``).
    """


@dataclass
class WriteResult:
    """What one submitted batch turned into once committed."""

    stored: int = 0
    duplicates: int = 0


@dataclass
class StoredEvent:
    """One event read back from a store: its position in the log, cluster and exact bytes."""

    id: int
    cluster: str
    raw: bytes


@dataclass
class Rejected:
    """An item that could not be decoded, kept for an operator to inspect."""

    id: int
    time: float
    cluster: str
    error: str
    body: bytes


@dataclass
class Selector:
    """Which events to return: the audit-policy vocabulary plus a time range.

    Every list is OR within the field, AND across fields; empty means any.
    ``resources`` entries may be ``pods`` or ``pods/exec``; ``codes`` entries may be ``403`` or
    ``4xx``. Times are microseconds since the epoch.
    """

    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    api_groups: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)
    audit_ids: list[str] = field(default_factory=list)
    since: int | None = None
    until: int | None = None


@dataclass
class Alert:
    """A rule's detection, kept in the store with a link to the event behind it.

    ``priority`` is Falco's rank (0 EMERGENCY ... 7 DEBUG); ``event`` is the event's log
    position, ``time`` its stageTimestamp in microseconds.
    """

    time: int
    rule: str
    priority: int
    output: str
    audit_id: str
    event: int
    cluster: str = ""
    tags: list[str] = field(default_factory=list)
    fields: dict[str, object] = field(default_factory=dict)
    id: int = 0

    def to_dict(self) -> dict[str, object]:
        """The JSON form shared by the read API and ``auditsink alerts --format json``."""
        from auditsink.rules.priority import PRIORITIES
        from auditsink.timeutil import format_micros

        return {"id": self.id, "time": format_micros(self.time), "rule": self.rule,
                "priority": PRIORITIES[self.priority], "output": self.output,
                "auditID": self.audit_id, "event": self.event, "cluster": self.cluster,
                "tags": self.tags, "output_fields": self.fields}


@dataclass
class DeadLetter:
    """A batch an output gave up on after its attempts: the range of the log it covered (the
    events stay in the store), kept until ``auditsink outputs replay NAME --dead-letters``
    delivers it. ``time`` is when it was given up (unix seconds)."""

    consumer: str
    first: int
    last: int
    events: int
    attempts: int
    error: str
    time: float = 0.0
    id: int = 0


@dataclass
class AlertSelector:
    """Which alerts to return; ``min_priority`` is a rank (alerts at least that severe)."""

    rules: list[str] = field(default_factory=list)
    min_priority: int | None = None
    clusters: list[str] = field(default_factory=list)
    audit_ids: list[str] = field(default_factory=list)
    since: int | None = None
    until: int | None = None


class Store(Protocol):
    """The store interface the receiver, the CLI and the consumers use."""

    url: str

    def open(self) -> None:
        """Create or upgrade the schema and start the writer."""

    def close(self) -> None:
        """Drain what was submitted, commit it and stop the writer."""

    def submit(self, items: list[Item], cluster: str = "",
               bad: Sequence[BadItem] = ()) -> asyncio.Future[WriteResult]:
        """Queue items (and undecodable ones, kept for inspection) for the next group commit;
        the future resolves once they are durable.

        Raises :class:`Overloaded` when the bounded queue is full.
        """

    def write(self, items: list[Item], cluster: str = "", bad: Sequence[BadItem] = ()) -> WriteResult:
        """Write and commit items from a plain thread (import, tests); blocks until durable."""

    def reject(self, bad: list[BadItem], cluster: str = "") -> None:
        """Keep undecodable items where ``auditsink rejected`` can show them."""

    def query(
        self, selector: Selector, limit: int = 100, after_id: int = 0, newest_first: bool = True,
        before_id: int | None = None,
    ) -> list[StoredEvent]:
        """Events matching ``selector``; pages by log position (``after_id``/``before_id``)."""

    def rejected(self, limit: int = 100) -> list[Rejected]:
        """The most recent undecodable items."""

    def stats(self, selector: Selector, top: int = 10) -> dict[str, object]:
        """Top users, verbs, resources, namespaces, failures and events per hour."""

    def queue_depth(self) -> int:
        """Events waiting for the writer."""

    def has_room(self) -> bool:
        """Whether another batch may be queued now (else the receiver answers 429 at once)."""

    def iter_all(self, selector: Selector) -> Iterator[StoredEvent]:
        """Every matching event in log order (export)."""

    def get_cursor(self, name: str) -> int:
        """A consumer's durable position in the log (0 before its first event)."""

    def save_state(self, name: str, data: bytes) -> None:
        """Keep a component's state beside the log (the overview's rollup), replacing the
        last; a store opened for reading only keeps nothing."""

    def load_state(self, name: str) -> bytes | None:
        """What :meth:`save_state` kept under ``name``, or None."""

    def commit_consumed(self, name: str, position: int, alerts: list[Alert],
                        expected: int | None = None,
                        dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Store alerts (or an output's dead letters) and advance a consumer's cursor
        atomically; with ``expected``, only if the cursor is still there (else raise
        ``CursorMoved`` and store nothing)."""

    def cursors(self) -> dict[str, int]:
        """Every consumer's durable position, by name."""

    def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters of one consumer (or all), oldest first."""

    def drop_dead_letter(self, ident: int) -> None:
        """Forget a dead letter (it was replayed)."""

    def claim_consumer(self, name: str) -> bool:
        """Try to become the one process running consumer ``name`` (never blocks).

        True while this process holds it; the claim ends when the store is closed or the
        process dies, and another replica's next try then succeeds.
        """

    def alerts(self, selector: AlertSelector, limit: int = 100, after_id: int = 0,
               newest_first: bool = True, before_id: int | None = None) -> list[Alert]:
        """Alerts matching ``selector``."""

    # -- web UI questions (issue 7) --------------------------------------------------------

    def time_bounds(self, selector: Selector) -> tuple[int, int] | None:
        """The oldest and newest stageTimestamp (µs) of matching events; None when none match."""

    def counts_by_time(self, selector: Selector, bucket_us: int,
                       column: str = "verb") -> list[tuple[int, str, int]]:
        """(bucket start µs, value of ``column``, count) for matching events, oldest first."""

    def group_counts(self, selector: Selector, columns: Sequence[str], limit: int = 10,
                     failures_only: bool = False) -> list[dict[str, object]]:
        """Counts of matching events grouped by ``columns``, largest first."""

    def clusters_seen(self, selector: Selector, sample: int = 20_000) -> list[str]:
        """Cluster names of matching events among the newest ``sample`` stored."""

    def alert_counts(self, selector: AlertSelector) -> dict[int, int]:
        """Number of matching alerts per priority rank."""

    def alerts_for_events(self, selector: AlertSelector, events: Selector,
                          limit: int = 100) -> list[Alert]:
        """Alerts matching ``selector`` whose event also matches ``events``."""


def open_store(url: str, **options: object) -> Store:
    """Instantiate the store registered for ``url``'s scheme (``sqlite:///path``)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    target = STORES.get(scheme)
    if target is None:
        raise StoreError(
            f"store {url!r}: unknown scheme {scheme!r}; expected one of "
            + ", ".join(f"{name}://" for name in STORES)
        )
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    store: Store = cls(url, **options)
    return store
