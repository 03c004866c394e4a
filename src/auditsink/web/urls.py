"""Links between pages, built in one place so views, templates and tests agree.

A path segment that itself ends in ``.json`` or ``.html`` gets an explicit ``.html`` suffix,
so that ``/ui/objects/configmaps/demo/settings.json.html`` is the page of the ConfigMap
``settings.json`` and never its JSON twin.

Every link that is about events carries their cluster (design.md: every answer carries its
cluster). In a query string an empty value is written ``""``, as in the query bar
(``cluster:""`` is the default cluster, ``apiGroup:""`` the core group): an HTML form sends
every untouched field as an empty value, so a bare empty value means "not given".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, urlencode

CLUSTER_SCOPED = "-"  # the namespace segment of cluster-scoped objects (no namespace is "-")
EMPTY = '""'  # an empty value in a query string (see the module docstring)

Params = Mapping[str, str | Sequence[str] | None]


def _seg(value: str) -> str:
    return quote(value, safe=":@")


def _page(path: str, last: str) -> str:
    tail = _seg(last)
    if last.endswith((".json", ".html")):
        tail += ".html"
    return f"{path}/{tail}"


def spell(value: str) -> str:
    """A value as a query string carries it: ``""`` for the empty string."""
    return value if value != "" else EMPTY


def unspell(value: str) -> str:
    """The inverse of :func:`spell`."""
    return "" if value == EMPTY else value


def query_string(params: Params | Iterable[tuple[str, str]]) -> str:
    """``{"user": "alice", "verb": ["get", "list"]}`` -> ``?user=alice&verb=get&verb=list``.

    ``None`` and ``""`` leave a parameter out; pairs are taken as they are (already spelled).
    """
    pairs: list[tuple[str, str]] = []
    items = params.items() if isinstance(params, Mapping) else [(k, v) for k, v in params]
    for key, value in items:
        if value is None or value == "":
            continue
        for one in [value] if isinstance(value, str) else value:
            if one != "":
                pairs.append((key, one))
    return "?" + urlencode(pairs) if pairs else ""


def _cluster(cluster: str | None) -> str | None:
    return None if cluster is None else spell(cluster)


def request_url(audit_id: str, cluster: str | None = None) -> str:
    """The request view of one auditID in one cluster (auditIDs are not unique across them)."""
    return _page("/ui/requests", audit_id) + query_string({"cluster": _cluster(cluster)})


def object_url(resource: str, namespace: str, name: str, cluster: str | None = None,
               **params: str | None) -> str:
    """The history of one object in one cluster; cluster-scoped objects use ``-``."""
    path = _page(f"/ui/objects/{_seg(resource)}/{_seg(namespace or CLUSTER_SCOPED)}", name)
    return path + query_string({"cluster": _cluster(cluster), **params})


def user_url(username: str, cluster: str | None = None, **params: str | None) -> str:
    """The activity page of one identity (requests made by or as it)."""
    return _page("/ui/users", username) + query_string({"cluster": _cluster(cluster), **params})


def events_url(pairs: Iterable[tuple[str, str]] = (), **params: str | Sequence[str] | None) -> str:
    """The events explorer: selector pairs (already spelled) and other parameters.

    >>> events_url([("user", "alice"), ("namespace!", "kube-system")], range="all")
    '/ui/events?user=alice&namespace%21=kube-system&range=all'
    """
    return "/ui/events" + query_string([*pairs, *_flat(params)])


def alerts_url(**params: str | Sequence[str] | None) -> str:
    """The alerts page with filters."""
    return "/ui/alerts" + query_string(params)


def overview_url(**params: str | Sequence[str] | None) -> str:
    """The overview with a range and a cluster."""
    return "/ui/overview" + query_string(params)


def _flat(params: Params) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None or value == "":
            continue
        out.extend((key, v) for v in ([value] if isinstance(value, str) else value) if v != "")
    return out


def json_twin(path: str, query: str = "") -> str:
    """The ``.json`` twin of a page path (``/`` -> ``/ui/overview.json``)."""
    if path in ("/", "/ui", "/ui/"):
        path = "/ui/overview"
    return path.removesuffix(".html") + ".json" + (f"?{query}" if query else "")
