"""Every setting of auditsink in one typed table: config file, environment and flags alike.

A setting is one field of :class:`Settings`. Its name is the key in the config file
(``queue_events``), the flag (``--queue-events``) and the environment variable
(``AUDITSINK_QUEUE_EVENTS``); the field's type and default are the setting's. One config file
serves every command: a key only another command uses is fine, an unknown key is an error
naming the file and the key. Precedence: flag, then environment, then config file, then default.

Adding a setting is one field below (docs/architecture.md); ``docs/configuration.md`` is
generated from this table (:func:`markdown`) and a test fails when it drifts.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from auditsink.store.base import DEFAULT_STORE_URL

SERVE, WORKER, IMPORT = "serve", "worker", "import"
#: The read commands: they take ``--store`` (and ``--config`` for it).
READ = ("query", "tail", "show", "stats", "rejected", "alerts", "outputs", "policy simulate",
        "policy suggest", "rbac suggest", "rbac diff", "rbac load", "db migrate", "db status")
ENV_PREFIX = "AUDITSINK_"


class SettingsError(ValueError):
    """A setting that cannot work: the message names it (and the file) and says what to do."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class Spec:
    """What the field itself cannot say about a setting."""

    help: str
    commands: tuple[str, ...]
    choices: tuple[str, ...] = ()
    #: the value names an existing file
    file: bool = False
    #: False: only in the config file (a list of mappings has no flag)
    flag: bool = True
    metavar: str | None = None
    minimum: int | None = None
    maximum: int | None = None


def _setting(default: Any, help: str, commands: tuple[str, ...] | str, **spec: Any) -> Any:
    commands = (commands,) if isinstance(commands, str) else commands
    return field(default=default, metadata={"setting": Spec(help, commands, **spec)})


