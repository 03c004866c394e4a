"""``auditsink rules test|list|check``: Falco-format detection rules, offline."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import click

from auditsink.cli.group import main
from auditsink.model import BodyError, BodyTooLarge, decode_body, iter_file_bodies
from auditsink.rules import (
    BUILTIN, PRIORITIES, RuleLoadError, RuleSet, at_least, load_rule_files, load_rules,
)
from auditsink.rules.stateful import StatefulDetectors

def _RULES(f: Any) -> Any:
    """``--rules FILE...`` on top of the built-in rules, ``--no-default-rules`` without them."""
    f = click.option(
        "--no-default-rules",
        is_flag=True,
        help="Leave the built-in rules out: only the --rules files.",
    )(f)
    return click.option(
        "--rules",
        "rule_files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="Rule file loaded after the built-in rules, to tune or extend them "
        "(repeatable, in order).",
    )(f)


@main.group()
def rules() -> None:
    """Test, list and check detection rules (Falco format, source k8s_audit)."""


def _load(rule_files: tuple[str, ...], no_default_rules: bool) -> RuleSet:
    try:
        return load_rule_files(rule_files, default=not no_default_rules)
    except RuleLoadError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _events(files: tuple[str, ...], problems: list[str]) -> Iterator[bytes]:
    """Raw events of every file; unreadable bodies and items are noted in ``problems``."""
    for path in files:
        try:
            for body in iter_file_bodies(path):
                try:
                    good, bad = decode_body(body)
                except (BodyError, BodyTooLarge) as exc:
                    problems.append(f"{path}: rejected: {exc}")
                    continue
                for item in bad:
                    problems.append(f"{path}: item {item.index} skipped: {item.error}")
                for decoded in good:
                    yield decoded.raw
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")


@rules.command("test")
@_RULES
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one line per detection; json: one object per line "
    "(rule, priority, output, auditID).",
)
@click.option(
    "--min-priority",
    type=click.Choice([p.lower() for p in PRIORITIES], case_sensitive=False),
    default="debug",
    show_default=True,
    help="Only show detections at least this severe.",
)
@click.option(
    "--stateful/--no-stateful",
    default=True,
    show_default=True,
    help="Also run the burst detectors (secret read bursts, repeated 401/403 from one address).",
)
@click.argument(
    "event_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False)
)
def test_cmd(
    rule_files: tuple[str, ...],
    no_default_rules: bool,
    fmt: str,
    min_priority: str,
    stateful: bool,
    event_files: tuple[str, ...],
) -> None:
    """Run the rules over EVENT_FILES (audit logs, EventLists, .gz) and print what fires."""
    ruleset = _load(rule_files, no_default_rules)
    bursts = StatefulDetectors() if stateful else StatefulDetectors([])
    minimum = min_priority.upper()
    problems: list[str] = []
    events = 0
    counts: Counter[str] = Counter()
    for raw in _events(event_files, problems):
        events += 1
        for det in ruleset.evaluate(raw) + bursts.observe(raw):
            if not at_least(det.priority, minimum):
                continue
            counts[det.rule] += 1
            if fmt == "json":
                record = {
                    "rule": det.rule,
                    "priority": det.priority,
                    "output": det.output,
                    "auditID": det.auditID,
                    "time": det.time,
                    "tags": det.tags,
                }
                click.echo(json.dumps(record, separators=(",", ":")))
            else:
                click.echo(f"{det.time} {det.priority} {det.rule}: {det.output}")
    for problem in problems:
        click.echo(problem, err=True)
    click.echo(f"{events} events, {sum(counts.values())} detections", err=True)
    for rule, n in counts.most_common():
        click.echo(f"  {rule}: {n}", err=True)
    if problems:
        sys.exit(1)


@rules.command("list")
@_RULES
def list_cmd(rule_files: tuple[str, ...], no_default_rules: bool) -> None:
    """List the enabled rules (priority, name, tags), then the disabled and skipped ones."""
    ruleset = _load(rule_files, no_default_rules)
    for rule in ruleset.rules:
        click.echo(f"{rule.priority:<9} {rule.name}  [{', '.join(rule.tags)}]")
    for off in ruleset.disabled:
        click.echo(f"{'disabled':<9} {off.name}")
    for other in ruleset.skipped:
        click.echo(f"{'skipped':<9} {other.name} (source {other.source})")
    click.echo(
        f"{len(ruleset.rules)} enabled, {len(ruleset.disabled)} disabled, "
        f"{len(ruleset.skipped)} for other sources",
        err=True,
    )


@rules.command("check")
@click.option(
    "--with-default",
    is_flag=True,
    help="Load the built-in rules first (for files that override or append to them).",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def check_cmd(with_default: bool, files: tuple[str, ...]) -> None:
    """Load and compile FILES in order; print the first error (file, rule, position) or OK."""
    paths = ([str(BUILTIN)] if with_default else []) + list(files)
    try:
        ruleset = load_rules(paths)
    except RuleLoadError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"OK: {len(ruleset.rules)} rules enabled, {len(ruleset.disabled)} disabled, "
        f"{len(ruleset.skipped)} for other sources, {len(ruleset.collection.macros)} macros, "
        f"{len(ruleset.collection.lists)} lists"
    )
