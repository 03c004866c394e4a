"""Propose a policy from observed traffic: keep what matters for security, drop the noise.

The shape follows the Kubernetes docs and GKE/kubeadm-style policies: drop probes, leases and
Event objects; never log bodies of secrets, configmaps or token reviews; keep exec/attach/
port-forward and RBAC changes; drop read-only traffic of the control plane and the nodes (the
users come from the traffic); log writes with their request; everything else, including
requests that failed authentication (they have no user, so no user rule can drop them), at
Metadata. Each rule is commented with what it matched in the traffic, and the policy is
simulated on that traffic to report the volume it saves.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from auditsink.admit.policy import Policy, load_policy
from auditsink.admit.simulate import Simulation, simulate
from auditsink.model import Item

READ_VERBS = ("get", "list", "watch")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
# Namespaces of cluster components: their service accounts' reads are control-plane chatter.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
_SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Suggestion:
    """The proposed policy text and its simulation on the traffic it was made from."""

    text: str
    policy: Policy
    simulation: Simulation


@dataclass
class _Block:
    comment: list[str]
    body: list[str]


def suggest_policy(items: Iterable[Item]) -> Suggestion:
    """Build a commented policy from ``items`` (files now, the store later) and simulate it."""
    items = list(items)  # read twice: once to learn the users, once to simulate
    blocks = _blocks(_system_identities(items))
    text = _render(blocks, None, len(items))
    policy = load_policy(text, file="<suggested>")
    sim = simulate(policy, items)
    # Second rendering with per-rule counts; comments do not change the rules.
    text = _render(blocks, sim, len(items))
    return Suggestion(text, load_policy(text, file="<suggested>"), sim)


def _system_identities(items: list[Item]) -> tuple[list[str], list[str]]:
    """The control-plane users and groups that made read-only requests in the traffic."""
    users: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    for item in items:
        event = item.event
        if event.verb not in READ_VERBS:
            continue
        name = event.user.username
        if name.startswith(_SA_PREFIX):
            namespace = name[len(_SA_PREFIX) :].partition(":")[0]
            if namespace in SYSTEM_NAMESPACES:
                groups[f"system:serviceaccounts:{namespace}"] += 1
        elif name.startswith("system:node:"):
            groups["system:nodes"] += 1
        elif name.startswith("system:") and name != "system:anonymous":
            users[name] += 1
    # Always present in a cluster, whether or not this sample saw them.
    groups.update({"system:nodes": 0, "system:serviceaccounts:kube-system": 0})
    return sorted(users), sorted(groups)


def _blocks(identities: tuple[list[str], list[str]]) -> list[_Block]:
    users, groups = identities
    q = json.dumps
    blocks = [
        _Block(
            ["Health, readiness and version probes: constant volume, no security value."],
            [
                "- level: None",
                '  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/version/*"]',
            ],
        ),
        _Block(
            ["Leader-election leases and Event objects: churn, not activity."],
            [
                "- level: None",
                "  resources:",
                '    - group: "coordination.k8s.io"',
                '      resources: ["leases"]',
                '    - group: ""',
                '      resources: ["events"]',
                '    - group: "events.k8s.io"',
                '      resources: ["events"]',
            ],
        ),
        _Block(
            [
                "Secrets, configmaps and tokens: who touched them, never their content",
                "(Request or RequestResponse would store secret values).",
            ],
            [
                "- level: Metadata",
                "  resources:",
                '    - group: ""',
                '      resources: ["secrets", "configmaps", "serviceaccounts/token"]',
                '    - group: "authentication.k8s.io"',
                '      resources: ["tokenreviews"]',
            ],
        ),
        _Block(
            ["Shells and tunnels into pods: the command is in requestURI."],
            [
                "- level: Request",
                "  resources:",
                '    - group: ""',
                '      resources: ["pods/exec", "pods/attach", "pods/portforward"]',
            ],
        ),
        _Block(
            ["RBAC changes: who granted what, with the request and the object it produced."],
            [
                "- level: RequestResponse",
                f"  verbs: [{', '.join(q(v) for v in WRITE_VERBS)}]",
                "  resources:",
                '    - group: "rbac.authorization.k8s.io"',
            ],
        ),
    ]
    if users:
        blocks.append(
            _Block(
                [
                    "Read-only traffic of control-plane components (users seen reading in the "
                    "traffic):",
                    "the bulk of the volume.",
                ],
                [
                    "- level: None",
                    f"  users: [{', '.join(q(u) for u in users)}]",
                    f"  verbs: [{', '.join(q(v) for v in READ_VERBS)}]",
                ],
            )
        )
    blocks.append(
        _Block(
            ["The same for nodes and system service accounts, by group."],
            [
                "- level: None",
                f"  userGroups: [{', '.join(q(g) for g in groups)}]",
                f"  verbs: [{', '.join(q(v) for v in READ_VERBS)}]",
            ],
        )
    )
    blocks += [
        _Block(
            ["Every other change, with its request body."],
            ["- level: Request", f"  verbs: [{', '.join(q(v) for v in WRITE_VERBS)}]"],
        ),
        _Block(
            [
                "Everything else at Metadata: reads by people and workloads, and requests that",
                "failed authentication (401, no user: no users/userGroups rule can match them).",
            ],
            ["- level: Metadata"],
        ),
    ]
    return blocks


def _render(blocks: list[_Block], sim: Simulation | None, events: int) -> str:
    out = [
        f"# Suggested by `auditsink policy suggest` from {events} events of traffic.",
        "# Review it before use: the first rule that matches a request decides its level.",
        "apiVersion: audit.k8s.io/v1",
        "kind: Policy",
        "# RequestReceived repeats what the later stages say about the same request.",
        'omitStages: ["RequestReceived"]',
        "rules:",
    ]
    for index, block in enumerate(blocks):
        out += [f"  # {line}" for line in block.comment]
        if sim is not None:
            tally = sim.by_rule.get(index)
            seen = tally.events if tally else 0
            kept = tally.kept_events if tally else 0
            out.append(f"  # traffic: {seen} events matched, {kept} kept")
        out += [f"  {line}" for line in block.body]
    return "\n".join(out) + "\n"
