"""The field table: the k8saudit plugin's ``ka.*`` fields and the json plugin's ``jevt.*``.

Each field is a :class:`FieldSpec`; :func:`resolve` binds a spec to its ``[arg]`` once, at load
time, and returns a :class:`FieldRef` whose ``extract(doc)`` gives the value: a ``str``, a
``list[str]`` for list fields, or ``None`` when the field is not available in that event (Falco's
"not extracted": every comparison on it is false, ``exists`` included). The extractors are in
extract.py; deliberate differences from the plugin are listed in docs/rules.md ("Fields").
"""

from __future__ import annotations

import msgspec

from auditsink.rules import extract as x
from auditsink.rules import jevt
from auditsink.rules.extract import Builder, Extractor, FieldError, text

__all__ = ["FIELDS", "FieldError", "FieldRef", "FieldSpec", "resolve", "text"]


class FieldSpec(msgspec.Struct, frozen=True):
    """One field: its name, whether it yields a list, the argument it takes and a description.

    ``arg`` is "none", "index" (optional number), "key" (required) or "index_or_glob".
    """

    name: str
    is_list: bool
    arg: str
    desc: str
    build: Builder


class FieldRef(msgspec.Struct, frozen=True):
    """A field bound to its argument: ``key`` is the cache key, e.g. ``ka.uri.param[command]``."""

    key: str
    spec: FieldSpec
    extract: Extractor


FIELDS: dict[str, FieldSpec] = {}
S, L = False, True  # scalar or list field
ANN = "annotations"
REQ = "requestObject"
SPEC = (REQ, "spec")
SEC = (REQ, "spec", "securityContext")

