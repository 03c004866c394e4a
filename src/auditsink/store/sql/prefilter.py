"""Row filters (``store.base.RowFilter``) as one SQL condition over the events table.

The rules consumer reads every event, but a cluster's events are mostly reads and status
updates that no rule wants: the filters, one per rule and burst detector, say which rows may
matter, and SQLite or PostgreSQL check them row by row in C. Only the rest is fetched,
decompressed and decoded (issue 16: the rules used as much CPU as the ingest writer).

Strings are compared through the dictionary (``verb IN (SELECT id FROM strings WHERE value IN
(...))``), so a value first stored after the condition was built is still found.
"""

from __future__ import annotations

from functools import lru_cache

from auditsink.store.base import RowFilter
from auditsink.store.sql.dialect import Dialect
from auditsink.store.sql.where import STAGE_INDEX

_NAMED = (("verbs", "verb"), ("resources", "resource"), ("subresources", "subresource"),
          ("namespaces", "namespace"), ("users", '"user"'))


def prefilter_sql(dialect: Dialect,
                  filters: tuple[RowFilter, ...]) -> tuple[str, tuple[object, ...]]:
    """``(condition, params)``: an event row passes when it passes one of ``filters``."""
    return _compiled(dialect, filters)


@lru_cache(maxsize=16)
def _compiled(dialect: Dialect,
              filters: tuple[RowFilter, ...]) -> tuple[str, tuple[object, ...]]:
    if any(f.unconstrained for f in filters):
        return "1 = 1", ()
    terms: list[str] = []
    params: list[object] = []
    for each in sorted(set(filters), key=repr):  # the same condition whatever the rule order
        parts: list[str] = []
        if each.stages is not None:
            stages = sorted(STAGE_INDEX[s] for s in each.stages if s in STAGE_INDEX)
            if not stages:
                continue  # no stored event has any of these stages
            parts.append(f"stage IN ({', '.join(map(str, stages))})")
        named = [(column, sorted(getattr(each, field))) for field, column in _NAMED
                 if getattr(each, field) is not None]
        if any(not values for _, values in named):
            continue  # it requires one of no values: nothing passes it
        for column, values in named:
            parts.append(f"{column} IN (SELECT id FROM strings WHERE value IN"
                         f" ({dialect.marks(len(values))}))")
        if each.impersonated:
            parts.append("impersonated_user <> 0")
        if each.codes is not None:
            parts.append(f"code BETWEEN {dialect.mark} AND {dialect.mark}")
        terms.append("(" + " AND ".join(parts) + ")")
        params.extend(value for _, values in named for value in values)
        params.extend(each.codes or ())
    if not terms:
        return "1 = 0", ()
    return "(" + " OR ".join(terms) + ")", tuple(params)
