"""What a policy would have done to traffic we already have: per event, per rule, in bytes.

The projected size of an event is the size of what :func:`apply_decision` keeps (bodies
stripped when the level goes down), so the estimate is what ``serve --policy`` would store.
When the policy asks for more than the API server recorded, the recorded size is used, which
underestimates; the report says how many events that concerns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from auditsink.admit.apply import apply_decision
from auditsink.admit.policy import NONE, Decision, Policy
from auditsink.model import LEVEL_RANK, LEVELS, Item


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event through the policy: the decision, and the item kept (None when dropped)."""

    item: Item
    decision: Decision
    kept: Item | None

    @property
    def logged(self) -> bool:
        return self.kept is not None

    def as_json(self) -> dict[str, object]:
        """The ``simulate --format json`` record of this event."""
        event = self.item.event
        return {
            "auditID": event.auditID,
            "stage": event.stage,
            "level": self.decision.level,
            "omitStages": sorted(self.decision.omit_stages),
            "logged": self.logged,
            "rule": self.decision.rule,
            "recordedLevel": event.level,
        }


@dataclass
class Tally:
    """Events and bytes received, and what is left of them after the policy."""

    events: int = 0
    bytes: int = 0
    kept_events: int = 0
    kept_bytes: int = 0

    def add(self, received: int, kept: int | None) -> None:
        self.events += 1
        self.bytes += received
        if kept is not None:
            self.kept_events += 1
            self.kept_bytes += kept


@dataclass
class Simulation:
    """Totals of a simulation run; feed it with :meth:`observe` or :func:`simulate`."""

    policy: Policy
    total: Tally = field(default_factory=Tally)
    by_rule: dict[int | None, Tally] = field(default_factory=dict)
    by_level: dict[str, Tally] = field(default_factory=dict)
    dropped_by_level: Tally = field(default_factory=Tally)
    dropped_by_stage: dict[str, Tally] = field(default_factory=dict)
    downgraded: int = 0
    upgraded: int = 0

    def observe(self, item: Item) -> Outcome:
        """Evaluate one event, count it, and return what happened to it."""
        decision = self.policy.evaluate_event(item.event)
        kept = apply_decision(decision, item)
        received = len(item.raw)
        kept_size = len(kept.raw) if kept is not None else None
        self.total.add(received, kept_size)
        self.by_rule.setdefault(decision.rule, Tally()).add(received, kept_size)
        self.by_level.setdefault(decision.level, Tally()).add(received, kept_size)
        if kept is None:
            if decision.level == NONE:
                self.dropped_by_level.add(received, None)
            else:
                self.dropped_by_stage.setdefault(item.event.stage, Tally()).add(received, None)
        else:
            recorded = LEVEL_RANK.get(item.event.level, 0)
            new = LEVEL_RANK[decision.level]
            self.downgraded += new < recorded
            self.upgraded += new > recorded
        return Outcome(item, decision, kept)

    @property
    def cut_percent(self) -> float:
        """Share of the received bytes the policy removes, in percent."""
        if not self.total.bytes:
            return 0.0
        return 100.0 * (self.total.bytes - self.total.kept_bytes) / self.total.bytes


def iter_outcomes(
    policy: Policy, items: Iterable[Item], sim: Simulation | None = None
) -> Iterator[Outcome]:
    """Each event's outcome, in order; counted into ``sim`` when given."""
    sim = sim or Simulation(policy)
    for item in items:
        yield sim.observe(item)


def simulate(policy: Policy, items: Iterable[Item]) -> Simulation:
    """Run the policy over ``items`` (files, or the store later) and return the totals."""
    sim = Simulation(policy)
    for item in items:
        sim.observe(item)
    return sim


def format_report(sim: Simulation) -> str:
    """The human report of ``auditsink policy simulate``."""
    total = sim.total
    rules = sim.policy.rules
    lines = [
        f"Policy {sim.policy.file}: {total.events} events, {human_size(total.bytes)} received",
        "",
    ]
    lines.append(
        f"{'rule':>4}  {'line':>4}  {'events':>7}  {'received':>10}  {'kept':>7}  "
        f"{'projected':>10}  selector"
    )
    for index in sorted(sim.by_rule, key=lambda i: (i is None, i or 0)):
        tally = sim.by_rule[index]
        if index is None:
            label, line = "(no rule matched: None)", "-"
        else:
            label, line = rules[index].summary(), str(rules[index].line or "-")
        lines.append(
            f"{'-' if index is None else index:>4}  {line:>4}  {tally.events:>7}  "
            f"{human_size(tally.bytes):>10}"
            f"  {tally.kept_events:>7}  {human_size(tally.kept_bytes):>10}  {label}"
        )
    unused = [r.index for r in rules if r.index not in sim.by_rule]
    if unused:
        lines.append(f"rules that matched no event: {', '.join(map(str, unused))}")
    lines += ["", f"{'level':<16}  {'events':>7}  {'kept':>7}  {'projected':>10}"]
    for level in LEVELS[::-1]:
        if level in sim.by_level:
            tally = sim.by_level[level]
            lines.append(
                f"{level:<16}  {tally.events:>7}  {tally.kept_events:>7}  "
                f"{human_size(tally.kept_bytes):>10}"
            )
    lines.append("")
    dropped = total.events - total.kept_events
    lines.append(
        f"Dropped: {dropped} events, {human_size(total.bytes - total.kept_bytes - _shrunk(sim))}"
    )
    lines.append(
        f"  level None: {sim.dropped_by_level.events} events, "
        f"{human_size(sim.dropped_by_level.bytes)}"
    )
    for stage, tally in sorted(sim.dropped_by_stage.items()):
        lines.append(f"  omitStages {stage}: {tally.events} events, {human_size(tally.bytes)}")
    if sim.downgraded:
        lines.append(
            f"Downgraded: {sim.downgraded} events kept at a lower level than recorded "
            f"(bodies stripped: {human_size(_shrunk(sim))} saved)"
        )
    if sim.upgraded:
        lines.append(
            f"Upgraded: {sim.upgraded} events would be logged at a higher level than recorded; "
            "they are counted at their recorded size, so the projection is an underestimate"
        )
    lines.append("")
    kept_pct = 100.0 * total.kept_events / total.events if total.events else 0.0
    lines.append(
        f"Projected: {total.kept_events} of {total.events} events ({kept_pct:.1f}%), "
        f"{human_size(total.kept_bytes)} of {human_size(total.bytes)}: this policy cuts "
        f"{sim.cut_percent:.1f}% of the volume"
    )
    return "\n".join(lines)


def _shrunk(sim: Simulation) -> int:
    """Bytes saved by downgrades (kept events that got smaller)."""
    kept_received = sum(t.bytes for t in sim.by_level.values()) - sim.dropped_by_level.bytes
    kept_received -= sum(t.bytes for t in sim.dropped_by_stage.values())
    return kept_received - sim.total.kept_bytes


def human_size(n: int) -> str:
    """Bytes for people: ``human_size(1536)`` is ``'1.5 KiB'``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    unit = "B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):  # noqa: B007 - the last unit reached is the one
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"
