"""The simulator's arithmetic and the suggester's policy, through the Python API."""

from __future__ import annotations

import json
from typing import Any

from auditsink.admit.policy import apply_policy, load_policy
from auditsink.admit.simulate import Simulation, format_report, human_size, simulate
from auditsink.admit.suggest import suggest_policy
from auditsink.model import Item, decode_body

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:kube-scheduler"]
    verbs: [get, list, watch]
  - level: Request
    resources: [{group: ""}]
"""


def items(*events: dict[str, Any]) -> list[Item]:
    good, bad = decode_body(json.dumps(events).encode())
    assert not bad
    return good


def ev(
    i: int, user: str, verb: str, stage: str = "ResponseComplete", **extra: Any
) -> dict[str, Any]:
    return {
        "level": "RequestResponse",
        "auditID": f"a{i}",
        "stage": stage,
        "verb": verb,
        "requestURI": "/api/v1/namespaces/d/pods",
        "user": {"username": user},
        "objectRef": {"resource": "pods", "namespace": "d"},
        "responseObject": {"kind": "PodList", "items": [{"metadata": {"name": "p" * 200}}]},
        **extra,
    }


TRAFFIC = items(
    ev(0, "system:kube-scheduler", "list"),
    ev(1, "alice", "list"),
    ev(2, "alice", "list", stage="RequestReceived"),
    ev(3, "bob", "get", objectRef={"resource": "nodes"}, requestURI="/api/v1/nodes/n1"),
    {
        "level": "Metadata",
        "auditID": "a4",
        "stage": "ResponseComplete",
        "verb": "get",
        "requestURI": "/healthz",
        "user": {},
    },
)


def test_simulation_totals_are_what_apply_policy_keeps() -> None:
    policy = load_policy(POLICY)
    sim = simulate(policy, TRAFFIC)
    kept = [k for item in TRAFFIC if (k := apply_policy(policy, item)) is not None]
    assert sim.total.events == 5 and sim.total.bytes == sum(len(i.raw) for i in TRAFFIC)
    assert sim.total.kept_events == len(kept) == 2
    assert sim.total.kept_bytes == sum(len(k.raw) for k in kept)
    assert sim.by_rule[0].events == 1 and sim.by_rule[0].kept_events == 0
    assert sim.by_rule[None].events == 1  # /healthz: no rule, level None
    assert sim.dropped_by_level.events == 2
    assert sim.dropped_by_stage["RequestReceived"].events == 1
    assert sim.downgraded == 2 and sim.upgraded == 0
    expected_cut = 100.0 * (sim.total.bytes - sim.total.kept_bytes) / sim.total.bytes
    assert sim.cut_percent == expected_cut
    report = format_report(sim)
    assert f"this policy cuts {expected_cut:.1f}% of the volume" in report
    assert "Projected: 2 of 5 events (40.0%)" in report


def test_empty_simulation() -> None:
    sim = Simulation(load_policy(POLICY))
    assert sim.cut_percent == 0.0
    assert "Projected: 0 of 0 events (0.0%)" in format_report(sim)


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024**2)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
    ]


def test_suggest_from_items_drops_system_reads_and_keeps_people() -> None:
    result = suggest_policy(iter(TRAFFIC))  # any iterable of Items: files now, the store later
    policy = result.policy
    by_id = {i.event.auditID: policy.evaluate_event(i.event) for i in TRAFFIC}
    assert by_id["a0"].level == "None"  # the scheduler's list
    assert by_id["a1"].level == "Metadata"  # a person's read
    assert by_id["a4"].level == "None"  # a probe
    assert '"system:kube-scheduler"' in result.text
    assert result.simulation.total.events == 5
