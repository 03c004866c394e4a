"""The webhook receiver as a real process: real kube-apiserver traffic in, exact events out."""

from __future__ import annotations

import gzip
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
import yaml

from conftest import ServerProcess, free_port, shared_path


def _events_out(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.stdout_path.read_text().splitlines() if line]


def _wait_for_lines(
    server: ServerProcess, count: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _events_out(server)
        if len(out) >= count:
            return out
        time.sleep(0.05)
    return _events_out(server)


def test_batch_replay_matches_the_api_servers_own_log(
    server_factory: Any, fixtures_dir: Path
) -> None:
    server = server_factory("--format", "json", "--store", "none", api=False)
    bodies = (fixtures_dir / "batch-bodies.jsonl").read_bytes().splitlines()
    requests = [
        json.loads(line)
        for line in (fixtures_dir / "batch-requests.jsonl").read_text().splitlines()
    ]
    for body, request in zip(bodies, requests):
        # The exact path and headers the API server sent (minus the credential).
        headers = {
            k: v
            for k, v in request["headers"].items()
            if k not in ("Authorization", "Host", "Content-Length")
        }
        status, answer = server.request("POST", request["path"], body, headers)
        assert status == 200, answer
        assert answer["rejected"] == 0
    expected = [json.loads(line) for line in (fixtures_dir / "audit.log").read_text().splitlines()]
    out = _wait_for_lines(server, len(expected))
    assert len(out) == 974
    assert out == expected  # every event exactly once, batch order kept, identical content


def test_blocking_mode_replay(server_factory: Any, fixtures_dir: Path, tmp_path: Path) -> None:
    server = server_factory("--format", "json", api=False)
    bodies = (fixtures_dir / "blocking-bodies.jsonl").read_bytes().splitlines()
    for body in bodies:
        status, answer = server.post(body)
        assert (status, answer["stored"]) == (200, 1)
    out = _wait_for_lines(server, len(bodies))
    assert [e["auditID"] for e in out] == [json.loads(b)["items"][0]["auditID"] for b in bodies]
    assert all(e["kind"] == "Event" and e["apiVersion"] == "audit.k8s.io/v1" for e in out)


def test_falco_traces_are_accepted(server_factory: Any, falco_dir: Path) -> None:
    server = server_factory("--format", "json", "--store", "none", api=False)
    expected = 0
    for trace in sorted((falco_dir / "traces").glob("*.json")):
        status, answer = server.post(trace.read_bytes())
        if trace.name == "fal_01_003.json":  # deliberately malformed upstream
            assert status == 400 and "error" in answer
            continue
        assert status == 200, (trace.name, answer)
        assert answer["rejected"] == 0, trace.name
        expected += answer["stored"]
    out = _wait_for_lines(server, expected)
    assert len(out) == expected > 40
    # v1beta1 traces are upgraded to v1
    assert all(
        e["apiVersion"] == "audit.k8s.io/v1" and "requestReceivedTimestamp" in e for e in out
    )


def test_seed_configuration_works_unchanged(server_factory: Any, tmp_path: Path) -> None:
    kubeconfig = yaml.safe_load(shared_path("seed", "audit-webhook.yaml").read_text())
    server_url = kubeconfig["clusters"][0]["cluster"]["server"]
    assert server_url == "http://127.0.0.1:8080/"
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("port 8080 is in use on this machine; the seed's kubeconfig needs it")
    server = ServerProcess(
        tmp_path, "--format", "text", "--api-listen", f"127.0.0.1:{free_port()}", api=False
    )
    server.args = ["--listen", "127.0.0.1:8080", *server.args]
    server.port = 8080
    # `--listen` given twice: the last one wins, exactly as a user would type it.
    server.start()
    try:
        # client-go over plain http sends no credentials (fixtures README): POST / ?timeout=30s.
        body = (
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
            b'{"level":"Metadata","auditID":"seed-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create",'
            b'"user":{"username":"kubernetes-admin"},"objectRef":{"resource":"pods","namespace":"default","name":"nginx","apiVersion":"v1"},'
            b'"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-11-26T10:00:00.000001Z","stageTimestamp":"2026-11-26T10:00:00.000002Z"}]}\n'
        )
        status, answer = server.post(body, "/?timeout=30s")
        assert status == 200 and answer["stored"] == 1
        deadline = time.monotonic() + 5
        while "nginx" not in server.stdout_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stdout_path.read_text().splitlines() == [
            "2026-11-26T10:00:00.000002Z kubernetes-admin create pods default/nginx 201"
        ]
    finally:
        server.stop()
    policy = shared_path("seed", "audit-policy.yaml")
    assert policy.exists()


def _event(audit_id: str, **extra: Any) -> dict[str, Any]:
    event = {
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "verb": "get",
        "requestURI": "/api/v1/namespaces/x/pods/y",
        "user": {"username": "u"},
        "objectRef": {"resource": "pods", "namespace": "x", "name": "y", "apiVersion": "v1"},
        "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
        "stageTimestamp": "2026-11-26T10:00:00.000002Z",
    }
    event.update(extra)
    return event


def _list(*items: Any) -> bytes:
    return json.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": list(items)}
    ).encode()


