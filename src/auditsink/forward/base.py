"""What every output shares: the registries, the common settings, and the output anatomy.

An output is three parts (style.md, after vector's sinks and falcosidekick's outputs):
- a **config**: a dataclass of its own settings (``FileConfig``: ``path``, ``rotate_bytes``...)
  beside the common ones of :class:`OutputConfig` (format, batching, retries, filter, policy);
- a **pure encoder**: ``render(docs) -> payload``, one batch of encoded events to what the
  destination takes (tested by exact equality);
- a **sender**: ``send(payload)``, which raises :class:`DeliveryError` to be retried and
  returns the positions the destination refused for good (Elasticsearch's per-item errors).

Outputs and formats are registered here by name as import strings, imported when used, so an
output's client library costs nothing unless it is configured.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from auditsink.model import Event

OUTPUTS = {
    "blackhole": "auditsink.forward.blackhole:BlackholeOutput",
    "file": "auditsink.forward.file:FileOutput",
    "http": "auditsink.forward.http:HttpOutput",
    "splunk": "auditsink.forward.splunk:SplunkOutput",
    "elasticsearch": "auditsink.forward.elasticsearch:ElasticsearchOutput",
    "loki": "auditsink.forward.loki:LokiOutput",
    "otlp": "auditsink.forward.otlp:OtlpOutput",
    "syslog": "auditsink.forward.syslog:SyslogOutput",
    "nats": "auditsink.forward.nats:NatsOutput",
}

FORMATS = {
    "native": "auditsink.forward.formats.native:encode",
    "ocsf": "auditsink.forward.formats.ocsf:encode",
    "ecs": "auditsink.forward.formats.ecs:encode",
}


class DeliveryError(Exception):
    """The destination did not take the payload; it is retried (with ``remaining`` only,
    when the destination took part of it)."""

    def __init__(self, message: str, remaining: Any = None) -> None:
        super().__init__(message)
        self.remaining = remaining


class OutputConfigError(ValueError):
    """An output's settings cannot work; the message names the output and the key."""


@dataclass
class Record:
    """One stored event on its way out: its log position, cluster, the (policy-applied)
    event and its exact bytes."""

    id: int
    cluster: str
    event: Event
    raw: bytes


@dataclass
class Doc:
    """A record encoded in the output's format: ``body`` is one JSON document (bytes)."""

    record: Record
    body: bytes


@dataclass
class Rejection:
    """An event the destination refused for good (not worth retrying)."""

    position: int
    error: str


@dataclass
class OutputConfig:
    """The settings every output has (docs/forward.md, "Common settings")."""

    type: str
    name: str = ""
    format: str = "native"          # native, ocsf, ecs
    batch_events: int = 500         # events per payload at most
    batch_seconds: float = 1.0      # a partial batch waits this long for more events
    max_attempts: int = 10          # then the batch becomes a dead letter (0: retry forever)
    backoff_seconds: float = 1.0    # first wait between attempts, doubling ...
    backoff_max_seconds: float = 60.0  # ... up to this
    timeout: float = 10.0           # seconds per attempt (network outputs)
    match: list[str] = field(default_factory=list)  # KEY=VALUE filters, as `serve --match`
    policy: str = ""                # an audit policy file applied for this output only

    target_key: ClassVar[str] = ""  # the setting `--forward TYPE:TARGET` fills

    @property
    def cursor(self) -> str:
        """The durable cursor's name in the store."""
        return f"output:{self.name}"


