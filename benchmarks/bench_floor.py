"""The least CPU any SQLite store can spend per event, next to the baseline's:
``python -m benchmarks.bench_floor``

Issue 3 asks for durable batch ingest into SQLite at >= 2x the baseline's events/s on a 2-core
machine, where the server gets one core and the load generator the other (run_http.py). A
server that does twice the baseline's events/s on the same core spends at most half of the
baseline's CPU per event. This benchmark measures, in one run:

1. the **budget**: the baseline server (``baseline_seed_server.py``) over HTTP with wrk, as
   ``run_http`` does, as server CPU per event; half of that is what auditsink may spend;
2. the **floor**: work that any store meeting issue 3 must do per event, each piece done as
   cheaply as this machine allows, in this process, on the server's core, with no HTTP, no
   Python around it and none of auditsink's code except where named:
   - ``decode``: msgspec decoding of only the fields an index needs (auditID, stage, time,
     verb, user, objectRef, code); auditsink's full ``decode_body`` is shown for comparison;
   - ``compress``: zstd level 3 of the whole body in one frame (the <= 40 % disk target);
   - ``insert``: one narrow row per event (time, auditID, six integers) into a WAL-mode file
     with synchronous=NORMAL and a 64 MB page cache, 400 rows per commit, with no index;
     then with the unique deduplication index the issue requires; then also with the five
     query indexes of auditsink's schema (user, namespace, object, auditID, failures) on
     integer columns.

If the floor exceeds the budget, no design that keeps one row per event in SQLite with the
indexes the issue lists can reach 2x the baseline in CPython on this machine, however its
HTTP, queueing and Python are written. The output also shows the sum with no index at all.

    python -m benchmarks.bench_floor                 # about 40 s
    python -m benchmarks.bench_floor --events 80000 --duration 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import zstandard

from auditsink.model import decode_body
from auditsink.timeutil import parse_timestamp
from benchmarks import run_http


class _Ref(msgspec.Struct):
    resource: str = ""
    namespace: str = ""
    name: str = ""


class _User(msgspec.Struct):
    username: str = ""


class _Status(msgspec.Struct):
    code: int = 0


class _IndexedFields(msgspec.Struct):
    """Only what an index or the deduplication key needs; msgspec skips everything else."""

    auditID: str = ""
    stage: str = ""
    stageTimestamp: str = ""
    verb: str = ""
    user: _User = msgspec.field(default_factory=_User)
    objectRef: _Ref | None = None
    responseStatus: _Status | None = None


class _Body(msgspec.Struct):
    items: list[_IndexedFields]


_SCHEMA = (
    "CREATE TABLE e (id INTEGER PRIMARY KEY, time INTEGER, audit_id BLOB, stage INTEGER,"
    " user INTEGER, namespace INTEGER, resource INTEGER, name INTEGER, code INTEGER)",
)
_DEDUP = ("CREATE UNIQUE INDEX e_dedup ON e (time, audit_id, stage)",)
_QUERY_INDEXES = (
    "CREATE INDEX e_user ON e (user, time)",
    "CREATE INDEX e_namespace ON e (namespace, time)",
    "CREATE INDEX e_object ON e (name, resource, namespace)",
    "CREATE INDEX e_audit_id ON e (audit_id)",
    "CREATE INDEX e_code ON e (code, time) WHERE code >= 400",
)


def _cpu_per_event(work: Callable[[], object], events: int, rounds: int) -> float:
    """The best of ``rounds`` runs of ``work``, in CPU microseconds per event."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return 1e6 * best / events


def _rows(batches: list[list[_IndexedFields]]) -> list[list[tuple[object, ...]]]:
    """Integer rows as a store with a string dictionary would insert them."""
    ids: dict[str, int] = {}

    def intern(value: str) -> int:
        return ids.setdefault(value, len(ids))

    out = []
    for batch in batches:
        rows = []
        for event in batch:
            ref = event.objectRef or _Ref()
            rows.append((
                parse_timestamp(event.stageTimestamp), uuid.UUID(event.auditID).bytes,
                intern(event.stage), intern(event.user.username), intern(ref.namespace),
                intern(ref.resource), intern(ref.name),
                event.responseStatus.code if event.responseStatus else 0,
            ))
        out.append(rows)
    return out


