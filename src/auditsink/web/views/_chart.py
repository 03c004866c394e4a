"""Events over time by verb: the overview's chart and the explorer's histogram of matches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from auditsink.selector import Selector
from auditsink.timeutil import format_micros
from auditsink.web import charts

# Bucket widths: the smallest that keeps a chart under MAX_BUCKETS bars, so the last hour is
# events per minute and a short burst (an import) still shows its shape.
BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 100
MAX_SERIES = 8


def bucket_seconds(span_us: int) -> int:
    """The bucket width for a range: per minute for an hour, coarser or finer else.

    >>> bucket_seconds(3600 * 1_000_000), bucket_seconds(7 * 86400 * 1_000_000)
    (60, 10800)
    """
    for seconds in BUCKETS:
        if span_us / (seconds * 1_000_000) <= MAX_BUCKETS:
            return seconds
    return BUCKETS[-1]


def histogram(source: Any, selector: Selector, low: int, high: int, *,
              requests_only: bool = False,
              link: Callable[[int, int], str] | None = None) -> dict[str, Any]:
    """Counts per bucket and verb from ``low`` to ``high`` (µs), every bucket present (zeros
    too) so the time axis is even; ``link(start, end)`` makes each bar a link."""
    seconds = bucket_seconds(high - low)
    width = seconds * 1_000_000
    if requests_only:
        rows = source.counts_by_time(selector, width, "verb", requests_only=True)
    else:
        rows = source.counts_by_time(selector, width, "verb")
    totals: dict[str, int] = {}
    for _, verb, n in rows:
        totals[verb] = totals.get(verb, 0) + n
    ranked = sorted(totals, key=lambda v: -totals[v])
    series = ranked[:MAX_SERIES]
    # Rare verbs share one series so the legend stays readable.
    other = "other" if len(ranked) > MAX_SERIES else None
    first_bucket, last_bucket = low // width, (high - 1) // width
    buckets = [{"t": b * width, "time": format_micros(b * width), "counts": {}, "total": 0}
               for b in range(first_bucket, last_bucket + 1)]
    for start, verb, n in rows:
        index = start // width - first_bucket
        if not 0 <= index < len(buckets):
            continue  # outside the drawn range (an open range drawn over stored bounds)
        bucket: dict[str, Any] = buckets[index]
        key = verb if verb in series else str(other)
        bucket["counts"][key] = bucket["counts"].get(key, 0) + n
        bucket["total"] += n
    if link is not None:
        for number, bucket in enumerate(buckets, start=first_bucket):
            if bucket["total"]:
                bucket["href"] = link(number * width, (number + 1) * width)
    if other:
        series.append(other)
    return {"bucket_seconds": seconds, "bucket": charts.unit_label(seconds),
            "bucket_span": charts.span_words(seconds), "series": series,
            "buckets": buckets, "total": sum(totals.values())}
