"""The one vocabulary for selecting events: every surface is generated from :data:`FIELDS`.

``auditsink query --user alice``, ``/api/v1/events?user=alice``, the explorer's form, the query
bar (``user:alice -namespace:kube-system``), ``serve --match user=alice``, output filters and
alert filters all parse into one :class:`Selector`, which compiles two ways from the same
table: to a Python predicate here (:func:`compile_predicate`, for events in flight) and to SQL
in the store (``store/sql/where.py``, for events at rest). Adding a field is one entry in
:data:`FIELDS` (plus its column and index in the stores); docs/selectors.md is generated from
the table and a docs test fails when they drift.

Within one field, values are alternatives (OR); across fields they must all hold (AND);
``exclude`` holds values that must not match (NOT). Times are microseconds since the epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from auditsink.model import LEVELS, STAGES, Event
from auditsink.timeutil import parse_timestamp, parse_when

DECISION_ANNOTATION = "authorization.k8s.io/decision"
# Values an event controls are hostile: a 50 MB user agent must not become a 50 MB index
# entry (and an in-memory dictionary key) for good. Past this many characters a value is
# matched, indexed and interned as its head plus a hash of the whole (``bounded``); the event's
# own bytes keep it exactly.
INDEXED_CHARS = 1024
# The groups of one user that are indexed and matched (the event keeps them all).
INDEXED_GROUPS = 1000
DECISIONS = ("allow", "forbid")

# How a field's values are written and compared. The store implements each kind in SQL
# (store/sql/where.py); :func:`_matcher` implements it in Python. One kind, one meaning.
Kind = Literal["exact", "either", "groups", "resource", "code", "enum", "cidr", "substring",
               "prefix"]


class SelectorError(ValueError):
    """A selector value that can never be valid (unknown stage, malformed code or CIDR)."""


@dataclass(frozen=True)
class Field:
    """One thing events can be selected by, and how every surface spells it.

    ``name`` is the query-string parameter, the query-bar key and the ``--match`` key;
    ``flag`` the CLI option (``--flag``); ``attr`` the :class:`Selector` attribute; ``column``
    the store column(s) it compiles to; ``get`` reads the value(s) from an event.
    """

    name: str
    attr: str
    flag: str
    kind: Kind
    column: str | tuple[str, ...]
    get: Callable[[Event, str], Any]
    help: str
    syntax: str
    choices: tuple[str, ...] = ()
    example: str = ""


def bounded(value: str) -> str:
    """``value``, or past :data:`INDEXED_CHARS` its head and a hash of the whole: what
    selectors compare and stores index, so that two long values stay apart.

    >>> len(bounded("x" * 5000)), bounded("kubectl")
    (1024, 'kubectl')
    """
    if len(value) <= INDEXED_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return value[:INDEXED_CHARS - 34] + "\u2026#" + digest


def _ref(attr: str) -> Callable[[Event, str], str]:
    def get(event: Event, cluster: str) -> str:
        ref = event.objectRef
        return getattr(ref, attr) if ref is not None else ""

    return get


def _impersonated(event: Event, cluster: str) -> str:
    return event.impersonatedUser.username if event.impersonatedUser is not None else ""


def request_path(uri: str) -> str:
    """The path of a requestURI without its query string (what ``requestURI`` selects by).

    >>> request_path("/api/v1/pods?watch=true&resourceVersion=7")
    '/api/v1/pods'
    """
    return uri.split("?", 1)[0]


def decision_of(event: Event) -> str:
    """``allow``/``forbid`` from the authorizer's annotation, "" when there is none (e.g. the
    RequestReceived stage, which is recorded before authorization)."""
    return event.annotations.get(DECISION_ANNOTATION, "")


def client_ip(event: Event) -> str:
    """The first of ``sourceIPs``: the client (later entries are proxies it came through)."""
    return event.sourceIPs[0] if event.sourceIPs else ""


FIELDS: tuple[Field, ...] = (
    Field("user", "users", "user", "either", ("user", "impersonated_user"),
          lambda e, c: (e.user.username, _impersonated(e, c)),
          "Requests made by or as this user: the authenticated user or the impersonated one.",
          "exact name", example="alice"),
    Field("authenticatedUser", "authenticated_users", "authenticated-user", "exact", "user",
          lambda e, c: e.user.username,
          "Requests whose authenticated user (user.username) is this one.", "exact name",
          example="system:admin"),
    Field("impersonatedUser", "impersonated_users", "impersonated-user", "exact",
          "impersonated_user", _impersonated,
          "Requests made as this user through impersonation (kubectl --as); \"\" selects those"
          " made without.", "exact name or \"\"",
          example="mallory"),
    Field("group", "groups", "group", "groups", "groups",
          lambda e, c: e.user.groups[:INDEXED_GROUPS],
          "Requests by a user in this group (of the authenticated user).", "exact group",
          example="system:masters"),
    Field("verb", "verbs", "verb", "exact", "verb", lambda e, c: e.verb,
          "The API verb.", "get, list, watch, create, update, patch, delete, ...",
          example="delete"),
    Field("resource", "resources", "resource", "resource", ("resource", "subresource"),
          lambda e, c: e.objectRef,
          "The resource: pods is pods without a subresource, pods/exec exactly, pods/* any.",
          "resource, resource/subresource or resource/*", example="pods/exec"),
    Field("apiGroup", "api_groups", "api-group", "exact", "api_group", _ref("apiGroup"),
          "The API group; \"\" is the core group.", "group name or \"\"", example="apps"),
    Field("namespace", "namespaces", "namespace", "exact", "namespace", _ref("namespace"),
          "The namespace; \"\" selects cluster-scoped and non-resource requests.",
          "exact name", example="kube-system"),
    Field("name", "names", "name", "exact", "name", _ref("name"),
          "The object's name.", "exact name", example="web"),
    Field("stage", "stages", "stage", "enum", "stage", lambda e, c: e.stage,
          "The audit stage.", ", ".join(STAGES), choices=STAGES, example="ResponseComplete"),
    Field("level", "levels", "level", "enum", "level", lambda e, c: e.level,
          "The audit level the event was recorded at.", ", ".join(LEVELS[1:]),
          choices=LEVELS, example="RequestResponse"),
    Field("code", "codes", "code", "code", "code", lambda e, c: e.code,
          "The response code, or a class of codes.", "403 or 4xx", example="4xx"),
    Field("cluster", "clusters", "cluster", "exact", "cluster", lambda e, c: c,
          "The cluster the event came from (\"\" is the default cluster).", "exact name",
          example="prod"),
    Field("sourceIP", "source_ips", "source-ip", "cidr", "source_ip", lambda e, c: client_ip(e),
          "The client's address (the first of sourceIPs).", "an address or a CIDR range",
          example="10.0.0.0/8"),
    Field("userAgent", "user_agents", "user-agent", "substring", "user_agent",
          lambda e, c: e.userAgent,
          "Requests whose user agent contains this text (case-sensitive).", "any text",
          example="kubectl"),
    Field("decision", "decisions", "decision", "enum", "decision", lambda e, c: decision_of(e),
          "The authorizer's decision (annotation authorization.k8s.io/decision).",
          "allow or forbid", choices=DECISIONS, example="forbid"),
    Field("requestURI", "uri_prefixes", "uri", "prefix", "uri",
          lambda e, c: request_path(e.requestURI),
          "Requests whose path (requestURI without its query string) starts with this.",
          "a path prefix", example="/api/v1/namespaces/demo/"),
    Field("auditID", "audit_ids", "audit-id", "exact", "audit_id", lambda e, c: e.auditID,
          "Every stage of one request.", "exact auditID",
          example="3afb87e7-b22e-4a4c-8389-ff6d65b8bd4b"),
)
BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
# The query bar and --match also take the CLI spelling (api-group:apps) and any case.
_ALIASES: dict[str, Field] = {
    **{f.flag: f for f in FIELDS}, **{f.name.lower(): f for f in FIELDS},
    "as": BY_NAME["impersonatedUser"], "ip": BY_NAME["sourceIP"], "uri": BY_NAME["requestURI"],
}
TIME_KEYS = ("since", "until")


@dataclass
class Selector:
    """Which events to return or keep: the fields of :data:`FIELDS` plus a time range.

    Every list is OR within the field, AND across fields; empty means any. ``exclude`` (a
    Selector without times) rejects an event that matches any of its values.

    >>> Selector(users=["alice"], codes=["4xx"]).describe()
    'user:alice code:4xx'
    """

    users: list[str] = field(default_factory=list)
    authenticated_users: list[str] = field(default_factory=list)
    impersonated_users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    api_groups: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)
    source_ips: list[str] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    uri_prefixes: list[str] = field(default_factory=list)
    audit_ids: list[str] = field(default_factory=list)
    since: int | None = None
    until: int | None = None
    exclude: Selector | None = None

    def values(self, spec: Field) -> list[str]:
        """The values given for one field."""
        values: list[str] = getattr(self, spec.attr)
        return values

    def given(self) -> list[tuple[Field, list[str]]]:
        """The fields that have values, in table order."""
        return [(f, getattr(self, f.attr)) for f in FIELDS if getattr(self, f.attr)]

    def is_empty(self) -> bool:
        """True when it selects every event."""
        return (not self.given() and self.since is None and self.until is None
                and (self.exclude is None or self.exclude.is_empty()))

    def replace(self, **changes: Any) -> Selector:
        """A copy with some attributes changed (lists are not shared with the original)."""
        copied = dataclasses.replace(self, **changes)
        for spec in FIELDS:
            if spec.attr not in changes:
                setattr(copied, spec.attr, list(getattr(self, spec.attr)))
        return copied

    def describe(self) -> str:
        """The selector in query-bar syntax (times as the store holds them)."""
        from auditsink.timeutil import format_micros

        parts = [f"{f.name}:{_quote(v)}" for f, values in self.given() for v in values]
        if self.exclude is not None:
            parts += [f"-{f.name}:{_quote(v)}" for f, values in self.exclude.given()
                      for v in values]
        if self.since is not None:
            parts.append(f"since:{format_micros(self.since)}")
        if self.until is not None:
            parts.append(f"until:{format_micros(self.until)}")
        return " ".join(parts)


def _quote(value: str) -> str:
    return value if value and not any(c.isspace() or c in "\"'" for c in value) else (
        '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')


def field_named(key: str) -> Field:
    """The field for a key as any surface spells it (``apiGroup``, ``api-group``, ``as``)."""
    spec = BY_NAME.get(key) or _ALIASES.get(key) or _ALIASES.get(key.lower())
    if spec is None:
        raise SelectorError(
            f"unknown field {key!r}: expected one of {', '.join(f.name for f in FIELDS)}, "
            "since, until")
    return spec


# -- validation --------------------------------------------------------------------------------


def _code_spec(text: str) -> tuple[int, int]:
    """``403`` -> (403, 403); ``4xx`` -> (400, 499).

    >>> _code_spec("5xx")
    (500, 599)
    """
    spec = text.strip()
    if len(spec) == 3 and spec[0] in "12345" and spec[1:].lower() == "xx":
        low = int(spec[0]) * 100
        return low, low + 99
    if spec.isdigit() and len(spec) <= 3:
        return int(spec), int(spec)
    raise SelectorError(f"invalid code {text!r}: use a status like 403 or a class like 4xx")


def code_ranges(codes: Iterable[str]) -> list[tuple[int, int]]:
    """Inclusive (low, high) ranges of ``code`` values."""
    return [_code_spec(c) for c in codes]


def networks(values: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Addresses and CIDR ranges as networks (an address is a /32 or /128)."""
    found = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise SelectorError(
                f"invalid sourceIP {value!r}: use an address like 10.0.0.7 or a range like "
                "10.0.0.0/8") from None
    return found


