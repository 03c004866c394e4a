"""Realistic audit-event mixes for benchmarks, modelled on real kube-apiserver 1.20 traffic.

The model comes from ``../shared/fixtures/kube-apiserver-1.20/audit.log`` (974 events):

- level in the fixture's proportions (Metadata 364 : Request 529 : RequestResponse 81), and per
  level the fixture's resources (its policy: RBAC objects and configmaps at Request, pods and
  namespaces at RequestResponse, everything else incl. secrets and discovery URLs at Metadata)
  and verbs;
- stages as in the fixture (RequestReceived 475 : ResponseComplete 475 : ResponseStarted 24, the
  last only for watches and exec);
- ``requestObject`` (mutating verbs at Request/RequestResponse) and ``responseObject``
  (RequestResponse) sized by drawing from the fixture's size quantiles;
- users: the fixture is an API-server bootstrap, 87 % ``system:apiserver``; a running cluster
  adds controllers' service accounts, kubelets and the scheduler, so the user mix is ours (see
  ``USERS``), including service accounts.

Every event gets a new uuid4 ``auditID`` and a strictly increasing microsecond
``stageTimestamp``, so a store that deduplicates retried batches can never skip work: every
event of every generated body is new. (Real RequestReceived/ResponseComplete pairs share an
auditID; we give up that realism on purpose.)

    python -m benchmarks.generate_data --events 800000 --batch 400 --out bodies.jsonl
    python -m benchmarks.generate_data --events 20000 --stats      # print the mix, write nothing
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec

# ---------------------------------------------------------------------------------------------
# The model, from the fixture (counts are the fixture's event counts)

LEVEL_WEIGHTS = {"Metadata": 364, "Request": 529, "RequestResponse": 81}

# (apiGroup, resource, subresource, fixture count); "" resource = non-resource URL
RESOURCES_BY_LEVEL: dict[str, list[tuple[str, str, str, int]]] = {
    "Metadata": [
        ("", "", "", 80),
        ("apiregistration.k8s.io", "apiservices", "", 75),
        ("flowcontrol.apiserver.k8s.io", "flowschemas", "status", 42),
        ("flowcontrol.apiserver.k8s.io", "flowschemas", "", 29),
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations", "", 25),
        ("", "services", "", 23),
        ("", "secrets", "", 15),
        ("", "resourcequotas", "", 15),
        ("scheduling.k8s.io", "priorityclasses", "", 13),
        ("", "limitranges", "", 7),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "", 5),
        ("", "serviceaccounts", "", 5),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", 5),
        ("storage.k8s.io", "storageclasses", "", 5),
        ("networking.k8s.io", "ingressclasses", "", 5),
        ("", "endpoints", "", 5),
        ("node.k8s.io", "runtimeclasses", "", 5),
        ("apiextensions.k8s.io", "customresourcedefinitions", "", 5),
    ],
    "Request": [
        ("rbac.authorization.k8s.io", "clusterroles", "", 259),
        ("rbac.authorization.k8s.io", "clusterrolebindings", "", 173),
        ("rbac.authorization.k8s.io", "roles", "", 39),
        ("rbac.authorization.k8s.io", "rolebindings", "", 39),
        ("", "configmaps", "", 19),
    ],
    "RequestResponse": [
        ("", "namespaces", "", 59),
        ("", "pods", "", 19),
        ("", "pods", "exec", 3),
    ],
}

# verbs per level for plain resource requests (fixture counts, RequestReceived+ResponseComplete)
VERBS_BY_LEVEL = {
    "Metadata": {"create": 112, "list": 56, "watch": 32, "get": 24, "patch": 8, "delete": 2},
    "Request": {"get": 246, "create": 238, "list": 22, "watch": 10, "delete": 6, "update": 2},
    "RequestResponse": {"get": 48, "create": 12, "list": 8, "watch": 4, "delete": 4},
}
# ResponseStarted only exists for long-running requests (watch, exec): 24 of 974 in the fixture
RESPONSE_STARTED_RATE = 24 / 974
MUTATING = frozenset({"create", "update", "patch", "delete"})

# serialized sizes (bytes, compact JSON) of requestObject / responseObject: fixture quantiles
# 0, 5, 10, ..., 100 %
REQUEST_OBJECT_SIZES = [75, 131, 351, 381, 426, 434, 458, 462, 479, 491, 495, 503, 506, 512, 521,
                        572, 625, 745, 983, 1325, 2154]
RESPONSE_OBJECT_SIZES = [82, 151, 193, 201, 209, 421, 424, 424, 426, 426, 426, 426, 426, 426, 426,
                         426, 426, 431, 1433, 1507, 3734]

GROUP_VERSIONS = {
    "": "v1",
    "rbac.authorization.k8s.io": "v1",
    "apiregistration.k8s.io": "v1",
    "flowcontrol.apiserver.k8s.io": "v1beta1",
    "scheduling.k8s.io": "v1",
    "admissionregistration.k8s.io": "v1",
    "storage.k8s.io": "v1",
    "networking.k8s.io": "v1",
    "node.k8s.io": "v1",
    "apiextensions.k8s.io": "v1",
}
NAMESPACED = frozenset({"roles", "rolebindings", "configmaps", "pods", "services", "secrets",
                        "resourcequotas", "limitranges", "serviceaccounts", "endpoints"})
KINDS = {
    "clusterroles": "ClusterRole", "clusterrolebindings": "ClusterRoleBinding", "roles": "Role",
    "rolebindings": "RoleBinding", "configmaps": "ConfigMap", "namespaces": "Namespace",
    "pods": "Pod", "apiservices": "APIService", "flowschemas": "FlowSchema",
    "prioritylevelconfigurations": "PriorityLevelConfiguration", "services": "Service",
    "secrets": "Secret", "resourcequotas": "ResourceQuota", "priorityclasses": "PriorityClass",
    "limitranges": "LimitRange", "serviceaccounts": "ServiceAccount", "endpoints": "Endpoints",
    "validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
    "mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
    "storageclasses": "StorageClass", "ingressclasses": "IngressClass",
    "runtimeclasses": "RuntimeClass", "customresourcedefinitions": "CustomResourceDefinition",
}
NAMESPACES = {"kube-system": 45, "default": 20, "demo": 15, "monitoring": 10, "kube-public": 5,
              "ingress-nginx": 4, "kube-node-lease": 1}
NON_RESOURCE_URLS = [
    "/api?timeout=32s", "/apis?timeout=32s", "/api/v1?timeout=32s", "/apis/apps/v1?timeout=32s",
    "/apis/batch/v1?timeout=32s", "/apis/rbac.authorization.k8s.io/v1?timeout=32s",
    "/apis/networking.k8s.io/v1?timeout=32s", "/apis/coordination.k8s.io/v1?timeout=32s",
    "/apis/apiextensions.k8s.io/v1?timeout=32s", "/version?timeout=32s", "/openapi/v2",
]

_K8S = "v1.20.2 (linux/amd64) kubernetes/faecb19"
_SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:kube-system",
              "system:authenticated"]


def _sa(namespace: str, name: str, agent: str, weight: int) -> tuple[dict[str, Any], str, str, int]:
    user = {"username": f"system:serviceaccount:{namespace}:{name}", "uid": str(uuid.uuid4()),
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                       "system:authenticated"]}
    return user, agent, "10.0.0.10", weight


# (user, userAgent, sourceIP, weight)
USERS: list[tuple[dict[str, Any], str, str, int]] = [
    ({"username": "system:apiserver", "uid": "9b8be269-f056-4c19-b0e8-240e7489032b",
      "groups": ["system:masters"]}, f"kube-apiserver/{_K8S}", "127.0.0.1", 40),
    *[_sa("kube-system", c, f"kube-controller-manager/{_K8S}/system:serviceaccount:kube-system:{c}",
          3)
      for c in ("replicaset-controller", "deployment-controller", "endpoint-controller",
                "endpointslice-controller", "namespace-controller", "generic-garbage-collector",
                "resourcequota-controller", "daemon-set-controller")],
    _sa("kube-system", "coredns", "coredns/v0.0.0 (linux/amd64) kubernetes/$Format", 2),
    _sa("monitoring", "prometheus", "Prometheus/2.24.1", 3),
    _sa("ingress-nginx", "ingress-nginx", "nginx-ingress-controller/v0.44.0 (linux/amd64)", 2),
    ({"username": "system:kube-controller-manager", "groups": ["system:authenticated"]},
     f"kube-controller-manager/{_K8S}/leader-election", "10.0.0.10", 5),
    ({"username": "system:kube-scheduler", "groups": ["system:authenticated"]},
     f"kube-scheduler/{_K8S}/scheduler", "10.0.0.10", 4),
    *[({"username": f"system:node:worker-{i}", "groups": ["system:nodes", "system:authenticated"]},
       f"kubelet/{_K8S}", f"10.0.1.{10 + i}", 2) for i in (1, 2, 3)],
    ({"username": "admin", "uid": "uid-admin",
      "groups": ["system:masters", "system:authenticated"]},
     f"kubectl/{_K8S}", "192.168.1.20", 8),
    ({"username": "alice", "uid": "uid-alice", "groups": ["dev-team", "system:authenticated"]},
     f"kubectl/{_K8S}", "192.168.1.21", 2),
]

ALLOW = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
# a last-applied-configuration style filler: quotes, backslashes and newlines like real objects
_FILLER_UNIT = (
    '{"apiVersion":"v1","kind":"ConfigMap","data":{"ca.crt":"-----BEGIN CERTIFICATE-----\\n'
    "MIIDFTCCAf2gAwIBAgIUFDHqGt81khaVSaN9B4P4a3m1rOIwDQYJKoZIhvcNAQEL\n"
    "BQAwGjEYMBYGA1UEAwwPa3ViZS1oYXJuZXNzLWNhMB4XDTI2MTEyNjE0MTUxMVoX\n"
    'DTM2MTEyMzE0MTUxMVowGjEYMBYGA1UEAwwPa3ViZS1oYXJuZXNzLWNhMIIBIjAN"},'
    '"metadata":{"annotations":{},"labels":{"app.kubernetes.io/name":"web","tier":"frontend"},'
    '"name":"web-config","namespace":"demo"}}\n'
)


def _quantile_sampler(quantiles: list[int]) -> Any:
    """Inverse-CDF sampling from equally spaced quantiles, linear in between."""
    steps = len(quantiles) - 1

    def sample(rng: random.Random) -> int:
        x = rng.random() * steps
        i = int(x)
        if i >= steps:
            return quantiles[-1]
        lo, hi = quantiles[i], quantiles[i + 1]
        return int(lo + (hi - lo) * (x - i))

    return sample


_request_size = _quantile_sampler(REQUEST_OBJECT_SIZES)
_response_size = _quantile_sampler(RESPONSE_OBJECT_SIZES)


class _Chooser:
    """Weighted choice with a precomputed cumulative table (random.choices recomputes it)."""

    def __init__(self, items: list[Any], weights: list[float]) -> None:
        self.items = items
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


def _chooser(table: dict[Any, float]) -> _Chooser:
    return _Chooser(list(table), list(table.values()))


_LEVEL = _chooser(LEVEL_WEIGHTS)
_RESOURCE = {lv: _Chooser([r[:3] for r in rs], [r[3] for r in rs])
             for lv, rs in RESOURCES_BY_LEVEL.items()}
_VERB = {lv: _chooser(vs) for lv, vs in VERBS_BY_LEVEL.items()}
_USER = _Chooser([u[:3] for u in USERS], [u[3] for u in USERS])
_NAMESPACE = _chooser(NAMESPACES)
_ENCODE = msgspec.json.Encoder().encode


class _Clock:
    """Strictly increasing microsecond timestamps, formatted like the API server's."""

    def __init__(self, start_us: int) -> None:
        self.now = start_us
        self._sec = -1
        self._prefix = ""

    def tick(self, rng: random.Random) -> int:
        self.now += 1 + int(rng.random() * 60)
        return self.now

    def fmt(self, us: int) -> str:
        sec, frac = divmod(us, 1_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{frac:06d}Z"


def _name(rng: random.Random, resource: str, namespace: str) -> str:
    if resource == "namespaces":
        return namespace
    if resource == "pods":
        return f"web-{rng.randrange(16**9):09x}-{rng.randrange(36**5):05x}"
    base = resource[:-1] if resource.endswith("s") else resource
    return f"{base}-{rng.randrange(400)}"


def _object(rng: random.Random, size: int, kind: str, api_version: str, name: str,
            namespace: str, created: str) -> dict[str, Any]:
    """A Kubernetes object of about ``size`` bytes of compact JSON."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["uid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    meta["resourceVersion"] = str(rng.randrange(1, 10**7))
    meta["creationTimestamp"] = created
    meta["labels"] = {"app": "web"}
    obj: dict[str, Any] = {"kind": kind, "apiVersion": api_version, "metadata": meta}
    room = size - len(_ENCODE(obj)) - 60
    if room > 0:
        start = rng.randrange(len(_FILLER_UNIT))
        meta["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": _FILLER[start:start + room]}
    return obj


_FILLER = _FILLER_UNIT * (8000 // len(_FILLER_UNIT) + 2)


def _status(code: int, reason: str, resource: str, name: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f'{resource} "{name}" {reason.lower()}', "reason": reason,
            "details": {"name": name, "kind": resource}, "code": code}


def iter_events(n: int, seed: int = 0, start_us: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``n`` audit.k8s.io/v1 events (dicts, as EventList items: no kind/apiVersion)."""
    rng = random.Random(seed)
    clock = _Clock(int(time.time() * 1_000_000) if start_us is None else start_us)
    for _ in range(n):
        level = _LEVEL(rng)
        group, resource, sub = _RESOURCE[level](rng)
        r = rng.random()
        if r < RESPONSE_STARTED_RATE:
            stage = "ResponseStarted"
        elif r < (1 + RESPONSE_STARTED_RATE) / 2:
            stage = "RequestReceived"
        else:
            stage = "ResponseComplete"
        user, agent, ip = _USER(rng)
        if not resource:
            verb = "get"
            uri = NON_RESOURCE_URLS[rng.randrange(len(NON_RESOURCE_URLS))]
            obj_ref = None
            namespace = name = ""
        else:
            if sub == "exec":
                verb = "create"
            elif sub == "status":
                verb = "patch"
            elif stage == "ResponseStarted":
                verb = "watch"
            else:
                verb = _VERB[level](rng)
            namespace = ""
            if resource in NAMESPACED and (verb not in ("list", "watch") or rng.random() < 0.5):
                namespace = _NAMESPACE(rng)
            version = GROUP_VERSIONS[group]
            api_path = f"/apis/{group}/{version}" if group else "/api/v1"
            ns_path = f"/namespaces/{namespace}" if namespace else ""
            name = ""
            if resource == "namespaces" and verb not in ("list", "watch", "create"):
                namespace = _NAMESPACE(rng)
                name = namespace
            elif verb not in ("list", "watch", "create") or sub or (
                    verb == "create" and stage != "RequestReceived"):
                name = _name(rng, resource, namespace)
            uri = f"{api_path}{ns_path}/{resource}"
            if name and not (verb == "create" and not sub):
                uri = f"{uri}/{name}"
            if sub:
                uri = f"{uri}/{sub}"
            if verb == "list":
                uri += "?limit=500&resourceVersion=0"
            elif verb == "watch":
                uri += (f"?allowWatchBookmarks=true&resourceVersion={rng.randrange(10**6)}"
                        f"&timeout=7m{rng.randrange(60)}s&timeoutSeconds={rng.randrange(300, 600)}"
                        "&watch=true")
            elif sub == "exec":
                uri += "?command=ls&command=%2F&container=web&stderr=true&stdout=true"
            elif verb == "create" and resource == "pods":
                uri += "?fieldManager=kubectl-run"
            obj_ref = {"resource": resource}
            if namespace and resource != "namespaces":
                obj_ref["namespace"] = namespace
            if name:
                obj_ref["name"] = name
            if group:
                obj_ref["apiGroup"] = group
            obj_ref["apiVersion"] = version
            if sub:
                obj_ref["subresource"] = sub

        stage_us = clock.tick(rng)
        received_us = stage_us
        if stage != "RequestReceived":
            received_us -= rng.randrange(200, 20000)  # the request's latency so far
        event: dict[str, Any] = {
            "level": level, "auditID": str(uuid.uuid4()), "stage": stage, "requestURI": uri,
            "verb": verb, "user": user, "sourceIPs": [ip], "userAgent": agent,
        }
        if obj_ref is not None:
            event["objectRef"] = obj_ref
        if stage != "RequestReceived":
            code = 200
            if verb == "create":
                code = 409 if rng.random() < 0.03 else 201
            elif verb == "get" and resource and rng.random() < 0.25:
                code = 404
            elif user["username"] == "alice" and rng.random() < 0.3:
                code = 403
            if code < 300:
                event["responseStatus"] = {"metadata": {}, "code": code}
            else:
                reason = {404: "NotFound", 409: "AlreadyExists", 403: "Forbidden"}[code]
                event["responseStatus"] = {"metadata": {}, "status": "Failure", "reason": reason,
                                           "code": code}
            kind = KINDS.get(resource, "")
            api_version = f"{group}/{GROUP_VERSIONS[group]}" if group else "v1"
            created = clock.fmt(received_us)[:19] + "Z"
            if level != "Metadata" and verb in MUTATING:
                if verb == "delete":
                    event["requestObject"] = {"kind": "DeleteOptions", "apiVersion": api_version,
                                              "propagationPolicy": "Background"}
                else:
                    event["requestObject"] = _object(rng, _request_size(rng), kind, api_version,
                                                      name, namespace, created)
            if level == "RequestResponse":
                if code >= 300:
                    event["responseObject"] = _status(code, event["responseStatus"]["reason"],
                                                      resource, name)
                elif verb == "list":
                    event["responseObject"] = {"kind": f"{kind}List", "apiVersion": api_version,
                                               "metadata": {"resourceVersion": str(stage_us)},
                                               "items": []}
                elif verb != "watch":
                    event["responseObject"] = _object(rng, _response_size(rng), kind,
                                                      api_version, name, namespace, created)
        event["requestReceivedTimestamp"] = clock.fmt(received_us)
        event["stageTimestamp"] = clock.fmt(stage_us)
        if stage != "RequestReceived":
            if code == 403:
                event["annotations"] = {"authorization.k8s.io/decision": "forbid",
                                        "authorization.k8s.io/reason": ""}
            else:
                event["annotations"] = ALLOW
        yield event


def generate_events(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` realistic events with new uuid4 auditIDs and increasing timestamps."""
    return list(iter_events(n, seed))


def encode_eventlist(items: list[dict[str, Any]]) -> bytes:
    """An EventList body as kube-apiserver sends it: compact, ``&<>`` escaped like Go, + "\\n".

    >>> encode_eventlist([])
    b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}\\n'
    """
    body = _ENCODE({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                    "items": items})
    # Go's encoding/json escapes these for HTML safety; they only occur inside strings
    body = body.replace(b"&", b"\\u0026").replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
    return body + b"\n"


def iter_bodies(n_events: int, batch_size: int, seed: int = 0) -> Iterator[bytes]:
    """Yield EventList bodies of ``batch_size`` events (the last may be shorter)."""
    events = iter_events(n_events, seed)
    while True:
        batch = list(itertools.islice(events, batch_size))
        if not batch:
            return
        yield encode_eventlist(batch)


def eventlist_bodies(n_events: int, batch_size: int, seed: int = 0) -> list[bytes]:
    """EventList JSON bodies (bytes, each ending in a newline) holding ``n_events`` in total."""
    return list(iter_bodies(n_events, batch_size, seed))


def write_bodies(path: str, n_events: int, batch_size: int, seed: int = 0) -> int:
    """Write one body per line to ``path``; return the number of bodies."""
    count = 0
    with open(path, "wb") as out:
        for body in iter_bodies(n_events, batch_size, seed):
            out.write(body)
            count += 1
    return count


def _stats(n: int, seed: int) -> None:
    events = generate_events(n, seed)
    sizes = sorted(len(_ENCODE(e)) for e in events)
    print(f"{n} events, sizes min/median/p90/max: {sizes[0]}/{sizes[n // 2]}/"
          f"{sizes[int(n * 0.9)]}/{sizes[-1]} bytes")
    for key in ("level", "stage", "verb"):
        c = Counter(e[key] for e in events)
        print(key, {k: round(v / n, 3) for k, v in c.most_common()})
    c = Counter(e["user"]["username"].split(":")[0] + (":serviceaccount" if "serviceaccount"
                                                       in e["user"]["username"] else "")
                for e in events)
    print("users", {k: round(v / n, 3) for k, v in c.most_common()})
    c = Counter((e.get("objectRef") or {}).get("namespace") for e in events)
    print("namespaces", {k: round(v / n, 3) for k, v in c.most_common()})
    print("unique auditIDs", len({e["auditID"] for e in events}) == n)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate_data",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=4000, help="events in total")
    parser.add_argument("--batch", type=int, default=400, help="events per EventList body")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mix (auditIDs are uuid4)")
    parser.add_argument("--out", help="write one body per line here (default: stdout)")
    parser.add_argument("--stats", action="store_true", help="print the mix instead")
    args = parser.parse_args(argv)
    if args.stats:
        _stats(args.events, args.seed)
        return
    if args.out:
        t0 = time.perf_counter()
        count = write_bodies(args.out, args.events, args.batch, args.seed)
        print(f"wrote {count} bodies ({args.events} events) to {args.out} in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    else:
        for body in iter_bodies(args.events, args.batch, args.seed):
            sys.stdout.buffer.write(body)


if __name__ == "__main__":
    main()
