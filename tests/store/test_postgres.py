"""What only the PostgreSQL store has: migrations, daily partitions, and commit-order positions."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from auditsink.cli import main
from auditsink.model import decode_body
from auditsink.store.postgres import schema as pg_schema
from auditsink.store.base import Selector, StoreError, open_store
from auditsink.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def _events(day: str, n: int, stage: str = "ResponseComplete", **extra: Any) -> list[Any]:
    lines = [
        {
            "level": "Metadata", "auditID": str(uuid.uuid4()), "stage": stage, "verb": "get",
            "user": {"username": "u", "groups": ["g"]},
            "objectRef": {"resource": "pods", "namespace": "ns", "name": f"p{i}"},
            "stageTimestamp": f"{day}T10:00:00.{i:06d}Z",
            "requestReceivedTimestamp": f"{day}T10:00:00.000000Z", **extra,
        }
        for i in range(n)
    ]
    items, bad = decode_body(json.dumps(lines).encode())
    assert not bad
    return items


def _open(url: str) -> PostgresStore:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    store.open()
    return store


def test_db_migrate_is_versioned_and_idempotent(postgres_url: str) -> None:
    runner = CliRunner()
    status = runner.invoke(main, ["db", "status", "--store", postgres_url])
    assert status.exit_code == 0 and "schema version 0" in status.output
    first = runner.invoke(main, ["db", "migrate", "--store", postgres_url])
    assert first.exit_code == 0, first.output
    assert "applied 0001_initial" in first.output
    again = runner.invoke(main, ["db", "migrate", "--store", postgres_url])
    assert again.exit_code == 0 and "nothing to do" in again.output
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert rows == [(1, "initial"), (2, "object_log_order"), (3, "state"), (4, "dead_letters"),
                    (5, "identity")]
    sqlite = runner.invoke(main, ["db", "migrate", "--store", "sqlite:///x.db"])
    assert sqlite.exit_code != 0 and "PostgreSQL" in sqlite.output


def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    stores = [open_store(postgres_url) for _ in range(4)]
    applied: list[int] = []
    lock = threading.Lock()

    def migrate(store: Any) -> None:
        done = store.migrate()
        with lock:
            applied.extend(int(name[:4]) for name in done)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(applied) == [1, 2, 3, 4, 5]  # each migration applied once, by whichever replica


def test_readers_ask_for_db_migrate_on_an_empty_database(postgres_url: str) -> None:
    reader = open_store(postgres_url)
    with pytest.raises(StoreError, match="db migrate"):
        reader.open(start_writer=False)  # type: ignore[call-arg]
    reader.close()
    result = CliRunner().invoke(main, ["query", "--store", postgres_url])
    assert result.exit_code != 0 and "db migrate" in result.output


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    _open(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    store = open_store(postgres_url)
    with pytest.raises(StoreError, match="newer"):
        store.open()


def test_unreachable_server_is_a_clear_error() -> None:
    from conftest import free_port

    store = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nope")
    with pytest.raises(StoreError, match="cannot connect"):
        store.open()


def test_retention_drops_whole_days_and_trims_the_partial_one(postgres_url: str) -> None:
    store = _open(postgres_url)
    for day in ("2026-11-20", "2026-11-21", "2026-11-22"):
        assert store.write(_events(day, 30)).stored == 30
    with psycopg.connect(postgres_url) as conn:
        names = [n for n, _ in pg_schema.partitions(conn)]
    assert {"events_20261120", "events_20261121", "events_20261122"} <= set(names)
    # Cut in the middle of the 21st: the 20th goes as a partition, half of the 21st row by row.
    cutoff = _events("2026-11-21", 30)[15]
    from auditsink.timeutil import parse_timestamp

    deleted = store.prune(parse_timestamp(cutoff.event.stageTimestamp), chunk=4)
    assert deleted == 45
    with psycopg.connect(postgres_url) as conn:
        names = [n for n, _ in pg_schema.partitions(conn)]
    assert "events_20261120" not in names and "events_20261121" in names
    assert store.stats(Selector())["events"] == 45
    # A retry of a pruned day recreates its partition rather than failing the batch.
    assert store.write(_events("2026-11-20", 2)).stored == 2
    store.close()


def test_nul_characters_and_odd_strings_are_stored(postgres_url: str) -> None:
    store = _open(postgres_url)
    items = _events("2026-11-26", 2, userAgent="evil\u0000agent")
    assert store.write(items).stored == 2
    assert [e.raw for e in store.iter_all(Selector())] == [i.raw for i in items]
    store.close()


def test_duplicates_inside_one_group_are_stored_once(postgres_url: str) -> None:
    store = _open(postgres_url)
    items = _events("2026-11-26", 5)
    result = store.write(items + items[:3])
    assert (result.stored, result.duplicates) == (5, 3)
    store.close()


def test_positions_follow_commit_order_across_store_instances(postgres_url: str) -> None:
    """Three writers (as three replicas would) and a consumer paging by position meanwhile."""
    writers = [_open(postgres_url) for _ in range(3)]
    reader = _open(postgres_url)
    written: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def write(store: PostgresStore) -> None:
        for _ in range(40):
            items = _events("2026-11-26", 25)
            store.write(items)
            with lock:
                written.extend(i.event.auditID for i in items)

    seen: list[str] = []
    positions: list[int] = []

    def consume() -> None:
        position = 0
        while True:
            finished = done.is_set()  # read before the page: nothing commits after it is set
            page = reader.query(Selector(), limit=97, after_id=position, newest_first=False)
            for event in page:
                seen.append(json.loads(event.raw)["auditID"])
                positions.append(event.id)
            if page:
                position = page[-1].id
            elif finished:
                return

    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [threading.Thread(target=write, args=(s,)) for s in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    consumer.join()
    assert len(written) == 3000
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert sorted(seen) == sorted(written), "the consumer missed or repeated events"
    for store in (*writers, reader):
        store.close()


def test_writer_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    store = _open(postgres_url)
    assert store.write(_events("2026-11-26", 3)).stored == 3
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    items = _events("2026-11-26", 4)
    try:
        store.write(items)  # may fail: the connection was cut; the sender retries
    except psycopg.OperationalError:
        pass
    assert store.write(items).stored in (0, 4)  # the retry is stored, or was already
    assert store.stats(Selector())["events"] == 7
    store.close()
