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
from typing import NamedTuple, Protocol

from auditsink.model import BadItem, Item
from auditsink.selector import Selector as Selector  # re-exported: the stores' vocabulary

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
    #: positions in the submitted list of the items that were duplicates (all of them when
    #: nothing was stored), so that ``serve`` prints only what was new
    duplicate_items: tuple[int, ...] = ()


# A position in time order: (stageTimestamp in µs, log position). Pages in time order resume
# strictly after the key of the last event they showed.
TimeKey = tuple[int, int]


class RowFilter(NamedTuple):
    """What an event's row must hold for a rule or detector to want the event: the
    prefilter a store applies before any body is read (``follow``). ``None`` constrains
    nothing; strings are compared as the row keeps them (:func:`~auditsink.selector.bounded`,
    "" when absent), so a filter holds only values that cannot be told apart otherwise."""

    stages: frozenset[str] | None = None
    verbs: frozenset[str] | None = None
    resources: frozenset[str] | None = None
    subresources: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    users: frozenset[str] | None = None
    impersonated: bool = False       # only requests made as someone else
    codes: tuple[int, int] | None = None  # an inclusive range of response codes

    @property
    def unconstrained(self) -> bool:
        return self == RowFilter()


class Page(list["StoredEvent"]):
    """The events of a ``follow`` page that passed its filters, and the page's extent: every
    event up to ``last`` was looked at (``examined`` of them), the others ruled out."""

    def __init__(self, events: Sequence[StoredEvent], last: int, examined: int) -> None:
        super().__init__(events)
        self.last = last
        self.examined = examined


@dataclass
class StoredEvent:
    """One event read back from a store: its position in the log, cluster, exact bytes, and
    its stageTimestamp in µs."""

    id: int
    cluster: str
    raw: bytes
    time: int = 0

    @property
    def key(self) -> TimeKey:
        """Where this event sorts in time order."""
        return (self.time, self.id)


def format_key(key: TimeKey) -> str:
    """A time-order cursor as it travels in URLs and JSON.

    >>> format_key((1795702791292366, 42))
    '1795702791292366-42'
    """
    return f"{key[0]}-{key[1]}"


def parse_key(text: str) -> TimeKey:
    """The inverse of :func:`format_key`; ValueError for anything else."""
    when, sep, ident = text.partition("-")
    if not sep or not when.isdigit() or not ident.isdigit() or len(text) > 40:
        raise ValueError(f"invalid cursor {text[:60]!r}: pass back the 'next' value of a page")
    return int(when), int(ident)


@dataclass
class Rejected:
    """An item that could not be decoded, kept for an operator to inspect."""

    id: int
    time: float
    cluster: str
    error: str
    body: bytes


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
        from auditsink.priority import PRIORITIES
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


class EventWriter(Protocol):
    """The receiver's side: submit batches, acknowledged once committed."""

    url: str
    queue_events: int
    last_commit_seconds: float

    def open(self, start_writer: bool = True) -> None:
        """Create or upgrade the schema; start the writer unless only reading."""

    def close(self) -> None:
        """Drain what was submitted, commit it and stop the writer."""

    def submit(self, items: list[Item], cluster: str = "",
               bad: Sequence[BadItem] = ()) -> asyncio.Future[WriteResult]:
        """Queue items (and undecodable ones, kept for inspection) for the next group commit;
        the future resolves once they are durable. Raises :class:`Overloaded` when the
        bounded queue is full."""

    def write(self, items: list[Item], cluster: str = "",
              bad: Sequence[BadItem] = ()) -> WriteResult:
        """Write and commit items from a plain thread (import, tests); blocks until durable."""

    def reject(self, bad: list[BadItem], cluster: str = "") -> None:
        """Keep undecodable items where ``auditsink rejected`` can show them."""

    def queue_depth(self) -> int:
        """Events waiting for the writer."""

    def has_room(self) -> bool:
        """Whether another batch may be queued now (else the receiver answers 429 at once)."""

    def prune(self, older_than: int, chunk: int = 20_000) -> int:
        """Delete events with time < ``older_than`` (µs); returns how many."""


