"""The one time picker every page shares: relative ranges, absolute times, the viewer's zone.

``range=15m|1h|6h|24h|7d|30d|all`` picks a relative range ("all" is everything stored, with
no bound at all); ``since``/``until`` take a duration (``2h``), RFC 3339 (``...Z`` or an
offset) or a time without a zone (``2026-11-26 15:20``), which is read in the viewer's zone:
the page's script sends it as ``tz`` (an IANA name such as ``Europe/Berlin``, or an offset such
as ``+01:00``), and ``tzo`` (the browser's current offset) for a server without zone data.
Without a zone such a time is read as UTC, and the page says so.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from auditsink.query.params import first
from auditsink.selector import Selector
from auditsink.store.base import Store
from auditsink.timeutil import format_micros, parse_when
from auditsink.web.views._common import Query
HOUR_US = 3600 * 1_000_000
RANGES = ("15m", "1h", "6h", "24h", "7d", "30d", "all")
# Above this many stored events an old store opens on its newest hour, not on everything: a
# page over a million events cannot answer in 300 ms (docs/ui.md, "Performance").
SMALL_STORE = 200_000
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}$")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{1,2}):?(\d{2})?$")
_RELATIVE = re.compile(r"^\d+(?:\.\d+)?(us|ms|s|m|h|d|w)$")


@dataclass(frozen=True)
class Zone:
    """The viewer's time zone, as the browser named it."""

    name: str
    tz: tzinfo
    note: str = ""  # set when the zone had to be replaced by an offset


def _offset(text: str) -> tzinfo | None:
    match = _OFFSET.match(text.strip())
    if not match:
        return None
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


def zone_of(query: Query) -> Zone | None:
    """The zone from ``tz`` (and ``tzo``), None when the browser sent none.

    >>> zone_of({"tz": ["+02:00"]}).tz.utcoffset(None)
    datetime.timedelta(seconds=7200)
    """
    name = first(query, "tz").strip()
    if not name:
        return None
    fixed = _offset(name)
    if fixed is not None:
        return Zone(name, fixed)
    if name in ("UTC", "Z", "Etc/UTC"):
        return Zone("UTC", UTC)
    if len(name) > 64 or not _ZONE_NAME.match(name):
        raise ValueError(f"tz={name[:64]!r}: expected a time zone such as Europe/Berlin or an "
                         "offset such as +01:00")
    try:
        return Zone(name, ZoneInfo(name))
    except (ZoneInfoNotFoundError, ValueError):
        fallback = _offset(first(query, "tzo"))
        if fallback is None:
            raise ValueError(f"tz={name!r}: unknown time zone (and no offset tzo= to fall back "
                             "to)") from None
        label = first(query, "tzo").strip()
        return Zone(name, fallback, f"the server has no data for {name}: read with your "
                                    f"current offset {label}")


def read_time(text: str, zone: Zone | None, now: float) -> tuple[int, str]:
    """A typed time in µs, and a note saying how a time without a zone was read.

    >>> read_time("2026-11-26 15:20", zone_of({"tz": ["+01:00"]}), 0)
    (1795702800000000, '2026-11-26 15:20 is read in your zone (+01:00)')
    """
    stripped = text.strip()
    if _RELATIVE.match(stripped):
        return parse_when(stripped, now), ""
    try:
        parsed = datetime.fromisoformat(stripped.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use a duration like 30m, 2h or 7d, RFC 3339 "
                         "like 2026-11-26T14:00:00Z, or a local time like 2026-11-26 15:20"
                         ) from None
    note = ""
    if parsed.tzinfo is None:
        if zone is None:
            parsed = parsed.replace(tzinfo=UTC)
            note = f"{stripped} has no zone and your browser sent none: read as UTC"
        else:
            parsed = parsed.replace(tzinfo=zone.tz)
            note = f"{stripped} is read in your zone ({zone.name})"
            if zone.note:
                note += f"; {zone.note}"
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond, note


