"""Acceptance (issue 14) against a real kube-apiserver 1.20.2 with RBAC on (../shared/kube).

auditsink serve is the API server's audit webhook. A service account does a workload while it
holds cluster-admin; the binding is removed; the suggestion is applied with kubectl; the same
workload succeeds again as that account, and what it never did is refused with 403.

How the identities act, and why:
- ``work/robot`` authenticates with its own service-account token, minted by the API server's
  TokenRequest API (``serviceaccounts/robot/token``). The harness runs no controller-manager,
  so no token Secret is created for it, but the API server has a signing key and an issuer, so
  the token is real: the events name the service account as the authenticated user and RBAC
  authorizes it as itself, with its real groups.
- ``carol`` is a user the harness has no credential for, so admin acts as her with
  ``kubectl --as=carol``: RBAC authorizes the request as carol (the events carry her as
  ``impersonatedUser``), which exercises the rule that the impersonated user is the acting one.

Runs in about 25 s on an idle 2-core machine (two kubectl workloads, start and stop).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ServerProcess, free_port, shared_path

KUBE_WORK = Path(os.environ.get("KUBE_WORK", "/var/tmp/kube-harness"))
ROBOT = "system:serviceaccount:work:robot"

# The workload: configmaps, a deployment and its scale subresource, lists, a cluster-scoped
# list, and deletes, so that it can run again.
WORKLOAD = [
    ["-n", "work", "create", "configmap", "c1", "--from-literal=color=blue"],
    ["-n", "work", "get", "configmap", "c1", "-o", "name"],
    ["-n", "work", "create", "deployment", "web", "--image=nginx:1.25"],
    ["-n", "work", "scale", "deployment", "web", "--replicas=2"],
    ["-n", "work", "get", "deployments"],
    ["-n", "work", "get", "configmaps"],
    ["get", "namespaces"],
    ["-n", "work", "delete", "configmap", "c1"],
    ["-n", "work", "delete", "deployment", "web"],
]
# What robot never did: each must be refused once the suggestion replaces cluster-admin.
NEVER_DONE = [
    ["-n", "work", "get", "secrets"],
    ["-n", "work", "get", "pods"],
    ["-n", "default", "get", "configmaps"],
    ["-n", "default", "create", "configmap", "x"],
    ["create", "namespace", "x"],
    ["delete", "namespace", "work"],
    ["get", "clusterrolebindings"],
    # Deletes were of c1 and web only.
    ["-n", "work", "delete", "configmap", "other"],
    ["-n", "work", "delete", "deployment", "other"],
]


def _etcd_ports() -> int:
    """A free client port whose peer port (+10, as up.sh uses) is free too."""
    for _ in range(50):
        port = free_port()
        if port + 10 < 65536:
            try:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + 10))
                return port
            except OSError:
                continue
    raise RuntimeError("no free pair of ports for etcd")


class Harness:
    """One run of ../shared/kube's up.sh in its own state directory and ports."""

    def __init__(self, state: Path, kube: Path) -> None:
        self.state, self.kube = state, kube
        self.kubectl = str(KUBE_WORK / "bin" / "kubectl")

    def run(self, kubeconfig: str, *args: str, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [self.kubectl, f"--cache-dir={self.state}/cache-{Path(kubeconfig).stem}",
               "--kubeconfig", kubeconfig, *args]
        done = subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr or done.stdout}")
        return done

    @property
    def admin(self) -> str:
        return str(self.state / "admin.kubeconfig")

    def poll(self, what: str, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def logged(self, wanted: Any) -> set[tuple[str, str]]:
        """(auditID, stage) of the audit-log events ``wanted(event)`` picks."""
        out = set()
        for line in (self.state / "audit.log").read_text().splitlines():
            event = json.loads(line)
            if wanted(event):
                out.add((event["auditID"], event["stage"]))
        return out


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[tuple[Harness, Any]]:
    kube = shared_path("kube")
    if not (KUBE_WORK / "bin" / "kube-apiserver").exists():
        pytest.fail(f"no kube-apiserver at {KUBE_WORK}/bin: .ci/run builds it with "
                    f"{kube}/build.sh (or run it yourself; KUBE_WORK names another cache)")
    # The webhook receiver: auditsink itself, storing into a SQLite file.
    server = ServerProcess(tmp_path, "--store", f"sqlite:///{tmp_path}/audit.db").start()
    state = tmp_path / "kube"
    try:
        up = subprocess.run(
            ["bash", str(kube / "up.sh"), "--state", str(state),
             "--apiserver-port", str(free_port()), "--etcd-port", str(_etcd_ports()),
             "--webhook-url", f"http://127.0.0.1:{server.port}/", "--mode", "blocking"],
            capture_output=True, text=True, timeout=180,
            env={**os.environ, "KUBE_WORK": str(KUBE_WORK)})
        assert up.returncode == 0, up.stderr + up.stdout
        yield Harness(state, kube), f"sqlite:///{tmp_path}/audit.db"
    finally:
        subprocess.run(["bash", str(kube / "down.sh"), "--state", str(state)],
                       capture_output=True, timeout=60)
        server.stop()


def auditsink(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "auditsink", *args], capture_output=True,
                          text=True, timeout=120, input=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _stored(store_url: str) -> set[tuple[str, str]]:
    out = auditsink("query", "--store", store_url, "--format", "jsonl", "--limit", "1000000")
    return {(e["auditID"], e["stage"]) for e in map(json.loads, out.splitlines())}


def _ours(event: dict[str, Any]) -> bool:
    acting = (event.get("impersonatedUser") or {}).get("username") or event["user"]["username"]
    return acting in (ROBOT, "carol")


def test_suggestion_replaces_cluster_admin(harness: tuple[Harness, Any], tmp_path: Path) -> None:
    kube, store = harness
    started = time.monotonic()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))

    # The account, its cluster-admin binding and its own token (TokenRequest).
    kube.run(kube.admin, "create", "namespace", "work")
    kube.run(kube.admin, "-n", "work", "create", "serviceaccount", "robot")
    kube.run(kube.admin, "create", "clusterrolebinding", "robot-admin",
             "--clusterrole=cluster-admin", "--serviceaccount=work:robot")
    request = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                          "spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"],
                                   "expirationSeconds": 3600}})
    (tmp_path / "tokenrequest.json").write_text(request)
    minted = kube.run(kube.admin, "create", "--raw",
                      "/api/v1/namespaces/work/serviceaccounts/robot/token",
                      "-f", str(tmp_path / "tokenrequest.json"))
    token = json.loads(minted.stdout)["status"]["token"]
    config = yaml.safe_load(Path(kube.admin).read_text())
    config["users"] = [{"name": "robot", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "robot"
    robot = str(tmp_path / "robot.kubeconfig")
    Path(robot).write_text(yaml.safe_dump(config))
    os.chmod(robot, 0o600)

    # 1. The workload while robot holds cluster-admin; carol (impersonated) is refused.
    for step in WORKLOAD:
        kube.run(robot, *step)
    refused = kube.run(kube.admin, "--as=carol", "-n", "work", "get", "pods", check=False)
    assert "Forbidden" in refused.stderr
    expected = kube.logged(_ours)
    kube.poll("the webhook to deliver robot's and carol's events",
              lambda: expected <= _stored(store))

    # What is granted now, read from the live cluster: robot holds wildcards.
    live = json.loads(auditsink("rbac", "diff", "--store", store, "--kubeconfig", kube.admin,
                                "--serviceaccount", "work:robot", "--format", "json"))
    (before,) = live["subjects"]
    assert before["bindings"] == ["ClusterRoleBinding/robot-admin -> ClusterRole/cluster-admin"]
    assert [w["rule"] for w in before["wildcards"]] == [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]}]
    assert (before["granted"], before["used"]) == (2, 2)

    # 2. The binding goes; the workload fails.
    kube.run(kube.admin, "delete", "clusterrolebinding", "robot-admin")
    kube.poll("robot to lose cluster-admin", lambda: kube.run(
        robot, "auth", "can-i", "create", "configmaps", "-n", "work", check=False
    ).stdout.strip() == "no")
    assert "Forbidden" in kube.run(robot, *WORKLOAD[0], check=False).stderr

    # 3. The suggestion, applied with kubectl.
    suggested = auditsink("rbac", "suggest", "--store", store, "--since", since,
                          "--serviceaccount", "work:robot", "--user", "carol")
    (tmp_path / "suggested.yaml").write_text(suggested)
    applied = kube.run(kube.admin, "apply", "-f", "-", stdin=suggested)
    assert applied.stdout.count("created") == 6, applied.stdout  # robot 4, carol 2
    kube.poll("the suggestion to take effect", lambda: kube.run(
        robot, "auth", "can-i", "create", "configmaps", "-n", "work", check=False
    ).stdout.strip() == "yes")

    # 4. The same workload succeeds again as robot, carol's list too...
    for step in WORKLOAD:
        kube.run(robot, *step)
    kube.run(kube.admin, "--as=carol", "-n", "work", "get", "pods")
    # ...and what they never did is refused.
    for step in NEVER_DONE:
        done = kube.run(robot, *step, check=False)
        assert done.returncode != 0 and "Forbidden" in done.stderr, (step, done.stderr)
    for step in (["-n", "work", "get", "secrets"], ["-n", "default", "get", "pods"],
                 ["-n", "work", "delete", "pod", "x"]):
        done = kube.run(kube.admin, "--as=carol", *step, check=False)
        assert "Forbidden" in done.stderr, (step, done.stderr)

    # 5. Granted against used now: no wildcards, only the suggested roles.
    after = json.loads(auditsink("rbac", "diff", "--store", store, "--since", since,
                                 "--kubeconfig", kube.admin, "--serviceaccount", "work:robot",
                                 "--format", "json"))["subjects"][0]
    name = "auditsink:serviceaccount:work:robot"
    assert after["bindings"] == [f"ClusterRoleBinding/{name} -> ClusterRole/{name}",
                                 f"RoleBinding/work/{name} -> Role/work/{name}"]
    assert after["wildcards"] == [] and after["granted"] > 0
    # Only what verb expansion added beyond the workload can be unused.
    assert all(set(u["rule"]["verbs"]) <= {"get", "watch", "update", "patch"}
               for u in after["unused"]), after["unused"]
    # The same snapshot kept in the store (what the UI's user page reads) answers the same.
    auditsink("rbac", "load", "--store", store, "--kubeconfig", kube.admin)
    kept = json.loads(auditsink("rbac", "diff", "--store", store, "--since", since,
                                "--serviceaccount", "work:robot", "--format", "json"))
    assert kept["subjects"][0] == after
    print(f"\nreal kube-apiserver acceptance: {time.monotonic() - started:.1f}s after start-up; "
          f"robot used {after['used']} of {after['granted']} suggested permissions")
