"""Hostile strings cost bounded memory and disk: long values are indexed by their head and a
hash, the writer's dictionary cache is bounded and filled lazily, and retention sweeps the
strings no event refers to any more (issue 17)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from auditsink.model import decode_body
from auditsink.selector import INDEXED_CHARS, Selector, compile_predicate, parse_query
from auditsink.store.base import open_store
from auditsink.timeutil import format_micros

OLD = 1_700_000_000_000_000
NEW = 1_795_000_000_000_000


def _items(agents: list[str], when: int) -> list[Any]:
    stamp = format_micros(when)
    lines = [{"level": "Metadata", "auditID": f"ua-{when}-{i}", "stage": "ResponseComplete",
              "verb": "get", "user": {"username": "alice"}, "userAgent": agent,
              "requestURI": f"/api/v1/namespaces/demo/pods/p{i}-{when}",
              "objectRef": {"resource": "pods", "namespace": "demo", "name": f"p{i}"},
              "stageTimestamp": stamp, "requestReceivedTimestamp": stamp}
             for i, agent in enumerate(agents)]
    items, bad = decode_body(json.dumps(lines).encode())
    assert not bad
    return items


def _strings(path: str) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        count, longest = conn.execute("SELECT count(*), max(length(value)) FROM strings").fetchone()
    finally:
        conn.close()
    return count, longest


def test_long_values_are_indexed_by_head_and_hash(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    store.open()
    agents = ["A" * 5_000_000 + str(i) for i in range(3)]  # 5 MB each, differing at the end
    items = _items(agents, NEW)
    store.write(items)
    try:
        assert _strings(store.path)[1] <= INDEXED_CHARS  # type: ignore[attr-defined]
        # Three distinct values stay three (the hash tells them apart) ...
        for i, agent in enumerate(agents):
            selector = Selector(user_agents=[agent])
            found = store.page(selector)
            assert [json.loads(e.raw)["auditID"] for e in found] == [f"ua-{NEW}-{i}"]
            predicate = compile_predicate(selector)
            assert predicate is not None
            assert [predicate(it.event, "") for it in items] == [j == i for j in range(3)]
        # ... a substring of the head finds them all, and the event keeps every byte.
        assert len(store.page(parse_query("userAgent:AAAAAAAAAA"))) == 3
        assert len(json.loads(store.page(Selector())[0].raw)["userAgent"]) > 5_000_000
    finally:
        store.close()


def test_retention_sweeps_unreferenced_strings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    store = open_store(url)
    store.open()
    other = open_store(url)  # a second writer of the same file (serve x2 on one volume)
    other.open()
    try:
        other.write(_items(["shared-agent"], NEW))  # `other` caches the id of shared-agent
        store.write(_items([f"old-agent-{i}" for i in range(200)] + ["shared-agent"], OLD))
        before, _ = _strings(store.path)  # type: ignore[attr-defined]
        other.prune(OLD + 1)  # the oldest events go; so do strings only they referred to
        swept, _ = _strings(store.path)  # type: ignore[attr-defined]
        assert before - swept >= 400  # 200 agents and 200 request paths
        assert store.page(parse_query("userAgent:old-agent")) == []
        # The sweep happened in `other`; `store` cached ids it may have deleted and must not
        # use them: a new event with a swept agent is found by it again.
        store.write(_items(["old-agent-7", "shared-agent"], NEW + 1))
        found = store.page(parse_query("userAgent:old-agent-7"))
        assert len(found) == 1
        assert len(store.page(Selector(user_agents=["shared-agent"]))) == 2
        assert store.group_counts(Selector(), ["user"])[0]["user"] == "alice"
    finally:
        other.close()
        store.close()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_restart_does_not_reload_hostile_strings(server_factory: Any) -> None:
    # Found in issue 17: six 50 MB user agents stayed in memory for good (400 MiB), as every
    # string was loaded back at start. Eight MB each here; what a restart costs is measured.
    server = server_factory("--format", "none", "--no-rules")
    for i in range(6):
        body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
            {"level": "Metadata", "auditID": f"big-{i}", "stage": "ResponseComplete",
             "userAgent": chr(66 + i) * 8_000_000, "stageTimestamp": format_micros(NEW)}]})
        assert server.post(body.encode())[0] == 200
    server.stop()
    assert server.proc is None
    again = server.start()
    assert again.proc is not None
    rss = _rss_mib(again.proc.pid)  # 48 MB of user agents; an empty store's serve: ~50 MiB
    assert rss < 80, f"{rss:.0f} MiB after a restart"  # measured: 53
    status, page = again.api_get("/api/v1/events?limit=6")
    assert status == 200 and len(page["events"]) == 6
    assert _strings(f"{again.workdir}/auditsink.db")[1] <= INDEXED_CHARS
