"""Policy presets: valid audit.k8s.io/v1 policies, and the detection preset decides as documented.

``level_for`` is a direct transcription of the API server's rule matching (facts §7), kept here
so the presets are checked against Kubernetes' semantics, independent of auditsink's engine.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from auditsink.setup.files import SetupError
from conftest import DATA
from auditsink.setup.policy import PRESETS, policy_text

SEED = DATA / "seed" / "audit-policy.yaml"  # the seed article's policy, copied from ../shared
RULE_KEYS = {
    "level",
    "users",
    "userGroups",
    "verbs",
    "resources",
    "namespaces",
    "nonResourceURLs",
    "omitStages",
    "omitManagedFields",
}
LEVELS = {"None", "Metadata", "Request", "RequestResponse"}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load(policy_text(name))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid_policies(name: str) -> None:
    policy = load(name)
    assert policy["apiVersion"] == "audit.k8s.io/v1" and policy["kind"] == "Policy"
    assert set(policy) <= {
        "apiVersion",
        "kind",
        "metadata",
        "rules",
        "omitStages",
        "omitManagedFields",
    }
    assert policy["rules"]
    for rule in policy["rules"]:
        assert set(rule) <= RULE_KEYS and rule["level"] in LEVELS
        urls = rule.get("nonResourceURLs", [])
        assert not (urls and (rule.get("resources") or rule.get("namespaces")))
        for url in urls:
            assert (url.startswith("/") or url == "*") and "*" not in url[:-1]
        for gr in rule.get("resources", []):
            assert set(gr) <= {"group", "resources", "resourceNames"}
            assert not gr.get("resourceNames") or gr.get("resources")
    # The last rule is a catch-all so nothing silently falls through to None.
    assert set(policy["rules"][-1]) <= {"level", "omitStages"}
    assert policy_text(name).startswith(f"# preset: {name}.")


def test_seed_preset_is_the_seed_policy() -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} is absent")
    assert load("seed") == yaml.safe_load(SEED.read_text())


def test_unknown_preset() -> None:
    with pytest.raises(SetupError, match="choose one of seed, minimal, detection"):
        policy_text("everything")


def _matches_resource(rule: dict[str, Any], req: dict[str, Any]) -> bool:
    if not req.get("resource"):
        return False
    if rule.get("namespaces") and req.get("namespace", "") not in rule["namespaces"]:
        return False
    if not rule.get("resources"):
        return True
    combined = req["resource"] + (f"/{req['subresource']}" if req.get("subresource") else "")
    for gr in rule["resources"]:
        if gr.get("group", "") != req.get("group", ""):
            continue
        if not gr.get("resources"):
            return True
        for res in gr["resources"]:
            if gr.get("resourceNames") and req.get("name") not in gr["resourceNames"]:
                continue
            if (
                res in (combined, "*")
                or (res.startswith("*/") and res[2:] == req.get("subresource"))
                or (res.endswith("/*") and res[:-2] == req["resource"])
            ):
                return True
    return False


def level_for(policy: dict[str, Any], req: dict[str, Any]) -> str:
    """The level kube-apiserver's policy checker gives ``req`` (first matching rule wins)."""
    for rule in policy["rules"]:
        if rule.get("users") and req.get("user") not in rule["users"]:
            continue
        if rule.get("userGroups") and not set(req.get("groups", [])) & set(rule["userGroups"]):
            continue
        if rule.get("verbs") and req["verb"] not in rule["verbs"]:
            continue
        if rule.get("resources") or rule.get("namespaces"):
            if not _matches_resource(rule, req):
                continue
        elif rule.get("nonResourceURLs"):
            path = req.get("path")
            if (
                req.get("resource")
                or path is None
                or not any(
                    u == "*" or u == path or (u.endswith("*") and path.startswith(u.rstrip("*")))
                    for u in rule["nonResourceURLs"]
                )
            ):
                continue
        return str(rule["level"])
    return "None"


ALICE = {"user": "alice", "groups": ["dev", "system:authenticated"]}
NODE = {"user": "system:node:cp1", "groups": ["system:nodes", "system:authenticated"]}

