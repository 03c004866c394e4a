"""Bodies that cost memory, the log or the batch (issue 17), against a real server process.

Before: one body could carry 400k tiny items past --queue-events, chunked bodies skipped the
in-flight byte budget (a 233 KB gzip body took RSS to 627 MiB), a 20 MB ``kind`` became a 20 MB
log line and answer, and one lone surrogate escape made a whole batch of 400 a 400.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from security.attack import connect, event, event_list, read_answer, rss_mib

TINY = b'{"level":"Metadata","auditID":"x","stage":"RequestReceived"}'


def _tiny_items(count: int) -> bytes:
    return b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + b",".join(
        [TINY] * count) + b"]}"


def test_gzip_bomb_of_tiny_items_is_refused_cheaply(server_factory: Any) -> None:
    server = server_factory("--format", "none")
    body = gzip.compress(_tiny_items(1_000_000), 9)  # 60 MB of items in a few hundred KB
    assert len(body) < 400_000
    before = rss_mib(server)
    peak = [before]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(server))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        status, answer = server.post(body, Content_Encoding="gzip")
    finally:
        done.set()
        watcher.join()
    assert status == 413 and "1000000 events in one body" in answer["error"]
    assert server.post(event_list(event("after-bomb")))[0] == 200
    # Decoded, the million events took 600+ MiB; refused before decoding, the body and its
    # item offsets are what it costs, and only while it is being read.
    assert peak[0] - before < 250, f"peak RSS grew {peak[0] - before:.0f} MiB"


def test_events_per_body_count_against_the_queue(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--queue-events", "1000")
    status, answer = server.post(_tiny_items(1001))
    assert status == 413 and "--queue-events" in answer["remedy"]
    assert server.post(event_list(*[event(f"q{i}") for i in range(1000)]))[0] == 200


def test_chunked_bodies_count_against_the_inflight_budget(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--inflight-budget", "1MiB")
    head = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 600_000
    with connect(server.port) as first, connect(server.port) as second:
        first.sendall(head + b"%x\r\n%s\r\n" % (len(chunk), chunk))  # held open: no last chunk
        time.sleep(0.3)
        second.sendall(head + b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, body = read_answer(second)
        assert status == 429 and b"in flight" in body
        body_end = event_list(event("chunked"))
        first.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body_end), body_end))
        assert read_answer(first)[0] == 200
    assert server.post(event_list(event("budget-free")))[0] == 200  # released after the answer


def test_decompressed_bytes_count_against_the_inflight_budget(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--inflight-budget", "1MiB")
    big = gzip.compress(event_list(*[event(f"z{i}", userAgent="u" * 2000) for i in range(400)]))
    assert len(big) < 100_000  # small on the wire, ~900 KB inflated
    with connect(server.port) as holder:
        holder.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 300000\r\n\r\n" + b" " * 290_000)  # 10 KB to come
        time.sleep(0.3)
        status, answer = server.post(big, Content_Encoding="gzip")
        assert status == 429 and "in flight" in answer["error"]
    assert server.post(big, Content_Encoding="gzip")[0] == 200  # alone, it fits


def test_huge_strings_make_short_errors(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory("--format", "none")
    log_before = len(server.stderr())
    status, answer = server.post(json.dumps({"kind": "K" * 20_000_000, "items": []}).encode())
    assert status == 400 and len(json.dumps(answer)) < 600
    # An item with a 20 MB stage: kept aside as rejected, with a short reason.
    status, answer = server.post(event_list(event("ok"), event("bad", stage="S" * 20_000_000)))
    assert status == 200 and answer == {"stored": 1, "duplicates": 0, "rejected": 1}
    assert len(server.stderr()) - log_before < 3_000
    rejected = subprocess.run(
        [sys.executable, "-m", "auditsink", "rejected", "--store", f"sqlite:///{tmp_path}/auditsink.db"],
        capture_output=True, check=True, timeout=60)
    assert 0 < len(rejected.stdout) < 1_000


def test_a_lone_surrogate_costs_nothing(server_factory: Any, fixtures_dir: Path) -> None:
    """Go's decoder (the sender's) reads "\\ud800" as U+FFFD; so do we, for the whole batch."""
    server = server_factory("--format", "none")
    body = (fixtures_dir / "batch-bodies.jsonl").read_bytes().splitlines()[0]
    count = len(json.loads(body)["items"])
    poisoned = body.replace(b'"userAgent":"', b'"userAgent":"\\ud800', 1)
    poisoned = poisoned.replace(b'"verb":"get"', b'"verb":"get\\udc00"', 1)
    assert poisoned.count(b"\\ud800") == 1 and poisoned.count(b"\\udc00") == 1
    status, answer = server.post(poisoned)
    assert status == 200 and answer["stored"] == count and answer["rejected"] == 0
    _, page = server.api_get("/api/v1/events?limit=1000")
    agents = [e["event"].get("userAgent", "") for e in page["events"]]
    assert sum(agent.startswith("\ufffd") for agent in agents) == 1


# The fuzz: one item of a real batch is mutated inside one of its strings, the way a hostile
# client could shape what the API server audits (it copies request bodies and headers
# verbatim). The body must stay readable and the 399 neighbours stored, whatever the mutation.
MUTATIONS = [b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\udc00\\ud800", b"\\u0000", b"\xff\xfe",
             b"\xed\xa0\x80", b"\xc3", b"\\u001b]8;;http://x\\u0007", b"\\ud83d\\ude00",
             b"\\\\ud800", b"\\\\\\ud800"]


def test_mutation_fuzz_neighbours_survive(server_factory: Any, fixtures_dir: Path) -> None:
    server = server_factory("--format", "none", "--store", "none", api=False)
    bodies = (fixtures_dir / "batch-bodies.jsonl").read_bytes().splitlines()
    rng = random.Random(17)
    posted = 0
    for round_ in range(60):
        body = bodies[round_ % len(bodies)]
        items = json.loads(body)["items"]
        # a mutation at a random string value inside the body (': "' starts one)
        starts = [i for i in range(len(body) - 2) if body[i:i + 2] == b':"']
        at = rng.choice(starts) + 2
        mutation = rng.choice(MUTATIONS)
        mutated = body[:at] + mutation + body[at:]
        status, answer = server.post(mutated)
        posted += 1
        assert status == 200, (round_, mutation, answer)
        assert answer["stored"] + answer["rejected"] == len(items), (round_, mutation, answer)
        assert answer["rejected"] <= 1, (round_, mutation, answer)
    assert posted == 60
    assert server.proc is not None and server.proc.poll() is None
