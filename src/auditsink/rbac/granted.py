"""What is granted today: RBAC objects read from files or from a live cluster.

Files are what ``kubectl get roles,clusterroles,rolebindings,clusterrolebindings -A -o yaml``
writes (a ``List``), or any YAML/JSON stream of those objects and lists. A live cluster is read
through a kubeconfig's current context, the four lists of rbac.authorization.k8s.io/v1.
Anything else is refused with the file, the item and the key that is wrong.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auditsink.rbac.authorize import Grant, Rule
from auditsink.rbac.identity import Identity

RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
RBAC_API_VERSIONS = ("rbac.authorization.k8s.io/v1", "rbac.authorization.k8s.io/v1beta1")


class GrantedError(ValueError):
    """RBAC objects that cannot be read; the message names the source, item and key."""


@dataclass(frozen=True)
class Binding:
    """A RoleBinding (``namespace`` set) or ClusterRoleBinding (``namespace`` None)."""

    kind: str
    name: str
    namespace: str | None
    role_kind: str
    role_name: str
    subjects: tuple[Identity, ...]

    @property
    def ref(self) -> str:
        where = f"{self.namespace}/" if self.namespace is not None else ""
        return f"{self.kind}/{where}{self.name}"

    @property
    def role_ref(self) -> str:
        where = f"{self.namespace}/" if self.role_kind == "Role" else ""
        return f"{self.role_kind}/{where}{self.role_name}"


@dataclass
class Snapshot:
    """Roles, ClusterRoles and their bindings, keyed as the API server keys them."""

    roles: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    cluster_roles: dict[str, list[Rule]] = field(default_factory=dict)
    bindings: list[Binding] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # The objects as read (without metadata.managedFields), to keep the snapshot in a store.
    objects: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def subjects(self) -> list[Identity]:
        """Every identity some binding names, sorted."""
        return sorted({s for b in self.bindings for s in b.subjects})

    def bindings_of(self, identity: Identity) -> list[Binding]:
        return [b for b in self.bindings if identity in b.subjects]

    def grants_for(self, identity: Identity) -> tuple[list[Grant], list[str]]:
        """The grants bindings name ``identity`` in, and the bindings whose role is missing
        (the API server then grants nothing through them)."""
        grants: list[Grant] = []
        missing: list[str] = []
        for binding in self.bindings_of(identity):
            if binding.role_kind == "ClusterRole":
                rules = self.cluster_roles.get(binding.role_name)
            else:
                rules = self.roles.get((binding.namespace or "", binding.role_name))
            if rules is None:
                missing.append(f"{binding.ref} -> {binding.role_ref} (not found)")
                continue
            via = f"{binding.ref} -> {binding.role_ref}"
            grants.extend(Grant(rule, binding.namespace, via) for rule in rules)
        return grants, missing

    def add(self, obj: Any, where: str) -> None:
        """Add one object (a dict as the API serves it); raises :class:`GrantedError`."""
        if not isinstance(obj, dict):
            raise GrantedError(f"{where}: expected an object, got {type(obj).__name__}")
        kind = obj.get("kind")
        if kind not in RBAC_KINDS:
            raise GrantedError(f"{where}: kind {kind!r} is not one of {', '.join(RBAC_KINDS)}")
        api_version = obj.get("apiVersion", RBAC_API_VERSIONS[0])
        if api_version not in RBAC_API_VERSIONS:
            raise GrantedError(f"{where}: apiVersion {api_version!r}: expected "
                               f"{RBAC_API_VERSIONS[0]}")
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise GrantedError(f"{where}: metadata.name: expected the {kind}'s name")
        where = f"{where} ({kind} {name})"
        namespace = meta.get("namespace")
        namespaced = kind in ("Role", "RoleBinding")
        if namespaced and (not isinstance(namespace, str) or not namespace):
            raise GrantedError(f"{where}: metadata.namespace: a {kind} needs one")
        kept = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        self.objects.append(kept)
        if kind == "Role":
            self.roles[(str(namespace), name)] = _rules(obj.get("rules"), where)
        elif kind == "ClusterRole":
            # An aggregated ClusterRole's rules are filled in by the controller: read them as is.
            self.cluster_roles[name] = _rules(obj.get("rules"), where)
        else:
            self.bindings.append(_binding(obj, kind, name, namespace if namespaced else None,
                                          where))


def _strings(value: Any, where: str, key: str, required: bool = False) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GrantedError(f"{where}: {key}: expected a list of strings")
    return tuple(value)


def _rules(value: Any, where: str) -> list[Rule]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise GrantedError(f"{where}: rules: expected a list of rules")
    rules = []
    for i, raw in enumerate(value):
        key = f"rules[{i}]"
        if not isinstance(raw, dict):
            raise GrantedError(f"{where}: {key}: expected a mapping")
        rules.append(Rule(
            verbs=_strings(raw.get("verbs"), where, f"{key}.verbs", required=True),
            api_groups=_strings(raw.get("apiGroups"), where, f"{key}.apiGroups"),
            resources=_strings(raw.get("resources"), where, f"{key}.resources"),
            resource_names=_strings(raw.get("resourceNames"), where, f"{key}.resourceNames"),
            non_resource_urls=_strings(raw.get("nonResourceURLs"), where,
                                       f"{key}.nonResourceURLs"),
        ))
    return rules


def _binding(obj: dict[str, Any], kind: str, name: str, namespace: str | None,
             where: str) -> Binding:
    ref = obj.get("roleRef")
    if not isinstance(ref, dict) or ref.get("kind") not in ("Role", "ClusterRole") \
            or not isinstance(ref.get("name"), str) or not ref.get("name"):
        raise GrantedError(f"{where}: roleRef: expected {{kind: Role or ClusterRole, name}}")
    if kind == "ClusterRoleBinding" and ref["kind"] == "Role":
        raise GrantedError(f"{where}: roleRef.kind: a ClusterRoleBinding can only refer to a "
                           "ClusterRole")
    subjects = []
    for i, raw in enumerate(obj.get("subjects") or []):
        key = f"subjects[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise GrantedError(f"{where}: {key}: expected {{kind, name}}")
        subject_kind = raw.get("kind")
        if subject_kind == "ServiceAccount":
            # The authorizer takes a RoleBinding's namespace when the subject names none.
            sa_namespace = raw.get("namespace") or namespace or ""
            subjects.append(Identity("ServiceAccount", raw["name"], str(sa_namespace)))
        elif subject_kind in ("User", "Group"):
            subjects.append(Identity(subject_kind, raw["name"]))
        else:
            raise GrantedError(f"{where}: {key}.kind: {subject_kind!r} is not User, Group or "
                               "ServiceAccount")
    return Binding(kind, name, namespace, ref["kind"], ref["name"], tuple(subjects))


def _items(doc: Any, where: str) -> Iterator[tuple[Any, str]]:
    """The objects in one document: a List's items (kubectl's output), or the object itself."""
    if isinstance(doc, dict) and isinstance(doc.get("items"), list) and (
            doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List")):
        list_kind = str(doc.get("kind"))
        # A typed list (RoleList from the API) leaves kind off its items.
        item_kind = list_kind[:-4] if list_kind != "List" else None
        for i, item in enumerate(doc["items"]):
            if item_kind and isinstance(item, dict):
                item = {"kind": item_kind, **item}
            yield item, f"{where}: items[{i}]"
    elif doc is not None:
        yield doc, where


def read_files(paths: Iterable[str | Path]) -> Snapshot:
    """A snapshot from YAML or JSON files (several documents each, Lists or objects)."""
    snapshot = Snapshot()
    for path in paths:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GrantedError(f"{name}: cannot read: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f":{mark.line + 1}" if mark is not None else ""
            raise GrantedError(f"{name}{at}: not valid YAML or JSON: "
                               f"{getattr(exc, 'problem', None) or exc}") from None
        for n, doc in enumerate(docs):
            where = name if len(docs) == 1 else f"{name}: document {n + 1}"
            for obj, obj_where in _items(doc, where):
                snapshot.add(obj, obj_where)
        snapshot.sources.append(name)
    return snapshot


LIVE_LISTS = (("roles", "Role"), ("clusterroles", "ClusterRole"),
              ("rolebindings", "RoleBinding"), ("clusterrolebindings", "ClusterRoleBinding"))


class _VerifiedHTTPS(http.client.HTTPSConnection):
    """HTTPS that checks the server's name as client-go does (tls-server-name, else host)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, server_name: str,
                 timeout: float) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._ctx = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._server_name)