def validate(selector: Selector) -> Selector:
    """Raise :class:`SelectorError` for a value that can never match; returns ``selector``."""
    for part in (selector, selector.exclude):
        if part is None:
            continue
        for spec, values in part.given():
            if spec.kind == "enum":
                unknown = [v for v in values if v not in spec.choices]
                if unknown:
                    raise SelectorError(f"unknown {spec.name} {unknown[0]!r}: expected one of "
                                        + ", ".join(spec.choices))
            elif spec.kind == "code":
                code_ranges(values)
            elif spec.kind == "cidr":
                networks(values)
    if (selector.since is not None and selector.until is not None
            and selector.until <= selector.since):
        raise SelectorError("until must be after since")
    return selector


# -- building a Selector from each surface ----------------------------------------------------


def from_pairs(pairs: Iterable[tuple[str, str]], now: float | None = None) -> Selector:
    """A selector from (key, value) pairs: query parameters, --match flags, query-bar terms.

    A key ending in ``!`` (``namespace!``) or starting with ``-`` excludes; ``since`` and
    ``until`` take 30m, 2h, 7d or RFC 3339.

    >>> from_pairs([("user", "alice"), ("namespace!", "kube-system")]).describe()
    'user:alice -namespace:kube-system'
    """
    selector = Selector()
    excluded = Selector()
    for key, value in pairs:
        negate = key.endswith("!") or key.startswith("-")
        key = key.strip("!").lstrip("-")
        if key in TIME_KEYS:
            if negate:
                raise SelectorError(f"{key} cannot be negated")
            try:
                setattr(selector, key, parse_when(value, now) if value.strip() else None)
            except ValueError as exc:
                raise SelectorError(str(exc)) from None
            continue
        spec = field_named(key)
        (excluded if negate else selector).values(spec).append(value)
    if not excluded.is_empty():
        selector.exclude = excluded
    return validate(selector)


