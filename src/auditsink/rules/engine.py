"""Compiled rule sets and their evaluation over audit events.

``load_rules(paths)`` reads rule files (the built-in default rules when ``paths`` is None),
compiles every enabled ``k8s_audit`` rule into a closure, and indexes the rules by the stage,
verb and resource their condition requires, so an event only meets the rules that can match it.

    >>> rs = load_rules(None)
    >>> [d.rule for d in rs.evaluate(b'{"auditID":"a","stage":"ResponseComplete","verb":"get"}')]
    []
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from auditsink.rules.compiler import (
    Predicate,
    compile_condition,
    expand,
    required_values,
    requires_present,
)
from auditsink.rules.condition import ConditionError, Node, parse
from auditsink.rules.exceptions import ExceptionError, exception_node, with_exceptions
from auditsink.rules.fields import FieldRef, text
from auditsink.rules.loader import Collection, MacroDef, RuleDef, RuleLoadError
from auditsink.rules.output import OutputError, Template
from auditsink.selector import INDEXED_CHARS
from auditsink.store.base import RowFilter

BUILTIN = Path(__file__).parent / "builtin" / "default.yaml"
SOURCE = "k8s_audit"
ACCEPTED_SOURCES = frozenset({"", SOURCE})
_STAGE_KEYS = frozenset({"ka.stage", "jevt.value[/stage]", "json.value[/stage]"})
_VERB_KEYS = frozenset({"ka.verb", "jevt.value[/verb]", "json.value[/verb]"})
_RESOURCE_KEYS = frozenset({"ka.target.resource", "jevt.value[/objectRef/resource]"})
_SUBRESOURCE_KEYS = frozenset({"ka.target.subresource", "jevt.value[/objectRef/subresource]",
                               "json.value[/objectRef/subresource]"})
_NAMESPACE_KEYS = frozenset({"ka.target.namespace", "jevt.value[/objectRef/namespace]",
                             "json.value[/objectRef/namespace]"})
_USER_KEYS = frozenset({"ka.user.name", "jevt.value[/user/username]",
                        "json.value[/user/username]"})
_IMPERSONATED_KEYS = frozenset({"ka.impuser.name", "jevt.value[/impersonatedUser/username]",
                                "json.value[/impersonatedUser/username]"})
_INDEX_LIMIT = 4096  # distinct (stage, verb, resource) keys cached; resources are client-chosen
_decode = msgspec.json.Decoder().decode


class EventContext:
    """One event being evaluated: its JSON decoded once, each field extracted at most once.

    ``ka_doc`` is what ``ka.*`` fields read: the event, or nothing when it has no ``auditID``
    (the plugin extracts no k8saudit field from JSON that is not an audit event).
    """

    __slots__ = ("cache", "doc", "ka_doc", "raw")

    def __init__(self, event: bytes | str | Mapping[str, Any]) -> None:
        if isinstance(event, Mapping):
            self.raw: bytes | str | None = None
            doc: Any = dict(event)
        else:
            self.raw = bytes(event) if isinstance(event, (bytearray, memoryview)) else event
            try:
                doc = _decode(self.raw)
            except (msgspec.DecodeError, RecursionError):  # hostile nesting is not an event
                doc = {}
        if type(doc) is not dict:
            doc = {}
        self.doc: dict[str, Any] = doc
        self.ka_doc: dict[str, Any] = doc if "auditID" in doc else {}
        self.cache: dict[str, Any] = {}

    def get(self, ref: FieldRef) -> Any:
        """The value of a field in this event, computed once."""
        cache = self.cache
        key = ref.key
        if key in cache:
            return cache[key]
        source = self.ka_doc if key.startswith("ka.") else self.doc
        value = cache[key] = ref.extract(source)
        return value


class Detection(msgspec.Struct):
    """One rule matching one event: what an alert is made of."""

    rule: str
    priority: str
    output: str
    tags: list[str]
    auditID: str
    time: str
    output_fields: dict[str, Any]
    source: str = SOURCE
    event: bytes = b""

    def to_dict(self, include_event: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (the raw event only when asked for)."""
        out: dict[str, Any] = {
            "rule": self.rule,
            "priority": self.priority,
            "output": self.output,
            "tags": list(self.tags),
            "auditID": self.auditID,
            "time": self.time,
            "source": self.source,
            "output_fields": dict(self.output_fields),
        }
        if include_event:
            out["event"] = _decode(self.event) if self.event else None
        return out


