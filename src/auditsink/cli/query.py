"""Read commands: ``query``, ``tail``, ``show``, ``stats`` and ``rejected``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from auditsink.cli.group import main
from auditsink.cli.common import config_option, open_existing_store, selector_from, selector_options, store_option
from auditsink.model import decode_item, to_log_line
from auditsink.printer import text_line
from auditsink.selector import SelectorError
from auditsink.rules.priority import PRIORITIES, RANK, parse_priority
from auditsink.store.base import AlertSelector, Selector, StoredEvent
from auditsink.textsafe import printable
from auditsink.timeutil import format_micros, parse_when

_TABLE_COLUMNS = ("TIME", "CLUSTER", "USER", "VERB", "RESOURCE", "NAMESPACE/NAME", "CODE", "STAGE")


def _row(stored: StoredEvent) -> tuple[str, ...]:
    event = decode_item(stored.raw)
    ref = event.objectRef
    resource = event.resource_path if ref else event.requestURI.split("?", 1)[0]
    target = "/".join(part for part in (ref.namespace, ref.name) if part) if ref else ""
    return (event.stageTimestamp, stored.cluster or "-", event.user.username or "(anonymous)",
            event.verb, resource, target or "-", str(event.code or "-"), event.stage)


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


def _selector(kwargs: dict[str, Any]) -> Selector:
    return selector_from(kwargs)


@main.command("query")
@config_option
@store_option
@selector_options
@click.option("--limit", default=100, show_default=True, help="At most this many events (newest first).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl", "text"]), default="table", show_default=True,
              help="jsonl is the audit-log format: feed it back to `import` or other tools.")
@click.option("--oldest-first", is_flag=True, help="Print in log order instead of newest first.")
def query_command(store_url: str, limit: int, fmt: str, oldest_first: bool, **kwargs: Any) -> None:
    """Find events: who deleted this deployment, what did alice do, every 403.

    \b
      auditsink query --verb delete --resource deployments --namespace demo
      auditsink query --user alice --since 2h
      auditsink query --code 403 --format jsonl
    """
    selector = _selector(kwargs)
    store = open_existing_store(store_url)
    try:
        events = store.query(selector, limit=limit)
    except SelectorError as exc:
        raise click.BadParameter(str(exc)) from None
    if oldest_first or fmt == "jsonl":
        events.reverse()
    print_events(events, fmt)


@main.command("tail")
@config_option
@store_option
@selector_options
@click.option("-n", "--lines", default=10, show_default=True, help="Start with this many recent events.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they are committed.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl", "table"]), default="text", show_default=True)
@click.option("--interval", default=0.5, show_default=True, help="Seconds between polls with --follow.")
def tail_command(store_url: str, lines: int, follow: bool, fmt: str, interval: float, **kwargs: Any) -> None:
    """Print the latest events, and with -f follow new ones as they are committed."""
    selector = _selector(kwargs)
    store = open_existing_store(store_url)
    try:
        recent = store.query(selector, limit=lines) if lines else []
    except SelectorError as exc:
        raise click.BadParameter(str(exc)) from None
    recent.reverse()
    print_events(recent, fmt)
    last = recent[-1].id if recent else store.last_id()  # type: ignore[attr-defined]
    try:
        while follow:
            page = store.query(selector, limit=1000, after_id=last, newest_first=False)
            if page:
                print_events(page, fmt, header=False)
                last = page[-1].id
            else:
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
    events = store.query(Selector(audit_ids=[audit_id]), limit=1000, newest_first=False)
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
@click.option("--top", default=10, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def stats_command(store_url: str, top: int, fmt: str, **kwargs: Any) -> None:
    """Top users, verbs, resources, namespaces, failures; events per hour."""
    selector = _selector(kwargs)
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
@click.option("--limit", default=20, show_default=True)
def rejected_command(store_url: str, limit: int) -> None:
    """Items that could not be decoded: when, why, and how they started."""
    store = open_existing_store(store_url)
    for entry in store.rejected(limit):
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.time))
        click.echo(printable(f"{when} {entry.cluster or '-'} {entry.error}") + "\n  " + printable(entry.body[:200].decode('utf-8', 'replace')))


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
@click.option("--priority", help="At least this severe: EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO, DEBUG.")
@click.option("--cluster", "clusters", multiple=True)
@click.option("--since", help="Only alerts after: 30m, 2h, 7d (ago) or RFC 3339.")
@click.option("--until")
@click.option("--limit", default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def alerts_command(store_url: str, rules: tuple[str, ...], priority: str | None,
                   clusters: tuple[str, ...], since: str | None, until: str | None, limit: int,
                   fmt: str) -> None:
    """Alerts raised by the detection rules, newest first, each with its auditID.

    \b
      auditsink alerts --priority WARNING --since 24h
      auditsink show AUDIT_ID        # the events behind an alert
    """
    store = open_existing_store(store_url)
    found = store.alerts(alert_selector(rules, priority, clusters, since, until), limit=limit)
    if fmt == "json":
        click.echo(json.dumps([a.to_dict() for a in found], indent=2))
        return
    for alert in found:
        cluster = f" [{alert.cluster}]" if alert.cluster else ""
        click.echo(printable(f"{format_micros(alert.time)}{cluster} {PRIORITIES[alert.priority]:<8} {alert.rule}: "
                   f"{alert.output}  (auditID {alert.audit_id})"))

