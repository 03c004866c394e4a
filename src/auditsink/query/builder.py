"""Selector -> SQL WHERE clause, shared by every store, the CLI and the HTTP API.

Stores keep repeated strings in a dictionary table, so the builder asks the store to resolve
names to ids (``resolve``); a value the store has never seen matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from auditsink.model import LEVEL_RANK, STAGES
from auditsink.store.base import Selector

Resolve = Callable[[Sequence[str]], list[int]]
ResolveGroups = Callable[[Sequence[str]], list[int]]

STAGE_INDEX = {name: index for index, name in enumerate(STAGES)}
_CODE_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)


class SelectorError(ValueError):
    """A selector value that can never be valid (unknown stage, malformed code)."""


def _in(column: str, values: Sequence[object], params: list[object], mark: str = "?") -> str:
    if len(values) == 1:
        params.append(values[0])
        return f"{column} = {mark}"
    params.extend(values)
    return f"{column} IN ({', '.join([mark] * len(values))})"


def _resource_clause(
    resources: Sequence[str], resolve: Resolve, params: list[object], mark: str = "?"
) -> str:
    """``pods`` matches pods without a subresource, ``pods/exec`` exactly, ``pods/*`` any."""
    alternatives = []
    for spec in resources:
        resource, _, sub = spec.partition("/")
        ids = resolve([resource])
        if not ids:
            continue
        params.append(ids[0])
        if sub == "*":
            alternatives.append(f"resource = {mark}")
            continue
        sub_ids = resolve([sub])
        if not sub_ids:
            params.pop()
            continue
        params.append(sub_ids[0])
        alternatives.append(f"(resource = {mark} AND subresource = {mark})")
    if not alternatives:
        return "FALSE"
    return "(" + " OR ".join(alternatives) + ")"


def _code_clause(codes: Sequence[str], params: list[object], mark: str = "?") -> str:
    alternatives = []
    for code in codes:
        text = str(code).strip()
        match = _CODE_CLASS.match(text)
        if match:
            low = int(match.group(1)) * 100
            params.extend((low, low + 99))
            alternatives.append(f"code BETWEEN {mark} AND {mark}")
        elif text.isdigit():
            params.append(int(text))
            alternatives.append(f"code = {mark}")
        else:
            raise SelectorError(f"invalid code {code!r}: use a status like 403 or a class like 4xx")
    return "(" + " OR ".join(alternatives) + ")"


def build_where(selector: Selector, resolve: Resolve, resolve_groups: ResolveGroups,
                placeholder: str = "?") -> tuple[str, list[object]]:
    """The WHERE clause and parameters for ``selector``; ``placeholder`` is the driver's (``%s``).

    >>> build_where(Selector(verbs=["create"], codes=["4xx"]), lambda v: [7], lambda g: [])
    ('verb = ? AND (code BETWEEN ? AND ?)', [7, 400, 499])
    """
    mark = placeholder
    params: list[object] = []
    clauses: list[str] = []
    for column, values in (
        ('"user"', selector.users),  # quoted: a bare USER is current_user in PostgreSQL
        ("verb", selector.verbs),
        ("api_group", selector.api_groups),
        ("namespace", selector.namespaces),
        ("cluster", selector.clusters),
    ):
        if values:
            ids = resolve(values)
            clauses.append(_in(column, ids, params, mark) if ids else "FALSE")
    if selector.groups:
        ids = resolve_groups(selector.groups)
        clauses.append(_in("groups", ids, params, mark) if ids else "FALSE")
    if selector.resources:
        clauses.append(_resource_clause(selector.resources, resolve, params, mark))
    if selector.names:
        clauses.append(_in("name", list(selector.names), params, mark))
    if selector.audit_ids:
        clauses.append(_in("audit_id", list(selector.audit_ids), params, mark))
    if selector.stages:
        try:
            stages = [STAGE_INDEX[s] for s in selector.stages]
        except KeyError as exc:
            raise SelectorError(f"unknown stage {exc.args[0]!r}: expected one of {', '.join(STAGES)}") from None
        clauses.append(_in("stage", stages, params, mark))
    if selector.levels:
        try:
            levels = [LEVEL_RANK[level] for level in selector.levels]
        except KeyError as exc:
            raise SelectorError(
                f"unknown level {exc.args[0]!r}: expected one of {', '.join(LEVEL_RANK)}"
            ) from None
        clauses.append(_in("level", levels, params, mark))
    if selector.codes:
        clauses.append(_code_clause(selector.codes, params, mark))
    if selector.since is not None:
        params.append(selector.since)
        clauses.append(f"time >= {mark}")
    if selector.until is not None:
        params.append(selector.until)
        clauses.append(f"time < {mark}")
    # TRUE/FALSE rather than 1/0: PostgreSQL wants a boolean (SQLite >= 3.23 reads both).
    return (" AND ".join(clauses) or "TRUE"), params
