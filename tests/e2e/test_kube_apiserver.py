"""End to end against a real kube-apiserver 1.20.2 (../shared/kube), set up by auditsink alone.

``auditsink setup certs``, ``setup webhook-config`` and ``setup policy`` write every file the
API server and auditsink use: a private CA, auditsink's server certificate, the API server's
client certificate (mTLS) *and* a bearer token bound to the cluster, a kubeconfig whose server
is ``/clusters/e2e``, and the ``detection`` policy. ``auditsink doctor`` passes on them against
the running ``auditsink serve``. Then the harness's API server starts with exactly those files
(its log backend on too, as ``setup kubeadm`` configures it), runs its ``scenario.sh`` and
``rules-scenario.sh`` (one call or more for each built-in rule), and stops gracefully.

Checked: what auditsink stored equals the API server's own audit log, event for event and
byte for byte, all under the cluster name of the URL; and the alerts auditsink raised are what
the built-in rules make of that log: every built-in rule, each as often.

About a minute on a 2-core machine (API server start 10 s, the two scenarios 30 s, stop 5 s).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditsink.rules import load_rules
from auditsink.rules.stateful import default_detectors
from conftest import ServerProcess, free_port, shared_path

KUBE_WORK = Path(os.environ.get("KUBE_WORK", "/var/tmp/kube-harness"))
HERE = Path(__file__).parent
CLUSTER = "e2e"
BUILTIN = {r.name for r in load_rules(None).rules} | {d.name for d in default_detectors()}


def auditsink(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "auditsink", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, (args, done.stderr)
    return done


def _etcd_port() -> int:
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


@pytest.fixture
def kube() -> Path:
    kube = shared_path("kube")
    if not (KUBE_WORK / "bin" / "kube-apiserver").exists():
        pytest.fail(f"no kube-apiserver at {KUBE_WORK}/bin: .ci/run builds it with "
                    f"{kube}/build.sh (or run it yourself; KUBE_WORK names another cache)")
    return kube


@pytest.fixture
def generated(tmp_path: Path) -> dict[str, Path]:
    """The files `auditsink setup` writes, for the API server (audit/) and for auditsink."""
    port = free_port()
    pki, audit = tmp_path / "pki", tmp_path / "audit"
    auditsink("setup", "certs", "--host", "127.0.0.1", "--out", str(pki), cwd=tmp_path)
    auditsink("setup", "webhook-config", "--server", f"https://127.0.0.1:{port}/clusters/{CLUSTER}",
              "--ca", str(pki / "ca.crt"), "--client-cert", str(pki / "kube-apiserver.crt"),
              "--client-key", str(pki / "kube-apiserver.key"), "--new-token",
              "--cluster", CLUSTER, "--out", str(audit), cwd=tmp_path)
    auditsink("setup", "policy", "--preset", "detection", "--out", str(audit), cwd=tmp_path)
    return {"pki": pki, "webhook": audit / "webhook.yaml", "tokens": audit / "tokens",
            "policy": audit / "policy.yaml", "port": Path(str(port))}


@pytest.fixture
def receiver(tmp_path: Path, generated: dict[str, Path]) -> Iterator[ServerProcess]:
    pki = generated["pki"]
    server = ServerProcess(
        tmp_path, "--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key"),
        "--client-ca", str(pki / "ca.crt"), "--allowed-cn", "kube-apiserver",
        "--token-file", str(generated["tokens"]), "--store", "sqlite:///e2e.db",
        "--format", "none")
    server.port = int(str(generated["port"]))
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.stop()


def _events(lines: str) -> list[str]:
    """Audit-log lines as canonical JSON, for comparing multisets of events."""
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines.splitlines()
                  if line.strip())


def _poll(what: str, predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_setup_doctor_scenario_store_and_rules(tmp_path: Path, kube: Path,
                                                generated: dict[str, Path],
                                                receiver: ServerProcess) -> None:
    started = time.monotonic()
    # 1. doctor, on the generated files, against the running auditsink: no error, no warning.
    doctor = auditsink("doctor", "--webhook-config", str(generated["webhook"]),
                       "--policy", str(generated["policy"]), "--format", "json", cwd=tmp_path)
    report = json.loads(doctor.stdout)
    assert (report["ok"], report["errors"], report["warnings"]) == (True, 0, 0), report
    checks = {f["check"] for f in report["findings"]}
    assert {"credentials", "tls", "post", "policy"} <= checks

    # 2. The API server with those very files, both backends on; the two scenarios; a graceful
    #    stop, which flushes the last webhook batch.
    state = tmp_path / "kube"
    env = {**os.environ, "KUBE_WORK": str(KUBE_WORK)}
    up = subprocess.run(
        ["bash", str(kube / "up.sh"), "--state", str(state), "--apiserver-port", str(free_port()),
         "--etcd-port", str(_etcd_port()), "--webhook-config", str(generated["webhook"]),
         "--policy", str(generated["policy"]), "--batch-max-wait", "1s",
         "--", "--allow-privileged=true", "--feature-gates=EphemeralContainers=true"],
        capture_output=True, text=True, timeout=180, env=env)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        scenario = subprocess.run(["bash", str(kube / "scenario.sh"), "--state", str(state)],
                                  capture_output=True, text=True, timeout=180, env=env)
        assert scenario.returncode == 0, scenario.stdout + scenario.stderr
        rules = subprocess.run(["bash", str(HERE / "rules-scenario.sh"), "--state", str(state)],
                               capture_output=True, text=True, timeout=300, env=env)
        assert rules.returncode == 0, rules.stdout + rules.stderr
    finally:
        down = subprocess.run(["bash", str(kube / "down.sh"), "--state", str(state)],
                              capture_output=True, text=True, timeout=120, env=env)
    assert down.returncode == 0, down.stderr
    apiserver_log = (state / "apiserver.log").read_text(errors="replace")
    assert "fatal error" not in apiserver_log, "the harness's kube-apiserver crashed"
    assert "Error in audit plugin 'webhook'" not in apiserver_log

    # 3. Stored == the API server's own log, event for event, all under the URL's cluster.
    logged = _events((state / "audit.log").read_text())
    assert len(logged) > 250  # the detection policy keeps about 300 of the scenarios' 1,200

    def stored(*selector: str) -> list[str]:
        out = auditsink("query", "--store", "sqlite:///e2e.db", "--format", "jsonl",
                        "--limit", "1000000", *selector, cwd=tmp_path).stdout
        return _events(out)

    _poll("the webhook to deliver every logged event", lambda: len(stored()) >= len(logged))
    assert stored() == logged
    assert stored("--cluster", CLUSTER) == logged

    # 4. The alerts: what the built-in rules make of the API server's log, rule for rule.
    expected = auditsink("rules", "test", "--format", "json", str(state / "audit.log"),
                         cwd=tmp_path).stdout
    want = Counter(json.loads(line)["rule"] for line in expected.splitlines())
    assert set(want) == BUILTIN  # the scenarios raise every built-in rule behind `detection`

    def raised() -> Counter[str]:
        out = auditsink("alerts", "--store", "sqlite:///e2e.db", "--format", "json",
                        "--limit", "100000", cwd=tmp_path).stdout
        data = json.loads(out)
        alerts = data["alerts"] if isinstance(data, dict) else data
        assert {a["cluster"] for a in alerts} <= {CLUSTER}
        return Counter(a["rule"] for a in alerts)

    _poll("the rules to catch up", lambda: sum(raised().values()) >= sum(want.values()))
    assert raised() == want
    receiver.stop()
    assert "rejected unauthenticated" not in receiver.stderr()
    print(f"\nreal kube-apiserver end to end: {time.monotonic() - started:.1f}s, "
          f"{len(logged)} events, {sum(want.values())} alerts of {len(want)} rules")

