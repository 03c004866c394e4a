"""Audit events to the attributes RBAC authorizes, and the reader that collects them.

The attributes are audit2rbac's (``eventToAttributes`` in its cmd/audit2rbac and pkg/):
verb, API group, resource, subresource, namespace and name from ``objectRef``, the path of
``requestURI`` for a non-resource request, and the acting identity. Two of its rules matter:

- a ``create`` never carries a name for RBAC: the API server authorizes the POST to the
  collection before it reads the body (audit2rbac's "accepted create" test case), so a rule
  limited to the name the event shows would not allow the create again;
- a non-resource URL is authorized by its path: the query string (``?timeout=32s``) is dropped.

Beyond audit2rbac: an impersonated request also used the impersonator's ``impersonate``
permission (on ``users``, ``serviceaccounts``, ``groups``, ``userextras/KEY``), which the API
server checks before it authorizes the request as the impersonated user
(k8s.io/apiserver/pkg/endpoints/filters/impersonation.go). Those count for the impersonator.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple
from urllib.parse import unquote

import msgspec

from auditsink.rbac.identity import SA_PREFIX, Identity, acting_user
from auditsink.selector import Selector
from auditsink.store.base import Store

Outcome = Literal["allowed", "denied", "unknown"]
DECISION = "authorization.k8s.io/decision"


# Only the fields RBAC needs: msgspec skips the rest (objects, sourceIPs) without building them.
class _User(msgspec.Struct, gc=False):
    username: str = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}


class _Ref(msgspec.Struct, gc=False):
    resource: str = ""
    namespace: str = ""
    name: str = ""
    apiGroup: str = ""
    subresource: str = ""


class _Status(msgspec.Struct, gc=False):
    code: int = 0


class AuditFacts(msgspec.Struct, gc=False):
    """The part of an audit event that RBAC questions read."""

    auditID: str = ""
    stage: str = ""
    verb: str = ""
    requestURI: str = ""
    user: _User = msgspec.field(default_factory=_User)
    impersonatedUser: _User | None = None
    objectRef: _Ref | None = None
    responseStatus: _Status | None = None
    annotations: dict[str, str] = {}
    stageTimestamp: str = ""


_decode_facts = msgspec.json.Decoder(AuditFacts).decode


class Request(NamedTuple):
    """What RBAC authorizes for one request; ``resource`` is "" for a non-resource URL.

    A tuple, because the readers hash one per event and per identity.

    >>> str(Request("get", "apps", "deployments", "scale", "work", "web"))
    'get deployments.apps/scale work/web'
    >>> str(Request("get", path="/version"))
    'get /version'
    """

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    @property
    def resource_path(self) -> str:
        """``deployments/scale``: how an RBAC rule names a subresource."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        if not self.is_resource:
            return f"{self.verb} {self.path}"
        what = self.resource + (f".{self.api_group}" if self.api_group else "")
        what += f"/{self.subresource}" if self.subresource else ""
        where = "/".join(p for p in (self.namespace, self.name) if p)
        return f"{self.verb} {what}" + (f" {where}" if where else "")


def request_of(facts: AuditFacts) -> Request | None:
    """The RBAC attributes of an event, or None when it has nothing to authorize.

    >>> facts = msgspec.json.decode(b'{"verb":"get","requestURI":"/version?timeout=32s"}',
    ...                             type=AuditFacts)
    >>> str(request_of(facts))
    'get /version'
    """
    verb = facts.verb
    if not verb:
        return None  # an unauthenticated request's lone event: nothing was authorized
    ref = facts.objectRef
    if ref is not None:
        if not ref.resource:
            return None
        # A create is authorized on the collection, before the body (and its name) is read.
        name = "" if verb == "create" else ref.name
        return Request(verb, ref.apiGroup, ref.resource, ref.subresource, ref.namespace, name)
    # The API server authorizes the decoded path (req.URL.Path), without the query.
    return Request(verb, path=unquote(facts.requestURI.split("?", 1)[0]))


AUTHENTICATED = "system:authenticated"


def impersonation_requests(facts: AuditFacts) -> list[Request]:
    """What the impersonator needed for an impersonated request (none when there is none).

    >>> facts = msgspec.json.decode(b'{"verb":"get","impersonatedUser":{"username":"carol",'
    ...     b'"groups":["dev","system:authenticated"]}}', type=AuditFacts)
    >>> [str(r) for r in impersonation_requests(facts)]
    ['impersonate users carol', 'impersonate groups dev']
    """
    target = facts.impersonatedUser
    if target is None or not target.username:
        return []
    name = target.username
    groups = list(target.groups)
    if name.startswith(SA_PREFIX) and name.count(":") == 3:
        namespace, sa = name[len(SA_PREFIX):].split(":")
        out = [Request("impersonate", "", "serviceaccounts", namespace=namespace, name=sa)]
        # The API server adds a service account's own groups when none were asked for.
        if groups == ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                      AUTHENTICATED]:
            groups = []
    else:
        out = [Request("impersonate", "", "users", name=name)]
    # ...and system:authenticated at the end, unless it (or unauthenticated) was asked for: a
    # trailing one is taken as added.
    if groups and groups[-1] == AUTHENTICATED:
        groups.pop()
    out.extend(Request("impersonate", "", "groups", name=g) for g in groups)
    for key, values in sorted(target.extra.items()):
        out.extend(Request("impersonate", "authentication.k8s.io", "userextras", key, name=v)
                   for v in values)
    return out


