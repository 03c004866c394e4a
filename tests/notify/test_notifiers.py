"""Notifiers: exact payloads, and delivery to a real HTTP server through an outage."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditsink.notify.base import Delivery, RateLimiter, build, parse_notify
from auditsink.store.base import Alert
from auditsink.store.sqlite import SQLiteStore

ALERT = Alert(time=1795702791292366, rule="Pod Exec or Attach", priority=5,
              output="Exec/attach into pod (user=alice pod=web)", audit_id="a-1", event=7,
              cluster="prod", tags=["k8s"], fields={"ka.user.name": "alice"}, id=3)


def test_webhook_payload() -> None:
    notifier = build(parse_notify("webhook:http://127.0.0.1:1/hook", link_base="http://127.0.0.1:8081"))
    assert notifier.render(ALERT) == {
        "rule": "Pod Exec or Attach", "priority": "NOTICE",
        "output": "Exec/attach into pod (user=alice pod=web)", "time": "2026-11-26T14:19:51.292366Z",
        "auditID": "a-1", "cluster": "prod", "tags": ["k8s"], "output_fields": {"ka.user.name": "alice"},
        "link": "http://127.0.0.1:8081/api/v1/events/a-1", "source": "k8s_audit",
    }


def test_slack_payload() -> None:
    notifier = build(parse_notify("slack:https://hooks.example/T0/B0/x"))
    assert notifier.render(ALERT) == {
        "text": "*NOTICE* Pod Exec or Attach: Exec/attach into pod (user=alice pod=web)",
        "attachments": [{"color": "#2eb67d", "fallback": "Exec/attach into pod (user=alice pod=web)", "fields": [
            {"title": "rule", "value": "Pod Exec or Attach", "short": True},
            {"title": "priority", "value": "NOTICE", "short": True},
            {"title": "time", "value": "2026-11-26T14:19:51.292366Z", "short": True},
            {"title": "auditID", "value": "a-1", "short": True},
            {"title": "cluster", "value": "prod", "short": True}]}],
    }


def test_bad_specs() -> None:
    with pytest.raises(ValueError, match="expected stdout, webhook:URL or slack:URL"):
        parse_notify("email:x")
    with pytest.raises(ValueError, match="needs an http"):
        parse_notify("webhook:ftp://x")
    with pytest.raises(ValueError, match="minimum priority"):
        parse_notify("stdout", min_priority="LOUD")


def test_rate_limit_per_rule() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")
    now[0] = 61
    assert limiter.allow("a") and limiter.suppressed == 1


class _Receiver:
    """A real HTTP server that can be made to fail (an outage) and recover."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.failing = True
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failing:
                    self.send_response(503)
                else:
                    receiver.received.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_delivery_survives_an_outage(tmp_path: Path, receiver: _Receiver) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    alerts = [Alert(time=ALERT.time + i, rule=f"r{i % 3}", priority=4, output=f"alert {i}",
                    audit_id=f"id-{i}", event=i + 1) for i in range(12)]
    alerts.append(Alert(time=ALERT.time, rule="quiet", priority=6, output="info only", audit_id="x", event=99))
    store.commit_consumed("rules", 99, alerts)
    notifier = build(parse_notify(f"webhook:{receiver.url}", min_priority="WARNING"))
    delivery = Delivery(store, notifier, poll=0.05, backoff=(0.05, 0.2))
    stop = threading.Event()
    thread = threading.Thread(target=delivery.run, args=(stop,))
    thread.start()
    time.sleep(0.5)
    assert receiver.received == [] and delivery.failures >= 2  # down: retried, nothing lost
    receiver.failing = False
    deadline = time.monotonic() + 10
    while len(receiver.received) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join()
    assert [p["output"] for p in receiver.received] == [f"alert {i}" for i in range(12)]
    # The cursor is durable: a new delivery loop (a restart) sends nothing again.
    assert Delivery(store, notifier).step(stop) == 0
    store.close()


def test_serve_notifies_a_webhook(server_factory: Any, receiver: _Receiver, falco_dir: Path) -> None:
    receiver.failing = False
    server = server_factory("--format", "none", "--notify", f"webhook:{receiver.url}",
                            "--notify-min-priority", "NOTICE")
    assert server.post((falco_dir / "traces" / "exec_pod.json").read_bytes())[0] == 200
    deadline = time.monotonic() + 10
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.received and receiver.received[0]["auditID"] == "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6"
    assert receiver.received[0]["link"].endswith("/api/v1/events/ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6")
    status, page = server.api_get("/api/v1/alerts?priority=NOTICE")
    assert status == 200 and page["alerts"][0]["auditID"] == "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6"
