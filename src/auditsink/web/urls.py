"""Links between pages, built in one place so views, templates and tests agree.

A path segment that itself ends in ``.json`` or ``.html`` gets an explicit ``.html`` suffix,
so that ``/ui/objects/configmaps/demo/settings.json.html`` is the page of the ConfigMap
``settings.json`` and never its JSON twin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlencode

CLUSTER_SCOPED = "-"  # the namespace segment of cluster-scoped objects (no namespace is "-")


def _seg(value: str) -> str:
    return quote(value, safe=":@")


def _page(path: str, last: str) -> str:
    tail = _seg(last)
    if last.endswith((".json", ".html")):
        tail += ".html"
    return f"{path}/{tail}"


def query_string(params: Mapping[str, str | Sequence[str] | None]) -> str:
    """``{"user": "alice", "verb": ["get", "list"]}`` -> ``?user=alice&verb=get&verb=list``."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None or value == "":
            continue
        for one in [value] if isinstance(value, str) else value:
            if one != "":
                pairs.append((key, one))
    return "?" + urlencode(pairs) if pairs else ""


def request_url(audit_id: str) -> str:
    """The request view of one auditID."""
    return _page("/ui/requests", audit_id)


def object_url(resource: str, namespace: str, name: str) -> str:
    """The history of one object; cluster-scoped objects use ``-`` as namespace."""
    return _page(f"/ui/objects/{_seg(resource)}/{_seg(namespace or CLUSTER_SCOPED)}", name)


def user_url(username: str, **params: str | None) -> str:
    """The activity page of one identity."""
    return _page("/ui/users", username) + query_string(params)


def events_url(**params: str | Sequence[str] | None) -> str:
    """The events explorer with filters."""
    return "/ui/events" + query_string(params)


def json_twin(path: str, query: str = "") -> str:
    """The ``.json`` twin of a page path (``/`` -> ``/ui/overview.json``)."""
    if path in ("/", "/ui", "/ui/"):
        path = "/ui/overview"
    return path.removesuffix(".html") + ".json" + (f"?{query}" if query else "")
