"""RBAC's matching rules, as k8s.io/component-helpers/auth/rbac/validation states them, and the
defaults every authenticated identity holds, checked against the real 1.20 bootstrap policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditsink.rbac.authorize import EVERYONE_AUTHENTICATED, Grant, Rule
from auditsink.rbac.granted import read_files
from auditsink.rbac.identity import Identity
from auditsink.rbac.request import Request

DATA = Path(__file__).resolve().parent.parent / "data" / "rbac"

GET_POD = Request("get", "", "pods", "", "ns1", "web")
SCALE = Request("patch", "apps", "deployments", "scale", "ns1", "web")


@pytest.mark.parametrize("rule,request_,expected", [
    (Rule(("get",), ("",), ("pods",)), GET_POD, True),
    (Rule(("*",), ("",), ("pods",)), GET_POD, True),
    (Rule(("list",), ("",), ("pods",)), GET_POD, False),
    (Rule(("get",), ("*",), ("pods",)), GET_POD, True),
    (Rule(("get",), ("apps",), ("pods",)), GET_POD, False),
    (Rule(("get",), ("",), ("*",)), GET_POD, True),
    (Rule(("get",), ("",), ("pods",), ("web",)), GET_POD, True),
    (Rule(("get",), ("",), ("pods",), ("db",)), GET_POD, False),
    # A subresource needs its own rule: "deployments" does not cover "deployments/scale".
    (Rule(("patch",), ("apps",), ("deployments",)), SCALE, False),
    (Rule(("patch",), ("apps",), ("deployments/scale",)), SCALE, True),
    (Rule(("patch",), ("apps",), ("*/scale",)), SCALE, True),
    (Rule(("patch",), ("apps",), ("*/status",)), SCALE, False),
    (Rule(("patch",), ("apps",), ("*",)), SCALE, True),
    # A resource rule never allows a URL, nor a URL rule a resource.
    (Rule(("get",), ("*",), ("*",)), Request("get", path="/metrics"), False),
    (Rule(("get",), non_resource_urls=("*",)), GET_POD, False),
    (Rule(("get",), non_resource_urls=("/metrics",)), Request("get", path="/metrics"), True),
    (Rule(("get",), non_resource_urls=("/metrics",)), Request("get", path="/metrics/x"), False),
    (Rule(("get",), non_resource_urls=("/logs*",)), Request("get", path="/logs/kube"), True),
    (Rule(("get",), non_resource_urls=("/logs/*",)), Request("get", path="/logs"), False),
    (Rule(("get",), non_resource_urls=("*",)), Request("get", path="/anything"), True),
])
def test_rule_allows(rule: Rule, request_: Request, expected: bool) -> None:
    assert rule.allows(request_) is expected


@pytest.mark.parametrize("grant,request_,expected", [
    (Grant(Rule(("get",), ("",), ("pods",)), "ns1"), GET_POD, True),
    (Grant(Rule(("get",), ("",), ("pods",)), "ns2"), GET_POD, False),
    (Grant(Rule(("get",), ("",), ("pods",)), None), GET_POD, True),
    # A RoleBinding never grants cluster-scoped requests or URLs.
    (Grant(Rule(("list",), ("",), ("namespaces",)), "ns1"), Request("list", "", "namespaces"),
     False),
    (Grant(Rule(("get",), non_resource_urls=("*",)), "ns1"), Request("get", path="/x"), False),
])
def test_grant_scope(grant: Grant, request_: Request, expected: bool) -> None:
    assert grant.allows(request_) is expected


@pytest.mark.parametrize("rule,wild", [
    (Rule(("get",), ("",), ("pods",)), False),
    (Rule(("*",), ("",), ("pods",)), True),
    (Rule(("get",), ("*",), ("pods",)), True),
    (Rule(("get",), ("",), ("*/scale",)), True),
    (Rule(("get",), non_resource_urls=("/api*",)), True),
    (Rule(("get",), non_resource_urls=("/api",)), False),
])
def test_wildcards(rule: Rule, wild: bool) -> None:
    assert rule.has_wildcard is wild


def test_everyone_authenticated_is_the_bootstrap_policy() -> None:
    # What the real API server grants system:authenticated through ClusterRoleBindings.
    snapshot = read_files([DATA / "granted-harness.yaml"])
    grants, missing = snapshot.grants_for(Identity.group("system:authenticated"))
    assert not missing
    real = sorted((g.rule, g.via.split(" -> ")[1]) for g in grants)
    ours = sorted((g.rule, g.via) for g in EVERYONE_AUTHENTICATED)
    assert real == ours