@dataclass(frozen=True)
class Settings:
    """The settings of one process. Build it in Python (``Settings(store="sqlite:///x.db")``),
    from a config file (:func:`read_config`) or from the command line (``auditsink.cli``)."""

    # -- the webhook listener (receive/) ----------------------------------------------------
    listen: str = _setting(
        "127.0.0.1:8080", "HOST:PORT for the webhook. Beyond loopback needs TLS and "
        "authentication (or --insecure).", SERVE)
    path: tuple[str, ...] = _setting(
        (), "Only accept POSTs on this path (repeatable; default: any path). /clusters/NAME is "
        "always accepted.", SERVE)
    max_body: str = _setting("64MiB", "Largest request body accepted (413 above).", SERVE)
    body_timeout: float = _setting(
        25.0, "Seconds to receive a request body (the API server gives up after 30).", SERVE)
    tls_cert: str | None = _setting(None, "Server certificate (PEM).", SERVE, file=True)
    tls_key: str | None = _setting(None, "Server private key (PEM).", SERVE, file=True)
    client_ca: str | None = _setting(None, "CA for client certificates (mTLS).", SERVE, file=True)
    allowed_cn: tuple[str, ...] = _setting(
        (), "Accept only client certificates with this CN (repeatable).", SERVE)
    token_file: str | None = _setting(
        None, "Bearer tokens, one per line: TOKEN[,CLUSTER].", SERVE, file=True)
    basic_auth_file: str | None = _setting(
        None, "Basic auth lines USER:PASSWORD[:CLUSTER]; bcrypt hashes accepted.", SERVE,
        file=True)
    insecure: bool = _setting(
        False, "Allow listening beyond loopback without TLS and authentication.", SERVE)

    # -- limits on both listeners (receive/server.py; docs/security.md) ---------------------
    max_header_bytes: str = _setting(
        "64KiB", "Largest request line plus headers (431 above), on both listeners.", SERVE)
    header_timeout: float = _setting(
        10.0, "Seconds a client has to send a request's head after its first byte.", SERVE)
    idle_timeout: float = _setting(
        75.0, "Seconds an idle connection (kept alive, or one that never sent a byte) stays "
        "open.", SERVE)
    tls_handshake_timeout: float = _setting(10.0, "Seconds a TLS handshake may take.", SERVE)
    max_connections: int = _setting(
        1000, "Connections per listener; past it the one idle the longest is closed (lowered "
        "to fit the open-file limit).", SERVE, minimum=1, maximum=1_000_000)
    inflight_budget: str = _setting(
        "512MiB", "Body bytes (as read, and decompressed) all ingest requests may hold at "
        "once; 429 above.", SERVE)
    api_host: tuple[str, ...] = _setting(
        (), "A name the read API and UI answer to besides the loopback names and the listen "
        "address (repeatable; checked against Host: DNS-rebinding protection).", SERVE,
        metavar="NAME")

    # -- admit and print (pipeline.py, admit/) ----------------------------------------------
    format: str = _setting(
        "text", "Print each event to stdout: text (one line), json (audit-log line) or none.",
        SERVE, choices=("text", "json", "none"))
    match: tuple[str, ...] = _setting(
        (), "Keep only matching events (user, group, verb, resource, apiGroup, namespace, name, "
        "stage, level, code, cluster). Repeatable.", (SERVE, IMPORT), metavar="KEY=VALUE")
    policy: str | None = _setting(
        None, "Audit policy applied before storing: drops None, downgrades levels.",
        (SERVE, IMPORT), file=True)
    redact_secrets: bool = _setting(
        True, "Replace Secret values (data, stringData, last-applied) and tokens (TokenRequest, "
        "TokenReview) before storing or printing.", (SERVE, IMPORT))

    # -- the store (store/) -----------------------------------------------------------------
    store: str = _setting(
        DEFAULT_STORE_URL, "Where events are kept: sqlite:///PATH (relative), "
        "sqlite:////abs/path or postgresql://USER@HOST/DB.", (SERVE, WORKER, IMPORT, *READ))
    sync: str = _setting(
        "normal", "normal: a commit survives a crash of auditsink (SIGKILL); full: also a power "
        "loss (fsync per commit).", (SERVE, WORKER, IMPORT), choices=("normal", "full"))
    queue_events: int = _setting(
        16_000, "Events waiting for the store before the receiver answers 429 (bounds memory).",
        SERVE)
    receivers: int = _setting(
        1, "Processes that receive, decode, redact and compress: SQLite's hand rows to one "
        "writer process, PostgreSQL's each commit their own (0: one per CPU core).", SERVE,
        minimum=0, maximum=64)
    retention: str | None = _setting(
        None, "Delete events older than this, e.g. 30d (default: keep everything).", SERVE)

    # -- the read API and the web UI (query/, web/) -----------------------------------------
    api_listen: str = _setting(
        "127.0.0.1:8081", "HOST:PORT for the read API; 'none' to disable.", SERVE)
    api_token_file: str | None = _setting(
        None, "Bearer token for the read API (required beyond loopback).", SERVE, file=True)

    # -- rules and notifiers (rules/, detect.py, notify/) -----------------------------------
    rules: tuple[str, ...] = _setting(
        (), "Falco-format rule files for the k8s_audit source, loaded after the built-in rules "
        "to tune or extend them (repeatable, in order). worker: with --detect.", (SERVE, WORKER),
        file=True)
    no_default_rules: bool = _setting(
        False, "Leave the built-in rules out: only the --rules files (e.g. Falco's own "
        "k8s_audit_rules.yaml).", (SERVE, WORKER))
    no_rules: bool = _setting(False, "Do not evaluate detection rules.", SERVE)
    detect: bool = _setting(
        False, "Also run the detection rules on the store (one process at a time runs them; "
        "the others stand by).", WORKER)
    notify: tuple[str, ...] = _setting(
        (), "Send alerts: stdout, webhook:URL or slack:URL (repeatable). worker: with --detect.",
        (SERVE, WORKER), metavar="KIND[:URL]")
    notify_min_priority: str = _setting(
        "WARNING", "Only notify alerts at least this severe (EMERGENCY ... DEBUG).",
        (SERVE, WORKER))
    notify_rate: int = _setting(
        10, "At most this many notifications per rule per minute; the rest arrive as one "
        "counted summary per rule and minute (0: no limit).", (SERVE, WORKER))
    notify_since: str | None = _setting(
        None, "Also notify alerts about events since WHEN (2h, 7d, RFC 3339 or 'all'); by "
        "default a notifier leaves alone events older than its first start on the store "
        "(history, e.g. imported).", (SERVE, WORKER), metavar="WHEN")

    # -- outputs: forward every stored event (forward/) ----------------------------------
    outputs: tuple[dict[str, Any], ...] = _setting(
        (), "Outputs every stored event is forwarded to, each with its own cursor: a list of "
        "mappings with `type` (file, http, splunk, elasticsearch, loki, otlp, syslog, nats) "
        "and its settings (docs/forward.md). worker: run there instead of serve --bus.",
        (SERVE, WORKER, "outputs"), flag=False)
    forward: tuple[str, ...] = _setting(
        (), "Forward every stored event to TYPE:TARGET, e.g. file:/var/log/auditsink/audit.jsonl "
        "or http:https://collector.example/ingest (repeatable; more settings in `outputs`).",
        (SERVE, WORKER, "outputs"), metavar="TYPE:TARGET")
    forward_format: str = _setting(
        "native", "Format of the --forward outputs: native (audit.k8s.io/v1 Event lines), ocsf "
        "(OCSF API Activity) or ecs.", (SERVE, WORKER, "outputs"),
        choices=("native", "ocsf", "ecs"))

    # -- the NATS bus between serve and worker (bus/) ---------------------------------------
    bus: str | None = _setting(
        None, "NATS JetStream servers: `serve` publishes batches there instead of storing "
        "them, `worker` stores them (docs/bus.md).", (SERVE, WORKER),
        metavar="nats://HOST:PORT[,...]")
    bus_stream: str = _setting(
        "auditsink", "JetStream stream holding the batches until a worker stored them.",
        (SERVE, WORKER))
    bus_subject: str = _setting(
        "auditsink.events", "Subject the batches are published on.", (SERVE, WORKER))
    bus_replicas: int = _setting(
        1, "Copies JetStream keeps of every batch when creating the stream (3 survives losing "
        "a NATS node).", (SERVE, WORKER), minimum=1, maximum=5)
    bus_consumer: str = _setting(
        "auditsink-worker", "Durable consumer name; workers sharing it split the work.", WORKER)
    fetch: int = _setting(64, "Batches pulled (and committed together) at a time.", WORKER)
    ack_wait: float = _setting(
        30.0, "Seconds before a batch a worker took but did not store goes to another worker.",
        WORKER)
    metrics_listen: str | None = _setting(
        None, "Serve Prometheus metrics (GET /metrics) and /healthz there (default: off).",
        WORKER, metavar="HOST:PORT")

    # -- logs (logs.py) ---------------------------------------------------------------------
    log_format: str = _setting(
        "text", "Logs on stderr as text or JSON lines.", (SERVE, WORKER), choices=("text", "json"))
    log_level: str = _setting(
        "info", "Least severe log level written.", (SERVE, WORKER),
        choices=("debug", "info", "warning", "error"))

    def __post_init__(self) -> None:
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if setting.spec.choices and value not in setting.spec.choices:
                raise SettingsError(f"{setting.name} {value!r}: expected one of "
                                    f"{', '.join(setting.spec.choices)}", setting.name)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Setting:
    """One row of the table: a field of :class:`Settings` with its :class:`Spec`."""

    name: str
    type: Any
    default: Any
    spec: Spec

    @property
    def env(self) -> str:
        """``queue_events`` -> ``AUDITSINK_QUEUE_EVENTS``."""
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str | None:
        """``queue_events`` -> ``--queue-events`` (None: config file only)."""
        return "--" + self.name.replace("_", "-") if self.spec.flag else None

    @property
    def optional(self) -> bool:
        """Whether None is a value (no default)."""
        return _is_optional(self.type)

    @property
    def kind(self) -> str:
        """``str``, ``int``, ``float``, ``bool``, ``list`` (of strings) or ``mappings``."""
        base = _strip_none(self.type)
        if typing.get_origin(base) is tuple:
            item = typing.get_args(base)[0]
            return "mappings" if typing.get_origin(item) is dict or item is dict else "list"
        return str(base.__name__)

    def coerce(self, value: Any, where: str) -> Any:
        """A value read from YAML (or given in Python), checked; ``where`` names its origin.

        >>> SETTINGS_BY_NAME["path"].coerce("/audit", "auditsink.yaml")
        ('/audit',)
        """
        if value is None and self.optional:
            return None
        expected, ok = _EXPECTED[self.kind], True
        kind = self.kind
        if kind == "list":
            items = value if isinstance(value, list | tuple) else [value]
            ok = all(_scalar(item) for item in items)
            value = tuple(str(item) for item in items) if ok else value
        elif kind == "mappings":
            ok = isinstance(value, list | tuple) and all(
                isinstance(item, dict) and all(isinstance(k, str) for k in item) for item in value)
            value = tuple(dict(item) for item in value) if ok else value
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = _scalar(value)
            value = str(value) if ok else value
        if not ok:
            raise SettingsError(f"{where}: key {self.name!r}: expected {expected}, got {value!r}",
                                self.name)
        self.check(value, where)
        return value

    def check(self, value: Any, where: str) -> None:
        """Choices, ranges and files; raises :class:`SettingsError` naming ``where``."""
        spec = self.spec
        if spec.choices and value not in spec.choices:
            raise SettingsError(f"{where}: key {self.name!r}: expected one of "
                                f"{', '.join(spec.choices)}, got {value!r}", self.name)
        if isinstance(value, int) and not isinstance(value, bool) and (
                (spec.minimum is not None and value < spec.minimum)
                or (spec.maximum is not None and value > spec.maximum)):
            raise SettingsError(f"{where}: key {self.name!r}: expected {spec.minimum} to "
                                f"{spec.maximum}, got {value!r}", self.name)
        if spec.file and value is not None:
            for path in value if isinstance(value, tuple) else (value,):
                if not os.path.isfile(path):
                    raise SettingsError(f"{where}: key {self.name!r}: no such file: {path}",
                                        self.name)


