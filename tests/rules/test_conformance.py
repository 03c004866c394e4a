"""The Falco k8saudit conformance suite (../shared/conformance/falco): upstream rules, upstream
traces, upstream expectations (falcosecurity/testing tests/k8saudit/k8saudit_test.go)."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import FALCO

from auditsink.model import BodyError, decode_body, iter_file_bodies
from auditsink.rules import Detection, RuleSet, load_rules

# Read at collection time so that each case is its own test; skipped below when absent.
CASES: list[dict[str, Any]] = (
    json.loads((FALCO / "cases.json").read_text()) if (FALCO / "cases.json").exists() else []
)


@cache
def upstream_rules(falco_dir: Path, overrides: tuple[str, ...], matching: str) -> RuleSet:
    """The upstream rule file, then the overrides in order (cached: cases share them)."""
    paths = [falco_dir / "k8s_audit_rules.yaml"] + [falco_dir / o for o in overrides]
    return load_rules(paths, rule_matching=matching)


def run_trace(
    falco_dir: Path, case: dict[str, Any], matching: str = "all"
) -> tuple[list[Detection], list[str]]:
    """Load the upstream rules and the case's overrides, then feed every event of the trace."""
    ruleset = upstream_rules(falco_dir, tuple(case["overrides"]), matching)
    detections: list[Detection] = []
    rejected: list[str] = []
    for body in iter_file_bodies(str(falco_dir / case["trace"])):
        try:
            good, bad = decode_body(body)
        except BodyError as exc:
            rejected.append(str(exc))
            continue
        rejected.extend(item.error for item in bad)
        for item in good:
            detections.extend(ruleset.evaluate(item.raw))
    return detections, rejected


# Both ways of matching: every matching rule (ours) and the first one only (Falco's default).
@pytest.mark.parametrize("matching", ["all", "first"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(falco_dir: Path, case: dict[str, Any], matching: str) -> None:
    detections, _ = run_trace(falco_dir, case, matching)
    counts = Counter(d.rule for d in detections)
    for rule, expected in case["expect_rule_counts"].items():
        assert counts[rule] == expected, f"{rule}: {counts[rule]} detections, expected {expected}"
    if case["expect_no_detections"]:
        assert detections == []
    priorities = {d.priority for d in detections}
    assert set(case["expect_priorities"]) <= priorities


def test_all_cases_present(falco_dir: Path) -> None:
    assert len(CASES) == 58


def test_malformed_trace_is_rejected_cleanly(falco_dir: Path) -> None:
    case = {"trace": "traces/fal_01_003.json", "overrides": []}
    detections, rejected = run_trace(falco_dir, case)
    assert detections == []
    assert len(rejected) == 1 and "kind" in rejected[0]


def test_upstream_rules_compile_and_index(falco_dir: Path) -> None:
    ruleset = load_rules([falco_dir / "k8s_audit_rules.yaml"])
    assert len(ruleset.rules) == 48
    by_name = {r.name: r for r in ruleset.rules}
    # The index must know what the conditions require, or every rule runs on every event.
    assert by_name["Create Privileged Pod"].verbs == frozenset({"create"})
    assert by_name["Create Privileged Pod"].resources == frozenset({"pods"})
    assert by_name["Attach/Exec Pod"].stages == frozenset({"ResponseStarted"})
    assert by_name["port-forward"].stages is None