DETECTION_CASES = [
    ({**ALICE, "verb": "create", "resource": "pods", "namespace": "default"}, "RequestResponse"),
    (
        {**ALICE, "verb": "patch", "resource": "pods", "subresource": "ephemeralcontainers"},
        "RequestResponse",
    ),
    ({**ALICE, "verb": "create", "resource": "pods", "subresource": "exec"}, "Metadata"),
    ({**ALICE, "verb": "get", "resource": "pods", "subresource": "attach"}, "Metadata"),
    ({**ALICE, "verb": "create", "resource": "pods", "subresource": "portforward"}, "Metadata"),
    ({**ALICE, "verb": "create", "resource": "configmaps", "namespace": "default"}, "Request"),
    (
        {
            **ALICE,
            "verb": "create",
            "group": "rbac.authorization.k8s.io",
            "resource": "clusterroles",
        },
        "Request",
    ),
    (
        {
            **ALICE,
            "verb": "create",
            "group": "rbac.authorization.k8s.io",
            "resource": "clusterrolebindings",
        },
        "Request",
    ),
    ({**ALICE, "verb": "create", "resource": "services"}, "Request"),
    ({**ALICE, "verb": "create", "group": "apps", "resource": "deployments"}, "Request"),
    ({**ALICE, "verb": "create", "resource": "secrets"}, "Metadata"),
    ({**ALICE, "verb": "get", "resource": "secrets", "name": "db"}, "Metadata"),
    (
        {**ALICE, "verb": "create", "resource": "serviceaccounts", "subresource": "token"},
        "Metadata",
    ),
    ({**ALICE, "verb": "delete", "resource": "pods"}, "Metadata"),
    # People's reads stay (at Metadata): a policy cannot see whom a request impersonates.
    ({**ALICE, "verb": "list", "resource": "pods"}, "Metadata"),
    ({**ALICE, "verb": "get", "group": "rbac.authorization.k8s.io", "resource": "roles"},
     "Metadata"),
    # A request that failed authentication has no user at all (a 401).
    ({"user": "", "groups": [], "verb": "list", "resource": "namespaces"}, "Metadata"),
    # The cluster's machinery reads all day: dropped.
    ({"user": "system:serviceaccount:apps:operator",
      "groups": ["system:serviceaccounts", "system:serviceaccounts:apps", "system:authenticated"],
      "verb": "watch", "resource": "configmaps"}, "None"),
    ({"user": "system:kube-controller-manager", "groups": ["system:authenticated"],
      "verb": "list", "resource": "pods"}, "None"),
    ({**ALICE, "verb": "get", "path": "/apis/apps/v1"}, "None"),
    ({**ALICE, "verb": "get", "path": "/healthz"}, "None"),
    ({**NODE, "verb": "watch", "resource": "secrets"}, "None"),
    ({**NODE, "verb": "update", "group": "coordination.k8s.io", "resource": "leases"}, "None"),
    ({**ALICE, "verb": "create", "resource": "events"}, "None"),
    (
        {
            "user": "system:anonymous",
            "groups": ["system:unauthenticated"],
            "verb": "get",
            "path": "/version",
        },
        "Metadata",
    ),
    (
        {
            "user": "system:anonymous",
            "groups": ["system:unauthenticated"],
            "verb": "get",
            "path": "/readyz",
        },
        "None",
    ),
    (
        {
            "user": "system:anonymous",
            "groups": ["system:unauthenticated"],
            "verb": "create",
            "resource": "namespaces",
        },
        "Metadata",
    ),
]


@pytest.mark.parametrize(("req", "level"), DETECTION_CASES)
def test_detection_levels(req: dict[str, Any], level: str) -> None:
    assert level_for(load("detection"), req) == level


@pytest.mark.parametrize(
    ("req", "level"),
    [
        ({**ALICE, "verb": "create", "resource": "pods"}, "Metadata"),
        ({**ALICE, "verb": "create", "resource": "secrets"}, "Metadata"),
        ({**ALICE, "verb": "get", "resource": "secrets"}, "None"),
        ({**ALICE, "verb": "get", "path": "/livez"}, "None"),
        ({**NODE, "verb": "update", "group": "coordination.k8s.io", "resource": "leases"}, "None"),
    ],
)
def test_minimal_levels(req: dict[str, Any], level: str) -> None:
    assert level_for(load("minimal"), req) == level


def test_evaluator_agrees_with_the_seed_policy_docs() -> None:
    seed = load("seed")
    assert level_for(seed, {**ALICE, "verb": "create", "resource": "pods"}) == "RequestResponse"
    assert (
        level_for(seed, {**ALICE, "verb": "get", "resource": "pods", "subresource": "log"})
        == "Metadata"
    )
    assert (
        level_for(
            seed, {**ALICE, "verb": "update", "resource": "configmaps", "name": "controller-leader"}
        )
        == "None"
    )
    assert (
        level_for(
            seed, {**ALICE, "verb": "create", "resource": "configmaps", "namespace": "kube-system"}
        )
        == "Request"
    )
    assert level_for(seed, {**ALICE, "verb": "get", "path": "/api/v1"}) == "None"