def from_query(query: Mapping[str, Sequence[str]], now: float | None = None) -> Selector:
    """A selector from a parsed query string (``parse_qs``): field names, ``since``, ``until``
    and ``q`` (query-bar text); other parameters (``limit``, ``before``...) are ignored.

    >>> from_query({"user": ["alice"], "q": ["verb:delete"], "limit": ["5"]}).describe()
    'user:alice verb:delete'
    """
    pairs: list[tuple[str, str]] = []
    for key, values in query.items():
        bare = key.strip("!").lstrip("-")
        if bare == "q":
            for text in values:
                pairs.extend(parse_terms(text))
        elif bare in TIME_KEYS or bare in BY_NAME:
            pairs.extend((key, v) for v in values)
    return from_pairs(pairs, now)


def parse_terms(text: str) -> list[tuple[str, str]]:
    """Query-bar text as (key, value) pairs; ``-key:value`` excludes.

    Values may be quoted (``userAgent:"kubectl/v1.20"``); the first colon ends the key, so
    ``user:system:serviceaccount:kube-system:default`` needs no quotes.

    >>> parse_terms('user:alice -namespace:kube-system code:4xx')
    [('user', 'alice'), ('-namespace', 'kube-system'), ('code', '4xx')]
    """
    try:
        words = shlex.split(text, posix=True)
    except ValueError as exc:
        raise SelectorError(f"query {text!r}: {exc} (close the quote)") from None
    pairs = []
    for word in words:
        key, sep, value = word.partition(":")
        if not sep or not key.lstrip("-"):
            raise SelectorError(
                f"query term {word!r}: expected KEY:VALUE, e.g. user:alice verb:delete "
                "-namespace:kube-system code:4xx")
        negate = key.startswith("-")
        bare = key.lstrip("-")
        if bare not in TIME_KEYS:
            bare = field_named(bare).name
        pairs.append(("-" + bare if negate else bare, value))
    return pairs