def read_cluster(kubeconfig: str | Path, timeout: float = 30.0) -> Snapshot:
    """A snapshot of a live cluster through ``kubeconfig``'s current context."""
    from auditsink.setup.clientcmd import (
        KubeconfigError, auth_header, load_webhook_config, ssl_context,
    )

    name = str(kubeconfig)
    try:
        cfg = load_webhook_config(kubeconfig)
    except KubeconfigError as exc:
        raise GrantedError(str(exc)) from None
    if cfg.exec_command or cfg.auth_provider:
        raise GrantedError(
            f"{name}: user {cfg.user!r} gets credentials from a plugin, which auditsink does not "
            "run: save `kubectl get roles,clusterroles,rolebindings,clusterrolebindings -A -o "
            "yaml` to a file and pass that instead")
    try:
        headers = {"Accept": "application/json"}
        authorization = auth_header(cfg)
        if authorization:
            headers["Authorization"] = authorization
        if cfg.scheme == "https":
            context = ssl_context(cfg)
            if not cfg.insecure:
                context.check_hostname = True
            conn: http.client.HTTPConnection = _VerifiedHTTPS(
                cfg.host, cfg.port, context, cfg.tls_server_name or cfg.host, timeout)
        else:
            conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        raise GrantedError(f"{name}: cannot use the credentials: {exc}") from None
    base = "" if cfg.path == "/" else cfg.path
    snapshot = Snapshot()
    try:
        for resource, kind in LIVE_LISTS:
            path = f"{base}/apis/rbac.authorization.k8s.io/v1/{resource}"
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                raise GrantedError(f"{name}: GET {cfg.server}{path}: {exc}") from None
            if response.status != 200:
                reason = _status_message(body) or response.reason
                raise GrantedError(f"{name}: GET {cfg.server}{path}: {response.status} {reason}")
            try:
                doc = json.loads(body)
            except ValueError:
                raise GrantedError(f"{name}: GET {path}: the answer is not JSON") from None
            for obj, where in _items({**doc, "kind": f"{kind}List"}, f"{cfg.server}{path}"):
                snapshot.add(obj, where)
    finally:
        conn.close()
    snapshot.sources.append(f"{cfg.server} ({name})")
    return snapshot


def _status_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return str(doc.get("message", "")) if isinstance(doc, dict) else ""
