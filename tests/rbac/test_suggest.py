"""Table tests for every rule of `rbac suggest`, from audit2rbac's documented behaviour.

Most cases are audit2rbac's own (pkg/process_test.go ``TestProcessOptions`` and
cmd/audit2rbac/audit2rbac_test.go ``TestEventToAttributes``), restated as audit events; the
ones where auditsink differs on purpose say so. Every case also checks that the suggestion
allows each request it was made from (with RBAC's own matching, auditsink.rbac.authorize).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from auditsink.rbac.authorize import allowed
from auditsink.rbac.diff import describe
from auditsink.rbac.identity import Identity
from auditsink.rbac.request import Observed, Request
from auditsink.rbac.suggest import SuggestOptions, Suggestion, suggest

BOB = Identity.user("bob")
CLUSTER = "*"  # the key of the ClusterRole in shape()


def shape(s: Suggestion) -> dict[str, list[str]]:
    """``{"*": ClusterRole rules, namespace: Role rules}``, each rule on one line."""
    out = {ns: [describe(r) for r in rules] for ns, rules in s.roles.items()}
    if s.cluster_rules:
        out[CLUSTER] = [describe(r) for r in s.cluster_rules]
    return out


def check_covers(s: Suggestion) -> None:
    grants = s.grants() + list(s.options.existing)
    for request in s.used:
        if request not in s.skipped:
            assert allowed(grants, request), f"{request} is not allowed by {shape(s)}"


NAMES_OFF = SuggestOptions(keep_names=True)
WIDEN = SuggestOptions(cluster_wide_after=1)  # audit2rbac's default namespace expansion

CASES: list[tuple[str, list[str], SuggestOptions, dict[str, list[str]]]] = [
    # -- audit2rbac TestProcessOptions ------------------------------------------------------
    ("empty", [], SuggestOptions(), {}),
    ("already allowed to every authenticated user (discovery)",
     ["get /api", "get /apis", "get /version?timeout=32s", "get /openapi/v2"],
     SuggestOptions(), {}),
    ("nonresource", ["get /foo"], SuggestOptions(), {CLUSTER: ["get /foo"]}),
    ("cluster-scoped named resource",
     ["get nodes mynode", "get storageclasses.storage.k8s.io mysc"], SuggestOptions(),
     {CLUSTER: ["get nodes [mynode]", "get storageclasses.storage.k8s.io [mysc]"]}),
    ("cluster-scoped named resources with name expansion",
     ["get nodes node1", "get nodes node2", "get storageclasses.storage.k8s.io sc1",
      "get storageclasses.storage.k8s.io sc2"], SuggestOptions(),
     {CLUSTER: ["get nodes", "get storageclasses.storage.k8s.io"]}),
    ("cluster-scoped named resources without name expansion",
     ["get nodes node1", "get nodes node2", "get storageclasses.storage.k8s.io sc1",
      "get storageclasses.storage.k8s.io sc2"], NAMES_OFF,
     {CLUSTER: ["get nodes [node1,node2]", "get storageclasses.storage.k8s.io [sc1,sc2]"]}),
    ("without name expansion, with a covering verb expansion (list covers get)",
     ["get nodes node1", "get nodes node2", "get storageclasses.storage.k8s.io sc1",
      "list nodes", "list storageclasses.storage.k8s.io"], NAMES_OFF,
     {CLUSTER: ["get,list,watch nodes", "get,list,watch storageclasses.storage.k8s.io"]}),
    ("namespaced named resources",
     ["get configmaps ns1/cm1", "get pods ns2/pod1"], SuggestOptions(),
     {"ns1": ["get configmaps [cm1]"], "ns2": ["get pods [pod1]"]}),
    ("namespaced named resources with namespace and name expansion",
     ["get configmaps ns1/cm1",
      "get pods ns1/pod1", "get pods ns1/pod2", "get pods ns2/pod1", "get pods ns2/pod2",
      "get deployments.apps ns1/dep1", "get deployments.apps ns1/dep2",
      "get deployments.apps ns2/dep1", "get deployments.apps ns2/dep2"], WIDEN,
     {CLUSTER: ["get pods", "get deployments.apps"], "ns1": ["get configmaps [cm1]"]}),
    ("namespaced named resources with namespace expansion",
     ["get configmaps ns1/cm1",
      "get pods ns2/pod1", "get pods ns3/pod1",
      "get deployments.apps ns2/dep1", "get deployments.apps ns3/dep1",
      "get pods ns2/pod2", "get pods ns3/pod3",
      "get deployments.apps ns2/dep2", "get deployments.apps ns3/dep3"],
     SuggestOptions(keep_names=True, cluster_wide_after=1),
     {CLUSTER: ["get pods [pod1]", "get deployments.apps [dep1]"],
      "ns1": ["get configmaps [cm1]"],
      "ns2": ["get pods [pod2]", "get deployments.apps [dep2]"],
      "ns3": ["get pods [pod3]", "get deployments.apps [dep3]"]}),
    ("namespaced named resources with name expansion (the default here)",
     ["get configmaps ns1/cm1",
      "get pods ns2/pod1", "get pods ns2/pod2", "get pods ns3/pod1", "get pods ns3/pod3",
      "get deployments.apps ns2/dep1", "get deployments.apps ns2/dep2",
      "get deployments.apps ns3/dep1", "get deployments.apps ns3/dep3"], SuggestOptions(),
     {"ns1": ["get configmaps [cm1]"],
      "ns2": ["get pods", "get deployments.apps"], "ns3": ["get pods", "get deployments.apps"]}),
    ("namespaced named resources without name or namespace expansion",
     ["get configmaps ns1/cm1", "get pods ns2/pod1", "get pods ns2/pod2", "get pods ns3/pod1",
      "get pods ns3/pod3"], NAMES_OFF,
     {"ns1": ["get configmaps [cm1]"], "ns2": ["get pods [pod1,pod2]"],
      "ns3": ["get pods [pod1,pod3]"]}),
    ("a covering cluster-wide list makes the Roles unnecessary",
     ["get configmaps ns1/cm1", "get pods ns2/pod1", "get pods ns3/pod3",
      "get deployments.apps ns2/dep1", "list deployments.apps", "list configmaps",
      "list pods"], NAMES_OFF,
     {CLUSTER: ["get,list,watch configmaps,pods", "get,list,watch deployments.apps"]}),
    # -- the rules issue 14 lists ------------------------------------------------------------
    ("create does not constrain the name (audit2rbac's 'accepted create')",
     ["create configmaps ns1/c1"], SuggestOptions(), {"ns1": ["create configmaps"]}),
    ("a denied create has no name either", ["create configmaps ns1/"], SuggestOptions(),
     {"ns1": ["create configmaps"]}),
    ("watch expands to get,list", ["watch pods ns1/"], SuggestOptions(),
     {"ns1": ["get,list,watch pods"]}),
    ("list expands to get,watch", ["list pods ns1/"], SuggestOptions(),
     {"ns1": ["get,list,watch pods"]}),
    ("update expands to get,patch", ["update configmaps ns1/c1"], SuggestOptions(),
     {"ns1": ["get,patch,update configmaps [c1]"]}),
    ("patch expands to get,update", ["patch configmaps ns1/c1"], SuggestOptions(),
     {"ns1": ["get,patch,update configmaps [c1]"]}),
    ("other verbs are not expanded", ["delete configmaps ns1/c1", "deletecollection pods ns1/"],
     SuggestOptions(), {"ns1": ["delete configmaps [c1]", "deletecollection pods"]}),
    ("verb expansion can be turned off", ["list pods ns1/", "patch configmaps ns1/c1"],
     SuggestOptions(expand_verbs=False),
     {"ns1": ["patch configmaps [c1]", "list pods"]}),
    ("subresources are kept", ["patch deployments.apps/scale ns1/web", "get pods/log ns1/web"],
     SuggestOptions(),
     {"ns1": ["get pods/log [web]", "get,patch,update deployments/scale.apps [web]"]}),
    ("non-resource URLs lose their query string",
     ["get /metrics?timeout=32s", "get /metrics", "post /logs/kube?x=1"], SuggestOptions(),
     {CLUSTER: ["post /logs/kube", "get /metrics"]}),
    ("a list across namespaces is cluster-wide", ["list pods"], SuggestOptions(),
     {CLUSTER: ["get,list,watch pods"]}),
    ("cluster-scoped resources go to the ClusterRole, namespaced ones to a Role per namespace",
     ["list namespaces", "create configmaps ns1/a", "create configmaps ns2/b"],
     SuggestOptions(),
     {CLUSTER: ["get,list,watch namespaces"], "ns1": ["create configmaps"],
      "ns2": ["create configmaps"]}),
    ("never widened by default, however many namespaces",
     [f"list pods ns{i}/" for i in range(5)], SuggestOptions(),
     {f"ns{i}": ["get,list,watch pods"] for i in range(5)}),
    ("widened only past the threshold: 3 namespaces, --cluster-wide-after 3",
     [f"list pods ns{i}/" for i in range(3)], SuggestOptions(cluster_wide_after=3),
     {f"ns{i}": ["get,list,watch pods"] for i in range(3)}),
    ("widened past the threshold: 4 namespaces, --cluster-wide-after 3",
     [f"list pods ns{i}/" for i in range(4)] + ["get secrets ns0/s"],
     SuggestOptions(cluster_wide_after=3),
     {CLUSTER: ["get,list,watch pods"], "ns0": ["get secrets [s]"]}),
    ("differs from audit2rbac: widening counts each exact operation, names included",
     # audit2rbac (both expansions on) grants `get pods` in every namespace here.
     ["get pods ns1/pod1", "get pods ns2/pod2"], WIDEN,
     {"ns1": ["get pods [pod1]"], "ns2": ["get pods [pod2]"]}),
    ("one name is kept", ["get secrets ns1/s1", "get secrets ns1/s1"], SuggestOptions(),
     {"ns1": ["get secrets [s1]"]}),
    ("names are dropped when several were used, per verb",
     ["get secrets ns1/s1", "get secrets ns1/s2", "delete secrets ns1/s1"], SuggestOptions(),
     {"ns1": ["get secrets", "delete secrets [s1]"]}),
    ("a list by field selector on one name stays on that name (kubectl delete --wait)",
     ["delete configmaps ns1/c1", "list configmaps ns1/c1"], SuggestOptions(),
     {"ns1": ["delete,get,list,watch configmaps [c1]"]}),
    ("'*' in a request is never turned into a rule",
     ["get *.* ns1/", "get /api/v1/%2A", "get /logs*", "get pods ns1/*"], SuggestOptions(),
     {"ns1": ["get pods [*]"]}),
]


@pytest.mark.parametrize("name,requests,options,expected", CASES, ids=[c[0] for c in CASES])
def test_suggest_table(name: str, requests: list[str], options: SuggestOptions,
                       expected: dict[str, list[str]], ev: Callable[..., bytes],
                       observed: Callable[[Identity, list[bytes]], Observed]) -> None:
    result = suggest(observed(BOB, [ev(r) for r in requests]), options)
    assert shape(result) == expected
    check_covers(result)
    assert all("*" not in part for rule in result.cluster_rules for part in
               rule.verbs + rule.api_groups + rule.resources + rule.non_resource_urls)


def test_wildcard_requests_are_listed_as_skipped(ev: Any, observed: Any) -> None:
    result = suggest(observed(BOB, [ev("get /logs*"), ev("get *.* ns1/"), ev("get pods ns1/")]))
    assert [str(r) for r in result.skipped] == ["get /logs*", "get *.* ns1"]


@pytest.mark.parametrize("event,identity,expected", [
    # audit2rbac's eventToAttributes: the impersonated user is the one authorized.
    ({"user": "admin", "as_user": "carol"}, Identity.user("carol"), True),
    ({"user": "admin", "as_user": "carol"}, Identity.user("admin"), False),
    ({"user": "admin", "as_user": "system:serviceaccount:work:robot"},
     Identity.parse_serviceaccount("work:robot"), True),
    ({"user": "system:serviceaccount:work:robot"}, Identity.parse_serviceaccount("work:robot"),
     True),
    ({"user": "system:serviceaccount:work:robot"}, Identity.parse_serviceaccount("other:robot"),
     False),
    # Groups: the impersonated user's groups, not the impersonator's.
    ({"user": "admin", "groups": ("system:masters",), "as_user": "carol",
      "as_groups": ("dev", "system:authenticated")}, Identity.group("dev"), True),
    ({"user": "admin", "groups": ("system:masters",), "as_user": "carol"},
     Identity.group("system:masters"), False),
    ({"user": "dave", "groups": ("dev",)}, Identity.group("dev"), True),
])
def test_acting_identity(event: dict[str, Any], identity: Identity, expected: bool,
                         ev: Any, observed: Any) -> None:
    result = observed(identity, [ev("get pods ns1/web", **event)])
    assert (Request("get", "", "pods", "", "ns1", "web") in result.requests) is expected


@pytest.mark.parametrize("as_user,as_groups,expected", [
    # k8s.io/apiserver impersonation filter: what it checks of the impersonator.
    ("carol", ("system:authenticated",), ["impersonate users [carol]"]),
    ("carol", ("dev", "ops", "system:authenticated"),
     ["impersonate groups [dev,ops]", "impersonate users [carol]"]),
    ("system:serviceaccount:work:robot",
     ("system:serviceaccounts", "system:serviceaccounts:work", "system:authenticated"),
     ["impersonate serviceaccounts [robot]"]),
])
def test_impersonating_needs_impersonate(as_user: str, as_groups: tuple[str, ...],
                                         expected: list[str], ev: Any, observed: Any) -> None:
    admin = Identity.user("admin")
    seen = observed(admin, [ev("get pods ns1/web", user="admin", as_user=as_user,
                               as_groups=as_groups)])
    result = suggest(seen)
    rules = [describe(r) for r in result.cluster_rules]
    rules += [describe(r) for rules_ in result.roles.values() for r in rules_]
    assert rules == expected
    check_covers(result)


def test_denied_requests_are_included_by_default(ev: Any, observed: Any) -> None:
    events = [ev("list pods ns1/"), ev("get secrets ns1/s1", code=403),
              ev("delete pods ns1/web", code=403, decision="forbid")]
    assert shape(suggest(observed(BOB, events))) == {
        "ns1": ["get,list,watch pods", "delete pods [web]", "get secrets [s1]"]}
    assert shape(suggest(observed(BOB, events), SuggestOptions(only_allowed=True))) == {
        "ns1": ["get,list,watch pods"]}


def test_only_allowed_needs_a_known_outcome(ev: Any, observed: Any) -> None:
    # RequestReceived precedes authorization: it proves nothing about being allowed, and a
    # 403 from admission (decision allow) is still an allowed request for RBAC.
    events = [ev("get secrets ns1/s1", stage="RequestReceived", audit_id="a"),
              ev("get secrets ns1/s1", code=403, audit_id="a"),
              ev("create pods ns1/", code=403, decision="allow")]
    result = suggest(observed(BOB, events), SuggestOptions(only_allowed=True))
    assert shape(result) == {"ns1": ["create pods"]}
    assert observed(BOB, events).denied_calls == 1


def test_a_request_is_counted_once_over_its_stages(ev: Any, observed: Any) -> None:
    events = [ev("list pods ns1/", stage="RequestReceived", audit_id="x"),
              ev("list pods ns1/", audit_id="x"), ev("list pods ns1/", audit_id="y")]
    seen = observed(BOB, events)
    assert (len(seen.calls), seen.events) == (2, 3)


def test_groups_are_bound_as_groups(ev: Any, observed: Any) -> None:
    dev = Identity.group("dev")
    result = suggest(observed(dev, [ev("list pods ns1/", user="dave", groups=("dev",))]))
    binding = result.objects()[1]
    assert binding["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "dev"}]
    assert binding["metadata"] == {
        "name": "auditsink:group:dev", "namespace": "ns1",
        "labels": {"app.kubernetes.io/managed-by": "auditsink"},
        "annotations": {"auditsink/suggested-for": "Group dev"}}


def test_object_names_never_collide() -> None:
    names = {Identity.user("a/b").object_name(), Identity.user("a%b").object_name(),
             Identity.user("a-b").object_name(), Identity.group("a-b").object_name()}
    assert len(names) == 4


def test_suggestion_never_grants_what_was_not_asked(ev: Any, observed: Any) -> None:
    events = [ev("create configmaps ns1/c1"), ev("patch deployments.apps/scale ns1/web"),
              ev("list namespaces")]
    grants = suggest(observed(BOB, events)).grants()
    for request in [Request("get", "", "secrets", namespace="ns1"),
                    Request("create", "", "configmaps", namespace="ns2"),
                    Request("delete", "", "configmaps", namespace="ns1", name="c1"),
                    Request("patch", "apps", "deployments", "scale", "ns1", "other"),
                    Request("patch", "apps", "deployments", "", "ns1", "web"),
                    Request("delete", "", "namespaces", name="ns1"),
                    Request("get", path="/metrics")]:
        assert not allowed(grants, request), request