def parse_query(text: str, now: float | None = None) -> Selector:
    """The query bar: ``user:alice verb:delete -namespace:kube-system code:4xx since:2h``.

    >>> parse_query("user:alice -namespace:kube-system").exclude.namespaces
    ['kube-system']
    """
    return from_pairs(parse_terms(text), now)


def parse_match(flags: Iterable[str]) -> Selector:
    """``--match KEY=VALUE`` flags (``KEY!=VALUE`` excludes).

    >>> parse_match(["verb=create", "namespace!=kube-system"]).describe()
    'verb:create -namespace:kube-system'
    """
    pairs = []
    for flag in flags:
        key, sep, value = flag.partition("=")
        if not sep or not key.rstrip("!"):
            raise SelectorError(
                f"--match {flag!r}: expected KEY=VALUE (or KEY!=VALUE to exclude) with KEY one "
                f"of {', '.join(f.name for f in FIELDS)}")
        if key.rstrip("!") in TIME_KEYS:
            raise SelectorError(f"--match {flag!r}: a filter on events in flight has no time "
                                "range")
        pairs.append((key, value))
    return from_pairs(pairs)


def merge(*selectors: Selector) -> Selector:
    """Every condition of every selector (AND across, values of one field concatenated).

    >>> merge(Selector(users=["a"]), Selector(verbs=["get"])).describe()
    'user:a verb:get'
    """
    out = Selector()
    excluded = Selector()
    for part in selectors:
        for spec, values in part.given():
            out.values(spec).extend(values)
        if part.exclude is not None:
            for spec, values in part.exclude.given():
                excluded.values(spec).extend(values)
        if part.since is not None:
            out.since = part.since if out.since is None else max(out.since, part.since)
        if part.until is not None:
            out.until = part.until if out.until is None else min(out.until, part.until)
    if not excluded.is_empty():
        out.exclude = excluded
    return out


