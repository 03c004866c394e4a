"""Detection rules in Falco's format for the ``k8s_audit`` source.

Public API: :func:`load_rules` (paths, or None for the built-in rules) returns a
:class:`RuleSet`; ``RuleSet.evaluate(raw)`` returns :class:`Detection` objects. See docs/rules.md.
"""

from __future__ import annotations

from auditsink.rules.engine import (
    BUILTIN,
    CompiledRule,
    Detection,
    EventContext,
    RuleSet,
    load_rule_files,
    load_rules,
    load_rules_text,
)
from auditsink.rules.loader import RuleLoadError
from auditsink.priority import PRIORITIES, at_least, parse_priority
from auditsink.rules.stateful import BurstDetector, StatefulDetectors

__all__ = [
    "BUILTIN",
    "PRIORITIES",
    "BurstDetector",
    "CompiledRule",
    "Detection",
    "EventContext",
    "RuleLoadError",
    "RuleSet",
    "StatefulDetectors",
    "at_least",
    "load_rule_files",
    "load_rules",
    "load_rules_text",
    "parse_priority",
]
