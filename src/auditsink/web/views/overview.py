"""Overview: what happened in a time range, at a glance, and what looks like an attack."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from auditsink.priority import PRIORITIES
from auditsink.query.rollup import rollup_for, usable
from auditsink.selector import Selector
from auditsink.store.base import AlertSelector, Store
from auditsink.web import urls
from auditsink.web.views import _security
from auditsink.web.views._chart import bucket_seconds, histogram
from auditsink.web.views._common import Query, cluster_choice, clusters_of
from auditsink.web.views._range import narrowed, range_params, time_range
from auditsink.web.views._rows import carries_cluster, group_row

__all__ = ["bucket_seconds", "view"]
TOP = 10


def view(store: Store, query: Query) -> dict[str, Any]:
    """Events by verb over time, top users and resources, failures, security and alerts."""
    clusters = clusters_of(query)
    base = Selector(clusters=clusters)
    span = time_range(store, query, base)
    low, high = span["low_us"], span["high_us"]
    # Counted over the drawn bounds: for "everything" they are what is stored, so the counts
    # are the same, and the rollup below can answer whole hours.
    selector = base.replace(since=low, until=high)
    here = {**range_params(span), "cluster": [urls.spell(c) for c in clusters] or None}

    def explore(pairs: Sequence[tuple[str, str]] = (), **params: str | None) -> str:
        cluster_pairs = [("cluster", urls.spell(c)) for c in clusters]
        return urls.events_url([*cluster_pairs, *pairs], **{**range_params(span), **params})

    def alerts_link(**params: str | None) -> str:
        return urls.alerts_url(**{**here, **params})

    # Over days, counting every event four ways takes seconds: whole hours come from the
    # in-memory rollup (query/rollup.py) instead, and only the partial hours from the store.
    source: Any = rollup_for(store) if usable(selector) else store
    chart = histogram(source, selector, low, high, link=lambda start, end: urls.overview_url(
        cluster=here["cluster"], **narrowed(start, end)))
    users = source.group_counts(selector, ["user"], TOP)
    resources = source.group_counts(selector, ["resource", "api_group"], TOP)
    failures = source.group_counts(selector, ["code", "verb", "resource"], TOP, failures_only=True)
    alerts = AlertSelector(clusters=clusters, since=low, until=high)
    counts = store.alert_counts(alerts)
    groups = store.alert_groups(alerts, limit=TOP)
    security = _security.panel(store, selector, chart["bucket_seconds"] * 1_000_000, counts,
                               explore, alerts_link)
    return {
        "title": "Overview",
        **cluster_choice(store, clusters),
        "range": span,
        "events": chart["total"],
        "chart": chart,
        "security": security,
        "top_users": [
            {**u, "url": urls.user_url(str(u["user"]), _one(clusters), **range_params(span))}
            for u in users],
        "top_resources": [
            {**r, "url": explore([("resource", f"{r['resource']}/*"),
                                  ("apiGroup", urls.spell(str(r["api_group"])))])
             if r["resource"] else None}
            for r in resources],
        "failures": [
            {**f, "url": explore([("code", str(f["code"])), ("verb", str(f["verb"]))]
                                 + ([("resource", f"{f['resource']}/*")] if f["resource"] else []))}
            for f in failures],
        "alert_counts": {PRIORITIES[p]: n for p, n in sorted(counts.items())},
        "alert_count_urls": {PRIORITIES[p]: alerts_link(priority=PRIORITIES[p])
                             for p in sorted(counts)},
        # Grouped by rule, the most severe first: a thousand INFO never bury one WARNING.
        "alert_groups": [group_row(g, alerts_link, carries_cluster(store)) for g in groups],
        "alerts_url": alerts_link(),
        "events_url": explore(),
    }


def _one(clusters: list[str]) -> str | None:
    return clusters[0] if len(clusters) == 1 else None