def to_query(selector: Selector) -> list[tuple[str, str]]:
    """The query-string pairs that :func:`from_query` reads back into ``selector``."""
    from auditsink.timeutil import format_micros

    pairs = [(f.name, v) for f, values in selector.given() for v in values]
    if selector.exclude is not None:
        pairs += [(f.name + "!", v) for f, values in selector.exclude.given() for v in values]
    if selector.since is not None:
        pairs.append(("since", format_micros(selector.since)))
    if selector.until is not None:
        pairs.append(("until", format_micros(selector.until)))
    return pairs


# -- the Python predicate -----------------------------------------------------------------------

Predicate = Callable[[Event, str], bool]


def _matcher(spec: Field, values: list[str]) -> Predicate:
    """One field's test, as its kind defines it (the SQL twin is store/sql/where.py).

    Event values are compared as the store indexes them (:func:`bounded`), and so are the
    values asked for.
    """
    raw_get = spec.get
    kind = spec.kind
    if kind != "resource":  # resource/subresource: each part is bounded on its own
        values = [bounded(v) for v in values]

    def get(event: Event, cluster: str) -> Any:
        found = raw_get(event, cluster)
        if isinstance(found, str):
            return bounded(found)
        if isinstance(found, tuple):
            return tuple(bounded(v) for v in found)
        if isinstance(found, list):
            return [bounded(v) for v in found]
        return found

    if kind == "either":
        # The authenticated side may be "" (a request refused at authentication); the
        # impersonated side "" is nobody, never a match.
        wanted = frozenset(values)

        def either(event: Event, cluster: str) -> bool:
            first, second = get(event, cluster)
            return first in wanted or (bool(second) and second in wanted)

        return either
    if kind == "groups":
        wanted = frozenset(values)
        return lambda e, c: not wanted.isdisjoint(get(e, c))
    if kind == "resource":
        parts = [v.partition("/") for v in values]
        exact = frozenset((bounded(r), bounded(sub)) for r, _, sub in parts if sub != "*")
        any_sub = frozenset(bounded(r) for r, _, sub in parts if sub == "*")

        def resource(event: Event, cluster: str) -> bool:
            ref = event.objectRef
            if ref is None or not ref.resource:
                return False
            name = bounded(ref.resource)
            return (name, bounded(ref.subresource)) in exact or name in any_sub

        return resource
    if kind == "code":
        ranges = code_ranges(values)
        return lambda e, c: any(low <= e.code <= high for low, high in ranges)
    if kind == "cidr":
        nets = networks(values)

        def in_network(event: Event, cluster: str) -> bool:
            text = get(event, cluster)
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                return False
            return any(address in net for net in nets)

        return in_network
    if kind == "substring":
        needles = tuple(values)
        return lambda e, c: any(n in get(e, c) for n in needles)
    if kind == "prefix":
        prefixes = tuple(values)
        return lambda e, c: get(e, c).startswith(prefixes)
    wanted = frozenset(values)  # exact, enum
    return lambda e, c: get(e, c) in wanted


