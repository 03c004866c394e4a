"""Read Falco rule files (``rule``, ``macro``, ``list`` items) and apply appends and overrides.

Files are read in order into one :class:`Collection`; a later definition replaces an earlier one
of the same name, ``append: true`` and ``override: {key: append|replace}`` modify it
(https://falco.org/docs/rules/overriding/). Nothing is compiled here: see engine.compile_rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auditsink.rules.exceptions import (
    ExceptionDef,
    ExceptionError,
    merge_exceptions,
    parse_exception,
)
from auditsink.priority import parse_priority

RULE_APPEND_KEYS = frozenset({"condition", "output", "desc", "tags", "exceptions"})
RULE_REPLACE_KEYS = frozenset(
    {
        "condition",
        "output",
        "desc",
        "priority",
        "tags",
        "exceptions",
        "enabled",
        "warn_evttypes",
        "skip-if-unknown-filter",
        "source",
    }
)
_TOLERATED = frozenset({"required_engine_version", "required_plugin_versions"})


class RuleLoadError(ValueError):
    """A rule file problem: names the file, the item (rule/macro/list), and where."""

    def __init__(self, file: str, message: str, item: str = "", line: int = 0) -> None:
        where = f"{file}:{line}" if line else file
        text = f"{where}: {item}: {message}" if item else f"{where}: {message}"
        super().__init__(text)
        self.file = file
        self.item = item
        self.line = line
        self.message = message


@dataclass
class Origin:
    """Where a definition came from: file and line of its YAML item."""

    file: str
    line: int


@dataclass
class ListDef:
    name: str
    items: list[str]
    origin: Origin


@dataclass
class MacroDef:
    name: str
    condition: str
    origin: Origin


@dataclass
class RuleDef:
    """A rule as collected, before compilation; ``origins`` lists every item that shaped it."""

    name: str
    condition: str
    output: str
    desc: str
    priority: str
    source: str
    tags: list[str]
    enabled: bool
    exceptions: list[ExceptionDef]
    origins: list[Origin] = field(default_factory=list)

    @property
    def origin(self) -> Origin:
        return self.origins[0]


@dataclass
class Collection:
    """Every list, macro and rule read so far, in definition order."""

    lists: dict[str, ListDef] = field(default_factory=dict)
    macros: dict[str, MacroDef] = field(default_factory=dict)
    rules: dict[str, RuleDef] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def load_file(self, path: str | Path) -> None:
        """Read one rule file and fold its items into the collection."""
        path = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RuleLoadError(path, f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise RuleLoadError(path, "not UTF-8 text") from None
        self.load_text(text, path)

    def load_text(self, text: str, name: str = "<string>") -> None:
        """Read rule-file YAML from a string; ``name`` is used in error messages."""
        self.files.append(name)
        for item, line in _items(text, name):
            _apply(self, item, Origin(name, line))


class _Loader(yaml.SafeLoader):
    """SafeLoader reading a bare ``=`` as the string it is in Falco files (``comps: [=, in]``),
    not as YAML 1.1's ``!!value`` tag, which PyYAML cannot construct."""


