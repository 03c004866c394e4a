"""The audit policy, compiled once and evaluated exactly as kube-apiserver's checker.go does.

Semantics: ../shared/reference/k8s-audit-facts.md section 7 (AS ``pkg/audit/policy/checker.go``).
First matching rule wins; no match is level None with the policy's omitStages.

Speed: the resource part of a rule (group, resource, subresource, nonResourceURLs) is the
expensive part to match and has few distinct values in real traffic, so for each distinct
target we compute once which rules can match it and what is left to check (users, groups, verbs,
namespaces, names: set lookups). Evaluating an event is then one dict lookup and a short loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

from auditsink.admit.apply import Decision, apply_decision
from auditsink.admit.spec import (
    GroupResources,
    PolicyError,
    PolicySpec,
    Problem,
    RuleSpec,
    parse_policy,
)
from auditsink.model import Event, Item

__all__ = [
    "Attributes",
    "Decision",
    "Policy",
    "PolicyError",
    "Problem",
    "apply_policy",
    "load_policy",
    "match_resources",
    "policy_namespace_name",
]

NONE = "None"
K = TypeVar("K")
V = TypeVar("V")
_TARGET_CACHE_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class Attributes:
    """What the policy sees of a request (AS authorizer attributes); ``user`` None = no user."""

    user: str | None = None
    groups: tuple[str, ...] = ()
    verb: str = ""
    resource_request: bool = False
    namespace: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""

    @classmethod
    def from_event(cls, event: Event) -> Attributes:
        """The attributes the API server evaluated when it recorded ``event`` (see P-notes)."""
        user = event.user
        username: str | None = user.username
        if not username and not user.groups:
            username = None  # a request that failed authentication has no user
        ref = event.objectRef
        if ref is None:
            return cls(
                username, tuple(user.groups), event.verb, False, path=_path_of(event.requestURI)
            )
        namespace, name = policy_namespace_name(event)
        return cls(
            username,
            tuple(user.groups),
            event.verb,
            True,
            namespace,
            ref.apiGroup,
            ref.resource,
            ref.subresource,
            name,
            _path_of(event.requestURI),
        )


# One candidate rule for a given target: what is left to check, then the decision.
_Candidate = tuple[
    "frozenset[str] | None",  # users
    "frozenset[str] | None",  # userGroups
    "frozenset[str] | None",  # verbs
    "frozenset[str] | None",  # namespaces
    "frozenset[str] | None",  # resourceNames (None: any name)
    Decision,
]


class Policy:
    """A loaded, compiled audit policy: ``evaluate(attrs)`` and ``evaluate_event(event)``."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self.rules = spec.rules
        policy_stages = frozenset(spec.omit_stages)
        self.default = Decision(NONE, policy_stages, spec.omit_managed_fields, None)
        self._compiled = [_CompiledRule(rule, spec) for rule in spec.rules]
        self._resource_targets: dict[tuple[str, str, str], tuple[_Candidate, ...]] = {}
        self._path_targets: dict[str, tuple[_Candidate, ...]] = {}

    @property
    def file(self) -> str:
        return self.spec.file

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return self.spec.warnings

    def evaluate(self, attrs: Attributes) -> Decision:
        """The decision for one request.

        >>> p = load_policy('{"apiVersion":"audit.k8s.io/v1","kind":"Policy",'
        ...                 '"rules":[{"level":"Metadata","verbs":["get"]}]}')
        >>> p.evaluate(Attributes(user="u", verb="get", path="/version")).level
        'Metadata'
        """
        if attrs.resource_request:
            key = (attrs.api_group, attrs.resource, attrs.subresource)
            cands = self._resource_targets.get(key)
            if cands is None:
                cands = self._resource_candidates(*key)
        else:
            cands = self._path_targets.get(attrs.path)
            if cands is None:
                cands = self._path_candidates(attrs.path)
        return self._decide(
            cands, attrs.user, attrs.groups, attrs.verb, attrs.namespace, attrs.name
        )

    def evaluate_event(self, event: Event) -> Decision:
        """The decision for the request ``event`` records (same result as ``evaluate``).

        This is the hot path of ``serve --policy``: it reads the event's fields directly.
        """
        user = event.user
        username: str | None = user.username
        groups = user.groups
        if not username and not groups:
            username = None
        ref = event.objectRef
        if ref is None:
            uri = event.requestURI
            cut = uri.find("?")
            path = uri if cut < 0 else uri[:cut]
            if "%" in path:
                path = unquote(path)
            cands = self._path_targets.get(path)
            if cands is None:
                cands = self._path_candidates(path)
            return self._decide(cands, username, groups, event.verb, "", "")
        key = (ref.apiGroup, ref.resource, ref.subresource)
        cands = self._resource_targets.get(key)
        if cands is None:
            cands = self._resource_candidates(*key)
        verb = event.verb
        if verb == "create" or verb == "deletecollection":
            namespace, name = policy_namespace_name(event)
        else:
            namespace, name = ref.namespace, ref.name
        return self._decide(cands, username, groups, verb, namespace, name)

    def _decide(
        self,
        cands: tuple[_Candidate, ...],
        user: str | None,
        groups: Iterable[str],
        verb: str,
        namespace: str,
        name: str,
    ) -> Decision:
        for users, ugroups, verbs, namespaces, names, decision in cands:
            if users is not None and user not in users:
                continue
            if ugroups is not None and ugroups.isdisjoint(groups):
                continue
            if verbs is not None and verb not in verbs:
                continue
            if namespaces is not None and namespace not in namespaces:
                continue
            if names is not None and name not in names:
                continue
            return decision
        return self.default  # 3: no rule matched

    def _resource_candidates(self, group: str, resource: str, sub: str) -> tuple[_Candidate, ...]:
        cands = tuple(
            c
            for rule in self._compiled
            if (c := rule.for_resource(group, resource, sub)) is not None
        )
        _remember(self._resource_targets, (group, resource, sub), cands)
        return cands

    def _path_candidates(self, path: str) -> tuple[_Candidate, ...]:
        cands = tuple(c for rule in self._compiled if (c := rule.for_path(path)) is not None)
        _remember(self._path_targets, path, cands)
        return cands