def compile_predicate(selector: Selector) -> Predicate | None:
    """One predicate for the whole selector, or None when it selects everything.

    Compiled once (validation included); called per event.

    >>> from auditsink.model import UserInfo
    >>> pred = compile_predicate(parse_query("user:mallory -verb:get"))
    >>> e = Event(level="Metadata", auditID="a", stage="ResponseComplete", verb="delete",
    ...           user=UserInfo(username="admin"), impersonatedUser=UserInfo(username="mallory"))
    >>> pred(e, "")
    True
    """
    validate(selector)
    if selector.is_empty():
        return None
    checks = [_matcher(spec, values) for spec, values in selector.given()]
    vetoes = ([_matcher(spec, values) for spec, values in selector.exclude.given()]
              if selector.exclude is not None else [])
    since, until = selector.since, selector.until

    def predicate(event: Event, cluster: str) -> bool:
        if since is not None or until is not None:
            when = parse_timestamp(event.stageTimestamp)
            if (since is not None and when < since) or (until is not None and when >= until):
                return False
        return (all(check(event, cluster) for check in checks)
                and not any(veto(event, cluster) for veto in vetoes))

    return predicate


# -- docs/selectors.md ---------------------------------------------------------------------------

_DOCS = """\
<!-- Generated from src/auditsink/selector.py: `python -m auditsink.selector > docs/selectors.md`;
tests/test_selector.py fails when this page and the table differ. -->
# Selecting events

One vocabulary selects events everywhere: the CLI's flags and query argument (`auditsink
query`, `tail`, `stats`, `rbac suggest`, `policy simulate`), the read API's query parameters,
the web UI's form and query bar, `serve --match` and each output's `match:` filter. Every
surface is generated from one table (`src/auditsink/selector.py`), so they cannot drift.

- Values of one field are alternatives (OR): `--verb create --verb delete`.
- Different fields must all hold (AND): `--user alice --namespace demo`.
- A field can exclude (NOT): `-namespace:kube-system` in a query, `namespace!=kube-system` as
  an API parameter or a `--match` flag.
- `--since`/`--until` (`since=`/`until=`) take `30m`, `2h`, `7d` (ago) or RFC 3339
  (`2026-11-26T14:00:00Z`; a time without a zone is UTC here, and in the viewer's zone in the
  web UI, which says so).

## The fields

| field (query, API, `--match`) | CLI flag | values | example | selects |
| --- | --- | --- | --- | --- |
{rows}

`user` is who a request was made **by or as**: `--user mallory` finds what admin did with
`kubectl --as=mallory` as well as what mallory did herself, and every row shows both sides
("admin as mallory"). `--authenticated-user` and `--impersonated-user` select one side only.

## The query syntax

One line of `KEY:VALUE` terms, the same in the CLI and the UI's query bar:

```sh
auditsink query 'user:alice verb:delete -namespace:kube-system code:4xx since:2h'
auditsink query 'user:system:serviceaccount:kube-system:default'   # the first colon ends the key
auditsink query 'userAgent:"kubectl/v1.20 (linux)"'                # quote values with spaces
auditsink query -q '-namespace:kube-system'        # -q (or a final --) when it starts with "-"
curl -s 'http://127.0.0.1:8081/api/v1/events?q=user:alice%20-verb:get'
```

Keys are the field names above, their CLI spelling (`api-group:`), `as:` for
`impersonatedUser`, `ip:` for `sourceIP` and `uri:` for `requestURI`; `since:` and `until:`
take times. Repeating a key is an OR, `-` before a key is a NOT; flags and query terms add
up.

## Order

- **Time order** for people: every answer of `query`, the read API's pages, the web UI's
  tables and alerts is ordered by `stageTimestamp`, newest first (`--oldest-first`,
  `order=oldest`), ties by log position. A page's `next` cursor (`--before`/`--after` in the
  CLI) is a (time, position) key: paging never skips or repeats an event, however out of
  order its batch arrived. `--format jsonl` is oldest first, like an audit log.
- **Log order** (commit order) for consumers: rules, notifiers, outputs, `tail -f`, the UI's
  follow mode and `/api/v1/events/follow`. It delivers every committed event exactly once,
  however many arrive between two polls.
"""


def markdown() -> str:
    """docs/selectors.md: the field table and the rules every surface follows."""

    def cell(text: str) -> str:
        return text.replace("|", "\\\\|")

    rows = "\n".join(
        f"| `{f.name}` | `--{f.flag}` | {cell(f.syntax)} | `{f.name}:{f.example}` | "
        f"{cell(f.help)} |" for f in FIELDS)
    return _DOCS.format(rows=rows)


if __name__ == "__main__":
    print(markdown(), end="")
