"""The policy language as kube-apiserver's checker.go evaluates it, one dimension per table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from auditsink.admit.policy import Attributes, Decision, Policy, load_policy, policy_namespace_name
from auditsink.admit.shadow import find_shadowed
from auditsink.admit.spec import PolicyError, parse_policy
from auditsink.model import Event, ObjectReference, UserInfo


def make_policy(*rules: dict[str, Any], **top: Any) -> Policy:
    doc = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top}
    return load_policy(json.dumps(doc))


def res(
    resource: str,
    sub: str = "",
    group: str = "",
    *,
    ns: str = "",
    name: str = "",
    verb: str = "get",
    user: str | None = "alice",
    groups: tuple[str, ...] = ("system:authenticated",),
) -> Attributes:
    """A resource request."""
    return Attributes(
        user, groups if user else (), verb, True, ns, group, resource, sub, name, "/x"
    )


def url(
    path: str, *, verb: str = "get", user: str | None = "alice", groups: tuple[str, ...] = ()
) -> Attributes:
    """A non-resource request."""
    return Attributes(user, groups, verb, False, path=path)


def matches(rule: dict[str, Any], attrs: Attributes) -> bool:
    return make_policy({"level": "Metadata", **rule}).evaluate(attrs).rule == 0


CORE_PODS = {"resources": [{"group": "", "resources": ["pods"]}]}


@pytest.mark.parametrize(
    ("rule", "attrs", "expected"),
    [
        # users: exact, case-sensitive; no user never matches
        ({"users": ["alice"]}, res("pods"), True),
        ({"users": ["bob", "alice"]}, res("pods"), True),
        ({"users": ["Alice"]}, res("pods"), False),
        ({"users": ["alice"]}, res("pods", user=None), False),
        ({"users": [""]}, res("pods", user=None), False),
        # userGroups: any one group of the user
        ({"userGroups": ["system:nodes", "system:authenticated"]}, res("pods"), True),
        ({"userGroups": ["system:nodes"]}, res("pods"), False),
        ({"userGroups": ["system:unauthenticated"]}, res("pods", user=None), False),
        # verbs
        ({"verbs": ["get", "list"]}, res("pods", verb="list"), True),
        ({"verbs": ["get"]}, res("pods", verb="watch"), False),
        ({"verbs": ["create"]}, url("/apis", verb="post"), False),
        ({"verbs": ["post"]}, url("/apis", verb="post"), True),
        # no selectors: matches resource and non-resource requests, with or without a user
        ({}, res("pods"), True),
        ({}, url("/healthz", user=None), True),
        # AND across fields
        ({"users": ["alice"], "verbs": ["delete"]}, res("pods"), False),
        ({"users": ["alice"], "verbs": ["get"], **CORE_PODS}, res("pods"), True),
    ],
)
def test_user_group_verb_selectors(rule: dict[str, Any], attrs: Attributes, expected: bool) -> None:
    assert matches(rule, attrs) is expected


@pytest.mark.parametrize(
    ("resources", "attrs", "expected"),
    [
        # group "" is the core group only; an omitted group too
        ([{"group": "", "resources": ["pods"]}], res("pods"), True),
        ([{"group": "", "resources": ["deployments"]}], res("deployments", group="apps"), False),
        ([{"resources": ["deployments"]}], res("deployments", group="apps"), False),
        ([{"group": "apps", "resources": ["deployments"]}], res("deployments", group="apps"), True),
        # group "*" is any group (1.36+)
        ([{"group": "*", "resources": ["deployments"]}], res("deployments", group="apps"), True),
        ([{"group": "*", "resources": ["deployments"]}], res("deployments"), True),
        # no resources: every resource and subresource of the group
        ([{"group": ""}], res("pods", "log"), True),
        ([{"group": "apps"}], res("pods"), False),
        # "pods" is only pods without a subresource; "pods/log" only the log
        ([{"resources": ["pods"]}], res("pods", "log"), False),
        ([{"resources": ["pods/log"]}], res("pods", "log"), True),
        ([{"resources": ["pods/log"]}], res("pods"), False),
        # "*": every resource and every subresource
        ([{"resources": ["*"]}], res("pods"), True),
        ([{"resources": ["*"]}], res("pods", "exec"), True),
        # "*/status": that subresource of any resource, not the resource itself
        ([{"group": "*", "resources": ["*/status"]}], res("deployments", "status", "apps"), True),
        ([{"resources": ["*/status"]}], res("pods"), False),
        ([{"resources": ["*/status"]}], res("pods", "log"), False),
        # "pods/*": every subresource of pods AND plain pods (checker.go, despite the API docs)
        ([{"resources": ["pods/*"]}], res("pods", "exec"), True),
        ([{"resources": ["pods/*"]}], res("pods"), True),
        ([{"resources": ["pods/*"]}], res("services"), False),
        ([{"resources": ["pods/*"]}], res("podsx"), False),
        # "*/*" matches nothing
        ([{"resources": ["*/*"]}], res("pods", "log"), False),
        ([{"resources": ["*/*"]}], res("pods"), False),
        # several entries: any one
        ([{"group": "apps"}, {"group": "", "resources": ["pods"]}], res("pods"), True),
        # resourceNames compare with the name the policy saw
        (
            [{"resources": ["configmaps"], "resourceNames": ["leader"]}],
            res("configmaps", name="leader"),
            True,
        ),
        (
            [{"resources": ["configmaps"], "resourceNames": ["leader"]}],
            res("configmaps", name="other"),
            False,
        ),
        (
            [{"resources": ["configmaps"], "resourceNames": ["leader"]}],
            res("configmaps", verb="list"),
            False,
        ),
        (
            [
                {"resources": ["configmaps"], "resourceNames": ["leader"]},
                {"resources": ["configmaps"]},
            ],
            res("configmaps", name="other"),
            True,
        ),
        (
            [{"resources": ["pods/*"], "resourceNames": ["web"]}],
            res("pods", "exec", name="web"),
            True,
        ),
        # a resource rule never matches a non-resource request
        ([{"group": "*", "resources": ["*"]}], url("/api"), False),
    ],
)
def test_resources(resources: list[dict[str, Any]], attrs: Attributes, expected: bool) -> None:
    assert matches({"resources": resources}, attrs) is expected


@pytest.mark.parametrize(
    ("rule", "attrs", "expected"),
    [
        ({"namespaces": ["kube-system"]}, res("pods", ns="kube-system"), True),
        ({"namespaces": ["kube-system"]}, res("pods", ns="default"), False),
        # "" is cluster-scoped objects and all-namespace lists
        ({"namespaces": [""]}, res("nodes"), True),
        ({"namespaces": [""]}, res("pods", verb="list"), True),
        ({"namespaces": [""]}, res("pods", ns="default"), False),
        # namespaces alone make a resource rule: no non-resource request matches it
        ({"namespaces": [""]}, url("/healthz"), False),
        ({"namespaces": ["kube-system"], **CORE_PODS}, res("pods", ns="kube-system"), True),
        ({"namespaces": ["kube-system"], **CORE_PODS}, res("secrets", ns="kube-system"), False),
    ],
)
def test_namespaces(rule: dict[str, Any], attrs: Attributes, expected: bool) -> None:
    assert matches(rule, attrs) is expected


@pytest.mark.parametrize(
    ("urls", "path", "expected"),
    [
        (["/healthz"], "/healthz", True),
        (["/healthz"], "/healthz/etcd", False),
        # a trailing "*" is a plain string prefix
        (["/healthz*"], "/healthz", True),
        (["/healthz*"], "/healthz/etcd", True),
        (["/healthz*"], "/healthzfoo", True),
        (["/api/*"], "/api", False),
        (["/api/*"], "/api/v1", True),
        (["/api*"], "/apis/apps", True),
        (["*"], "/anything/at/all", True),
        (["/version", "/livez*"], "/livez/ping", True),
        (["/version"], "/versions", False),
    ],
)
def test_non_resource_urls(urls: list[str], path: str, expected: bool) -> None:
    assert matches({"nonResourceURLs": urls}, url(path)) is expected


def test_non_resource_rule_never_matches_resource_request() -> None:
    assert not matches({"nonResourceURLs": ["*"]}, res("pods"))


def test_first_matching_rule_wins_even_at_level_none() -> None:
    policy = make_policy(
        {"level": "None", "users": ["system:kube-proxy"]},
        {"level": "RequestResponse", **CORE_PODS},
        {"level": "Metadata"},
    )
    assert policy.evaluate(res("pods", user="system:kube-proxy")) == Decision(
        "None", frozenset(), False, 0
    )
    assert policy.evaluate(res("pods")).rule == 1
    assert policy.evaluate(res("pods", "log")).rule == 2


def test_no_match_is_level_none_with_policy_omit_stages_and_managed_fields() -> None:
    policy = make_policy(
        {"level": "Metadata", "verbs": ["create"]},
        omitStages=["RequestReceived"],
        omitManagedFields=True,
    )
    assert policy.evaluate(res("pods")) == Decision(
        "None", frozenset({"RequestReceived"}), True, None
    )


@pytest.mark.parametrize(
    ("policy_stages", "rule_stages", "expected"),
    [
        ([], [], frozenset()),
        (["RequestReceived"], [], frozenset({"RequestReceived"})),
        ([], ["Panic"], frozenset({"Panic"})),
        (
            ["RequestReceived"],
            ["ResponseStarted", "RequestReceived"],
            frozenset({"RequestReceived", "ResponseStarted"}),
        ),
    ],
)
def test_omit_stages_union(
    policy_stages: list[str], rule_stages: list[str], expected: frozenset[str]
) -> None:
    policy = make_policy({"level": "Metadata", "omitStages": rule_stages}, omitStages=policy_stages)
    assert policy.evaluate(res("pods")).omit_stages == expected


@pytest.mark.parametrize(
    ("policy_value", "rule_value", "expected"),
    [(None, None, False), (True, None, True), (True, False, False), (False, True, True)],
)
def test_omit_managed_fields_rule_overrides_policy(
    policy_value: bool | None, rule_value: bool | None, expected: bool
) -> None:
    rule: dict[str, Any] = {"level": "Metadata"}
    if rule_value is not None:
        rule["omitManagedFields"] = rule_value
    top = {} if policy_value is None else {"omitManagedFields": policy_value}
    assert make_policy(rule, **top).evaluate(res("pods")).omit_managed_fields is expected


def event(
    uri: str,
    verb: str,
    ref: ObjectReference | None = None,
    *,
    user: UserInfo | None = None,
    impersonated: UserInfo | None = None,
) -> Event:
    return Event(
        "Metadata",
        "id",
        "ResponseComplete",
        requestURI=uri,
        verb=verb,
        user=user or UserInfo("alice", groups=["system:authenticated"]),
        impersonatedUser=impersonated,
        objectRef=ref,
    )


@pytest.mark.parametrize(
    ("ev", "expected"),
    [
        # create: the name (and namespace) come from the URL, not from the body fill-in
        (
            event(
                "/api/v1/namespaces/d/configmaps",
                "create",
                ObjectReference("configmaps", "d", "c1"),
            ),
            Attributes(
                "alice",
                ("system:authenticated",),
                "create",
                True,
                "d",
                "",
                "configmaps",
                "",
                "",
                "/api/v1/namespaces/d/configmaps",
            ),
        ),
        # a create on a subresource names its object in the URL
        (
            event(
                "/api/v1/namespaces/d/pods/web/exec?command=ls",
                "create",
                ObjectReference("pods", "d", "web", subresource="exec"),
            ),
            Attributes(
                "alice",
                ("system:authenticated",),
                "create",
                True,
                "d",
                "",
                "pods",
                "exec",
                "web",
                "/api/v1/namespaces/d/pods/web/exec",
            ),
        ),
        # a Namespace created cluster-wide: no namespace, no name
        (
            event("/api/v1/namespaces", "create", ObjectReference("namespaces", "", "demo")),
            Attributes(
                "alice",
                ("system:authenticated",),
                "create",
                True,
                "",
                "",
                "namespaces",
                "",
                "",
                "/api/v1/namespaces",
            ),
        ),
        # list with fieldSelector=metadata.name: objectRef.name is what the policy saw
        (
            event(
                "/api/v1/namespaces/d/secrets?fieldSelector=metadata.name%3Ds1",
                "list",
                ObjectReference("secrets", "d", "s1"),
            ),
            Attributes(
                "alice",
                ("system:authenticated",),
                "list",
                True,
                "d",
                "",
                "secrets",
                "",
                "s1",
                "/api/v1/namespaces/d/secrets",
            ),
        ),
        # deletecollection: no name in the URL, whatever objectRef says
        (
            event(
                "/api/v1/namespaces/d/pods?labelSelector=a%3Db",
                "deletecollection",
                ObjectReference("pods", "d", "x"),
            ),
            Attributes(
                "alice",
                ("system:authenticated",),
                "deletecollection",
                True,
                "d",
                "",
                "pods",
                "",
                "",
                "/api/v1/namespaces/d/pods",
            ),
        ),
        # non-resource: the path without the query
        (
            event("/healthz?verbose=1", "get"),
            Attributes("alice", ("system:authenticated",), "get", False, path="/healthz"),
        ),
        # impersonation: the policy sees the authenticated user, not the impersonated one
        (
            event(
                "/version",
                "get",
                user=UserInfo("admin", groups=["system:masters"]),
                impersonated=UserInfo("bob"),
            ),
            Attributes("admin", ("system:masters",), "get", False, path="/version"),
        ),
        # a failed authentication: no user at all
        (
            event("/api/v1/pods", "list", ObjectReference("pods"), user=UserInfo()),
            Attributes(None, (), "list", True, "", "", "pods", "", "", "/api/v1/pods"),
        ),
    ],
)
def test_attributes_from_event(ev: Event, expected: Attributes) -> None:
    assert Attributes.from_event(ev) == expected


def test_evaluate_event_agrees_with_evaluate() -> None:
    policy = make_policy(
        {"level": "None", "resources": [{"resources": ["configmaps"], "resourceNames": ["c1"]}]},
        {"level": "Request", "users": ["alice"], "nonResourceURLs": ["/healthz*"]},
        {"level": "Metadata"},
    )
    created = event(
        "/api/v1/namespaces/d/configmaps", "create", ObjectReference("configmaps", "d", "c1")
    )
    updated = event(
        "/api/v1/namespaces/d/configmaps/c1", "update", ObjectReference("configmaps", "d", "c1")
    )
    probe = event("/healthz/etcd?verbose", "get")
    anonymous = event("/healthz", "get", user=UserInfo())
    for ev, rule in ((created, 2), (updated, 0), (probe, 1), (anonymous, 2)):
        assert policy.evaluate_event(ev).rule == rule
        assert policy.evaluate(Attributes.from_event(ev)).rule == rule


def test_policy_namespace_name_without_uri() -> None:
    ev = Event(
        "Metadata",
        "a",
        "ResponseComplete",
        verb="create",
        objectRef=ObjectReference("pods", "d", "web"),
    )
    assert policy_namespace_name(ev) == ("d", "")


def test_target_cache_stays_bounded() -> None:
    policy = make_policy({"level": "Metadata", "nonResourceURLs": ["/a*"]})
    for i in range(20_000):
        assert policy.evaluate(url(f"/a/{i}")).rule == 0
    assert len(policy._path_targets) <= 8192


HEADER = "apiVersion: audit.k8s.io/v1\nkind: Policy\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("kind: Policy\nrules:\n- level: Metadata\n", 1, "apiVersion and kind are required"),
        (
            "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n- level: Metadata\n",
            1,
            "apiVersion: audit.k8s.io/v1beta1 was removed in Kubernetes 1.24",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nrules:\n- level: Metadata\n",
            1,
            'apiVersion: expected apiVersion "audit.k8s.io/v1" and kind "Policy"',
        ),
        (HEADER + "rules: []\n", 3, "rules: a policy needs at least one rule"),
        (HEADER, 1, "rules: a policy needs at least one rule"),
        (
            HEADER + "rules:\n- level: Metadata\n- verbs: [get]\n",
            5,
            "rules[1].level: Required value",
        ),
        (
            HEADER + "rules:\n- level: Verbose\n",
            4,
            (
                'rules[0].level: Unsupported value: "Verbose": supported values: "None", '
                '"Metadata", "Request", "RequestResponse"'
            ),
        ),
        (
            HEADER + "rules:\n- level: metadata\n",
            4,
            'rules[0].level: Unsupported value: "metadata"',
        ),
        (
            HEADER + "omitStages: [Received]\nrules:\n- level: Metadata\n",
            3,
            'omitStages[0]: Unsupported value: "Received"',
        ),
        (
            HEADER + "rules:\n- level: Metadata\n  omitStages:\n  - RequestReceived\n  - Done\n",
            7,
            'rules[0].omitStages[1]: Unsupported value: "Done"',
        ),
        (
            HEADER + "rules:\n- level: None\n  nonResourceURLs: [healthz]\n",
            5,
            'rules[0].nonResourceURLs[0]: Invalid value: "healthz": non-resource URL rules must '
            'begin with a "/"',
        ),
        (
            HEADER + "rules:\n- level: None\n  nonResourceURLs:\n  - /ok\n  - /api/*/v1\n",
            7,
            'rules[0].nonResourceURLs[1]: Invalid value: "/api/*/v1": non-resource URL wildcards '
            '"*" must be the final',
        ),
        (
            HEADER + "rules:\n- level: None\n  nonResourceURLs: [/x]\n  resources: [{group: ''}]\n",
            5,
            "rules[0].nonResourceURLs: rules cannot apply to both regular resources and "
            "non-resource URLs",
        ),
        (
            HEADER + "rules:\n- level: None\n  namespaces: [a]\n  nonResourceURLs: [/x]\n",
            6,
            "rules[0].nonResourceURLs: rules cannot apply to both",
        ),
        (
            HEADER + "rules:\n- level: None\n  resources:\n  - group: ''\n    resourceNames: [x]\n",
            7,
            "rules[0].resources[0].resourceNames: using resourceNames requires at least one "
            "resource",
        ),
        (
            HEADER + "rules:\n- level: None\n  resources:\n  - group: apps/v1\n",
            6,
            'rules[0].resources[0].group: Invalid value: "apps/v1": an API group must be a '
            "lowercase RFC 1123",
        ),
        (
            HEADER + "rules:\n- level: None\n  users: admin\n",
            5,
            "rules[0].users: expected a list of strings, got a string",
        ),
        (
            HEADER + "rules:\n- level: None\n  omitManagedFields: maybe\n",
            5,
            "rules[0].omitManagedFields: expected true or false, got a string",
        ),
        (HEADER + "rules:\n- level: None\n  verbs: [get\n", 6, "not valid YAML or JSON"),
        (HEADER + "rules: {level: None}\n", 3, "rules: expected a list of rules, got an object"),
    ],
)
def test_validation_errors(text: str, line: int, message: str) -> None:
    spec, problems = parse_policy(text, "p.yaml")
    assert spec is None
    errors = [p for p in problems if p.severity == "error"]
    assert any(p.message.startswith(message) and p.line == line for p in errors), errors
    with pytest.raises(PolicyError) as info:
        load_policy(text, file="p.yaml")
    assert f"p.yaml:{line}: error: {message}" in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            HEADER + "rules:\n- level: None\n  resource: [{group: ''}]\n",
            5,
            'rules[0].resource: unknown field "resource"',
        ),
        (HEADER + "spec: {}\nrules:\n- level: None\n", 3, 'spec: unknown field "spec"'),
        (
            HEADER + "rules:\n- level: None\n  resources:\n  - group: ''\n    resource: [pods]\n",
            7,
            'rules[0].resources[0].resource: unknown field "resource"',
        ),
        (
            HEADER + "rules:\n- level: None\n  level: Metadata\n",
            5,
            "rules[0].level: duplicate field",
        ),
    ],
)
def test_unknown_and_duplicate_fields_are_warnings(text: str, line: int, message: str) -> None:
    # kube-apiserver 1.26+ falls back to lenient decoding and only logs a warning.
    policy = load_policy(text, file="p.yaml")
    assert [(w.line, w.message.split(" (")[0]) for w in policy.warnings] == [(line, message)]


def test_duplicate_field_last_value_wins() -> None:
    policy = load_policy(HEADER + "rules:\n- level: None\n  level: Metadata\n")
    assert policy.rules[0].level == "Metadata"


def test_json_policy_and_group_star_are_accepted() -> None:
    policy = make_policy(
        {"level": "Request", "resources": [{"group": "*", "resources": ["*/scale"]}]}
    )
    assert policy.evaluate(res("deployments", "scale", "apps")).level == "Request"


def test_load_policy_from_path(tmp_path: Any) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(HEADER + "rules:\n- level: Metadata\n")
    assert load_policy(str(path)).file == str(path)
    assert load_policy(path).rules[0].line == 4


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        # a catch-all hides everything after it
        ([{"level": "Metadata"}, {"level": "None", "verbs": ["get"]}], [(1, 0)]),
        # same selectors narrowed
        (
            [
                {"level": "None", "users": ["a", "b"]},
                {"level": "Metadata", "users": ["a"], "verbs": ["get"]},
            ],
            [(1, 0)],
        ),
        ([{"level": "None", "users": ["a"]}, {"level": "Metadata", "users": ["a", "b"]}], []),
        ([{"level": "None", "users": ["a"]}, {"level": "Metadata"}], []),
        (
            [
                {"level": "None", "userGroups": ["g"]},
                {"level": "Metadata", "userGroups": ["g"], "namespaces": ["x"]},
            ],
            [(1, 0)],
        ),
        # resources: "*" and an empty list cover the group; "R/*" covers R and its subresources
        (
            [{"level": "None", "resources": [{"group": ""}]}, {"level": "Metadata", **CORE_PODS}],
            [(1, 0)],
        ),
        (
            [
                {"level": "None", "resources": [{"resources": ["*"]}]},
                {"level": "Metadata", "resources": [{"resources": ["pods/log"]}]},
            ],
            [(1, 0)],
        ),
        (
            [
                {"level": "None", "resources": [{"resources": ["pods/*"]}]},
                {"level": "Metadata", "resources": [{"resources": ["pods", "pods/exec"]}]},
            ],
            [(1, 0)],
        ),
        (
            [
                {"level": "None", "resources": [{"resources": ["pods"]}]},
                {"level": "Metadata", "resources": [{"resources": ["pods/*"]}]},
            ],
            [],
        ),
        (
            [
                {"level": "None", "resources": [{"resources": ["*/status"]}]},
                {"level": "Metadata", "resources": [{"resources": ["pods/status"]}]},
            ],
            [(1, 0)],
        ),
        (
            [
                {"level": "None", "resources": [{"group": "*", "resources": ["pods"]}]},
                {"level": "Metadata", **CORE_PODS},
            ],
            [(1, 0)],
        ),
        (
            [
                {"level": "None", "resources": [{"group": "apps"}]},
                {"level": "Metadata", **CORE_PODS},
            ],
            [],
        ),
        # resourceNames narrow the earlier rule
        (
            [
                {
                    "level": "None",
                    "resources": [{"resources": ["configmaps"], "resourceNames": ["a"]}],
                },
                {"level": "Metadata", "resources": [{"resources": ["configmaps"]}]},
            ],
            [],
        ),
        (
            [
                {"level": "None", "resources": [{"resources": ["configmaps"]}]},
                {
                    "level": "Metadata",
                    "resources": [{"resources": ["configmaps"], "resourceNames": ["a"]}],
                },
            ],
            [(1, 0)],
        ),
        # namespaces
        (
            [
                {"level": "None", "namespaces": ["a", "b"]},
                {"level": "Metadata", "namespaces": ["a"], **CORE_PODS},
            ],
            [(1, 0)],
        ),
        ([{"level": "None", "namespaces": ["a"]}, {"level": "Metadata", **CORE_PODS}], []),
        # a resource rule never covers a catch-all or a URL rule, and the other way round
        ([{"level": "None", "resources": [{"group": "*"}]}, {"level": "Metadata"}], []),
        ([{"level": "None", "nonResourceURLs": ["*"]}, {"level": "Metadata", **CORE_PODS}], []),
        # nonResourceURLs: prefixes
        (
            [
                {"level": "None", "nonResourceURLs": ["/healthz*"]},
                {"level": "Metadata", "nonResourceURLs": ["/healthz/etcd", "/healthz*"]},
            ],
            [(1, 0)],
        ),
        (
            [
                {"level": "None", "nonResourceURLs": ["/healthz"]},
                {"level": "Metadata", "nonResourceURLs": ["/healthz*"]},
            ],
            [],
        ),
        # the first covering rule is named
        (
            [
                {"level": "None", "verbs": ["get"]},
                {"level": "Metadata"},
                {"level": "Request", "verbs": ["get"]},
            ],
            [(2, 0)],
        ),
        # "*/*" matches nothing at all
        ([{"level": "None", "resources": [{"resources": ["*/*"]}]}], [(0, None)]),
    ],
)
def test_shadowed_rules(
    rules: list[dict[str, Any]], expected: list[tuple[int, int | None]]
) -> None:
    spec = make_policy(*rules).spec
    assert [(s.rule, s.by) for s in find_shadowed(spec)] == expected


def test_json_with_tabs_loads_without_line_numbers() -> None:
    # PyYAML rejects tabs as indentation; the JSON reader takes over.
    text = ('{\n\t"apiVersion": "audit.k8s.io/v1",\n\t"kind": "Policy",'
            '\n\t"rules": [{"level": "None"}]\n}')
    assert load_policy(text).rules[0].level == "None"


def test_empty_policy_is_an_error() -> None:
    spec, problems = parse_policy("", "empty.yaml")
    assert spec is None
    assert [str(p) for p in problems] == ["empty.yaml: error: expected a Policy object, got null"]
