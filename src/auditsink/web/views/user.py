"""User activity: what one identity did in a time range, its failures and its alerts."""

from __future__ import annotations

from typing import Any

from auditsink.store.base import AlertSelector, Selector, Store
from auditsink.web import urls
from auditsink.web.views import rbac
from auditsink.web.views._common import Query, alert_row, event_row, first, time_range

# Requests are counted once, when they completed (RequestReceived would count them twice).
DONE = ["ResponseComplete", "Panic"]
MAX_GROUPS = 200
MAX_FAILURES = 50


def view(store: Store, query: Query, username: str) -> dict[str, Any]:
    """Requests of ``username`` grouped by resource and verb, plus its failures and alerts."""
    cluster = first(query, "cluster")
    base = Selector(users=[username], clusters=[cluster] if cluster else [])
    span = time_range(store, query, base)
    selector = Selector(users=[username], clusters=base.clusters, stages=DONE,
                        since=span["since_us"], until=span["until_us"])
    window = {"user": username, "since": span["since"], "until": span["until"],
              "cluster": cluster or None}
    groups = store.group_counts(selector, ["resource", "subresource", "namespace", "verb"],
                                MAX_GROUPS)
    activity = []
    for group in groups:
        resource = str(group["resource"])
        path = f"{resource}/{group['subresource']}" if group["subresource"] else resource
        activity.append({
            "resource": path, "namespace": group["namespace"], "verb": group["verb"],
            "count": group["count"],
            "url": urls.events_url(resource=path or None, namespace=str(group["namespace"]) or None,
                                   verb=str(group["verb"]), stage=DONE[0], **window)
            if path else urls.events_url(verb=str(group["verb"]), stage=DONE[0], **window),
        })
    failed = store.query(Selector(users=[username], clusters=base.clusters, stages=DONE,
                                  codes=["4xx", "5xx"], since=span["since_us"],
                                  until=span["until_us"]), limit=MAX_FAILURES)
    alerts = store.alerts_for_events(
        AlertSelector(clusters=base.clusters, since=span["since_us"], until=span["until_us"]),
        Selector(users=[username]), limit=50)
    return {
        "title": f"Activity of {username}",
        "username": username,
        "cluster": cluster,
        "range": span,
        "requests": sum(int(str(g["count"])) for g in groups),
        "activity": activity,
        "failures": [event_row(e) for e in failed],
        "alerts": [alert_row(a) for a in alerts],
        "events_url": urls.events_url(**window),
        "rbac": rbac.section(store, username, cluster, span["since_us"], span["until_us"]),
    }
