"""Requests an identity made to the Roles, ClusterRoles and bindings that allow exactly them.

audit2rbac's generator (pkg/process.go, ``Generate``), rule by rule:

- verbs are expanded as clients need them (``DefaultGenerateOptions``: watch->get,list;
  list->get,watch; update->get,patch; patch->get,update), unless turned off;
- a resource name is kept unless the same operation (verb, group, resource, subresource, in
  the same namespace) was done on several names or without one (``ExpandMultipleNamesToUnnamed``);
- subresources stay (``deployments/scale``), non-resource URLs go to the ClusterRole;
- cluster-scoped requests go to the ClusterRole, namespaced ones to a Role per namespace;
- requests the defaults every authenticated identity holds already allow need no rule
  (audit2rbac's ``getDiscoveryRoles``).

Where this differs, on purpose: audit2rbac widens an operation seen in two namespaces to every
namespace (``ExpandMultipleNamespacesToClusterScoped``, on by default); here that happens only
past a threshold you choose, counted per exact operation (name included), and never by
default. A request whose attributes hold ``*`` is never turned into a rule, because RBAC would
read it as a wildcard. An impersonated request also needed the impersonator's
``impersonate`` permission (see :mod:`auditsink.rbac.request`), and that one always keeps its
names: impersonating any group is impersonating system:masters. Several identities can be
answered in one run, groups included.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from auditsink.rbac.authorize import EVERYONE_AUTHENTICATED, WILDCARD, Grant, Rule, allowed
from auditsink.rbac.compact import Atom, UrlAtom, resource_rules, url_rules
from auditsink.rbac.identity import RBAC_GROUP, Identity
from auditsink.rbac.request import Observed, Request

# audit2rbac's DefaultGenerateOptions().VerbExpansions: what clients do next (a list is
# followed by a watch, an update by reading the object first).
VERB_EXPANSIONS: dict[str, tuple[str, ...]] = {
    "watch": ("get", "list"),
    "list": ("get", "watch"),
    "update": ("get", "patch"),
    "patch": ("get", "update"),
}
# Verbs whose names always stay: "impersonate groups" on any name is system:masters.
KEEP_NAMES_FOR = frozenset({"impersonate"})
MANAGED_BY = {"app.kubernetes.io/managed-by": "auditsink"}
SUGGESTED_FOR = "auditsink/suggested-for"


@dataclass(frozen=True)
class SuggestOptions:
    """How requests become rules; the defaults are audit2rbac's except where the module says."""

    expand_verbs: bool = True
    keep_names: bool = False
    # An operation seen in more than this many namespaces is granted in all of them; None: never.
    cluster_wide_after: int | None = None
    only_allowed: bool = False
    prefix: str = "auditsink"
    existing: tuple[Grant, ...] = tuple(EVERYONE_AUTHENTICATED)


@dataclass
class Suggestion:
    """The rules suggested for one identity, and what they were made from."""

    identity: Identity
    observed: Observed
    options: SuggestOptions
    cluster_rules: list[Rule] = field(default_factory=list)
    roles: dict[str, list[Rule]] = field(default_factory=dict)  # namespace -> rules
    already_allowed: list[Request] = field(default_factory=list)
    skipped: list[Request] = field(default_factory=list)
    used: list[Request] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.identity.object_name(self.options.prefix)

    def grants(self) -> list[Grant]:
        """The suggestion as grants, to check it with :func:`auditsink.rbac.authorize.allowed`."""
        out = [Grant(rule, None, f"ClusterRole/{self.name}") for rule in self.cluster_rules]
        for namespace, rules in self.roles.items():
            out.extend(Grant(rule, namespace, f"Role/{namespace}/{self.name}") for rule in rules)
        return out

    def objects(self) -> list[dict[str, object]]:
        """The manifests, each role followed by its binding: ClusterRole first, then the
        namespaces in order."""
        docs: list[dict[str, object]] = []
        if self.cluster_rules:
            docs.append(self._role("ClusterRole", None, self.cluster_rules))
            docs.append(self._binding("ClusterRoleBinding", "ClusterRole", None))
        for namespace in sorted(self.roles):
            docs.append(self._role("Role", namespace, self.roles[namespace]))
            docs.append(self._binding("RoleBinding", "Role", namespace))
        return docs

    def _metadata(self, namespace: str | None) -> dict[str, object]:
        meta: dict[str, object] = {"name": self.name}
        if namespace is not None:
            meta["namespace"] = namespace
        meta["labels"] = dict(MANAGED_BY)
        meta["annotations"] = {SUGGESTED_FOR: self.identity.label()}
        return meta

    def _role(self, kind: str, namespace: str | None, rules: list[Rule]) -> dict[str, object]:
        return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": kind,
                "metadata": self._metadata(namespace), "rules": [r.to_dict() for r in rules]}

    def _binding(self, kind: str, role_kind: str, namespace: str | None) -> dict[str, object]:
        return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": kind,
                "metadata": self._metadata(namespace),
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": self.name},
                "subjects": [self.identity.subject()]}


