"""``serve --receivers N`` with PostgreSQL (issue 16): each receiver commits to the database
over a connection of its own (COPY), as replicas do, against a real PostgreSQL server."""

from __future__ import annotations

import http.client
import json
import os
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from receive.test_receivers import (
    _alive,
    _body,
    _children,
    _event,
    _wait,
    niceness,
    send_concurrently,
)
from store.conftest import postgres_server, postgres_url  # noqa: F401

from conftest import ServerProcess


@pytest.fixture
def receivers(server_factory: Any, postgres_url: str) -> ServerProcess:  # noqa: F811
    server: ServerProcess = server_factory("--receivers", "2", "--store", postgres_url)
    assert server.proc is not None
    assert _wait(lambda: len(_children(server.proc.pid)) == 3)  # type: ignore[union-attr]
    return server


def test_the_receivers_keep_the_writers_priority_the_rules_yield(
        receivers: ServerProcess) -> None:
    """Each receiver is a writer here: none is made nicer; the rules still yield."""
    assert receivers.proc is not None
    writer = os.getpriority(os.PRIO_PROCESS, receivers.proc.pid)
    children = _children(receivers.proc.pid)
    expected = [writer, writer, min(19, writer + 9)]
    assert _wait(lambda: niceness(children) == expected), niceness(children)


def _stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return int(row[0])


def test_every_acknowledged_event_is_stored_once(receivers: ServerProcess,
                                                 postgres_url: str) -> None:  # noqa: F811
    sent, failures = send_concurrently(receivers, 6, [40] * 4)
    assert not failures
    assert _stored(postgres_url) == len(sent) == 6 * 4 * 40
    # A retried batch is a duplicate, whichever receiver takes it.
    status, answer = receivers.post(_body([_event(i) for i in sent[:40]]))
    assert status == 200 and answer == {"stored": 0, "duplicates": 40, "rejected": 0}
    status, shown = receivers.api_get(f"/api/v1/events/{sent[0]}")
    assert status == 200 and shown["events"][0]["event"]["auditID"] == sent[0]


def test_a_receiver_commits_without_the_writer(receivers: ServerProcess,
                                               postgres_url: str) -> None:  # noqa: F811
    # The serving process only accepts and hands over: a connection it handed to a receiver
    # is answered, after the receiver's own commit, while the serving process is stopped.
    assert receivers.proc is not None
    connection = http.client.HTTPConnection("127.0.0.1", receivers.port, timeout=10)
    headers = {"content-type": "application/json"}
    try:
        connection.request("POST", "/", body=_body([_event("w1")]), headers=headers)
        answer = connection.getresponse()
        assert answer.status == 200, answer.read()
        answer.read()
        receivers.proc.send_signal(signal.SIGSTOP)
        try:
            connection.request("POST", "/", body=_body([_event("w2")]), headers=headers)
            answer = connection.getresponse()
            assert answer.status == 200, answer.read()
            assert json.loads(answer.read())["stored"] == 1
            assert _stored(postgres_url) == 2
        finally:
            receivers.proc.send_signal(signal.SIGCONT)
    finally:
        connection.close()


def test_sigterm_drains_and_stops_every_process(receivers: ServerProcess,
                                                falco_dir: Path) -> None:
    assert receivers.proc is not None
    children = _children(receivers.proc.pid)
    assert receivers.post((falco_dir / "traces" / "exec_pod.json").read_bytes())[0] == 200
    exec_id = "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6"

    def alerted() -> bool:
        page = receivers.api_get("/api/v1/alerts")[1]
        return any(a["auditID"] == exec_id for a in page["alerts"])

    assert _wait(alerted), "the rules process raised no alert"
    assert receivers.stop(signal.SIGTERM) == 0
    assert not any(_alive(pid) for pid in children)
