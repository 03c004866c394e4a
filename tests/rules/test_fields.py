"""Field extraction over real trace events and hand-made edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from auditsink.model import decode_body
from auditsink.rules.engine import EventContext
from auditsink.rules.fields import FIELDS, FieldError, resolve


def value(name: str, event: dict[str, Any], arg: str | None = None) -> Any:
    return EventContext(event).get(resolve(name, arg))


def trace_event(falco_dir: Path, name: str) -> dict[str, Any]:
    good, _ = decode_body((falco_dir / "traces" / name).read_bytes())
    return dict(msgspec.json.decode(good[0].raw))


POD: dict[str, Any] = {
    "auditID": "a",
    "requestURI": "/api/v1/namespaces/d/pods/p/exec?command=sh&command=-c&container=app",
    "objectRef": {"resource": "pods", "subresource": "exec", "name": "p", "namespace": "d"},
    "annotations": {"authorization.k8s.io/decision": "allow", "cluster_name": "prod"},
    "sourceIPs": ["10.0.0.1", "10.0.0.2"],
    "requestObject": {
        "spec": {
            "hostNetwork": True,
            "securityContext": {"runAsUser": 1000},
            "containers": [
                {
                    "name": "app",
                    "image": "registry:5000/team/app@sha256:abc",
                    "command": ["sh", "-c"],
                    "ports": [{"containerPort": 80}, {"containerPort": 9090, "hostPort": 19090}],
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]}},
                },
                {"name": "side", "image": "busybox", "securityContext": {"runAsUser": 0}},
            ],
            "initContainers": [
                {"name": "init", "image": "alpine:3", "securityContext": {"privileged": True}}
            ],
            "volumes": [
                {"name": "a", "hostPath": {"path": "/etc/kubernetes/pki"}},
                {"name": "b", "emptyDir": {}},
                {"name": "c", "hostPath": {"path": "/var/log"}},
            ],
        }
    },
}


@pytest.mark.parametrize(
    ("name", "arg", "expected"),
    [
        ("ka.uri.param", "command", "sh"),
        ("ka.uri.param", "container", "app"),
        ("ka.uri.param", "nosuch", None),
        ("ka.auth.decision", None, "allow"),
        ("ka.cluster.name", None, "prod"),
        ("ka.sourceips", None, ["10.0.0.1", "10.0.0.2"]),
        ("ka.sourceips", "1", ["10.0.0.2"]),
        ("ka.req.pod.host_network", None, "true"),
        ("ka.req.pod.host_pid", None, None),
        ("ka.req.pod.containers.image", None, ["registry:5000/team/app@sha256:abc", "busybox"]),
        ("ka.req.pod.containers.image", "1", ["busybox"]),
        ("ka.req.pod.containers.image", "7", None),
        # The plugin's split: at the first ':' (a registry port included), then at '@'.
        ("ka.req.pod.containers.image.repository", None, ["registry", "busybox"]),
        ("ka.req.pod.initContainers.privileged", None, ["true"]),
        ("ka.req.pod.containers.privileged", None, []),
        ("ka.req.pod.containers.add_capabilities", None, ["NET_ADMIN", "SYS_TIME"]),
        ("ka.req.pod.containers.host_port", None, ["80", "19090"]),
        ("ka.req.pod.containers.eff_run_as_user", None, ["1000", "0"]),
        ("ka.req.pod.containers.command", None, ["sh -c"]),
        ("ka.req.pod.volumes.hostpath", None, ["/etc/kubernetes/pki", "/var/log"]),
        ("ka.req.pod.volumes.hostpath", "/etc*", ["/etc/kubernetes/pki"]),
        ("ka.req.pod.volumes.hostpath", "/root*", None),
        ("ka.req.pod.volumes.hostpath", "2", ["/var/log"]),
        ("ka.req.pod.volumes.volume_type", None, ["hostPath", "emptyDir", "hostPath"]),
        ("ka.req.volume.hostpath", "/etc/kubernetes*", "true"),
        ("ka.req.volume.hostpath", "/etc", "false"),
        ("ka.req.container.image", None, "registry:5000/team/app@sha256:abc"),
        ("ka.req.container.privileged", None, "false"),
        ("ka.target.pod.name", None, "p"),
        ("jevt.value", "/requestObject/spec/containers/1/name", "side"),
        ("jevt.value", "/requestObject/spec/hostNetwork", "true"),
        ("jevt.value", "/annotations/authorization.k8s.io~1decision", "allow"),
        ("jevt.value", "/requestObject/spec/nosuch", None),
    ],
)
def test_pod_fields(name: str, arg: str | None, expected: Any) -> None:
    assert value(name, POD, arg) == expected


def test_binding_fields(falco_dir: Path) -> None:
    event = trace_event(falco_dir, "attach_cluster_admin_role.json")
    assert value("ka.req.binding.role", event) == "cluster-admin"
    subjects = value("ka.req.binding.subjects", event)
    assert isinstance(subjects, list) and all(s.startswith("{") for s in subjects)
    names = value("ka.req.binding.subjects.user_names", event) or []
    names += value("ka.req.binding.subjects.group_names", event) or []
    names += value("ka.req.binding.subjects.serviceaccount_names", event) or []
    assert len(names) == len(subjects)


def test_role_rule_fields_are_flattened(falco_dir: Path) -> None:
    event = trace_event(falco_dir, "create_cluster_role_wildcard_verbs.json")
    assert "*" in value("ka.req.role.rules.verbs", event)
    assert value("ka.req.role.rules.resources", event)


def test_configmap_obj_is_json_text(falco_dir: Path) -> None:
    event = trace_event(falco_dir, "create_configmap_sensitive_values.json")
    obj = value("ka.req.configmap.obj", event)
    assert isinstance(obj, str) and obj.startswith("{")
    assert msgspec.json.decode(obj) == event["requestObject"]["data"]


def test_time_fields() -> None:
    event = {"auditID": "a", "stageTimestamp": "2024-01-02T03:04:05.123456Z"}
    assert value("jevt.rawtime", event) == "1704164645123456000"
    assert value("jevt.time", event) == "2024-01-02T03:04:05.123456Z"
    assert value("jevt.rawtime", {"auditID": "a"}) is None
    assert msgspec.json.decode(value("jevt.obj", event)) == event


def test_values_are_cached_per_event() -> None:
    calls = 0
    ref = resolve("ka.verb", None)

    def counting(doc: dict[str, Any]) -> Any:
        nonlocal calls
        calls += 1
        return ref.extract(doc)

    counted = msgspec.structs.replace(ref, extract=counting)
    ctx = EventContext({"auditID": "a", "verb": "get"})
    assert [ctx.get(counted) for _ in range(3)] == ["get"] * 3
    assert calls == 1


@pytest.mark.parametrize(
    ("name", "arg", "message"),
    [
        ("ka.nosuch", None, "unknown field"),
        ("ka.verb", "x", "takes no argument"),
        ("ka.uri.param", None, "requires an argument"),
        ("jevt.value", None, "requires an argument"),
        ("ka.req.pod.containers.image", "first", "numeric index"),
    ],
)
def test_field_errors(name: str, arg: str | None, message: str) -> None:
    with pytest.raises(FieldError, match=message):
        resolve(name, arg)


def test_field_table_has_the_plugin_families() -> None:
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        assert f"ka.req.pod.{kind}.image.repository" in FIELDS
    assert FIELDS["ka.user.groups"].is_list and not FIELDS["ka.user.name"].is_list
    assert len([f for f in FIELDS if f.startswith("ka.")]) >= 100
