"""``auditsink rules test|list|check`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from auditsink.cli import main


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_test_with_default_rules_text(falco_dir: Path) -> None:
    code, out, err = invoke(
        "rules", "test", str(falco_dir / "traces" / "create_nginx_pod_privileged.json")
    )
    assert code == 0
    assert out == (
        "2018-10-25T14:09:12.581541Z WARNING Privileged Pod Created: Privileged pod created "
        "(user=system:serviceaccount:kube-system:replicaset-controller "
        "pod=nginx-deployment-5cdcc99dbf-rgw6z ns=default images=(nginx) init_images=<NA>)\n"
    )
    assert "1 events, 1 detections" in err


def test_test_json_with_upstream_rules(falco_dir: Path) -> None:
    code, out, _ = invoke(
        "rules",
        "test",
        "--format",
        "json",
        "--no-default-rules",
        "--rules",
        str(falco_dir / "k8s_audit_rules.yaml"),
        "--rules",
        str(falco_dir / "overrides" / "disallow_kactivity.yaml"),
        str(falco_dir / "traces" / "create_configmap_sensitive_values.json"),
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 6
    assert {r["rule"] for r in records} == {"Create/Modify Configmap With Private Credentials"}
    assert {r["priority"] for r in records} == {"WARNING"}
    assert all(
        r["auditID"] and r["output"].startswith("K8s configmap with private credential")
        for r in records
    )


def test_test_min_priority_filters(falco_dir: Path) -> None:
    trace = str(falco_dir / "traces" / "create_nginx_service_nodeport.json")
    _, everything, _ = invoke("rules", "test", trace)
    _, warnings, _ = invoke("rules", "test", "--min-priority", "warning", trace)
    assert "K8s Resource Created" in everything
    assert "K8s Resource Created" not in warnings and "NodePort Service Created" in warnings


def test_test_reports_malformed_input(falco_dir: Path) -> None:
    code, out, err = invoke("rules", "test", str(falco_dir / "traces" / "fal_01_003.json"))
    assert code == 1
    assert out == ""
    assert "fal_01_003.json: rejected" in err and "0 events, 0 detections" in err


def test_list_default_and_custom(falco_dir: Path, tmp_path: Path) -> None:
    code, out, err = invoke("rules", "list")
    assert code == 0
    assert "WARNING   Privileged Pod Created  [k8s, pod" in out
    assert "enabled, 0 disabled" in err
    disable = tmp_path / "off.yaml"
    disable.write_text("- rule: Disallowed K8s User\n  enabled: false\n")
    code, out, err = invoke(
        "rules", "list", "--no-default-rules", "--rules", str(falco_dir / "k8s_audit_rules.yaml"),
        "--rules", str(disable)
    )
    assert code == 0
    assert "disabled  Disallowed K8s User" in out
    assert "47 enabled, 1 disabled" in err


def test_check_ok_and_error(falco_dir: Path, tmp_path: Path) -> None:
    code, out, _ = invoke("rules", "check", str(falco_dir / "k8s_audit_rules.yaml"))
    assert code == 0 and out.startswith("OK: 48 rules enabled")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- rule: Typo\n  desc: d\n  output: o\n  priority: WARNING\n"
        "  condition: ka.verb=create and ka.target.resourse=pods\n"
    )
    code, out, err = invoke("rules", "check", str(bad))
    assert code == 1 and out == ""
    assert (
        f"{bad}:1: rule 'Typo': condition: unknown field 'ka.target.resourse' at line 1 column 20"
        in err
    )
    assert "^" in err


def test_check_with_default_allows_overrides(tmp_path: Path) -> None:
    local = tmp_path / "local.yaml"
    local.write_text(
        "- list: trusted_privileged_images\n  items: [registry.example.com/cni]\n"
        "  override: {items: append}\n"
    )
    code, _, err = invoke("rules", "check", str(local))
    assert code == 1 and "not defined" in err
    code, out, _ = invoke("rules", "check", "--with-default", str(local))
    assert code == 0 and out.startswith("OK:")


def test_test_runs_burst_detectors(tmp_path: Path) -> None:
    lines = []
    for i in range(12):
        event = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": f"a{i}", "stage": "ResponseStarted", "verb": "get",
            "requestURI": "/api/v1/secrets", "sourceIPs": ["198.51.100.7"],
            "responseStatus": {"code": 401},
            "stageTimestamp": f"2024-05-01T10:00:{i:02d}.000000Z",
        }  # fmt: skip
        lines.append(json.dumps(event))
    log = tmp_path / "audit.log"
    log.write_text("\n".join(lines) + "\n")
    code, out, _ = invoke("rules", "test", str(log))
    assert code == 0
    assert out == (
        "2024-05-01T10:00:09.000000Z WARNING Repeated Access Denied: "
        "10 requests refused (401/403) from 198.51.100.7 within 60s\n"
    )
    code, out, _ = invoke("rules", "test", "--no-stateful", str(log))
    assert code == 0 and out == ""
