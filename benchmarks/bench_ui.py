"""How long does each web UI page take with a million events stored?

Builds (once, then reuses) a SQLite store of ``--events`` generated events (the mix of
benchmarks.generate_data) spread evenly over ``--hours`` hours, so the newest hour (the UI's
default range) holds about events/hours of them, plus an alert for every fifth delete.
Then it times, for each page, the view function alone (the dict the ``.json`` twin returns)
and the whole HTML answer (view + template), server-side, in milliseconds: the first (cold)
call and the median of ``--rounds`` more. The target is under 300 ms per page.

    python -m benchmarks.bench_ui                        # 1,000,000 events over 24 h
    python -m benchmarks.bench_ui --events 200000 --db /tmp/small.db
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import msgspec

from auditsink.model import decode_body
from auditsink.query.rollup import STATE_NAME, Rollup, rollup_for
from auditsink.store.base import Alert, Selector, format_key
from auditsink.store.sqlite import SQLiteStore
from auditsink.timeutil import format_micros
from auditsink.web import WebUI
from auditsink.web.views import alerts, events, history, overview, request, user
from benchmarks.generate_data import iter_events

RULES = [("K8s Resource Deleted", 6), ("Pod Exec or Attach", 5), ("Secret Read Burst", 4),
         ("Repeated Forbidden", 4), ("Cluster Role Bound to Anonymous", 2)]
CHUNK = 2000  # events per write: one group commit, one compressed blob, like a busy server


def build(path: str, n: int, hours: float) -> None:
    """Write ``n`` events spread over the last ``hours`` hours, and some alerts, to ``path``."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    store = SQLiteStore(f"sqlite:///{path}")
    store.open()
    encode = msgspec.json.encode
    end = int(time.time() * 1_000_000)
    start = end - int(hours * 3600 * 1_000_000)
    step = (end - start) // n
    started = time.perf_counter()
    lines: list[bytes] = []
    for i, event in enumerate(iter_events(n, seed=7, start_us=start)):
        # Spread the generator's dense timestamps over the whole range.
        when = start + i * step
        event["stageTimestamp"] = format_micros(when)
        event["requestReceivedTimestamp"] = format_micros(when - 1000)
        lines.append(encode(event))
        if len(lines) == CHUNK or i == n - 1:
            items, bad = decode_body(b"\n".join(lines))
            assert not bad, bad[:1]
            store.write(items)
            lines = []
            if (i + 1) % 100_000 < CHUNK:
                print(f"  {i + 1:>9,} events written ({time.perf_counter() - started:.0f} s)",
                      file=sys.stderr)
    alerts_found = []
    for number, stored in enumerate(store.iter_all(Selector(since=start, verbs=["delete"]))):
        if number % 5:
            continue
        rule, priority = RULES[number // 5 % len(RULES)]
        doc = msgspec.json.decode(stored.raw)
        alerts_found.append(Alert(
            time=start, rule=rule, priority=priority,
            output=f"{rule} (user={doc['user']['username']})",
            audit_id=doc["auditID"], event=stored.id, cluster=stored.cluster,
            fields={"ka.user.name": doc["user"]["username"]}))
    store.commit_consumed("bench", store.last_id(), alerts_found)
    store.close()
    print(f"built {n:,} events and {len(alerts_found):,} alerts in "
          f"{time.perf_counter() - started:.0f} s: {os.path.getsize(path) / 2**20:.0f} MiB",
          file=sys.stderr)


def pages(store: SQLiteStore) -> list[tuple[str, str, str, Callable[[], dict[str, Any]]]]:
    """(label, path, query string, view call) for every page, with realistic subjects."""
    recent = store.query(Selector(verbs=["create"], stages=["ResponseComplete"]), limit=1)[0]
    audit_id = msgspec.json.decode(recent.raw)["auditID"]
    # The most changed named object of the whole store: the history page's worst case.
    busiest = next(g for g in store.group_counts(
        Selector(verbs=history.CHANGES, stages=history.DONE), ["resource", "namespace", "name"], 50)
        if g["name"])
    res, ns, name = str(busiest["resource"]), str(busiest["namespace"]) or "-", str(busiest["name"])

    def q(text: str) -> dict[str, list[str]]:
        from urllib.parse import parse_qs

        return parse_qs(text)

    # Ranges relative to the stored events, so a store built earlier measures the same work.
    low, high = store.time_bounds(Selector()) or (0, 0)
    hour = urlencode({"since": format_micros(high + 1 - 3600 * 10**6),
                      "until": format_micros(high + 1)})
    everything = urlencode({"since": format_micros(low), "until": format_micros(high + 1)})
    bar = urlencode({"q": "user:alice -namespace:kube-system code:4xx"})
    # A page in the middle of the stored day, reached by its (time, id) cursor.
    middle = store.page(Selector(since=(low + high) // 2), 1, oldest_first=True)[0]
    halfway = urlencode({"range": "all", "before": format_key(middle.key)})
    # Follow mode catching up on 500 events (a burst) behind the newest position.
    follow = urlencode({"after_id": store.last_id() - 500})

    return [
        ("overview, default range", "/ui/overview", "", lambda: overview.view(store, {})),
        ("overview, newest hour", "/ui/overview", hour, lambda: overview.view(store, q(hour))),
        ("overview, everything (ALL)", "/ui/overview", everything,
         lambda: overview.view(store, q(everything))),
        ("events (no filter)", "/ui/events", "", lambda: events.view(store, {})),
        ("events, everything (ALL)", "/ui/events", "range=all",
         lambda: events.view(store, q("range=all"))),
        ("events user=alice", "/ui/events", "user=alice",
         lambda: events.view(store, q("user=alice"))),
        ("events user=alice, everything (ALL)", "/ui/events", "user=alice&range=all",
         lambda: events.view(store, q("user=alice&range=all"))),
        ("events namespace=demo verb=delete code=4xx", "/ui/events",
         "namespace=demo&verb=delete&code=4xx",
         lambda: events.view(store, q("namespace=demo&verb=delete&code=4xx"))),
        ("events q=user:alice -namespace:kube-system code:4xx", "/ui/events", bar,
         lambda: events.view(store, q(bar))),
        ("events (ALL), page halfway back (before=)", "/ui/events", halfway,
         lambda: events.view(store, q(halfway))),
        ("events follow: 500 after a log position", "/ui/events.json", follow,
         lambda: events.view(store, q(follow))),
        ("request view", f"/ui/requests/{audit_id}", "",
         lambda: request.view(store, {}, audit_id=audit_id)),
        (f"object history ({busiest['count']} changes)",
         f"/ui/objects/{res}/{ns}/{name}", "",
         lambda: history.view(store, {}, resource=res, namespace=ns, name=name)),
        ("user alice, newest hour", "/ui/users/alice", hour,
         lambda: user.view(store, q(hour), username="alice")),
        ("user alice, everything (ALL)", "/ui/users/alice", everything,
         lambda: user.view(store, q(everything), username="alice")),
        ("user system:apiserver, newest hour", "/ui/users/system:apiserver", hour,
         lambda: user.view(store, q(hour), username="system:apiserver")),
        ("alerts", "/ui/alerts", "", lambda: alerts.view(store, {})),
        ("alerts priority=warning", "/ui/alerts", "priority=warning",
         lambda: alerts.view(store, q("priority=warning"))),
    ]


def _ms(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--db", default="/tmp/auditsink-bench-ui.db")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true", help="build the store even if it exists")
    args = parser.parse_args()
    store = SQLiteStore(f"sqlite:///{args.db}")
    if args.rebuild or not os.path.exists(args.db):
        build(args.db, args.events, args.hours)
    else:
        print(f"reusing {args.db} (--rebuild to rebuild; its events are from when it was built)",
              file=sys.stderr)
    store.open(start_writer=False)
    ui = WebUI(store)
    total = store.last_id()
    # The first long-range overview folds the whole log into the rollup (query/rollup.py),
    # once per process; serve keeps it fresh afterwards. Timed apart from the pages.
    # serve snapshots the rollup into the store, and a restart starts from the snapshot: time
    # the first fold without one (an earlier run of this benchmark left one), then a restart.
    writer = SQLiteStore(f"sqlite:///{args.db}")
    writer.open()
    writer.call_in_writer(
        lambda conn: conn.execute("DELETE FROM state WHERE name = ?", (STATE_NAME,)))
    fold = _ms(rollup_for(store).refresh)
    snapshot = rollup_for(store).snapshot()
    writer.save_state(STATE_NAME, snapshot)
    writer.close()
    restart = _ms(Rollup(store).refresh)
    print(f"# rollup: first fold of the log {fold / 1000:.1f} s (once, at the first long-range "
          f"overview); its snapshot {len(snapshot) / 1e6:.2f} MB; after a restart, starting "
          f"from the snapshot {restart:.0f} ms", file=sys.stderr)
    print(f"# bench_ui: {total:,} events in {args.db}, Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs; ms server-side, cold / median of "
          f"{args.rounds}")
    print(f"{'page':<52} {'view cold':>10} {'view':>8} {'html':>8}")
    worst = whole = 0.0
    for label, path, query, call in pages(store):
        cold = _ms(call)
        views = [_ms(call) for _ in range(args.rounds)]
        htmls = [_ms(lambda p=path, q=query: ui.respond(p, q)) for _ in range(args.rounds)]
        answer = ui.respond(path, query)
        assert answer.status == 200, (label, answer.body[:300])
        html = statistics.median(htmls)
        slowest = max(html, cold)
        # Pages over the whole store scan every event: reported apart (docs/ui.md).
        if "(ALL)" in label:
            whole = max(whole, slowest)
        else:
            worst = max(worst, slowest)
        flag = "  > 300 ms" if slowest > 300 else ""
        print(f"{label:<52} {cold:>10.1f} {statistics.median(views):>8.1f} {html:>8.1f}{flag}")
    # Exports stream the whole result, a page of the store at a time.
    low, high = store.time_bounds(Selector()) or (0, 0)
    hour = urlencode({"since": format_micros(high + 1 - 3600 * 10**6),
                      "until": format_micros(high + 1)})
    for label, query in (("export JSONL, newest hour", hour), ("export CSV, newest hour", hour)):
        fmt = "jsonl" if "JSONL" in label else "csv"
        started = time.perf_counter()
        answer = ui.respond(f"/ui/events.{fmt}", query + "&rows=stages")
        lines = sum(chunk.count(b"\n") for chunk in answer.chunks or [])
        seconds = time.perf_counter() - started
        events_out = lines - (fmt == "csv")  # the CSV's header line is not an event
        print(f"{label:<52} {events_out:>10,} events {lines / seconds:>10,.0f} events/s")
    store.close()
    print(f"slowest page over a bounded range: {worst:.1f} ms "
          f"({'within' if worst <= 300 else 'OVER'} the 300 ms target); "
          f"over all {total:,} events: {whole:.1f} ms")


if __name__ == "__main__":
    main()