_EXPECTED = {
    "str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
    "list": "a list of strings", "mappings": "a list of mappings",
}


_TYPE_NAMES = {
    "str": "string", "int": "integer", "float": "number", "bool": "boolean",
    "list": "list of strings", "mappings": "list of mappings",
}


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _is_optional(annotation: Any) -> bool:
    return isinstance(annotation, types.UnionType) and type(None) in typing.get_args(annotation)


def _strip_none(annotation: Any) -> Any:
    if _is_optional(annotation):
        (base,) = (a for a in typing.get_args(annotation) if a is not type(None))
        return base
    return annotation


def _table() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(Settings)
    return tuple(
        Setting(f.name, hints[f.name], f.default, f.metadata["setting"])
        for f in dataclasses.fields(Settings)
    )


#: The table, in the order of :class:`Settings` (and of ``--help`` and the docs).
SETTINGS: tuple[Setting, ...] = _table()
SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


def for_command(command: str) -> tuple[Setting, ...]:
    """The settings ``auditsink COMMAND`` uses, e.g. ``for_command("worker")``."""
    return tuple(s for s in SETTINGS if command in s.spec.commands)


def parse_config(data: Any, source: str) -> dict[str, Any]:
    """The values of a config file's top-level mapping, checked; ``source`` names the file.

    Keys are setting names; dashes work as well as underscores (``queue-events``).
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: expected a mapping of settings at the top level "
                            "(docs/configuration.md)")
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            close = difflib.get_close_matches(name, SETTINGS_BY_NAME, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsError(
                f"{source}: unknown key {key!r}{hint}; expected one of the settings in "
                f"docs/configuration.md: {', '.join(SETTINGS_BY_NAME)}")
        values[name] = setting.coerce(value, source)
    return values


def read_config(path: str) -> dict[str, Any]:
    """Read and check a YAML config file: ``{setting name: value}``."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, path)


