"""What every page shares: query parameters, the errors it answers, the cluster it is about."""

from __future__ import annotations

from typing import Any

from auditsink.query.params import limit_from
from auditsink.store.base import Store
from auditsink.web.urls import spell, unspell

Query = dict[str, list[str]]


class NotFound(Exception):
    """The page's subject does not exist (answered with 404)."""


class Invalid(Exception):
    """A request that cannot be answered (400), with the page to show around the error.

    The explorer keeps its query bar, form and time picker on screen with the message next to
    them, so the person can correct what they typed; other pages show just the message.
    """

    def __init__(self, message: str, page: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.page = page


def clean(query: Query) -> Query:
    """Drop empty values, which an HTML form sends for every untouched field."""
    kept = {k: [v for v in vs if v.strip()] for k, vs in query.items()}
    return {k: vs for k, vs in kept.items() if vs}


def int_param(query: Query, key: str, default: int, maximum: int) -> int:
    """A whole number from 1 to ``maximum`` (``default`` when absent); ValueError (400) else.

    >>> int_param({"limit": ["20"]}, "limit", 50, 500)
    20
    """
    return limit_from(query, default, maximum, key)


def clusters_of(query: Query) -> list[str]:
    """The clusters a page is restricted to (``cluster=`` repeated; ``""`` is the default)."""
    return [unspell(c) for c in query.get("cluster", [])]


def cluster_choice(store: Store, chosen: list[str]) -> dict[str, Any]:
    """What the header's cluster selector shows: every cluster ever stored, and the choice.

    It is shown on every page, even with one cluster, so the person always sees which
    cluster (or "all clusters") the page is about.
    """
    return {"clusters": store.clusters_seen(), "cluster": chosen[0] if len(chosen) == 1 else None,
            "cluster_filter": chosen, "cluster_pairs": [("cluster", spell(c)) for c in chosen]}