def _insert(directory: str, rows: list[list[tuple[object, ...]]],
            ddl: tuple[str, ...]) -> Callable[[], None]:
    import sqlite3

    def work() -> None:
        path = os.path.join(directory, "floor.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")  # generous: the whole file stays in it
        for statement in ddl:
            conn.execute(statement)
        sql = ("INSERT OR IGNORE INTO e (time, audit_id, stage, user, namespace, resource, name, "
               "code) VALUES (?,?,?,?,?,?,?,?)")
        for batch in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")
        conn.close()

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=80_000, help="events for the floor (x400)")
    parser.add_argument("--rounds", type=int, default=3, help="floor: best of N rounds")
    parser.add_argument("--duration", type=float, default=10.0, help="baseline wrk seconds")
    parser.add_argument("--data-dir", type=Path, default=run_http.DEFAULT_DATA_DIR)
    parser.add_argument("--server-cpu", default="0", help="the baseline's core, and ours")
    parser.add_argument("--driver-cpu", default="1", help="wrk's core")
    args = parser.parse_args()

    mode = run_http.MODES["batch"]
    bodies_file = run_http.ensure_data(args.data_dir, mode, warm=False)
    with open(bodies_file, "rb") as lines:
        bodies = [next(lines).rstrip(b"\n") for _ in range(max(1, args.events // 400))]
    events = sum(len(msgspec.json.decode(body, type=_Body).items) for body in bodies)

    print(f"baseline over HTTP, batch mode, {args.duration:g} s ...", flush=True)
    row = run_http.measure(run_http.TARGETS["baseline"], mode, duration=args.duration, warmup=2,
                           connections=8, data_dir=args.data_dir,
                           server_cpus=args.server_cpu, driver_cpus=args.driver_cpu)
    baseline_us = 1e6 / row["events_per_cpu_s"]
    budget_us = baseline_us / 2

    os.sched_setaffinity(0, {int(args.server_cpu)})
    decoder = msgspec.json.Decoder(_Body)
    decoded = [decoder.decode(body).items for body in bodies]
    compressor = zstandard.ZstdCompressor(level=3)
    rows = _rows(decoded)
    measured: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="auditsink-floor-") as directory:
        cases: list[tuple[str, Callable[[], object]]] = [
            ("decode, indexed fields only (msgspec)", lambda: [decoder.decode(b) for b in bodies]),
            ("compress, zstd 3, one frame per body",
             lambda: [compressor.compress(b) for b in bodies]),
            ("insert, no index", _insert(directory, rows, _SCHEMA)),
            ("insert + dedup index", _insert(directory, rows, _SCHEMA + _DEDUP)),
            ("insert + dedup + 5 query indexes",
             _insert(directory, rows, _SCHEMA + _DEDUP + _QUERY_INDEXES)),
            ("(for comparison) auditsink decode_body", lambda: [decode_body(b) for b in bodies]),
        ]
        for name, work in cases:
            measured[name] = _cpu_per_event(work, events, args.rounds)

    bare = (measured["decode, indexed fields only (msgspec)"]
            + measured["compress, zstd 3, one frame per body"]
            + measured["insert, no index"])
    floor = bare - measured["insert, no index"] + measured["insert + dedup + 5 query indexes"]
    print(f"\n{events:,} events in {len(bodies)} bodies; CPU microseconds per event, "
          f"best of {args.rounds}; core {args.server_cpu}")
    print(f"{'baseline server over HTTP (its whole work)':48} {baseline_us:7.2f}"
          f"   ({row['events_per_s']:,} events/s, {row['events_per_cpu_s']:,} per CPU-second)")
    print(f"{'budget for 2x the baseline':48} {budget_us:7.2f}")
    for name, value in measured.items():
        print(f"  {name:46} {value:7.2f}")
    print(f"{'decode + compress + insert with no index at all':48} {bare:7.2f}"
          f"   = {bare / budget_us:.1f}x the budget")
    print(f"{'floor: decode + compress + insert with indexes':48} {floor:7.2f}"
          f"   = {floor / budget_us:.1f}x the budget")
    verdict = "cannot" if floor > budget_us else "could"
    print(f"-> a one-row-per-event SQLite store {verdict} reach 2x the baseline on this core "
          f"(at best {1e6 / floor:,.0f} events/s per CPU-second before HTTP, "
          f"{baseline_us / floor:.2f}x the baseline)")


if __name__ == "__main__":
    main()
