"""How fast `rbac suggest` and `rbac diff` read a window of the store (issue 14).

For a user or service account they read its requests through the store's by-or-as user index;
for groups, and a diff of every subject, they read every event of the window, so the figure
that matters is events per second through :func:`auditsink.rbac.request.observe`, against the
baseline of reading the same events from the store and doing nothing with them.

Builds (once, cached) a SQLite store of generated events (benchmarks.generate_data), then, in
the same run, times:

- baseline: ``store.iter_all`` over every event, bytes only;
- suggest: ``observe`` for one service account (prometheus, through the user index) and
  ``suggest`` on it;
- diff: ``observe`` for every subject of a real API server's bindings
  (tests/data/rbac/granted-harness.yaml, 50 bindings) and ``diff_subject`` for each.

    flock /tmp/auditsink-bench.lock python -m benchmarks.bench_rbac --events 1000000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from auditsink.model import decode_body
from auditsink.rbac.diff import diff_subject
from auditsink.rbac.granted import read_files
from auditsink.rbac.identity import Identity
from auditsink.rbac.request import observe
from auditsink.rbac.suggest import suggest
from auditsink.store.base import Selector
from auditsink.store.sqlite import SQLiteStore
from benchmarks.generate_data import encode_eventlist, iter_events

GRANTED = Path(__file__).resolve().parents[1] / "tests" / "data" / "rbac" / "granted-harness.yaml"


def build(path: Path, events: int) -> None:
    store = SQLiteStore(f"sqlite:///{path}")
    store.open()
    batch = []
    for event in iter_events(events, seed=11):
        batch.append(event)
        if len(batch) == 4000:
            items, _ = decode_body(encode_eventlist(batch))
            store.write(items)
            batch = []
    if batch:
        items, _ = decode_body(encode_eventlist(batch))
        store.write(items)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()
    path = args.db or Path(f"/tmp/bench-rbac-{args.events}.db")
    if not path.exists():
        print(f"building {path} ({args.events:,} events)...", flush=True)
        build(path, args.events)
    store = SQLiteStore(f"sqlite:///{path}")
    store.open(start_writer=False)  # type: ignore[call-arg]
    everything = Selector()

    started = time.perf_counter()
    count = sum(1 for _ in store.iter_all(everything))
    baseline = time.perf_counter() - started
    print(f"baseline  iter_all, bytes only: {count:,} events in {baseline:.2f} s "
          f"= {count / baseline:,.0f} events/s")

    prometheus = Identity.parse_serviceaccount("monitoring:prometheus")
    started = time.perf_counter()
    seen = observe(store, everything, [prometheus])[prometheus]
    result = suggest(seen)
    took = time.perf_counter() - started
    print(f"suggest   one service account, {seen.events:,} of its events read through the "
          f"user index: {took:.2f} s ({took / baseline:.2f}x the baseline's time for all "
          f"{count:,}); {len(result.cluster_rules) + sum(map(len, result.roles.values()))} "
          f"rules")

    snapshot = read_files([GRANTED])
    subjects = snapshot.subjects()
    started = time.perf_counter()
    found = observe(store, everything, subjects)
    diffs = [diff_subject(s, snapshot, found[s]) for s in subjects]
    took = time.perf_counter() - started
    print(f"diff      {len(subjects)} subjects, {sum(d.granted for d in diffs):,} granted "
          f"permissions: {took:.2f} s = {count / took:,.0f} events/s "
          f"({took / baseline:.2f}x the baseline)")
    store.close()


if __name__ == "__main__":
    main()
