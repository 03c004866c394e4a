"""User activity: what one identity did in a time range, its failures and its alerts.

Asking about a person means both sides of a request (design.md): requests made **by** them
(the authenticated user) and made **as** them (``kubectl --as``). ``side=authenticated`` or
``side=impersonated`` keeps one side only.
"""

from __future__ import annotations

from typing import Any

from auditsink.query.params import first
from auditsink.selector import BY_NAME, Selector
from auditsink.store.base import AlertSelector, Store
from auditsink.web import urls
from auditsink.web.views import rbac
from auditsink.web.views._common import Query, cluster_choice, clusters_of
from auditsink.web.views._range import range_params, time_range
from auditsink.web.views._rows import alert_row, carries_cluster, event_row

# Requests are counted once, when they completed (RequestReceived would count them twice).
DONE = ["ResponseComplete", "Panic"]
MAX_GROUPS = 200
MAX_IDENTITIES = 50
MAX_FAILURES = 50
# side= -> the selector field it selects by (the vocabulary of auditsink.selector).
SIDES = {"": "user", "authenticated": "authenticatedUser", "impersonated": "impersonatedUser"}


def view(store: Store, query: Query, username: str) -> dict[str, Any]:
    """Requests by or as ``username`` grouped by resource and verb, who acted as whom, its
    failures and alerts."""
    side = first(query, "side")
    if side not in SIDES:
        raise ValueError(f"side={side!r}: expected authenticated or impersonated (or nothing "
                         "for both)")
    field = SIDES[side]
    clusters = clusters_of(query)
    who = Selector(clusters=clusters)
    who.values(BY_NAME[field]).append(username)
    span = time_range(store, query, who)
    selector = who.replace(stages=DONE, since=span["since_us"], until=span["until_us"])
    identity = [(field, urls.spell(username)), *(("cluster", urls.spell(c)) for c in clusters)]
    window = range_params(span)

    def explore(*pairs: tuple[str, str], **params: str | None) -> str:
        return urls.events_url([*identity, *pairs], **{**window, **params})

    groups = store.group_counts(selector, ["resource", "subresource", "namespace", "verb"],
                                MAX_GROUPS)
    activity = []
    for group in groups:
        resource = str(group["resource"])
        path = f"{resource}/{group['subresource']}" if group["subresource"] else resource
        pairs = [("verb", str(group["verb"]))]
        if path:
            pairs += [("resource", path), ("namespace", urls.spell(str(group["namespace"])))]
        activity.append({"resource": path, "namespace": group["namespace"],
                         "verb": group["verb"], "count": group["count"],
                         "url": explore(*pairs)})
    identities = [{
        "user": str(g["user"]), "impersonated": str(g["impersonated_user"] or ""),
        "count": g["count"],
        "url": urls.events_url([("authenticatedUser", urls.spell(str(g["user"]))),
                                ("impersonatedUser", urls.spell(str(g["impersonated_user"] or ""))),
                                *(("cluster", urls.spell(c)) for c in clusters)], **window),
    } for g in store.group_counts(selector, ["user", "impersonated_user"], MAX_IDENTITIES)]
    failed = store.page(selector.replace(codes=["4xx", "5xx"]), MAX_FAILURES)
    alerts = store.alerts_for_events(
        AlertSelector(clusters=clusters, since=span["since_us"], until=span["until_us"]),
        who, limit=50)
    one = clusters[0] if len(clusters) == 1 else None
    carry = carries_cluster(store)
    return {
        "title": f"Activity of {username}",
        **cluster_choice(store, clusters),
        "username": username,
        "side": side,
        "sides": {name: urls.user_url(username, one, side=name or None, **window)
                  for name in SIDES},
        "range": span,
        "requests": store.count(selector),
        "identities": identities,
        "activity": activity,
        "failures": [event_row(e, carry) for e in failed],
        "alerts": [alert_row(a, carry) for a in alerts],
        "events_url": explore(),
        "rbac": rbac.section(store, username, one or "", span["low_us"], span["high_us"]),
    }
