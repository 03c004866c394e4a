"""SIGKILL under sustained load: every event that got a 200 is stored exactly once."""

from __future__ import annotations

import http.client
import json
import random
import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from conftest import ServerProcess


def _batch(n: int) -> tuple[list[str], bytes]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    items = [
        {
            "level": "Request",
            "auditID": i,
            "stage": "ResponseComplete",
            "verb": "create",
            "user": {"username": "loader", "groups": ["system:authenticated"]},
            "objectRef": {
                "resource": "configmaps",
                "namespace": "load",
                "name": i[:8],
                "apiVersion": "v1",
            },
            "requestObject": {"kind": "ConfigMap", "data": {"k": "v" * 300}},
            "responseStatus": {"metadata": {}, "code": 201},
            "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
            "stageTimestamp": "2026-11-26T10:00:00.000002Z",
        }
        for i in ids
    ]
    return ids, json.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}
    ).encode()


def test_sigkill_loses_no_acknowledged_event(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--format", "none", api=False).start()
    port = server.port
    acked: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def sender() -> None:
        pending: tuple[list[str], bytes] | None = None
        while not stop.is_set():
            ids, body = pending or _batch(random.randint(1, 200))
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("POST", "/?timeout=30s", body, {"Content-Type": "application/json"})
                status = conn.getresponse().status
            except (OSError, http.client.HTTPException):
                pending = (ids, body)  # unacknowledged: resend it, as the API server would
                time.sleep(0.02)
                continue
            finally:
                # also when the server was killed mid-request: a socket left to the garbage
                # collector is a ResourceWarning, an error under filterwarnings = error
                conn.close()
            if status == 200:
                with lock:
                    acked.extend(ids)
                pending = None
            else:
                pending = (ids, body)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    rng = random.Random()
    try:
        for _ in range(4):
            time.sleep(rng.uniform(0.3, 1.2))
            server.stop(signal.SIGKILL)
            server = ServerProcess(tmp_path, "--format", "none", api=False)
            server.port = port
            server.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop()
    assert len(acked) > 1000, "the load was too light to mean anything"
    conn = sqlite3.connect(tmp_path / "auditsink.db")
    rows = conn.execute("SELECT audit_id, count(*) FROM events GROUP BY audit_id, stage").fetchall()
    conn.close()
    # UUIDs are stored as their 16 bytes (store/sqlite.py pack_audit_id).
    counts: dict[str, Any] = {str(uuid.UUID(bytes=key)): n for key, n in rows}
    missing = [i for i in acked if i not in counts]
    assert not missing, f"{len(missing)} acknowledged events were lost"
    assert all(n == 1 for n in counts.values()), "an event was stored twice"
