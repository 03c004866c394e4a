"""What several pages share: query parameters, the time range, and one event as a table row."""

from __future__ import annotations

import json
import time
from typing import Any

from auditsink.store.base import Selector, Store, StoredEvent
from auditsink.timeutil import format_micros, parse_timestamp, parse_when
from auditsink.web import urls

Query = dict[str, list[str]]
HOUR_US = 3600 * 1_000_000
# The range choices offered on the overview and user pages ("all": everything stored).
RANGES = ("15m", "1h", "6h", "24h", "7d", "30d", "all")
# Above this many stored events an old store opens on its newest hour, not on everything: a
# page over a million events cannot answer in 300 ms (docs/ui.md, "Performance").
SMALL_STORE = 200_000


class NotFound(Exception):
    """The page's subject does not exist (answered with 404)."""


def clean(query: Query) -> Query:
    """Drop empty values, which an HTML form sends for every untouched field."""
    kept = {k: [v for v in vs if v.strip()] for k, vs in query.items()}
    return {k: vs for k, vs in kept.items() if vs}


def first(query: Query, key: str, default: str = "") -> str:
    """The first value of a query parameter."""
    values = query.get(key)
    return values[0] if values else default


def int_param(query: Query, key: str, default: int, maximum: int) -> int:
    """A bounded non-negative integer parameter; ValueError (400) when it is not one."""
    text = first(query, key)
    if not text:
        return default
    if not text.isdigit():
        raise ValueError(f"{key}={text!r}: expected a number")
    return min(int(text), maximum)


def time_range(store: Store, query: Query, base: Selector) -> dict[str, Any]:
    """The range a page covers: ``since``/``until``, else ``range=1h|...|all``, else a default.

    The default is the last hour when events arrived in it, else the whole stored range (a
    store filled by ``import`` of old logs would otherwise show nothing), or for a big store
    the newest stored hour.
    """
    now = int(time.time() * 1_000_000)
    choice = first(query, "range")
    if choice and choice not in RANGES:
        raise ValueError(f"range={choice!r}: expected one of {', '.join(RANGES)}")
    since_text, until_text = first(query, "since"), first(query, "until")
    if since_text or until_text:
        choice = ""  # an explicit range wins over the choices
        until = parse_when(until_text) if until_text else now
        since = parse_when(since_text) if since_text else until - HOUR_US
    else:
        bounds = store.time_bounds(base)
        if not choice:
            choice = "1h"
            if bounds is not None and bounds[1] < now - HOUR_US:
                if _stored(store) > SMALL_STORE:
                    # Old data in a big store: its newest hour, not a scan of everything.
                    since, until = bounds[1] + 1 - HOUR_US, bounds[1] + 1
                    return _span(since, until, "")
                choice = "all"
        if choice != "all":
            since, until = parse_when(choice), now
        elif bounds is not None:
            since, until = bounds[0], bounds[1] + 1
        else:
            since, until = now - HOUR_US, now
    if until <= since:
        raise ValueError("until must be after since")
    return _span(since, until, choice)


def _span(since: int, until: int, choice: str) -> dict[str, Any]:
    return {"since": format_micros(since), "until": format_micros(until), "choice": choice,
            "since_us": since, "until_us": until, "choices": list(RANGES)}


def _stored(store: Store) -> int:
    """About how many events the store holds (log positions; exact until retention deletes)."""
    newest = store.query(Selector(), limit=1)
    oldest = store.query(Selector(), limit=1, newest_first=False)
    return newest[0].id - oldest[0].id + 1 if newest and oldest else 0


def event_row(stored: StoredEvent) -> dict[str, Any]:
    """One stored event as the explorer's row (also the JSON twin's)."""
    event = json.loads(stored.raw)
    return row_of(event, stored.id, stored.cluster)


def row_of(event: dict[str, Any], ident: int, cluster: str) -> dict[str, Any]:
    """The fields every event table shows, with links to the pages about them."""
    ref = event.get("objectRef") or {}
    user = (event.get("user") or {}).get("username", "")
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    name = ref.get("name", "")
    namespace = ref.get("namespace", "")
    status = event.get("responseStatus") or {}
    audit_id = event.get("auditID", "")
    return {
        "id": ident,
        "cluster": cluster,
        "time": event.get("stageTimestamp", ""),
        "time_us": parse_timestamp(event.get("stageTimestamp", "")),
        "auditID": audit_id,
        "stage": event.get("stage", ""),
        "level": event.get("level", ""),
        "user": user,
        "verb": event.get("verb", ""),
        "resource": resource,
        "namespace": namespace,
        "name": name,
        "uri": event.get("requestURI", ""),
        "code": status.get("code", 0),
        "request_url": urls.request_url(audit_id),
        "user_url": urls.user_url(user) if user else "",
        "object_url": urls.object_url(ref.get("resource", ""), namespace, name)
        if name and ref.get("resource") else "",
    }


def alert_row(alert: Any) -> dict[str, Any]:
    """An alert as every alert table shows it, linked to the request behind it."""
    doc: dict[str, Any] = alert.to_dict()
    doc["request_url"] = urls.request_url(alert.audit_id)
    return doc
