"""``auditsink policy check|simulate|suggest``: the audit policy language, offline."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from auditsink.admit.policy import Policy, PolicyError, load_policy
from auditsink.admit.shadow import find_shadowed
from auditsink.admit.simulate import Simulation, format_report, human_size, iter_outcomes
from auditsink.admit.sources import iter_file_items
from auditsink.admit.spec import Problem, parse_policy
from auditsink.admit.suggest import suggest_policy
from auditsink.cli.group import main
from auditsink.cli.common import (
    config_option, open_existing_store, selector_from, selector_options, store_option,
)
from auditsink.model import BadItem, Item, decode_item

def _event_source(f: Any) -> Any:
    """EVENT_FILES, or (when none are given) the store with the usual selector flags."""
    f = selector_options(f)
    f = store_option(f)
    f = config_option(f)
    return click.argument(
        "event_files", nargs=-1, type=click.Path(exists=True, dir_okay=False)
    )(f)


def _items(event_files: tuple[str, ...], store_url: str, selector_flags: dict[str, Any],
           bad: list[BadItem]) -> Iterator[Item]:
    if event_files:
        return iter_file_items(event_files, bad)
    selector = selector_from(selector_flags)
    store = open_existing_store(store_url)
    return (Item(event=decode_item(e.raw), raw=e.raw) for e in store.iter_all(selector))


@main.group()
def policy() -> None:
    """Check, simulate and suggest kube-apiserver audit policies (audit.k8s.io/v1)."""


@policy.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def check(file: str) -> None:
    """Validate FILE as kube-apiserver would, and warn about rules that can never match.

    Problems are printed as FILE:LINE: severity: message, in file order; the exit code is 1
    when kube-apiserver would refuse the policy.
    """
    with open(file, "rb") as fh:
        spec, problems = parse_policy(fh.read(), file)
    if spec is not None:
        for shadow in find_shadowed(spec):
            rule = spec.rules[shadow.rule]
            message = f"rules[{shadow.rule}] can never match: {shadow.reason} ({rule.summary()})"
            problems.append(Problem("warning", message, file, rule.line))
    for problem in sorted(problems, key=lambda p: p.line or 0):
        click.echo(str(problem))
    if spec is None:
        errors = sum(p.severity == "error" for p in problems)
        click.echo(f"{file}: {errors} error(s): kube-apiserver would refuse this policy")
        sys.exit(1)
    click.echo(f"{file}: OK, {len(spec.rules)} rules")


@policy.command()
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The audit policy to try (audit.k8s.io/v1 YAML or JSON).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["report", "json"]),
    default="report",
    show_default=True,
    help="report: totals per rule and level; json: one object per event.",
)
@_event_source
def simulate(policy_file: str, fmt: str, event_files: tuple[str, ...], store_url: str,
             **selector_flags: Any) -> None:
    """Replay EVENT_FILES (audit logs, EventLists, .gz), or the stored events matching the
    selector flags when no file is given, through a policy."""
    loaded = _load(policy_file)
    bad: list[BadItem] = []
    sim = Simulation(loaded)
    outcomes = iter_outcomes(loaded, _items(event_files, store_url, selector_flags, bad), sim)
    if fmt == "json":
        for outcome in outcomes:
            click.echo(json.dumps(outcome.as_json(), separators=(",", ":")))
    else:
        for _ in outcomes:
            pass
        click.echo(format_report(sim))
    _report_bad(bad, sim.total.events)


@policy.command()
@_event_source
def suggest(event_files: tuple[str, ...], store_url: str, **selector_flags: Any) -> None:
    """Propose a policy (to stdout) from the traffic in EVENT_FILES or, when none is given, in
    the store; the savings go to stderr."""
    bad: list[BadItem] = []
    result = suggest_policy(_items(event_files, store_url, selector_flags, bad))
    click.echo(result.text, nl=False)
    sim = result.simulation
    total = sim.total
    share = 100.0 * total.kept_events / total.events if total.events else 0.0
    click.echo(
        f"On this traffic the suggested policy keeps {total.kept_events} of {total.events} events "
        f"({share:.1f}%) and {human_size(total.kept_bytes)} of {human_size(total.bytes)}: "
        f"it cuts {sim.cut_percent:.1f}% of the volume.",
        err=True,
    )
    _report_bad(bad, total.events)


def _load(file: str) -> Policy:
    try:
        loaded = load_policy(file)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    for warning in loaded.warnings:
        click.echo(str(warning), err=True)
    return loaded


def _report_bad(bad: list[BadItem], events: int) -> None:
    if bad:
        click.echo(f"skipped {len(bad)} undecodable event(s); first: {bad[0].error}", err=True)
        if not events:
            # Nothing could be read: an empty report would look like an answer.
            raise click.ClickException("no audit events could be read from the input")
