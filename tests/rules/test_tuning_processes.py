"""``--rules FILE`` tunes the built-in rules (serve and ``rules test``); ``--no-default-rules``
runs the files alone. Both as real processes, serve over HTTP with its store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import FALCO

# The tuning example of docs/rules.md: trust one image, silence the activity log.
TUNE = """\
- list: trusted_privileged_images
  items: [nginx]
  override: {items: append}

- rule: K8s Resource Created
  enabled: false
"""
PRIVILEGED = FALCO / "traces" / "create_nginx_pod_privileged.json"
HOSTNET = FALCO / "traces" / "create_nginx_pod_hostnetwork.json"
NODEPORT = FALCO / "traces" / "create_nginx_service_nodeport.json"


def auditsink(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "auditsink", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def fired(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {json.loads(line)["rule"] for line in result.stdout.splitlines()}


def test_rules_test_tunes_the_builtin_rules(tmp_path: Path) -> None:
    tune = tmp_path / "tune.yaml"
    tune.write_text(TUNE)
    traces = [str(PRIVILEGED), str(HOSTNET), str(NODEPORT)]
    plain = auditsink("rules", "test", "--format", "json", *traces, cwd=tmp_path)
    assert fired(plain) == {"Privileged Pod Created", "Host Network Pod Created",
                            "NodePort Service Created", "K8s Resource Created"}
    tuned = auditsink("rules", "test", "--format", "json", "--rules", str(tune), *traces,
                      cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    # nginx is trusted for privileged pods only; the activity rule is off; the rest still fire.
    assert fired(tuned) == {"Host Network Pod Created", "NodePort Service Created"}
    listed = auditsink("rules", "list", "--rules", str(tune), cwd=tmp_path)
    assert "disabled  K8s Resource Created" in listed.stdout


def test_no_default_rules_runs_the_files_alone(tmp_path: Path) -> None:
    upstream = str(FALCO / "k8s_audit_rules.yaml")
    alone = auditsink("rules", "test", "--format", "json", "--no-default-rules", "--rules",
                      upstream, str(PRIVILEGED), cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert fired(alone) == {"Create Privileged Pod"}  # Falco's rule name, none of ours
    both = auditsink("rules", "test", "--format", "json", "--rules", upstream, str(PRIVILEGED),
                     cwd=tmp_path)
    assert fired(both) == {"Create Privileged Pod", "Privileged Pod Created"}
    nothing = auditsink("rules", "test", "--no-default-rules", str(PRIVILEGED), cwd=tmp_path)
    assert nothing.returncode == 2 and "needs at least one --rules FILE" in nothing.stderr


def _alerts(tmp_path: Path, store: str, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        result = auditsink("alerts", "--store", store, "--format", "json", cwd=tmp_path)
        alerts = json.loads(result.stdout or "[]") if result.returncode == 0 else []
        if isinstance(alerts, dict):
            alerts = alerts.get("alerts", [])
        if len(alerts) >= want or time.monotonic() > deadline:
            return alerts
        time.sleep(0.2)


def test_serve_with_a_tuning_file(tmp_path: Path, server_factory: Any) -> None:
    tune = tmp_path / "tune.yaml"
    tune.write_text(TUNE)
    server = server_factory("--store", "sqlite:///tuned.db", "--rules", str(tune),
                            "--format", "none")
    for trace in (PRIVILEGED, HOSTNET, NODEPORT):
        status, _ = server.post(trace.read_bytes())
        assert status == 200
    alerts = _alerts(tmp_path, "sqlite:///tuned.db", 2)
    server.stop()
    assert {a["rule"] for a in alerts} == {"Host Network Pod Created", "NodePort Service Created"}
    # Before: the tuning file alone replaced the built-in set and failed on its references.
    assert "trusted_privileged_images" not in server.stderr()
