"""Real traffic: the policy a real kube-apiserver 1.20 used must reproduce every level it
recorded."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditsink.admit.policy import apply_policy, load_policy
from auditsink.admit.simulate import Simulation, iter_outcomes
from auditsink.admit.sources import iter_file_items
from auditsink.cli import main


@pytest.fixture(scope="module")
def seed_policy(fixtures_dir: Path) -> Path:
    path = fixtures_dir.parent.parent / "seed" / "audit-policy.yaml"
    if not path.exists():
        pytest.skip(f"{path} is absent: ../shared/seed is not beside this clone")
    return path


def test_check_accepts_the_seed_and_fixture_policies(fixtures_dir: Path, seed_policy: Path) -> None:
    runner = CliRunner()
    for path in (seed_policy, fixtures_dir / "audit-policy.yaml"):
        result = runner.invoke(main, ["policy", "check", str(path)])
        assert result.exit_code == 0, result.output
        assert "error" not in result.output
        assert result.output.strip().endswith("rules")


@pytest.mark.parametrize("name", ["audit.log", "batch-bodies.jsonl", "blocking-bodies.jsonl"])
def test_fixture_policy_reproduces_every_recorded_level(fixtures_dir: Path, name: str) -> None:
    policy = load_policy(fixtures_dir / "audit-policy.yaml")
    sim = Simulation(policy)
    mismatches = []
    for outcome in iter_outcomes(policy, iter_file_items([str(fixtures_dir / name)]), sim):
        event = outcome.item.event
        # Every event in the capture was recorded through this policy: level None and omitted
        # stages are never emitted, so each one must come out logged at the recorded level.
        if outcome.decision.level != event.level or not outcome.logged:
            mismatches.append(
                (event.auditID, event.stage, event.verb, event.requestURI, outcome.decision)
            )
        # Re-applying the recording policy on our side must change nothing.
        assert outcome.kept is outcome.item
    assert not mismatches
    expected_events = 960 if name == "blocking-bodies.jsonl" else 974
    assert sim.total.events == expected_events
    # The capture exercises rules of every recorded level (the None rules drop their requests).
    assert {"Metadata", "Request", "RequestResponse"} <= set(sim.by_level)


def test_fixture_policy_caveats_are_in_the_capture(fixtures_dir: Path) -> None:
    """The capture has the cases where objectRef differs from what the policy saw."""
    policy = load_policy(fixtures_dir / "audit-policy.yaml")
    items = list(iter_file_items([str(fixtures_dir / "audit.log")]))
    creates_with_body_name = [
        i
        for i in items
        if i.event.verb == "create"
        and i.event.objectRef
        and i.event.objectRef.name
        and not i.event.objectRef.subresource
    ]
    exec_creates = [
        i for i in items if i.event.objectRef and i.event.objectRef.subresource == "exec"
    ]
    field_selector_lists = [i for i in items if "fieldSelector=metadata.name" in i.event.requestURI]
    assert creates_with_body_name and exec_creates and field_selector_lists
    for item in exec_creates:
        assert policy.evaluate_event(item.event).level == "RequestResponse"


def test_seed_policy_on_fixture_traffic(fixtures_dir: Path, seed_policy: Path) -> None:
    """The documentation's example policy, replayed on real traffic, rule by rule."""
    policy = load_policy(seed_policy)
    by_rule: Counter[int | None] = Counter()
    for item in iter_file_items([str(fixtures_dir / "audit.log")]):
        event = item.event
        decision = policy.evaluate_event(event)
        by_rule[decision.rule] += 1
        ref = event.objectRef
        if ref is None:
            # rule 4: authenticated users' discovery and /version requests are not logged
            path = event.requestURI.partition("?")[0]
            discovery = path.startswith("/api") or path == "/version"
            in_group = "system:authenticated" in event.user.groups
            assert (decision.rule == 4) is (discovery and in_group)
        elif ref.apiGroup == "" and ref.resource == "pods" and not ref.subresource:
            assert decision.rule == 0 and decision.level == "RequestResponse"
        elif ref.apiGroup == "" and ref.resource == "pods":
            # pods/exec is not "pods": it falls through to the core-group rule
            assert decision.rule == 7
        elif ref.resource == "secrets":
            assert decision.rule == 6 and decision.level == "Metadata"
        assert decision.omit_stages >= {"RequestReceived"}
    assert by_rule[4] > 0 and by_rule[8] > 0


def test_simulate_json_matches_recorded_levels(fixtures_dir: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "policy",
            "simulate",
            "--policy",
            str(fixtures_dir / "audit-policy.yaml"),
            "--format",
            "json",
            str(fixtures_dir / "batch-bodies.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == 974
    assert all(r["level"] == r["recordedLevel"] and r["logged"] for r in records)
    assert {r["rule"] for r in records} == {2, 3, 4, 5}


def test_apply_seed_policy_shrinks_fixture_traffic(fixtures_dir: Path, seed_policy: Path) -> None:
    policy = load_policy(seed_policy)
    received = kept = 0
    for item in iter_file_items([str(fixtures_dir / "audit.log")]):
        received += len(item.raw)
        out = apply_policy(policy, item)
        if out is not None:
            assert out.event.stage != "RequestReceived"
            assert json.loads(out.raw)["level"] == out.event.level
            kept += len(out.raw)
    assert 0 < kept < received
