"""Notifiers: exact payloads, and delivery to a real HTTP server through an outage."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from auditsink.notify.base import NOTIFY_ALL, Delivery, RateLimiter, build, parse_notify
from auditsink.store.base import Alert
from auditsink.store.sqlite import SQLiteStore

ALERT = Alert(time=1795702791292366, rule="Pod Exec or Attach", priority=5,
              output="Exec/attach into pod (user=alice pod=web)", audit_id="a-1", event=7,
              cluster="prod", tags=["k8s"], fields={"ka.user.name": "alice"}, id=3)


def test_webhook_payload() -> None:
    notifier = build(parse_notify("webhook:http://127.0.0.1:1/hook", link_base="http://127.0.0.1:8081"))
    assert notifier.render(ALERT) == {
        "rule": "Pod Exec or Attach", "priority": "NOTICE",
        "output": "Exec/attach into pod (user=alice pod=web)",
        "time": "2026-11-26T14:19:51.292366Z", "auditID": "a-1", "cluster": "prod",
        "tags": ["k8s"], "output_fields": {"ka.user.name": "alice"},
        "link": "http://127.0.0.1:8081/api/v1/events/a-1", "source": "k8s_audit",
    }


def test_the_link_quotes_a_hostile_audit_id() -> None:
    notifier = build(parse_notify("webhook:http://127.0.0.1:1/hook", link_base="http://h:8081/"))
    hostile = dataclasses.replace(ALERT, audit_id="../../ui/x?y=1#z")
    assert notifier.link(hostile) == "http://h:8081/api/v1/events/..%2F..%2Fui%2Fx%3Fy%3D1%23z"


def test_slack_payload() -> None:
    notifier = build(parse_notify("slack:https://hooks.example/T0/B0/x"))
    assert notifier.render(ALERT) == {
        "text": "*NOTICE* Pod Exec or Attach: Exec/attach into pod (user=alice pod=web)",
        "attachments": [{"color": "#2eb67d",
                         "fallback": "Exec/attach into pod (user=alice pod=web)", "fields": [
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


def _alert(i: int, rule: str = "r", priority: int = 4) -> Alert:
    return Alert(time=ALERT.time + i, rule=rule, priority=priority, output=f"alert {i}",
                 audit_id=f"id-{i}", event=i + 1, id=i + 1)


def test_rate_limit_counts_what_it_holds_back() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert [limiter.allow(_alert(i, "a")) for i in range(5)] == [True, True, False, False, False]
    assert limiter.allow(_alert(5, "b"))
    assert limiter.due() == [] and limiter.oldest_held() == 3
    now[0] = 61
    (repeats,) = limiter.due()
    assert (repeats.rule, repeats.count, repeats.first.audit_id, repeats.last.audit_id) == (
        "a", 3, "id-2", "id-4")
    assert limiter.suppressed == 3 and limiter.oldest_held() is None
    assert limiter.allow(_alert(6, "a"))  # a new minute
    assert repeats.summary().output == (
        "3 more alerts of this rule from 2026-11-26T14:19:51.292368Z to "
        "2026-11-26T14:19:51.292370Z (rate limit 2 per minute; `auditsink alerts --rule a` "
        "lists them); the latest: alert 4")


def test_webhook_repeats_payload() -> None:
    from auditsink.notify.base import Repeats

    notifier = build(parse_notify("webhook:http://127.0.0.1:1/hook"))
    payload = notifier.render_repeats(Repeats("r", 7, _alert(1), _alert(9), 10))
    assert payload["repeats"] == {"count": 7, "first_auditID": "id-1", "last_auditID": "id-9",
                                  "from": "2026-11-26T14:19:51.292367Z",
                                  "to": "2026-11-26T14:19:51.292375Z", "rate_per_minute": 10}
    assert payload["output"].startswith("7 more alerts of this rule")


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
    alerts.append(Alert(time=ALERT.time, rule="quiet", priority=6, output="info only",
                        audit_id="x", event=99))
    store.commit_consumed("rules", 99, alerts)
    notifier = build(parse_notify(f"webhook:{receiver.url}", min_priority="WARNING",
                                  since=NOTIFY_ALL))
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


def test_rate_limited_alerts_arrive_as_one_counted_notification(tmp_path: Path,
                                                                 receiver: _Receiver) -> None:
    receiver.failing = False
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    store.commit_consumed("rules", 30, [_alert(i, "noisy") for i in range(25)]
                          + [_alert(25 + i, "other") for i in range(2)])
    now = [0.0]
    notifier = build(parse_notify(f"webhook:{receiver.url}", rate_per_minute=10, since=NOTIFY_ALL))
    delivery = Delivery(store, notifier, poll=0.01, clock=lambda: now[0])
    stop = threading.Event()
    assert delivery.step(stop) == 27
    assert [p["output"] for p in receiver.received] == [f"alert {i}" for i in range(10)] + [
        "alert 25", "alert 26"]
    # The held alerts are not behind the cursor yet: a crash now would read them again.
    assert store.get_cursor(notifier.name) == 10
    assert delivery.step(stop) == 0 and len(receiver.received) == 12  # the minute is not over
    now[0] = 60
    assert delivery.step(stop) == 0
    summary = receiver.received[-1]
    assert summary["repeats"]["count"] == 15 and summary["auditID"] == "id-24"
    assert store.get_cursor(notifier.name) == 27
    store.close()


def test_history_is_not_notified_unless_asked(tmp_path: Path, receiver: _Receiver) -> None:
    from auditsink.notify.base import include_for_notifiers

    receiver.failing = False
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    recent = int(time.time() * 1_000_000) - 60_000_000  # a minute ago: inside the grace
    old = [_alert(i) for i in range(3)]                 # 2026-11-26: history
    fresh = Alert(time=recent, rule="r", priority=4, output="fresh", audit_id="f", event=50)
    imported = Alert(time=ALERT.time, rule="r", priority=4, output="imported", audit_id="i",
                     event=70)
    include_for_notifiers(store, 60, 80)  # what `import --notify` wrote
    store.commit_consumed("rules", 80, [*old, fresh, imported])
    delivery = Delivery(store, build(parse_notify(f"webhook:{receiver.url}")))
    assert delivery.step(threading.Event()) == 5
    assert [p["output"] for p in receiver.received] == ["fresh", "imported"]
    assert delivery.skipped_old == 3
    # --notify-since moves the start back: everything is news then.
    since = build(parse_notify(f"webhook:{receiver.url}?2", since=ALERT.time))  # its own cursor
    assert Delivery(store, since).step(threading.Event()) == 5 and len(receiver.received) == 7
    store.close()


def test_serve_notifies_a_webhook(server_factory: Any,
                                  receiver: _Receiver, falco_dir: Path) -> None:
    receiver.failing = False
    # The trace is from 2018: history, notified only because --notify-since asks for it.
    server = server_factory("--format", "none", "--notify", f"webhook:{receiver.url}",
                            "--notify-min-priority", "NOTICE", "--notify-since", "all")
    assert server.post((falco_dir / "traces" / "exec_pod.json").read_bytes())[0] == 200
    deadline = time.monotonic() + 10
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.05)
    exec_id = "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6"
    assert receiver.received and receiver.received[0]["auditID"] == exec_id
    assert receiver.received[0]["link"].endswith(f"/api/v1/events/{exec_id}")
    status, page = server.api_get("/api/v1/alerts?priority=NOTICE")
    assert status == 200 and page["alerts"][0]["auditID"] == "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6"


def test_history_imported_before_serve_is_not_notified(tmp_path: Path, server_factory: Any,
                                                      receiver: _Receiver, falco_dir: Path) -> None:
    """Issue 19: after an `import`, the next `serve` notified the whole history."""
    from click.testing import CliRunner

    from auditsink.cli import main

    receiver.failing = False
    store = f"sqlite:///{tmp_path}/auditsink.db"
    traces = falco_dir / "traces"
    imported = CliRunner().invoke(main, ["import", "--store", store,
                                         str(traces / "create_nginx_pod_privileged.json")])
    assert imported.exit_code == 0, imported.output
    args = ("--store", store, "--format", "none", "--notify", f"webhook:{receiver.url}",
            "--notify-min-priority", "NOTICE")
    server = server_factory(*args)
    # A live event (now): notified. The imported 2018 ones: not.
    live = json.loads((traces / "exec_pod.json").read_text())
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    live["stageTimestamp"] = live["requestReceivedTimestamp"] = now
    assert server.post(json.dumps(live).encode())[0] == 200
    deadline = time.monotonic() + 10
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the history would come first, in log order: give it every chance
    assert [p["auditID"] for p in receiver.received] == [live["auditID"]]
    server.stop()
    # `import --notify`: these old events are news on purpose.
    again = CliRunner().invoke(main, ["import", "--notify", "--store", store,
                                      str(traces / "create_nginx_pod_hostnetwork.json")])
    assert again.exit_code == 0, again.output
    server_factory(*args)
    deadline = time.monotonic() + 10
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    rules = [p["rule"] for p in receiver.received[1:]]
    assert rules and all("Host Network" in r or "Privileged" not in r for r in rules), rules
    assert not any("Privileged Pod Created" == r for r in rules)
