"""How long do detection rules take per event? ``python -m benchmarks.bench_rules``

Each event is the raw JSON bytes of one audit event, as the rules consumer will read it from the
store; the time is the whole ``RuleSet.evaluate`` call: JSON decode, index lookup, conditions,
and rendering the detections that fire. Event mixes:

- ``fixture``: the real kube-apiserver 1.20 capture in ../shared (974 events: an API-server
  bootstrap plus a user session), when it is there;
- ``generated``: 20,000 events from benchmarks.generate_data (the fixture's shape with a running
  cluster's users: controllers, kubelets, the scheduler);
- ``threats``: every event of Falco's k8saudit traces (privileged pods, RBAC changes, exec...),
  where most rules have work to do.

Rule sets: our built-in rules, and Falco's upstream k8s_audit_rules.yaml when ../shared is there.
Times are the best of several rounds, in microseconds per event.

``--consumer`` measures the rules consumer instead (detect.py), over an SQLite store holding
the mix: each page read with ``store.follow`` (only the rows some rule's or burst detector's
filter keeps are fetched and decoded) against the full read it replaced, every event fetched
with ``store.query`` and evaluated by the rules and the burst detectors, in the same run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from auditsink.model import BodyError, decode_body, iter_file_bodies
from auditsink.rules import RuleSet, load_rules
from benchmarks.generate_data import generate_events

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"  # copies of ../shared (its README)
FIXTURE = DATA / "fixtures" / "kube-apiserver-1.20" / "audit.log"
FALCO = DATA / "conformance" / "falco"


def _raw_events(path: Path) -> list[bytes]:
    raws: list[bytes] = []
    for body in iter_file_bodies(str(path)):
        try:
            good, _ = decode_body(body)
        except BodyError:
            continue
        raws.extend(item.raw for item in good)
    return raws


def mixes(generated: int) -> dict[str, list[bytes]]:
    """The event mixes that exist on this machine, by name."""
    out: dict[str, list[bytes]] = {}
    if FIXTURE.exists():
        out["fixture"] = _raw_events(FIXTURE)
    encode = msgspec.json.encode
    out["generated"] = [encode(e) for e in generate_events(generated, seed=1)]
    if FALCO.exists():
        out["threats"] = [
            raw for p in sorted((FALCO / "traces").glob("*.json")) for raw in _raw_events(p)
        ]
    return out


def per_event_us(evaluate: Callable[[bytes], object], events: list[bytes], rounds: int) -> float:
    """Best-of-``rounds`` mean time of one call, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for raw in events:
            evaluate(raw)
        best = min(best, (time.perf_counter_ns() - start) / len(events))
    return best / 1000


def consumer(ruleset: RuleSet, raws: list[bytes], rounds: int) -> None:
    """The rules consumer's µs per event over a store of ``raws``: filtered, and full."""
    from auditsink.detect import Detector
    from auditsink.rules.stateful import StatefulDetectors
    from auditsink.store.base import Selector
    from auditsink.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(f"sqlite:///{folder}/rules.db")
        store.open()
        for start in range(0, len(raws), 400):
            items, _ = decode_body(b'{"kind":"EventList","items":['
                                   + b",".join(raws[start:start + 400]) + b"]}")
            store.write(items)
        stop = threading.Event()
        stored = store.last_id()

        def filtered() -> tuple[int, int]:
            detector = Detector(store, ruleset, stateful=StatefulDetectors())
            after = fired = 0
            while page := store.follow(after, detector.batch, detector.filters):
                fired += len(detector.process(page, stop).alerts)
                after = page.last
            return fired, detector.decoded

        def full() -> tuple[int, int]:
            bursts = StatefulDetectors()
            after = fired = read = 0
            while page := store.query(Selector(), 1000, after_id=after, newest_first=False):
                for stored in page:
                    fired += len(ruleset.evaluate(stored.raw)) + len(bursts.observe(stored.raw))
                read += len(page)
                after = page[-1].id
            return fired, read

        for name, run in (("filtered (follow)", filtered), ("full (query)", full)):
            best = float("inf")
            for _ in range(rounds):
                start = time.perf_counter_ns()
                fired, decoded = run()
                best = min(best, (time.perf_counter_ns() - start) / stored)
            print(f"  consumer, {name:<20} {best / 1000:7.2f}   {fired} detections, "
                  f"{decoded / stored:.1%} of the {stored} events decoded")
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000, help="generated events")
    parser.add_argument("--consumer", action="store_true",
                        help="the rules consumer over a store, filtered against full")
    args = parser.parse_args(argv)

    rulesets: dict[str, RuleSet] = {"builtin": load_rules(None)}
    if FALCO.exists():
        rulesets["falco-upstream"] = load_rules([FALCO / "k8s_audit_rules.yaml"])
    events = mixes(args.events)
    print(
        f"python {platform.python_version()} on {platform.machine()} "
        f"({platform.processor() or '?'})"
    )
    print(f"msgspec {msgspec.__version__}; best of {args.rounds} rounds; microseconds per event")
    decode = msgspec.json.Decoder().decode
    for mix, raws in events.items():
        print(
            f"\n{mix}: {len(raws)} events, {sum(map(len, raws)) / len(raws):.0f} bytes on average"
        )
        if args.consumer:
            for name, ruleset in rulesets.items():
                print(f"  {name} ({len(ruleset.rules)} rules, and the burst detectors):")
                consumer(ruleset, raws, args.rounds)
            continue
        print(f"  {'json decode only (floor)':<28} {per_event_us(decode, raws, args.rounds):7.2f}")
        for name, ruleset in rulesets.items():
            fired = sum(len(ruleset.evaluate(raw)) for raw in raws)
            took = per_event_us(ruleset.evaluate, raws, args.rounds)
            print(
                f"  {name + f' ({len(ruleset.rules)} rules)':<28} {took:7.2f}   {fired} detections"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
