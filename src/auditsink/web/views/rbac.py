"""The user page's least-privilege section (issue 14): the RBAC that allows what the identity
did in the page's range, and, when ``auditsink rbac load`` kept a granted snapshot for the
cluster, what it holds and never used."""

from __future__ import annotations

from typing import Any

from auditsink.rbac import stored
from auditsink.rbac.diff import describe, diff_subject
from auditsink.rbac.identity import Identity
from auditsink.rbac.render import render
from auditsink.rbac.request import observe
from auditsink.rbac.suggest import suggest
from auditsink.selector import Selector
from auditsink.store.base import Store
from auditsink.timeutil import format_micros


def section(store: Store, username: str, cluster: str, since_us: int,
            until_us: int) -> dict[str, Any]:
    """The section's data, also the ``rbac`` key of the page's ``.json`` twin."""
    try:
        identity = Identity.user(username)
    except ValueError:
        return {"identity": None}
    window = Selector(clusters=[cluster] if cluster else [], since=since_us, until=until_us)
    observed = observe(store, window, [identity])[identity]
    since, until = format_micros(since_us), format_micros(until_us)
    command = (f"auditsink rbac suggest {_flag(identity)} --since {since} --until {until}"
               + (f" --cluster {cluster}" if cluster else ""))
    out: dict[str, Any] = {
        "identity": identity.label(),
        "requests": len(observed.calls),
        "denied": observed.denied_calls,
        "command": command,
        "clusters": sorted(observed.clusters),
        "yaml": None,
        "granted": None,
    }
    if len(observed.clusters) > 1:
        return out  # RBAC is per cluster: the page asks to choose one
    if observed.calls:
        out["yaml"] = render([suggest(observed)], f"{since} .. {until}")
    kept = stored.load(store, cluster)
    if kept is not None:
        diff = diff_subject(identity, kept.snapshot, observed)
        out["granted"] = {
            "loaded": kept.loaded, "sources": list(kept.sources),
            "granted": diff.granted, "used": diff.used, "ratio": round(diff.ratio, 4),
            "bindings": diff.bindings, "missing": diff.missing,
            "wildcards": [_row(scope, via, rule) for scope, via, rule in diff.wildcards],
            "unused": [_row(scope, via, rule) for scope, via, rule in diff.unused],
            "denied": [str(r) for r in diff.denied],
        }
    return out


def _flag(identity: Identity) -> str:
    if identity.kind == "ServiceAccount":
        return f"--serviceaccount {identity.namespace}:{identity.name}"
    return f"--user {identity.name}"


def _row(scope: str | None, via: str, rule: Any) -> dict[str, str]:
    return {"where": scope or "every namespace", "permission": describe(rule), "via": via}
