"""Three ``auditsink serve`` replicas on one PostgreSQL: batches spread over them, retried to a
different replica, one replica SIGKILLed under load; every acknowledged event is stored once,
and a consumer paging by log position meanwhile sees every event exactly once."""

from __future__ import annotations

import http.client
import json
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import ServerProcess

from auditsink.store.base import Selector, open_store

pytestmark = pytest.mark.postgres


def _batch(n: int) -> tuple[list[str], bytes]:
    """An EventList of ``n`` fresh events and their auditIDs."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    items = [
        {"level": "Request", "auditID": i, "stage": "ResponseComplete", "verb": "create",
         "user": {"username": "loader", "groups": ["system:authenticated"]},
         "objectRef": {"resource": "configmaps", "namespace": "load", "name": i[:8], "apiVersion": "v1"},
         "requestObject": {"kind": "ConfigMap", "data": {"k": "v" * 300}},
         "responseStatus": {"metadata": {}, "code": 201},
         "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
         "stageTimestamp": "2026-11-26T10:00:00.000002Z"}
        for i in ids
    ]
    return ids, json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).encode()


def _post(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/?timeout=30s", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_replicas_store_every_acknowledged_event_once(tmp_path: Path, postgres_url: str) -> None:
    replicas = []
    for n in range(3):
        workdir = tmp_path / f"replica{n}"
        workdir.mkdir()
        replicas.append(ServerProcess(workdir, "--store", postgres_url, "--format", "none",
                                      "--no-rules", api=False).start())
    ports = [r.port for r in replicas]
    acked: list[str] = []
    retried_elsewhere = 0
    lock = threading.Lock()
    stop = threading.Event()

    def sender(seed: int) -> None:
        nonlocal retried_elsewhere
        rng = random.Random(seed)
        pending: tuple[list[str], bytes] | None = None
        while not stop.is_set():
            ids, body = pending or _batch(rng.randint(1, 150))
            first, second = rng.sample(ports, 2)
            try:
                status = _post(first, body)
            except (OSError, http.client.HTTPException):
                pending = (ids, body)  # unacknowledged: resend, maybe to another replica
                continue
            if status != 200:
                pending = (ids, body)
                continue
            with lock:
                acked.extend(ids)
            pending = None
            if rng.random() < 0.3:
                # The API server resends a batch whose answer it lost; behind a load balancer
                # the resend lands on another replica.
                try:
                    if _post(second, body) == 200:
                        with lock:
                            retried_elsewhere += 1
                except (OSError, http.client.HTTPException):
                    pass

    # Meanwhile a consumer follows the log by position, as detect.py and notify do.
    reader = open_store(postgres_url)
    reader.open(start_writer=False)  # type: ignore[call-arg]
    seen: list[str] = []
    consumer_done = threading.Event()

    def consume() -> None:
        position = 0
        while True:
            finished = consumer_done.is_set()
            page = reader.query(Selector(), limit=500, after_id=position, newest_first=False)
            seen.extend(json.loads(e.raw)["auditID"] for e in page)
            if page:
                position = page[-1].id
            elif finished:
                return
            else:
                time.sleep(0.01)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(6)]
    consumer = threading.Thread(target=consume)
    for t in (*threads, consumer):
        t.start()
    try:
        time.sleep(1.5)
        replicas[0].stop(signal.SIGKILL)  # mid-load: its in-flight batches go unacknowledged
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        for replica in replicas[1:]:
            replica.stop()
        consumer_done.set()
        consumer.join()
        reader.close()
    assert len(acked) > 1000, "the load was too light to mean anything"
    assert retried_elsewhere > 5
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT audit_id, count(*) FROM events GROUP BY audit_id, stage").fetchall()
    counts: dict[str, int] = dict(rows)
    missing = [i for i in acked if i not in counts]
    assert not missing, f"{len(missing)} acknowledged events were lost"
    assert all(n == 1 for n in counts.values()), "an event was stored twice"
    assert len(seen) == len(set(seen)) == len(counts), "the consumer missed or repeated events"
