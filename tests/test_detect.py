"""Rules as a consumer of the store: every committed event evaluated once, across restarts."""

from __future__ import annotations

import json
from pathlib import Path

from auditsink.detect import Detector
from auditsink.model import decode_body
from auditsink.rules.engine import load_rules
from auditsink.store.base import AlertSelector, Selector
from auditsink.store.sqlite import SQLiteStore


def _trace_items(falco_dir: Path, name: str) -> list:  # type: ignore[type-arg]
    items, bad = decode_body((falco_dir / "traces" / name).read_bytes())
    assert not bad
    return items


def test_detector_resumes_from_its_cursor(tmp_path: Path, falco_dir: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    rules = load_rules()
    store.write(_trace_items(falco_dir, "exec_pod.json"))
    detector = Detector(store, rules)
    assert detector.step() == 1 and detector.step() == 0
    first = store.alerts(AlertSelector())
    assert [a.rule for a in first]
    assert all(a.audit_id == "ca1ed9f4-7bf4-4c85-81a8-1b11253d1ba6" for a in first)
    # A restart (new detector, same store) re-evaluates nothing ...
    again = Detector(store, rules)
    assert again.position == detector.position and again.step() == 0
    # ... and misses nothing committed since.
    store.write(_trace_items(falco_dir, "create_nginx_pod_privileged.json"))
    assert again.step() == 1
    rules_fired = {a.rule for a in store.alerts(AlertSelector())}
    assert any("Privileged" in r for r in rules_fired), rules_fired
    latest = store.alerts(AlertSelector(), limit=1)[0]
    assert latest.event == store.last_id()
    store.close()


def test_alerts_command(tmp_path: Path, falco_dir: Path) -> None:
    from click.testing import CliRunner

    from auditsink.cli import main

    store = SQLiteStore(f"sqlite:///{tmp_path}/a.db")
    store.open()
    for name in ("exec_pod.json", "create_nginx_pod_privileged.json", "create_service.json"):
        store.write(_trace_items(falco_dir, name))
    Detector(store, load_rules()).step()
    store.close()
    url = f"sqlite:///{tmp_path}/a.db"
    everything = CliRunner().invoke(main, ["alerts", "--store", url, "--format", "json"])
    assert everything.exit_code == 0, everything.output
    docs = json.loads(everything.output)
    assert {"INFO", "NOTICE"} <= {d["priority"] for d in docs}
    serious = CliRunner().invoke(main, ["alerts", "--store", url, "--priority", "notice"])
    lines = serious.output.splitlines()
    assert lines and not any(" INFO " in line for line in lines)
    assert all("(auditID " in line for line in lines)
    bad = CliRunner().invoke(main, ["alerts", "--store", url, "--priority", "loud"])
    assert bad.exit_code == 2 and "unknown priority" in bad.output


def _crafted() -> list[dict]:  # type: ignore[type-arg]
    """Events the row filters must not rule out: each is what one rule or detector wants."""
    def event(n: int, **fields: object) -> dict:  # type: ignore[type-arg]
        base: dict = {"kind": "Event", "apiVersion": "audit.k8s.io/v1",  # type: ignore[type-arg]
                      "level": "Metadata", "auditID": f"00000000-0000-4000-8000-{n:012d}",
                      "stage": "ResponseComplete", "verb": "get", "requestURI": "/api/v1",
                      "user": {"username": "alice"}, "sourceIPs": ["10.1.2.3"],
                      "responseStatus": {"code": 200},
                      "stageTimestamp": f"2026-12-06T10:00:{n % 60:02d}.{n:06d}Z"}
        base.update(fields)
        return base

    events = [
        event(1, user={"username": "system:anonymous"}, requestURI="/api/v1/secrets",
              annotations={"authorization.k8s.io/decision": "allow"}),
        event(2, impersonatedUser={"username": "system:admin"}, verb="list",
              objectRef={"resource": "pods", "namespace": "default"}),
        event(3, impersonatedUser={"username": "bob", "groups": ["system:masters"]},
              objectRef={"resource": "nodes"}),
        event(4, verb="delete", objectRef={"resource": "configmaps", "namespace": "kube-system",
                                           "name": "x"}),
    ]
    events += [event(100 + i, objectRef={"resource": "secrets", "namespace": "prod",
                                         "name": f"s{i}"}) for i in range(25)]
    events += [event(200 + i, responseStatus={"code": 403}, sourceIPs=["192.0.2.9"])
               for i in range(12)]
    events += [event(300 + i, stage="ResponseStarted", responseStatus={"code": 401},
                     sourceIPs=["192.0.2.10"]) for i in range(12)]
    return events


def test_row_filters_rule_out_nothing_a_rule_matches(tmp_path: Path, falco_dir: Path,
                                                     fixtures_dir: Path) -> None:
    """The consumer reads only the events whose row some rule's or detector's filter keeps
    (store/sql/prefilter.py); every detection a full evaluation of every event makes is
    still made, for our rules and Falco's, over Falco's traces, a real API server's traffic,
    generated traffic and events crafted for each rule that looks at users or impersonation."""
    from auditsink.rules.stateful import StatefulDetectors
    from benchmarks.generate_data import generate_events

    bodies = [(falco_dir / "traces" / name).read_bytes()
              for name in sorted(p.name for p in (falco_dir / "traces").iterdir())
              if name != "fal_01_003.json"]  # not an audit event: Falco's own bad input
    bodies += [line for line in (fixtures_dir / "audit.log").read_bytes().splitlines() if line]
    generated = list(generate_events(5000))
    for chunk in range(0, len(generated), 400):
        bodies.append(json.dumps({"kind": "EventList", "items": generated[chunk:chunk + 400]})
                      .encode())
    bodies.append(json.dumps({"kind": "EventList", "items": _crafted()}).encode())
    for rules_file in (None, falco_dir / "k8s_audit_rules.yaml"):
        store = SQLiteStore(f"sqlite:///{tmp_path}/{rules_file is None}.db")
        store.open()
        for body in bodies:
            items, _ = decode_body(body)
            store.write(items)
        rules = load_rules(None if rules_file is None else [rules_file])
        detector = Detector(store, rules, stateful=StatefulDetectors())
        while detector.step():
            pass
        found = {(a.rule, a.event) for a in store.alerts(AlertSelector(), limit=100_000)}
        everything = StatefulDetectors()
        expected = set()
        for stored in store.iter_all(Selector()):
            for detection in rules.evaluate(stored.raw) + everything.observe(stored.raw):
                expected.add((detection.rule, stored.id))
        assert found == expected and len(expected) > 50
        # ... and most events were never read: the filters did rule them out.
        assert detector.evaluated == store.last_id()
        assert detector.decoded < store.last_id() / 2, (detector.decoded, store.last_id())
        for rule in ("Anonymous Request Allowed", "Privileged Identity Impersonated",
                     "Secret Read Burst", "Repeated Access Denied"):
            if rules_file is None:
                assert rule in {name for name, _ in found}, rule
        store.close()
