"""A :class:`~auditsink.selector.Selector` as a SQL condition: the SQL twin of
``selector.compile_predicate``, kind by kind (see ``selector.Kind``).

Stores keep repeated strings in a dictionary table (``strings``), so names are resolved to ids
first (:class:`Resolver`); a value the store has never seen matches nothing. A field over two
columns (``user``: the authenticated or the impersonated user) becomes two *branches*: a page
in time order reads each through its own index and merges them (reads.py), since one ``OR``
would make the database sort every match.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from auditsink.model import LEVEL_RANK, STAGES
from auditsink.selector import (
    DECISIONS,
    Field,
    Selector,
    bounded,
    code_ranges,
    networks,
    validate,
)
from auditsink.store._rows import NOBODY
from auditsink.store.sql.dialect import Dialect, prefix_params

STAGE_INDEX = {name: index for index, name in enumerate(STAGES)}
# decision column: 0 no annotation, then DECISIONS in order.
DECISION_INDEX = {name: index + 1 for index, name in enumerate(DECISIONS)}
# Stages that stand for a whole request: its completion, a panic, and a ResponseStarted that
# failed (a request refused at authentication yields only that one event).
REQUESTS_ONLY = "(stage IN (2, 3) OR (stage = 1 AND code >= 400))"


class Resolver(Protocol):
    """What the condition builder asks of a store: names to dictionary ids."""

    def _resolve(self, values: Sequence[str]) -> list[int]: ...

    def _resolve_groups(self, groups: Sequence[str]) -> list[int]: ...

    def _resolve_ips(self) -> list[tuple[int, str]]: ...


@dataclass
class Where:
    """A condition, and the same as alternatives whose union it is (at least one)."""

    sql: str
    params: list[object]
    branches: list[tuple[str, list[object]]] = field(default_factory=list)

    def and_(self, clause: str, *params: object) -> Where:
        """This condition with one more clause on every branch."""
        extra = list(params)
        return Where(f"{self.sql} AND {clause}", [*self.params, *extra],
                     [(f"{sql} AND {clause}", [*p, *extra]) for sql, p in self.branches])


class _Builder:
    def __init__(self, dialect: Dialect, resolver: Resolver,
                 audit_id: Callable[[str], object], object_lookup: bool = True) -> None:
        self.d = dialect
        self.r = resolver
        self.audit_id = audit_id
        self.object_lookup = object_lookup

    def in_(self, column: str, values: Sequence[object], params: list[object]) -> str:
        if not values:
            return "FALSE"
        params.extend(values)
        if len(values) == 1:
            return f"{column} = {self.d.mark}"
        return f"{column} IN ({self.d.marks(len(values))})"

    def clause(self, spec: Field, values: list[str], params: list[object]) -> str:
        """One field's condition (the ``either`` kind: both columns OR'd)."""
        kind, column = spec.kind, spec.column
        if kind != "resource":  # stored values are bounded; resource bounds each part
            values = [bounded(v) for v in values]
        if kind == "either":
            sides = self.either(spec, values)
            for _, own in sides:
                params.extend(own)
            return "(" + " OR ".join(sql for sql, _ in sides) + ")"
        if kind == "exact":
            assert isinstance(column, str)
            if column == "name":
                # A store may look names up its own way (SQLite: store/sqlite/objects.py).
                lookup = getattr(self.r, "_name_condition", None)
                if lookup is not None and self.object_lookup and values and "" not in values:
                    return str(lookup(values, params))
                clause = self.in_("name", values, params)
                # Said outright, so that a partial object index (name <> '') applies.
                return f"({clause} AND name <> '')" if "" not in values else clause
            if column == "audit_id":
                stored = [self.audit_id(v) for v in values]
                # A store may look auditIDs up its own way (SQLite: store/sqlite/audit_ids.py)
                lookup = getattr(self.r, "_audit_id_condition", None)
                if lookup is None or not stored:
                    return self.in_("audit_id", stored, params)
                return str(lookup(stored, params))
            if column == "impersonated_user":  # "" is nobody: 0, not the id of ""
                ids = self.r._resolve([v for v in values if v])
                return self.in_(column, ids + [NOBODY] * ("" in values), params)
            return self.in_(_quoted(column), self.r._resolve(values), params)
        if kind == "groups":
            return self.in_("groups", self.r._resolve_groups(values), params)
        if kind == "resource":
            return self.resource(values, params)
        if kind == "code":
            alternatives = []
            for low, high in code_ranges(values):
                if low == high:
                    alternatives.append(f"code = {self.d.mark}")
                    params.append(low)
                else:
                    alternatives.append(f"code BETWEEN {self.d.mark} AND {self.d.mark}")
                    params.extend((low, high))
            return "(" + " OR ".join(alternatives) + ")"
        if kind == "enum":
            index = {"stage": STAGE_INDEX, "level": LEVEL_RANK, "decision": DECISION_INDEX}[
                str(column)]
            return self.in_(str(column), sorted({index[v] for v in values}), params)
        if kind == "cidr":
            nets = networks(values)
            ids = []
            for ident, text in self.r._resolve_ips():
                try:
                    address = ipaddress.ip_address(text)
                except ValueError:
                    continue
                if any(address in net for net in nets):
                    ids.append(ident)
            return self.in_(str(column), ids, params)
        if kind == "substring":
            alternatives = []
            for value in values:
                params.append(value)
                alternatives.append(self.d.contains)
            return (f"{column} IN (SELECT id FROM strings WHERE "
                    + " OR ".join(alternatives) + ")")
        if kind == "prefix":
            alternatives = []
            for value in values:
                params.extend(prefix_params(self.d, value))
                alternatives.append(self.d.starts_with)
            return (f"{column} IN (SELECT id FROM strings WHERE "
                    + " OR ".join(alternatives) + ")")
        raise AssertionError(f"no SQL for field kind {kind!r}")

    def either(self, spec: Field, values: list[str]) -> list[tuple[str, list[object]]]:
        """``user``: one (clause, parameters) per column. The impersonated side also says
        ``<> 0`` (0: no impersonation), which is what lets its partial index apply."""
        ids = self.r._resolve([bounded(v) for v in values])
        out: list[tuple[str, list[object]]] = []
        for column in spec.column:
            own: list[object] = []
            clause = self.in_(_quoted(column), ids, own)
            if column == "impersonated_user" and ids:
                clause = f"({clause} AND impersonated_user <> 0)"
            out.append((clause, own))
        return out

    def resource(self, resources: Sequence[str], params: list[object]) -> str:
        """``pods`` matches pods without a subresource, ``pods/exec`` exactly, ``pods/*`` any."""
        mark = self.d.mark
        alternatives = []
        for spec in resources:
            resource, _, sub = spec.partition("/")
            resource, sub = bounded(resource), bounded(sub)
            ids = self.r._resolve([resource])
            if not ids or not resource:
                continue
            if sub == "*":
                alternatives.append(f"resource = {mark}")
                params.append(ids[0])
                continue
            sub_ids = self.r._resolve([sub])
            if not sub_ids:
                continue
            params.extend((ids[0], sub_ids[0]))
            alternatives.append(f"(resource = {mark} AND subresource = {mark})")
        return "(" + " OR ".join(alternatives) + ")" if alternatives else "FALSE"


def _quoted(column: str) -> str:
    # Quoted: a bare USER is current_user in PostgreSQL (SQLite reads it quoted too).
    return '"user"' if column == "user" else column


def build_where(selector: Selector, dialect: Dialect, resolver: Resolver,
                audit_id: Callable[[str], object] = str, object_lookup: bool = True) -> Where:
    """The condition for ``selector``; ``audit_id`` turns an auditID into its stored form;
    ``object_lookup`` False: names as a plain condition on the row, for a read that finds
    the candidates through the store's object lookup itself (a page, reads.py).

    >>> class R:
    ...     def _resolve(self, v): return [7]
    ...     def _resolve_groups(self, g): return []
    ...     def _resolve_ips(self): return []
    >>> from auditsink.store.sql.dialect import SQLITE
    >>> w = build_where(Selector(verbs=["create"], codes=["4xx"]), SQLITE, R())
    >>> w.sql, w.params
    ('verb = ? AND (code BETWEEN ? AND ?)', [7, 400, 499])
    """
    validate(selector)
    b = _Builder(dialect, resolver, audit_id, object_lookup)
    params: list[object] = []
    clauses: list[str] = []
    forks: list[list[tuple[str, list[object]]]] = []
    for spec, values in selector.given():
        if spec.kind == "either":
            forks.append(b.either(spec, values))
        else:
            clauses.append(b.clause(spec, values, params))
    if selector.exclude is not None:
        # A name excluded is tested on the row: a lookup would gather every match to skip.
        plain = _Builder(dialect, resolver, audit_id, object_lookup=False)
        for spec, values in selector.exclude.given():
            clauses.append(f"NOT {plain.clause(spec, values, params)}")
    for op, value in ((">=", selector.since), ("<", selector.until)):
        if value is not None:
            clauses.append(f"time {op} {dialect.mark}")
            params.append(value)
    common = " AND ".join(clauses) or "TRUE"
    # The branches: every combination of one alternative per forked field.
    branches: list[tuple[list[str], list[object]]] = [([], [])]
    for alternatives in forks:
        branches = [([*sqls, alt], [*ps, *own]) for sqls, ps in branches
                    for alt, own in alternatives]
    if not forks:
        return Where(common, params, [(common, list(params))])
    out = [(" AND ".join([*sqls, common]), [*ps, *params]) for sqls, ps in branches]
    whole = " AND ".join(["(" + " OR ".join(sql for sql, _ in alts) + ")" for alts in forks]
                         + [common])
    whole_params = [p for alts in forks for _, own in alts for p in own]
    return Where(whole, [*whole_params, *params], out)
