"""The read side of the PostgreSQL store: selectors, stats, alerts and the web UI's counts.

Every WHERE clause comes from query/builder.py (``placeholder="%s"``), the same code SQLite uses.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import zstandard

from auditsink.model import LEVELS, STAGES
from auditsink.query.builder import build_where
from auditsink.store._shared import GROUPABLE, GROUPS_PREFIX, INTERNED, group_rows
from auditsink.store.base import Alert, AlertSelector, Selector, StoredEvent, StoreError

_FRAME_CACHE = 64
_ALERT_COLUMNS = "id, time, rule, priority, output, audit_id, event, cluster, tags, fields"


def _col(column: str) -> str:
    # USER unquoted is the current_user function in PostgreSQL.
    return '"user"' if column == "user" else column


def _alert(r: Sequence[Any]) -> Alert:
    return Alert(id=r[0], time=r[1], rule=r[2], priority=r[3], output=r[4], audit_id=r[5],
                 event=r[6], cluster=r[7], tags=json.loads(r[8]), fields=json.loads(r[9]))


class PostgresQueries:
    """Connections for readers (one per thread) and every read the Store protocol offers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._readers: list[Any] = []
        self._readers_lock = threading.Lock()
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self._frames_lock = threading.Lock()

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise StoreError("the PostgreSQL store needs psycopg: pip install 'auditsink[postgres]'"
                             ) from None
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"store {self.url!r}: cannot connect: {exc}".strip()) from None

    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _close_readers(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def _where(self, selector: Selector) -> tuple[str, list[object]]:
        return build_where(selector, self._resolve, self._resolve_groups, placeholder="%s")

    def _resolve(self, values: Sequence[str]) -> list[int]:
        rows = self._reader().execute("SELECT id FROM strings WHERE value = ANY(%s)", (list(values),))
        return [row[0] for row in rows]

    def _resolve_groups(self, groups: Sequence[str]) -> list[int]:
        wanted = set(groups)
        rows = self._reader().execute(
            "SELECT id, value FROM strings WHERE starts_with(value, %s)", (GROUPS_PREFIX,))
        return [ident for ident, value in rows
                if wanted.intersection(value[len(GROUPS_PREFIX):].split("\n"))]

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
            rows = self._reader().execute("SELECT id, data FROM blobs WHERE id = ANY(%s)", (missing,))
            for blob, data in rows:
                found[blob] = decompress(data)
            with self._frames_lock:
                for blob in missing:
                    self._frames[blob] = found.get(blob, b"")
                while len(self._frames) > _FRAME_CACHE:
                    self._frames.popitem(last=False)
        return found

    def query(self, selector: Selector, limit: int = 100, after_id: int = 0,
              newest_first: bool = True, before_id: int | None = None) -> list[StoredEvent]:
        """Matching events, newest first by default; page with ``before_id``/``after_id``.

        No time windows as in SQLite (store/windows.py): PostgreSQL walks the log-position
        index backwards and filters, 1.5-3 ms per page of a busy identity in 2 million events,
        where the windows took 4.5-10 ms (benchmarks/bench_pg_pages.py)."""
        where, params = self._where(selector)
        if after_id:
            where += " AND events.id > %s"
            params.append(after_id)
        if before_id is not None:
            where += " AND events.id < %s"
            params.append(before_id)
        order = "DESC" if newest_first else "ASC"
        rows = self._reader().execute(
            "SELECT events.id, strings.value, blob, start, length FROM events"
            f" JOIN strings ON strings.id = events.cluster WHERE {where}"
            f" ORDER BY events.id {order} LIMIT %s", [*params, limit]).fetchall()
        bodies = self._bodies({row[2] for row in rows})
        return [StoredEvent(id=ident, cluster=cluster, raw=bodies.get(blob, b"")[start:start + length])
                for ident, cluster, blob, start, length in rows]

    def facets_after(self, after_id: int, limit: int) -> list[tuple[int, ...]]:
        """(id, time, cluster, verb, user, resource, api_group, code) of the events after a
        log position, in log order, names as dictionary ids (query/rollup.py folds these)."""
        return self._reader().execute(
            'SELECT id, time, cluster, verb, "user", resource, api_group, code FROM events'
            " WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit)).fetchall()

    def facets_between(self, since: int, until: int, upto_id: int) -> list[tuple[int, ...]]:
        """The same for the events of a time range up to a log position, in any order."""
        return self._reader().execute(
            'SELECT id, time, cluster, verb, "user", resource, api_group, code FROM events'
            " WHERE time >= %s AND time < %s AND id <= %s", (since, until, upto_id)).fetchall()

    def last_id(self) -> int:
        """The newest log position (0 for an empty store)."""
        row = self._reader().execute("SELECT max(id) FROM events").fetchone()
        return int(row[0] or 0)

    def stats(self, selector: Selector, top: int = 10) -> dict[str, object]:
        """Counts for the overview: totals, top values, failures and events per hour."""
        where, params = self._where(selector)
        conn = self._reader()

        def top_of(column: str) -> list[dict[str, object]]:
            sql = (f"SELECT s.value, count(*) AS n FROM events JOIN strings s ON s.id = events.{column}"
                   f" WHERE {where} GROUP BY s.value ORDER BY n DESC LIMIT %s")
            return [{"value": v, "count": n} for v, n in conn.execute(sql, [*params, top])]

        def pairs(sql: str) -> list[tuple[Any, Any]]:
            rows: list[tuple[Any, Any]] = conn.execute(sql, params).fetchall()
            return rows

        return {
            "events": conn.execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0],
            "users": top_of('"user"'),
            "verbs": top_of("verb"),
            "resources": top_of("resource"),
            "namespaces": top_of("namespace"),
            "failures": [{"code": c, "count": n} for c, n in pairs(
                f"SELECT code, count(*) AS n FROM events WHERE {where} AND code >= 400"
                " GROUP BY code ORDER BY n DESC")],
            "levels": {LEVELS[lv]: n for lv, n in pairs(
                f"SELECT level, count(*) FROM events WHERE {where} GROUP BY level")},
            "stages": {STAGES[st]: n for st, n in pairs(
                f"SELECT stage, count(*) FROM events WHERE {where} GROUP BY stage")},
            "per_hour": [{"hour": h * 3600, "count": n} for h, n in pairs(
                f"SELECT time / 3600000000 AS hour, count(*) FROM events WHERE {where}"
                " GROUP BY hour ORDER BY hour")],
            "rejected": conn.execute("SELECT count(*) FROM rejected").fetchone()[0],
        }

    # -- alerts ----------------------------------------------------------------------------

    def _alert_where(self, selector: AlertSelector) -> tuple[str, list[object]]:
        clauses: list[str] = ["TRUE"]
        params: list[object] = []
        for column, values in (("rule", selector.rules), ("cluster", selector.clusters),
                               ("audit_id", selector.audit_ids)):
            if values:
                clauses.append(f"alerts.{column} = ANY(%s)")
                params.append(list(values))
        for clause, value in (("alerts.priority <= %s", selector.min_priority),
                              ("alerts.time >= %s", selector.since),
                              ("alerts.time < %s", selector.until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return " AND ".join(clauses), params

    def alerts(self, selector: AlertSelector, limit: int = 100, after_id: int = 0,
               newest_first: bool = True, before_id: int | None = None) -> list[Alert]:
        """Alerts matching ``selector``, newest first by default."""
        where, params = self._alert_where(selector)
        if after_id:
            where += " AND id > %s"
            params.append(after_id)
        if before_id is not None:
            where += " AND id < %s"
            params.append(before_id)
        order = "DESC" if newest_first else "ASC"
        rows = self._reader().execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {where} ORDER BY id {order} LIMIT %s",
            [*params, limit])
        return [_alert(r) for r in rows]

    def alert_counts(self, selector: AlertSelector) -> dict[int, int]:
        """Number of matching alerts per priority rank."""
        where, params = self._alert_where(selector)
        rows = self._reader().execute(
            f"SELECT priority, count(*) FROM alerts WHERE {where} GROUP BY priority", params)
        return {priority: n for priority, n in rows}

    def alerts_for_events(self, selector: AlertSelector, events: Selector,
                          limit: int = 100) -> list[Alert]:
        """Alerts matching ``selector`` whose event also matches ``events``."""
        clauses, params = self._alert_where(selector)
        where, event_params = self._where(events)
        rows = self._reader().execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {clauses} AND EXISTS (SELECT 1 FROM events"
            f" WHERE events.id = alerts.event AND {where}) ORDER BY id DESC LIMIT %s",
            [*params, *event_params, limit])
        return [_alert(r) for r in rows]

    # -- web UI questions (issue 7) ----------------------------------------------------------

    def time_bounds(self, selector: Selector) -> tuple[int, int] | None:
        """The oldest and newest stageTimestamp (µs) of matching events; None when none match."""
        where, params = self._where(selector)
        row = self._reader().execute(
            f"SELECT min(time), max(time) FROM events WHERE {where}", params).fetchone()
        return None if row[0] is None else (row[0], row[1])

    def counts_by_time(self, selector: Selector, bucket_us: int,
                       column: str = "verb") -> list[tuple[int, str, int]]:
        """(bucket start µs, value of ``column``, count) for matching events, oldest first."""
        if column not in GROUPABLE:
            raise ValueError(f"cannot group by {column!r}")
        where, params = self._where(selector)
        col = _col(column)
        rows = self._reader().execute(
            f"SELECT time / %s AS bucket, {col}, count(*) FROM events WHERE {where}"
            f" GROUP BY bucket, {col} ORDER BY bucket", [bucket_us, *params]).fetchall()
        names = self._names({r[1] for r in rows}) if column in INTERNED else {}
        return [(b * bucket_us, str(names.get(v, v)), n) for b, v, n in rows]

    def group_counts(self, selector: Selector, columns: Sequence[str], limit: int = 10,
                     failures_only: bool = False) -> list[dict[str, object]]:
        """Counts of matching events grouped by ``columns``, largest first."""
        unknown = [c for c in columns if c not in GROUPABLE]
        if unknown or not columns:
            raise ValueError(f"cannot group by {unknown or columns!r}")
        where, params = self._where(selector)
        if failures_only:
            where += " AND code >= 400"
        cols = ", ".join(_col(c) for c in columns)
        rows = self._reader().execute(
            f"SELECT {cols}, count(*) AS n FROM events WHERE {where} GROUP BY {cols}"
            " ORDER BY n DESC LIMIT %s", [*params, limit]).fetchall()
        names = self._names({r[i] for r in rows for i, c in enumerate(columns) if c in INTERNED})
        return group_rows(rows, columns, names)

    def clusters_seen(self, selector: Selector, sample: int = 50_000) -> list[str]:
        """Cluster names among the newest ``sample`` matching events (bounded work)."""
        where, params = self._where(selector)
        rows = self._reader().execute(
            f"SELECT DISTINCT cluster FROM (SELECT cluster FROM events WHERE {where}"
            " ORDER BY id DESC LIMIT %s) AS newest", [*params, sample]).fetchall()
        names = self._names({r[0] for r in rows})
        return sorted(names.get(r[0], "") for r in rows)

    def _names(self, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        return dict(self._reader().execute(
            "SELECT id, value FROM strings WHERE id = ANY(%s)", (list(ids),)).fetchall())
