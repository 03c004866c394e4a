"""Every store backend (SQLite, PostgreSQL) against one suite: durability contract,
deduplication, selectors, paging, retention. ``store_url`` comes from tests/store/conftest.py."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from auditsink.model import decode_body
from auditsink.store.base import Alert, AlertSelector, CursorMoved, Selector, Store, open_store
from auditsink.timeutil import format_micros, parse_timestamp


def _store(url: str, **options: Any) -> Any:
    store = open_store(url, **options)
    store.open()
    return store


def _fixture_items(fixtures_dir: Path) -> list[Any]:
    items, bad = decode_body((fixtures_dir / "audit.log").read_bytes())
    assert not bad
    return items


def _blob_count(store: Store) -> int:
    """Compressed body rows left in the store, whatever the backend."""
    if store.url.startswith("sqlite"):
        conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        try:
            return int(conn.execute("SELECT count(*) FROM blobs").fetchone()[0])
        finally:
            conn.close()
    return int(store._reader().execute("SELECT count(*) FROM blobs").fetchone()[0])  # type: ignore[attr-defined]


def test_exact_bytes_round_trip(store_url: str, fixtures_dir: Path) -> None:
    items = _fixture_items(fixtures_dir)
    store = _store(store_url)
    result = store.write(items)
    assert (result.stored, result.duplicates) == (974, 0)
    back = list(store.iter_all(Selector()))
    assert [e.raw for e in back] == [i.raw for i in items]
    store.close()


def test_retries_in_any_order_are_stored_once(store_url: str, fixtures_dir: Path) -> None:
    items = _fixture_items(fixtures_dir)
    store = _store(store_url)
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


def test_dedup_key_is_not_the_audit_id_alone(store_url: str) -> None:
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
    store = _store(store_url)
    assert store.write(items).stored == 3
    assert len(store.query(Selector(audit_ids=["chosen"]))) == 3
    store.close()


def test_selectors_answer_the_common_questions(store_url: str, fixtures_dir: Path) -> None:
    store = _store(store_url)
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


def test_paging_by_log_position(store_url: str, fixtures_dir: Path) -> None:
    store = _store(store_url)
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


def test_follow_reads_only_the_rows_a_filter_keeps(store_url: str, fixtures_dir: Path) -> None:
    """``follow`` pages the log as ``query`` does, but returns only the events whose row
    passes a filter (the rules consumer's prefilter, store/sql/prefilter.py)."""
    from auditsink.store.base import Page, RowFilter

    store = _store(store_url)
    store.write(_fixture_items(fixtures_dir))
    every = [json.loads(e.raw) for e in store.iter_all(Selector())]
    filters = (RowFilter(stages=frozenset({"ResponseComplete"}), verbs=frozenset({"create"}),
                         resources=frozenset({"configmaps", "secrets"})),
               RowFilter(codes=(400, 499)),
               RowFilter(users=frozenset({"system:kube-scheduler"}),
                         namespaces=frozenset({"kube-system"}), impersonated=True))

    def kept(doc: dict[str, Any]) -> bool:
        return ((doc["stage"] == "ResponseComplete" and doc["verb"] == "create"
                 and doc.get("objectRef", {}).get("resource") in ("configmaps", "secrets"))
                or 400 <= doc.get("responseStatus", {}).get("code", 0) <= 499)

    expected = [index + 1 for index, doc in enumerate(every) if kept(doc)]
    assert 0 < len(expected) < len(every) / 2
    found: list[int] = []
    after, examined = 0, 0
    while True:
        page = store.follow(after, 300, filters)
        assert isinstance(page, Page) and page.examined <= 300
        if not page.examined:
            assert page.last == after and not page
            break
        assert all(after < e.id <= page.last for e in page) and page.last > after
        found += [e.id for e in page]
        examined += page.examined
        after = page.last
    assert found == expected and examined == len(every) == 974
    assert [e.id for e in store.follow(0, 1000, (RowFilter(),))] == list(range(1, 975))
    assert not store.follow(0, 1000, (RowFilter(verbs=frozenset()),))
    store.close()


def _event_at(audit_id: str, micros: int, user: str, namespace: str) -> dict[str, Any]:
    text = format_micros(micros)
    return {"level": "Metadata", "auditID": audit_id, "stage": "ResponseComplete", "verb": "get",
            "user": {"username": user}, "stageTimestamp": text, "requestReceivedTimestamp": text,
            "objectRef": {"resource": "pods", "namespace": namespace, "name": "web"}}


def test_log_order_pages_of_a_busy_user_equal_the_unbounded_answer(store_url: str) -> None:
    # Log order (consumers): events logged late with old times (an import, a retry hours
    # later) must still come first, events logged early with recent times keep their place on
    # deep pages, and pages must tile the log exactly, on every backend.
    hour = 3_600_000_000
    newest = 1_795_000_000_000_000
    lines = []
    for i in range(600):  # 50 days, one event every 2 hours, alice and bob in turn
        lines.append(_event_at(f"regular-{i}", newest - (599 - i) * 2 * hour,
                               "alice" if i % 2 else "bob", "demo" if i % 3 else "prod"))
    for i in (450, 300, 150):  # logged long ago with a recent time (a sender's clock ahead)
        lines.insert(i, _event_at(f"early-{i}", newest - 3 * hour, "alice", "prod"))
    late = [_event_at(f"late-{i}", newest - 240 * hour - i, "alice", "demo") for i in range(5)]
    store = _store(store_url)
    items, bad = decode_body(json.dumps(lines).encode())
    assert not bad
    store.write(items)
    late_items, _ = decode_body(json.dumps(late).encode())
    store.write(late_items)  # logged after every other event, though 10 days old

    logged = [(e.id, json.loads(e.raw)) for e in store.iter_all(Selector())]
    cases = [(Selector(users=["alice"]), lambda e: e["user"]["username"] == "alice"),
             (Selector(namespaces=["prod"]), lambda e: e["objectRef"]["namespace"] == "prod"),
             (Selector(users=["alice"], since=newest - 100 * hour),
              lambda e: e["user"]["username"] == "alice"
              and parse_timestamp(e["stageTimestamp"]) >= newest - 100 * hour),
             (Selector(namespaces=["demo"], until=newest - 200 * hour),
              lambda e: e["objectRef"]["namespace"] == "demo"
              and parse_timestamp(e["stageTimestamp"]) < newest - 200 * hour)]
    for selector, matches in cases:
        expected = [ident for ident, event in reversed(logged) if matches(event)]
        for limit in (1, 10, 37):
            seen: list[int] = []
            before = None
            while True:
                page = store.query(selector, limit=limit, before_id=before)
                seen += [e.id for e in page]
                if len(page) < limit:
                    break
                before = page[-1].id
            assert seen == expected, (selector, limit)
    first = store.query(Selector(users=["alice"]), limit=10)
    latest = [f"late-{i}" for i in range(4, -1, -1)]
    assert [json.loads(e.raw)["auditID"] for e in first[:5]] == latest
    store.close()


def test_time_order_pages_tile_the_matches_exactly_once(store_url: str) -> None:
    # Batches arrive concurrently and out of order (design.md): a page in time order must be
    # the stageTimestamp order whatever the arrival order, ties broken by log position, and
    # keyset cursors must page both ways with no gap and no repeat, by OR as a user too.
    import random

    rng = random.Random(18)
    newest = 1_795_000_000_000_000
    events = []
    for i in range(500):
        event = _event_at(f"e-{i}", newest - rng.randrange(0, 50) * 1_000_000,  # many ties
                          rng.choice(["alice", "bob", "admin"]), rng.choice(["demo", "prod"]))
        if event["user"]["username"] == "admin" and i % 2:
            event["impersonatedUser"] = {"username": "alice"}
        event["stage"] = rng.choice(["RequestReceived", "ResponseComplete"])
        events.append(event)
    store = _store(store_url)
    for start in range(0, 500, 50):  # ten batches, each shuffled on its way
        batch = events[start:start + 50]
        rng.shuffle(batch)
        items, bad = decode_body(json.dumps(batch).encode())
        assert not bad
        store.write(items)
    stored = [(e.time, e.id, json.loads(e.raw)) for e in store.iter_all(Selector())]
    cases = [(Selector(), lambda e: True),
             (Selector(users=["alice"]), lambda e: "alice" in (
                 e["user"]["username"], (e.get("impersonatedUser") or {}).get("username"))),
             (Selector(namespaces=["prod"], stages=["ResponseComplete"]),
              lambda e: e["objectRef"]["namespace"] == "prod" and e["stage"] == "ResponseComplete")]
    for selector, matches in cases:
        expected = sorted((t, i) for t, i, e in stored if matches(e))
        assert len(expected) > 50
        for limit in (3, 100):
            for oldest_first in (False, True):
                seen: list[tuple[int, int]] = []
                key = None
                while True:
                    page = (store.page(selector, limit, after=key, oldest_first=True)
                            if oldest_first else store.page(selector, limit, before=key))
                    seen += [e.key for e in page]
                    if len(page) < limit:
                        break
                    key = page[-1].key
                assert seen == (expected if oldest_first else expected[::-1]), (selector, limit)
    # One row per request: the ResponseComplete events only, here.
    done = [e for e in store.page(Selector(), 1000, requests_only=True)]
    assert {json.loads(e.raw)["stage"] for e in done} == {"ResponseComplete"}
    assert store.count(Selector(), requests_only=True) == len(done)
    store.close()


def test_retention_prunes_old_events_and_their_bodies(store_url: str, fixtures_dir: Path) -> None:
    items = _fixture_items(fixtures_dir)
    store = _store(store_url)
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
    assert _blob_count(store) == 0
    store.close()


def test_rejected_items_are_kept(store_url: str) -> None:
    store = _store(store_url)
    _, bad = decode_body(b'[1, {"level": 2}]')
    store.reject(bad, cluster="c")
    store.close()
    reader = open_store(store_url)
    reader.open(start_writer=False)  # type: ignore[call-arg]
    kept = reader.rejected()
    assert [(r.cluster, r.error.split(":")[0]) for r in kept] == [("c", "item 1"), ("c", "item 0")]
    reader.close()


def test_one_process_at_a_time_holds_a_consumer(store_url: str) -> None:
    # Replicas on one store each start the rules; only the holder runs them.
    first, second = _store(store_url), _store(store_url)
    assert first.claim_consumer("rules")
    assert first.claim_consumer("rules"), "a held claim stays held"
    assert not second.claim_consumer("rules")
    assert second.claim_consumer("notify:webhook"), "each consumer is claimed on its own"
    first.close()
    assert second.claim_consumer("rules"), "closing (or dying) hands the consumer over"
    second.close()


def test_a_stale_cursor_commit_stores_nothing(store_url: str) -> None:
    # Two processes that both evaluated the same page: only the first commit counts.
    store = _store(store_url)
    alert = Alert(time=1, rule="r", priority=5, output="o", audit_id="a", event=3)
    store.commit_consumed("rules", 5, [alert], expected=0)
    with pytest.raises(CursorMoved):
        store.commit_consumed("rules", 5, [alert], expected=0)
    store.commit_consumed("rules", 9, [], expected=5)
    assert store.get_cursor("rules") == 9
    assert len(store.alerts(AlertSelector())) == 1
    store.close()


def test_dead_letters_are_kept_with_the_cursor(store_url: str) -> None:
    # An output's given-up batch and its cursor move in one transaction (forward/delivery.py).
    from auditsink.store.base import DeadLetter

    store = _store(store_url)
    dead = DeadLetter("output:siem", first=4, last=9, events=5, attempts=10, error="HTTP 503")
    store.commit_consumed("output:siem", 9, [], expected=0, dead_letters=[dead])
    with pytest.raises(CursorMoved):
        store.commit_consumed("output:siem", 12, [], expected=0, dead_letters=[dead])
    store.commit_consumed("output:other", 3, [])
    (kept,) = store.dead_letters("output:siem")
    assert (kept.consumer, kept.first, kept.last, kept.events, kept.attempts, kept.error) == (
        "output:siem", 4, 9, 5, 10, "HTTP 503") and kept.time > 0 and kept.id
    assert store.cursors() == {"output:other": 3, "output:siem": 9}
    assert store.dead_letters("output:other") == [] and len(store.dead_letters()) == 1
    store.drop_dead_letter(kept.id)
    assert store.dead_letters() == []
    store.close()


def test_a_partly_retried_batch_says_which_items_were_new(store_url: str,
                                                          fixtures_dir: Path) -> None:
    # serve --format json prints only what was stored, so the store says which items were new.
    items = _fixture_items(fixtures_dir)
    store = _store(store_url)
    first = store.write(items[:10])
    assert (first.stored, first.duplicates, first.duplicate_items) == (10, 0, ())
    mixed = [items[12], items[3], items[10], items[3], items[11], items[9]]
    result = store.write(mixed)
    # items[3] twice (seen before, and again within the batch), items[9] seen before.
    assert (result.stored, result.duplicates) == (3, 3)
    assert result.duplicate_items == (1, 3, 5)
    again = store.write(mixed)
    assert (again.stored, again.duplicate_items) == (0, (0, 1, 2, 3, 4, 5))
    store.close()