class EventReader(Protocol):
    """The questions people and consumers ask of the log."""

    def query(self, selector: Selector, limit: int = 100, after_id: int = 0,
              newest_first: bool = True, before_id: int | None = None) -> list[StoredEvent]:
        """Matching events in log order (consumers, follow)."""

    def follow(self, after_id: int, limit: int, filters: Sequence[RowFilter]) -> Page:
        """The next ``limit`` events after a log position, of which only those whose row
        passes one of ``filters`` are read (consumers that want few events: the rules)."""

    def page(self, selector: Selector, limit: int = 100, *, before: TimeKey | None = None,
             after: TimeKey | None = None, oldest_first: bool = False,
             requests_only: bool = False) -> list[StoredEvent]:
        """Matching events in time order, newest first; keyset-paged by (time, id)."""

    def iter_all(self, selector: Selector) -> Iterator[StoredEvent]:
        """Every matching event in log order."""

    def iter_page(self, selector: Selector, *, oldest_first: bool = True,
                  requests_only: bool = False) -> Iterator[StoredEvent]:
        """Every matching event in time order (exports)."""

    def count(self, selector: Selector, requests_only: bool = False) -> int:
        """How many events match."""

    def last_id(self) -> int:
        """The newest log position (0 for an empty store)."""

    def stats(self, selector: Selector, top: int = 10) -> dict[str, object]:
        """Top users, verbs, resources, namespaces, failures and events per hour."""

    def time_bounds(self, selector: Selector) -> tuple[int, int] | None:
        """The oldest and newest stageTimestamp (µs) of matching events; None when none match."""

    def counts_by_time(self, selector: Selector, bucket_us: int, column: str = "verb",
                       requests_only: bool = False) -> list[tuple[int, str, int]]:
        """(bucket start µs, value of ``column``, count) for matching events, oldest first."""

    def group_counts(self, selector: Selector, columns: Sequence[str], limit: int = 10,
                     failures_only: bool = False) -> list[dict[str, object]]:
        """Counts of matching events grouped by ``columns``, largest first."""

    def clusters_seen(self, selector: Selector | None = None) -> list[str]:
        """Every cluster the store has stored events of."""

    def rejected(self, limit: int = 100) -> list[Rejected]:
        """The most recent undecodable items."""

    def facets_after(self, after_id: int, limit: int) -> list[tuple[int, ...]]:
        """Dictionary-id facets of the events after a log position (query/rollup.py)."""

    def facets_between(self, since: int, until: int, upto_id: int) -> list[tuple[int, ...]]:
        """The same for a time range up to a log position."""

    def names(self, ids: set[int]) -> dict[int, str]:
        """Dictionary ids back to the strings they stand for."""


class ConsumerLog(Protocol):
    """What consumers (rules, notifiers, outputs) keep beside the log, and the alerts."""

    def get_cursor(self, name: str) -> int:
        """A consumer's durable position in the log (0 before its first event)."""

    def set_cursor(self, name: str, position: int) -> None:
        """Move a consumer's durable position."""

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
        """Try to become the one process running consumer ``name`` (never blocks); True
        while this process holds it. The claim ends when the store closes or the process
        dies, and another replica's next try then succeeds."""

    def save_state(self, name: str, data: bytes) -> None:
        """Keep a component's state beside the log (the overview's rollup), replacing the
        last; a store opened for reading only keeps nothing."""

    def load_state(self, name: str) -> bytes | None:
        """What :meth:`save_state` kept under ``name``, or None."""

    def alerts(self, selector: AlertSelector, limit: int = 100, after_id: int = 0,
               newest_first: bool = True, before_id: int | None = None) -> list[Alert]:
        """Alerts in the order they were raised (notifiers page by id)."""

    def alert_page(self, selector: AlertSelector, limit: int = 100,
                   before: TimeKey | None = None) -> list[Alert]:
        """Alerts in time order, newest first (people)."""

    def alert_counts(self, selector: AlertSelector) -> dict[int, int]:
        """Number of matching alerts per priority rank."""

    def alert_groups(self, selector: AlertSelector, limit: int = 100) -> list[dict[str, object]]:
        """Matching alerts grouped by rule and cluster, the most severe first."""

    def alerts_for_events(self, selector: AlertSelector, events: Selector,
                          limit: int = 100) -> list[Alert]:
        """Alerts matching ``selector`` whose event also matches ``events``."""


class StoreAdmin(Protocol):
    """Operating the store itself."""

    def migrate(self) -> list[str]:
        """Apply pending schema changes; the names of those applied."""

    def size_bytes(self) -> int:
        """Bytes on disk."""


class Store(EventWriter, EventReader, ConsumerLog, StoreAdmin, Protocol):
    """Everything a store does: the roles above, which each caller may ask for alone."""


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
