"""Granted against used: for each binding subject, what it holds and never used in a window.

A granted rule is broken down into atoms (one verb, group, resource and name each; a ``*``
stays one atom); an atom is used when some request of the subject in the window falls under
it, in the binding's scope. Overlapping grants are all "used" by a request they each allow:
the question is what could go, not which binding the authorizer happened to visit first.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from auditsink.rbac._text import one_line
from auditsink.rbac.authorize import Grant, Rule
from auditsink.rbac.compact import Atom, UrlAtom, resource_rules, url_rules
from auditsink.rbac.granted import Snapshot
from auditsink.rbac.identity import Identity
from auditsink.rbac.request import Observed, Request

Scope = str | None  # a namespace, or None for every namespace and the cluster


@dataclass
class SubjectDiff:
    """One subject's grants, what of them the window used, and what it was denied."""

    identity: Identity
    bindings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    granted: int = 0
    used: int = 0
    requests: int = 0
    wildcards: list[tuple[Scope, str, Rule]] = field(default_factory=list)
    unused: list[tuple[Scope, str, Rule]] = field(default_factory=list)
    denied: list[Request] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Used over granted atoms (0 when nothing is granted)."""
        return self.used / self.granted if self.granted else 0.0

    def to_dict(self) -> dict[str, object]:
        """The ``--format json`` form."""
        def rows(entries: list[tuple[Scope, str, Rule]]) -> list[dict[str, object]]:
            return [{"namespace": scope, "via": via, "rule": rule.to_dict()}
                    for scope, via, rule in entries]

        return {
            "subject": self.identity.subject(), "bindings": self.bindings,
            "missing_roles": self.missing, "granted": self.granted, "used": self.used,
            "ratio": round(self.ratio, 4), "requests": self.requests,
            "wildcards": rows(self.wildcards), "unused": rows(self.unused),
            "denied": [str(r) for r in self.denied],
        }


def _atoms(rule: Rule) -> list[Atom | UrlAtom]:
    out: list[Atom | UrlAtom] = [UrlAtom(url, verb) for url in rule.non_resource_urls
                                 for verb in rule.verbs]
    names = rule.resource_names or ("",)
    out.extend(Atom(group, resource, name, verb) for group in rule.api_groups
               for resource in rule.resources for name in names for verb in rule.verbs)
    return out


def _as_grant(atom: Atom | UrlAtom, scope: Scope) -> Grant:
    if isinstance(atom, UrlAtom):
        return Grant(Rule((atom.verb,), non_resource_urls=(atom.path,)), scope)
    names = (atom.name,) if atom.name else ()
    return Grant(Rule((atom.verb,), (atom.api_group,), (atom.resource,), names), scope)


def diff_subject(identity: Identity, snapshot: Snapshot,
                 observed: Observed | None) -> SubjectDiff:
    """What ``identity`` was granted in ``snapshot`` and did not use in ``observed``."""
    result = SubjectDiff(identity)
    grants, result.missing = snapshot.grants_for(identity)
    result.bindings = sorted({g.via for g in grants})
    requests = observed.used() if observed is not None else []
    result.requests = len(observed.calls) if observed is not None else 0
    if observed is not None:
        result.denied = sorted(r for r, seen in observed.requests.items()
                               if "denied" in seen and "allowed" not in seen)

    # Each atom once per (scope, via): the same permission through two bindings is two grants.
    unused: dict[tuple[Scope, str], set[Atom | UrlAtom]] = defaultdict(set)
    seen: set[tuple[Scope, str, Atom | UrlAtom]] = set()
    for grant in grants:
        if grant.rule.has_wildcard:
            result.wildcards.append((grant.namespace, grant.via, grant.rule))
        for atom in _atoms(grant.rule):
            key = (grant.namespace, grant.via, atom)
            if key in seen:
                continue
            seen.add(key)
            result.granted += 1
            check = _as_grant(atom, grant.namespace)
            if any(check.allows(r) for r in requests):
                result.used += 1
            else:
                unused[(grant.namespace, grant.via)].add(atom)
    for (scope, via), atoms in sorted(unused.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        rules = resource_rules(a for a in atoms if isinstance(a, Atom))
        rules += url_rules(a for a in atoms if isinstance(a, UrlAtom))
        result.unused.extend((scope, via, rule) for rule in rules)
    return result


def describe(rule: Rule) -> str:
    """A rule on one line.

    >>> describe(Rule(("get", "list"), ("apps",), ("deployments",), ("web",)))
    'get,list deployments.apps [web]'
    >>> describe(Rule(("get",), non_resource_urls=("/metrics",)))
    'get /metrics'
    >>> describe(Rule(("*",), non_resource_urls=("*",)))
    '* URLs *'
    """
    verbs = ",".join(rule.verbs)
    if rule.non_resource_urls:
        urls = ",".join(rule.non_resource_urls)
        # "* *" would read as every resource: say it is URLs when one is not a path.
        what = urls if all(u.startswith("/") for u in rule.non_resource_urls) else f"URLs {urls}"
        return f"{verbs} {what}"
    what = ",".join(f"{r}.{g}" if g else r for g in rule.api_groups for r in rule.resources)
    names = f" [{','.join(rule.resource_names)}]" if rule.resource_names else ""
    return f"{verbs} {what}{names}"


def render_text(diffs: list[SubjectDiff]) -> str:
    """The report for people, one block per subject."""
    lines: list[str] = []
    for d in diffs:
        lines.append(f"{d.identity.label()}: used {d.used} of {d.granted} granted permissions "
                     f"({d.ratio:.0%}) in {d.requests} requests")
        lines.extend(f"  via {b}" for b in d.bindings)
        lines.extend(f"  binding without its role: {m}" for m in d.missing)
        if d.wildcards:
            lines.append("  wildcards:")
            lines.extend(f"    {_scope(s)}  {describe(r)}  ({via})" for s, via, r in d.wildcards)
        if d.unused:
            lines.append("  granted, never used:")
            lines.extend(f"    {_scope(s)}  {describe(r)}  ({via})" for s, via, r in d.unused)
        if d.denied:
            lines.append("  denied (missing grants):")
            lines.extend(f"    {r}" for r in d.denied)
        lines.append("")
    return "\n".join(one_line(line) for line in lines)


def _scope(scope: Scope) -> str:
    return f"in {scope}" if scope is not None else "everywhere"
