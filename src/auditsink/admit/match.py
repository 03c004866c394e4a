"""``--match KEY=VALUE`` filters, compiled once into one predicate over events.

The keys are the audit-policy vocabulary (and the query flags): the same key given twice is
an OR, different keys are an AND.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from auditsink.model import Event

MATCH_KEYS = ("user", "group", "verb", "resource", "apiGroup", "namespace", "name", "stage", "level", "code", "cluster")

Predicate = Callable[[Event, str], bool]


class MatchError(ValueError):
    """A ``--match`` flag that is not KEY=VALUE with a known key."""


def _resource_matches(specs: frozenset[str]) -> Predicate:
    # "pods" is pods without a subresource, "pods/exec" exactly, "pods/*" any pods request.
    any_sub = frozenset(s[:-2] for s in specs if s.endswith("/*"))

    def check(event: Event, cluster: str) -> bool:
        ref = event.objectRef
        if ref is None:
            return False
        return event.resource_path in specs or ref.resource in any_sub

    return check


def _code_matches(specs: frozenset[str]) -> Predicate:
    classes: set[str] = set()
    exact: set[int] = set()
    for spec in specs:
        if len(spec) == 3 and spec[0] in "12345" and spec[1:].lower() == "xx":
            classes.add(spec[0])
        elif spec.isdigit():
            exact.add(int(spec))
        else:
            raise MatchError(f"--match code={spec}: expected a status like 403 or a class like 4xx")

    def check(event: Event, cluster: str) -> bool:
        code = event.code
        return code in exact or (code > 0 and str(code)[0] in classes)

    return check


_FIELD: dict[str, Callable[[Event, str], str]] = {
    "user": lambda e, c: e.user.username,
    "verb": lambda e, c: e.verb,
    "apiGroup": lambda e, c: e.objectRef.apiGroup if e.objectRef else "",
    "namespace": lambda e, c: e.objectRef.namespace if e.objectRef else "",
    "name": lambda e, c: e.objectRef.name if e.objectRef else "",
    "stage": lambda e, c: e.stage,
    "level": lambda e, c: e.level,
    "cluster": lambda e, c: c,
}


def compile_match(flags: Iterable[str]) -> Callable[[Event, str], bool] | None:
    """One predicate for all ``KEY=VALUE`` flags, or None when there are none.

    >>> pred = compile_match(["verb=create", "resource=pods"])
    >>> pred(Event(level="Metadata", auditID="a", stage="ResponseComplete", verb="create"), "")
    False
    """
    wanted: dict[str, set[str]] = {}
    for flag in flags:
        key, sep, value = flag.partition("=")
        if not sep or key not in MATCH_KEYS:
            raise MatchError(
                f"--match {flag!r}: expected KEY=VALUE with KEY one of {', '.join(MATCH_KEYS)}"
            )
        wanted.setdefault(key, set()).add(value)
    if not wanted:
        return None
    checks: list[Predicate] = []
    for key, values in wanted.items():
        frozen = frozenset(values)
        if key == "resource":
            checks.append(_resource_matches(frozen))
        elif key == "code":
            checks.append(_code_matches(frozen))
        elif key == "group":
            checks.append(lambda e, c, f=frozen: not f.isdisjoint(e.user.groups))
        else:
            get = _FIELD[key]
            checks.append(lambda e, c, f=frozen, g=get: g(e, c) in f)

    def predicate(event: Event, cluster: str) -> bool:
        return all(check(event, cluster) for check in checks)

    return predicate