def holds_wildcard(request: Request) -> bool:
    """Whether a request's attributes hold ``*``, which a rule would read as "everything"."""
    fields = (request.verb, request.api_group, request.resource, request.subresource,
              request.path)
    return any(WILDCARD in value for value in fields)


def suggest(observed: Observed, options: SuggestOptions | None = None) -> Suggestion:
    """The least RBAC that allows every request in ``observed`` (denied ones too, unless
    ``options.only_allowed``)."""
    options = options or SuggestOptions()
    result = Suggestion(observed.identity, observed, options)
    needed: list[Request] = []
    for request in observed.used(options.only_allowed):
        result.used.append(request)
        if holds_wildcard(request):
            result.skipped.append(request)
        elif allowed(list(options.existing), request):
            result.already_allowed.append(request)
        else:
            needed.append(request)

    cluster: set[Atom] = set()
    namespaced: dict[str, set[Atom]] = defaultdict(set)
    urls: set[UrlAtom] = set()
    for namespace, atom in _scoped_atoms([r for r in needed if r.is_resource], options):
        (cluster if namespace is None else namespaced[namespace]).add(atom)
    for request in needed:
        if not request.is_resource:
            urls.add(UrlAtom(request.path, request.verb))  # no expansion: audit2rbac's too

    # A ClusterRoleBinding grants in every namespace: what the ClusterRole holds, no Role needs.
    unnamed = {(a.api_group, a.resource, a.verb) for a in cluster if not a.name}
    for namespace, atoms in namespaced.items():
        rest = {a for a in atoms if (a.api_group, a.resource, a.verb) not in unnamed
                and a not in cluster}
        if rest:
            result.roles[namespace] = resource_rules(rest)
    result.cluster_rules = resource_rules(cluster) + url_rules(urls)
    return result


def _scoped_atoms(requests: list[Request],
                  options: SuggestOptions) -> list[tuple[str | None, Atom]]:
    """(namespace or None for cluster-wide, atom) for resource requests, names and namespaces
    decided, verbs expanded."""
    # Names: an operation done on several names, or without one, holds for any name.
    names: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for r in requests:
        names[(r.namespace, r.api_group, r.resource_path, r.verb)].add(r.name)

    def name_for(r: Request) -> str:
        if options.keep_names or r.verb in KEEP_NAMES_FOR:
            return r.name
        seen = names[(r.namespace, r.api_group, r.resource_path, r.verb)]
        return r.name if len(seen) == 1 else ""

    operations = {(r.namespace, r.api_group, r.resource_path, r.verb, name_for(r))
                  for r in requests}
    # Namespaces: past the threshold, an operation is granted in every namespace.
    widened: set[tuple[str, str, str, str]] = set()
    if options.cluster_wide_after is not None:
        spread: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
        for namespace, *operation in operations:
            if namespace:
                spread[tuple(operation)].add(namespace)  # type: ignore[index]
        widened = {op for op, seen in spread.items() if len(seen) > options.cluster_wide_after}

    out: list[tuple[str | None, Atom]] = []
    for namespace, group, resource, verb, name in sorted(operations):
        scope = None if not namespace or (group, resource, verb, name) in widened else namespace
        verbs = (verb, *VERB_EXPANSIONS.get(verb, ())) if options.expand_verbs else (verb,)
        out.extend((scope, Atom(group, resource, name, v)) for v in verbs)
    return out
