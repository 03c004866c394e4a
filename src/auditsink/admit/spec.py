"""Read and validate an audit.k8s.io/v1 Policy the way kube-apiserver does.

kube-apiserver (AS ``pkg/audit/policy/reader.go``, ``pkg/apis/audit/validation/validation.go``)
decodes strictly first and falls back to lenient decoding with a warning when the file has
unknown or duplicate fields (1.26+); then it validates. We do the same, and every problem names
the file, the line and the field path (``rules[2].level``), so a user can fix it at once.
See ../shared/reference/k8s-audit-facts.md section 4c.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from auditsink.model import API_VERSION, LEVELS, STAGES

POLICY_KIND = "Policy"
_OLD_VERSIONS = ("audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1")

# Field names as the Go structs spell them (json tags); anything else is "unknown".
_POLICY_FIELDS = frozenset(
    {"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
)
_RULE_FIELDS = frozenset(
    {
        "level",
        "users",
        "userGroups",
        "verbs",
        "resources",
        "namespaces",
        "nonResourceURLs",
        "omitStages",
        "omitManagedFields",
    }
)
_GR_FIELDS = frozenset({"group", "resources", "resourceNames"})

# k8s.io/apimachinery validation.IsDNS1123Subdomain, which the validator applies to groups.
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One finding about a policy file: ``severity`` is "error" or "warning"."""

    severity: str
    message: str
    file: str = "<policy>"
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.severity}: {self.message}"


