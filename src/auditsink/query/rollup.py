"""Counts per hour of every stored event, so that an overview over days answers in milliseconds.

The overview (issue 7) groups every event of its range four ways; over a million events that
is seconds of scanning. An hour's counts only ever grow (a late event adds to its hour), so
this keeps in memory what the overview asks for, per hour (per 5 minutes for the chart), and
folds in the log by position: each refresh reads only the events committed since the last one
(``id > after``). That sees late arrivals, and never counts a duplicate, since only stored
events have positions. The partial hours at either end of a range are asked of the store
itself. Retention shows as the oldest stored time moving forward: the hours before it are
dropped and the hour it falls in is counted again.

Memory: one counter entry per (hour, cluster, user), (hour, cluster, resource), (hour, cluster,
failure) and (5 minutes, cluster, verb); about 40,000 entries (~8 MB) for a week of a busy
cluster.

Folding the whole log costs about 3.4 s per million events, so ``serve`` keeps a snapshot in
the store (``save_state``) every few minutes and when it stops; after a restart the rollup
starts from the snapshot and folds only what was committed since. A snapshot lives in the
database it counts, so it can only lag behind its log, never belong to another one.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import zstandard

from auditsink.selector import Selector

log = logging.getLogger("auditsink.query")

HOUR_US = 3_600_000_000
SLOT_US = 300_000_000  # the chart's finest bucket served from memory: 5 minutes
# Shorter ranges are fast enough from the store's indexes (the overview of an hour: ~70 ms).
MIN_SPAN_US = 6 * HOUR_US
FETCH = 50_000
STATE_NAME = "overview-rollup"
SNAPSHOT_VERSION = 1
SAVE_EVERY = 300.0  # seconds between snapshots while serve keeps the rollup fresh

# The questions kept, by the columns they group on (group_counts' ``columns``).
_USERS = ("user",)
_RESOURCES = ("resource", "api_group")
_FAILURES = ("code", "verb", "resource")

_ROLLUPS: weakref.WeakKeyDictionary[Any, Rollup] = weakref.WeakKeyDictionary()
_ROLLUPS_LOCK = threading.Lock()


def rollup_for(store: Any) -> Rollup:
    """The one rollup of ``store`` in this process."""
    with _ROLLUPS_LOCK:
        found = _ROLLUPS.get(store)
        if found is None:
            found = _ROLLUPS[store] = Rollup(store)
        return found


def usable(selector: Selector) -> bool:
    """Whether a selector asks only for a long time range, optionally of some clusters."""
    if selector.since is None or selector.until is None:
        return False
    if selector.until - selector.since < MIN_SPAN_US:
        return False
    other = {name: value for name, value in vars(selector).items()
             if name not in ("clusters", "since", "until")}
    return not any(other.values())


class Rollup:
    """In-memory counts of the whole log, brought up to date by :meth:`refresh`."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._used = threading.Event()  # an overview asked for it: keep it fresh from now on
        self._after = 0  # the last log position folded in
        self._oldest: int | None = None  # the oldest stored time at the last refresh
        self._clusters: dict[int, str] = {}
        self.chart: Counter[tuple[int, str, int]] = Counter()  # slot, cluster, verb
        self.users: Counter[tuple[int, str, int]] = Counter()  # hour, cluster, user
        self.resources: Counter[tuple[int, str, int, int]] = Counter()  # hour, cluster, res, group
        self.failures: Counter[tuple[int, str, int, int, int]] = Counter()  # + code, verb, res
        self._restored = False  # a snapshot was looked for (once, before the first fold)
        self._saved_after = 0  # the log position of the last snapshot saved or restored

    # -- keeping up with the log -------------------------------------------------------------

    def refresh(self, pause: float = 0.0) -> None:
        """Fold in what was committed since the last refresh; notice retention. ``pause``
        seconds between chunks of the log leave the GIL to ingest during a long first fold."""
        with self._lock:
            if not self._restored:
                self._restored = True
                self._restore()
            bounds = self.store.time_bounds(Selector())
            if bounds is None:
                self._forget_before(None)
                return
            if self._oldest is not None and bounds[0] > self._oldest:
                self._forget_before(bounds[0])
            self._oldest = bounds[0]
            while True:
                rows = self.store.facets_after(self._after, FETCH)
                self._fold(rows)
                if rows:
                    self._after = rows[-1][0]
                if len(rows) < FETCH:
                    return
                if pause:
                    time.sleep(pause)

    def run(self, stop: threading.Event, every: float = 10.0,
            save_every: float = SAVE_EVERY) -> None:
        """Keep it fresh in the background (``serve`` with the read API) once someone used it,
        so that later overviews only fold a few seconds of log, and snapshot it into the store.
        Until then it costs nothing: the first long-range overview folds the whole log (about
        3 s per million events). A snapshot left by an earlier run means the overview is used:
        it is kept fresh from the start."""
        try:
            if self.store.load_state(STATE_NAME) is not None:
                self._used.set()
        except Exception as exc:  # e.g. a PostgreSQL schema without the state table yet
            log.warning("reading the overview's rollup snapshot failed: %s", exc)
        while not self._used.wait(1.0):
            if stop.is_set():
                return
        saved = time.monotonic()
        while not stop.is_set():
            try:
                self.refresh(pause=0.05)
                if time.monotonic() - saved >= save_every:
                    self.save()
                    saved = time.monotonic()
            except Exception as exc:  # a store hiccup: the next overview or round tries again
                log.warning("refreshing the overview's rollup failed: %s", exc)
            stop.wait(every)
        try:
            self.save()  # what is folded so far: the next start folds only the rest
        except Exception as exc:
            log.warning("saving the overview's rollup failed: %s", exc)

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The counts and the log position they reach, compressed (20 KB for a day of 1M events)."""
        with self._lock:
            state = {
                "version": SNAPSHOT_VERSION, "after": self._after, "oldest": self._oldest,
                "chart": [[*key, n] for key, n in self.chart.items()],
                "users": [[*key, n] for key, n in self.users.items()],
                "resources": [[*key, n] for key, n in self.resources.items()],
                "failures": [[*key, n] for key, n in self.failures.items()],
            }
        return zstandard.ZstdCompressor(level=3).compress(msgspec.msgpack.encode(state))

    def save(self) -> None:
        """Snapshot into the store, unless nothing was folded since the last one."""
        if self._after and self._after != self._saved_after:
            after = self._after
            self.store.save_state(STATE_NAME, self.snapshot())
            self._saved_after = after

    def _restore(self) -> None:
        """Start from the store's snapshot, if it has a usable one (lock held, nothing folded)."""
        try:
            data = self.store.load_state(STATE_NAME)
            if data is None:
                return
            state = msgspec.msgpack.decode(zstandard.ZstdDecompressor().decompress(data))
        except Exception as exc:  # unreadable: fold the whole log, as without one
            log.warning("ignoring the overview's rollup snapshot: %s", exc)
            return
        if state.get("version") != SNAPSHOT_VERSION or state["after"] > self.store.last_id():
            return  # another format, or a log rewound below it (restored from a backup)
        for name in ("chart", "users", "resources", "failures"):
            counter = getattr(self, name)
            counter.clear()
            counter.update({tuple(row[:-1]): row[-1] for row in state[name]})
        self._after = self._saved_after = state["after"]
        self._oldest = state["oldest"]
        log.info("overview rollup restored at log position %d", self._after)

    def _fold(self, rows: Iterable[Sequence[int]]) -> None:
        chart, users, resources, failures = self.chart, self.users, self.resources, self.failures
        clusters = self._clusters
        for _, when, cluster_id, verb, user, resource, api_group, code in rows:
            cluster = clusters.get(cluster_id)
            if cluster is None:
                cluster = clusters[cluster_id] = self.store.names({cluster_id}).get(cluster_id, "")
            hour = when // HOUR_US
            chart[(when // SLOT_US, cluster, verb)] += 1
            users[(hour, cluster, user)] += 1
            resources[(hour, cluster, resource, api_group)] += 1
            if code >= 400:
                failures[(hour, cluster, code, verb, resource)] += 1

    def _forget_before(self, oldest: int | None) -> None:
        """Retention removed events: drop their hours and count the boundary hour again."""
        if oldest is None:  # nothing stored any more
            for counter in (self.chart, self.users, self.resources, self.failures):
                counter.clear()
            self._oldest = None
            return
        first = oldest // HOUR_US
        per_slot = HOUR_US // SLOT_US
        for slot_key in [k for k in self.chart if k[0] // per_slot <= first]:
            del self.chart[slot_key]
        hourly: tuple[Counter[Any], ...] = (self.users, self.resources, self.failures)
        for counter in hourly:
            for hour_key in [k for k in counter if k[0] <= first]:
                del counter[hour_key]
        self._fold(self.store.facets_between(first * HOUR_US, (first + 1) * HOUR_US, self._after))

    # -- answering -----------------------------------------------------------------------------

    def counts_by_time(self, selector: Selector, bucket_us: int,
                       column: str = "verb") -> list[tuple[int, str, int]]:
        """What ``store.counts_by_time`` answers, from memory for the whole hours inside the
        range. Only for :func:`usable` selectors, ``column="verb"`` and buckets of whole
        5-minute slots."""
        assert column == "verb" and bucket_us % SLOT_US == 0 and usable(selector)
        self._used.set()
        self.refresh()
        low, high, edges = _split(selector)
        wanted = set(selector.clusters)
        counts: Counter[tuple[int, int]] = Counter()
        with self._lock:
            for (slot, cluster, verb), n in self.chart.items():
                start = slot * SLOT_US
                if low <= start < high and (not wanted or cluster in wanted):
                    counts[(start // bucket_us * bucket_us, verb)] += n
        names = self.store.names({verb for _, verb in counts})
        merged: Counter[tuple[int, str]] = Counter()
        for (bucket, verb), n in counts.items():
            merged[(bucket, str(names.get(verb, verb)))] += n
        for edge in edges:
            for bucket, verb_name, n in self.store.counts_by_time(edge, bucket_us, column):
                merged[(bucket, verb_name)] += n
        return [(bucket, verb_name, n) for (bucket, verb_name), n in sorted(merged.items())]

    def answers(self, columns: Sequence[str], failures_only: bool) -> bool:
        """Whether ``group_counts`` with these arguments is one of the questions kept."""
        key = tuple(columns)
        return (key == _FAILURES and failures_only) or (key in (_USERS, _RESOURCES)
                                                       and not failures_only)

    def group_counts(self, selector: Selector, columns: Sequence[str], limit: int = 10,
                     failures_only: bool = False) -> list[dict[str, object]]:
        """What ``store.group_counts`` answers, from memory for the whole hours inside the
        range. Only for :func:`usable` selectors and the questions :meth:`answers` keeps."""
        assert usable(selector) and self.answers(columns, failures_only)
        self._used.set()
        self.refresh()
        low, high, edges = _split(selector)
        first, last = low // HOUR_US, high // HOUR_US
        wanted = set(selector.clusters)
        kept: dict[tuple[str, ...], Counter[Any]] = {
            _USERS: self.users, _RESOURCES: self.resources, _FAILURES: self.failures}
        counter = kept[tuple(columns)]
        ids: Counter[tuple[int, ...]] = Counter()
        with self._lock:
            for key, n in counter.items():
                if first <= key[0] < last and (not wanted or key[1] in wanted):
                    ids[key[2:]] += n
        interned = [column != "code" for column in columns]
        names = self.store.names({value for key in ids for value, named in zip(key, interned)
                                   if named})
        merged: Counter[tuple[object, ...]] = Counter()
        for key, n in ids.items():
            merged[tuple(names.get(value, "") if named else value
                         for value, named in zip(key, interned))] += n
        for edge in edges:
            for row in self.store.group_counts(edge, columns, 1 << 30, failures_only):
                merged[tuple(row[column] for column in columns)] += int(row["count"])
        top = sorted(merged.items(), key=lambda item: (-item[1], [str(v) for v in item[0]]))
        return [{**dict(zip(columns, key)), "count": n} for key, n in top[:limit]]


def _split(selector: Selector) -> tuple[int, int, list[Selector]]:
    """The whole hours inside the range, and selectors for the partial hours at its ends."""
    assert selector.since is not None and selector.until is not None
    low = -(-selector.since // HOUR_US) * HOUR_US
    high = selector.until // HOUR_US * HOUR_US
    edges = [Selector(clusters=list(selector.clusters), since=since, until=until)
             for since, until in ((selector.since, low), (high, selector.until)) if since < until]
    return low, high, edges
