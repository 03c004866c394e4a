"""Find rules that can never match because an earlier rule matches everything they could.

The analysis is conservative: rule B is reported as shadowed by an earlier rule A only when
every selector of A is a superset of B's (users, userGroups, verbs, namespaces, each resources
entry, each nonResourceURL). It never reports a rule that can match, but it can miss a rule
that is shadowed by several earlier rules together.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditsink.admit.spec import GroupResources, PolicySpec, RuleSpec


@dataclass(frozen=True)
class Shadow:
    """Rule ``rule`` can never match: rule ``by`` (earlier) matches all it could."""

    rule: int
    by: int | None
    reason: str


def find_shadowed(spec: PolicySpec) -> list[Shadow]:
    """Every rule shadowed by one earlier rule, or that matches nothing at all.

    >>> from auditsink.admit.spec import RuleSpec
    >>> spec = PolicySpec(rules=(RuleSpec("Metadata", index=0),
    ...                          RuleSpec("None", verbs=("get",), index=1)))
    >>> find_shadowed(spec)[0].by
    0
    """
    found: list[Shadow] = []
    for later in spec.rules:
        if later.resources and all(_matches_nothing(gr) for gr in later.resources):
            found.append(Shadow(later.index, None, 'its resources ("*/*") match no request'))
            continue
        for earlier in spec.rules[: later.index]:
            if covers(earlier, later):
                found.append(
                    Shadow(
                        later.index,
                        earlier.index,
                        f"rule {earlier.index} matches every request it could",
                    )
                )
                break
    return found


def covers(a: RuleSpec, b: RuleSpec) -> bool:
    """Does every request that rule ``b`` matches also match rule ``a``?

    >>> covers(RuleSpec("None", users=("x", "y")),
    ...        RuleSpec("Metadata", users=("x",), verbs=("get",)))
    True
    """
    if not (_list_covers(a.users, b.users) and _list_covers(a.user_groups, b.user_groups)):
        return False
    if not _list_covers(a.verbs, b.verbs):
        return False
    a_resource = bool(a.resources or a.namespaces)
    b_resource = bool(b.resources or b.namespaces)
    if a_resource:
        if not b_resource or not _list_covers(a.namespaces, b.namespaces):
            return False
        if not a.resources:
            return True
        if not b.resources:
            return False  # b matches every resource, a only some
        return all(
            _matches_nothing(gb) or any(_gr_covers(ga, gb) for ga in a.resources)
            for gb in b.resources
        )
    if a.non_resource_urls:
        if b_resource or not b.non_resource_urls:
            return False
        return all(
            any(_url_covers(ua, ub) for ua in a.non_resource_urls) for ub in b.non_resource_urls
        )
    return True  # a is a catch-all on this dimension


def _list_covers(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """An empty selector matches anything; otherwise b must be limited to a subset of a."""
    return not a or (bool(b) and set(b) <= set(a))


def _gr_covers(a: GroupResources, b: GroupResources) -> bool:
    if a.group != "*" and a.group != b.group:
        return False
    if not a.resources:
        return True
    if not b.resources:
        return "*" in a.resources and not a.resource_names
    if a.resource_names and not (
        b.resource_names and set(b.resource_names) <= set(a.resource_names)
    ):
        return False
    return all(any(_res_covers(ra, rb) for ra in a.resources) for rb in b.resources)


def _res_covers(a: str, b: str) -> bool:
    """Does resource pattern ``a`` match every request pattern ``b`` matches?

    >>> _res_covers("pods/*", "pods/log"), _res_covers("pods", "pods/*")
    (True, False)
    """
    if a == "*" or a == b or b == "*/*":
        return True
    resource, _, sub = b.partition("/")
    if a.endswith("/*") and a != "*/*":
        return resource == a[:-2]  # covers "R", "R/x" and "R/*"
    if a.startswith("*/") and a != "*/*":
        return bool(sub) and sub == a[2:] and resource != "*"
    return False


def _matches_nothing(gr: GroupResources) -> bool:
    return bool(gr.resources) and all(r == "*/*" for r in gr.resources)


def _url_covers(a: str, b: str) -> bool:
    """Does nonResourceURL ``a`` match every path ``b`` matches?

    >>> _url_covers("/healthz*", "/healthz/etcd"), _url_covers("/healthz", "/healthz*")
    (True, False)
    """
    if a == "*" or a == b:
        return True
    if b == "*":
        return False
    if a.endswith("*"):
        return b.startswith(a.rstrip("*"))
    return False
