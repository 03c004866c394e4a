"""Newest pages of busy users on PostgreSQL, plain query vs SQLite's time windows: ``python -m benchmarks.bench_pg_pages``

SQLite answers a busy user's newest page without a time range through time windows
(``src/auditsink/store/windows.py``), since its plain query sorted every match. This checks
whether PostgreSQL needs them: it builds (once; ``--rebuild`` to redo it) a PostgreSQL store of
generated events over 7 days with bench_query's generator, then times, for the busiest
identities, the newest page and the page halfway back, through the store's plain query and
through the windows, checks that both give the same events, and prints the medians of 3.

    eval "$(scripts/start-postgres.sh)"
    python -m benchmarks.bench_pg_pages --events 2000000      # about 3 minutes to build
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from auditsink.model import decode_body
from auditsink.store.base import Selector, StoredEvent, open_store
from auditsink.store.windows import newest_page_in_windows
from benchmarks.bench_query import _bodies

DATABASE = "auditsink_bench_pages"


def _median_ms(fn: Callable[[], object]) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(3):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def _windowed(store: Any, selector: Selector, before: int | None) -> list[StoredEvent] | None:
    """SQLite's windows, fed by PostgreSQL queries."""
    reader = store._reader()

    def time_before(position: int) -> int | None:
        row = reader.execute("SELECT time FROM events WHERE id < %s ORDER BY id DESC LIMIT 1",
                             (position,)).fetchone()
        return int(row[0]) if row else None

    def times_between(low: int, high: int) -> tuple[int, int] | None:
        row = reader.execute("SELECT min(time + 0), max(time + 0) FROM events"
                             " WHERE id > %s AND id < %s", (low, high)).fetchone()
        return None if row[0] is None else (int(row[0]), int(row[1]))

    return newest_page_in_windows(
        selector, 100, before,
        page=lambda sel, limit, cursor: store.query(sel, limit=limit, before_id=cursor),
        time_bounds=lambda: store.time_bounds(Selector()), time_before=time_before,
        times_between=times_between, last_id=store.last_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--postgres", default=os.environ.get("AUDITSINK_TEST_POSTGRES"),
                        help="server URL to create the benchmark database on")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("pass --postgres URL or set AUDITSINK_TEST_POSTGRES "
                         "(eval \"$(scripts/start-postgres.sh)\")")
    import psycopg

    parts = urlsplit(args.postgres)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + DATABASE, parts.query, parts.fragment))
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                               (DATABASE,)).fetchone()
        if args.rebuild or not exists:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {DATABASE}")
            store = open_store(url)
            store.open()
            started = time.perf_counter()
            for body in _bodies(args.events, 7.0):
                store.write(decode_body(body)[0])
            store.close()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
            print(f"built {args.events:,} events in {time.perf_counter() - started:.0f} s")
    store = open_store(url)
    store.open(start_writer=False)  # type: ignore[call-arg]
    last = store.last_id()
    print(f"{last:,} events in {DATABASE}; ms, median of 3")
    print(f"{'selector':<44} {'page':<10} {'plain':>8} {'windows':>8}")
    for selector in (Selector(users=["system:apiserver"]), Selector(users=["admin"]),
                     Selector(users=["alice"]), Selector(namespaces=[""]),
                     Selector(namespaces=["kube-system"]),
                     Selector(namespaces=["kube-system"], verbs=["delete"])):
        for before in (None, last // 2):
            plain_ms, plain = _median_ms(lambda s=selector, b=before: store.query(s, limit=100, before_id=b))
            windows_ms, windowed = _median_ms(lambda s=selector, b=before: _windowed(store, s, b))
            if windowed is not None:
                assert [e.id for e in windowed] == [e.id for e in plain], (selector, before)
            label = ",".join(selector.users or selector.namespaces or []) or '""'
            if selector.verbs:
                label += f" +{','.join(selector.verbs)}"
            print(f"{label:<44} {'newest' if before is None else 'halfway':<10} "
                  f"{plain_ms:8.1f} {windows_ms:8.1f}")
    store.close()


if __name__ == "__main__":
    main()
