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
from typing import Any

import psycopg
import pytest
from conftest import ServerProcess

from auditsink.store.base import AlertSelector, Selector, open_store

pytestmark = pytest.mark.postgres


def _batch(n: int) -> tuple[list[str], bytes]:
    """An EventList of ``n`` fresh events and their auditIDs."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    items = [
        {"level": "Request", "auditID": i, "stage": "ResponseComplete", "verb": "create",
         "user": {"username": "loader", "groups": ["system:authenticated"]},
         "objectRef": {"resource": "configmaps", "namespace": "load", "name": i[:8],
                       "apiVersion": "v1"},
         "requestObject": {"kind": "ConfigMap", "data": {"k": "v" * 300}},
         "responseStatus": {"metadata": {}, "code": 201},
         "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
         "stageTimestamp": "2026-11-26T10:00:00.000002Z"}
        for i in ids
    ]
    body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}
    return ids, json.dumps(body).encode()


def _start_replicas(tmp_path: Path, count: int, *args: str) -> list[ServerProcess]:
    """``count`` serve processes, each in its own directory, printing nothing."""
    replicas = []
    for n in range(count):
        workdir = tmp_path / f"replica{n}"
        workdir.mkdir()
        replicas.append(ServerProcess(workdir, *args, "--format", "none", api=False).start())
    return replicas


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
    replicas = _start_replicas(tmp_path, 3, "--store", postgres_url, "--no-rules")
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
        rows = conn.execute(
            "SELECT audit_id, count(*) FROM events GROUP BY audit_id, stage").fetchall()
    counts: dict[str, int] = dict(rows)
    missing = [i for i in acked if i not in counts]
    assert not missing, f"{len(missing)} acknowledged events were lost"
    assert all(n == 1 for n in counts.values()), "an event was stored twice"
    assert len(seen) == len(set(seen)) == len(counts), "the consumer missed or repeated events"


def _exec_event() -> tuple[str, bytes]:
    """A ``kubectl exec`` into a pod (fires the built-in rule *Pod Exec or Attach*)."""
    audit_id = str(uuid.uuid4())
    event = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
             "auditID": audit_id, "stage": "ResponseStarted", "verb": "create",
             "requestURI": "/api/v1/namespaces/demo/pods/web/exec?command=sh",
             "user": {"username": "alice", "groups": ["system:authenticated"]},
             "objectRef": {"resource": "pods", "namespace": "demo", "name": "web",
                           "apiVersion": "v1", "subresource": "exec"},
             "responseStatus": {"metadata": {}, "code": 101},
             "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
             "stageTimestamp": "2026-11-26T10:00:00.000002Z"}
    return audit_id, json.dumps(event).encode()


def _rules_active(replica: ServerProcess) -> bool:
    status, text = replica.request("GET", "/metrics")
    assert status == 200
    return b"\nauditsink_rules_active 1.0\n" in text


def _wait(condition: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def test_rules_run_on_one_replica_and_move_when_it_dies(tmp_path: Path, postgres_url: str) -> None:
    replicas = _start_replicas(tmp_path, 2, "--store", postgres_url)
    reader = open_store(postgres_url)
    reader.open(start_writer=False)  # type: ignore[call-arg]

    def alerts_for(audit_id: str) -> int:
        return len(reader.alerts(AlertSelector(audit_ids=[audit_id])))

    try:
        _wait(lambda: sum(_rules_active(r) for r in replicas) == 1, "one replica runs the rules")
        leader = next(r for r in replicas if _rules_active(r))
        standby = next(r for r in replicas if r is not leader)
        # Sent to the standby: the leader finds it in the shared store and raises it once.
        first, body = _exec_event()
        assert standby.post(body)[0] == 200
        _wait(lambda: alerts_for(first) == 1, "the leader raised the alert")
        assert not _rules_active(standby)
        leader.stop(signal.SIGKILL)  # its PostgreSQL session ends, and with it the claim
        second, body = _exec_event()
        assert standby.post(body)[0] == 200
        _wait(lambda: _rules_active(standby), "the standby took the rules over")
        _wait(lambda: alerts_for(second) == 1, "the new leader raised the next alert")
        time.sleep(1)  # a duplicate, if any, would show up now
        assert alerts_for(first) == 1 and alerts_for(second) == 1
    finally:
        reader.close()
        for replica in replicas:
            if replica.proc is not None:  # the leader was killed already
                replica.stop(signal.SIGKILL)
