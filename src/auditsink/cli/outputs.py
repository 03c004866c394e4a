"""``auditsink outputs``: where each output stands; ``outputs replay``: send a range again.

Both read the outputs from the same settings as ``serve`` (``outputs:`` in the config file,
``--forward``), so ``--config auditsink.yaml`` is all they need.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import click

from auditsink.cli.common import open_existing_store
from auditsink.cli.group import main
from auditsink.cli.options import call_service, settings_from, settings_options
from auditsink.forward.delivery import STATUS_STATE
from auditsink.store.base import Selector, Store
from auditsink.timeutil import format_micros, parse_when

PREFIX = "output:"


def _configured(settings: Any) -> dict[str, Any]:
    """name -> OutputConfig of the outputs the settings describe."""
    from auditsink.forward import OutputConfigError, parse_forward, parse_output
    from auditsink.settings import SettingsError

    configs = {}
    try:
        for index, data in enumerate(settings.outputs):
            config = parse_output(data, f"outputs[{index}]")
            configs[config.name] = config
        for spec in settings.forward:
            config = parse_forward(spec, settings.forward_format)
            configs[config.name] = config
    except OutputConfigError as exc:
        raise SettingsError(str(exc)) from None
    return configs


def status(store: Store, configs: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per output, configured here or known to the store by its cursor."""
    cursors = {name[len(PREFIX):]: pos for name, pos in store.cursors().items()
               if name.startswith(PREFIX)}
    dead_by_output: dict[str, list[Any]] = {}
    for letter in store.dead_letters():
        dead_by_output.setdefault(letter.consumer[len(PREFIX):], []).append(letter)
    last = getattr(store, "last_id", lambda: 0)()
    rows = []
    for name in sorted(set(configs) | set(cursors) | set(dead_by_output)):
        position = cursors.get(name, 0)
        waiting = store.query(Selector(), limit=1, after_id=position, newest_first=False)
        dead = dead_by_output.get(name, [])
        saved = store.load_state(STATUS_STATE + name)
        failing = json.loads(saved) if saved else {}
        rows.append({
            "name": name, "type": configs[name].type if name in configs else "",
            "format": configs[name].format if name in configs else "",
            "configured": name in configs, "position": position,
            "lag_events": max(0, last - position),
            "next_event_time": _event_time(waiting[0].raw) if waiting else "",
            "dead_letters": len(dead), "dead_events": sum(d.events for d in dead),
            "last_error": dead[-1].error if dead else "",
            "failing_since": format_micros(int(failing["failing_since"] * 1e6))
            if failing.get("failing_since") else "",
            "failed_attempts": failing.get("failed_attempts", 0),
            "failure": failing.get("last_error", ""),
        })
    return rows


def _event_time(raw: bytes) -> str:
    from auditsink.model import decode_item

    try:
        return decode_item(raw).stageTimestamp
    except Exception:  # noqa: BLE001 - a status line, not worth failing over
        return ""


@main.command("outputs")
@settings_options("outputs")
@click.argument("action", required=False, type=click.Choice(["replay"]))
@click.argument("name", required=False)
@click.option("--since", help="replay: events after 30m, 2h, 7d (ago) or RFC 3339.")
@click.option("--until", help="replay: events before 2h (ago) or RFC 3339.")
@click.option("--dead-letters", is_flag=True,
              help="replay: send the output's dead letters again (each is forgotten once "
              "delivered).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def outputs_command(action: str | None, name: str | None, since: str | None, until: str | None,
                    dead_letters: bool, fmt: str, **kwargs: Any) -> None:
    """Each output's position in the log, its lag and its dead letters; with ``replay NAME``,
    send a range of stored events to output NAME again (its cursor does not move).

    \b
      auditsink outputs --config auditsink.yaml
      auditsink outputs replay siem --since 2h --until 1h --config auditsink.yaml
      auditsink outputs replay siem --dead-letters --config auditsink.yaml

    A replay chooses events by time (--since/--until) and sends them through the output's own
    filter, policy and format, in log order, with its retries.
    """
    settings = settings_from(kwargs, "outputs")
    configs = call_service(_configured, settings)
    if action == "replay":
        if not name:
            raise click.UsageError("outputs replay NAME: name the output to send to")
        _replay(settings, configs, name, since, until, dead_letters)
        return
    if name or since or until or dead_letters:
        raise click.UsageError("NAME, --since, --until and --dead-letters go with `outputs replay`")
    store = open_existing_store(settings.store)
    try:
        rows = status(store, configs)
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no outputs: configure `outputs:` in the config file or --forward TYPE:TARGET")
        return
    for row in rows:
        where = f"at {row['position']}, {row['lag_events']} events behind"
        if row["next_event_time"]:
            where += f" (next: {row['next_event_time']})"
        kind = f"{row['type']}/{row['format']}" if row["configured"] else "not configured here"
        dead = (f"; {row['dead_letters']} dead letters ({row['dead_events']} events), last: "
                f"{row['last_error'][:120]}") if row["dead_letters"] else "; no dead letters"
        click.echo(f"{row['name']}  [{kind}]  {where}{dead}")
        if row["failing_since"]:
            click.echo(f"  failing since {row['failing_since']} ({row['failed_attempts']} "
                       f"attempts): {row['failure'][:200]}")


def _replay(settings: Any, configs: dict[str, Any], name: str, since: str | None,
            until: str | None, dead_letters: bool) -> None:
    if name not in configs:
        known = ", ".join(sorted(configs)) or "none"
        raise click.UsageError(f"no output named {name!r} in these settings (configured: {known})")
    if not dead_letters and not since:
        raise click.UsageError("say what to replay: --since (and --until), or --dead-letters")
    try:
        selector = Selector(since=parse_when(since) if since else None,
                            until=parse_when(until) if until else None)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    from auditsink.forward import Forwarder
    from auditsink.service import open_store_from

    store = call_service(open_store_from, settings)
    forwarder = Forwarder(store, configs[name])
    stop = threading.Event()
    sent = failed = 0
    try:
        if dead_letters:
            for dead in store.dead_letters(configs[name].cursor):
                events = [e for e in store.query(Selector(), limit=dead.last - dead.first + 1,
                                                 after_id=dead.first - 1, newest_first=False)
                          if e.id <= dead.last]
                ok, count = _send(forwarder, events, stop)
                if ok:
                    store.drop_dead_letter(dead.id)
                    sent += count
                else:
                    failed += count
        if since:
            batch: list[Any] = []
            for event in store.iter_all(selector):
                batch.append(event)
                if len(batch) >= forwarder.batch:
                    ok, count = _send(forwarder, batch, stop)
                    sent, failed = (sent + count, failed) if ok else (sent, failed + count)
                    batch = []
            if batch:
                ok, count = _send(forwarder, batch, stop)
                sent, failed = (sent + count, failed) if ok else (sent, failed + count)
    finally:
        forwarder.output.close()
        store.close()
    span = f" from {format_micros(selector.since)}" if selector.since else ""
    click.echo(f"replayed {sent} events to {name}{span}" + (f"; {failed} failed" if failed else ""),
               err=True)
    if failed:
        raise SystemExit(1)


def _send(forwarder: Any, events: list[Any], stop: threading.Event) -> tuple[bool, int]:
    docs = forwarder.encode_all(events)
    if not docs:
        return True, 0
    outcome, _ = forwarder.send_docs(docs, stop)
    return bool(outcome and outcome.delivered), len(docs)
