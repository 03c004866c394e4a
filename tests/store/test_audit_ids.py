"""Lookups by auditID through the runs of ``audit_ids`` (store/sqlite/audit_ids.py, issue 16),
on a real SQLite file, with runs of 8 events so that a test spans many."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditsink.model import decode_body
from auditsink.store.base import Selector
from auditsink.store.sqlite import SQLiteStore, audit_ids

RUN = 8


@pytest.fixture(autouse=True)
def small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_ids, "RUN", RUN)


def _items(ids: list[str], stage: str = "ResponseComplete", second: int = 0) -> list[Any]:
    events = [{"level": "Metadata", "auditID": audit_id, "stage": stage, "verb": "get",
               "user": {"username": "alice"}, "requestURI": "/api/v1/pods",
               "objectRef": {"resource": "pods", "namespace": "demo"},
               "responseStatus": {"code": 200},
               "requestReceivedTimestamp": f"2026-12-04T10:00:{second:02d}.{n:06d}Z",
               "stageTimestamp": f"2026-12-04T10:00:{second:02d}.{n:06d}Z"}
              for n, audit_id in enumerate(ids)]
    items, bad = decode_body(json.dumps({"kind": "EventList", "items": events}).encode())
    assert not bad
    return items


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    yield store
    store.close()


def _found(store: SQLiteStore, *ids: str) -> list[tuple[str, str]]:
    return sorted((json.loads(e.raw)["auditID"], json.loads(e.raw)["stage"])
                  for e in store.page(Selector(audit_ids=list(ids)), limit=1000))


def test_every_event_is_found_in_a_run_or_in_the_tail(store: SQLiteStore) -> None:
    ids = [str(uuid.uuid4()) for _ in range(53)] + ["not-a-uuid"]
    for start in range(0, len(ids), 7):  # commits that end inside runs
        store.write(_items(ids[start:start + 7]))
    assert audit_ids.indexed_runs(store._writer_conn()) == len(ids) // RUN == 6
    for audit_id in ids:  # 48 from the runs, 6 from the tail
        assert _found(store, audit_id) == [(audit_id, "ResponseComplete")]
    assert _found(store, ids[0], ids[-1], ids[30]) == sorted(
        (i, "ResponseComplete") for i in (ids[0], ids[-1], ids[30]))
    assert _found(store, str(uuid.uuid4())) == []
    # The other stage of a request, in a later run: both are found, and counted.
    store.write(_items([ids[0]] * 1 + [str(uuid.uuid4()) for _ in range(9)], stage="Panic",
                       second=1))
    assert _found(store, ids[0]) == [(ids[0], "Panic"), (ids[0], "ResponseComplete")]
    assert store.count(Selector(audit_ids=[ids[0]])) == 2


def test_a_schema_3_file_is_indexed_once_at_open(tmp_path: Path, store: SQLiteStore) -> None:
    ids = [str(uuid.uuid4()) for _ in range(40)]
    store.write(_items(ids))
    store.close()
    conn = sqlite3.connect(store.path)  # as schema 3 left it: the per-event index, no runs
    conn.executescript("""
        DELETE FROM audit_ids; DELETE FROM meta WHERE key = 'audit_ids_runs';
        CREATE INDEX events_audit_id ON events (audit_id);
        UPDATE meta SET value = '3' WHERE key = 'schema_version';
    """)
    conn.close()
    store.open()
    conn = sqlite3.connect(store.path)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    runs = conn.execute("SELECT count(DISTINCT run), count(*) FROM audit_ids").fetchone()
    conn.close()
    assert "events_audit_id" not in indexes
    assert runs == (5, 40)
    assert all(_found(store, i) == [(i, "ResponseComplete")] for i in ids)


def test_retention_drops_the_runs_it_emptied(store: SQLiteStore) -> None:
    old = [str(uuid.uuid4()) for _ in range(20)]
    new = [str(uuid.uuid4()) for _ in range(20)]
    store.write(_items(old, second=1))
    store.write(_items(new, second=2))

    def runs() -> list[int]:
        return [r for (r,) in store._reader().execute(
            "SELECT DISTINCT run FROM audit_ids ORDER BY run")]

    assert runs() == [0, 1, 2, 3, 4]
    store.prune(older_than=store.page(Selector(audit_ids=[new[0]]))[0].time)
    assert runs() == [2, 3, 4]  # run 2 holds ids 17-24: the last old ones and new ones
    assert all(_found(store, i) == [] for i in old)
    assert all(_found(store, i) == [(i, "ResponseComplete")] for i in new)
    store.prune(older_than=2**62)  # everything: ids start again from 1, and so do the runs
    assert runs() == [] and audit_ids.indexed_runs(store._writer_conn()) == 0
    again = [str(uuid.uuid4()) for _ in range(10)]
    store.write(_items(again, second=3))
    assert all(_found(store, i) == [(i, "ResponseComplete")] for i in again)
