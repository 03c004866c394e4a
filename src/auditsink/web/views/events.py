"""Events explorer: which requests match, in time order, with a histogram and a hit count.

Two orders (design.md): the table is in **time order** (stageTimestamp, then log position),
newest first, paged by a (time, id) cursor (``before=``/``after=``) so pages neither skip nor
repeat however batches arrived; follow mode reads **log order** after a log position
(``after_id=``), so it delivers every committed event exactly once however many arrive
between two polls, including events whose time is older than what is on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditsink.query.params import first, key_from, position_from
from auditsink.selector import Selector
from auditsink.store.base import Store
from auditsink.web import urls
from auditsink.web.views._chart import histogram
from auditsink.web.views._common import Invalid, Query, cluster_choice, int_param
from auditsink.web.views._range import RANGES, narrowed, range_params, time_range, within
from auditsink.web.views._rows import carries_cluster, event_row, is_request
from auditsink.web.views._select import bar_text, form_fields, pairs_of, selection

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Follow mode reads at most this many events per poll and asks again at once while there
# are more, so a burst of thousands arrives in a few round trips and none is skipped.
FOLLOW_BATCH = 500
ROWS = ("requests", "stages")


@dataclass
class Search:
    """What the explorer was asked: the selector, the range, and one row per request or not."""

    selector: Selector
    span: dict[str, Any]
    rows: str
    requests_only: bool
    query: Query


def parse(store: Store, query: Query) -> Search:
    """The explorer's parameters (form fields, ``q=``, range, ``rows=``); ValueError if bad."""
    selector, bar_times = selection(query)
    if bar_times:  # since:/until: typed in the bar set the range
        query = {k: v for k, v in query.items() if k != "range"}
        query.update({key: [value] for key, value in bar_times.items()})
    rows = first(query, "rows", "requests")
    if rows not in ROWS:
        raise ValueError(f"rows={rows!r}: expected requests or stages")
    # One row per request, unless asked for every stage or for particular stages.
    requests_only = rows == "requests" and not selector.stages
    return Search(selector, time_range(store, query, selector), rows, requests_only, query)


def view(store: Store, query: Query) -> dict[str, Any]:
    """One page of matches newest first (or, with ``after_id=``, what was committed since)."""
    try:
        search = parse(store, query)
        after_id = position_from(query, "after_id")
        if after_id is not None:
            limit = int_param(query, "limit", FOLLOW_BATCH, FOLLOW_BATCH)
            return follow(store, search, after_id, limit)
        return _page(store, search)
    except ValueError as exc:  # SelectorError too: a bad field, query, time, cursor or limit
        raise Invalid(str(exc), _failed(store, query, str(exc))) from None


