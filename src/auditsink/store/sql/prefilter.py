"""Row filters (``store.base.RowFilter``) as one SQL condition over the events table.

The rules consumer reads every event, but a cluster's events are mostly reads and status
updates that no rule wants: the filters, one per rule and burst detector, say which rows may
matter, and SQLite or PostgreSQL check them row by row in C. Only the rest is fetched,
decompressed and decoded (issue 16: the rules used as much CPU as the ingest writer).

Two things keep that check cheap (benchmarks/README, "The rules' prefilter as a tree"):

- The condition is a small decision tree, not one ``OR`` of every filter: a row is sent by
  its stage, then by its verb, to the few filters that name both. In a flat ``OR`` of the
  default rules' 21 filters, each row no rule wants (most rows) was tested against all 21.
- Strings are compared by their dictionary ids, written into the SQL as integers. The
  caller looks them up (:func:`wanted`) for each page, after it has fixed the page's last
  row: every string a row of the page refers to was stored with it or before, so a value
  first stored after the rules were loaded is still found. Subqueries on the strings table,
  one per list of values, cost more to set up for each page of 1,000 rows than the rows
  cost to test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

from auditsink.store.base import RowFilter
from auditsink.store.sql.where import STAGE_INDEX

# The string columns a filter may constrain, by RowFilter field.
_NAMED = (("verbs", "verb"), ("resources", "resource"), ("subresources", "subresource"),
          ("namespaces", "namespace"), ("users", '"user"'))
_NEVER = "FALSE"
_ALWAYS = "TRUE"


@lru_cache(maxsize=16)
def wanted(filters: tuple[RowFilter, ...]) -> tuple[str, ...]:
    """Every string value ``filters`` compare a column with: the ids to look up."""
    return tuple(sorted({value for each in filters for field, _ in _NAMED
                         for value in getattr(each, field) or ()}))


def prefilter_sql(filters: tuple[RowFilter, ...], ids: Mapping[str, int]) -> str:
    """The condition an event row passes when it passes one of ``filters``; ``ids`` are the
    string ids of the values of :func:`wanted` that are stored (a missing one matches no
    row)."""
    return _compiled(filters, tuple(sorted(ids.items())))


@lru_cache(maxsize=16)
def _compiled(filters: tuple[RowFilter, ...], ids: tuple[tuple[str, int], ...]) -> str:
    if any(f.unconstrained for f in filters):
        return "1 = 1"
    known = dict(ids)
    anywhere: list[RowFilter] = []
    by_stage: dict[int, list[RowFilter]] = {}
    for each in sorted(set(filters), key=repr):  # the same condition whatever the rule order
        if each.stages is None:
            anywhere.append(each)
        for stage in each.stages or ():
            if stage in STAGE_INDEX:  # no stored event has any other stage
                by_stage.setdefault(STAGE_INDEX[stage], []).append(each._replace(stages=None))
    branches = [(stage, _by_verb(group, known)) for stage, group in sorted(by_stage.items())]
    condition = _any([*_terms(anywhere, known), _case("stage", branches)])
    return "1 = 0" if condition == _NEVER else condition


def _by_verb(filters: list[RowFilter], known: dict[str, int]) -> str:
    """The filters of one stage: those naming no verb, then a branch per stored verb."""
    by_verb: dict[int, list[RowFilter]] = {}
    for each in filters:
        for verb in each.verbs or ():
            if verb in known:  # a verb never stored is no row's
                by_verb.setdefault(known[verb], []).append(each._replace(verbs=None))
    branches = [(verb, _any(_terms(group, known))) for verb, group in sorted(by_verb.items())]
    return _any([*_terms([f for f in filters if f.verbs is None], known),
                 _case("verb", branches)])


def _terms(filters: Iterable[RowFilter], known: dict[str, int]) -> list[str]:
    """Each filter's constraints as one ``AND`` (those of the tree's branches removed)."""
    terms: list[str] = []
    for each in filters:
        parts: list[str] = []
        for field, column in _NAMED:
            values = getattr(each, field)
            if values is not None:
                stored = sorted(known[v] for v in values if v in known)
                if not stored:
                    break  # it requires one of values no row holds: nothing passes it
                parts.append(f"{column} IN ({', '.join(map(str, stored))})")
        else:
            if each.impersonated:
                parts.append("impersonated_user <> 0")
            if each.codes is not None:
                low, high = each.codes
                parts.append(f"code BETWEEN {int(low)} AND {int(high)}")
            terms.append("(" + " AND ".join(parts) + ")" if parts else _ALWAYS)
    return terms


def _case(column: str, branches: list[tuple[int, str]]) -> str:
    """``CASE column WHEN value THEN condition ... ELSE FALSE END``."""
    whens = " ".join(f"WHEN {value} THEN {then}" for value, then in branches if then != _NEVER)
    return f"CASE {column} {whens} ELSE FALSE END" if whens else _NEVER


def _any(terms: list[str]) -> str:
    """The ``OR`` of ``terms``, each once, without those that are always false."""
    terms = [term for term in dict.fromkeys(terms) if term != _NEVER]
    if not terms:
        return _NEVER
    if _ALWAYS in terms:
        return _ALWAYS
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"
