"""Each policy preset, replayed over real traffic that raises every built-in rule, still feeds
the rules it promises to feed.

The traffic (tests/data/rules/audit.log.gz, see its README) is a real kube-apiserver's own
audit log, recorded at Request level (pods at RequestResponse) with every stage, so applying a
preset to it gives what that API server would have sent under the preset. The policy engine
applying it is auditsink's (tests/admit checks it against kube-apiserver's decisions).
"""

from __future__ import annotations

from collections import Counter

import pytest

from auditsink.admit.policy import apply_policy, load_policy
from auditsink.model import Item, decode_body, iter_file_bodies
from auditsink.rules import load_rules
from auditsink.rules.stateful import StatefulDetectors, default_detectors
from auditsink.setup.policy import PRESETS, policy_text
from conftest import DATA

TRACE = DATA / "rules" / "audit.log.gz"
BUILTIN = {rule.name for rule in load_rules(None).rules} | {d.name for d in default_detectors()}

# What each preset keeps out of the store, and so which rules cannot fire behind it.
# The rules that read the request object, which a Metadata event does not carry. ("Pod Created
# in Kube Namespace" is not one: without the body no image is trusted, and it fires.)
POD_BODIES = {"Privileged Pod Created", "Host Network Pod Created", "Host PID Pod Created",
              "Host IPC Pod Created", "Sensitive Host Path Mounted"}
RBAC_BODIES = {"Cluster-Admin Binding Created", "Wildcard Role Created",
               "Write-Privileged Role Created", "Pod Exec Role Created"}
NEEDS_BODIES = POD_BODIES | RBAC_BODIES | {
    "ConfigMap With Credentials", "NodePort Service Created", "Ingress Without TLS Created"}
EXPECTED = {
    # Promises the bodies and events every rule reads: everything fires, as often as unfiltered.
    "detection": BUILTIN,
    # Writes at Metadata; reads dropped (no impersonated read, no secret reads, no 401s).
    "minimal": BUILTIN - NEEDS_BODIES - {
        "Privileged Identity Impersonated", "Secret Read Burst", "Repeated Access Denied",
        "Anonymous Request Allowed"},
    # The Kubernetes docs' example: pods and the core group with bodies; configmaps outside
    # kube-system, RBAC and networking.k8s.io at Metadata.
    "seed": BUILTIN - RBAC_BODIES - {"ConfigMap With Credentials", "Ingress Without TLS Created"},
}


def _items() -> list[Item]:
    items: list[Item] = []
    for body in iter_file_bodies(str(TRACE)):
        good, bad = decode_body(body)
        assert not bad
        items.extend(good)
    return items


def fired(items: list[Item]) -> Counter[str]:
    """Detections per rule, the stateful ones included, as ``serve`` would raise them."""
    rules, stateful = load_rules(None), StatefulDetectors()
    counts: Counter[str] = Counter()
    for item in items:
        counts.update(d.rule for d in rules.evaluate(item.raw))
        counts.update(d.rule for d in stateful.observe(item.raw))
    return counts


@pytest.fixture(scope="module")
def unfiltered() -> Counter[str]:
    return fired(_items())


def test_the_traffic_raises_every_builtin_rule(unfiltered: Counter[str]) -> None:
    assert set(unfiltered) == BUILTIN


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_keeps_what_its_rules_read(preset: str, unfiltered: Counter[str]) -> None:
    policy = load_policy(policy_text(preset).encode(), file=f"{preset}.yaml")
    kept = [out for out in (apply_policy(policy, item) for item in _items()) if out is not None]
    counts = fired(kept)
    assert set(counts) == EXPECTED[preset], (
        f"missing: {sorted(EXPECTED[preset] - set(counts))}, "
        f"unexpected: {sorted(set(counts) - EXPECTED[preset])}")
    if preset == "detection":
        assert counts == unfiltered  # not one detection lost
