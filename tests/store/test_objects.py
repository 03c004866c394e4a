"""Object histories through the runs of ``objects`` (store/sqlite/objects.py, issue 16), on a
real SQLite file, with runs of 8 events so that a test spans many runs and a tail."""

from __future__ import annotations

import json
import random
import uuid
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditsink.model import decode_body
from auditsink.store.base import Selector, StoredEvent
from auditsink.store.sqlite import SQLiteStore, audit_ids
from auditsink.timeutil import format_micros

RUN = 8
START = 1_796_000_000_000_000  # µs
NAMES = ["web", "db", "cache"]


@pytest.fixture(autouse=True)
def small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_ids, "RUN", RUN)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    yield store
    store.close()


def _items(rows: list[tuple[str, str, str, int]]) -> list[Any]:
    """(name, resource, namespace, µs after START) as events ("" name: a list)."""
    events = []
    for name, resource, namespace, offset in rows:
        ref = {"resource": resource, "namespace": namespace}
        if name:
            ref["name"] = name
        events.append({"level": "Metadata", "auditID": str(uuid.uuid4()),
                       "stage": "ResponseComplete", "verb": "update" if name else "list",
                       "user": {"username": "alice"}, "requestURI": "/api/v1/x",
                       "objectRef": ref, "responseStatus": {"code": 200},
                       "stageTimestamp": format_micros(START + offset),
                       "requestReceivedTimestamp": format_micros(START + offset)})
    items, bad = decode_body(json.dumps({"kind": "EventList", "items": events}).encode())
    assert not bad
    return items


def _fill(store: SQLiteStore, count: int, seed: int = 7) -> list[tuple[str, str, str, int]]:
    """``count`` events in commits of 5 that end inside runs, times out of log order."""
    rng = random.Random(seed)
    rows = [(rng.choice([*NAMES, ""]), rng.choice(["configmaps", "secrets"]),
             rng.choice(["demo", "ops"]), rng.randrange(0, 50) * 1000) for _ in range(count)]
    for start in range(0, count, 5):
        store.write(_items(rows[start:start + 5]))
    return rows


def _ids(events: list[StoredEvent]) -> list[int]:
    return [e.id for e in events]


def _expected(store: SQLiteStore, where: str, params: tuple[object, ...],
              newest_first: bool = True) -> list[int]:
    """The answer from the events table alone: brute force, no objects involved."""
    order = "DESC" if newest_first else "ASC"
    rows = store._reader().execute(
        "SELECT events.id FROM events NOT INDEXED JOIN strings r ON r.id = events.resource"
        " JOIN strings n ON n.id = events.namespace WHERE " + where
        + f" ORDER BY events.time {order}, events.id {order}", params).fetchall()
    return [row[0] for row in rows]


def test_a_history_spans_the_runs_and_the_tail_in_time_order(store: SQLiteStore) -> None:
    _fill(store, 61)  # 7 runs of 8 and a tail of 5
    assert audit_ids.indexed_runs(store._writer_conn()) == 7
    for selector, where, params in [
        (Selector(names=["web"]), "name = ?", ("web",)),
        (Selector(names=["web", "db"]), "name IN (?, ?)", ("web", "db")),
        (Selector(resources=["secrets"], namespaces=["ops"], names=["db"]),
         "name = ? AND r.value = ? AND n.value = ?", ("db", "secrets", "ops")),
        (Selector(names=["cache"], namespaces=["demo", "ops"]), "name = ?", ("cache",)),
    ]:
        expected = _expected(store, where, params)
        assert expected, selector
        assert _ids(store.page(selector, limit=1000)) == expected, selector
        assert _ids(store.page(selector, limit=1000, oldest_first=True)) == _expected(
            store, where, params, newest_first=False), selector
        assert store.count(selector) == len(expected)
        assert _ids(store.query(selector, limit=1000)) == sorted(expected, reverse=True)
        # Three at a time, newest first and oldest first: no gap, no repeat.
        assert _ids(list(store.iter_page(selector, oldest_first=False, batch=3))) == expected
        assert _ids(list(store.iter_page(selector, batch=3))) == expected[::-1]
    since = START + 20_000
    assert _ids(store.page(Selector(names=["web"], since=since, until=since + 10_000),
                           limit=1000)) == _expected(
        store, "name = ? AND time >= ? AND time < ?", ("web", since, since + 10_000))
    assert store.page(Selector(names=["nothing-by-this-name"])) == []
    # Excluding a name is a test on the row.
    assert store.count(Selector(exclude=Selector(names=["web"]))) == len(
        _expected(store, "name <> ?", ("web",)))