def time_range(store: Store, query: Query, base: Selector, default: str = "") -> dict[str, Any]:
    """The range a page covers: ``since``/``until``, else ``range=``, else a default.

    ``default`` "" is the overview's: the last hour when events arrived in it, else everything
    stored (a store filled by ``import`` of old logs would otherwise show nothing), or for a
    big store its newest hour. ``since_us``/``until_us`` are None for an open end ("all" has
    neither); ``low_us``/``high_us`` are always the bounds to draw a chart over.
    """
    now = time.time()
    now_us = int(now * 1_000_000)
    choice = first(query, "range")
    if choice and choice not in RANGES:
        raise ValueError(f"range={choice!r}: expected one of {', '.join(RANGES)}")
    since_text, until_text = first(query, "since").strip(), first(query, "until").strip()
    zone = zone_of(query)
    notes: list[str] = []
    if since_text or until_text:
        choice = ""  # typed times win over the choices
        since = until = None
        if until_text:
            until, note = read_time(until_text, zone, now)
            notes.append(note)
        if since_text:
            since, note = read_time(since_text, zone, now)
            notes.append(note)
        if since is not None and until is not None and until <= since:
            raise ValueError("until must be after since")
        return _span(store, base, since, until, choice, [n for n in notes if n], zone,
                     since_text, until_text, now_us)
    if not choice:
        choice = default or "1h"
        if not default:
            bounds = store.time_bounds(base)
            if bounds is not None and bounds[1] < now_us - HOUR_US:
                if _stored(store) > SMALL_STORE:
                    # Old data in a big store: its newest hour, not a scan of everything.
                    return _span(store, base, bounds[1] + 1 - HOUR_US, bounds[1] + 1, "", [],
                                 zone, "", "", now_us, bounds)
                choice = "all"
    if choice == "all":
        return _span(store, base, None, None, choice, [], zone, "", "", now_us)
    return _span(store, base, parse_when(choice, now), None, choice, [], zone, "", "", now_us)


def _span(store: Store, base: Selector, since: int | None, until: int | None, choice: str,
          notes: list[str], zone: Zone | None, since_text: str, until_text: str, now_us: int,
          bounds: tuple[int, int] | None = None) -> dict[str, Any]:
    label = _label(choice, since_text, until_text)
    empty = False
    if since is not None and until is not None:
        low, high = since, until
    elif since is not None:
        low, high = since, max(now_us, since + 1)  # a relative range ends now
    else:
        # No start: the chart spans what matches (everything stored, for "all").
        found = bounds or store.time_bounds(base)
        high = until if until is not None else (found[1] + 1 if found else now_us)
        low = min(found[0], high - 1) if found else high - HOUR_US
        empty = found is None
    return {
        "choice": choice, "choices": list(RANGES), "label": label,
        "since": format_micros(since) if since is not None else None,
        "until": format_micros(until) if until is not None else None,
        "since_us": since, "until_us": until,
        "low": format_micros(low), "high": format_micros(high), "low_us": low, "high_us": high,
        "empty": empty,  # nothing matches: low and high are only where a chart is drawn
        "typed": {"since": since_text, "until": until_text},
        "zone": zone.name if zone else "",
        "notes": notes,
    }


def _label(choice: str, since_text: str, until_text: str) -> str:
    if choice == "all":
        return "everything stored"
    if choice:
        return f"the last {choice}"
    if since_text and until_text:
        return f"from {since_text} to {until_text}"
    return f"since {since_text}" if since_text else f"until {until_text}"


def _stored(store: Store) -> int:
    """About how many events the store holds (log positions; exact until retention deletes)."""
    newest = store.query(Selector(), limit=1)
    oldest = store.query(Selector(), limit=1, newest_first=False)
    return newest[0].id - oldest[0].id + 1 if newest and oldest else 0


def range_params(span: dict[str, Any]) -> dict[str, str | None]:
    """The parameters that reproduce a range in a link (typed times keep their zone)."""
    if span["choice"]:
        return {"range": span["choice"]}
    typed = span["typed"]
    return {"since": typed["since"] or None, "until": typed["until"] or None,
            "tz": span["zone"] or None}


def narrowed(since_us: int, until_us: int) -> dict[str, str | None]:
    """The parameters of an absolute range (a histogram bar, a burst)."""
    return {"since": format_micros(since_us), "until": format_micros(until_us)}


def within(selector: Selector, span: dict[str, Any]) -> Selector:
    """``selector`` restricted to the range."""
    return selector.replace(since=span["since_us"], until=span["until_us"])
