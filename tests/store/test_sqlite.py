"""What only the SQLite store has: file URLs and paths, and the size of the file on disk.

The behaviour every backend shares is tested in test_store.py, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard

from auditsink.model import decode_body
from auditsink.store._rows import KEY_COLUMNS, row_strings
from auditsink.store._writer import Task
from auditsink.store.base import Selector, StoreError, open_store
from auditsink.store.postgres import PostgresStore
from auditsink.store.sqlite import SQLiteStore, path_from_url
from auditsink.store.sqlite import writer as sqlite_writer
from auditsink.store.sqlite.rows import DECODER, ENCODER, prepare
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


def test_background_passes_repeat_while_much_is_left_for_the_writer(tmp_path: Path) -> None:
    # The writer's finishing pass copies whatever the background passes left: on a large store
    # that was as long as the whole checkpoint. A pass copies the frames there were when it
    # began, so after a pass that copied many the background passes again, until one finds
    # few new frames (at most finish_frames) or max_passes is reached.
    store = _store(tmp_path, checkpoint_interval=3600)  # the thread's own passes stay out
    checkpointer = store._checkpointer
    assert checkpointer is not None
    checkpointer.finish_frames = 16  # pages; a test-sized store
    conn = store._connect()
    database = os.open(store.path, os.O_RDONLY)

    def passes() -> int:
        before = checkpointer.checkpoints
        checkpointer.checkpoint(conn, database)
        return checkpointer.checkpoints - before

    try:
        store.write(_distinct_items(3000, 0))  # one commit of many pages
        assert passes() == 2  # the second pass finds nothing new: done
        stop = threading.Event()

        def keep_writing() -> None:
            written = 3000
            while not stop.is_set():
                store.write(_distinct_items(200, written))
                written += 200

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            time.sleep(0.2)
            checkpointer.finish_frames = 0  # every pass finds new frames while commits go on
            counts = []
            for _ in range(5):
                # After the previous finishing pass, a commit or two: the WAL has frames.
                seen = store.commits
                while store.commits < seen + 2:
                    time.sleep(0.001)
                counts.append(passes())
        finally:
            stop.set()
            writer.join()
        assert all(2 <= n <= checkpointer.max_passes for n in counts), counts
    finally:
        os.close(database)
        conn.close()
        store.close()


def _plans(store: SQLiteStore, run: Any) -> list[str]:
    """The query plan of every events SELECT that ``run()`` made."""
    statements: list[str] = []
    reader = store._reader()
    reader.set_trace_callback(statements.append)
    run()
    reader.set_trace_callback(None)
    return [" | ".join(row[3] for row in reader.execute("EXPLAIN QUERY PLAN " + s))
            for s in statements if s.startswith("SELECT") and "FROM events" in s]


def test_a_busy_users_page_walks_its_indexes_without_sorting(tmp_path: Path) -> None:
    # "By or as alice" is two branches, each read from its own (column, time) index in time
    # order and cut at the page size; only their union (2 x limit rows at most) is sorted.
    store = _store(tmp_path)
    items = _distinct_items(50, 0)
    for i, item in enumerate(items):  # one every 5 minutes, logged in reverse time order
        item.event.stageTimestamp = format_micros(1_795_000_000_000_000 - i * 300_000_000)
    store.write(items)
    page: list[Any] = []
    plans = _plans(store, lambda: page.extend(store.page(Selector(users=["alice"]), limit=10)))
    store.close()
    assert [e.id for e in page] == list(range(1, 11))  # newest first: the first logged
    plan = plans[-1]
    assert "events_user" in plan and "events_impersonated" in plan, plan
    assert plan.count("FOR ORDER BY") == 1, plan  # the union's, never a branch's


def _identity_items() -> list[Any]:
    base = {"level": "Metadata", "stage": "ResponseComplete", "verb": "get",
            "objectRef": {"resource": "secrets", "namespace": "ops", "name": "db"},
            "requestURI": "/api/v1/namespaces/ops/secrets/db?x=1",
            "stageTimestamp": "2026-11-26T10:00:00.000000Z"}
    lines = [
        {**base, "auditID": "as-mallory", "user": {"username": "admin"},
         "impersonatedUser": {"username": "mallory"}, "responseStatus": {"code": 403},
         "annotations": {"authorization.k8s.io/decision": "forbid"}},
        {**base, "auditID": "plain", "user": {"username": "alice"},
         "requestURI": "/api/v1/pods", "responseStatus": {"code": 200},
         "annotations": {"authorization.k8s.io/decision": "allow"}},
    ]
    items, bad = decode_body(json.dumps(lines).encode())
    assert not bad
    return items


def test_schema_2_files_are_upgraded_in_place(tmp_path: Path) -> None:
    # A file written before issue 18: no impersonation, decision or path columns, no cluster
    # list, the object index in log order. Opening it fills them in from the stored bodies.
    # (Object histories: tests/store/test_objects.py.)
    store = _store(tmp_path)
    store.write(_identity_items(), cluster="prod")
    store.close()
    conn = sqlite3.connect(store.path)
    conn.executescript("""
        DROP INDEX events_impersonated; DROP TABLE objects; DROP TABLE clusters;
        ALTER TABLE events DROP COLUMN impersonated_user; ALTER TABLE events DROP COLUMN decision;
        ALTER TABLE events DROP COLUMN uri;
        CREATE INDEX events_object_log ON events (name, resource, namespace);
        UPDATE meta SET value = '2' WHERE key = 'schema_version';
    """)
    conn.close()
    store = _store(tmp_path)
    try:
        assert [json.loads(e.raw)["auditID"] for e in store.page(Selector(users=["mallory"]))
                ] == ["as-mallory"]
        assert len(store.page(Selector(decisions=["forbid"]))) == 1
        assert len(store.page(Selector(uri_prefixes=["/api/v1/namespaces/ops/"]))) == 1
        assert store.clusters_seen() == ["prod"]
    finally:
        store.close()
    conn = sqlite3.connect(store.path)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    conn.close()
    assert "events_object_log" not in indexes
    assert "events_audit_id" not in indexes  # schema 4: audit_ids instead
    assert "events_object_time" not in indexes  # schema 5: objects instead
    assert version == "6"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.close()
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this auditsink"):
        _store(tmp_path)




def _events_as_stored(path: str) -> list[tuple[Any, ...]]:
    """Each row's interned columns (KEY_COLUMNS) as their strings, in log order; an
    impersonated user of 0 (nobody) as None."""
    conn = sqlite3.connect(path)
    try:
        names = dict(conn.execute("SELECT id, value FROM strings"))
        rows = conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    at = KEY_COLUMNS.index("impersonated_user")
    return [tuple(None if (i == at and v == 0) else names[v] for i, v in enumerate(row))
            for row in rows]


def _expected(items: list[Any]) -> list[tuple[Any, ...]]:
    at = KEY_COLUMNS.index("impersonated_user")
    return [tuple(None if (i == at and v == "") else v
                  for i, v in enumerate(row_strings(item.event))) for item in items]


def _varied_items(count: int, salt: str = "") -> list[Any]:
    lines = [{"level": "Metadata", "auditID": f"v{salt}-{i}", "stage": "ResponseComplete",
              "verb": ["get", "list", "delete"][i % 3],
              "user": {"username": f"user-{i % 4}", "groups": ["system:authenticated"]},
              "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl/v1.20.2",
              "requestURI": f"/api/v1/namespaces/ns-{i % 2}/pods/p{salt}{i}",
              "objectRef": {"resource": "pods", "namespace": f"ns-{i % 2}", "name": f"p{i}"},
              **({"impersonatedUser": {"username": "bob"}} if i % 5 == 0 else {}),
              "stageTimestamp": format_micros(1_795_000_000_000_000 + i),
              "requestReceivedTimestamp": format_micros(1_795_000_000_000_000 + i)}
             for i in range(count)]
    items, bad = decode_body(json.dumps(lines).encode())
    assert not bad
    return items


def test_a_receivers_rows_are_stored_as_the_writers_own(tmp_path: Path) -> None:
    # serve --receivers: the receiver builds the rows and their table of strings, they cross
    # a socket as msgpack, the writer interns the table. The same events written in-process
    # must give the same rows, "" impersonated user as nobody (0) in both.
    items = _varied_items(40)  # >= COMPRESS_FROM: the receiver compresses the bodies
    few = _varied_items(3, salt="x")  # < COMPRESS_FROM: the writer compresses them
    (tmp_path / "own").mkdir()
    (tmp_path / "relayed").mkdir()
    own = _store(tmp_path / "own")
    own.write(items)
    own.write(few)
    own.close()
    relayed = _store(tmp_path / "relayed")

    async def send() -> None:
        for batch in (items, few):
            built = prepare(batch, "", [], zstandard.ZstdCompressor(), 128)
            prepared = DECODER.decode(ENCODER.encode(built))
            result = await relayed.submit_prepared(prepared)
            assert result.stored == len(batch)

    asyncio.run(send())
    relayed.close()
    expected = _expected(items + few)
    assert _events_as_stored(own.path) == expected
    assert _events_as_stored(relayed.path) == expected
    assert sum(row[KEY_COLUMNS.index("impersonated_user")] == "bob" for row in expected) == 9


def test_the_string_cache_starting_over_mid_batch_keeps_every_id_right(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_writer, "STRING_CACHE", 10)
    store = _store(tmp_path)
    batches = [_varied_items(30, salt=str(n)) for n in range(3)]
    for batch in batches:
        store.write(batch)
    assert len(store._interner.known) <= 30 * 3 + 10  # type: ignore[union-attr]
    store.close()
    assert _events_as_stored(store.path) == _expected([i for b in batches for i in b])


def test_one_commit_of_several_batches_tells_each_its_own_duplicates(tmp_path: Path) -> None:
    # The writer inserts a whole group in one statement: the duplicates it reports must still
    # be each batch's own, by position in that batch, whether built here or by a receiver.
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(store, SQLiteStore)
    store.open(start_writer=False)  # the commit runs here, on this thread
    items = _varied_items(8)
    built = prepare([items[6], items[1], items[7]], "", [], zstandard.ZstdCompressor(), 128)
    tasks = [Task(items[0:3], "", lambda _task: None),
             Task([items[3], items[2], items[4], items[3]], "", lambda _task: None),
             Task([], "", lambda _task: None, (), DECODER.decode(ENCODER.encode(built))),
             Task([items[5]], "other", lambda _task: None)]
    store._commit_group(tasks)
    assert [task.error for task in tasks] == [None] * 4
    assert [(t.result.stored, t.result.duplicates, t.result.duplicate_items)
            for t in tasks] == [(3, 0, ()), (2, 2, (1, 3)), (2, 1, (1,)), (1, 0, ())]
    store.close()
    assert _events_as_stored(store.path) == _expected(
        [*items[0:3], items[3], items[4], items[6], items[7], items[5]])
