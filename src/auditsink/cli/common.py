"""Options shared by several commands: the selector flags; ``--config`` and ``--store`` come
from the settings table (cli/options.py) and are re-exported here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from auditsink.cli.options import config_option, store_option  # noqa: F401 (re-exported)
from auditsink.store.base import Selector, Store, StoreError, open_store
from auditsink.timeutil import parse_when

F = Callable[..., Any]


def open_existing_store(url: str) -> Store:
    """Open a store for reading, with a clear error when it is missing."""
    import os

    from auditsink.store.sqlite import path_from_url

    try:
        if url.startswith("sqlite:") and not os.path.exists(path_from_url(url)):
            raise click.ClickException(
                f"no store at {path_from_url(url)}: run `auditsink serve` or `auditsink import` "
                "first, or pass --store sqlite:///PATH"
            )
        store = open_store(url)
        store.open(start_writer=False)  # type: ignore[call-arg]
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    return store


SELECTOR_FLAGS = (
    ("user", "users", "Username (repeatable)."),
    ("group", "groups", "User group (repeatable)."),
    ("verb", "verbs", "Verb: get, list, create, delete, ... (repeatable)."),
    ("resource", "resources", "Resource: pods, pods/exec, pods/* (repeatable)."),
    ("api-group", "api_groups", "API group, \"\" for core (repeatable)."),
    ("namespace", "namespaces", "Namespace (repeatable)."),
    ("name", "names", "Object name (repeatable)."),
    ("stage", "stages", "Stage: RequestReceived, ResponseStarted, ResponseComplete, Panic."),
    ("level", "levels", "Level: Metadata, Request, RequestResponse."),
    ("code", "codes", "Response code: 403 or a class like 4xx (repeatable)."),
    ("cluster", "clusters", "Cluster name (repeatable)."),
)


def selector_options(f: F) -> F:
    """The selector flags plus ``--since``/``--until``."""
    for flag, dest, help_text in reversed(SELECTOR_FLAGS):
        f = click.option(f"--{flag}", dest, multiple=True, help=help_text)(f)
    f = click.option("--until", help="Only events before: 2h (ago) or RFC 3339.")(f)
    f = click.option("--since", help="Only events after: 30m, 2h, 7d (ago) or RFC 3339.")(f)
    return f


def selector_from(kwargs: dict[str, Any]) -> Selector:
    """Build a :class:`Selector` from the selector flags, consuming them from ``kwargs``."""
    values = {dest: list(kwargs.pop(dest, ()) or ()) for _, dest, _ in SELECTOR_FLAGS}
    selector = Selector(**values)
    try:
        since, until = kwargs.pop("since", None), kwargs.pop("until", None)
        selector.since = parse_when(since) if since else None
        selector.until = parse_when(until) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return selector