class PolicyError(ValueError):
    """The policy cannot be loaded; ``problems`` lists every error (and warning) found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors) or "invalid policy")


@dataclass(frozen=True)
class GroupResources:
    """One ``resources`` entry: ``group`` "" is the core group, "*" any group (1.36+)."""

    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleSpec:
    """One PolicyRule as written; ``index`` and ``line`` say where it is in the file."""

    level: str
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool | None = None
    index: int = 0
    line: int | None = None

    def summary(self, width: int = 60) -> str:
        """A short one-line description, e.g. ``None users=system:kube-proxy verbs=watch``."""
        parts = [self.level or "?"]
        for label, values in (
            ("users", self.users),
            ("userGroups", self.user_groups),
            ("verbs", self.verbs),
            ("namespaces", self.namespaces),
            ("nonResourceURLs", self.non_resource_urls),
        ):
            if values:
                parts.append(label + "=" + ",".join(v or '""' for v in values))
        if self.resources:
            parts.append("resources=" + ",".join(_gr_text(gr) for gr in self.resources))
        text = " ".join(parts)
        return text if len(text) <= width else text[: width - 3] + "..."


@dataclass(frozen=True)
class PolicySpec:
    """A validated Policy as written, before compilation; ``warnings`` kept for ``check``."""

    rules: tuple[RuleSpec, ...]
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool = False
    file: str = "<policy>"
    warnings: tuple[Problem, ...] = field(default=(), compare=False)


class _Reader:
    """Turns the parsed document into a :class:`PolicySpec`, collecting problems with lines."""

    def __init__(self, file: str, lines: dict[Path, int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []

    def line(self, path: Path) -> int | None:
        # The closest enclosing node that has a known position.
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: Path, message: str) -> None:
        self.problems.append(Problem("error", _join(path, message), self.file, self.line(path)))

    def warn(self, path: Path, message: str) -> None:
        self.problems.append(Problem("warning", _join(path, message), self.file, self.line(path)))

    def unknown_fields(self, obj: dict[str, Any], known: frozenset[str], path: Path) -> None:
        for key in obj:
            if key not in known:
                # kube-apiserver 1.26+ loads the policy anyway and logs this warning.
                close = difflib.get_close_matches(key, known, n=1)
                hint = f'; did you mean "{close[0]}"?' if close else ""
                self.warn(path + (key,), f'unknown field "{key}" (ignored{hint})')

    def strings(self, obj: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
        value = obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.error(path + (key,), f"expected a list of strings, got {_type_name(value)}")
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(path + (key, i), f"expected a string, got {_type_name(item)}")
                continue
            out.append(item)
        return tuple(out)

    def boolean(self, obj: dict[str, Any], key: str, path: Path) -> bool | None:
        value = obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        self.error(path + (key,), f"expected true or false, got {_type_name(value)}")
        return None

    def stages(self, obj: dict[str, Any], path: Path) -> tuple[str, ...]:
        stages = self.strings(obj, "omitStages", path)
        for i, stage in enumerate(stages):
            if stage not in STAGES:
                self.error(path + ("omitStages", i), _unsupported(stage, STAGES))
        return stages

    def policy(self, doc: Any) -> PolicySpec | None:
        if not isinstance(doc, dict):
            self.error((), f"expected a Policy object, got {_type_name(doc)}")
            return None
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if not api_version or not kind:
            # The API server's decoder needs both to pick the type.
            self.error(
                (), "apiVersion and kind are required (apiVersion: audit.k8s.io/v1, kind: Policy)"
            )
        elif api_version in _OLD_VERSIONS:
            self.error(
                ("apiVersion",), f"{api_version} was removed in Kubernetes 1.24: use {API_VERSION}"
            )
        elif api_version != API_VERSION or kind != POLICY_KIND:
            self.error(
                ("apiVersion",),
                f'expected apiVersion "{API_VERSION}" and kind "{POLICY_KIND}", '
                f'got "{api_version}" and "{kind}"',
            )
        self.unknown_fields(doc, _POLICY_FIELDS, ())
        omit_stages = self.stages(doc, ())
        omit_managed = self.boolean(doc, "omitManagedFields", ())
        raw_rules = doc.get("rules")
        if raw_rules is not None and not isinstance(raw_rules, list):
            self.error(("rules",), f"expected a list of rules, got {_type_name(raw_rules)}")
            raw_rules = []
        if not raw_rules:
            self.error(
                ("rules",),
                "a policy needs at least one rule (kube-apiserver refuses "
                "to start: loaded illegal policy with 0 rules)",
            )
        rules = tuple(
            rule for i, raw in enumerate(raw_rules or []) if (rule := self.rule(raw, i)) is not None
        )
        return PolicySpec(
            rules=rules,
            omit_stages=omit_stages,
            omit_managed_fields=bool(omit_managed),
            file=self.file,
        )

    def rule(self, raw: Any, index: int) -> RuleSpec | None:
        path: Path = ("rules", index)
        if not isinstance(raw, dict):
            self.error(path, f"expected a rule object, got {_type_name(raw)}")
            return None
        self.unknown_fields(raw, _RULE_FIELDS, path)
        level = raw.get("level")
        if level is None or level == "":
            self.error(
                path + ("level",),
                "Required value: every rule needs a level "
                "(None, Metadata, Request or RequestResponse)",
            )
        elif level not in LEVELS:
            self.error(path + ("level",), _unsupported(level, LEVELS))
        urls = self.strings(raw, "nonResourceURLs", path)
        for i, url in enumerate(urls):
            if url == "*":
                continue
            if not url.startswith("/"):
                self.error(
                    path + ("nonResourceURLs", i),
                    f'Invalid value: "{url}": non-resource URL rules must begin with a "/" '
                    "character",
                )
            if url and "*" in url[:-1]:
                self.error(
                    path + ("nonResourceURLs", i),
                    f'Invalid value: "{url}": non-resource URL wildcards "*" must be the '
                    "final character of the rule",
                )
        resources = self.group_resources(raw, path)
        namespaces = self.strings(raw, "namespaces", path)
        if urls and (resources or namespaces):
            self.error(
                path + ("nonResourceURLs",),
                "rules cannot apply to both regular resources and non-resource URLs "
                "(nonResourceURLs cannot be combined with resources or namespaces)",
            )
        return RuleSpec(
            level=level if isinstance(level, str) else "",
            users=self.strings(raw, "users", path),
            user_groups=self.strings(raw, "userGroups", path),
            verbs=self.strings(raw, "verbs", path),
            resources=resources,
            namespaces=namespaces,
            non_resource_urls=urls,
            omit_stages=self.stages(raw, path),
            omit_managed_fields=self.boolean(raw, "omitManagedFields", path),
            index=index,
            line=self.line(path),
        )

    def group_resources(self, rule: dict[str, Any], path: Path) -> tuple[GroupResources, ...]:
        raw = rule.get("resources")
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.error(
                path + ("resources",),
                f"expected a list of {{group, resources}}, got {_type_name(raw)}",
            )
            return ()
        out: list[GroupResources] = []
        for i, entry in enumerate(raw):
            where = path + ("resources", i)
            if not isinstance(entry, dict):
                self.error(
                    where, f"expected {{group, resources, resourceNames}}, got {_type_name(entry)}"
                )
                continue
            self.unknown_fields(entry, _GR_FIELDS, where)
            group = entry.get("group") or ""
            if not isinstance(group, str):
                self.error(where + ("group",), f"expected a string, got {_type_name(group)}")
                group = ""
            elif group and group != "*" and not _is_dns_subdomain(group):
                hint = (
                    " (leave the version out: rbac.authorization.k8s.io, not .../v1)"
                    if "/" in group
                    else ""
                )
                self.error(
                    where + ("group",),
                    f'Invalid value: "{group}": an API group must be a '
                    f'lowercase RFC 1123 subdomain, "" (core) or "*"{hint}',
                )
            resources = self.strings(entry, "resources", where)
            names = self.strings(entry, "resourceNames", where)
            if names and not resources:
                self.error(
                    where + ("resourceNames",), "using resourceNames requires at least one resource"
                )
            out.append(GroupResources(group=group, resources=resources, resource_names=names))
        return tuple(out)


def parse_policy(
    text: str | bytes, file: str = "<policy>"
) -> tuple[PolicySpec | None, list[Problem]]:
    """Parse and validate policy text (YAML or JSON); the spec is None when there are errors.

    >>> spec, problems = parse_policy("apiVersion: audit.k8s.io/v1\\nkind: Policy\\nrules: []\\n")
    >>> spec is None, problems[0].line, problems[0].message.split(":")[0]
    (True, 3, 'rules')
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        doc, lines, duplicates = _compose(text)
    except yaml.YAMLError as exc:
        doc, lines, duplicates = _json_fallback(text)
        if doc is None:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            return None, [
                Problem("error", f"not valid YAML or JSON: {_yaml_reason(exc)}", file, line)
            ]
    reader = _Reader(file, lines)
    for path in duplicates:
        reader.warn(path, "duplicate field (the last value wins)")
    spec = reader.policy(doc)
    problems = reader.problems
    if spec is None or any(p.severity == "error" for p in problems):
        return None, problems
    warnings = tuple(p for p in problems if p.severity == "warning")
    return PolicySpec(
        spec.rules, spec.omit_stages, spec.omit_managed_fields, file, warnings
    ), problems


