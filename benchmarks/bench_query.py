"""Query latency over a large store, and on-disk bytes per event.

Builds (once, cached) a SQLite store of generated events (benchmarks.generate_data: fixture-like
mix, every auditID new, spread evenly over --days up to now), then times the questions people
ask most:

- history of one object: the newest 1000 events of the object with the most events, by
  resource + namespace + name;
- one user's last hour: the newest page (100) of one busy identity's events in the last hour;
- one request by auditID;
- the newest page (100) of the busiest user and of the busiest namespace, with no time range,
  and the busiest user's page halfway back through the log (``before=`` a time-order key);
- the explorer's default: the newest page of requests (one row each) in the last hour.

Every page is in time order (``Store.page``: stageTimestamp, then log position), as people see
them; ``user`` means "by or as" the user, two index reads merged.

    python -m benchmarks.bench_query --events 10000000      # ~15 min to build on 2 cores
    python -m benchmarks.bench_query --events 1000000 --db /tmp/q1m.db
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from auditsink.model import decode_body
from auditsink.store.base import Selector
from auditsink.store.sqlite import SQLiteStore
from auditsink.timeutil import format_micros
from benchmarks.generate_data import encode_eventlist, iter_events


def _bodies(events: int, days: float) -> Iterator[bytes]:
    """EventLists of 4000 generated events spread evenly over ``days`` up to now."""
    step = days * 86_400_000_000 / events
    start = int(time.time() * 1_000_000 - days * 86_400_000_000)
    batch: list[dict[str, object]] = []
    for index, event in enumerate(iter_events(events, seed=7)):
        stamp = format_micros(start + int(index * step))
        event["requestReceivedTimestamp"] = event["stageTimestamp"] = stamp
        batch.append(event)
        if len(batch) == 4000:
            yield encode_eventlist(batch)
            batch = []
    if batch:
        yield encode_eventlist(batch)


def build(path: Path, events: int, days: float) -> tuple[int, int]:
    """Fill a store with ``events`` generated events; returns (events, raw JSON bytes)."""
    store = SQLiteStore(f"sqlite:///{path}")
    store.open()
    raw_bytes = 0
    done = 0
    started = time.perf_counter()
    for body in _bodies(events, days):
        items, bad = decode_body(body)
        assert not bad
        raw_bytes += sum(len(i.raw) for i in items)
        store.write(items)
        done += len(items)
        if done % 500_000 == 0:
            rate = done / (time.perf_counter() - started)
            print(f"  {done:,} events ({rate:,.0f}/s)", flush=True)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return done, raw_bytes


def _time(fn: object, repeat: int = 20) -> dict[str, float]:
    """Median and max wall time, and the median CPU time of this process (which a busy
    machine does not inflate), in ms."""
    samples, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 2), "max_ms": round(samples[-1], 2),
            "cpu_median_ms": round(statistics.median(cpu), 2)}


def measure(path: Path) -> dict[str, object]:
    """Time the questions against an existing store (a fresh process: cold-ish caches)."""
    store = SQLiteStore(f"sqlite:///{path}")
    store.open(start_writer=False)  # upgrades a store built by an older schema first
    conn = sqlite3.connect(path)
    total, newest = conn.execute("SELECT count(*), max(time) FROM events").fetchone()
    # The object with the longest history (a lease, a node, a controller's configmap: the
    # generator gives most pods a single event, which would make the question too easy).
    obj = conn.execute(
        "SELECT e.name, r.value, ns.value, n FROM (SELECT name, resource, namespace, count(*) AS n"
        " FROM events WHERE name != '' GROUP BY name, resource, namespace ORDER BY n DESC"
        " LIMIT 1) e JOIN strings r ON r.id = e.resource JOIN strings ns ON ns.id = e.namespace"
    ).fetchone()
    user = conn.execute(
        "SELECT s.value FROM events e JOIN strings s ON s.id = e.user WHERE e.time > ?"
        " GROUP BY e.user ORDER BY count(*) DESC LIMIT 1 OFFSET 2", (newest - 3_600_000_000,)
    ).fetchone()[0]
    stored_id, middle_time = conn.execute("SELECT audit_id, time FROM events WHERE id = ?",
                                          (total // 2,)).fetchone()
    # as a person would paste it (the store keeps UUIDs as their 16 bytes)
    audit_id = str(uuid.UUID(bytes=stored_id)) if isinstance(stored_id, bytes) else stored_id
    # The busiest user and namespace of all, asked without a time range ("what did X do?").
    busiest_user, busiest_namespace = (conn.execute(
        f"SELECT s.value FROM (SELECT {column} AS v, count(*) AS n FROM events WHERE id > ?"
        f" GROUP BY {column} ORDER BY n DESC LIMIT 1) e JOIN strings s ON s.id = e.v",
        (total - 200_000,)).fetchone()[0] for column in ("user", "namespace"))
    conn.close()
    hour = Selector(users=[user], since=newest - 3_600_000_000)
    history = Selector(resources=[obj[1]], namespaces=[obj[2]], names=[obj[0]])
    results = {
        "events": total,
        "history_of_one_object": {"object": f"{obj[1]}/{obj[2]}/{obj[0]}", "events": obj[3],
                                  "page": 1000,
                                  **_time(lambda: store.page(history, limit=1000))},
        "one_users_last_hour_page": {"user": user, **_time(lambda: store.page(hour, limit=100))},
        "one_request_by_audit_id": _time(lambda: store.page(Selector(audit_ids=[audit_id]))),
        "busiest_user_no_time_range_page": {
            "user": busiest_user,
            **_time(lambda: store.page(Selector(users=[busiest_user]), limit=100))},
        "busiest_user_page_halfway_back": {
            "user": busiest_user, "before": [middle_time, total // 2],
            **_time(lambda: store.page(Selector(users=[busiest_user]), limit=100,
                                       before=(middle_time, total // 2)))},
        "busiest_namespace_no_time_range_page": {
            "namespace": busiest_namespace,
            **_time(lambda: store.page(Selector(namespaces=[busiest_namespace]), limit=100))},
        "requests_last_hour_page": _time(lambda: store.page(
            Selector(since=newest - 3_600_000_000), limit=50, requests_only=True)),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path,
                        help="store file (default: /tmp/auditsink-bench-query-N.db)")
    parser.add_argument("--days", type=float, default=7.0, help="time span of the events")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    path = args.db or Path(f"/tmp/auditsink-bench-query-{args.events}.db")
    meta = path.with_suffix(".meta.json")
    if args.rebuild or not path.exists() or not meta.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        print(f"building {path} with {args.events:,} events ...", flush=True)
        started = time.perf_counter()
        events, raw = build(path, args.events, args.days)
        meta.write_text(json.dumps({"events": events, "raw_bytes": raw,
                                    "build_seconds": round(time.perf_counter() - started)}))
    info = json.loads(meta.read_text())
    # Pages in use, not the file size: a store upgraded in place (schema 1 -> 2 rebuilt an
    # index) or pruned by retention keeps free pages that later writes reuse.
    conn = sqlite3.connect(path)
    pages, free, page_size = (conn.execute(f"PRAGMA {name}").fetchone()[0]
                              for name in ("page_count", "freelist_count", "page_size"))
    conn.close()
    size = (pages - free) * page_size
    report = {
        "store": str(path),
        "raw_json_bytes_per_event": round(info["raw_bytes"] / info["events"]),
        "disk_bytes_per_event": round(size / info["events"]),
        "disk_vs_raw": round(size / info["raw_bytes"], 3),
        "file_bytes_per_event": round(os.path.getsize(path) / info["events"]),
        "build_events_per_s": round(info["events"] / max(info["build_seconds"], 1)),
        **measure(path),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
