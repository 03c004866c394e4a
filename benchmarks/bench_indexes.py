"""What each index of the SQLite store costs at ingest: ``python -m benchmarks.bench_indexes``

Writes the same pre-decoded 400-event batches (benchmarks.generate_data, every auditID new)
with ``Store.write`` into a fresh store with every index, then into fresh stores each missing
one index, and prints events/s and microseconds per event. Decoding and HTTP are not in it.
A guide for making ingest cheaper (issue 3), not a configuration: every index serves a
question (docs/store.md).

    python -m benchmarks.bench_indexes --events 200000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from auditsink.model import Item, decode_body
from auditsink.store.sqlite import SQLiteStore
from benchmarks.generate_data import encode_eventlist, iter_events

# The query indexes of schema 5 (auditIDs and objects are indexed in runs, after the commit:
# store/sqlite/audit_ids.py and objects.py; their cost is in every case's time).
INDEXES = ("events_user", "events_impersonated", "events_namespace", "events_code")


def _batches(events: int) -> list[list[Item]]:
    bodies, batch = [], []
    for event in iter_events(events, seed=3):
        batch.append(event)
        if len(batch) == 400:
            bodies.append(encode_eventlist(batch))
            batch = []
    return [decode_body(body)[0] for body in bodies]


def _ingest(path: str, batches: list[list[Item]], drop: str | None) -> float:
    """Seconds to write every batch into a fresh store at ``path`` without index ``drop``."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    store = SQLiteStore(f"sqlite:///{path}")
    store.open()
    if drop:
        store.call_in_writer(lambda conn: conn.execute(f"DROP INDEX {drop}"))
    started = time.perf_counter()
    for batch in batches:
        store.write(batch)
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    batches = _batches(args.events)
    events = sum(len(b) for b in batches)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):  # interleaved, so a slow spell of the host hits every case
            for drop in (None, *INDEXES):
                label = f"without {drop}" if drop else "every index"
                times.setdefault(label, []).append(_ingest(f"{folder}/s.db", batches, drop))
    print(f"# bench_indexes: {events:,} events in 400-event batches, median of {args.rounds}")
    for label, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{label:<28} {events / median:>10,.0f} events/s "
              f"{median / events * 1e6:>7.1f} µs/event")


if __name__ == "__main__":
    main()
