"""``serve --receivers N`` (issue 16): receiver processes in front of one writer, as real
processes on real sockets and a real SQLite file."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ServerProcess

LINE = re.compile(r"^\S+Z (\[\w+\] )?\S+ \w+ \S+ \S+ \d+$")


def _event(audit_id: str, **extra: Any) -> dict[str, Any]:
    event = {"level": "Request", "auditID": audit_id, "stage": "ResponseComplete",
             "requestURI": "/api/v1/namespaces/demo/pods/web", "verb": "create",
             "user": {"username": "alice", "groups": ["system:authenticated"]},
             "objectRef": {"resource": "pods", "namespace": "demo", "name": "web",
                           "apiVersion": "v1"},
             "responseStatus": {"metadata": {}, "code": 201},
             "requestObject": {"kind": "Pod", "spec": {"containers": [{"name": "c"}]}},
             "requestReceivedTimestamp": "2026-11-26T14:19:58.101234Z",
             "stageTimestamp": "2026-11-26T14:19:58.120481Z"}
    event.update(extra)
    return event


def _body(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                       "items": events}).encode()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(condition: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


@pytest.fixture
def receivers(server_factory: Any, tmp_path: Path) -> ServerProcess:
    server: ServerProcess = server_factory("--receivers", "2", "--store",
                                           f"sqlite:///{tmp_path}/r.db")
    assert server.proc is not None
    assert _wait(lambda: len(_children(server.proc.pid)) >= 2)  # type: ignore[union-attr]
    return server


def send_concurrently(server: ServerProcess, senders: int,
                      sizes: list[int]) -> tuple[list[str], list[Any]]:
    """``senders`` threads each POST one batch of each size in ``sizes`` (new events, a new
    connection each): the auditIDs acknowledged as stored, and the answers that were not."""
    sent: list[str] = []
    failures: list[Any] = []
    lock = threading.Lock()

    def sender(n: int) -> None:
        for round_, size in enumerate(sizes):
            ids = [f"r{n}-{round_}-{i}-{uuid.uuid4()}" for i in range(size)]
            status, answer = server.post(_body([_event(i) for i in ids]))
            with lock:
                if status == 200 and answer["stored"] == size:
                    sent.extend(ids)
                else:
                    failures.append((status, answer))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent, failures


def test_every_acknowledged_event_is_stored_once_and_printed_whole(
        receivers: ServerProcess) -> None:
    # Batches of 50 are compressed by the receiver, one-event bodies by the writer (with the
    # rest of their group): both kinds, from 8 senders on new connections each time.
    sent, failures = send_concurrently(receivers, 8, [50, 1, 50, 1, 50, 1])
    assert not failures
    assert len(sent) == 8 * (3 * 50 + 3)
    status, stats = receivers.api_get("/api/v1/stats")
    assert status == 200 and stats["events"] == len(sent)
    lines = receivers.stdout_path.read_text().splitlines()
    assert len(lines) == len(sent)
    assert all(LINE.match(line) for line in lines), "two receivers' lines interleaved"
    # A retried batch is a duplicate, whichever receiver takes it.
    status, answer = receivers.post(_body([_event(i) for i in sent[:50]]))
    assert status == 200 and answer == {"stored": 0, "duplicates": 50, "rejected": 0}
    # The exact bytes come back, from blobs the receivers and the writer compressed.
    for audit_id in (sent[0], sent[50]):
        status, shown = receivers.api_get(f"/api/v1/events/{audit_id}")
        assert status == 200, shown
        found = shown["events"][0]["event"]
        assert found["auditID"] == audit_id
        assert found["requestObject"] == {"kind": "Pod",
                                          "spec": {"containers": [{"name": "c"}]}}


def test_metrics_count_every_receivers_requests(receivers: ServerProcess) -> None:
    for n in range(10):
        assert receivers.post(_body([_event(f"m{n}"), _event(f"m{n}", stage="RequestReceived")
                                     ]))[0] == 200
    for _ in range(4):  # new connections: any receiver may answer the scrape
        status, text = receivers.request("GET", "/metrics")
        assert status == 200
        samples = _samples(text)
        assert samples[("auditsink_http_requests_total", (("code", "200"),))] == 10
        assert samples[("auditsink_request_duration_seconds_count", ())] == 10
        labels = (("cluster", ""), ("level", "Request"), ("stage", "RequestReceived"),
                  ("verb", "create"))
        assert samples[("auditsink_events_received_total", labels)] == 10
        assert samples[("auditsink_store_queue_events", ())] == 0
        assert samples[("auditsink_store_last_commit_seconds", ())] > 0
    assert receivers.request("GET", "/readyz")[0] == 200


def _held(text: bytes) -> list[float]:
    samples = _samples(text)
    return [samples[("auditsink_receiver_connections", (("receiver", str(index)),))]
            for index in range(2)]


def test_connections_are_spread_evenly_over_the_receivers(receivers: ServerProcess) -> None:
    # kube-apiserver opens its few keep-alive connections at once; on a shared listening
    # socket one receiver took them all. Handed over by count, each gets its share.
    connections = [http.client.HTTPConnection("127.0.0.1", receivers.port, timeout=10)
                   for _ in range(6)]
    for n, connection in enumerate(connections):
        connection.request("POST", "/", body=_body([_event(f"c{n}")]),
                           headers={"content-type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
        answer.read()
    first = connections[0]
    first.request("GET", "/metrics")  # on a held connection: the count stays 6
    assert _held(first.getresponse().read()) == [3, 3]
    for connection in connections:
        connection.close()
    # The receivers count what they close; the scrape's own connection is the one left.
    assert _wait(lambda: sum(_held(receivers.request("GET", "/metrics")[1])) == 1)


def test_sigterm_stops_the_receivers_then_the_writer(receivers: ServerProcess) -> None:
    assert receivers.proc is not None
    children = _children(receivers.proc.pid)
    assert receivers.post(_body([_event("t1")]))[0] == 200
    port = receivers.port
    assert receivers.stop(signal.SIGTERM) == 0
    assert not any(_alive(pid) for pid in children)
    assert _port_free(port)
    assert "Finished server process" in receivers.stderr()


def test_the_receivers_die_with_the_writer(receivers: ServerProcess) -> None:
    assert receivers.proc is not None
    children = _children(receivers.proc.pid)
    port = receivers.port
    receivers.stop(signal.SIGKILL)
    assert _wait(lambda: not any(_alive(pid) for pid in children)), "orphaned receivers"
    assert _wait(lambda: _port_free(port)), "the port stays taken after the writer died"


def test_a_receiver_that_dies_stops_the_server(receivers: ServerProcess) -> None:
    assert receivers.proc is not None
    first, *others = _children(receivers.proc.pid)
    os.kill(first, signal.SIGKILL)
    assert receivers.proc.wait(timeout=30) == 1
    assert not any(_alive(pid) for pid in others)
    assert "exited unexpectedly" in receivers.stderr()
    receivers.proc = None


def test_the_rules_run_in_a_process_of_their_own(receivers: ServerProcess,
                                                   falco_dir: Path) -> None:
    assert receivers.proc is not None
    assert _wait(lambda: len(_children(receivers.proc.pid)) == 3)  # type: ignore[union-attr]
    assert receivers.post((falco_dir / "traces" / "exec_pod.json").read_bytes())[0] == 200
    exec_id = "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6"

    def alerted() -> bool:
        page = receivers.api_get("/api/v1/alerts")[1]
        return any(a["auditID"] == exec_id for a in page["alerts"])

    assert _wait(alerted), "the rules process raised no alert"
    samples = _samples(receivers.request("GET", "/metrics")[1])
    assert samples[("auditsink_rules_lag_events", ())] == 0
    assert samples[("auditsink_rules_active", ())] == 1
    assert "consumer 'rules': running in this process" in receivers.stderr()
    children = _children(receivers.proc.pid)
    assert receivers.stop(signal.SIGTERM) == 0
    assert not any(_alive(pid) for pid in children)


def niceness(pids: list[int]) -> list[int]:
    """Each process's nice value, lowest first (the kernel's 20 - priority)."""
    return sorted(os.getpriority(os.PRIO_PROCESS, pid) for pid in pids)


def test_the_writer_goes_first_then_the_receivers_then_the_rules(
        receivers: ServerProcess) -> None:
    assert receivers.proc is not None
    assert _wait(lambda: len(_children(receivers.proc.pid)) == 3)  # type: ignore[union-attr]
    writer = os.getpriority(os.PRIO_PROCESS, receivers.proc.pid)
    assert writer == os.getpriority(os.PRIO_PROCESS, 0)  # serve itself is left alone
    expected = [min(19, writer + 10), min(19, writer + 10), min(19, writer + 19)]
    children = _children(receivers.proc.pid)
    # the rules lower theirs once they opened the store
    assert _wait(lambda: niceness(children) == expected), niceness(children)
    # ... but not that of the store's writer thread, which holds SQLite's write lock.
    rules = max(children, key=lambda pid: os.getpriority(os.PRIO_PROCESS, pid))
    threads = [int(t.name) for t in Path(f"/proc/{rules}/task").iterdir()]
    assert min(niceness(threads)) == writer


def test_no_rules_means_no_rules_process(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory("--receivers", "2", "--no-rules", "--store",
                            f"sqlite:///{tmp_path}/n.db")
    assert server.proc is not None  # healthy: every process was forked before the writer ran
    assert len(_children(server.proc.pid)) == 2