def outcome_of(facts: AuditFacts) -> Outcome:
    """Whether the authorizer allowed the request: its decision annotation, else a 403.

    RequestReceived comes before authorization, so it knows neither: "unknown".
    """
    decision = facts.annotations.get(DECISION)
    if decision == "forbid":
        return "denied"
    if decision == "allow":
        return "allowed"
    code = facts.responseStatus.code if facts.responseStatus is not None else 0
    if code == 403:
        return "denied"
    return "allowed" if code else "unknown"


@dataclass
class Observed:
    """What one identity did in a window: each distinct request with how it ended."""

    identity: Identity
    # Every distinct request and the outcomes seen for it (a grant in the middle of the window
    # turns denied into allowed).
    requests: dict[Request, set[Outcome]] = field(default_factory=dict)
    # One entry per API request (cluster, auditID, attributes), merged over its stages.
    calls: dict[tuple[str, str, Request], Outcome] = field(default_factory=dict)
    events: int = 0
    first: str = ""
    last: str = ""
    clusters: set[str] = field(default_factory=set)

    def add(self, key: tuple[str, str, Request], stamp: str, outcome: Outcome) -> None:
        """One event: (cluster, auditID, request), its stageTimestamp and outcome."""
        self.events += 1
        cluster, _, request = key
        if cluster not in self.clusters:
            self.clusters.add(cluster)
        seen = self.requests.get(request)
        if seen is None:
            self.requests[request] = {outcome}
        elif outcome not in seen:
            seen.add(outcome)
        if self.calls.get(key, "unknown") == "unknown":
            self.calls[key] = outcome
        if stamp:
            if not self.first or stamp < self.first:
                self.first = stamp
            if stamp > self.last:
                self.last = stamp

    @property
    def denied_calls(self) -> int:
        return sum(1 for outcome in self.calls.values() if outcome == "denied")

    def used(self, only_allowed: bool = False) -> list[Request]:
        """The distinct requests, sorted; with ``only_allowed``, those allowed at least once."""
        if not only_allowed:
            return sorted(self.requests)
        return sorted(r for r, seen in self.requests.items() if "allowed" in seen)


def observe_raw(events: Iterable[tuple[str, bytes]],
                identities: Iterable[Identity]) -> dict[Identity, Observed]:
    """Fold (cluster, raw event) pairs into what each identity did."""
    found = {identity: Observed(identity) for identity in identities}
    # Indexed by username and group, so that many subjects (a diff of a whole cluster) cost a
    # dictionary look-up per event, not a comparison per subject.
    by_user: dict[str, list[Observed]] = defaultdict(list)
    by_group: dict[str, list[Observed]] = defaultdict(list)
    for identity, observed in found.items():
        if identity.kind == "Group":
            by_group[identity.name].append(observed)
        else:
            by_user[identity.username].append(observed)
    for cluster, raw in events:
        try:
            facts = _decode_facts(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # the store only keeps events that decoded; nothing to learn from others
        user = acting_user(facts)
        matched = list(by_user.get(user.username, ()))
        if by_group:
            for group in set(user.groups):
                matched.extend(by_group.get(group, ()))
        if matched:
            request = request_of(facts)
            if request is not None:
                outcome = outcome_of(facts)
                key = (cluster, facts.auditID, request)
                for observed in matched:
                    observed.add(key, facts.stageTimestamp, outcome)
        if facts.impersonatedUser is not None:
            _add_impersonation(cluster, facts, by_user, by_group)
    return found


def _add_impersonation(cluster: str, facts: AuditFacts, by_user: dict[str, list[Observed]],
                       by_group: dict[str, list[Observed]]) -> None:
    impersonator = facts.user
    matched = list(by_user.get(impersonator.username, ()))
    for group in set(impersonator.groups):
        matched.extend(by_group.get(group, ()))
    if not matched:
        return
    # The impersonation was allowed, or the event would not name the impersonated user.
    for request in impersonation_requests(facts):
        for observed in matched:
            observed.add((cluster, facts.auditID, request), facts.stageTimestamp, "allowed")


def candidates(selector: Selector, identities: Iterable[Identity]) -> Selector:
    """The store selection that holds every event of ``identities``: the given selector,
    narrowed to the users' requests when no identity is a group.

    ``users`` selects requests made by *or as* a user (selector.py): the requests a user or
    service account acted as, and the ones it made as someone else, whose ``impersonate`` it
    needed. A group's members are known per event only, and the store indexes the
    authenticated user's groups, not the impersonated user's: a group reads the whole window.
    The acting identity is then decided per event (:func:`acting_user`).
    """
    wanted = list(identities)
    if not wanted or any(identity.kind == "Group" for identity in wanted):
        return dataclasses.replace(selector, users=[], groups=[])
    return dataclasses.replace(selector, users=sorted({i.username for i in wanted}), groups=[])


def observe(store: Store, selector: Selector,
            identities: Iterable[Identity]) -> dict[Identity, Observed]:
    """What each identity did among the events ``selector`` picks from ``store``."""
    wanted = list(identities)

    def events() -> Iterator[tuple[str, bytes]]:
        for stored in store.iter_all(candidates(selector, wanted)):
            yield stored.cluster, stored.raw

    return observe_raw(events(), wanted)