def _compose(text: str) -> tuple[Any, dict[Path, int], list[Path]]:
    """YAML text to Python values, with the 1-based line of every node and duplicate keys."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[Path, int] = {}
    duplicates: list[Path] = []
    if node is None:
        return None, lines, duplicates
    constructor = yaml.SafeLoader("")

    def walk(n: yaml.Node, path: Path) -> Any:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = constructor.construct_object(key_node)
                key = key if isinstance(key, str) else str(key)
                if key in out:
                    duplicates.append(path + (key,))
                out[key] = walk(value_node, path + (key,))
                lines[path + (key,)] = key_node.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(child, path + (i,)) for i, child in enumerate(n.value)]
        value = constructor.construct_object(n)
        # YAML 1.1 reads `level: null`/`~` as None and numbers as int: keep them for errors.
        return value

    return walk(node, ()), lines, duplicates


def _json_fallback(text: str) -> tuple[Any, dict[Path, int], list[Path]]:
    """JSON that PyYAML rejects (tabs, say) still loads, without line numbers."""
    if text.lstrip()[:1] != "{":
        return None, {}, []
    try:
        return json.loads(text), {}, []
    except ValueError:
        return None, {}, []


def _yaml_reason(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    return " ".join(str(p) for p in (context, problem) if p) or str(exc)


def _gr_text(gr: GroupResources) -> str:
    group = gr.group or "core"
    names = f"[{'|'.join(gr.resource_names)}]" if gr.resource_names else ""
    return f"{group}:{'|'.join(gr.resources) or '*'}{names}"


def _is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def _unsupported(value: Any, supported: tuple[str, ...]) -> str:
    choices = ", ".join(f'"{s}"' for s in supported)
    return f'Unsupported value: "{value}": supported values: {choices}'


def _join(path: Path, message: str) -> str:
    if not path:
        return message
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return f"{text}: {message}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
