"""Granted against used, on a real API server's RBAC objects and its audit log of a workload."""

from __future__ import annotations

from pathlib import Path

from auditsink.model import iter_file_bodies
from auditsink.rbac.authorize import Rule
from auditsink.rbac.diff import diff_subject, render_text
from auditsink.rbac.granted import read_files
from auditsink.rbac.identity import Identity
from auditsink.rbac.request import observe_raw

DATA = Path(__file__).resolve().parent.parent / "data" / "rbac"
ROBOT = Identity.parse_serviceaccount("work:robot")
CAROL = Identity.user("carol")
ADMIN = "ClusterRoleBinding/robot-admin -> ClusterRole/cluster-admin"
READER = "RoleBinding/work/robot-cm -> Role/work/cm-reader"


def _workload(*identities: Identity):  # type: ignore[no-untyped-def]
    lines = [line for body in iter_file_bodies(str(DATA / "workload-audit.log"))
             for line in body.splitlines() if line.strip()]
    return observe_raw([("", line) for line in lines], identities)


def test_robot_used_its_wildcards_and_not_the_get_of_its_role() -> None:
    snapshot = read_files([DATA / "granted-harness.yaml"])
    found = _workload(ROBOT)
    result = diff_subject(ROBOT, snapshot, found[ROBOT])
    assert result.bindings == [ADMIN, READER]
    # cluster-admin: "*" on every resource and "*" on every URL, one atom each, both used;
    # cm-reader: get and list configmaps in work, only the list used.
    assert (result.granted, result.used, result.ratio) == (4, 3, 0.75)
    assert result.wildcards == [(None, ADMIN, Rule(("*",), ("*",), ("*",))),
                                (None, ADMIN, Rule(("*",), non_resource_urls=("*",)))]
    assert result.unused == [("work", READER, Rule(("get",), ("",), ("configmaps",)))]
    assert result.denied == []
    assert result.requests == 51
    assert result.to_dict()["unused"] == [{
        "namespace": "work", "via": READER,
        "rule": {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}}]
    text = render_text([result])
    assert text.splitlines()[:4] == [
        "ServiceAccount work/robot: used 3 of 4 granted permissions (75%) in 51 requests",
        f"  via {ADMIN}", f"  via {READER}", "  wildcards:"]
    assert f"    in work  get configmaps  ({READER})" in text


def test_an_unbound_identity_shows_what_it_was_denied() -> None:
    snapshot = read_files([DATA / "granted-harness.yaml"])
    result = diff_subject(CAROL, snapshot, _workload(CAROL)[CAROL])
    assert (result.granted, result.used, result.bindings) == (0, 0, [])
    assert [str(r) for r in result.denied] == ["list pods work"]
    assert "  denied (missing grants):\n    list pods work" in render_text([result])


def test_unused_system_roles_in_a_cluster_without_controllers() -> None:
    # Nothing ran as the scheduler: all it holds is unused.
    snapshot = read_files([DATA / "granted-harness.yaml"])
    scheduler = Identity.user("system:kube-scheduler")
    result = diff_subject(scheduler, snapshot, None)
    assert result.granted > 20 and result.used == 0 and result.ratio == 0.0
    assert {via for _, via, _ in result.unused} >= {
        "ClusterRoleBinding/system:kube-scheduler -> ClusterRole/system:kube-scheduler"}
