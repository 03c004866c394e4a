"""Manifests to run auditsink: valid objects, the serve command, deterministic output."""

from __future__ import annotations

import shlex

import pytest
import yaml

from auditsink.setup.manifests import RunOptions, deployment, static_pod, systemd_unit

SERVE = [
    "auditsink",
    "serve",
    "--listen",
    "127.0.0.1:8443",
    "--tls-cert",
    "/etc/auditsink/server.crt",
    "--tls-key",
    "/etc/auditsink/server.key",
    "--token-file",
    "/etc/auditsink/tokens",
    "--store",
    "sqlite:////var/lib/auditsink/auditsink.db",
]


def test_serve_command() -> None:
    assert RunOptions().command() == SERVE
    mtls = RunOptions(auth="mtls", listen_host="fd00::1").command()
    assert mtls[3] == "[fd00::1]:8443"
    assert mtls[8:12] == ["--client-ca", "/etc/auditsink/ca.crt", "--allowed-cn", "kube-apiserver"]
    assert "--basic-auth-file" in RunOptions(auth="basic").command()
    with pytest.raises(ValueError, match="auth must be"):
        RunOptions(auth="none").command()


def test_static_pod() -> None:
    text = static_pod()
    assert text == static_pod()
    pod = yaml.safe_load(text)
    assert pod["kind"] == "Pod" and pod["metadata"]["namespace"] == "kube-system"
    spec = pod["spec"]
    assert spec["hostNetwork"] is True and spec["priorityClassName"] == "system-node-critical"
    (c,) = spec["containers"]
    assert c["command"] == SERVE
    assert c["livenessProbe"]["tcpSocket"] == {"host": "127.0.0.1", "port": 8443}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["config"] == {"mountPath": "/etc/auditsink", "name": "config", "readOnly": True}
    assert mounts["data"]["mountPath"] == "/var/lib/auditsink" and not mounts["data"].get(
        "readOnly"
    )
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    assert volumes == {
        "config": {"path": "/etc/auditsink", "type": "Directory"},
        "data": {"path": "/var/lib/auditsink", "type": "DirectoryOrCreate"},
    }


def test_deployment_service_pvc() -> None:
    docs = list(yaml.safe_load_all(deployment()))
    assert [d["kind"] for d in docs] == [
        "Namespace",
        "PersistentVolumeClaim",
        "Service",
        "Deployment",
    ]
    ns, pvc, svc, deploy = docs
    assert {d["metadata"].get("namespace", ns["metadata"]["name"]) for d in docs} == {"auditsink"}
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"] == {"type": "Recreate"}
    pod = deploy["spec"]["template"]
    assert (
        svc["spec"]["selector"]
        == pod["metadata"]["labels"]
        == deploy["spec"]["selector"]["matchLabels"]
    )
    (c,) = pod["spec"]["containers"]
    assert c["command"][3] == "0.0.0.0:8443"
    assert svc["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == [pvc["metadata"]["name"]]


def test_systemd_unit() -> None:
    unit = systemd_unit()
    assert unit == systemd_unit()
    lines = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert shlex.split(lines["ExecStart"]) == ["/usr/local/bin/auditsink", *SERVE[1:]]
    assert lines["ReadWritePaths"] == "/var/lib/auditsink" and lines["ProtectSystem"] == "strict"
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert lines["LimitNOFILE"] == "65536"  # issue 17: idle connections must not exhaust it