@dataclass
class CompiledRule:
    """An enabled rule ready to run, with what it requires of stage, verb and resource."""

    name: str
    priority: str
    desc: str
    tags: list[str]
    condition: str
    predicate: Predicate
    template: Template
    stages: frozenset[str] | None
    verbs: frozenset[str] | None
    resources: frozenset[str] | None
    file: str

    #: subresources, namespaces and user names the condition requires, and whether it needs
    #: an impersonated user (only its row filter uses these)
    subresources: frozenset[str] | None = None
    namespaces: frozenset[str] | None = None
    users: frozenset[str] | None = None
    impersonated: bool = False

    def candidate(self, stage: Any, verb: Any, resource: Any) -> bool:
        """Whether an event with these discriminators could match at all."""
        return (
            (self.stages is None or stage in self.stages)
            and (self.verbs is None or verb in self.verbs)
            and (self.resources is None or resource in self.resources)
        )

    def row_filter(self) -> RowFilter:
        """What a stored event's row must hold for this rule to be worth evaluating on it.
        Row strings are bounded and "" when absent, so a requirement they cannot tell apart
        (a required "" or a value past the bound) constrains nothing there. The row says an
        impersonated user is there only when it has a name; the API server never impersonates
        without one."""
        return RowFilter(stages=self.stages, verbs=_row_safe(self.verbs),
                         resources=_row_safe(self.resources),
                         subresources=_row_safe(self.subresources),
                         namespaces=_row_safe(self.namespaces), users=_row_safe(self.users),
                         impersonated=self.impersonated)


def _row_safe(values: frozenset[str] | None) -> frozenset[str] | None:
    if values is None or any(not v or len(v) >= INDEXED_CHARS for v in values):
        return None
    return values


class RuleSet:
    """Loaded and compiled rules; :meth:`evaluate` runs them on one event."""

    def __init__(
        self, rules: list[CompiledRule], collection: Collection, rule_matching: str = "all"
    ) -> None:
        if rule_matching not in ("all", "first"):
            raise ValueError(f"rule_matching must be 'all' or 'first', not {rule_matching!r}")
        self.rules = rules
        self.collection = collection
        # Falco's `rule_matching`: "first" stops at the first matching rule in load order
        # (Falco's default); we report every match unless asked.
        self.first_only = rule_matching == "first"
        self._index: dict[tuple[Any, Any, Any], tuple[CompiledRule, ...]] = {}

    @property
    def disabled(self) -> list[RuleDef]:
        """Rules defined but disabled (``enabled: false``)."""
        return [
            r
            for r in self.collection.rules.values()
            if not r.enabled and r.source in ACCEPTED_SOURCES
        ]

    @property
    def skipped(self) -> list[RuleDef]:
        """Rules for other sources (syscall, cloudtrail, ...), ignored here."""
        return [r for r in self.collection.rules.values() if r.source not in ACCEPTED_SOURCES]

    def candidates(self, ctx: EventContext) -> tuple[CompiledRule, ...]:
        """The rules that can match this event, from the (stage, verb, resource) index."""
        doc = ctx.doc
        ref = doc.get("objectRef")
        stage, verb = doc.get("stage"), doc.get("verb")
        resource = ref.get("resource") if type(ref) is dict else None
        if not (type(stage) is type(verb) is type(resource) is str):
            stage, verb, resource = _key_part(stage), _key_part(verb), _key_part(resource)
        key = (stage, verb, resource)
        try:
            found = self._index.get(key)
        except TypeError:  # an unhashable value where a string belongs: check every rule
            return tuple(self.rules)
        if found is None:
            found = tuple(r for r in self.rules if r.candidate(*key))
            if len(self._index) < _INDEX_LIMIT:
                self._index[key] = found
        return found

    def row_filters(self) -> tuple[RowFilter, ...]:
        """One filter per rule: an event whose row passes none cannot match any rule."""
        return tuple(rule.row_filter() for rule in self.rules)

    def evaluate(self, event: bytes | str | Mapping[str, Any] | EventContext
                 ) -> list[Detection]:
        """Every detection for one event (raw JSON bytes of one audit event, its dict, or an
        :class:`EventContext` of it)."""
        ctx = event if isinstance(event, EventContext) else EventContext(event)
        detections: list[Detection] = []
        for rule in self.candidates(ctx):
            if rule.predicate(ctx):
                detections.append(self._detection(rule, ctx))
                if self.first_only:
                    break
        return detections

    def _detection(self, rule: CompiledRule, ctx: EventContext) -> Detection:
        doc = ctx.doc
        raw = ctx.raw
        if raw is None:
            event = msgspec.json.encode(doc)
        else:
            event = raw.encode() if isinstance(raw, str) else bytes(raw)
        audit_id = doc.get("auditID")
        stamp = doc.get("stageTimestamp") or doc.get("requestReceivedTimestamp") or ""
        return Detection(
            rule=rule.name,
            priority=rule.priority,
            output=rule.template.render(ctx),
            tags=list(rule.tags),
            auditID=audit_id if isinstance(audit_id, str) else "",
            time=stamp if isinstance(stamp, str) else "",
            output_fields=rule.template.values(ctx),
            event=event,
        )


def _key_part(value: Any) -> Any:
    # Fields render non-strings as JSON text; the index must compare the same way.
    return value if value is None or type(value) is str else text(value)