# fmt: off
_TABLE: list[tuple[str, bool, str, str, Builder]] = [
    ("ka.auditid", S, "none", "The unique id of the audit event", x.scalar("auditID")),
    ("ka.stage", S, "none", "Stage of the request (RequestReceived, ...)", x.scalar("stage")),
    ("ka.auth.decision", S, "none", "The authorization decision",
     x.scalar(ANN, "authorization.k8s.io/decision")),
    ("ka.auth.reason", S, "none", "The authorization reason",
     x.scalar(ANN, "authorization.k8s.io/reason")),
    ("ka.auth.openshift.decision", S, "none", "OpenShift authentication decision",
     x.scalar(ANN, "authentication.openshift.io/decision")),
    ("ka.auth.openshift.username", S, "none", "OpenShift authentication user name",
     x.scalar(ANN, "authentication.openshift.io/username")),
    ("ka.validations.admission.policy.failure", S, "none", "ValidatingAdmissionPolicy failure",
     x.scalar(ANN, "validation.policy.admission.k8s.io/validation_failure")),
    ("ka.security.pod.violations", S, "none", "Pod Security audit violations",
     x.scalar(ANN, "pod-security.kubernetes.io/audit-violations")),
    ("ka.user.name", S, "none", "The user name performing the request",
     x.scalar("user", "username")),
    ("ka.user.groups", L, "none", "The groups of the user", x.list_of("user", "groups")),
    ("ka.impuser.name", S, "none", "The impersonated user name",
     x.scalar("impersonatedUser", "username")),
    ("ka.verb", S, "none", "The action being performed", x.scalar("verb")),
    ("ka.uri", S, "none", "The request URI", x.scalar("requestURI")),
    ("ka.uri.param", S, "key", "A query parameter of the URI (ka.uri.param[command])", x.uri_param),
    ("ka.target.name", S, "none", "The target object name", x.scalar("objectRef", "name")),
    ("ka.target.namespace", S, "none", "The target object namespace",
     x.scalar("objectRef", "namespace")),
    ("ka.target.resource", S, "none", "The target resource", x.scalar("objectRef", "resource")),
    ("ka.target.subresource", S, "none", "The target subresource",
     x.scalar("objectRef", "subresource")),
    ("ka.target.pod.name", S, "none", "The target pod name", x.target_pod_name),
    ("ka.req.binding.subjects", L, "none", "Subjects of a (cluster) role binding (JSON each)",
     x.list_of(REQ, "subjects")),
    ("ka.req.binding.subjects.user_names", L, "none", "User subjects of a binding",
     x.subjects("User")),
    ("ka.req.binding.subjects.serviceaccount_names", L, "none",
     "ServiceAccount subjects of a binding", x.subjects("ServiceAccount")),
    ("ka.req.binding.subjects.serviceaccount_ns_names", L, "none",
     "ServiceAccount subjects as namespace:name", x.subjects("ServiceAccount", with_ns=True)),
    ("ka.req.binding.subjects.group_names", L, "none", "Group subjects of a binding",
     x.subjects("Group")),
    ("ka.req.binding.role", S, "none", "The role a binding refers to",
     x.scalar(REQ, "roleRef", "name")),
    ("ka.req.binding.subject.has_name", S, "key", "Deprecated, always true", x.constant("true")),
    ("ka.req.configmap.name", S, "none", "The configmap name", x.scalar("objectRef", "name")),
    ("ka.req.configmap.obj", S, "none", "The configmap data as JSON", x.scalar(REQ, "data")),
    ("ka.req.container.image", S, "none", "Deprecated: image of the first container",
     x.first_image("containers", False)),
    ("ka.req.container.image.repository", S, "none", "Deprecated: first container's repository",
     x.first_image("containers", True)),
    ("ka.req.container.privileged", S, "none", "Deprecated: true if any container is privileged",
     x.any_privileged),
    ("ka.req.container.host_network", S, "none", "Deprecated alias of ka.req.pod.host_network",
     x.scalar(*SPEC, "hostNetwork")),
    ("ka.req.pod.host_ipc", S, "none", "The pod's hostIPC flag", x.scalar(*SPEC, "hostIPC")),
    ("ka.req.pod.host_network", S, "none", "The pod's hostNetwork flag",
     x.scalar(*SPEC, "hostNetwork")),
    ("ka.req.pod.host_pid", S, "none", "The pod's hostPID flag", x.scalar(*SPEC, "hostPID")),
    ("ka.req.pod.run_as_user", S, "none", "The pod's runAsUser", x.scalar(*SEC, "runAsUser")),
    ("ka.req.pod.run_as_group", S, "none", "The pod's runAsGroup", x.scalar(*SEC, "runAsGroup")),
    ("ka.req.pod.fs_group", S, "none", "The pod's fsGroup", x.scalar(*SEC, "fsGroup")),
    ("ka.req.pod.supplemental_groups", L, "none", "The pod's supplementalGroups",
     x.list_of(*SEC, "supplementalGroups")),
    ("ka.req.pod.volumes.hostpath", L, "index_or_glob", "hostPath paths; [N] or [glob] filter",
     x.hostpaths),
    ("ka.req.volume.hostpath", S, "key", "Deprecated: true if a hostPath is (or starts with) arg",
     x.volume_hostpath),
    ("ka.req.pod.volumes.flexvolume_driver", L, "index", "flexVolume drivers of the volumes",
     x.per_item((*SPEC, "volumes"), ("flexVolume", "driver"))),
    ("ka.req.pod.volumes.volume_type", L, "index", "Volume types of the volumes", x.volume_types),
    ("ka.req.role.rules", L, "none", "The rules of a (cluster) role (JSON each)",
     x.list_of(REQ, "rules")),
    ("ka.req.role.rules.apiGroups", L, "index", "apiGroups of the role's rules",
     x.rules_field("apiGroups")),
    ("ka.req.role.rules.nonResourceURLs", L, "index", "nonResourceURLs of the role's rules",
     x.rules_field("nonResourceURLs")),
    ("ka.req.role.rules.verbs", L, "index", "verbs of the role's rules", x.rules_field("verbs")),
    ("ka.req.role.rules.resources", L, "index", "resources of the role's rules",
     x.rules_field("resources")),
    ("ka.req.service.type", S, "none", "The service type", x.scalar(*SPEC, "type")),
    ("ka.req.service.ports", L, "index", "The service ports (JSON each)",
     x.per_item((*SPEC, "ports"), ())),
    ("ka.resp.name", S, "none", "The response object name",
     x.scalar("responseObject", "metadata", "name")),
    ("ka.response.code", S, "none", "The response code", x.scalar("responseStatus", "code")),
    ("ka.response.reason", S, "none", "The response reason", x.scalar("responseStatus", "reason")),
    ("ka.useragent", S, "none", "The client's user agent", x.scalar("userAgent")),
    ("ka.sourceips", L, "index", "The client's IP addresses", x.per_item(("sourceIPs",), ())),
    ("ka.cluster.name", S, "none", "The cluster name (annotation cluster_name)",
     x.scalar(ANN, "cluster_name")),
    ("jevt.time", S, "none", "Event time (stageTimestamp) as the API server wrote it",
     jevt.event_time),
]
# fmt: on

