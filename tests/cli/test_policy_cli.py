"""``auditsink policy check|simulate|suggest`` through click's CliRunner."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from auditsink.admit.policy import load_policy
from auditsink.cli import main

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    nonResourceURLs: ["/healthz*"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets"]
  - level: RequestResponse
"""


def _event(i: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": f"id-{i}",
        "stage": "ResponseComplete",
        "verb": "get",
        "user": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
        "requestReceivedTimestamp": "2026-11-26T14:23:14.679795Z",
        "stageTimestamp": "2026-11-26T14:23:14.681059Z",
    }
    base.update(fields)
    return base


SECRET = {"resource": "secrets", "namespace": "d", "name": "s1", "apiVersion": "v1"}
BODY = {"kind": "Secret", "data": {"password": "aHVudGVyMg=="}, "metadata": {"name": "s1"}}

EVENTS = [
    _event(0, requestURI="/healthz", user={}),
    _event(1, requestURI="/api/v1/namespaces/d/secrets/s1", objectRef=SECRET, responseObject=BODY),
    _event(
        2,
        requestURI="/api/v1/namespaces/d/secrets/s1",
        objectRef=SECRET,
        responseObject=BODY,
        stage="RequestReceived",
    ),
    _event(
        3,
        requestURI="/api/v1/namespaces/d/pods",
        objectRef={"resource": "pods", "namespace": "d"},
        verb="list",
        level="Metadata",
    ),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    log = tmp_path / "audit.log.gz"
    with gzip.open(log, "wt") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in EVENTS)
    return {"policy": policy, "log": log}


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["policy", *args], catch_exceptions=False)


def test_check_ok(files: dict[str, Path]) -> None:
    result = run("check", str(files["policy"]))
    assert result.exit_code == 0
    assert result.stdout == f"{files['policy']}: OK, 3 rules\n"


def test_check_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Everything\n"
        "  - level: None\n    nonResourceURLs: [healthz]\n"
    )
    result = run("check", str(path))
    assert result.exit_code == 1
    # in file order, on stdout like a linter
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f'{path}:4: error: rules[0].level: Unsupported value: "Everything"')
    assert lines[1].startswith(
        f'{path}:6: error: rules[1].nonResourceURLs[0]: Invalid value: "healthz"'
    )
    assert lines[2] == f"{path}: 2 error(s): kube-apiserver would refuse this policy"


def test_check_warns_about_shadowed_rules_and_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "shadow.yaml"
    path.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"
        "  - level: Metadata\n    resources: [{group: '', resources: ['pods/*']}]\n"
        "  - level: None\n    verb: [get]\n    resources: [{group: '', resources: [pods/log]}]\n"
    )
    result = run("check", str(path))
    assert result.exit_code == 0
    assert (
        f'{path}:7: warning: rules[1].verb: unknown field "verb" (ignored; did you mean "verbs"?)'
        in result.stdout
    )
    assert (
        f"{path}:6: warning: rules[1] can never match: rule 0 matches every request it could"
        in result.stdout
    )


def test_simulate_json(files: dict[str, Path]) -> None:
    result = run(
        "simulate", "--policy", str(files["policy"]), "--format", "json", str(files["log"])
    )
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records == [
        {
            "auditID": "id-0",
            "stage": "ResponseComplete",
            "level": "None",
            "omitStages": ["RequestReceived"],
            "logged": False,
            "rule": 0,
            "recordedLevel": "RequestResponse",
        },
        {
            "auditID": "id-1",
            "stage": "ResponseComplete",
            "level": "Metadata",
            "omitStages": ["RequestReceived"],
            "logged": True,
            "rule": 1,
            "recordedLevel": "RequestResponse",
        },
        {
            "auditID": "id-2",
            "stage": "RequestReceived",
            "level": "Metadata",
            "omitStages": ["RequestReceived"],
            "logged": False,
            "rule": 1,
            "recordedLevel": "RequestResponse",
        },
        {
            "auditID": "id-3",
            "stage": "ResponseComplete",
            "level": "RequestResponse",
            "omitStages": ["RequestReceived"],
            "logged": True,
            "rule": 2,
            "recordedLevel": "Metadata",
        },
    ]


def test_simulate_report(files: dict[str, Path]) -> None:
    result = run("simulate", "--policy", str(files["policy"]), str(files["log"]))
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith(f"Policy {files['policy']}: 4 events, ")
    assert "  level None: 1 events" in out
    assert "  omitStages RequestReceived: 1 events" in out
    assert "Downgraded: 1 events kept at a lower level than recorded" in out
    assert "Upgraded: 1 events would be logged at a higher level" in out
    assert "Projected: 2 of 4 events (50.0%)" in out
    assert "this policy cuts" in out


def test_simulate_invalid_policy_exits_1(tmp_path: Path, files: dict[str, Path]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n")
    result = run("simulate", "--policy", str(bad), str(files["log"]))
    assert result.exit_code == 1
    assert f"{bad}:3: error: rules: a policy needs at least one rule" in result.stderr


def test_simulate_reports_undecodable_events(tmp_path: Path, files: dict[str, Path]) -> None:
    log = tmp_path / "mixed.log"
    log.write_text(json.dumps(EVENTS[1]) + "\n" + '{"kind":"Event","stage":"x"}\n')
    result = run("simulate", "--policy", str(files["policy"]), "--format", "json", str(log))
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1
    assert "skipped 1 undecodable event(s)" in result.stderr


def test_suggest_prints_a_valid_commented_policy(tmp_path: Path, files: dict[str, Path]) -> None:
    noisy = [
        _event(
            10 + i,
            requestURI="/api/v1/nodes",
            verb="list",
            objectRef={"resource": "nodes"},
            user={"username": "system:kube-scheduler", "groups": ["system:authenticated"]},
        )
        for i in range(20)
    ]
    log = tmp_path / "noisy.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in noisy))
    result = run("suggest", str(files["log"]), str(log))
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("# Suggested by `auditsink policy suggest` from 24 events")
    assert '"system:kube-scheduler"' in text and "# traffic: 20 events matched, 0 kept" in text
    doc = yaml.safe_load(text)
    assert doc["kind"] == "Policy" and doc["rules"][-1] == {"level": "Metadata"}
    policy = load_policy(text)
    assert not policy.warnings
    assert "the suggested policy keeps" in result.stderr and "% of the volume" in result.stderr
    # requests that failed authentication (no user) are kept, even for secrets
    from auditsink.model import Event, ObjectReference, UserInfo

    unauthenticated = Event(
        "Metadata",
        "x",
        "ResponseStarted",
        requestURI="/api/v1/namespaces/d/secrets",
        verb="list",
        user=UserInfo(),
        objectRef=ObjectReference("secrets", "d"),
    )
    assert policy.evaluate_event(unauthenticated).level == "Metadata"
    # the policy check command agrees
    path = tmp_path / "suggested.yaml"
    path.write_text(text)
    assert "warning" not in run("check", str(path)).stdout
