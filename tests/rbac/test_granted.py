"""Reading what is granted: kubectl's output of a real API server, other shapes, and clear
errors for everything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditsink.rbac.authorize import Rule
from auditsink.rbac.granted import GrantedError, read_files
from auditsink.rbac.identity import Identity

DATA = Path(__file__).resolve().parent.parent / "data" / "rbac"
ROBOT = Identity.parse_serviceaccount("work:robot")


def test_kubectl_output_of_a_real_api_server() -> None:
    snapshot = read_files([DATA / "granted-harness.yaml"])
    assert (len(snapshot.cluster_roles), len(snapshot.roles), len(snapshot.bindings)) == (60, 8, 50)
    assert snapshot.cluster_roles["cluster-admin"] == [
        Rule(("*",), ("*",), ("*",)), Rule(("*",), non_resource_urls=("*",))]
    grants, missing = snapshot.grants_for(ROBOT)
    assert not missing
    assert sorted({g.via for g in grants}) == [
        "ClusterRoleBinding/robot-admin -> ClusterRole/cluster-admin",
        "RoleBinding/work/robot-cm -> Role/work/cm-reader"]
    assert Rule(("get", "list"), ("",), ("configmaps",)) in [g.rule for g in grants
                                                              if g.namespace == "work"]
    assert ROBOT in snapshot.subjects()
    assert Identity.group("system:masters") in snapshot.subjects()


def _write(tmp_path: Path, text: str, name: str = "rbac.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


ROLE = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "r", "namespace": "ns1"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
BINDING = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": "b", "namespace": "ns1"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
           # no namespace: the authorizer takes the RoleBinding's
           "subjects": [{"kind": "ServiceAccount", "name": "robot"}]}


def test_documents_typed_lists_and_json(tmp_path: Path) -> None:
    typed = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBindingList",
             "items": [{k: v for k, v in BINDING.items() if k not in ("kind", "apiVersion")}]}
    a = _write(tmp_path, json.dumps(ROLE), "role.json")
    b = _write(tmp_path, "---\n# comment\n---\n" + json.dumps(typed), "bindings.yaml")
    snapshot = read_files([a, b])
    grants, _ = snapshot.grants_for(Identity.parse_serviceaccount("ns1:robot"))
    assert [(g.namespace, g.via) for g in grants] == [("ns1", "RoleBinding/ns1/b -> Role/ns1/r")]


def test_a_binding_to_a_missing_role_grants_nothing(tmp_path: Path) -> None:
    snapshot = read_files([_write(tmp_path, json.dumps(BINDING))])
    grants, missing = snapshot.grants_for(Identity.parse_serviceaccount("ns1:robot"))
    assert grants == [] and missing == ["RoleBinding/ns1/b -> Role/ns1/r (not found)"]


def _bad(obj: object) -> str:
    return json.dumps(obj)


@pytest.mark.parametrize("text,message", [
    ("kind: [", "rbac.yaml:1: not valid YAML or JSON"),
    (_bad({"kind": "Pod", "metadata": {"name": "p"}}),
     "rbac.yaml: kind 'Pod' is not one of Role, ClusterRole, RoleBinding, ClusterRoleBinding"),
    (_bad({"kind": "List", "items": [ROLE, {"kind": "Secret"}]}),
     "rbac.yaml: items[1]: kind 'Secret' is not one of"),
    (_bad({**ROLE, "apiVersion": "v1"}), "rbac.yaml: apiVersion 'v1': expected "
     "rbac.authorization.k8s.io/v1"),
    (_bad({**ROLE, "metadata": {}}), "rbac.yaml: metadata.name: expected the Role's name"),
    (_bad({**ROLE, "metadata": {"name": "r"}}),
     "rbac.yaml (Role r): metadata.namespace: a Role needs one"),
    (_bad({**ROLE, "rules": {"verbs": ["get"]}}), "rbac.yaml (Role r): rules: expected a list"),
    (_bad({**ROLE, "rules": [{"resources": ["pods"]}]}),
     "rbac.yaml (Role r): rules[0].verbs: expected a list of strings"),
    (_bad({**ROLE, "rules": [{"verbs": "get"}]}),
     "rbac.yaml (Role r): rules[0].verbs: expected a list of strings"),
    (_bad({**BINDING, "roleRef": {"kind": "Secret", "name": "x"}}),
     "rbac.yaml (RoleBinding b): roleRef: expected {kind: Role or ClusterRole, name}"),
    (_bad({**BINDING, "kind": "ClusterRoleBinding"}),
     "rbac.yaml (ClusterRoleBinding b): roleRef.kind: a ClusterRoleBinding can only refer"),
    (_bad({**BINDING, "subjects": [{"kind": "Robot", "name": "r"}]}),
     "rbac.yaml (RoleBinding b): subjects[0].kind: 'Robot' is not User, Group or"),
    ("---\n" + _bad(ROLE) + "\n---\n- 1\n", "rbac.yaml: document 2: expected an object, got list"),
])
def test_errors_name_file_item_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(GrantedError) as caught:
        read_files([_write(tmp_path, text)])
    assert str(caught.value).startswith(f"{tmp_path}/{message}")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(GrantedError, match=r"missing.yaml: cannot read: No such file"):
        read_files([tmp_path / "missing.yaml"])