class Output:
    """Base class: ``render`` (pure) and ``send``; ``close`` releases connections/files."""

    config_class: ClassVar[type[OutputConfig]] = OutputConfig

    def __init__(self, config: Any) -> None:
        self.config = config

    def render(self, docs: Sequence[Doc]) -> Any:
        raise NotImplementedError

    def send(self, payload: Any) -> Sequence[Rejection]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sender holds (connections, open files)."""


def _import(target: str) -> Any:
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def output_class(kind: str) -> type[Output]:
    """The output class registered for ``kind``."""
    target = OUTPUTS.get(kind)
    if target is None:
        raise OutputConfigError(f"unknown output type {kind!r}; expected one of "
                                + ", ".join(sorted(OUTPUTS)))
    cls: type[Output] = _import(target)
    return cls


def encoder(fmt: str) -> Any:
    """The pure ``encode(record) -> bytes`` of format ``fmt``."""
    target = FORMATS.get(fmt)
    if target is None:
        raise OutputConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return _import(target)


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """``value`` as the dataclass field type ``kind`` (str, int, float, bool, list, dict)."""
    origin = typing.get_origin(kind) or kind
    if origin in (types.UnionType, typing.Union):
        return _coerce(value, next(a for a in typing.get_args(kind) if a is not type(None)), where)
    if origin is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "false", "no", "0"):
            return str(value).lower() in ("true", "yes", "1")
    elif origin in (int, float):
        if not isinstance(value, bool):
            try:
                return origin(value)
            except (TypeError, ValueError):
                pass
    elif origin is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    elif origin is list:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list):
            return [str(v) for v in items]
    elif origin is dict:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    name = getattr(origin, "__name__", str(origin))
    raise OutputConfigError(f"{where}: expected {'a ' + name if name != 'list' else 'a list'}, "
                            f"got {value!r}")


def parse_output(data: Any, where: str = "outputs[0]") -> OutputConfig:
    """A config-file ``outputs:`` entry to the output's config dataclass.

    >>> parse_output({"type": "file", "path": "/tmp/a.jsonl"}).name
    'file'
    """
    if not isinstance(data, dict):
        raise OutputConfigError(f"{where}: expected a mapping with `type` and the output's "
                                f"settings, got {data!r}")
    kind = data.get("type")
    if not kind:
        raise OutputConfigError(f"{where}: `type` is required (one of "
                                f"{', '.join(sorted(OUTPUTS))})")
    cls = output_class(str(kind))
    config_class = cls.config_class
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(config_class)
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise OutputConfigError(f"{where} ({kind}): unknown key {key!r}; known keys: "
                                    + ", ".join(sorted(fields)))
        values[name] = _coerce(value, hints[name], f"{where} ({kind}).{key}")
    try:
        config = config_class(**values)
    except TypeError as exc:  # a required setting is missing
        missing = [f.name for f in fields.values() if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name not in values]
        raise OutputConfigError(f"{where} ({kind}): missing {', '.join(missing) or exc}") from None
    if not config.name:
        config.name = str(kind)
    check = getattr(config, "check", None)
    if check is not None:
        problem = check()
        if problem:
            raise OutputConfigError(f"{where} ({kind}): {problem}")
    encoder(config.format)  # an unknown format fails at load, not at the first event
    if config.format not in FORMATS:  # pragma: no cover - encoder() raised already
        raise OutputConfigError(f"{where}: unknown format {config.format!r}")
    for key, minimum in (("batch_events", 1), ("max_attempts", 0)):
        if getattr(config, key) < minimum:
            raise OutputConfigError(f"{where} ({kind}).{key}: must be at least {minimum}")
    return config


def parse_forward(spec: str, fmt: str = "native") -> OutputConfig:
    """``serve --forward TYPE:TARGET`` to a config, named after the spec (its cursor).

    >>> parse_forward("http:https://ops:pw@collector.example/ingest").name
    'http:https://collector.example/ingest'
    """
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise OutputConfigError(f"--forward {spec!r}: expected TYPE:TARGET, e.g. "
                                "file:/var/log/auditsink/audit.jsonl or http:https://host/ingest")
    config_class = output_class(kind).config_class
    if not config_class.target_key:
        raise OutputConfigError(f"--forward {spec!r}: {kind} takes no target; configure it in "
                                "the config file's outputs list")
    return parse_output({"type": kind, config_class.target_key: target, "format": fmt,
                         "name": f"{kind}:{_without_credentials(target)}"}, f"--forward {spec!r}")


def _without_credentials(target: str) -> str:
    """A target without ``user:password@`` (names and cursors never hold credentials)."""
    scheme, sep, rest = target.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return target


def build_output(config: OutputConfig) -> Output:
    """Instantiate the output for ``config``."""
    return output_class(config.type)(config)
