"""Read commands: ``query``, ``tail``, ``show``, ``stats``, ``rejected`` and ``alerts``.

People get time order (stageTimestamp, newest first); ``tail -f`` follows the log in commit
order so that it prints every committed event exactly once (design.md, "Two orders").
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from auditsink.cli.group import main
from auditsink.cli.common import (
    config_option,
    open_existing_store,
    query_argument,
    selector_from,
    selector_options,
    store_option,
)
from auditsink.model import Event, decode_item, to_log_line
from auditsink.priority import PRIORITIES, RANK, parse_priority
from auditsink.printer import text_line
from auditsink.selector import Selector, SelectorError
from auditsink.store.base import AlertSelector, StoredEvent, TimeKey, format_key, parse_key
from auditsink.textsafe import printable
from auditsink.timeutil import format_micros, parse_when

MAX_LIMIT = 100_000_000
CHUNK = 5000  # events per read when a long answer is streamed (jsonl, text)
FOLLOW_PAGE = 1000
_TABLE_COLUMNS = ("TIME", "CLUSTER", "USER", "VERB", "RESOURCE", "NAMESPACE/NAME", "CODE", "STAGE")


def _who(event: Event) -> str:
    """``admin``, or ``admin as mallory`` for a request made through impersonation."""
    user = event.user.username or "(anonymous)"
    if event.impersonatedUser is not None and event.impersonatedUser.username:
        return f"{user} as {event.impersonatedUser.username}"
    return user


def _row(stored: StoredEvent) -> tuple[str, ...]:
    event = decode_item(stored.raw)
    ref = event.objectRef
    resource = event.resource_path if ref else event.requestURI.split("?", 1)[0]
    target = "/".join(part for part in (ref.namespace, ref.name) if part) if ref else ""
    return (event.stageTimestamp, stored.cluster or "-", _who(event), event.verb, resource,
            target or "-", str(event.code or "-"), event.stage)


def print_events(events: list[StoredEvent], fmt: str, header: bool = True) -> None:
    """Print stored events as a table, JSON array, audit-log lines or text lines."""
    out = sys.stdout
    if fmt == "jsonl":
        sys.stdout.buffer.write(b"".join(to_log_line(e.raw) + b"\n" for e in events))
        sys.stdout.buffer.flush()
    elif fmt == "json":
        docs = [{"id": e.id, "cluster": e.cluster, "event": json.loads(e.raw)} for e in events]
        json.dump(docs, out, indent=2)
        out.write("\n")
    elif fmt == "text":
        for e in events:
            out.write(text_line(decode_item(e.raw), e.cluster) + "\n")
    else:
        rows = [tuple(map(printable, _row(e))) for e in events]
        if header:
            rows.insert(0, _TABLE_COLUMNS)
        widths = [max(len(r[i]) for r in rows) for i in range(len(_TABLE_COLUMNS))] if rows else []
        for r in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    out.flush()


def _cursor(text: str | None) -> TimeKey | None:
    try:
        return parse_key(text) if text else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("query")
@config_option
@store_option
@selector_options
@query_argument
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, MAX_LIMIT),
              help="At most this many events: the newest (the oldest with --oldest-first). "
              "jsonl and text stream any number.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl", "text"]),
              default="table", show_default=True,
              help="jsonl is the audit-log format: feed it back to `import` or other tools.")
@click.option("--oldest-first", is_flag=True, help="Oldest first (jsonl always is).")
@click.option("--requests", "requests_only", is_flag=True,
              help="One event per request (its completion) instead of every stage.")
@click.option("--before", metavar="CURSOR", help="The page after this one: the cursor the "
              "previous page printed (newest-first order).")
@click.option("--after", metavar="CURSOR", help="The page after this one in oldest-first "
              "order.")
def query_command(store_url: str, limit: int, fmt: str, oldest_first: bool,
                  requests_only: bool, before: str | None, after: str | None,
                  **kwargs: Any) -> None:
    """Find events, newest first by time: who deleted this deployment, what did alice do.

    QUERY is the query-bar syntax; flags and QUERY add up. `user` means requests made by OR
    as the user (kubectl --as); --authenticated-user and --impersonated-user pick one side.

    \b
      auditsink query --verb delete --resource deployments --namespace demo
      auditsink query 'user:alice -namespace:kube-system code:4xx' --since 2h
      auditsink query --code 403 --format jsonl > forbidden.log
    """
    selector = selector_from(kwargs)
    store = open_existing_store(store_url)
    # jsonl is the audit-log order: oldest first, by time.
    ascending = oldest_first or fmt == "jsonl" or after is not None
    if before and ascending:
        raise click.UsageError("--before pages newest first: drop --oldest-first/--after")
    cursor_before, cursor_after = _cursor(before), _cursor(after)
    if fmt in ("json", "table") or limit <= CHUNK:
        try:
            events = store.page(selector, limit + 1, before=cursor_before, after=cursor_after,
                                oldest_first=ascending, requests_only=requests_only)
        except SelectorError as exc:
            raise click.BadParameter(str(exc)) from None
        more = len(events) > limit
        events = events[:limit]
        print_events(events, fmt)
        if not events and fmt == "table":
            click.echo("(no events match)", err=True)
    else:
        # Streamed a chunk at a time (an export of millions of lines needs no memory for it).
        events, more = [], False
        printed = 0
        key_before, key_after = cursor_before, cursor_after
        while printed < limit:
            want = min(CHUNK, limit - printed)
            try:
                chunk = store.page(selector, want + 1, before=key_before, after=key_after,
                                   oldest_first=ascending, requests_only=requests_only)
            except SelectorError as exc:
                raise click.BadParameter(str(exc)) from None
            more = len(chunk) > want
            chunk = chunk[:want]
            print_events(chunk, fmt)
            printed += len(chunk)
            if not more:
                break
            events = chunk[-1:]
            if ascending:
                key_after = chunk[-1].key
            else:
                key_before = chunk[-1].key
    if more:
        # People must know the answer is cut, and how to get the rest.
        flag = "--after" if ascending else "--before"
        click.echo(f"(showing the {'oldest' if ascending else 'newest'} {limit}; more match: "
                   f"{flag} {format_key(events[-1].key)} for the next page, or a larger "
                   "--limit)", err=True)


@main.command("tail")
@config_option
@store_option
@selector_options
@query_argument
@click.option("-n", "--lines", default=10, show_default=True, type=click.IntRange(0, 100_000),
              help="Start with this many recent events (by time).")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing every event committed from now on, in commit order.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl", "table"]), default="text",
              show_default=True)
@click.option("--interval", default=0.5, show_default=True,
              help="Seconds between polls with --follow.")
def tail_command(store_url: str, lines: int, follow: bool, fmt: str, interval: float,
                 **kwargs: Any) -> None:
    """Print the latest events, and with -f every event committed after them.

    Following reads the log by position (commit order), so every committed event is printed
    once, however many arrive between two polls and whatever their timestamps.
    """
    selector = selector_from(kwargs)
    store = open_existing_store(store_url)
    # The log position first: what is committed after it is followed, what is before it may
    # be among the recent events, so nothing is printed twice or skipped.
    mark = store.last_id()
    try:
        recent = [e for e in store.page(selector, lines) if e.id <= mark] if lines else []
    except SelectorError as exc:
        raise click.BadParameter(str(exc)) from None
    recent.reverse()
    print_events(recent, fmt)
    try:
        while follow:
            found = store.query(selector, limit=FOLLOW_PAGE, after_id=mark, newest_first=False)
            if found:
                print_events(found, fmt, header=False)
                mark = found[-1].id
            if len(found) < FOLLOW_PAGE:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


@main.command("show")
@config_option
@store_option
@click.argument("audit_id")
def show_command(store_url: str, audit_id: str) -> None:
    """Every stage of one request, objects pretty-printed."""
    store = open_existing_store(store_url)
    events = store.page(Selector(audit_ids=[audit_id]), limit=MAX_LIMIT, oldest_first=True)
    if not events:
        raise click.ClickException(f"no events with auditID {audit_id!r} in {store.url}")
    for stored in events:
        doc = json.loads(stored.raw)
        click.echo(printable(f"--- {doc.get('stage')} {doc.get('stageTimestamp')}"
                             + (f" cluster={stored.cluster}" if stored.cluster else "")))
        click.echo(json.dumps(doc, indent=2))


@main.command("stats")
@config_option
@store_option
@selector_options
@query_argument
@click.option("--top", default=10, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def stats_command(store_url: str, top: int, fmt: str, **kwargs: Any) -> None:
    """Top users, verbs, resources, namespaces, failures; events per hour."""
    selector = selector_from(kwargs)
    store = open_existing_store(store_url)
    stats = store.stats(selector, top=top)
    if fmt == "json":
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(f"events: {stats['events']}  (unreadable items kept: {stats['rejected']})")
    for title in ("users", "verbs", "resources", "namespaces"):
        click.echo(f"\ntop {title}:")
        for entry in stats[title]:  # type: ignore[attr-defined]
            click.echo(printable(f"  {entry['count']:>8}  {entry['value'] or '(none)'}"))
    click.echo("\nfailures:")
    for entry in stats["failures"]:  # type: ignore[attr-defined]
        click.echo(f"  {entry['count']:>8}  {entry['code']}")
    click.echo("\nevents per hour (UTC):")
    for entry in stats["per_hour"]:  # type: ignore[attr-defined]
        hour = time.strftime("%Y-%m-%d %H:00", time.gmtime(entry["hour"]))
        click.echo(f"  {hour}  {entry['count']}")


@main.command("rejected")
@config_option
@store_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100_000))
def rejected_command(store_url: str, limit: int) -> None:
    """Items that could not be decoded: when, why, and how they started."""
    store = open_existing_store(store_url)
    for entry in store.rejected(limit):
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.time))
        click.echo(printable(f"{when} {entry.cluster or '-'} {entry.error}") + "\n  "
                   + printable(entry.body[:200].decode("utf-8", "replace")))


def alert_selector(rules: tuple[str, ...], priority: str | None, clusters: tuple[str, ...],
                   since: str | None, until: str | None) -> AlertSelector:
    """An AlertSelector from CLI flags or query parameters."""
    selector = AlertSelector(rules=list(rules), clusters=list(clusters))
    try:
        if priority:
            selector.min_priority = RANK[parse_priority(priority)]
        selector.since = parse_when(since) if since else None
        selector.until = parse_when(until) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return selector


@main.command("alerts")
@config_option
@store_option
@click.option("--rule", "rules", multiple=True, help="Rule name (repeatable).")
@click.option("--priority", help="At least this severe: EMERGENCY, ALERT, CRITICAL, ERROR, "
              "WARNING, NOTICE, INFO, DEBUG.")
@click.option("--cluster", "clusters", multiple=True)
@click.option("--since", help="Only alerts after: 30m, 2h, 7d (ago) or RFC 3339.")
@click.option("--until")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--by-rule", is_flag=True,
              help="One line per rule and cluster: how often, first and last time, most "
              "severe first.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def alerts_command(store_url: str, rules: tuple[str, ...], priority: str | None,
                   clusters: tuple[str, ...], since: str | None, until: str | None, limit: int,
                   by_rule: bool, fmt: str) -> None:
    """Alerts raised by the detection rules, newest first by time, each with its auditID.

    \b
      auditsink alerts --priority WARNING --since 24h
      auditsink alerts --by-rule --since 7d
      auditsink show AUDIT_ID        # the events behind an alert
    """
    store = open_existing_store(store_url)
    selector = alert_selector(rules, priority, clusters, since, until)
    if by_rule:
        groups = store.alert_groups(selector, limit=limit)
        if fmt == "json":
            click.echo(json.dumps([{**g, "priority": PRIORITIES[int(str(g["priority"]))],
                                    "first": format_micros(int(str(g["first"]))),
                                    "last": format_micros(int(str(g["last"])))}
                                   for g in groups], indent=2))
            return
        for g in groups:
            cluster = f" [{g['cluster']}]" if g["cluster"] else ""
            click.echo(printable(
                f"{PRIORITIES[int(str(g['priority']))]:<8} {g['count']:>6}x{cluster} "
                f"{g['rule']}  ({format_micros(int(str(g['first'])))} .. "
                f"{format_micros(int(str(g['last'])))})"))
        return
    found = store.alert_page(selector, limit=limit)
    if fmt == "json":
        click.echo(json.dumps([a.to_dict() for a in found], indent=2))
        return
    for alert in found:
        cluster = f" [{alert.cluster}]" if alert.cluster else ""
        click.echo(printable(f"{format_micros(alert.time)}{cluster} "
                             f"{PRIORITIES[alert.priority]:<8} {alert.rule}: "
                             f"{alert.output}  (auditID {alert.audit_id})"))