def _construct_equals(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:value", _construct_equals)


def _items(text: str, name: str) -> list[tuple[Any, int]]:
    """The top-level YAML items with their 1-based line numbers."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return []
        if not isinstance(root, yaml.SequenceNode):
            line = root.start_mark.line + 1
            raise RuleLoadError(name, "a rules file must be a YAML list of items", line=line)
        return [
            (loader.construct_object(node, deep=True), node.start_mark.line + 1)
            for node in root.value
        ]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleLoadError(name, f"invalid YAML: {problem}", line=line) from None
    finally:
        loader.dispose()


def _apply(coll: Collection, item: Any, origin: Origin) -> None:
    if not isinstance(item, dict):
        raise RuleLoadError(origin.file, f"expected a mapping item, got {item!r}", line=origin.line)
    if "rule" in item:
        _apply_rule(coll, item, origin)
    elif "macro" in item:
        _apply_macro(coll, item, origin)
    elif "list" in item:
        _apply_list(coll, item, origin)
    elif set(item) & _TOLERATED:
        return  # engine/plugin version requirements: nothing to check for us
    else:
        keys = ", ".join(sorted(map(str, item)))
        raise RuleLoadError(
            origin.file,
            f"unknown item with keys {keys}: expected rule, macro or list",
            line=origin.line,
        )


def _mode(item: dict[str, Any], label: str, origin: Origin) -> tuple[bool, dict[str, str]]:
    """(legacy append flag, override map), validated."""
    append = item.get("append", False)
    if not isinstance(append, bool):
        raise RuleLoadError(origin.file, "'append' must be true or false", label, origin.line)
    override = item.get("override") or {}
    if not isinstance(override, dict) or any(
        v not in ("append", "replace") for v in override.values()
    ):
        raise RuleLoadError(
            origin.file, "'override' must map keys to 'append' or 'replace'", label, origin.line
        )
    if append and override:
        raise RuleLoadError(
            origin.file, "'append' and 'override' cannot be combined", label, origin.line
        )
    for key in override:
        if key not in item:
            raise RuleLoadError(
                origin.file, f"override of '{key}' but the item has no '{key}'", label, origin.line
            )
    return append, override


def _name(item: dict[str, Any], kind: str, origin: Origin) -> str:
    name = item[kind]
    if not isinstance(name, str) or not name:
        raise RuleLoadError(
            origin.file, f"{kind} name must be a non-empty string", line=origin.line
        )
    return name


def _string(item: dict[str, Any], key: str, label: str, origin: Origin) -> str:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RuleLoadError(origin.file, f"'{key}' must be a string", label, origin.line)
    return str(value)


def _apply_list(coll: Collection, item: dict[str, Any], origin: Origin) -> None:
    name = _name(item, "list", origin)
    label = f"list '{name}'"
    append, override = _mode(item, label, origin)
    items = item.get("items")
    if items is None:
        items = []
    if not isinstance(items, list) or any(isinstance(v, (dict, list)) for v in items):
        raise RuleLoadError(origin.file, "'items' must be a list of strings", label, origin.line)
    values = ["true" if v is True else "false" if v is False else str(v) for v in items]
    if set(override) - {"items"}:
        raise RuleLoadError(origin.file, "a list can only override 'items'", label, origin.line)
    if append or override.get("items") == "append":
        if name not in coll.lists:
            raise RuleLoadError(
                origin.file, "cannot append to a list that is not defined", label, origin.line
            )
        coll.lists[name].items.extend(values)
        return
    coll.lists[name] = ListDef(name, values, origin)


def _apply_macro(coll: Collection, item: dict[str, Any], origin: Origin) -> None:
    name = _name(item, "macro", origin)
    label = f"macro '{name}'"
    append, override = _mode(item, label, origin)
    if set(override) - {"condition"}:
        raise RuleLoadError(
            origin.file, "a macro can only override 'condition'", label, origin.line
        )
    condition = _string(item, "condition", label, origin)
    if append or override.get("condition") == "append":
        if name not in coll.macros:
            raise RuleLoadError(
                origin.file, "cannot append to a macro that is not defined", label, origin.line
            )
        macro = coll.macros[name]
        # Falco appends condition text as is: the appended text starts with "and ..."/"or ...".
        macro.condition = f"{macro.condition} {condition}"
        return
    coll.macros[name] = MacroDef(name, condition, origin)


def _tags(item: dict[str, Any], label: str, origin: Origin) -> list[str]:
    tags = item.get("tags", [])
    if not isinstance(tags, list) or any(isinstance(t, (dict, list)) for t in tags):
        raise RuleLoadError(origin.file, "'tags' must be a list of strings", label, origin.line)
    return [str(t) for t in tags]


def _exceptions(item: dict[str, Any], label: str, origin: Origin) -> list[ExceptionDef]:
    raw = item.get("exceptions", [])
    if not isinstance(raw, list):
        raise RuleLoadError(origin.file, "'exceptions' must be a list", label, origin.line)
    try:
        parsed = [parse_exception(e) for e in raw]
    except ExceptionError as exc:
        raise RuleLoadError(origin.file, str(exc), label, origin.line) from None
    names = [e.name for e in parsed]
    if len(names) != len(set(names)):
        raise RuleLoadError(origin.file, "exception names must be unique", label, origin.line)
    return parsed


def _enabled(item: dict[str, Any], label: str, origin: Origin) -> bool:
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleLoadError(origin.file, "'enabled' must be true or false", label, origin.line)
    return enabled


def _apply_rule(coll: Collection, item: dict[str, Any], origin: Origin) -> None:
    name = _name(item, "rule", origin)
    label = f"rule '{name}'"
    append, override = _mode(item, label, origin)
    existing = coll.rules.get(name)
    if append or override:
        if existing is None:
            raise RuleLoadError(
                origin.file, "cannot override a rule that is not defined", label, origin.line
            )
        mapping = {k: "append" for k in RULE_APPEND_KEYS if k in item} if append else override
        _update_rule(existing, item, mapping, label, origin)
        return
    if set(item) <= {"rule", "enabled"} and "enabled" in item:
        # Legacy form: only (re-)enables or disables an existing rule.
        if existing is None:
            raise RuleLoadError(
                origin.file, "cannot enable/disable a rule that is not defined", label, origin.line
            )
        existing.enabled = _enabled(item, label, origin)
        existing.origins.append(origin)
        return
    missing = [k for k in ("condition", "output", "desc", "priority") if k not in item]
    if missing:
        raise RuleLoadError(
            origin.file, f"missing key(s): {', '.join(missing)}", label, origin.line
        )
    try:
        priority = parse_priority(item["priority"])
    except ValueError as exc:
        raise RuleLoadError(origin.file, str(exc), label, origin.line) from None
    rule = RuleDef(
        name=name,
        condition=_string(item, "condition", label, origin),
        output=_string(item, "output", label, origin),
        desc=_string(item, "desc", label, origin),
        priority=priority,
        source=str(item.get("source") or ""),
        tags=_tags(item, label, origin),
        enabled=_enabled(item, label, origin),
        exceptions=_exceptions(item, label, origin),
        origins=[origin],
    )
    coll.rules[name] = rule  # a redefinition keeps the original position in the order


def _update_rule(
    rule: RuleDef, item: dict[str, Any], mapping: dict[str, str], label: str, origin: Origin
) -> None:
    for key, how in mapping.items():
        allowed = RULE_APPEND_KEYS if how == "append" else RULE_REPLACE_KEYS
        if key not in allowed:
            raise RuleLoadError(
                origin.file, f"key '{key}' cannot be overridden with '{how}'", label, origin.line
            )
        if key in ("condition", "output", "desc"):
            value = _string(item, key, label, origin)
            setattr(rule, key, f"{getattr(rule, key)} {value}" if how == "append" else value)
        elif key == "tags":
            tags = _tags(item, label, origin)
            rule.tags = (
                rule.tags + [t for t in tags if t not in rule.tags] if how == "append" else tags
            )
        elif key == "exceptions":
            extra = _exceptions(item, label, origin)
            try:
                rule.exceptions = (
                    merge_exceptions(rule.exceptions, extra) if how == "append" else extra
                )
            except ExceptionError as exc:
                raise RuleLoadError(origin.file, str(exc), label, origin.line) from None
        elif key == "priority":
            try:
                rule.priority = parse_priority(item["priority"])
            except ValueError as exc:
                raise RuleLoadError(origin.file, str(exc), label, origin.line) from None
        elif key == "enabled":
            rule.enabled = _enabled(item, label, origin)
        elif key == "source":
            rule.source = str(item.get("source") or "")
        # warn_evttypes / skip-if-unknown-filter: accepted, meaningless for audit events
    if "enabled" in item and "enabled" not in mapping:
        rule.enabled = _enabled(item, label, origin)
    rule.origins.append(origin)