def _remember(cache: dict[K, V], key: K, value: V) -> None:
    # Targets come from request URLs, so a client can invent endless ones: bound the cache.
    if len(cache) >= _TARGET_CACHE_LIMIT:
        cache.clear()
    cache[key] = value


class _CompiledRule:
    """One rule with its selectors as sets; ``for_resource``/``for_path`` pre-match targets."""

    def __init__(self, rule: RuleSpec, spec: PolicySpec) -> None:
        omit_managed = spec.omit_managed_fields
        if rule.omit_managed_fields is not None:
            omit_managed = rule.omit_managed_fields
        self.decision = Decision(
            rule.level,
            frozenset(spec.omit_stages) | frozenset(rule.omit_stages),
            omit_managed,
            rule.index,
        )
        self.users = frozenset(rule.users) or None
        self.groups = frozenset(rule.user_groups) or None
        self.verbs = frozenset(rule.verbs) or None
        self.namespaces = frozenset(rule.namespaces) if rule.namespaces else None
        self.is_resource_rule = bool(rule.namespaces or rule.resources)
        self.resources = rule.resources
        urls = rule.non_resource_urls
        self.is_url_rule = not self.is_resource_rule and bool(urls)
        self.url_any = "*" in urls
        self.url_exact = frozenset(u for u in urls if not u.endswith("*"))
        # "/healthz*" is a plain string prefix: it matches "/healthzfoo" too (checker.go).
        self.url_prefixes = tuple(u.rstrip("*") for u in urls if u.endswith("*") and u != "*")

    def for_resource(self, group: str, resource: str, sub: str) -> _Candidate | None:
        """What remains to check for a resource request to this target, None if it can't match."""
        if self.is_url_rule:
            return None  # 9: a non-resource rule never matches a resource request
        names: frozenset[str] | None = None
        if self.resources:
            matched = match_resources(self.resources, group, resource, sub)
            if matched is False:
                return None
            names = matched if matched is not True else None
        return (self.users, self.groups, self.verbs, self.namespaces, names, self.decision)

    def for_path(self, path: str) -> _Candidate | None:
        """What remains to check for a non-resource request to ``path``, None if it can't match."""
        if self.is_resource_rule:
            return None  # 8a
        if self.is_url_rule and not (
            self.url_any or path in self.url_exact or path.startswith(self.url_prefixes)
        ):
            return None
        return (self.users, self.groups, self.verbs, None, None, self.decision)


