"""The overview's security panel: refused requests, their bursts, forbidden decisions, alerts.

What someone opening the UI after a page wants first: did anything get refused (401: not
authenticated, 403: not allowed), when did it come in bursts, who was refused, and did the
rules raise warnings. Every number links to the explorer (or the alerts) behind it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from auditsink.priority import RANK
from auditsink.selector import Selector
from auditsink.store.base import Store
from auditsink.timeutil import format_micros
from auditsink.web.urls import spell
from auditsink.web.views._range import narrowed

BURSTS = 3
TOP = 5
DONE = ["ResponseComplete", "Panic"]

Link = Callable[..., str]


def panel(store: Store, selector: Selector, bucket_us: int, alert_counts: dict[int, int],
          explore: Link, alerts: Link) -> dict[str, Any]:
    """The panel over ``selector`` (a range and maybe a cluster), bursts per ``bucket_us``.

    ``explore(pairs, **params)`` links to the explorer in the page's range and cluster,
    ``alerts(**params)`` to the alerts page.
    """
    # Asked as the class 4xx, which the store answers from its index of failed requests
    # (an exact code such as 403 does not use that partial index on SQLite), then kept to
    # 401 and 403 here.
    refused = selector.replace(codes=["4xx"])
    by_bucket = store.counts_by_time(refused, bucket_us, "code", requests_only=True)
    per_code: Counter[str] = Counter()
    per_bucket: Counter[int] = Counter()
    for start, code, n in by_bucket:
        if str(code) in ("401", "403"):
            per_code[str(code)] += n
            per_bucket[start] += n
    busiest = sorted(per_bucket.items(), key=lambda kv: (-kv[1], kv[0]))[:BURSTS]
    bursts = [{"start": format_micros(start), "end": format_micros(start + bucket_us),
               "count": n, "url": explore([("code", "401"), ("code", "403")],
                                          **narrowed(start, start + bucket_us))}
              for start, n in busiest]
    # An authorizer's "forbid" is always answered 403, a 4xx: asking for both lets the store
    # use its index of failed requests instead of reading every event of the range.
    forbidden = selector.replace(codes=["4xx"], decisions=["forbid"], stages=DONE)
    who = store.group_counts(forbidden, ["user", "impersonated_user"], TOP, failures_only=True)
    warnings = sum(n for rank, n in alert_counts.items() if rank <= RANK["WARNING"])
    return {
        "unauthenticated": per_code.get("401", 0),
        "forbidden": per_code.get("403", 0),
        "refused_url": explore([("code", "401"), ("code", "403")]),
        "unauthenticated_url": explore([("code", "401")]),
        "forbidden_url": explore([("code", "403")]),
        "bursts": bursts,
        "bucket": bucket_us // 1_000_000,
        "forbid": store.count(forbidden, requests_only=True),
        "forbid_url": explore([("decision", "forbid")]),
        "forbid_by": [{
            "user": str(row["user"]), "impersonated": str(row["impersonated_user"] or ""),
            "count": row["count"],
            "url": explore([("decision", "forbid"), ("authenticatedUser", spell(str(row["user"]))),
                            ("impersonatedUser", spell(str(row["impersonated_user"] or "")))]),
        } for row in who],
        "warnings": warnings,
        "warnings_url": alerts(priority="WARNING"),
    }
