"""The SQLite store on real files: durability contract, deduplication, selectors, retention."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from auditsink.model import decode_body
from auditsink.store.base import Selector, StoreError, open_store
from auditsink.store.sqlite import SQLiteStore, path_from_url
from auditsink.timeutil import parse_timestamp


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
    with pytest.raises(StoreError, match="PostgreSQL"):
        open_store("postgresql://localhost/db")


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/nope/a.db")
    with pytest.raises(StoreError, match="does not exist"):
        store.open()


def test_exact_bytes_round_trip(tmp_path: Path, fixtures_dir: Path) -> None:
    items = _fixture_items(fixtures_dir)
    store = _store(tmp_path)
    result = store.write(items)
    assert (result.stored, result.duplicates) == (974, 0)
    back = list(store.iter_all(Selector()))
    assert [e.raw for e in back] == [i.raw for i in items]
    store.close()


def test_retries_in_any_order_are_stored_once(tmp_path: Path, fixtures_dir: Path) -> None:
    items = _fixture_items(fixtures_dir)
    store = _store(tmp_path)
    batches = [items[i : i + 400] for i in range(0, len(items), 400)]
    for batch in batches:
        store.write(batch)
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    for i in range(0, len(shuffled), 100):
        result = store.write(shuffled[i : i + 100])
        assert result.stored == 0
    assert store.duplicates == 974
    assert store.stats(Selector())["events"] == 974
    # The same events from another cluster are other events.
    assert store.write(items[:10], cluster="other").stored == 10
    store.close()


def test_dedup_key_is_not_the_audit_id_alone(tmp_path: Path) -> None:
    # A client can choose its own Audit-ID; a reused one must not hide a later event.
    lines = [
        {
            "level": "Metadata",
            "auditID": "chosen",
            "stage": "ResponseComplete",
            "verb": "get",
            "stageTimestamp": f"2026-11-26T10:00:0{i}.000000Z",
            "requestReceivedTimestamp": "2026-11-26T10:00:00.000000Z",
        }
        for i in range(3)
    ]
    items, _ = decode_body(json.dumps(lines).encode())
    store = _store(tmp_path)
    assert store.write(items).stored == 3
    assert len(store.query(Selector(audit_ids=["chosen"]))) == 3
    store.close()


def test_selectors_answer_the_common_questions(tmp_path: Path, fixtures_dir: Path) -> None:
    store = _store(tmp_path)
    store.write(_fixture_items(fixtures_dir))

    def ask(**kwargs: Any) -> list[dict[str, Any]]:
        return [
            json.loads(e.raw)
            for e in store.query(Selector(**kwargs), limit=1000, newest_first=False)
        ]

    web = ask(
        resources=["pods"],
        namespaces=["demo"],
        names=["web"],
        verbs=["create", "delete"],
        stages=["ResponseComplete"],
    )
    assert [(e["user"]["username"], e["verb"], e["responseStatus"]["code"]) for e in web] == [
        ("admin", "create", 201),
        ("alice", "delete", 403),
        ("admin", "delete", 200),
    ]
    alice = ask(users=["alice"])
    assert {(e["verb"], e["objectRef"]["resource"]) for e in alice} == {
        ("list", "secrets"),
        ("list", "pods"),
        ("delete", "pods"),
    }
    forbidden = ask(codes=["403"])
    assert {e["user"]["username"] for e in forbidden} == {"alice"} and len(forbidden) == 2
    client_errors = ask(codes=["4xx"])
    assert all(400 <= e["responseStatus"]["code"] < 500 for e in client_errors)
    assert {e["responseStatus"]["code"] for e in client_errors} >= {400, 403, 404}
    exec_events = ask(resources=["pods/exec"])
    assert exec_events and all(e["objectRef"]["subresource"] == "exec" for e in exec_events)
    assert len(ask(resources=["pods/*"])) > len(ask(resources=["pods"]))
    assert ask(groups=["system:masters"]) and not ask(groups=["nobody"])
    assert ask(users=["nobody"]) == []
    one = alice[0]["auditID"]
    assert {e["stage"] for e in ask(audit_ids=[one])} == {"RequestReceived", "ResponseComplete"}
    # time range
    times = sorted(parse_timestamp(e["stageTimestamp"]) for e in ask())
    middle = times[len(times) // 2]
    assert len(ask(since=middle)) + len(ask(until=middle)) == 974
    stats = store.stats(Selector())
    assert stats["users"][0] == {"value": "system:apiserver", "count": 843}
    assert {"code": 403, "count": 2} in stats["failures"]
    store.close()


def test_paging_by_log_position(tmp_path: Path, fixtures_dir: Path) -> None:
    store = _store(tmp_path)
    store.write(_fixture_items(fixtures_dir))
    seen: list[int] = []
    before = None
    while True:
        page = store.query(Selector(), limit=300, before_id=before)
        seen += [e.id for e in page]
        if len(page) < 300:
            break
        before = page[-1].id
    assert len(seen) == len(set(seen)) == 974
    assert seen == sorted(seen, reverse=True)
    store.close()


def test_retention_prunes_old_events_and_their_bodies(tmp_path: Path, fixtures_dir: Path) -> None:
    items = _fixture_items(fixtures_dir)
    store = _store(tmp_path)
    store.write(items[:500])
    store.write(items[500:])
    times = sorted(parse_timestamp(i.event.stageTimestamp) for i in items)
    cutoff = times[600]
    deleted = store.prune(cutoff, chunk=50)
    assert deleted == 600
    remaining = list(store.iter_all(Selector()))
    assert len(remaining) == 374
    assert all(parse_timestamp(json.loads(e.raw)["stageTimestamp"]) >= cutoff for e in remaining)
    assert store.prune(times[-1] + 1) == 374
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 0
    conn.close()
    store.close()


def test_rejected_items_are_kept(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _, bad = decode_body(b'[1, {"level": 2}]')
    store.reject(bad, cluster="c")
    store.close()
    reader = open_store(f"sqlite:///{tmp_path}/a.db")
    reader.open(start_writer=False)  # type: ignore[call-arg]
    kept = reader.rejected()
    assert [(r.cluster, r.error.split(":")[0]) for r in kept] == [("c", "item 1"), ("c", "item 0")]


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