def match_resources(
    entries: Iterable[GroupResources], group: str, resource: str, sub: str
) -> bool | frozenset[str]:
    """Does a ``resources`` list match this target? True, False, or the names it is limited to.

    >>> match_resources([GroupResources("", ("pods/*",))], "", "pods", "")
    True
    >>> match_resources([GroupResources("", ("*/*",))], "", "pods", "log")
    False
    >>> sorted(match_resources([GroupResources("", ("configmaps",), ("a",))], "", "configmaps", ""))
    ['a']
    """
    combined = f"{resource}/{sub}" if sub else resource
    names: set[str] = set()
    for gr in entries:
        if gr.group != group and gr.group != "*":
            continue
        if not gr.resources:
            return True
        if any(_resource_matches(res, combined, resource, sub) for res in gr.resources):
            if not gr.resource_names:
                return True
            names.update(gr.resource_names)
    return frozenset(names) if names else False


def _resource_matches(res: str, combined: str, resource: str, sub: str) -> bool:
    """One ``resources`` string against a request (8d).

    >>> _resource_matches("*/status", "deployments/status", "deployments", "status")
    True
    """
    if res == combined or res == "*":
        return True
    if sub and res.startswith("*/") and res[2:] == sub:
        return True
    # "pods/*" matches "pods" itself too, contrary to the API doc comment (checker.go).
    return res.endswith("/*") and res[:-2] == resource


def apply_policy(policy: Policy, item: Item) -> Item | None:
    """The item as ``policy`` would have recorded it, or None when the policy drops it.

    Drops level None and omitted stages, lowers the level (stripping the bodies it would not
    have had) and removes managedFields; returns ``item`` itself, not re-encoded, when nothing
    changes. This is what ``serve --policy`` runs on every event.
    """
    return apply_decision(policy.evaluate_event(item.event), item)


def policy_namespace_name(event: Event) -> tuple[str, str]:
    """The namespace and name the policy saw, which for ``create`` differ from ``objectRef``.

    The API server fills ``objectRef.name``/``namespace`` from the request body after the policy
    ran (AS ``pkg/audit/request.go`` LogRequestObject, only when the URL gave none), so for a
    create we read them from the URL again. Lists with ``fieldSelector=metadata.name=x`` already
    carry ``x`` in ``objectRef.name``, as the policy saw it; list and deletecollection never
    get a name from a body.

    >>> from auditsink.model import Event, ObjectReference
    >>> ev = Event("Metadata", "a", "ResponseComplete", requestURI="/api/v1/namespaces/d/pods",
    ...            verb="create", objectRef=ObjectReference("pods", "d", "web"))
    >>> policy_namespace_name(ev)
    ('d', '')
    """
    ref = event.objectRef
    if ref is None:
        return "", ""
    if event.verb == "deletecollection":
        return ref.namespace, ""  # no name in the URL is what makes a delete a deletecollection
    if event.verb != "create":
        return ref.namespace, ref.name
    if not event.requestURI:
        # No URL to read: a create of a subresource names its object, a plain create does not.
        return ref.namespace, ref.name if ref.subresource else ""
    return _url_namespace_name(_path_of(event.requestURI))


def _url_namespace_name(path: str) -> tuple[str, str]:
    """Namespace and name from a resource URL, as RequestInfoFactory parses them.

    >>> _url_namespace_name("/apis/apps/v1/namespaces/d/deployments/web/scale")
    ('d', 'web')
    >>> _url_namespace_name("/api/v1/namespaces/d")
    ('d', 'd')
    """
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return "", ""
    parts = parts[2:] if parts[0] == "api" else parts[3:]  # drop prefix, group and version
    if parts and parts[0] in ("watch", "proxy"):
        parts = parts[1:]
    namespace = ""
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in ("status", "finalize"):
            parts = parts[2:]
    return namespace, parts[1] if len(parts) > 1 else ""


def _path_of(uri: str) -> str:
    path = uri.partition("?")[0]
    return unquote(path) if "%" in path else path


def load_policy(source: str | bytes | os.PathLike[str], *, file: str | None = None) -> Policy:
    """Load, validate and compile a policy from a file path or from YAML/JSON text.

    A ``str`` that contains a newline or starts with ``{`` is text; any other ``str`` is a path.
    Raises :class:`PolicyError` (with file:line messages) when the policy is invalid.
    """
    if isinstance(source, (bytes, bytearray)):
        text: str | bytes = bytes(source)
        name = file or "<policy>"
    elif isinstance(source, os.PathLike) or (
        "\n" not in source and not source.lstrip().startswith("{")
    ):
        name = file or os.fspath(source)
        text = Path(source).read_bytes()
    else:
        text, name = source, file or "<policy>"
    spec, problems = parse_policy(text, name)
    if spec is None:
        raise PolicyError(problems)
    return Policy(spec)
