"""How long does evaluating an audit policy take per event? ``python -m benchmarks.bench_policy``

The policy is a realistic 20-rule policy shaped like the GKE/kube-up one (noise drops by user,
probes, events, node status, secrets at Metadata, reads at Request, the rest RequestResponse).
Events are the real kube-apiserver 1.20 capture in ../shared when it is there, plus generated
traffic with the mix a busy cluster sends (node and controller reads, leases, probes, pods).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from auditsink.admit.policy import Attributes, Policy, apply_policy, load_policy
from auditsink.admit.sources import iter_file_items
from auditsink.model import Event, Item, ObjectReference, UserInfo, encode

FIXTURE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "fixtures"
    / "kube-apiserver-1.20"
    / "audit.log"
)

POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
    resources: [{group: "", resources: ["endpoints", "services", "services/status"]}]
  - level: None
    namespaces: ["kube-system"]
    users: ["system:kube-controller-manager", "system:cloud-controller-manager"]
    verbs: ["get", "update"]
    resources: [{group: "", resources: ["endpoints"]}]
  - level: None
    users: ["system:apiserver"]
    verbs: ["get"]
    resources: [{group: "", resources: ["namespaces", "namespaces/status", "namespaces/finalize"]}]
  - level: None
    users: ["cluster-autoscaler"]
    verbs: ["get", "update"]
    namespaces: ["kube-system"]
    resources: [{group: "", resources: ["configmaps", "endpoints"]}]
  - level: None
    users: ["system:kube-controller-manager", "system:cloud-controller-manager"]
    verbs: ["get", "list"]
    resources: [{group: "metrics.k8s.io"}]
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/swagger*"]
  - level: None
    resources: [{group: "", resources: ["events"]}, {group: "events.k8s.io", resources: ["events"]}]
  - level: None
    resources: [{group: "coordination.k8s.io", resources: ["leases"]}]
  - level: Request
    users: ["kubelet", "system:node-problem-detector"]
    verbs: ["update", "patch"]
    resources: [{group: "", resources: ["nodes/status", "pods/status"]}]
  - level: Request
    userGroups: ["system:nodes"]
    verbs: ["update", "patch"]
    resources: [{group: "", resources: ["nodes/status", "pods/status"]}]
  - level: Request
    users: ["system:serviceaccount:kube-system:namespace-controller"]
    verbs: ["deletecollection"]
  - level: Metadata
    resources:
      - {group: "", resources: ["secrets", "configmaps", "serviceaccounts/token"]}
      - {group: "authentication.k8s.io", resources: ["tokenreviews"]}
  - level: RequestResponse
    resources: [{group: "", resources: ["pods/exec", "pods/attach", "pods/portforward"]}]
  - level: RequestResponse
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
    resources: [{group: "rbac.authorization.k8s.io"}]
  - level: None
    userGroups: ["system:nodes", "system:serviceaccounts:kube-system"]
    verbs: ["get", "list", "watch"]
  - level: Metadata
    resources: [{group: "*", resources: ["*/status"]}]
  - level: Request
    verbs: ["get", "list", "watch"]
    resources:
      - {group: ""}
      - {group: "apps"}
      - {group: "batch"}
      - {group: "networking.k8s.io"}
      - {group: "policy"}
      - {group: "storage.k8s.io"}
  - level: RequestResponse
    resources: [{group: ""}, {group: "apps"}, {group: "batch"}, {group: "networking.k8s.io"}]
  - level: Metadata
    namespaces: [""]
  - level: Metadata
"""

