"""Newest-first pages of a busy user or namespace in SQLite, through growing time windows.

Their indexes, (user, time) and (namespace, time), give SQLite the matches in time order while
pages are in log order, so a page without a time range sorted every match: 3.4 s for
system:apiserver in a store of 10 million events. The page is looked for in time windows
instead, and kept once it provably equals the unbounded answer (18-35 ms).

PostgreSQL does not need this: it walks the log-position index backwards and filters, 1.5-3 ms
per page of a busy identity in 2 million events, where these windows took 4.5-10 ms
(``python -m benchmarks.bench_pg_pages``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from auditsink.store.base import Selector, StoredEvent

WINDOWS_US = tuple(hours * 3_600_000_000 for hours in (1, 8, 64, 512))
# Past this many log positions between a page and the newest event, checking the page costs
# more than the sort it saves (the identity is rare there, so its sort is small).
WINDOW_CHECK_POSITIONS = 1_000_000


def newest_page_in_windows(
    selector: Selector, limit: int, before_id: int | None, *,
    page: Callable[[Selector, int, int | None], list[StoredEvent]],
    time_bounds: Callable[[], tuple[int, int] | None],
    time_before: Callable[[int], int | None],
    times_between: Callable[[int, int], tuple[int, int] | None],
    last_id: Callable[[], int],
) -> list[StoredEvent] | None:
    """The newest ``limit`` matches before ``before_id`` in log order, found through time
    windows; ``None`` when a plain query is the cheaper way (or the windows cannot tell).

    A window's page P (the newest matches with a time in [T0, T1)) is the whole answer when
    every event logged after P's oldest one has a time in [T0, T1): a match outside the window
    is then older in the log than all of P. ``times_between(a, b)`` is the (min, max) event
    time at log positions strictly between ``a`` and ``b``. Late events (an import, a sender's
    retry hours later) fail the check and widen the window. T1 is just after the newest event,
    or after the one before the cursor (``time_before``), so that pages deep in the past are
    found the same way.
    """
    if limit <= 0 or not (selector.users or selector.namespaces):
        return None
    if selector.names or selector.audit_ids:
        return None  # their indexes are already in log order
    bounds = time_bounds()
    if bounds is None:
        return None
    first, end = bounds[0], bounds[1] + 1
    if before_id is not None:
        at_cursor = time_before(before_id)
        if at_cursor is None:
            return None  # nothing before the cursor
        end = min(end, at_cursor + 1)
    if selector.until is not None:
        end = min(end, selector.until)
    for width in WINDOWS_US:
        start = end - width
        if start <= first or (selector.since is not None and start <= selector.since):
            return None  # no narrower than the plain query: let it answer
        found = page(dataclasses.replace(selector, since=start, until=end), limit, before_id)
        if len(found) < limit:
            continue
        # Without a cursor the check runs to the end of the log as it is now, which covers
        # anything committed since the page was read.
        top = before_id if before_id is not None else last_id() + 1
        if top - found[-1].id > WINDOW_CHECK_POSITIONS:
            return None
        times = times_between(found[-1].id, before_id if before_id is not None else 2**62)
        if times is None or (times[0] >= start and times[1] < end):
            return found
    return None
