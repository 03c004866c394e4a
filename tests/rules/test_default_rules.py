"""The built-in rules: they fire on the threats of Falco's traces and stay quiet on the
recorded kube-apiserver 1.20 traffic except where something worth reporting happened."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from auditsink.model import BodyError, decode_body, iter_file_bodies
from auditsink.rules import BUILTIN, Detection, RuleSet, load_rules

# Falco trace -> what our default rules report on it (rule -> count). The Falco rule each trace
# was written for is in docs/rules.md; INFO activity rules ride along where a user created or
# deleted a tracked resource.
CREATED = "K8s Resource Created"
DELETED = "K8s Resource Deleted"
EXPECTED: dict[str, dict[str, int]] = {
    "anonymous_creates_namespace_foo.json": {"Anonymous Request Allowed": 1, CREATED: 1},
    "attach_cluster_admin_role.json": {"Cluster-Admin Binding Created": 1, CREATED: 1},
    "attach_pod.json": {"Pod Exec or Attach": 1},
    "create_cluster_role_pod_exec.json": {"Pod Exec Role Created": 1, CREATED: 1},
    "create_cluster_role_wildcard_resources.json": {"Wildcard Role Created": 1, CREATED: 1},
    "create_cluster_role_wildcard_verbs.json": {"Wildcard Role Created": 1, CREATED: 1},
    "create_cluster_role_write_privileges.json": {"Write-Privileged Role Created": 1, CREATED: 1},
    "create_clusterrole.json": {CREATED: 1},
    "create_clusterrolebinding.json": {CREATED: 1},
    "create_configmap.json": {CREATED: 1},
    "create_configmap_no_sensitive_values.json": {CREATED: 1},
    "create_configmap_sensitive_values.json": {"ConfigMap With Credentials": 6, CREATED: 6},
    "create_deployment.json": {CREATED: 1},
    "create_kube_system_secret.json": {"Kube Namespace Modified": 1, CREATED: 1},
    "create_nginx_pod_hostnetwork.json": {"Host Network Pod Created": 1},
    "create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json": {
        "Privileged Pod Created": 1
    },
    "create_nginx_pod_nohostnetwork.json": {},
    "create_nginx_pod_privileged.json": {"Privileged Pod Created": 1},
    "create_nginx_pod_privileged_2nd_container.json": {"Privileged Pod Created": 1},
    "create_nginx_pod_sensitive_mount.json": {"Sensitive Host Path Mounted": 1},
    "create_nginx_pod_sensitive_mount_2nd_container.json": {"Sensitive Host Path Mounted": 1},
    "create_nginx_pod_unprivileged.json": {},
    "create_nginx_pod_unsensitive_mount.json": {},
    "create_nginx_service_nodeport.json": {"NodePort Service Created": 1, CREATED: 1},
    "create_nginx_service_nonodeport.json": {CREATED: 1},
    "create_pod_kube_public_namespace.json": {"Pod Created in Kube Namespace": 1},
    "create_pod_kube_system_namespace.json": {"Pod Created in Kube Namespace": 1},
    "create_secret.json": {CREATED: 1},
    "create_service.json": {CREATED: 1},
    # The controller writing a token secret is the control plane at work.
    "create_service_account_token_secret.json": {},
    "create_serviceaccount.json": {CREATED: 1},
    "create_serviceaccount_kube_public_namespace.json": {"Kube Namespace Modified": 1, CREATED: 1},
    "create_serviceaccount_kube_system_namespace.json": {"Kube Namespace Modified": 1, CREATED: 1},
    "delete_cluster_role_kube_aggregator.json": {"System Role Modified or Deleted": 1, DELETED: 1},
    "delete_clusterrole.json": {DELETED: 1},
    "delete_clusterrolebinding.json": {DELETED: 1},
    "delete_configmap.json": {DELETED: 1},
    "delete_deployment.json": {DELETED: 1},
    "delete_namespace_foo.json": {DELETED: 1},
    "delete_secret.json": {DELETED: 1},
    "delete_service.json": {DELETED: 1},
    "delete_serviceaccount.json": {DELETED: 1},
    "exec_pod.json": {"Pod Exec or Attach": 1},
    "fal_01_003.json": {},
    "minikube_creates_namespace_foo.json": {CREATED: 1},
    # A patch of a system role that grants write verbs: both rules apply.
    "modify_cluster_role_node_problem_detector.json": {
        "Write-Privileged Role Created": 1,
        "System Role Modified or Deleted": 1,
    },
    "some-user_creates_namespace_foo.json": {CREATED: 1},
}


@pytest.fixture(scope="module")
def default_rules() -> RuleSet:
    return load_rules(None)


def detections(ruleset: RuleSet, path: Path) -> list[Detection]:
    found: list[Detection] = []
    for body in iter_file_bodies(str(path)):
        try:
            good, _ = decode_body(body)
        except BodyError:
            continue
        for item in good:
            found.extend(ruleset.evaluate(item.raw))
    return found


@pytest.mark.parametrize("trace", sorted(EXPECTED))
def test_default_rules_on_falco_traces(default_rules: RuleSet, falco_dir: Path, trace: str) -> None:
    counts = Counter(d.rule for d in detections(default_rules, falco_dir / "traces" / trace))
    assert dict(counts) == EXPECTED[trace]


def test_every_trace_is_mapped(falco_dir: Path) -> None:
    assert sorted(p.name for p in (falco_dir / "traces").iterdir()) == sorted(EXPECTED)


def test_quiet_on_real_cluster_traffic_except_what_happened(
    default_rules: RuleSet, fixtures_dir: Path
) -> None:
    found = detections(default_rules, fixtures_dir / "audit.log")
    # The recorded session: admin created namespace demo, a secret, a configmap, a role and a
    # rolebinding, tried an exec, then deleted them. The API server's bootstrap (system roles,
    # cluster-admin binding, kube-system objects) and alice's denied calls raise nothing.
    assert sorted((d.rule, d.output) for d in found) == sorted(
        [
            (CREATED, "Created namespaces demo (user=admin ns=<NA>)"),
            (CREATED, "Created secrets s1 (user=admin ns=demo)"),
            (CREATED, "Created configmaps c1 (user=admin ns=demo)"),
            (CREATED, "Created roles pod-reader (user=admin ns=demo)"),
            (CREATED, "Created rolebindings alice-view (user=admin ns=demo)"),
            (
                "Pod Exec or Attach",
                (
                    "Exec/attach into pod (user=admin pod=web ns=demo action=exec command=ls "
                    "container=web code=400)"
                ),
            ),
            (DELETED, "Deleted secrets s1 (user=admin ns=demo)"),
            (DELETED, "Deleted configmaps c1 (user=admin ns=demo)"),
            (DELETED, "Deleted rolebindings alice-view (user=admin ns=demo)"),
            (DELETED, "Deleted roles pod-reader (user=admin ns=demo)"),
        ]
    )


def _pod(**spec: object) -> dict[str, object]:
    return {
        "auditID": "p",
        "stage": "ResponseComplete",
        "verb": "create",
        "user": {"username": "dev"},
        "objectRef": {"resource": "pods", "namespace": "apps"},
        "responseStatus": {"code": 201},
        "requestObject": {"spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}},
        "responseObject": {"metadata": {"name": "web"}},
    }


@pytest.mark.parametrize(
    ("event", "rule"),
    [
        (_pod(hostPID=True), "Host PID Pod Created"),
        (_pod(hostIPC=True), "Host IPC Pod Created"),
        (
            _pod(volumes=[{"name": "k", "hostPath": {"path": "/var/lib/kubelet/pki"}}]),
            "Sensitive Host Path Mounted",
        ),
        (
            _pod(
                initContainers=[
                    {"name": "i", "image": "x", "securityContext": {"privileged": True}}
                ]
            ),
            "Privileged Pod Created",
        ),
        (
            {
                "auditID": "i",
                "stage": "ResponseComplete",
                "verb": "get",
                "user": {"username": "dev"},
                "impersonatedUser": {"username": "jane", "groups": ["system:masters"]},
                "requestURI": "/api/v1/secrets",
                "responseStatus": {"code": 200},
            },
            "Privileged Identity Impersonated",
        ),
        (
            {
                "auditID": "w",
                "stage": "ResponseComplete",
                "verb": "patch",
                "user": {"username": "dev"},
                "objectRef": {"resource": "mutatingwebhookconfigurations", "name": "inject"},
                "responseStatus": {"code": 200},
            },
            "Admission Webhook Configuration Changed",
        ),
        (
            {
                "auditID": "c",
                "stage": "ResponseComplete",
                "verb": "update",
                "user": {"username": "dev"},
                "objectRef": {
                    "resource": "certificatesigningrequests",
                    "name": "csr-1",
                    "subresource": "approval",
                },
                "responseStatus": {"code": 200},
            },
            "CSR Approved",
        ),
        (
            {
                "auditID": "e",
                "stage": "ResponseComplete",
                "verb": "patch",
                "user": {"username": "dev"},
                "objectRef": {
                    "resource": "pods",
                    "name": "web",
                    "namespace": "a",
                    "subresource": "ephemeralcontainers",
                },
                "responseStatus": {"code": 200},
                "requestObject": {
                    "spec": {"ephemeralContainers": [{"name": "debugger", "image": "busybox"}]}
                },
            },
            "Ephemeral Container Added",
        ),
        (
            {
                "auditID": "f",
                "stage": "ResponseStarted",
                "verb": "create",
                "user": {"username": "dev"},
                "objectRef": {
                    "resource": "pods",
                    "name": "web",
                    "namespace": "a",
                    "subresource": "portforward",
                },
                "responseStatus": {"code": 101},
            },
            "Pod Port-Forward",
        ),
        (
            {
                "auditID": "g",
                "stage": "ResponseComplete",
                "verb": "create",
                "user": {"username": "dev"},
                "objectRef": {"resource": "ingresses", "name": "web", "namespace": "a"},
                "responseStatus": {"code": 201},
                "requestObject": {"spec": {"rules": []}},
            },
            "Ingress Without TLS Created",
        ),
    ],
)
def test_rules_without_a_falco_trace(
    default_rules: RuleSet, event: dict[str, object], rule: str
) -> None:
    assert rule in [d.rule for d in default_rules.evaluate(event)]


def test_ephemeral_output_names_the_container(default_rules: RuleSet) -> None:
    event = {
        "auditID": "e",
        "stage": "ResponseComplete",
        "verb": "patch",
        "user": {"username": "dev"},
        "objectRef": {
            "resource": "pods",
            "name": "web",
            "namespace": "a",
            "subresource": "ephemeralcontainers",
        },
        "responseStatus": {"code": 200},
        "requestObject": {
            "spec": {"ephemeralContainers": [{"name": "debugger", "image": "busybox"}]}
        },
    }
    (det,) = [d for d in default_rules.evaluate(event) if d.rule == "Ephemeral Container Added"]
    assert "container=debugger image=busybox" in det.output


def test_garbage_events_raise_nothing(default_rules: RuleSet) -> None:
    for raw in (
        b"not json",
        b"[1, 2]",
        b"{}",
        b'{"stage": 3, "verb": ["x"], "objectRef": 7}',
        b"[" * 100_000,  # deeper than the decoder goes
    ):
        assert default_rules.evaluate(raw) == []


def test_odd_shapes_where_objects_belong(default_rules: RuleSet) -> None:
    pod = {
        "auditID": "x", "stage": "ResponseComplete", "verb": "create",
        "objectRef": {"resource": "pods"},
        "requestObject": {"spec": {"containers": [1, None, "x", {"image": 5}], "hostPID": True,
                                   "volumes": [{"hostPath": None}, 3]}},
    }  # fmt: skip
    assert [d.rule for d in default_rules.evaluate(pod)] == ["Host PID Pod Created"]
    binding = {
        "auditID": "y", "stage": "ResponseComplete", "verb": "create", "user": {"username": "u"},
        "objectRef": {"resource": "rolebindings"}, "responseStatus": {"code": 201},
        "requestObject": {"rules": [None, 1, {"verbs": "*"}], "subjects": [None], "roleRef": []},
    }  # fmt: skip
    assert [d.rule for d in default_rules.evaluate(binding)] == [CREATED]


def test_builtin_file_is_packaged() -> None:
    assert BUILTIN.name == "default.yaml" and BUILTIN.exists()