def load(path: str | None = None, **overrides: Any) -> Settings:
    """Settings from a config file (optional) with ``overrides`` on top, for Python callers.

    The environment is not read here: that is the command line's job (``auditsink.cli``).
    """
    values = read_config(path) if path else {}
    for name, value in overrides.items():
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            raise SettingsError(f"unknown setting {name!r}", name)
        values[name] = setting.coerce(value, "argument")
    return Settings(**values)


# -- docs/configuration.md ---------------------------------------------------------------------

_DOCS_HEADER = """\
# Configuration

<!-- Generated from src/auditsink/settings.py by `python -m auditsink.settings > \
docs/configuration.md`; tests/test_settings.py fails when this page and the table differ. -->

Every setting has one name. It is the key in the config file, the flag (dashes for
underscores) and the environment variable (`AUDITSINK_` and the name in capitals):
`queue_events`, `--queue-events`, `AUDITSINK_QUEUE_EVENTS`. A flag wins over the environment,
which wins over the config file, which wins over the default.

One config file serves every command (`--config FILE` or `AUDITSINK_CONFIG`): a command takes
the keys it uses and leaves the others to the commands that use them, so `serve`, `worker`,
`import` and the read commands can share it. A key that no command knows is an error naming the
file and the key; so is a value of the wrong type.

```yaml
# auditsink.yaml
listen: 127.0.0.1:8080
store: sqlite:////var/lib/auditsink/auditsink.db
format: none
retention: 30d
match: ["verb=create", "verb=delete"]
```

```sh
auditsink serve --config auditsink.yaml
auditsink query --config auditsink.yaml --user alice    # takes `store` from the same file
```

In the environment a list is separated by spaces (file lists by `:`), a boolean is `1`/`0`,
`true`/`false`, `yes`/`no` or `on`/`off`.

"""


