"""Options shared by several commands: the selector flags; ``--config`` and ``--store`` come
from the settings table (cli/options.py) and are re-exported here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from auditsink.cli.options import config_option, store_option  # noqa: F401 (re-exported)
from auditsink.selector import FIELDS, Selector, SelectorError, from_pairs, parse_terms
from auditsink.store.base import Store, StoreError, open_store

F = Callable[..., Any]


def open_existing_store(url: str) -> Store:
    """Open a store for reading, with a clear error when it is missing; it is closed when
    the command ends."""
    import os

    from auditsink.store.sqlite import path_from_url

    try:
        if url.startswith("sqlite:") and not os.path.exists(path_from_url(url)):
            raise click.ClickException(
                f"no store at {path_from_url(url)}: run `auditsink serve` or `auditsink import` "
                "first, or pass --store sqlite:///PATH"
            )
        store = open_store(url)
        store.open(start_writer=False)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    # Closed when the command ends: PostgreSQL connections are not left to the collector.
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(store.close)
    return store


# (flag, Selector attribute, help) of every selector field, from the one table.
SELECTOR_FLAGS = tuple((spec.flag, spec.attr, f"{spec.help} Repeatable: OR.")
                       for spec in FIELDS)


def query_argument(f: F) -> F:
    """An optional QUERY argument in the query-bar syntax, for commands whose only argument
    it is (``auditsink query 'user:alice -namespace:kube-system'``)."""
    return click.argument("query_text", metavar="[QUERY]", required=False)(f)


def selector_options(f: F) -> F:
    """The selector flags of every field, ``--since``/``--until`` and ``-q/--query`` (the
    query-bar syntax: ``user:alice -namespace:kube-system code:4xx``)."""
    for spec in reversed(FIELDS):
        f = click.option(f"--{spec.flag}", spec.attr, multiple=True, metavar=spec.syntax.upper()
                         if " " not in spec.syntax else "VALUE",
                         help=f"{spec.help} Repeatable: OR.")(f)
    f = click.option("--until", help="Only events before: 2h (ago) or RFC 3339.")(f)
    f = click.option("--since", help="Only events after: 30m, 2h, 7d (ago) or RFC 3339.")(f)
    return click.option("-q", "--query", "query_option", metavar="QUERY",
                        help="Terms like user:alice -namespace:kube-system code:4xx "
                        "(docs/selectors.md); adds to the flags.")(f)


def selector_from(kwargs: dict[str, Any]) -> Selector:
    """The :class:`Selector` of the selector flags and QUERY, consuming them from ``kwargs``.

    Flags and query terms add up: ``auditsink query --verb delete 'user:alice'``.
    """
    pairs: list[tuple[str, str]] = []
    for spec in FIELDS:
        pairs += [(spec.name, value) for value in kwargs.pop(spec.attr, ()) or ()]
    for key in ("since", "until"):
        value = kwargs.pop(key, None)
        if value:
            pairs.append((key, value))
    texts = (kwargs.pop("query_text", None), kwargs.pop("query_option", None))
    try:
        for text in texts:
            if text:
                pairs += parse_terms(text)
        return from_pairs(pairs)
    except SelectorError as exc:
        raise click.BadParameter(str(exc)) from None
