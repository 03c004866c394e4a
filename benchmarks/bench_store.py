"""Durable batch ingest into each store, in events/s: ``python -m benchmarks.bench_store``

What is timed: ``Store.write`` of pre-decoded 400-event batches (the API server's batch size)
from several client threads per store instance, as concurrent webhook requests would submit
them, until every batch is committed. Decoding and HTTP are not in it (bench_rules and run_http
measure those). Every event has a fresh auditID (benchmarks.generate_data), so deduplication
never skips work.

Cases, in one run on one machine:
- ``sqlite``: one SQLiteStore (one writer thread, group commit, WAL, synchronous=NORMAL);
- ``sqlite x3``: three SQLiteStore instances on one file (they take turns on its write lock);
- with ``--sqlite-from PATH``: one SQLiteStore writing into a copy of a full store instead of
  the x3 case (a store of ten million events ingests at about half the rate of an empty one);
- ``postgres``: one PostgresStore (COPY to a temp table, INSERT ... ON CONFLICT under the log lock);
- ``postgres x3``: three PostgresStore instances on one database, as three replicas would be.
  They run in this one process, so they also share its GIL: three real replica processes
  have three times the CPU for preparing rows.

PostgreSQL comes from ``--postgres URL`` or ``AUDITSINK_TEST_POSTGRES`` (scripts/start-postgres.sh);
each case gets a fresh database.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from auditsink.model import Item, decode_body
from auditsink.store.base import open_store
from benchmarks.generate_data import eventlist_bodies


def _batches(n_events: int, seed: int) -> list[list[Item]]:
    batches = []
    for body in eventlist_bodies(n_events, 400, seed=seed):
        items, bad = decode_body(body)
        assert not bad
        batches.append(items)
    return batches


def copy_store(source: Path | str, db: Path | str) -> None:
    """Copy the SQLite store ``source`` (its WAL too) to ``db``, flushed to disk: otherwise
    its gigabytes of dirty pages are written back during the run that follows and the first
    checkpoint's fsync waits for all of them, which a store that filled up over weeks never
    does."""
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{db}{suffix}")
            with open(f"{db}{suffix}", "rb+") as copy:
                os.fsync(copy.fileno())


def fresh_database(server: str) -> tuple[str, Callable[[], None]]:
    """A new, empty database on the PostgreSQL server at ``server``, and how to drop it."""
    import psycopg

    name = f"auditsink_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return url, drop


def run_case(url: str, instances: int, batches: list[list[Item]], clients: int) -> float:
    """Events per second committed by ``instances`` stores fed by ``clients`` threads each."""
    stores = [open_store(url) for _ in range(instances)]
    for store in stores:
        store.open()
    # Warm up (schema, partitions, string dictionary) outside the timing.
    stores[0].write(batches[0])
    work = batches[1:]
    lanes = [work[i::instances * clients] for i in range(instances * clients)]
    threads = [
        threading.Thread(
            target=lambda s=stores[i // clients], lane=lane: [s.write(b) for b in lane])
        for i, lane in enumerate(lanes)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for store in stores:
        store.close()
    return sum(len(b) for b in work) / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="Events per case.")
    parser.add_argument("--clients", type=int, default=4, help="Client threads per store instance.")
    parser.add_argument("--postgres", default=os.environ.get("AUDITSINK_TEST_POSTGRES"),
                        help="Server URL to create benchmark databases on.")
    parser.add_argument("--sqlite-from", metavar="PATH",
                        help="Also write into a copy of this SQLite store (closed cleanly), e.g. "
                        "bench_query's 10-million-event file: ingest into a full store, not an "
                        "empty one. Runs the one-instance SQLite case only.")
    args = parser.parse_args(argv)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs,"
          f" Python {platform.python_version()}; {args.events} events per case in 400-event"
          f" batches, {args.clients} client threads per store")
    # (instances, store file to start from): empty stores, or one empty and one full
    cases = [(1, None), (1, args.sqlite_from)] if args.sqlite_from else [(1, None), (3, None)]
    for instances, source in cases:
        batches = _batches(args.events, seed=instances)
        with tempfile.TemporaryDirectory() as tmp:
            if source is not None:
                copy_store(source, f"{tmp}/bench.db")
            rate = run_case(f"sqlite:///{tmp}/bench.db", instances, batches, args.clients)
        where = f"  (into a copy of {source})" if source else ""
        copies = "" if instances == 1 else f" x{instances}"
        print(f"sqlite{copies:4}  {rate:>10,.0f} events/s{where}")
    if not args.postgres:
        print("postgres: skipped (pass --postgres URL or set AUDITSINK_TEST_POSTGRES)")
        return
    for instances in (1, 3):
        batches = _batches(args.events, seed=10 + instances)
        url, drop = fresh_database(args.postgres)
        try:
            rate = run_case(url, instances, batches, args.clients)
        finally:
            drop()
        print(f"postgres{'' if instances == 1 else f' x{instances}':4}{rate:>10,.0f} events/s")


if __name__ == "__main__":
    main()
