"""The read API of a real ``auditsink serve``: time order, cursors, follow, exports, limits."""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from auditsink.timeutil import format_micros

NEWEST = 1_795_000_000_000_000


def _event(audit_id: str, micros: int, **extra: Any) -> dict[str, Any]:
    stamp = format_micros(micros)
    return {"level": "Metadata", "auditID": audit_id, "stage": "ResponseComplete",
            "verb": "get", "user": {"username": extra.pop("user", "alice")},
            "objectRef": {"resource": "pods", "namespace": "demo", "name": "web"},
            "requestReceivedTimestamp": stamp, "stageTimestamp": stamp, **extra}


def _body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                       "items": events}).encode()


def _pages(server: Any, params: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    cursor_name = "after" if params.get("order") == "oldest" else "before"
    cursor = None
    while True:
        query = {**params, **({cursor_name: cursor} if cursor else {})}
        status, page = server.api_get("/api/v1/events?" + urllib.parse.urlencode(query))
        assert status == 200, page
        docs += page["events"]
        cursor = page["next"]
        if cursor is None:
            return docs


def test_batches_out_of_time_order_page_in_time_order(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--no-rules")
    rng = random.Random(7)
    events = [_event(f"e{i:03d}", NEWEST - i * 1_000_000) for i in range(300)]  # e000 newest
    batches = [events[i:i + 25] for i in range(0, 300, 25)]
    rng.shuffle(batches)  # the newest batch may arrive last, the oldest first
    for number, batch in enumerate(batches):
        cluster = "a" if number % 2 else "b"
        assert server.post(_body(batch), path=f"/clusters/{cluster}")[0] == 200
    ids = [f"e{i:03d}" for i in range(300)]
    for limit in ("7", "100"):
        newest = _pages(server, {"limit": limit})
        assert [d["event"]["auditID"] for d in newest] == ids  # newest first, by time
        oldest = _pages(server, {"limit": limit, "order": "oldest"})
        assert [d["event"]["auditID"] for d in oldest] == ids[::-1]
    one = _pages(server, {"cluster": "a", "limit": "10"})
    assert {d["cluster"] for d in one} == {"a"} and 100 < len(one) < 200
    status, answer = server.api_get("/api/v1/events?limit=5&total=1&cluster=b")
    assert answer["total"] == 300 - len(one)
    assert server.api_get("/api/v1/clusters")[1] == {"clusters": ["a", "b"]}


def _burst(server: Any, batches: int = 20, size: int = 400) -> set[str]:
    """Back-to-back EventLists of distinct events, times shuffled within the last minute."""
    rng = random.Random(20)
    sent = set()
    now = int(time.time() * 1_000_000)
    for b in range(batches):
        events = [_event(f"burst-{b}-{i}", now - rng.randrange(60_000_000)) for i in range(size)]
        sent.update(e["auditID"] for e in events)
        status, answer = server.post(_body(events))
        assert status == 200, answer
    return sent


def test_follow_delivers_a_burst_exactly_once(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--no-rules")
    status, start = server.api_get("/api/v1/events/follow?user=alice")
    position = start["position"]
    got: list[str] = []
    done = threading.Event()

    def follow() -> None:
        nonlocal position
        while True:
            finished = done.is_set()
            status, page = server.api_get(
                f"/api/v1/events/follow?user=alice&after={position}&limit=300")
            assert status == 200, page
            got.extend(d["event"]["auditID"] for d in page["events"])
            position = page["position"]
            if not page["more"]:
                if finished:
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=follow)
    thread.start()
    sent = _burst(server)
    done.set()
    thread.join(timeout=60)
    assert len(got) == len(set(got)) == 8000 and set(got) == sent


def test_tail_follow_prints_a_burst_exactly_once(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory("--format", "none", "--no-rules")
    assert server.post(_body([_event("marker", NEWEST)]))[0] == 200
    out = tmp_path / "tail.jsonl"
    with open(out, "wb") as sink:
        tail = subprocess.Popen([sys.executable, "-m", "auditsink", "tail", "-f", "-n", "1",
                                 "--format", "jsonl", "--interval", "0.05", "--store",
                                 f"sqlite:///{server.workdir}/auditsink.db"], stdout=sink)
        try:
            deadline = time.monotonic() + 30
            while b"marker" not in out.read_bytes():  # tail has read the end of the log
                assert time.monotonic() < deadline and tail.poll() is None
                time.sleep(0.05)
            sent = _burst(server)
            while time.monotonic() < deadline + 60 and out.read_bytes().count(b"\n") < 8001:
                time.sleep(0.1)
            time.sleep(0.5)  # anything printed twice would show up now
        finally:
            tail.terminate()
            tail.wait(timeout=10)
    printed = [json.loads(line)["auditID"] for line in out.read_text().splitlines()][1:]
    assert len(printed) == len(set(printed)) == 8000 and set(printed) == sent


def test_parameters_are_validated(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--no-rules")
    for query, message in [
        ("limit=-1", "from 1 to 1000"), ("limit=0", "from 1 to 1000"),
        ("limit=1001", "from 1 to 1000"), ("limit=" + "9" * 40, "from 1 to 1000"),
        ("before=12", "invalid cursor"), ("after=x-1&order=oldest", "invalid cursor"),
        ("order=sideways", "expected newest or oldest"), ("requests=maybe", "expected 1 or 0"),
        ("stage=Done", "unknown stage"), ("q=colour:red", "unknown field"),
        ("sourceIP=10.0.0.0/99", "invalid sourceIP"), ("before=1-1&order=oldest", "before="),
    ]:
        status, answer = server.api_get(f"/api/v1/events?{query}")
        assert status == 400 and message in answer["error"], (query, answer)
    assert server.api_get("/api/v1/events/follow?after=" + "9" * 30)[0] == 400
    assert server.api_get("/api/v1/counts?bucket=0")[0] == 400
    assert server.api_get("/api/v1/alerts?limit=-1")[0] == 400
    assert server.api_get("/api/v1/events/export?format=xml")[0] == 400
    assert server.request("POST", "/api/v1/events", port=server.api_port)[0] == 405


def test_exports_stream_every_match(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--no-rules")
    events = [_event(f"x{i:04d}", NEWEST - i, user="alice" if i % 2 else "=cmd|' /C calc'!A0")
              for i in range(3000)]
    for start in range(0, 3000, 400):
        assert server.post(_body(events[start:start + 400]))[0] == 200
    status, headers, body = server.exchange(
        "GET", "/api/v1/events/export?format=jsonl&user=alice", port=server.api_port)
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    assert "content-length" not in headers  # streamed
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert len(lines) == 1500 and lines[0]["kind"] == "Event"  # audit-log lines, re-importable
    oldest_first = [f"x{i:04d}" for i in range(2999, 0, -2)]
    assert [e["auditID"] for e in lines] == oldest_first
    status, headers, body = server.exchange("GET", "/api/v1/events/export?format=csv",
                                            port=server.api_port)
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 3000 and rows[0]["auditID"] == "x2999"
    assert {r["user"] for r in rows} == {"alice", "'=cmd|' /C calc'!A0"}  # no formula runs


def test_counts_and_alert_groups(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--no-rules")
    events = [_event(f"c{i}", NEWEST - i * 10_000_000) for i in range(60)]  # 10 min
    assert server.post(_body(events))[0] == 200
    since, until = format_micros(NEWEST - 600_000_000), format_micros(NEWEST + 1)
    status, counts = server.api_get(f"/api/v1/counts?bucket=60&since={since}&until={until}")
    assert status == 200 and counts["total"] == 60 and counts["bucket_seconds"] == 60
    assert sum(c["count"] for c in counts["counts"]) == 60 and len(counts["counts"]) == 11
    status, groups = server.api_get("/api/v1/alerts/groups")
    assert status == 200 and groups == {"groups": []}
