"""CPU per event of each ingest stage with receivers: ``python -m benchmarks.bench_stages``

``serve --receivers N`` (issue 16) splits ingest over processes: each receiver decodes a
batch, admits it (policy, redaction), builds its rows (store/sqlite/rows.py) and encodes them
for the writer; the writer decodes them and commits them into SQLite. Over HTTP
(``run_http``) only the whole tree's CPU is seen; this times each stage in one process, on
the same generated 400-event bodies, with the thread's CPU clock (``time.thread_time``), so
that what a change saves can be told from the host's noise:

- receiver: ``decode`` (model.decode_body), ``admit`` (Pipeline.admit with the default
  redaction and no policy), ``prepare`` (rows.prepare: the rows and their zstd blobs),
  ``encode`` (msgpack, what crosses the socket);
- writer: ``decode`` (msgpack) and ``commit`` (the store's ``_commit_group`` over groups of
  ``--group`` batches, as the writer thread takes them: interning, the inserts and
  COMMIT) and ``runs`` (the part of it that indexes the auditIDs and objects of a run once
  the log holds one, audit_ids.py), into a fresh file with the writer's cache;
  ``--drop-index NAME`` (repeatable) drops an index of the events table first, to see what
  it costs; ``--store-from DB`` commits into a copy of DB (bench_query's 10M-event store,
  say, flushed to disk first) instead, to see what a full store costs each stage.

Each round builds a fresh store; the figures are the median over ``--rounds``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zstandard

from auditsink.model import decode_body
from auditsink.pipeline import Pipeline
from auditsink.store._writer import Task
from auditsink.store.sqlite import WRITER_CACHE_KIB, SQLiteStore, audit_ids
from auditsink.store.sqlite.rows import DECODER, ENCODER, prepare
from benchmarks.bench_store import copy_store
from benchmarks.generate_data import eventlist_bodies


def receiver_round(bodies: list[bytes]) -> tuple[dict[str, float], list[bytes]]:
    """Seconds of CPU per receiver stage over ``bodies``, and the frames it would send."""
    pipeline = Pipeline()
    compressor = zstandard.ZstdCompressor(level=3)
    clock = time.thread_time
    spent = dict.fromkeys(("decode", "admit", "prepare", "encode"), 0.0)
    frames = []
    for body in bodies:
        start = clock()
        items, bad = decode_body(body)
        decoded = clock()
        kept = pipeline.admit(items, "")
        admitted = clock()
        batch = prepare(kept, "", bad, compressor, 128)
        prepared = clock()
        frames.append(ENCODER.encode(batch))
        spent["decode"] += decoded - start
        spent["admit"] += admitted - decoded
        spent["prepare"] += prepared - admitted
        spent["encode"] += clock() - prepared
    return spent, frames


def writer_round(frames: list[bytes], group: int, drop: list[str],
                 store_from: Path | None = None) -> dict[str, float]:
    """Seconds of CPU of the writer's stages over ``frames``, into a fresh SQLite file (or a
    copy of ``store_from``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stages.db"
        if store_from is not None:
            copy_store(store_from, path)
        store = SQLiteStore(f"sqlite:///{path}", checkpoint_interval=0)
        store.open(start_writer=False)  # the commits run here, on this thread
        try:
            conn = store._writer_conn()
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")  # as the writer's (open())
            store._audit_runs = audit_ids.indexed_runs(conn)
            for index in drop:
                conn.execute(f"DROP INDEX {index}")
            clock = time.thread_time
            spent = {"decode": 0.0, "commit": 0.0, "runs": 0.0}
            store._index_audit_ids = functools.partial(  # type: ignore[method-assign]
                _timed, store._index_audit_ids, spent, clock)
            for first in range(0, len(frames), group):
                start = clock()
                tasks = [Task([], "", lambda _task: None, (), DECODER.decode(frame))
                         for frame in frames[first:first + group]]
                decoded = clock()
                store._commit_group(tasks)
                spent["decode"] += decoded - start
                spent["commit"] += clock() - decoded  # the runs included
                failed = [task.error for task in tasks if task.error is not None]
                if failed:
                    raise failed[0]
        finally:
            store.close()
    spent["commit"] -= spent["runs"]
    return spent


def _timed(index: Callable[..., None], spent: dict[str, float], clock: Callable[[], float],
           *args: object) -> None:
    start = clock()
    index(*args)
    spent["runs"] += clock() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="Events per round.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--group", type=int, default=20,
                        help="Batches per commit (20 x 400 = the writer's default group).")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME",
                        help="Drop this index of events before ingesting (e.g. events_user).")
    parser.add_argument("--store-from", type=Path, metavar="DB",
                        help="Commit into a copy of this store file (bench_query's 10M-event"
                             " one, say) instead of an empty one.")
    args = parser.parse_args(argv)
    bodies = list(eventlist_bodies(args.events, 400, seed=7))
    events = len(bodies) * 400
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):
        receiver, frames = receiver_round(bodies)
        writer = writer_round(frames, args.group, args.drop_index, args.store_from)
        rounds.append({**{f"receiver {k}": v for k, v in receiver.items()},
                       **{f"writer {k}": v for k, v in writer.items()}})
    print(f"{events:,} events a round, {args.rounds} rounds, median CPU µs per event"
          f" (dropped: {', '.join(args.drop_index) or 'none'};"
          f" into {args.store_from or 'an empty store'})")
    for part in ("receiver", "writer"):
        names = [name for name in rounds[0] if name.startswith(part)]
        total = statistics.median(sum(r[n] for n in names) for r in rounds) / events * 1e6
        cells = ", ".join(
            f"{name.split()[1]} {statistics.median(r[name] for r in rounds) / events * 1e6:.2f}"
            for name in names)
        print(f"  {part:<8} {total:6.2f}  ({cells})")


if __name__ == "__main__":
    main()