def test_bad_bodies_get_documented_answers_and_the_server_keeps_serving(
    server_factory: Any,
) -> None:
    server = server_factory("--format", "none", "--max-body", "1MiB", "--body-timeout", "1")
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        ("empty body", b"", {}, 400),
        ("truncated JSON", _list(_event("a"))[:-10], {}, 400),
        ("not JSON", b"hello world", {}, 400),
        ("wrong kind", b'{"kind":"PodList","apiVersion":"audit.k8s.io/v1","items":[]}', {}, 400),
        (
            "wrong apiVersion",
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v2","items":[]}',
            {},
            400,
        ),
        (
            "deeply nested JSON",
            b'{"kind":"EventList","items":[' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
            {},
            400,
        ),
        ("invalid gzip", b"\x1f\x8b\x08\x00garbage", {"Content-Encoding": "gzip"}, 400),
        ("body over the limit", b" " * (1024 * 1024 + 1), {}, 413),
        ("wrong media type", _list(_event("a")), {"Content-Type": "application/xml"}, 415),
        ("unknown encoding", _list(_event("a")), {"Content-Encoding": "br"}, 415),
    ]
    for label, body, headers, expected in cases:
        status, answer = server.post(body, **headers)
        assert status == expected, (label, answer)
        assert isinstance(answer, dict) and answer["error"], label
        assert server.request("GET", "/healthz")[0] == 200, label
    status, _ = server.request("GET", "/?timeout=30s")
    assert status == 405
    assert server.last_headers["allow"] == "POST"
    # Nothing was stored by any of these.
    assert server.api_get("/api/v1/stats")[1]["events"] == 0


def test_bad_items_do_not_cost_their_neighbours(server_factory: Any) -> None:
    server = server_factory("--format", "none")
    good = [_event(f"good-{i}") for i in range(398)]
    body = _list(
        *good[:100], 42, *good[100:200], {"level": 7, "auditID": "x", "stage": "y"}, *good[200:]
    )
    # An item with invalid UTF-8 inside a raw object.
    body = (
        body[:-2]
        + b',{"level":"Metadata","auditID":"bad-utf8","stage":"ResponseComplete",'
        b'"requestObject":"\xff\xfe"}]}'
    )
    status, answer = server.post(body)
    assert status == 200
    assert answer == {"stored": 398, "duplicates": 0, "rejected": 3}
    rejected = server.api_get("/api/v1/stats")[1]
    assert rejected["events"] == 398
    assert rejected["rejected"] == 3
    assert "rejected item 100" in server.stderr()
    assert "\xff" not in server.stderr()


