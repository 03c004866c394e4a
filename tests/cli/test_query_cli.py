"""Answer "who did what" from the CLI and the read API, over a store filled from real traffic."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditsink.cli import main


@pytest.fixture
def loaded(tmp_path: Path, fixtures_dir: Path) -> str:
    url = f"sqlite:///{tmp_path}/audit.db"
    result = CliRunner().invoke(main, ["import", "--store", url, str(fixtures_dir / "audit.log")])
    assert result.exit_code == 0, result.output
    assert "imported 974 events" in result.output
    return url


def _run(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_import_is_safe_to_rerun(loaded: str, fixtures_dir: Path) -> None:
    again = _run("import", "--store", loaded, str(fixtures_dir / "batch-bodies.jsonl"))
    assert "imported 0 events" in again.output and "974 already there" in again.output


def test_who_created_and_deleted_pod_web(loaded: str) -> None:
    out = _run(
        "query",
        "--store",
        loaded,
        "--resource",
        "pods",
        "--namespace",
        "demo",
        "--name",
        "web",
        "--verb",
        "create",
        "--verb",
        "delete",
        "--stage",
        "ResponseComplete",
        "--oldest-first",
    ).output
    lines = out.splitlines()
    assert lines[0].split() == [
        "TIME",
        "CLUSTER",
        "USER",
        "VERB",
        "RESOURCE",
        "NAMESPACE/NAME",
        "CODE",
        "STAGE",
    ]
    assert [(r.split()[2], r.split()[3], r.split()[6]) for r in lines[1:]] == [
        ("admin", "create", "201"),
        ("alice", "delete", "403"),
        ("admin", "delete", "200"),
    ]


def test_everything_alice_did_as_jsonl(loaded: str) -> None:
    out = _run("query", "--store", loaded, "--user", "alice", "--format", "jsonl").output
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 6 and all(e["user"]["username"] == "alice" for e in events)
    assert all(e["kind"] == "Event" for e in events)  # audit-log format: feed it back to import


def test_every_forbidden_request_and_show(loaded: str) -> None:
    out = _run("query", "--store", loaded, "--code", "403", "--format", "json").output
    docs = json.loads(out)
    assert {d["event"]["objectRef"]["resource"] for d in docs} == {"secrets", "pods"}
    audit_id = docs[0]["event"]["auditID"]
    shown = _run("show", "--store", loaded, audit_id).output
    assert shown.count("--- ") == 2 and "RequestReceived" in shown and "ResponseComplete" in shown


def test_stats_and_tail(loaded: str, fixtures_dir: Path) -> None:
    stats = json.loads(_run("stats", "--store", loaded, "--format", "json").output)
    assert stats["events"] == 974 and stats["users"][0]["value"] == "system:apiserver"
    text = _run("stats", "--store", loaded).output
    assert "top users:" in text and "403" in text
    tail = _run("tail", "--store", loaded, "-n", "3", "--format", "jsonl").output.splitlines()
    # The newest three by time (stageTimestamp, then log order), oldest of them first.
    logged = [json.loads(line) for line in (fixtures_dir / "audit.log").read_text().splitlines()]
    newest = sorted(enumerate(logged), key=lambda e: (e[1]["stageTimestamp"], e[0]))[-3:]
    assert [json.loads(line) for line in tail] == [event for _, event in newest]


def test_bad_flags_say_what_is_wrong(loaded: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["query", "--store", loaded, "--since", "yesterday"])
    assert result.exit_code == 2 and "invalid time 'yesterday'" in result.output
    result = CliRunner().invoke(main, ["query", "--store", loaded, "--stage", "Done"])
    assert result.exit_code == 2 and "unknown stage 'Done'" in result.output
    result = CliRunner().invoke(main, ["query", "--store", f"sqlite:///{tmp_path}/none.db"])
    assert result.exit_code == 1 and "no store at" in result.output


def test_config_file_errors_name_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "auditsink.yaml"
    config.write_text("listen: 127.0.0.1:9\nlisten_port: 5\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert str(config) in result.output and "unknown key 'listen_port'" in result.output


def test_read_api_answers_the_same(loaded: str, server_factory: Any, tmp_path: Path) -> None:
    path = loaded.split("///", 1)[1]
    server = server_factory(
        "--store", f"sqlite:///{os.path.relpath(path, tmp_path)}", "--format", "none"
    )
    status, page = server.api_get("/api/v1/events?user=alice&limit=4")
    assert status == 200 and len(page["events"]) == 4 and page["next"]
    status, rest = server.api_get(f"/api/v1/events?user=alice&limit=4&before={page['next']}")
    assert len(rest["events"]) == 2 and rest["next"] is None
    audit_id = page["events"][0]["event"]["auditID"]
    status, one = server.api_get(f"/api/v1/events/{audit_id}")
    assert status == 200 and len(one["events"]) == 2
    assert server.api_get("/api/v1/events/nope")[0] == 404
    status, forbidden = server.api_get("/api/v1/events?code=403")
    assert len(forbidden["events"]) == 2
    assert server.api_get("/api/v1/events?stage=Nope")[0] == 400
    assert server.api_get("/api/v1/stats")[1]["events"] == 974
    assert server.api_get("/openapi.json")[1]["openapi"].startswith("3.")


def test_policy_simulate_and_suggest_read_the_store(loaded: str, fixtures_dir: Path) -> None:
    policy = str(fixtures_dir / "audit-policy.yaml")
    out = _run("policy", "simulate", "--policy", policy, "--store", loaded,
               "--format", "json").output
    outcomes = [json.loads(line) for line in out.splitlines()]
    assert len(outcomes) == 974
    assert all(o["level"] == o["recordedLevel"] and o["logged"] for o in outcomes)
    alice = _run("policy", "simulate", "--policy", policy, "--store", loaded, "--user", "alice",
                 "--format", "json").output
    assert len(alice.splitlines()) == 6
    suggested = _run("policy", "suggest", "--store", loaded)
    assert "apiVersion: audit.k8s.io/v1" in suggested.output


def test_limits_are_checked_and_cut_answers_say_so(loaded: str) -> None:
    # Issue 19: `--limit -5` returned everything, and an answer cut at --limit said nothing.
    bad = CliRunner().invoke(main, ["query", "--store", loaded, "--limit", "-5"])
    assert bad.exit_code == 2 and "--limit" in bad.output and "1<=x" in bad.output
    first = CliRunner().invoke(main, ["query", "--store", loaded, "--user", "alice",
                                      "--limit", "4", "--format", "json"])
    assert first.exit_code == 0
    page = json.loads(first.stdout)
    assert len(page) == 4
    notice = first.stderr
    assert "showing the newest 4; more match: --before " in notice
    cursor = notice.split("--before ", 1)[1].split()[0]
    rest = CliRunner().invoke(main, ["query", "--store", loaded, "--user", "alice",
                                     "--limit", "4", "--format", "json", "--before", cursor])
    assert rest.exit_code == 0 and rest.stderr == ""  # the last page: nothing more to say
    ids = [e["id"] for e in page + json.loads(rest.stdout)]
    assert len(ids) == len(set(ids)) == 6  # alice's six events, each once
