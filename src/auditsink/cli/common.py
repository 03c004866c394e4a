"""Options shared by several commands: ``--config``, ``--store`` and the selector flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import yaml

from auditsink.store.base import DEFAULT_STORE_URL, Selector, Store, StoreError, open_store
from auditsink.timeutil import parse_when

F = Callable[..., Any]


def _load_config(ctx: click.Context, param: click.Parameter, path: str | None) -> str | None:
    """Read the YAML config file into the command's defaults (flags still win)."""
    if not path:
        return path
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of settings at the top level")
    # Keys are the long option names (`store`, `format`, `match`), dashes or underscores.
    known: dict[str, str] = {}
    for param in ctx.command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--") and param.name and param.name != "config":
                known[opt[2:]] = param.name
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        name = known.get(str(key).replace("_", "-"))
        if name is None:
            raise click.BadParameter(
                f"{path}: unknown key {key!r} for `auditsink {ctx.command.name}`; known keys: "
                + ", ".join(sorted(known))
            )
        defaults[name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


def config_option(f: F) -> F:
    """``--config FILE``: YAML whose keys are this command's long option names."""
    return click.option(
        "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
        callback=_load_config, envvar="AUDITSINK_CONFIG",
        help="YAML file of settings (keys are option names, e.g. listen, store).",
    )(f)


def store_option(f: F) -> F:
    """``--store URL``."""
    return click.option(
        "--store", "store_url", default=DEFAULT_STORE_URL, show_default=True, envvar="AUDITSINK_STORE",
        help="Where events are kept: sqlite:///PATH (relative) or sqlite:////abs/path.",
    )(f)


def open_existing_store(url: str) -> Store:
    """Open a store for reading, with a clear error when it is missing."""
    import os

    from auditsink.store.sqlite import path_from_url

    if url.startswith("sqlite:") and not os.path.exists(path_from_url(url)):
        raise click.ClickException(
            f"no store at {path_from_url(url)}: run `auditsink serve` or `auditsink import` first, "
            "or pass --store sqlite:///PATH"
        )
    try:
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