def _page(store: Store, search: Search) -> dict[str, Any]:
    query, selector, span, rows_mode = search.query, search.selector, search.span, search.rows
    requests_only = search.requests_only
    limit = int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    before, after = key_from(query, "before"), key_from(query, "after")
    if before is not None and after is not None:
        raise ValueError("give before= or after=, not both")
    ranged = within(selector, span)
    # The log position first: follow mode starts there, so an event committed while this
    # page is read is shown (at worst twice, and the script drops the repeat), never lost.
    newest_position = store.last_id()
    if after is not None:  # the page just newer than a row: read upwards, show newest first
        found = store.page(ranged, limit + 1, after=after, oldest_first=True,
                           requests_only=requests_only)
        newer, older = len(found) > limit, True
        found = found[:limit][::-1]
    else:
        found = store.page(ranged, limit + 1, before=before, requests_only=requests_only)
        newer, older = before is not None, len(found) > limit
        found = found[:limit]
    carry = carries_cluster(store)
    rows = [event_row(e, carry) for e in found]
    pairs = pairs_of(selector)
    state = {**range_params(span), "rows": rows_mode if rows_mode != "requests" else None,
             "limit": first(query, "limit") or None}

    def link(**extra: str | None) -> str:
        return urls.events_url(pairs, **{**state, **extra})

    chart = histogram(store, ranged, span["low_us"], span["high_us"], requests_only=requests_only,
                      link=lambda start, end: urls.events_url(
                          pairs, **{**state, **narrowed(start, end)}))
    return {
        "title": "Events",
        **cluster_choice(store, selector.clusters),
        "query": bar_text(selector),
        "selector": selector.describe(),
        "fields": form_fields(selector),
        "pairs": pairs,
        "range": span,
        "rows": rows_mode,
        "requests_only": requests_only,
        "limit": limit,
        "hits": chart["total"],
        "chart": chart,
        "events": rows,
        "position": newest_position,
        "next": rows[-1]["key"] if older and rows else None,
        "prev": rows[0]["key"] if newer and rows else None,
        "older_url": link(before=rows[-1]["key"]) if older and rows else None,
        "newer_url": link(after=rows[0]["key"]) if newer and rows else None,
        "newest_url": link() if before is not None or after is not None else None,
        "rows_url": link(rows="stages" if rows_mode == "requests" else None),
        "export": {fmt: f"/ui/events.{fmt}" + urls.query_string([*pairs, *_flat(state, "limit")])
                   for fmt in ("jsonl", "csv")},
        "follow_url": "/ui/events.json" + urls.query_string(
            [*pairs, *_flat(state, "limit"), ("after_id", str(newest_position))]),
        "state": _flat(state, "limit"),
        # What the header's cluster selector keeps when another cluster is chosen.
        "keep": [p for p in pairs if p[0].rstrip("!") != "cluster"] + _flat(state, "limit"),
        "error": None,
    }


def _flat(state: dict[str, str | None], *drop: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in state.items() if v and k not in drop]


def follow(store: Store, search: Search, after_id: int, limit: int) -> dict[str, Any]:
    """The matches committed after log position ``after_id``, in log order.

    ``after_id`` in the answer is where the next poll starts: the last position read, even
    when that event was not a request's row (its other stages are read and left out), so a
    burst is delivered whole, in as many polls as it takes, and never twice. ``more`` says
    another poll would find more at once.
    """
    selector, span, requests_only = search.selector, search.span, search.requests_only
    # A relative range ends "now", which moves on: only a typed end bounds what follows.
    live = selector.replace(since=span["since_us"],
                            until=span["until_us"] if span["typed"]["until"] else None)
    found = store.query(live, limit=limit, after_id=after_id, newest_first=False)
    carry = carries_cluster(store)
    rows = [event_row(e, carry) for e in found]
    if requests_only:
        rows = [r for r in rows if is_request(r)]
    return {
        "title": "Events (follow)",
        "follow": {"after_id": found[-1].id if found else after_id, "more": len(found) == limit,
                   "read": len(found)},
        "requests_only": requests_only,
        "events": rows,
    }


def _failed(store: Store, query: Query, message: str) -> dict[str, Any]:
    """The explorer around an error: what was typed stays in the bar, to be corrected."""
    try:
        chosen = selection(query)[0]
    except ValueError:
        chosen = Selector()
    return {
        "title": "Events",
        **cluster_choice(store, chosen.clusters),
        "query": " ".join(query.get("q", [])) or bar_text(chosen),
        "fields": form_fields(chosen),
        # The picker keeps what was typed, so a mistyped time can be corrected in place.
        "range": {"choice": first(query, "range"), "choices": list(RANGES), "label": "",
                  "empty": True,
                  "typed": {"since": first(query, "since"), "until": first(query, "until")},
                  "zone": first(query, "tz"), "notes": []},
        "pairs": pairs_of(chosen),
        "rows": first(query, "rows", "requests"),
        "state": [(k, v) for k in ("range", "since", "until", "tz", "rows")
                  for v in query.get(k, [])],
        "keep": [],
        "error": message,
    }
