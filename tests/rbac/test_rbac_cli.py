"""`auditsink rbac suggest|diff` and `query --format jsonl` from the command line, over real
traffic: files, a store filled from them, and the webhook batches of ../shared/fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from auditsink.cli import main

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = Path("tests") / "data" / "rbac"  # relative: the header names the file as given
WORKLOAD = str(DATA / "workload-audit.log")
GRANTED = str(DATA / "granted-harness.yaml")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def run(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/audit.db"
    run("import", "--store", url, WORKLOAD)
    return url


def test_suggest_from_an_audit_log_is_the_golden_output() -> None:
    out = run("rbac", "suggest", "--serviceaccount", "work:robot", WORKLOAD).output
    assert out == (DATA / "robot-suggested.yaml").read_text()
    assert run("rbac", "suggest", "--serviceaccount", "work:robot", WORKLOAD).output == out
    kinds = [(d["kind"], d["metadata"].get("namespace")) for d in yaml.safe_load_all(out)]
    assert kinds == [("ClusterRole", None), ("ClusterRoleBinding", None), ("Role", "work"),
                     ("RoleBinding", "work")]


def test_suggest_from_the_store_matches_the_file(store: str) -> None:
    from_file = run("rbac", "suggest", "--serviceaccount", "work:robot", WORKLOAD).output
    from_store = run("rbac", "suggest", "--store", store, "--serviceaccount",
                     "work:robot").output
    assert from_store.replace("# selection: every stored event\n", "") == from_file.replace(
        f"# selection: events in {WORKLOAD}\n", "")


def test_selector_flags_narrow_the_store(store: str) -> None:
    out = run("rbac", "suggest", "--store", store, "--serviceaccount", "work:robot",
              "--namespace", "work", "--verb", "create").output
    assert "# selection: --verb create --namespace work\n" in out
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["Role", "RoleBinding"]
    assert docs[0]["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}]


def test_impersonated_and_denied_requests_make_a_role(store: str) -> None:
    out = run("rbac", "suggest", "--store", store, "--user", "carol").output
    assert "# 1 request denied, included: the rules below grant them\n" in out
    role = next(yaml.safe_load_all(out))
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}]
    # Left out, nothing remains: admin's own name never appears as carol's.
    only = run("rbac", "suggest", "--store", store, "--user", "carol", "--only-allowed").output
    assert "kind:" not in only and "left out (--only-allowed)" in only


def test_several_identities_in_one_run() -> None:
    out = run("rbac", "suggest", "--user", "carol", "--serviceaccount", "work:robot",
              WORKLOAD).output
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d]
    assert names[:4] == ["auditsink:serviceaccount:work:robot"] * 4
    assert names[4:] == ["auditsink:user:carol"] * 2


@pytest.mark.parametrize("args,message", [
    ((), "name an identity: --serviceaccount NS:NAME, --user NAME or --group NAME"),
    (("--serviceaccount", "robot"), "service account 'robot': expected NAMESPACE:NAME"),
    (("--user", "nobody", WORKLOAD), "no requests of User nobody in events in"),
    (("--user", "carol", "--since", "1h", WORKLOAD), "selector flags choose stored events"),
    (("--user", "carol", "--since", "yesterday", WORKLOAD), "yesterday"),
])
def test_suggest_errors(args: tuple[str, ...], message: str) -> None:
    result = run("rbac", "suggest", *args, code=2 if "no requests" not in message else 1)
    assert message in result.output


def test_events_of_two_clusters_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/two.db"
    run("import", "--store", url, "--cluster", "a", WORKLOAD)
    run("import", "--store", url, "--cluster", "b", WORKLOAD)
    result = run("rbac", "suggest", "--store", url, "--user", "carol", code=2)
    assert "the events come from 2 clusters (a, b): RBAC is per cluster" in result.output
    out = run("rbac", "suggest", "--store", url, "--user", "carol", "--cluster", "b").output
    assert out.startswith("# RBAC suggested by auditsink for User carol in cluster b\n")


def test_diff_text_and_json(store: str) -> None:
    text = run("rbac", "diff", "--store", store, "--granted", GRANTED,
               "--serviceaccount", "work:robot").output
    assert text.startswith("ServiceAccount work/robot: used 3 of 4 granted permissions (75%)")
    doc = json.loads(run("rbac", "diff", "--store", store, "--granted", GRANTED,
                         "--serviceaccount", "work:robot", "--format", "json").output)
    assert doc["granted"] == [GRANTED]
    (robot,) = doc["subjects"]
    assert robot["subject"] == {"kind": "ServiceAccount", "name": "robot", "namespace": "work"}
    assert (robot["granted"], robot["used"], robot["ratio"]) == (4, 3, 0.75)


def test_diff_of_every_subject(store: str) -> None:
    doc = json.loads(run("rbac", "diff", "--store", store, "--granted", GRANTED,
                         "--format", "json").output)
    subjects = {json.dumps(s["subject"], sort_keys=True): s for s in doc["subjects"]}
    assert len(subjects) == len(doc["subjects"]) > 30
    masters = subjects[json.dumps({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                   "name": "system:masters"}, sort_keys=True)]
    # admin (in system:masters) impersonated carol and robot: that used cluster-admin's "*".
    assert masters["used"] >= 1 and masters["wildcards"]


@pytest.mark.parametrize("args,message", [
    ((), "say what is granted: --granted FILE... or --kubeconfig FILE"),
    (("--granted", WORKLOAD), f"{WORKLOAD}:2: not valid YAML or JSON"),
])
def test_diff_errors(args: tuple[str, ...], message: str, store: str) -> None:
    result = run("rbac", "diff", "--store", store, *args, code=2 if "say" in message else 1)
    assert message in result.output


def test_query_jsonl_is_what_audit2rbac_reads(tmp_path: Path, fixtures_dir: Path) -> None:
    # Stored from the webhook's EventLists (items without kind/apiVersion), printed back as
    # audit-log lines: one Event per line with kind and apiVersion first, which is the input
    # audit2rbac decodes (a JSON stream it types by kind/apiVersion). They are the very lines
    # the API server wrote to its own audit log for the same run.
    url = f"sqlite:///{tmp_path}/batches.db"
    run("import", "--store", url, str(fixtures_dir / "batch-bodies.jsonl"))
    lines = run("query", "--store", url, "--format", "jsonl", "--limit", "5000").output
    lines = lines.splitlines()
    assert all(line.startswith('{"kind":"Event","apiVersion":"audit.k8s.io/v1",')
               for line in lines)
    printed = sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines)
    logged = sorted(json.dumps(json.loads(line), sort_keys=True)
                    for line in (fixtures_dir / "audit.log").read_text().splitlines())
    assert printed == logged and len(printed) == 974
    # And suggest reads them back to the same answer as from the batches.
    (tmp_path / "out.jsonl").write_text("\n".join(lines) + "\n")
    again = run("rbac", "suggest", "--user", "alice", str(tmp_path / "out.jsonl")).output
    first = run("rbac", "suggest", "--user", "alice",
                str(fixtures_dir / "batch-bodies.jsonl")).output
    assert again.split("\n", 2)[2] == first.split("\n", 2)[2]


def test_a_loaded_snapshot_serves_diff(store: str) -> None:
    out = run("rbac", "load", "--store", store, "--granted", GRANTED).output
    assert out.startswith(f"kept 118 RBAC objects (50 bindings, {44} subjects, ")
    assert out.rstrip().endswith(f"from {GRANTED} as the granted snapshot of the unnamed "
                                 f"cluster in {store}")
    from_file = run("rbac", "diff", "--store", store, "--granted", GRANTED,
                    "--serviceaccount", "work:robot").output
    assert run("rbac", "diff", "--store", store, "--serviceaccount",
               "work:robot").output == from_file
    doc = json.loads(run("rbac", "diff", "--store", store, "--format", "json",
                         "--serviceaccount", "work:robot").output)
    assert doc["granted"][0].startswith(f"{GRANTED} (loaded 20")
    # One snapshot per cluster: the unnamed one's is not cluster b's.
    result = run("rbac", "diff", "--store", store, "--cluster", "b", code=2)
    assert "no snapshot of cluster b was kept with `auditsink rbac load`" in result.output
    run("rbac", "load", "--store", store, "--cluster", "b",
        "--granted", str(DATA / "fixture-granted.yaml"))
    text = run("rbac", "diff", "--store", store, "--cluster", "b").output
    assert text.startswith("User alice: used 0 of 3 granted permissions (0%) in 0 requests")


def test_load_needs_a_store_and_a_source(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/none.db"
    assert "no store at" in run("rbac", "load", "--store", missing, "--granted", GRANTED,
                                code=1).output
    assert "--granted FILE... or --kubeconfig FILE" in run("rbac", "load", "--store", missing,
                                                           code=2).output


def test_the_store_finds_what_an_impersonator_needed(store: str) -> None:
    # admin made the requests as carol and as robot: each needed admin's impersonate.
    docs = list(yaml.safe_load_all(run("rbac", "suggest", "--store", store, "--user",
                                       "admin").output))
    assert docs[0]["kind"] == "ClusterRole"
    assert docs[0]["rules"] == [
        {"apiGroups": [""], "resources": ["users"], "resourceNames": ["carol"],
         "verbs": ["impersonate"]}]
    assert docs[2]["kind"] == "Role" and docs[2]["metadata"]["namespace"] == "work"
    assert docs[2]["rules"] == [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": ["robot"],
         "verbs": ["impersonate"]}]