_USERS = [
    ("system:node:node-1", ["system:nodes", "system:authenticated"]),
    ("system:kube-controller-manager", ["system:authenticated"]),
    ("system:kube-scheduler", ["system:authenticated"]),
    ("system:kube-proxy", ["system:authenticated"]),
    (
        "system:serviceaccount:kube-system:coredns",
        ["system:serviceaccounts", "system:serviceaccounts:kube-system"],
    ),
    (
        "system:serviceaccount:default:app",
        ["system:serviceaccounts", "system:serviceaccounts:default"],
    ),
    ("admin", ["system:masters", "system:authenticated"]),
    ("", []),
]
_TARGETS = [
    ("", "pods", ""),
    ("", "pods", "status"),
    ("", "nodes", "status"),
    ("", "configmaps", ""),
    ("", "secrets", ""),
    ("", "endpoints", ""),
    ("", "services", ""),
    ("", "events", ""),
    ("coordination.k8s.io", "leases", ""),
    ("apps", "deployments", ""),
    ("apps", "deployments", "scale"),
    ("rbac.authorization.k8s.io", "clusterroles", ""),
    ("", "pods", "exec"),
    ("batch", "jobs", ""),
    ("discovery.k8s.io", "endpointslices", ""),
    ("", "namespaces", ""),
]
_VERBS = ["get", "list", "watch", "update", "patch", "create", "delete"]
_PATHS = ["/healthz", "/readyz", "/livez", "/api", "/apis", "/version", "/openapi/v2", "/metrics"]


def generated_items(count: int, seed: int = 7) -> list[Item]:
    """``count`` events with the mix of a busy cluster (70% resource requests)."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        name, groups = rng.choice(_USERS)
        user = UserInfo(username=name, groups=list(groups))
        if rng.random() < 0.3:
            path = rng.choice(_PATHS)
            event = Event(
                "Metadata", f"id-{i}", "ResponseComplete", requestURI=path, verb="get", user=user
            )
        else:
            group, resource, sub = rng.choice(_TARGETS)
            verb = rng.choice(_VERBS)
            ns = rng.choice(["kube-system", "default", "demo", ""])
            ref = ObjectReference(
                resource=resource,
                namespace=ns,
                name=f"obj-{i % 50}",
                apiGroup=group,
                subresource=sub,
            )
            uri = f"/api/v1/namespaces/{ns}/{resource}/obj-{i % 50}"
            event = Event(
                "Metadata",
                f"id-{i}",
                "ResponseComplete",
                requestURI=uri,
                verb=verb,
                user=user,
                objectRef=ref,
            )
        items.append(Item(event=event, raw=encode(event)))
    return items


def _time(fn: Callable[[Item], object], items: list[Item], rounds: int) -> float:
    """Best of ``rounds`` passes over ``items``, in ns per event."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter_ns() - start) / len(items))
    return best


def _line(label: str, ns: float) -> None:
    print(f"{label:<44} {ns:8.0f} ns/event")


def main() -> None:
    policy: Policy = load_policy(POLICY, file="<bench>")
    assert len(policy.rules) == 20
    items = generated_items(20_000)
    source = "generated"
    if FIXTURE.exists():
        items += list(iter_file_items([str(FIXTURE)]))
        source = f"generated + {FIXTURE.name}"
    print(f"policy: {len(policy.rules)} rules; events: {len(items)} ({source})")
    evaluate_event = policy.evaluate_event
    # The blackhole baseline: what the measuring loop itself costs per event.
    _line("baseline (loop, no work)", _time(lambda it: it.event, items, 5))
    cold = Policy(policy.spec)  # fresh target caches: the first event per target pays the compile
    _line(
        "evaluate_event, first pass (cold caches)",
        _time(lambda it: cold.evaluate_event(it.event), items, 1),
    )
    _line("evaluate_event (steady state)", _time(lambda it: evaluate_event(it.event), items, 5))
    by_attrs = {id(it): Attributes.from_event(it.event) for it in items}
    _line("evaluate(Attributes)", _time(lambda it: policy.evaluate(by_attrs[id(it)]), items, 5))
    _line(
        "apply_policy (evaluate + drop/strip)", _time(lambda it: apply_policy(policy, it), items, 3)
    )


if __name__ == "__main__":
    main()
