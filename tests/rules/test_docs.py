"""docs/rules.md stays in step with the code: every built-in rule and every field is in it, and
the docstring examples of the rules modules run."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from auditsink.rules import BUILTIN, load_rules, load_rules_text
from auditsink.rules.fields import FIELDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
MODULES = [
    "auditsink.rules.compiler",
    "auditsink.rules.condition",
    "auditsink.rules.engine",
    "auditsink.rules.extract",
    "auditsink.rules.fields",
    "auditsink.rules.jevt",
    "auditsink.rules.output",
    "auditsink.rules.priority",
]


def test_every_builtin_rule_is_documented() -> None:
    text = DOC.read_text()
    missing = [r.name for r in load_rules(None).rules if f"| {r.name} |" not in text]
    assert missing == []


def test_every_field_is_documented() -> None:
    text = DOC.read_text()
    assert [name for name in FIELDS if f"| `{name}` |" not in text] == []


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


def _yaml_blocks() -> list[str]:
    text = DOC.read_text()
    return [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]


def test_yaml_examples_load() -> None:
    example, tuning = _yaml_blocks()
    ruleset = load_rules_text([("example.yaml", example)])
    assert [r.name for r in ruleset.rules] == ["Pod From Untrusted Registry"]
    tuned = load_rules_text([(str(BUILTIN), BUILTIN.read_text()), ("tuning.yaml", tuning)])
    assert "K8s Resource Created" not in [r.name for r in tuned.rules]