def test_a_busy_objects_newest_page_reads_the_newest_runs_only(store: SQLiteStore) -> None:
    # Busy objects (leases, leader-election configmaps) collect tens of thousands of events:
    # their newest page must come from the newest runs, each read from its key, not from a
    # read of the whole history.
    _fill(store, 40)
    store.write(_items([("web", "configmaps", "demo", 60_000 + n) for n in range(20)]))
    selector = Selector(resources=["configmaps"], namespaces=["demo"], names=["web"])
    statements: list[str] = []
    store._reader().set_trace_callback(statements.append)
    try:
        page = store.page(selector, limit=5)
    finally:
        store._reader().set_trace_callback(None)
    assert _ids(page) == list(range(60, 55, -1))
    walks = [s for s in statements if "FROM objects o" in s]
    assert len(walks) == 1 and "o.run IN (6)" in walks[0], statements
    plan = " | ".join(row[3] for row in store._reader().execute(
        "EXPLAIN QUERY PLAN " + walks[0]))
    assert "SEARCH o USING PRIMARY KEY (run=? AND obj_name=? AND obj_resource=? AND" in plan, plan


def _objects(store: SQLiteStore) -> list[int]:
    return [r[0] for r in store._reader().execute(
        "SELECT event_id FROM objects ORDER BY event_id")]


def test_retention_drops_the_runs_of_deleted_events(store: SQLiteStore) -> None:
    old = [("web", "configmaps", "demo", n) for n in range(40)]
    new = [("web", "configmaps", "demo", 1_000_000 + n) for n in range(40)]
    store.write(_items(old))
    store.write(_items(new))
    assert _objects(store) == list(range(1, 81))
    store.prune(START + 1_000_000)  # the old half: its runs go
    assert _objects(store) == list(range(41, 81))
    assert _ids(store.page(Selector(names=["web"]), limit=1000)) == list(range(80, 40, -1))
    store.prune(START + 1_000_002)  # two more, inside a run: left, and still not found
    assert len(_objects(store)) == 40
    assert _ids(store.page(Selector(names=["web"]), limit=1000)) == list(range(80, 42, -1))
    assert store.count(Selector(names=["web"])) == 38
    store.prune(2**62)  # everything: ids start again from 1
    assert _objects(store) == []
    assert store._reader().execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    store.write(_items(old[:10]))
    assert _ids(store.page(Selector(names=["web"]), limit=1000)) == list(range(10, 0, -1))


def test_retention_of_the_newest_ids_drops_the_runs_that_covered_them(
        store: SQLiteStore) -> None:
    # SQLite hands out max(id) + 1: when retention takes the newest events (logged last but
    # older than the cutoff) their ids come again, and must be read from the tail again.
    store.write(_items([("web", "configmaps", "demo", 1_000_000 + n) for n in range(20)]))
    store.write(_items([("web", "configmaps", "demo", n) for n in range(20)]))  # ids 21-40
    assert audit_ids.indexed_runs(store._writer_conn()) == 5
    store.prune(START + 1_000_000)
    assert audit_ids.indexed_runs(store._writer_conn()) == 2  # ids 1-16; 17-20 in the tail
    again = [("web", "configmaps", "demo", 2_000_000 + n) for n in range(3)]
    store.write(_items(again))  # ids 21-23 again
    assert _ids(store.page(Selector(names=["web"]), limit=1000)) == list(range(23, 0, -1))
    store.write(_items(again * 10))
    assert store.count(Selector(names=["web"])) == 53 == len(set(_objects(store))) + 5


def test_a_schema_5_file_is_indexed_again_at_open(tmp_path: Path, store: SQLiteStore) -> None:
    rows = _fill(store, 45)
    store.close()
    conn = sqlite3.connect(store.path)  # as schema 5 left it: objects keyed by name first
    conn.executescript("""
        DROP TABLE objects; DROP TABLE runs;
        CREATE TABLE objects (obj_name TEXT NOT NULL, obj_resource INTEGER NOT NULL,
          obj_namespace INTEGER NOT NULL, obj_time INTEGER NOT NULL, event_id INTEGER NOT NULL,
          PRIMARY KEY (obj_name, obj_resource, obj_namespace, obj_time, event_id)) WITHOUT ROWID;
        INSERT INTO meta (key, value) VALUES ('objects_swept_below', '1');
        UPDATE meta SET value = '5' WHERE key = 'schema_version';
    """)
    conn.commit()
    conn.close()
    store.open()
    conn = sqlite3.connect(store.path)
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    swept = conn.execute("SELECT 1 FROM meta WHERE key = 'objects_swept_below'").fetchone()
    runs = conn.execute("SELECT run FROM runs ORDER BY run").fetchall()
    conn.close()
    assert version == "6" and swept is None
    assert runs == [(0,), (1,), (2,), (3,), (4,)]
    named = [n + 1 for n, row in enumerate(rows[:40]) if row[0]]  # 5 runs; 5 in the tail
    assert _objects(store) == named
    assert _ids(store.page(Selector(names=["db"]), limit=1000)) == _expected(
        store, "name = ?", ("db",))
