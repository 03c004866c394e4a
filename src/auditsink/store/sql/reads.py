"""Every read both SQL stores answer, written once over a :class:`~.dialect.Dialect`.

Two orders (design.md, "Two orders, one identity"):
- **log order** (``id``, commit order) for consumers: :meth:`SQLReads.query` with ``after_id``,
  :meth:`SQLReads.iter_all`, ``facets_after``. It never skips and never repeats.
- **time order** (``stageTimestamp``, then ``id``) for people: :meth:`SQLReads.page`, with a
  keyset cursor on (time, id) that pages without gaps or repeats however batches arrived.
  Every (column, time) index holds the rowid as its last column, so a page of one user or
  namespace walks its index backwards and stops at the page size, with no sort.

A store mixes this in and provides ``dialect``, ``_reader()`` (a connection for this thread)
and ``_audit_id`` (an auditID in its stored form).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import zstandard

from auditsink.model import LEVELS, STAGES
from auditsink.selector import Selector
from auditsink.store._rows import GROUPABLE, GROUPS_PREFIX, INTERNED, group_rows
from auditsink.store.base import (
    Alert,
    AlertSelector,
    DeadLetter,
    Page,
    Rejected,
    RowFilter,
    StoredEvent,
    TimeKey,
)
from auditsink.store.sql.dialect import Dialect, prefix_params
from auditsink.store.sql.prefilter import prefilter_sql, wanted
from auditsink.store.sql.where import REQUESTS_ONLY, Where, build_where

# One part of a page: a SELECT of events rows (id, time, ...) in time order cut at the page
# size, as (sql, params), or a function of a connection that returns such rows (a store that
# reads some part in several statements: SQLite's object histories, store/sqlite/objects.py).
PagePart = tuple[str, list[object]] | Callable[[Any], list[Sequence[Any]]]


def merge_rows(parts: Sequence[Sequence[Sequence[Any]]], newest_first: bool,
               limit: int) -> list[Sequence[Any]]:
    """The first ``limit`` rows of the union of ``parts`` in time order (what a UNION of
    their SELECTs ordered by time and id returns)."""
    unique = {row[0]: row for rows in parts for row in rows}
    return sorted(unique.values(), key=lambda row: (row[1], row[0]),
                  reverse=newest_first)[:limit]

_FRAME_CACHE = 64
_ALERT_COLUMNS = "id, time, rule, priority, output, audit_id, event, cluster, tags, fields"


def _alert(r: Sequence[Any]) -> Alert:
    return Alert(id=r[0], time=r[1], rule=r[2], priority=r[3], output=r[4], audit_id=r[5],
                 event=r[6], cluster=r[7], tags=json.loads(r[8]), fields=json.loads(r[9]))


def _col(column: str) -> str:
    return '"user"' if column == "user" else column


class SQLReads:
    """The read side of a SQL store (see the module docstring)."""

    dialect: Dialect

    def _init_reads(self) -> None:
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self._frames_lock = threading.Lock()

    def _reader(self) -> Any:
        raise NotImplementedError

    def _audit_id(self, value: str) -> object:
        return value

    # -- names --------------------------------------------------------------------------------

    def _resolve(self, values: Sequence[str]) -> list[int]:
        if not values:
            return []
        rows = self._reader().execute(
            f"SELECT id FROM strings WHERE value IN ({self.dialect.marks(len(values))})",
            list(values))
        return [row[0] for row in rows]

    def _resolve_groups(self, groups: Sequence[str]) -> list[int]:
        wanted = set(groups)
        rows = self._reader().execute(
            f"SELECT id, value FROM strings WHERE {self.dialect.starts_with}",
            prefix_params(self.dialect, GROUPS_PREFIX))
        return [ident for ident, value in rows
                if wanted.intersection(value[len(GROUPS_PREFIX):].split("\n"))]

    def _resolve_ips(self) -> list[tuple[int, str]]:
        rows = self._reader().execute(
            f"SELECT id, value FROM strings WHERE {self.dialect.looks_like_ip}")
        return [(ident, value) for ident, value in rows]

    def names(self, ids: set[int]) -> dict[int, str]:
        """Dictionary ids back to the strings they stand for."""
        if not ids:
            return {}
        return dict(self._reader().execute(
            f"SELECT id, value FROM strings WHERE id IN ({self.dialect.marks(len(ids))})",
            list(ids)).fetchall())

    def _where(self, selector: Selector, object_lookup: bool = True) -> Where:
        return build_where(selector, self.dialect, self, self._audit_id, object_lookup)

    def _page_selects(self, selector: Selector, where: str, params: list[object], order: str,
                      limit: int, key: tuple[str, TimeKey] | None) -> list[PagePart]:
        """The SELECTs of one branch of a page (each in time order, cut at ``limit``) whose
        union holds it; a store may read an object's history its own way (SQLite:
        store/sqlite/objects.py). ``key``: the page cursor, ("<" or ">", (time, id))."""
        mark = self.dialect.mark
        return [(self._select(where) + f" ORDER BY events.time {order}, events.id {order}"
                 f" LIMIT {mark}", [*params, limit])]

    def _own_object_pages(self, selector: Selector) -> bool:
        """Whether :meth:`_page_selects` finds the events of ``selector`` itself."""
        return False

    # -- bodies -------------------------------------------------------------------------------

    def _bodies(self, blobs: set[int]) -> dict[int, bytes]:
        """Decompressed frames by id, from the cache or in one round trip."""
        found: dict[int, bytes] = {}
        with self._frames_lock:
            for blob in blobs:
                data = self._frames.get(blob)
                if data is not None:
                    self._frames.move_to_end(blob)
                    found[blob] = data
        missing = [b for b in blobs if b not in found]
        if missing:
            decompress = zstandard.ZstdDecompressor().decompress
            rows = self._reader().execute(
                f"SELECT id, data FROM blobs WHERE id IN ({self.dialect.marks(len(missing))})",
                missing)
            for blob, data in rows:
                found[blob] = decompress(bytes(data))
            with self._frames_lock:
                for blob in missing:
                    self._frames[blob] = found.get(blob, b"")
                while len(self._frames) > _FRAME_CACHE:
                    self._frames.popitem(last=False)
        return found

    def _events(self, rows: Sequence[Sequence[Any]]) -> list[StoredEvent]:
        """Rows of (id, time, cluster name, blob, start, length) as stored events."""
        bodies = self._bodies({row[3] for row in rows})
        return [StoredEvent(id=ident, cluster=cluster,
                            raw=bodies.get(blob, b"")[start:start + length], time=when)
                for ident, when, cluster, blob, start, length in rows]

    def _select(self, where: str, sources: str = "events") -> str:
        return ("SELECT events.id, events.time, strings.value, blob,"
                f" {self.dialect.start_column}, length FROM {sources}"
                f" JOIN strings ON strings.id = events.cluster WHERE {where}")

    # -- log order: consumers -----------------------------------------------------------------

    def query(self, selector: Selector, limit: int = 100, after_id: int = 0,
              newest_first: bool = True, before_id: int | None = None) -> list[StoredEvent]:
        """Matching events in **log order** (consumers, follow); page with ``after_id`` /
        ``before_id``. People want :meth:`page` (time order)."""
        where = self._where(selector)
        mark = self.dialect.mark
        if after_id:
            where = where.and_(f"events.id > {mark}", after_id)
        if before_id is not None:
            where = where.and_(f"events.id < {mark}", before_id)
        order = "DESC" if newest_first else "ASC"
        rows = self._reader().execute(
            self._select(where.sql) + f" ORDER BY events.id {order} LIMIT {mark}",
            [*where.params, limit]).fetchall()
        return self._events(rows)

    def follow(self, after_id: int, limit: int, filters: Sequence[RowFilter]) -> Page:
        """The next ``limit`` events after ``after_id`` in log order; only those whose row
        passes one of ``filters`` are read, in SQL, so the rest cost no Python at all."""
        mark = self.dialect.mark
        reader = self._reader()
        examined, last = reader.execute(
            f"SELECT count(*), max(id) FROM (SELECT id FROM events WHERE id > {mark}"
            f" ORDER BY id LIMIT {mark}) AS page", (after_id, limit)).fetchone()
        if not examined:
            return Page([], after_id, 0)
        # The ids now, after ``last``: every row up to it was stored with its strings.
        filters = tuple(filters)
        values = wanted(filters)
        ids = dict(reader.execute(
            f"SELECT value, id FROM strings WHERE value IN ({self.dialect.marks(len(values))})",
            values).fetchall()) if values else {}
        rows = reader.execute(
            self._select(f"events.id > {mark} AND events.id <= {mark}"
                         f" AND {prefilter_sql(filters, ids)}")
            + " ORDER BY events.id", (after_id, last)).fetchall()
        return Page(self._events(rows), last, examined)

    def iter_all(self, selector: Selector, batch: int = 5000) -> Iterator[StoredEvent]:
        """Every matching event in log order (replays, exports by position)."""
        after = 0
        while True:
            found = self.query(selector, limit=batch, after_id=after, newest_first=False)
            yield from found
            if len(found) < batch:
                return
            after = found[-1].id

    def last_id(self) -> int:
        """The newest log position (0 for an empty store)."""
        row = self._reader().execute("SELECT max(id) FROM events").fetchone()
        return int(row[0] or 0)

    def facets_after(self, after_id: int, limit: int) -> list[tuple[int, ...]]:
        """(id, time, cluster, verb, user, resource, api_group, code) of the events after a
        log position, in log order, names as dictionary ids (query/rollup.py folds these)."""
        mark = self.dialect.mark
        rows: list[tuple[int, ...]] = self._reader().execute(
            'SELECT id, time, cluster, verb, "user", resource, api_group, code FROM events'
            f" WHERE id > {mark} ORDER BY id LIMIT {mark}", (after_id, limit)).fetchall()
        return rows

    def facets_between(self, since: int, until: int, upto_id: int) -> list[tuple[int, ...]]:
        """The same for the events of a time range up to a log position, in any order."""
        mark = self.dialect.mark
        rows: list[tuple[int, ...]] = self._reader().execute(
            'SELECT id, time, cluster, verb, "user", resource, api_group, code FROM events'
            # +id: through the time index; a rowid range would scan the whole log.
            f" WHERE time >= {mark} AND time < {mark} AND +id <= {mark}",
            (since, until, upto_id)).fetchall()
        return rows

    # -- time order: people -------------------------------------------------------------------

    def page(self, selector: Selector, limit: int = 100, *, before: TimeKey | None = None,
             after: TimeKey | None = None, oldest_first: bool = False,
             requests_only: bool = False) -> list[StoredEvent]:
        """Matching events in **time order**, newest first unless ``oldest_first``.

        ``before``/``after`` are the (time, id) keys of the last event of the previous page
        (``StoredEvent.key``): the next page holds what sorts strictly after it, so paging
        neither skips nor repeats. ``requests_only`` keeps one event per request: its
        completion (or panic), or a failed ResponseStarted.
        """
        where = self._where(selector, object_lookup=not self._own_object_pages(selector))
        mark = self.dialect.mark
        if requests_only:
            where = where.and_(REQUESTS_ONLY)
        # time <= T first: a range the (column, time) indexes answer; the OR only trims the
        # events at exactly time T.
        key: tuple[str, TimeKey] | None = None
        if before is not None:
            where = where.and_(f"time <= {mark} AND (time < {mark} OR events.id < {mark})",
                               before[0], before[0], before[1])
            key = ("<", before)
        if after is not None:
            where = where.and_(f"time >= {mark} AND (time > {mark} OR events.id > {mark})",
                               after[0], after[0], after[1])
            key = (">", after)
        order = "ASC" if oldest_first else "DESC"
        selects = [part for sql, own in where.branches
                   for part in self._page_selects(selector, sql, own, order, limit, key)]
        return self._events(self._page_rows(selects, not oldest_first, limit))

    def _page_rows(self, parts: Sequence[PagePart], newest_first: bool,
                   limit: int) -> list[Sequence[Any]]:
        """The first ``limit`` rows of the union of ``parts`` in time order."""
        order, mark = ("DESC" if newest_first else "ASC"), self.dialect.mark
        selects = [part for part in parts if isinstance(part, tuple)]
        assert len(selects) == len(parts), "a function part needs the store's own _page_rows"
        if len(selects) == 1:
            sql, params = selects[0]
            found: list[Sequence[Any]] = self._reader().execute(sql, params).fetchall()
            return found
        # user: by OR as (and an object's runs and tail, objects.py). Each part reads its own
        # index in time order and keeps its first ``limit``; the page is the first ``limit``
        # of their union.
        sql_parts, params = [], []
        for number, (sql, own) in enumerate(selects):
            sql_parts.append(f"SELECT * FROM ({sql}) AS branch{number}")
            params.extend(own)
        found = self._reader().execute(
            f"SELECT * FROM ({' UNION '.join(sql_parts)}) AS page"
            f" ORDER BY time {order}, id {order} LIMIT {mark}", [*params, limit]).fetchall()
        return found

    def iter_page(self, selector: Selector, *, oldest_first: bool = True,
                  requests_only: bool = False, batch: int = 2000) -> Iterator[StoredEvent]:
        """Every matching event in time order, a page at a time (exports)."""
        key: TimeKey | None = None
        while True:
            if oldest_first:
                found = self.page(selector, batch, after=key, oldest_first=True,
                                  requests_only=requests_only)
            else:
                found = self.page(selector, batch, before=key, requests_only=requests_only)
            yield from found
            if len(found) < batch:
                return
            key = found[-1].key

    def count(self, selector: Selector, requests_only: bool = False) -> int:
        """How many events match."""
        where = self._where(selector)
        if requests_only:
            where = where.and_(REQUESTS_ONLY)
        row = self._reader().execute(f"SELECT count(*) FROM events WHERE {where.sql}",
                                     where.params).fetchone()
        return int(row[0])

    # -- counts ---------------------------------------------------------------------------------

    def stats(self, selector: Selector, top: int = 10) -> dict[str, object]:
        """Counts for ``auditsink stats``: totals, top values, failures and events per hour."""
        where = self._where(selector)
        sql, params, mark = where.sql, where.params, self.dialect.mark
        conn = self._reader()

        def top_of(column: str) -> list[dict[str, object]]:
            found = conn.execute(
                f"SELECT s.value, count(*) AS n FROM events JOIN strings s"
                f" ON s.id = events.{_col(column)} WHERE {sql} GROUP BY s.value"
                f" ORDER BY n DESC, s.value LIMIT {mark}", [*params, top]).fetchall()
            return [{"value": v, "count": n} for v, n in found]

        def pairs(query: str) -> list[tuple[Any, Any]]:
            found: list[tuple[Any, Any]] = conn.execute(query, params).fetchall()
            return found

        return {
            "events": conn.execute(f"SELECT count(*) FROM events WHERE {sql}",
                                   params).fetchone()[0],
            "users": top_of("user"),
            "verbs": top_of("verb"),
            "resources": top_of("resource"),
            "namespaces": top_of("namespace"),
            "failures": [{"code": c, "count": n} for c, n in pairs(
                f"SELECT code, count(*) AS n FROM events WHERE {sql} AND code >= 400"
                " GROUP BY code ORDER BY n DESC, code")],
            "levels": {LEVELS[lv]: n for lv, n in pairs(
                f"SELECT level, count(*) FROM events WHERE {sql} GROUP BY level")},
            "stages": {STAGES[st]: n for st, n in pairs(
                f"SELECT stage, count(*) FROM events WHERE {sql} GROUP BY stage")},
            "per_hour": [{"hour": h * 3600, "count": n} for h, n in pairs(
                f"SELECT time / 3600000000 AS hour, count(*) FROM events WHERE {sql}"
                " GROUP BY hour ORDER BY hour")],
            "rejected": conn.execute("SELECT count(*) FROM rejected").fetchone()[0],
        }

    def time_bounds(self, selector: Selector) -> tuple[int, int] | None:
        """The oldest and newest stageTimestamp (µs) of matching events; None when none match."""
        where = self._where(selector)
        conn = self._reader()
        # Two queries: a lone min() or max() is answered from one end of an index, where both
        # in one SELECT make SQLite scan every match.
        low = conn.execute(f"SELECT min(time) FROM events WHERE {where.sql}",
                           where.params).fetchone()[0]
        if low is None:
            return None
        high = conn.execute(f"SELECT max(time) FROM events WHERE {where.sql}",
                            where.params).fetchone()[0]
        return int(low), int(high)

    def counts_by_time(self, selector: Selector, bucket_us: int, column: str = "verb",
                       requests_only: bool = False) -> list[tuple[int, str, int]]:
        """(bucket start µs, value of ``column``, count) for matching events, oldest first.

        ``bucket_us`` 60_000_000 gives events per minute.
        """
        if column not in GROUPABLE:
            raise ValueError(f"cannot group by {column!r}")
        where = self._where(selector)
        if requests_only:
            where = where.and_(REQUESTS_ONLY)
        col, mark = _col(column), self.dialect.mark
        rows = self._reader().execute(
            f"SELECT time / {mark} AS bucket, {col}, count(*) FROM events WHERE {where.sql}"
            f" GROUP BY bucket, {col} ORDER BY bucket", [bucket_us, *where.params]).fetchall()
        names = self.names({r[1] for r in rows}) if column in INTERNED else {}
        if column in ("stage", "level"):
            labels = STAGES if column == "stage" else LEVELS
            return [(b * bucket_us, labels[v], n) for b, v, n in rows]
        return [(b * bucket_us, str(names.get(v, v)), n) for b, v, n in rows]

    def group_counts(self, selector: Selector, columns: Sequence[str], limit: int = 10,
                     failures_only: bool = False) -> list[dict[str, object]]:
        """Counts of matching events grouped by ``columns``, largest first.

        ``group_counts(Selector(users=["alice"]), ["resource", "verb"])`` ->
        ``[{"resource": "pods", "verb": "list", "count": 2}, ...]``
        """
        unknown = [c for c in columns if c not in GROUPABLE]
        if unknown or not columns:
            raise ValueError(f"cannot group by {unknown or columns!r}")
        where = self._where(selector)
        sql = where.sql
        if failures_only:
            sql += " AND code >= 400"  # lets SQLite use the partial index events_code
        cols = ", ".join(_col(c) for c in columns)
        rows = self._reader().execute(
            f"SELECT {cols}, count(*) AS n FROM events WHERE {sql} GROUP BY {cols}"
            f" ORDER BY n DESC LIMIT {self.dialect.mark}", [*where.params, limit]).fetchall()
        ids = {r[i] for r in rows for i, c in enumerate(columns) if c in INTERNED}
        return group_rows(rows, columns, self.names(ids))

    def clusters_seen(self, selector: Selector | None = None) -> list[str]:
        """Every cluster the store has ever stored an event of, sorted (the default "" too)."""
        rows = self._reader().execute("SELECT name FROM clusters ORDER BY name").fetchall()
        return [row[0] for row in rows]

    def rejected(self, limit: int = 100) -> list[Rejected]:
        """The most recent undecodable items."""
        rows = self._reader().execute(
            "SELECT id, time, cluster, error, body FROM rejected ORDER BY id DESC"
            f" LIMIT {self.dialect.mark}", (limit,)).fetchall()
        return [Rejected(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    # -- consumer state -------------------------------------------------------------------------

    def get_cursor(self, name: str) -> int:
        """A consumer's durable position in the log (0 before its first event)."""
        row = self._reader().execute(
            f"SELECT position FROM cursors WHERE name = {self.dialect.mark}", (name,)).fetchone()
        return int(row[0]) if row else 0

    def cursors(self) -> dict[str, int]:
        """Every consumer's durable position, by name."""
        rows = self._reader().execute("SELECT name, position FROM cursors ORDER BY name")
        return {name: int(position) for name, position in rows}

    def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters of one consumer (or all), oldest first."""
        mark = self.dialect.mark
        where, params = (f"WHERE consumer = {mark}", [consumer]) if consumer else ("", [])
        rows = self._reader().execute(
            "SELECT consumer, first, last, events, attempts, error, time, id FROM dead_letters"
            f" {where} ORDER BY id LIMIT {mark}", [*params, limit]).fetchall()
        return [DeadLetter(*row) for row in rows]

    def load_state(self, name: str) -> bytes | None:
        """What ``save_state`` kept under ``name``, or None."""
        row = self._reader().execute(
            f"SELECT data FROM state WHERE name = {self.dialect.mark}", (name,)).fetchone()
        return bytes(row[0]) if row else None

    # -- alerts -----------------------------------------------------------------------------

    def _alert_where(self, selector: AlertSelector) -> tuple[str, list[object]]:
        mark = self.dialect.mark
        clauses: list[str] = ["TRUE"]
        params: list[object] = []
        for column, values in (("rule", selector.rules), ("cluster", selector.clusters),
                               ("audit_id", selector.audit_ids)):
            if values:
                clauses.append(f"alerts.{column} IN ({self.dialect.marks(len(values))})")
                params.extend(values)
        for clause, value in ((f"alerts.priority <= {mark}", selector.min_priority),
                              (f"alerts.time >= {mark}", selector.since),
                              (f"alerts.time < {mark}", selector.until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return " AND ".join(clauses), params

    def alerts(self, selector: AlertSelector, limit: int = 100, after_id: int = 0,
               newest_first: bool = True, before_id: int | None = None) -> list[Alert]:
        """Alerts matching ``selector`` in the order they were raised (notifiers page by id)."""
        where, params = self._alert_where(selector)
        mark = self.dialect.mark
        if after_id:
            where += f" AND id > {mark}"
            params.append(after_id)
        if before_id is not None:
            where += f" AND id < {mark}"
            params.append(before_id)
        order = "DESC" if newest_first else "ASC"
        rows = self._reader().execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {where} ORDER BY id {order}"
            f" LIMIT {mark}", [*params, limit]).fetchall()
        return [_alert(r) for r in rows]

    def alert_page(self, selector: AlertSelector, limit: int = 100,
                   before: TimeKey | None = None) -> list[Alert]:
        """Alerts in **time order** (their event's stageTimestamp), newest first, for people;
        ``before`` is the (time, id) of the last alert of the previous page."""
        where, params = self._alert_where(selector)
        mark = self.dialect.mark
        if before is not None:
            where += f" AND time <= {mark} AND (time < {mark} OR id < {mark})"
            params.extend((before[0], before[0], before[1]))
        rows = self._reader().execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {where} ORDER BY time DESC, id DESC"
            f" LIMIT {mark}", [*params, limit]).fetchall()
        return [_alert(r) for r in rows]

    def alert_counts(self, selector: AlertSelector) -> dict[int, int]:
        """Number of matching alerts per priority rank."""
        where, params = self._alert_where(selector)
        rows = self._reader().execute(
            f"SELECT priority, count(*) FROM alerts WHERE {where} GROUP BY priority", params)
        return {priority: n for priority, n in rows}

    def alert_groups(self, selector: AlertSelector, limit: int = 100) -> list[dict[str, object]]:
        """Matching alerts grouped by rule and cluster: the most severe first, then the most
        frequent; each with its count and first and last time."""
        where, params = self._alert_where(selector)
        rows = self._reader().execute(
            "SELECT rule, cluster, min(priority) AS p, count(*) AS n, min(time), max(time)"
            f" FROM alerts WHERE {where} GROUP BY rule, cluster ORDER BY p, n DESC, rule"
            f" LIMIT {self.dialect.mark}", [*params, limit]).fetchall()
        return [{"rule": r[0], "cluster": r[1], "priority": r[2], "count": r[3],
                 "first": r[4], "last": r[5]} for r in rows]

    def alerts_for_events(self, selector: AlertSelector, events: Selector,
                          limit: int = 100) -> list[Alert]:
        """Alerts matching ``selector`` whose event also matches ``events`` (one user's),
        newest first by time."""
        clauses, params = self._alert_where(selector)
        where = self._where(events)
        # The alert's own time range narrows first (alerts_time); each candidate then costs
        # one primary-key lookup. Inside EXISTS, bare column names resolve to events.
        rows = self._reader().execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {clauses} AND EXISTS (SELECT 1 FROM"
            f" events WHERE events.id = alerts.event AND {where.sql})"
            f" ORDER BY alerts.time DESC, alerts.id DESC LIMIT {self.dialect.mark}",
            [*params, *where.params, limit]).fetchall()
        return [_alert(r) for r in rows]
