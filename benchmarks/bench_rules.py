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
"""

from __future__ import annotations

import argparse
import platform
import sys
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000, help="generated events")
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