def test_accepted_body_forms(server_factory: Any) -> None:
    server = server_factory("--format", "none")
    forms = {
        "eventlist": _list(_event("f1")),
        "v1beta1 eventlist": json.dumps(
            {
                "kind": "EventList",
                "apiVersion": "audit.k8s.io/v1beta1",
                "items": [
                    {
                        **_event("f2"),
                        "timestamp": "2026-11-26T10:00:00Z",
                        "metadata": {"creationTimestamp": "2026-11-26T10:00:00Z"},
                    }
                ],
            }
        ).encode(),
        "single event": json.dumps(
            {"kind": "Event", "apiVersion": "audit.k8s.io/v1", **_event("f3")}
        ).encode(),
        "json array": json.dumps([_event("f4"), _event("f5")]).encode(),
        "audit log lines": b"\n".join(
            json.dumps(
                {"kind": "Event", "apiVersion": "audit.k8s.io/v1", **_event(f"f{i}")}
            ).encode()
            for i in (6, 7)
        )
        + b"\n",
    }
    stored = 0
    for label, body in forms.items():
        status, answer = server.post(body)
        assert status == 200, (label, answer)
        stored += answer["stored"]
        status, answer = server.post(gzip.compress(body), Content_Encoding="gzip")
        assert status == 200, (label, answer)
        assert answer["stored"] == 0 and answer["duplicates"] > 0, label  # a retry is a duplicate
    assert stored == 7
    status, page = server.api_get("/api/v1/events?limit=100")
    assert sorted(e["event"]["auditID"] for e in page["events"]) == [f"f{i}" for i in range(1, 8)]


def test_slow_client_times_out_without_blocking_others(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--body-timeout", "1", api=False)
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    status, _ = server.post(_list(_event("meanwhile")))
    assert status == 200
    slow.settimeout(5)
    answer = slow.recv(4096)
    slow.close()
    assert answer.startswith(b"HTTP/1.1 408")


def test_overload_answers_429_with_retry_after(server_factory: Any) -> None:
    import threading

    server = server_factory("--format", "none", "--queue-events", "400", api=False)
    statuses: list[int] = []
    retry_after: list[str] = []

    def send(n: int) -> None:
        body = _list(
            *[
                _event(f"o{n}-{i}", requestObject={"pad": "x" * 2000}, level="Request")
                for i in range(400)
            ]
        )
        status, headers, _ = server.exchange(
            "POST", "/", body, {"Content-Type": "application/json"}
        )
        statuses.append(status)
        if status == 429:
            retry_after.append(headers.get("retry-after", ""))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {200, 429}
    assert 429 in statuses, "a full queue must answer 429"
    assert retry_after and all(r == "1" for r in retry_after)
    assert server.request("GET", "/metrics")[0] == 200


def test_metrics_health_and_ready(server_factory: Any) -> None:
    server = server_factory("--format", "none", api=False)
    server.post(_list(_event("m1"), _event("m2", stage="RequestReceived")))
    assert server.request("GET", "/readyz")[0] == 200
    status, text = server.request("GET", "/metrics")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text.decode()) for s in family.samples}
    labels = (("cluster", ""), ("level", "Metadata"), ("stage", "ResponseComplete"),
              ("verb", "get"))
    assert samples[("auditsink_events_received_total", labels)] == 1
    assert samples[("auditsink_http_requests_total", (("code", "200"),))] == 1
    assert samples[("auditsink_request_duration_seconds_count", ())] == 1
    assert samples[("auditsink_store_queue_events", ())] == 0
    commit = samples[("auditsink_store_last_commit_seconds", ())]
    assert 0 < commit < 5, "the batch above was committed, and timed"


def test_cluster_from_url_path(server_factory: Any) -> None:
    server = server_factory("--format", "text", api=True)
    assert server.post(_list(_event("c1")), "/clusters/prod?timeout=30s")[0] == 200
    assert server.post(_list(_event("c1")), "/clusters/staging")[0] == 200
    status, page = server.api_get("/api/v1/events?cluster=prod")
    assert [e["cluster"] for e in page["events"]] == ["prod"]
    # The same auditID in two clusters is two events, not a duplicate.
    assert server.api_get("/api/v1/stats")[1]["events"] == 2