# The same fields for each of a pod's three container lists.
_KINDS = {"containers": "container", "initContainers": "init container"}
_KINDS["ephemeralContainers"] = "ephemeral container"
for _kind, _what in _KINDS.items():
    _at, _p = (*SPEC, _kind), f"ka.req.pod.{_kind}"
    _sc = "securityContext"
    _TABLE += [
        (f"{_p}.name", L, "index", f"Name of each {_what}", x.per_item(_at, ("name",))),
        (f"{_p}.image", L, "index", f"Image of each {_what}", x.images(_kind, False)),
        (f"{_p}.image.repository", L, "index", f"Image repository of each {_what}",
         x.images(_kind, True)),
        (f"{_p}.command", L, "index", f"Command of each {_what}, joined by spaces",
         x.joined(_kind, "command")),
        (f"{_p}.args", L, "index", f"Args of each {_what}, joined by spaces",
         x.joined(_kind, "args")),
        (f"{_p}.privileged", L, "index", f"privileged flag of each {_what} that sets it",
         x.per_item(_at, (_sc, "privileged"))),
        (f"{_p}.allow_privilege_escalation", L, "index", f"allowPrivilegeEscalation ({_what}s)",
         x.per_item(_at, (_sc, "allowPrivilegeEscalation"))),
        (f"{_p}.read_only_fs", L, "index", f"readOnlyRootFilesystem of each {_what}",
         x.per_item(_at, (_sc, "readOnlyRootFilesystem"))),
        (f"{_p}.run_as_user", L, "index", f"runAsUser of each {_what}",
         x.per_item(_at, (_sc, "runAsUser"))),
        (f"{_p}.eff_run_as_user", L, "index", f"Effective uid of each {_what} (0 if unset)",
         x.effective(_kind, "runAsUser")),
        (f"{_p}.run_as_group", L, "index", f"runAsGroup of each {_what}",
         x.per_item(_at, (_sc, "runAsGroup"))),
        (f"{_p}.eff_run_as_group", L, "index", f"Effective gid of each {_what} (0 if unset)",
         x.effective(_kind, "runAsGroup")),
        (f"{_p}.proc_mount", L, "index", f"procMount of each {_what}",
         x.per_item(_at, (_sc, "procMount"))),
        (f"{_p}.add_capabilities", L, "index", f"Capabilities added by each {_what}",
         x.per_item(_at, (_sc, "capabilities", "add"), flatten=True)),
    ]  # fmt: skip
    if _kind != "ephemeralContainers":
        _TABLE.append(
            (f"{_p}.host_port", L, "index", f"Host ports of each {_what}", x.host_ports(_kind))
        )

for _prefix in ("jevt", "json"):
    _TABLE += [
        (f"{_prefix}.value", S, "key", "The value at a JSON pointer (jevt.value[/objectRef/name])",
         jevt.jevt_value),
        (f"{_prefix}.obj", S, "none", "The whole event as indented JSON", jevt.jevt_obj),
        (f"{_prefix}.rawtime", S, "none", "Event time in nanoseconds since the epoch",
         jevt.rawtime_field),
    ]  # fmt: skip

for _name, _is_list, _arg, _desc, _build in _TABLE:
    FIELDS[_name] = FieldSpec(_name, _is_list, _arg, _desc, _build)


def resolve(name: str, arg: str | None) -> FieldRef:
    """Bind a field to its argument, checking both; raises :class:`FieldError`.

    >>> resolve("ka.uri.param", "command").key
    'ka.uri.param[command]'
    """
    spec = FIELDS.get(name)
    if spec is None:
        raise FieldError(f"unknown field '{name}'")
    if spec.arg == "none" and arg is not None:
        raise FieldError(f"field '{name}' takes no argument")
    if spec.arg == "key" and not arg:
        raise FieldError(f"field '{name}' requires an argument, e.g. {name}[...]")
    try:
        extract = spec.build(arg)
    except FieldError as exc:
        raise FieldError(f"field '{name}': {exc}") from None
    key = name if arg is None else f"{name}[{arg}]"
    return FieldRef(key, spec, extract)
