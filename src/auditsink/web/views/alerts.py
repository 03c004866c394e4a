"""Alerts: what the detection rules raised, newest first, each linked to its request."""

from __future__ import annotations

from typing import Any

from auditsink.query.params import alert_selector_from_query
from auditsink.rules.priority import PRIORITIES
from auditsink.store.base import Store
from auditsink.web import urls
from auditsink.web.views._common import Query, alert_row, first, int_param

FIELDS = ("rule", "priority", "cluster", "since", "until")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def view(store: Store, query: Query) -> dict[str, Any]:
    """One page of matching alerts with a ``before=`` cursor, and counts per priority."""
    selector = alert_selector_from_query(query)
    limit = int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT) or DEFAULT_LIMIT
    before = int_param(query, "before", 0, 2**62) or None
    found = store.alerts(selector, limit=limit, before_id=before)
    more = len(found) == limit
    filters = {f: query.get(f, []) for f in FIELDS}
    next_cursor = str(found[-1].id) if more else None
    return {
        "title": "Alerts",
        "filters": filters,
        "priorities": list(PRIORITIES),
        "counts": {PRIORITIES[p]: n for p, n in sorted(store.alert_counts(selector).items())},
        "alerts": [alert_row(a) for a in found],
        "next": next_cursor,
        "next_url": "/ui/alerts" + urls.query_string({**filters, "before": next_cursor,
                                                      "limit": first(query, "limit")})
        if next_cursor else None,
    }
