"""Audit events as kube-apiserver 1.20 writes them, built from a short description.

The shapes are those of the real traffic in ../shared/fixtures and of tests/data/rbac: core
resources carry no apiGroup, a create's objectRef has the name (from the response), a
non-resource request has no objectRef and keeps its query in requestURI.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from auditsink.rbac.identity import Identity
from auditsink.rbac.request import Observed, observe_raw

_ids = itertools.count(1)

EventMaker = Callable[..., bytes]


def make_event(what: str, *, user: str = "bob", groups: tuple[str, ...] = ("system:authenticated",),
               as_user: str | None = None, as_groups: tuple[str, ...] = ("system:authenticated",),
               code: int = 200, decision: str | None = None, stage: str = "ResponseComplete",
               audit_id: str | None = None, when: str = "2026-12-03T12:00:00.000000Z") -> bytes:
    """``"get pods ns1/web"``, ``"patch deployments.apps/scale ns1/web"``, ``"get /version?x"``.

    The target is ``[namespace/]name`` or ``namespace/`` for a collection; ``decision`` defaults
    to what the code implies (403 forbid, else allow).
    """
    verb, target, *rest = what.split(" ")
    where = rest[0] if rest else ""
    event: dict[str, Any] = {
        "level": "Metadata", "auditID": audit_id or f"id-{next(_ids)}", "stage": stage,
        "verb": verb, "user": {"username": user, "groups": list(groups)},
        "stageTimestamp": when, "requestReceivedTimestamp": when,
    }
    if as_user is not None:
        event["impersonatedUser"] = {"username": as_user, "groups": list(as_groups)}
    if target.startswith("/"):
        event["requestURI"] = target
    else:
        resource, _, sub = target.partition("/")
        resource, _, group = resource.partition(".")
        namespace, _, name = where.rpartition("/") if "/" in where else ("", "", where)
        ref = {"resource": resource, "namespace": namespace, "name": name, "apiGroup": group,
               "subresource": sub, "apiVersion": "v1"}
        event["objectRef"] = {k: v for k, v in ref.items() if v}
        event["requestURI"] = f"/api/v1/{target}"
    if stage != "RequestReceived":
        event["responseStatus"] = {"metadata": {}, "code": code}
        event["annotations"] = {"authorization.k8s.io/decision":
                                decision or ("forbid" if code == 403 else "allow")}
    return json.dumps(event).encode()


@pytest.fixture
def ev() -> EventMaker:
    return make_event


def observed_for(identity: Identity, events: list[bytes]) -> Observed:
    """What ``identity`` did in ``events`` (no cluster)."""
    return observe_raw([("", e) for e in events], [identity])[identity]


@pytest.fixture
def observed() -> Callable[[Identity, list[bytes]], Observed]:
    return observed_for
