"""RBAC's matching rules, written once (k8s.io/component-helpers/auth/rbac/validation and the
RBAC authorizer's rule visitor): does a rule, granted in a scope, allow a request?

Used to skip what every authenticated identity already holds, to check that a suggestion
allows every request it was made from, and to find what a subject holds and never used.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditsink.rbac.request import Request

WILDCARD = "*"


@dataclass(frozen=True, order=True)
class Rule:
    """One rbac.authorization.k8s.io/v1 PolicyRule; empty tuples are absent fields."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def allows(self, request: Request) -> bool:
        """RBAC's RuleAllows.

        >>> scale = Request("get", "apps", "deployments", "scale")
        >>> Rule(("get",), ("apps",), ("*/scale",)).allows(scale)
        True
        >>> Rule(("get",), non_resource_urls=("/api*",)).allows(Request("get", path="/apis/apps"))
        True
        """
        if WILDCARD not in self.verbs and request.verb not in self.verbs:
            return False
        if not request.is_resource:
            return any(_url_matches(url, request.path) for url in self.non_resource_urls)
        if WILDCARD not in self.api_groups and request.api_group not in self.api_groups:
            return False
        if not any(_resource_matches(r, request) for r in self.resources):
            return False
        return not self.resource_names or request.name in self.resource_names

    @property
    def has_wildcard(self) -> bool:
        """Whether any field holds ``*`` (or a ``*/sub`` resource, or a ``/path*`` prefix)."""
        return (any(WILDCARD in v for v in self.verbs + self.api_groups + self.resources)
                or any(u.endswith(WILDCARD) for u in self.non_resource_urls))

    def to_dict(self) -> dict[str, list[str]]:
        """The PolicyRule as ``kubectl apply`` reads it, fields in the API's order."""
        out: dict[str, list[str]] = {}
        if self.api_groups or self.resources:
            out["apiGroups"] = list(self.api_groups)
            out["resources"] = list(self.resources)
        if self.resource_names:
            out["resourceNames"] = list(self.resource_names)
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
        out["verbs"] = list(self.verbs)
        return out


def _resource_matches(rule_resource: str, request: Request) -> bool:
    if rule_resource == WILDCARD or rule_resource == request.resource_path:
        return True
    # "*/scale" matches the scale subresource of every resource.
    sub = request.subresource
    return bool(sub) and rule_resource == f"*/{sub}"


def _url_matches(rule_url: str, path: str) -> bool:
    if rule_url == WILDCARD or rule_url == path:
        return True
    # A trailing "*" is a prefix match, and the only wildcard a URL rule knows.
    return rule_url.endswith(WILDCARD) and path.startswith(rule_url[:-1])


@dataclass(frozen=True, order=True)
class Grant:
    """A rule as a binding grants it: in one namespace (a RoleBinding) or everywhere
    (``namespace`` None: a ClusterRoleBinding). ``via`` says which binding and role."""

    rule: Rule
    namespace: str | None = None
    via: str = ""

    def allows(self, request: Request) -> bool:
        # The authorizer visits RoleBindings only for requests in their namespace, and a
        # non-resource request has none: only ClusterRoleBindings grant URLs.
        if self.namespace is not None and (not request.is_resource
                                           or request.namespace != self.namespace):
            return False
        return self.rule.allows(request)


def allowed(grants: list[Grant], request: Request) -> bool:
    """Whether any of ``grants`` allows ``request``."""
    return any(grant.allows(request) for grant in grants)


# What Kubernetes 1.20's bootstrap policy grants every authenticated identity (the
# system:discovery, system:public-info-viewer and system:basic-user ClusterRoles, bound to
# system:authenticated): kubectl's discovery and `auth can-i` need no suggestion.
EVERYONE_AUTHENTICATED = [
    Grant(Rule(("get",), non_resource_urls=(
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
        "/readyz", "/version", "/version/")), via="ClusterRole/system:discovery"),
    Grant(Rule(("get",), non_resource_urls=("/healthz", "/livez", "/readyz", "/version",
                                            "/version/")),
          via="ClusterRole/system:public-info-viewer"),
    Grant(Rule(("create",), ("authorization.k8s.io",),
               ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
          via="ClusterRole/system:basic-user"),
]