def _default_text(setting: Setting) -> str:
    default = setting.default
    if default is None or default == ():
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    return f"`{default}`"


def markdown() -> str:
    """docs/configuration.md: the table as a page."""
    lines = [_DOCS_HEADER.rstrip("\n"), "",
             "| Setting | Flag | Environment | Type | Default | Commands | Description |",
             "|---|---|---|---|---|---|---|"]
    for s in SETTINGS:
        kind = _TYPE_NAMES[s.kind] + (", one of " + ", ".join(f"`{c}`" for c in s.spec.choices)
                                      if s.spec.choices else "")
        if s.spec.file:
            kind += " (files)" if s.kind == "list" else ", a file"
        if s.spec.minimum is not None:
            kind += f", {s.spec.minimum} to {s.spec.maximum}"
        commands = ", ".join(s.spec.commands) if s.spec.commands[-len(READ):] != READ else (
            ", ".join(s.spec.commands[:-len(READ)] + ("the read commands",)))
        flag = "(config file only)" if s.flag is None else (
            f"`{s.flag}`, `--no-{s.flag[2:]}`" if s.kind == "bool" and s.default else f"`{s.flag}`")
        help_text = s.spec.help.replace("|", "\\|")
        lines.append(f"| `{s.name}` | {flag} | `{s.env}` | {kind} | {_default_text(s)} | "
                     f"{commands} | {help_text} |")
    lines += ["", "The read commands: " + ", ".join(f"`{c}`" for c in READ) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m auditsink.settings > docs/...`
    print(markdown(), end="")
