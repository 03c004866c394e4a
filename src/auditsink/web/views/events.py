"""Events explorer: the selector's filters as a form and a query string, newest first."""

from __future__ import annotations

from typing import Any

from auditsink.selector import from_query as selector_from_query
from auditsink.store.base import Store
from auditsink.web import urls
from auditsink.web.views._common import Query, event_row, first, int_param

# The form's fields, in the order shown; each is also a query parameter of the read API.
FIELDS = ("user", "group", "verb", "resource", "namespace", "name", "stage", "level", "code",
          "cluster", "since", "until")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def view(store: Store, query: Query) -> dict[str, Any]:
    """One page of matching events; ``before=`` pages back, ``after=`` gets newer (follow)."""
    selector = selector_from_query(query)
    limit = int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT) or DEFAULT_LIMIT
    before = int_param(query, "before", 0, 2**62) or None
    after = int_param(query, "after", 0, 2**62)
    found = store.query(selector, limit=limit, before_id=before, after_id=after)
    rows = [event_row(e) for e in found]
    filters = {f: query.get(f, []) for f in FIELDS}
    more = len(found) == limit
    next_cursor = str(found[-1].id) if more else None
    return {
        "title": "Events",
        "filters": filters,
        "limit": limit,
        "events": rows,
        "next": next_cursor,
        # Follow mode asks for events after the newest one shown (or after its own cursor).
        "newest": max((r["id"] for r in rows), default=after),
        "next_url": urls.events_url(**filters, limit=first(query, "limit") or None,
                                    before=next_cursor) if next_cursor else None,
        "first_url": urls.events_url(**filters, limit=first(query, "limit") or None)
        if before else None,
    }
