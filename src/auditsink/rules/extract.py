"""Extractor builders for the ``ka.*`` and ``jevt.*`` fields (see fields.py for the table).

A builder takes the field's ``[arg]`` (or None) and returns ``extract(doc) -> value``: a ``str``,
a ``list[str]`` for list fields, or ``None`` when the value is not in the event. Values follow
the k8saudit plugin's extractor (falcosecurity/plugins ``plugins/k8saudit``): JSON strings as
they are, any other JSON value as its compact JSON text (``true``, ``201``, ``{"a":"b"}``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

Value = str | list[str] | None
Extractor = Callable[[dict[str, Any]], Value]
Builder = Callable[[str | None], Extractor]

_encode = msgspec.json.encode
MISSING: Any = object()  # an absent key; None is a JSON null that is present


class FieldError(ValueError):
    """A field name or argument that no extractor knows."""


def text(value: Any) -> str:
    """A JSON value as the plugin renders it.

    >>> text("a"), text(True), text(201), text({"k": ["v"]})
    ('a', 'true', '201', '{"k":["v"]}')
    """
    if type(value) is str:
        return value
    return _encode(value).decode()


def _walk(doc: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if type(doc) is not dict:
            return MISSING
        doc = doc.get(key, MISSING)
        if doc is MISSING:
            return MISSING
    return doc


def scalar(*keys: str) -> Builder:
    """The value at a path of keys, e.g. ``scalar("user", "username")``."""

    def build(arg: str | None) -> Extractor:
        # One- and two-level paths are most of the hot fields: give them a straight path.
        if len(keys) == 1:
            (k1,) = keys

            def top(doc: dict[str, Any]) -> Value:
                value = doc.get(k1, MISSING)
                return None if value is MISSING else value if type(value) is str else text(value)

            return top
        if len(keys) == 2:
            k1, k2 = keys

            def nested(doc: dict[str, Any]) -> Value:
                inner = doc.get(k1)
                if type(inner) is not dict:
                    return None
                value = inner.get(k2, MISSING)
                return None if value is MISSING else value if type(value) is str else text(value)

            return nested

        def extract(doc: dict[str, Any]) -> Value:
            value = _walk(doc, keys)
            return None if value is MISSING else text(value)

        return extract

    return build


def list_of(*keys: str) -> Builder:
    """The items of the array at a path, one value each (``[N]`` picks one)."""

    def build(arg: str | None) -> Extractor:
        index = _index(arg)

        def extract(doc: dict[str, Any]) -> Value:
            value = _walk(doc, keys)
            if type(value) is not list:
                return None
            if index is not None:
                return [text(value[index])] if index < len(value) else None
            return [text(v) for v in value]

        return extract

    return build


def _index(arg: str | None) -> int | None:
    if arg is None:
        return None
    if not arg.isdigit():
        raise FieldError(f"expected a numeric index argument, got {arg!r}")
    return int(arg)


def _items(doc: dict[str, Any], keys: tuple[str, ...], index: int | None) -> list[Any] | None:
    """The objects of the array at ``keys`` (all, or the one at ``index``); None when absent."""
    value = _walk(doc, keys)
    if type(value) is not list:
        return None
    if index is not None:
        return [value[index]] if index < len(value) else None
    return value


def per_item(keys: tuple[str, ...], sub: tuple[str, ...], flatten: bool = False) -> Builder:
    """Values of ``sub`` in each object of the array at ``keys``; items lacking it are skipped.

    With ``flatten`` the values are arrays whose items are the values (role rules' verbs).
    """

    def build(arg: str | None) -> Extractor:
        index = _index(arg)

        def extract(doc: dict[str, Any]) -> Value:
            items = _items(doc, keys, index)
            if items is None:
                return None
            out: list[str] = []
            for item in items:
                value = _walk(item, sub)
                if value is MISSING or value is None:
                    continue
                if not flatten:
                    out.append(text(value))
                elif type(value) is list:  # as the plugin: only arrays count when flattening
                    out.extend(text(v) for v in value if v is not None)
            return out

        return extract

    return build


def repository(image: str) -> str:
    """The repository part of an image, split like the plugin does (first ``:``, then ``@``).

    >>> repository("docker.io/falcosecurity/falco:0.34"), repository("registry:5000/img:tag")
    ('docker.io/falcosecurity/falco', 'registry')
    """
    return image.split(":", 1)[0].split("@", 1)[0]


def images(kind: str, repo: bool) -> Builder:
    """Image (or repository) of each container of ``kind``; absent if one has no image."""

    def build(arg: str | None) -> Extractor:
        index = _index(arg)

        def extract(doc: dict[str, Any]) -> Value:
            items = _items(doc, ("requestObject", "spec", kind), index)
            if items is None:
                return None
            out = []
            for item in items:
                image = item.get("image") if type(item) is dict else None
                if image is None:
                    return None  # the plugin fails the whole field when one image is absent
                out.append(repository(text(image)) if repo else text(image))
            return out

        return extract

    return build


def effective(kind: str, key: str) -> Builder:
    """Container securityContext value, else the pod's, else "0" (what the kubelet would use)."""

    def build(arg: str | None) -> Extractor:
        index = _index(arg)

        def extract(doc: dict[str, Any]) -> Value:
            items = _items(doc, ("requestObject", "spec", kind), index)
            if items is None:
                return None
            pod = _walk(doc, ("requestObject", "spec", "securityContext", key))
            default = "0" if pod is MISSING or pod is None else text(pod)
            out = []
            for item in items:
                value = _walk(item, ("securityContext", key))
                out.append(default if value is MISSING or value is None else text(value))
            return out

        return extract

    return build


def host_ports(kind: str) -> Builder:
    """hostPort (else containerPort) of every port of every container of ``kind``."""

    def build(arg: str | None) -> Extractor:
        index = _index(arg)

        def extract(doc: dict[str, Any]) -> Value:
            items = _items(doc, ("requestObject", "spec", kind), index)
            if items is None:
                return None
            out = []
            for item in items:
                ports = item.get("ports") if type(item) is dict else None
                for port in ports if type(ports) is list else ():
                    if type(port) is not dict:
                        continue
                    # With hostNetwork the containerPort is the host port (plugin behaviour).
                    value = port.get("hostPort", port.get("containerPort"))
                    if value is not None:
                        out.append(text(value))
            return out

        return extract

    return build


def joined(kind: str, key: str) -> Builder:
    """One value per container: its command (or args) joined by spaces."""

    def build(arg: str | None) -> Extractor:
        index = _index(arg)

        def extract(doc: dict[str, Any]) -> Value:
            items = _items(doc, ("requestObject", "spec", kind), index)
            if items is None:
                return None
            out = []
            for item in items:
                value = item.get(key) if type(item) is dict else None
                if type(value) is list:
                    out.append(" ".join(text(v) for v in value))
            return out

        return extract

    return build


def hostpaths(arg: str | None) -> Extractor:
    """``ka.req.pod.volumes.hostpath``: ``[N]`` picks volume N, any other argument is a glob."""
    pattern = None if arg is None or arg.isdigit() else arg
    inner = per_item(("requestObject", "spec", "volumes"), ("hostPath", "path"))(
        None if pattern is not None else arg
    )
    if pattern is None:
        return inner

    def extract(doc: dict[str, Any]) -> Value:
        paths = inner(doc)
        if not paths:
            return None
        matched = [p for p in paths if fnmatch.fnmatchcase(p, pattern)]
        return matched or None

    return extract


def volume_hostpath(arg: str | None) -> Extractor:
    """Deprecated ``ka.req.volume.hostpath[path]``: "true" if a hostPath equals (or, with a
    trailing ``*``, starts with) the argument."""
    assert arg is not None
    prefix = arg[:-1] if arg.endswith("*") else None
    inner = per_item(("requestObject", "spec", "volumes"), ("hostPath", "path"))(None)

    def extract(doc: dict[str, Any]) -> Value:
        paths = inner(doc)
        if paths is None:
            return None
        hit = any(p == arg or (prefix is not None and p.startswith(prefix)) for p in paths)
        return "true" if hit else "false"

    return extract


def volume_types(arg: str | None) -> Extractor:
    """The volume source keys of each volume (hostPath, emptyDir, ...)."""
    index = _index(arg)

    def extract(doc: dict[str, Any]) -> Value:
        items = _items(doc, ("requestObject", "spec", "volumes"), index)
        if items is None:
            return None
        return [k for item in items if type(item) is dict for k in item if k != "name"]

    return extract


def first_image(kind: str, repo: bool) -> Builder:
    """Image (or repository) of the first container only (deprecated plugin fields)."""

    def build(arg: str | None) -> Extractor:
        first = images(kind, repo)("0")

        def extract(doc: dict[str, Any]) -> Value:
            values = first(doc)
            return values[0] if values else None

        return extract

    return build


def any_privileged(arg: str | None) -> Extractor:
    """ "true" when any regular container is privileged, else "false"."""
    inner = per_item(("requestObject", "spec", "containers"), ("securityContext", "privileged"))(
        None
    )

    def extract(doc: dict[str, Any]) -> Value:
        values = inner(doc)
        if values is None:
            return None
        return "true" if "true" in values else "false"

    return extract


def subjects(kind: str, with_ns: bool = False) -> Builder:
    """Names of a binding's subjects of one kind (``namespace:name`` for service accounts)."""

    def build(arg: str | None) -> Extractor:
        def extract(doc: dict[str, Any]) -> Value:
            items = _items(doc, ("requestObject", "subjects"), None)
            if items is None:
                return None
            out = []
            for s in items:
                if type(s) is not dict or s.get("kind") != kind or "name" not in s:
                    continue
                name = text(s["name"])
                out.append(f"{text(s.get('namespace', ''))}:{name}" if with_ns else name)
            return out

        return extract

    return build


def rules_field(key: str) -> Builder:
    """One key of every rule of a role, flattened (``[N]`` picks rule N)."""
    return per_item(("requestObject", "rules"), (key,), flatten=True)


def uri_param(arg: str | None) -> Extractor:
    """The first value of query parameter ``arg`` of the request URI."""
    assert arg is not None

    def extract(doc: dict[str, Any]) -> Value:
        uri = doc.get("requestURI")
        if type(uri) is not str:
            return None
        values = parse_qs(urlsplit(uri).query, keep_blank_values=True).get(arg)
        return values[0] if values else None

    return extract


def target_pod_name(arg: str | None) -> Extractor:
    """The pod a pods request is about: the created pod's name, else objectRef.name."""

    def extract(doc: dict[str, Any]) -> Value:
        ref = doc.get("objectRef")
        if type(ref) is not dict or ref.get("resource") != "pods":
            return None
        if not ref.get("subresource"):
            name = _walk(doc, ("responseObject", "metadata", "name"))
            if name is not MISSING:
                return text(name)
        name = ref.get("name")
        return None if name is None else text(name)

    return extract


def constant(value: str) -> Builder:
    """Always ``value``."""
    return lambda arg: lambda doc: value
