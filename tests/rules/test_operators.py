"""Operator semantics, including Falco's rules for list fields and missing values."""

from __future__ import annotations

from typing import Any

import pytest

from auditsink.rules.compiler import compile_text
from auditsink.rules.condition import ConditionError
from auditsink.rules.engine import EventContext

POD: dict[str, Any] = {
    "auditID": "a1",
    "stage": "ResponseComplete",
    "verb": "create",
    "requestURI": "/api/v1/namespaces/default/pods?fieldManager=kubectl",
    "user": {
        "username": "system:serviceaccount:ci:deployer",
        "groups": ["system:serviceaccounts", "ci"],
    },
    "objectRef": {"resource": "pods", "namespace": "default", "name": "web"},
    "responseStatus": {"code": 201},
    "requestObject": {
        "spec": {
            "containers": [
                {"name": "a", "image": "nginx:1.25", "securityContext": {"privileged": True}},
                {"name": "b", "image": "docker.io/falcosecurity/falco:0.34"},
            ],
            "volumes": [{"name": "v", "hostPath": {"path": "/etc/kubernetes/pki"}}],
        }
    },
}


def holds(
    condition: str, event: dict[str, Any] = POD, lists: dict[str, list[str]] | None = None
) -> bool:
    return compile_text(condition, {}, lists or {})(EventContext(event))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("ka.verb = create", True),
        ("ka.verb != create", False),
        ("ka.verb in (get, create)", True),
        ("ka.verb intersects (get, create)", True),
        ("ka.user.name startswith system:serviceaccount:", True),
        ("ka.user.name endswith :deployer", True),
        ("ka.user.name contains account", True),
        ("ka.user.name icontains ACCOUNT", True),
        ("ka.user.name contains ACCOUNT", False),
        ("ka.uri glob /api/v1/*/pods*", True),
        ("ka.uri iglob /API/*", True),
        ("ka.uri glob /apis/*", False),
        ("ka.uri pmatch (/api/v1, /apis)", True),
        ("ka.uri pmatch (/ap)", False),
        ("ka.response.code = 201", True),
        ("ka.response.code >= 200 and ka.response.code < 300", True),
        ("ka.response.code > 1000", False),
        ("ka.response.code startswith 2", True),
        ("ka.target.name regex 'w.b'", True),
        ("ka.target.name regex 'w'", False),
        ("ka.target.name bcontains 6562", True),
        ("ka.target.name bstartswith 77", True),
    ],
)
def test_scalar_operators(condition: str, expected: bool) -> None:
    assert holds(condition) is expected


def test_missing_field_makes_every_comparison_false() -> None:
    # ka.target.subresource is absent: even != and "not in" style checks are false.
    assert holds("ka.target.subresource = exec") is False
    assert holds("ka.target.subresource != exec") is False
    assert holds("ka.target.subresource exists") is False
    assert holds("not ka.target.subresource exists") is True
    assert holds("ka.target.namespace exists") is True


def test_list_in_means_every_value_in_the_set() -> None:
    assert holds("ka.req.pod.containers.image.repository in (nginx, docker.io/falcosecurity/falco)")
    assert not holds("ka.req.pod.containers.image.repository in (nginx)")
    assert holds("ka.req.pod.containers.image.repository intersects (nginx)")
    assert not holds("ka.req.pod.containers.image.repository intersects (apache)")


def test_list_in_is_vacuously_true_on_empty_and_false_when_missing() -> None:
    empty = {**POD, "requestObject": {"spec": {"containers": []}}}
    missing = {**POD, "requestObject": {"spec": {}}}
    assert holds("ka.req.pod.containers.image in (x)", empty) is True
    assert holds("ka.req.pod.containers.image intersects (x)", empty) is False
    assert holds("ka.req.pod.containers.image in (x)", missing) is False
    assert holds("not ka.req.pod.containers.image in (x)", missing) is True


def test_privileged_list_skips_containers_without_the_flag() -> None:
    assert holds("ka.req.pod.containers.privileged intersects (true)")
    assert holds("ka.req.pod.containers.privileged in (true)")  # only container a sets it


@pytest.mark.parametrize("op", ["=", "!=", "contains", "startswith", "pmatch", "glob"])
def test_list_fields_reject_scalar_operators(op: str) -> None:
    with pytest.raises(ConditionError, match="list field"):
        holds(f"ka.user.groups {op} (ci)" if op == "pmatch" else f"ka.user.groups {op} ci")


def test_list_references_expand_recursively() -> None:
    lists = {"verbs": ["get", "more"], "more": ["create"]}
    assert holds("ka.verb in (verbs)", lists=lists)
    assert holds("ka.verb in verbs", lists=lists)
    # A quoted name is a literal, not a list reference.
    assert not holds('ka.verb in ("verbs")', lists=lists)


def test_numeric_and_string_orderings() -> None:
    assert holds("ka.target.name > abc") is True  # strings compare as strings
    assert holds("ka.response.code < 1000") is True  # numbers as numbers, not "201" < "1000"


def test_no_audit_id_means_no_ka_fields_but_jevt_still_reads() -> None:
    event = {"verb": "create", "stage": "ResponseComplete"}
    assert holds("ka.verb = create", event) is False
    assert holds("jevt.value[/verb] = create", event) is True


def test_bad_operands_are_load_errors() -> None:
    with pytest.raises(ConditionError, match="regex"):
        holds("ka.verb regex '('")
    with pytest.raises(ConditionError, match="hex"):
        holds("ka.verb bcontains zz")
