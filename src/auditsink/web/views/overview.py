"""Overview: what happened in a time range, at a glance."""

from __future__ import annotations

from typing import Any

from auditsink.query.rollup import rollup_for, usable
from auditsink.rules.priority import PRIORITIES
from auditsink.store.base import AlertSelector, Selector, Store
from auditsink.timeutil import format_micros
from auditsink.web import charts, urls
from auditsink.web.views._common import Query, alert_row, first, time_range

# Bucket widths for the chart: the smallest that keeps it under MAX_BUCKETS bars, so the
# default last hour is events per minute and a short burst (an import) still shows its shape.
BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 100
MAX_SERIES = 8
TOP = 10


def bucket_seconds(span_us: int) -> int:
    """The chart's bucket width for a range: per minute for an hour, coarser or finer else.

    >>> bucket_seconds(3600 * 1_000_000), bucket_seconds(7 * 86400 * 1_000_000)
    (60, 10800)
    """
    for seconds in BUCKETS:
        if span_us / (seconds * 1_000_000) <= MAX_BUCKETS:
            return seconds
    return BUCKETS[-1]


def view(store: Store, query: Query) -> dict[str, Any]:
    """Events per minute by verb, top users and resources, failures and alerts in a range."""
    cluster = first(query, "cluster")
    base = Selector(clusters=[cluster] if cluster else [])
    span = time_range(store, query, base)
    selector = Selector(clusters=base.clusters, since=span["since_us"], until=span["until_us"])
    window = {"since": span["since"], "until": span["until"], "cluster": cluster or None}
    # Over days, counting every event four ways takes seconds: whole hours come from the
    # in-memory rollup (query/rollup.py) instead, and only the partial hours from the store.
    source: Any = rollup_for(store) if usable(selector) else store
    chart = _chart(source, selector, span["since_us"], span["until_us"])
    users = source.group_counts(selector, ["user"], TOP)
    resources = source.group_counts(selector, ["resource", "api_group"], TOP)
    failures = source.group_counts(selector, ["code", "verb", "resource"], TOP, failures_only=True)
    alerts = AlertSelector(clusters=base.clusters, since=span["since_us"], until=span["until_us"])
    counts = store.alert_counts(alerts)
    recent = sorted(store.alerts(alerts, limit=50), key=lambda a: (a.priority, -a.id))[:TOP]
    return {
        "title": "Overview",
        "range": span,
        "cluster": cluster,
        "clusters": store.clusters_seen(Selector(since=span["since_us"], until=span["until_us"])),
        "events": chart["total"],
        "chart": chart,
        "top_users": [
            {**u, "url": urls.user_url(str(u["user"]), since=span["since"], until=span["until"])}
            for u in users],
        "top_resources": [
            {**r, "url": urls.events_url(resource=f"{r['resource']}/*", **window)
             if r["resource"] else None}
            for r in resources],
        "failures": [
            {**f, "url": urls.events_url(code=str(f["code"]), verb=str(f["verb"]),
                                         resource=f"{f['resource']}/*" if f["resource"] else None,
                                         **window)}
            for f in failures],
        "alert_counts": {PRIORITIES[p]: n for p, n in sorted(counts.items())},
        "alerts": [alert_row(a) for a in recent],
        "alerts_url": "/ui/alerts" + urls.query_string(
            {"since": span["since"], "until": span["until"], "cluster": cluster}),
        "events_url": urls.events_url(**window),
    }


def _chart(store: Any, selector: Selector, since: int, until: int) -> dict[str, Any]:
    """Counts per bucket and verb, every bucket present (zeros too) so the time axis is even."""
    seconds = bucket_seconds(until - since)
    width = seconds * 1_000_000
    rows = store.counts_by_time(selector, width, "verb")
    totals: dict[str, int] = {}
    for _, verb, n in rows:
        totals[verb] = totals.get(verb, 0) + n
    ranked = sorted(totals, key=lambda v: -totals[v])
    series = ranked[:MAX_SERIES]
    # Rare verbs share one series so the legend stays readable.
    other = "other" if len(ranked) > MAX_SERIES else None
    first_bucket, last_bucket = since // width, (until - 1) // width
    buckets = [{"t": b * width, "time": format_micros(b * width), "counts": {}, "total": 0}
               for b in range(first_bucket, last_bucket + 1)]
    for start, verb, n in rows:
        bucket: dict[str, Any] = buckets[start // width - first_bucket]
        key = verb if verb in series else str(other)
        bucket["counts"][key] = bucket["counts"].get(key, 0) + n
        bucket["total"] += n
    if other:
        series.append(other)
    return {"bucket_seconds": seconds, "bucket": charts.unit_label(seconds), "series": series,
            "buckets": buckets,
            "total": sum(totals.values())}