def load_rules(paths: Sequence[str | Path] | None = None, rule_matching: str = "all") -> RuleSet:
    """Load rule files in order (later ones override earlier ones) and compile them.

    ``None`` loads the built-in default rules. ``rule_matching="first"`` reports only the first
    matching rule of an event, as Falco does by default. Raises :class:`RuleLoadError`.
    """
    coll = Collection()
    for path in [BUILTIN] if paths is None else paths:
        coll.load_file(path)
    return compile_rules(coll, rule_matching)


def load_rule_files(paths: Sequence[str | Path] = (), default: bool = True,
                    rule_matching: str = "all") -> RuleSet:
    """The built-in rules, then ``paths`` on top (they tune or extend them); with
    ``default=False``, ``paths`` alone (Falco's own rule file, say). Raises
    :class:`RuleLoadError`, or ``ValueError`` when that leaves no file at all."""
    files = ([BUILTIN] if default else []) + list(paths)
    if not files:
        raise ValueError("no rules to load: --no-default-rules needs at least one --rules FILE")
    return load_rules(files, rule_matching)


def load_rules_text(texts: Iterable[tuple[str, str]]) -> RuleSet:
    """Like :func:`load_rules` from (name, YAML text) pairs."""
    coll = Collection()
    for name, source in texts:
        coll.load_text(source, name)
    return compile_rules(coll)


def _position(condition: str, pos: int) -> str:
    """``line L column C`` of an offset, with the text of that line and a caret under it."""
    before = condition[:pos]
    line = before.count("\n") + 1
    start = before.rfind("\n") + 1
    end = condition.find("\n", pos)
    source = condition[start : end if end >= 0 else len(condition)]
    column = pos - start + 1
    return f"at line {line} column {column}:\n    {source}\n    {' ' * (column - 1)}^"


def _macro_asts(coll: Collection) -> dict[str, Node]:
    asts: dict[str, Node] = {}
    for macro in coll.macros.values():
        asts[macro.name] = _parse_macro(macro)
    return asts


def _parse_macro(macro: MacroDef) -> Node:
    try:
        return parse(macro.condition)
    except ConditionError as exc:
        raise RuleLoadError(
            macro.origin.file,
            f"condition: {exc.message} {_position(macro.condition, exc.pos)}",
            f"macro '{macro.name}'",
            macro.origin.line,
        ) from None


def compile_rules(coll: Collection, rule_matching: str = "all") -> RuleSet:
    """Compile every enabled rule of our source; errors name file, rule and position."""
    macros = _macro_asts(coll)
    lists = {name: lst.items for name, lst in coll.lists.items()}
    compiled: list[CompiledRule] = []
    for rule in coll.rules.values():
        if rule.source not in ACCEPTED_SOURCES or not rule.enabled:
            continue
        compiled.append(_compile_rule(rule, macros, lists))
    return RuleSet(compiled, coll, rule_matching)


def _compile_rule(
    rule: RuleDef, macros: Mapping[str, Node], lists: Mapping[str, Sequence[str]]
) -> CompiledRule:
    label = f"rule '{rule.name}'"
    origin = rule.origin
    if len(rule.origins) > 1:
        later = ", ".join(f"{o.file}:{o.line}" for o in rule.origins[1:])
        label = f"{label} (modified at {later})"

    def fail(message: str) -> RuleLoadError:
        return RuleLoadError(origin.file, message, label, origin.line)

    try:
        node = expand(parse(rule.condition), macros, lists)
    except ConditionError as exc:
        raise fail(f"condition: {exc.message} {_position(rule.condition, exc.pos)}") from None
    except ValueError as exc:  # a list that refers to itself
        raise fail(f"condition: {exc}") from None
    for ex in rule.exceptions:
        try:
            ex_node = exception_node(ex)
            if ex_node is not None:
                expand(ex_node, macros, lists)
        except (ExceptionError, ConditionError) as exc:
            message = exc.message if isinstance(exc, ConditionError) else str(exc)
            raise fail(f"exception '{ex.name}': {message}") from None
    node = expand(with_exceptions(node, rule.exceptions), macros, lists)
    try:
        template = Template(rule.output)
    except OutputError as exc:
        raise fail(f"output: {exc.message} {_position(rule.output.strip(), exc.pos)}") from None
    return CompiledRule(
        name=rule.name,
        priority=rule.priority,
        desc=rule.desc.strip(),
        tags=rule.tags,
        condition=rule.condition.strip(),
        predicate=compile_condition(node),
        template=template,
        stages=required_values(node, _STAGE_KEYS),
        verbs=required_values(node, _VERB_KEYS),
        resources=required_values(node, _RESOURCE_KEYS),
        file=rule.origin.file,
        subresources=required_values(node, _SUBRESOURCE_KEYS),
        namespaces=required_values(node, _NAMESPACE_KEYS),
        users=required_values(node, _USER_KEYS),
        impersonated=requires_present(node, _IMPERSONATED_KEYS),
    )
