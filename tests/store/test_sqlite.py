"""What only the SQLite store has: file URLs and paths, and the size of the file on disk.

The behaviour every backend shares is tested in test_store.py, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from auditsink.model import decode_body
from auditsink.store.base import Selector, StoreError, open_store
from auditsink.store.postgres import PostgresStore
from auditsink.store.sqlite import SQLiteStore, path_from_url
from auditsink.timeutil import format_micros


def _store(tmp_path: Path, **options: Any) -> SQLiteStore:
    store = open_store(f"sqlite:///{tmp_path}/a.db", **options)
    assert isinstance(store, SQLiteStore)
    store.open()
    return store


def _fixture_items(fixtures_dir: Path) -> list[Any]:
    items, bad = decode_body((fixtures_dir / "audit.log").read_bytes())
    assert not bad
    return items


def test_url_forms() -> None:
    assert path_from_url("sqlite:///auditsink.db") == "auditsink.db"
    assert path_from_url("sqlite:////var/lib/a.db") == "/var/lib/a.db"
    with pytest.raises(StoreError, match="unknown scheme"):
        open_store("mysql://x")
    # PostgreSQL is a registered backend now (issue 8); opening a URL does not connect yet.
    assert isinstance(open_store("postgresql://localhost/db"), PostgresStore)
    assert isinstance(open_store("postgres://localhost/db"), PostgresStore)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/nope/a.db")
    with pytest.raises(StoreError, match="does not exist"):
        store.open()


def test_compressed_store_is_small(tmp_path: Path, fixtures_dir: Path) -> None:
    items = _fixture_items(fixtures_dir)
    store = _store(tmp_path)
    for i in range(0, len(items), 400):
        store.write(items[i : i + 400])
    store.close()
    conn = sqlite3.connect(store.path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    raw = sum(len(i.raw) for i in items)
    assert Path(store.path).stat().st_size < raw * 0.6


def _distinct_items(count: int, start: int) -> list[Any]:
    lines = [
        {"level": "Metadata", "auditID": f"ckpt-{start + i}", "stage": "ResponseComplete",
         "verb": "create", "user": {"username": "alice"},
         "objectRef": {"resource": "configmaps", "namespace": "demo", "name": f"cm-{start + i}"},
         "stageTimestamp": "2026-11-26T10:00:00.000000Z",
         "requestReceivedTimestamp": "2026-11-26T10:00:00.000000Z"}
        for i in range(count)
    ]
    items, bad = decode_body(json.dumps(lines).encode())
    assert not bad
    return items


def test_wal_is_rewound_under_continuous_writes(tmp_path: Path) -> None:
    # No commit runs a checkpoint itself (that stalled every request waiting on it); the
    # background checkpointer and the writer's finishing pass must still keep the WAL from
    # growing while commits never stop (measured: 7 MB at most; 235 MB without the pass).
    store = _store(tmp_path, checkpoint_interval=0.05)
    writer = store._writer_conn()
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    wal = Path(store.path + "-wal")
    deadline = time.monotonic() + 3
    written = largest = 0
    while time.monotonic() < deadline:
        store.write(_distinct_items(20, written))
        written += 20
        largest = max(largest, wal.stat().st_size)
    checkpoints = store._checkpointer.checkpoints if store._checkpointer else 0
    store.close()
    assert checkpoints > 10
    # Every event is in the database file itself once it is closed.
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == written
    conn.close()
    assert largest < 32 << 20, f"WAL reached {largest} bytes after {written} events"


def test_object_history_reads_the_index_in_log_order(tmp_path: Path) -> None:
    # Busy objects (leases, leader-election configmaps) collect tens of thousands of events:
    # their newest page must come straight off an index, not from sorting all of them.
    store = _store(tmp_path)
    store.write(_distinct_items(50, 0))
    statements: list[str] = []
    reader = store._reader()
    reader.set_trace_callback(statements.append)
    page = store.query(Selector(resources=["configmaps"], namespaces=["demo"], names=["cm-7"]))
    reader.set_trace_callback(None)
    assert len(page) == 1
    select = next(s for s in statements if s.startswith("SELECT events.id"))
    plan = " | ".join(row[3] for row in reader.execute("EXPLAIN QUERY PLAN " + select))
    store.close()
    assert "events_object_log" in plan and "TEMP B-TREE" not in plan, plan


def test_a_busy_users_newest_page_reads_only_the_last_hour(tmp_path: Path) -> None:
    # Without a time range SQLite sorted every event of the user to find the newest page
    # (4 s for system:apiserver at 10M events); the first window, the last hour, holds it.
    store = _store(tmp_path)
    items = _distinct_items(50, 0)
    for i, item in enumerate(items):  # one every 5 minutes: 4 hours, the newest 12 in the last
        item.event.stageTimestamp = format_micros(1_795_000_000_000_000 + i * 300_000_000)
    store.write(items)
    statements: list[str] = []
    reader = store._reader()
    reader.set_trace_callback(statements.append)
    page = store.query(Selector(users=["alice"]), limit=10)
    reader.set_trace_callback(None)
    store.close()
    assert [e.id for e in page] == list(range(50, 40, -1))
    selects = [s for s in statements if s.startswith("SELECT events.id")]
    assert len(selects) == 1 and "time >= " in selects[0], selects


def test_schema_1_files_are_upgraded_in_place(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.write(_distinct_items(5, 0))
    store.close()
    conn = sqlite3.connect(store.path)
    conn.execute("DROP INDEX events_object_log")
    conn.execute("CREATE INDEX events_object ON events (name, resource, namespace, time)")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    store = _store(tmp_path)
    assert len(store.query(Selector(names=["cm-3"]))) == 1
    store.close()
    conn = sqlite3.connect(store.path)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    conn.close()
    assert "events_object_log" in indexes and "events_object" not in indexes
    assert version == "2"
