"""Alerts: what the rules raised, grouped by rule (most severe first), then each in time order."""

from __future__ import annotations

from typing import Any

from auditsink.query.params import first, key_from
from auditsink.priority import PRIORITIES, RANK, parse_priority
from auditsink.selector import Selector
from auditsink.store.base import AlertSelector, Store
from auditsink.web import urls
from auditsink.web.views._common import Query, cluster_choice, clusters_of, int_param
from auditsink.web.views._range import range_params, time_range
from auditsink.web.views._rows import alert_row, carries_cluster, group_row

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_GROUPS = 100


def selector_of(query: Query) -> AlertSelector:
    """``rule`` (repeatable), ``priority`` (at least this severe) and ``cluster`` (no times).

    >>> selector_of({"priority": ["warning"], "cluster": ['""']}).clusters
    ['']
    """
    selector = AlertSelector(rules=list(query.get("rule", [])), clusters=clusters_of(query))
    if first(query, "priority"):
        selector.min_priority = RANK[parse_priority(first(query, "priority"))]
    return selector


def view(store: Store, query: Query) -> dict[str, Any]:
    """The groups of matching alerts, and one page of them newest first by time."""
    selector = selector_of(query)
    # Alerts are few: the whole store unless a range is asked for.
    span = time_range(store, query, Selector(clusters=selector.clusters), default="all")
    selector.since, selector.until = span["since_us"], span["until_us"]
    limit = int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    before = key_from(query, "before")
    found = store.alert_page(selector, limit + 1, before=before)
    more, found = len(found) > limit, found[:limit]
    carry = carries_cluster(store)
    rows = [alert_row(a, carry) for a in found]
    filters = {"rule": selector.rules,
               "priority": PRIORITIES[selector.min_priority]
               if selector.min_priority is not None else "",
               "cluster": [urls.spell(c) for c in selector.clusters]}
    here = {**filters, **range_params(span)}

    def link(**params: Any) -> str:
        return urls.alerts_url(**{**here, **params})

    return {
        "title": "Alerts",
        **cluster_choice(store, selector.clusters),
        "filters": filters,
        "range": span,
        "priorities": list(PRIORITIES),
        "counts": {PRIORITIES[p]: n for p, n in sorted(store.alert_counts(selector).items())},
        "count_urls": {p: link(priority=p) for p in PRIORITIES},
        "groups": [group_row(g, link, carry) for g in store.alert_groups(selector, MAX_GROUPS)],
        "alerts": rows,
        "next": rows[-1]["key"] if more else None,
        "older_url": link(before=rows[-1]["key"], limit=first(query, "limit") or None)
        if more else None,
        "newest_url": link(limit=first(query, "limit") or None) if before else None,
        "clear_url": urls.alerts_url(cluster=filters["cluster"] or None),
        # What the time picker carries: every filter but the range.
        "keep_filters": [("cluster", c) for c in filters["cluster"]]
        + [("rule", r) for r in selector.rules]
        + ([("priority", filters["priority"])] if filters["priority"] else []),
    }
