"""``serve --bus`` and ``worker`` against a real NATS cluster: answers, dedup, split batches,
readiness and the command-line checks."""

from __future__ import annotations

import base64
import http.client
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import free_port

from auditsink.cli import main


def event(audit_id: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"level": "Metadata", "auditID": audit_id, "stage": "ResponseComplete", "verb": "get",
            "user": {"username": "alice"}, "stageTimestamp": "2026-11-26T14:23:16.451036Z",
            **(extra or {})}


def event_list(*items: Any) -> bytes:
    body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": list(items)}
    return json.dumps(body).encode()


def wait_for_rows(db: Path, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    ids: list[str] = []
    while time.monotonic() < deadline:
        if db.exists():
            conn = sqlite3.connect(db, timeout=30)
            try:
                ids = sorted(str(a) for (a,) in conn.execute("SELECT audit_id FROM events"))
            except sqlite3.OperationalError:  # the worker has not created the schema yet
                ids = []
            finally:
                conn.close()
            if len(ids) >= count:
                return ids
        time.sleep(0.1)
    return ids


def test_acknowledged_after_pubAck_deduplicated_and_stored(
        tmp_path: Path, nats_cluster: Any, bus_server: Any, worker_factory: Any) -> None:
    serve = bus_server("--bus", nats_cluster.urls, "--format", "none")
    try:
        body = event_list(event("a1"), event("a2"), 7)
        assert serve.post(body) == (200, {"stored": 2, "duplicates": 0, "rejected": 1})
        # The API server's retry of the same body: JetStream's duplicate window drops it.
        assert serve.post(body) == (200, {"stored": 0, "duplicates": 2, "rejected": 1})
        _, metrics = serve.request("GET", "/metrics")
        assert b"auditsink_bus_up 1.0" in metrics
        assert serve.request("GET", "/readyz")[0] == 200
        db = tmp_path / "store.db"
        worker_factory("worker", "--bus", nats_cluster.urls, "--store", f"sqlite:///{db}")
        assert wait_for_rows(db, 2) == ["a1", "a2"]
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("SELECT COUNT(*) FROM rejected").fetchone() == (1,)
        finally:
            conn.close()
    finally:
        assert serve.stop() == 0


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_worker_metrics(tmp_path: Path, nats_cluster: Any, bus_server: Any,
                        worker_factory: Any) -> None:
    serve = bus_server("--bus", nats_cluster.urls, "--format", "none")
    try:
        assert serve.post(event_list(event("m1"), event("m2"), event("m3")))[0] == 200
        db = tmp_path / "store.db"
        port = free_port()
        worker_factory("worker", "--bus", nats_cluster.urls, "--store", f"sqlite:///{db}",
                       "--detect", "--metrics-listen", f"127.0.0.1:{port}")
        assert wait_for_rows(db, 3) == ["m1", "m2", "m3"]
        deadline = time.monotonic() + 10
        stored = b"\nauditsink_worker_events_stored_total 3.0\n"
        while stored not in (text := _get(port, "/metrics")[1]):
            assert time.monotonic() < deadline, text.decode()
            time.sleep(0.1)
        assert b"\nauditsink_worker_batches_total 1.0\n" in text
        assert b"\nauditsink_rules_active 1.0\n" in text  # the only worker, so it runs the rules
        assert b"# TYPE auditsink_bus_waiting_batches gauge" in text
        assert _get(port, "/healthz")[0] == 200
        assert _get(port, "/nope")[0] == 404
    finally:
        assert serve.stop() == 0


def test_batch_over_max_payload_is_split(tmp_path: Path, nats_cluster: Any, bus_server: Any,
                                         worker_factory: Any) -> None:
    serve = bus_server("--bus", nats_cluster.urls, "--format", "none")
    try:
        # ~2.4 MB after compression: over the server's default 1 MB max_payload.
        blobs = [base64.b64encode(os.urandom(300_000)).decode() for _ in range(8)]
        body = event_list(*(event(f"big-{i}", {"level": "RequestResponse",
                                               "requestObject": {"data": blob}})
                            for i, blob in enumerate(blobs)))
        assert serve.post(body) == (200, {"stored": 8, "duplicates": 0, "rejected": 0})
        db = tmp_path / "store.db"
        worker_factory("worker", "--bus", nats_cluster.urls, "--store", f"sqlite:///{db}")
        assert wait_for_rows(db, 8) == sorted(f"big-{i}" for i in range(8))
    finally:
        assert serve.stop() == 0


def test_nats_down_answers_429_and_not_ready_then_recovers(nats_cluster: Any,
                                                           bus_server: Any) -> None:
    serve = bus_server("--bus", nats_cluster.urls, "--format", "none")
    try:
        for node in nats_cluster.nodes:
            node.kill()
        deadline = time.monotonic() + 10
        while serve.request("GET", "/readyz")[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert serve.request("GET", "/readyz")[0] == 503
        status, _ = serve.post(event_list(event("down-1")))
        assert status == 429
        assert serve.last_headers["retry-after"].isdigit()
        for node in nats_cluster.nodes:
            node.start()
        nats_cluster.wait_for_meta_leader()
        deadline = time.monotonic() + 30
        while ((status := serve.post(event_list(event("down-1")))[0]) != 200
               and time.monotonic() < deadline):
            time.sleep(0.3)
        assert status == 200
        assert serve.request("GET", "/readyz")[0] == 200
    finally:
        assert serve.stop() == 0


@pytest.mark.parametrize(("args", "message"), [
    (["worker"], "--bus nats://HOST:PORT is required"),
    (["worker", "--bus", "nats://127.0.0.1:4222", "--rules", __file__], "go with --detect"),
    (["serve", "--bus", "127.0.0.1:4222"], "expected nats://HOST:PORT"),
    (["serve", "--bus", "nats://127.0.0.1:4222", "--store", "sqlite:///x.db"],
     "serve has no store"),
    (["worker", "--bus", "nats://127.0.0.1:4222", "--metrics-listen", "9090"],
     "expected HOST:PORT"),
])
def test_command_line_mistakes(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_unreachable_nats_fails_at_start_with_the_reason() -> None:
    pytest.importorskip("nats")
    from auditsink.bus.nats import BusConfig, BusError, NatsBus

    bus = NatsBus(BusConfig([f"nats://127.0.0.1:{free_port()}"]), connect_timeout=1.0)
    with pytest.raises(BusError, match="cannot connect to NATS"):
        bus.open()


def test_starts_unready_while_jetstream_has_no_quorum(nats_cluster: Any, bus_server: Any) -> None:
    # Two of three nodes down: one node is reachable, but JetStream has no meta leader.
    for node in nats_cluster.nodes[1:]:
        node.kill()
    serve = bus_server("--bus", nats_cluster.nodes[0].url, "--format", "none")
    try:
        assert serve.request("GET", "/readyz")[0] == 503
        assert serve.post(event_list(event("early")))[0] == 429
        for node in nats_cluster.nodes[1:]:
            node.start()
        nats_cluster.wait_for_meta_leader()
        deadline = time.monotonic() + 30
        while serve.request("GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert serve.request("GET", "/readyz")[0] == 200
        assert serve.post(event_list(event("early")))[0] == 200
    finally:
        assert serve.stop() == 0
