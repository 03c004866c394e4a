"""The audit.k8s.io/v1 event model and the decoders for every body form the sender uses.

Decoding happens in two steps so that one malformed event never costs its neighbours:
the body is split into items kept as raw JSON (``msgspec.Raw``), then each item is decoded on
its own into an :class:`Event`. The raw bytes are kept: they are what we store and export, so an
event leaves auditsink exactly as kube-apiserver sent it (the only rewrites are redaction, policy
downgrades and the v1beta1 upgrade, which re-encode the event).

See ../shared/reference/k8s-audit-facts.md sections 1, 4 and 6 for the facts this relies on.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from typing import Any, Literal

import msgspec

from auditsink.textsafe import cut, printable

API_VERSION = "audit.k8s.io/v1"
API_VERSION_V1BETA1 = "audit.k8s.io/v1beta1"
ACCEPTED_API_VERSIONS = frozenset({API_VERSION, API_VERSION_V1BETA1, ""})

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
Level = Literal["None", "Metadata", "Request", "RequestResponse"]
Stage = Literal["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]
LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")


# A JSON value kept undecoded, or UNSET when absent (UNSET fields are never encoded; an empty
# Raw would be encoded as nothing at all, which is invalid JSON). Both are falsy when absent.
RawObject = msgspec.Raw | msgspec.UnsetType


# The decoded structs are plain trees (no reference cycles), so they are not tracked by the
# cyclic GC (gc=False): a batch of 400 events would otherwise add ~2,000 objects for it to scan.
class ObjectReference(msgspec.Struct, omit_defaults=True, gc=False):
    """The object a resource request was about. ``apiGroup`` "" is the core group."""

    resource: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    apiGroup: str = ""
    apiVersion: str = ""
    resourceVersion: str = ""
    subresource: str = ""


class UserInfo(msgspec.Struct, omit_defaults=True, gc=False):
    """authentication/v1 UserInfo: the authenticated identity."""

    username: str = ""
    uid: str = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}


class Status(msgspec.Struct, omit_defaults=True, gc=False):
    """meta/v1 Status as it appears in ``responseStatus``."""

    metadata: dict[str, Any] = {}
    status: str = ""
    message: str = ""
    reason: str = ""
    details: RawObject = msgspec.UNSET
    code: int = 0


class Event(msgspec.Struct, omit_defaults=True, gc=False):
    """One audit.k8s.io/v1 Event: one stage of one API request.

    Only ``level``, ``auditID`` and ``stage`` are required; unknown fields are ignored so that
    newer clusters (which add fields) still decode. ``requestObject`` and ``responseObject`` stay
    raw JSON (any JSON value: a JSON patch is an array) until someone reads them; they are
    ``msgspec.UNSET`` when absent.
    Timestamps are kept as the sender wrote them (UTC, 6 fraction digits) so they round-trip.
    """

    level: Level
    auditID: str
    stage: Stage
    requestURI: str = ""
    verb: str = ""
    user: UserInfo = msgspec.field(default_factory=UserInfo)
    impersonatedUser: UserInfo | None = None
    authenticationMetadata: dict[str, Any] | None = None
    sourceIPs: list[str] = []
    userAgent: str = ""
    objectRef: ObjectReference | None = None
    responseStatus: Status | None = None
    requestObject: RawObject = msgspec.UNSET
    responseObject: RawObject = msgspec.UNSET
    requestReceivedTimestamp: str = ""
    stageTimestamp: str = ""
    annotations: dict[str, str] = {}
    # Present on audit-log lines and bare Events, absent on webhook list items.
    kind: str = ""
    apiVersion: str = ""

    @property
    def code(self) -> int:
        """The response code, 0 when the stage has none (RequestReceived)."""
        status = self.responseStatus
        return status.code if status is not None else 0

    @property
    def resource_path(self) -> str:
        """``resource`` or ``resource/subresource``, "" for non-resource requests."""
        ref = self.objectRef
        if ref is None:
            return ""
        return f"{ref.resource}/{ref.subresource}" if ref.subresource else ref.resource


class _V1Beta1Fields(msgspec.Struct):
    """The v1beta1-only fields we need to upgrade an event to v1."""

    timestamp: str = ""
    metadata: dict[str, Any] | None = None


class _Envelope(msgspec.Struct):
    """The top level of a body: an EventList (has ``items``) or a single Event."""

    kind: str = ""
    apiVersion: str = ""
    items: list[msgspec.Raw] | None = None


class Item(msgspec.Struct, gc=False):
    """A decoded event and the exact bytes it came from (``raw`` is what gets stored)."""

    event: Event
    raw: bytes


class BadItem(msgspec.Struct):
    """An item that could not be decoded: where it was, why, and a short snippet."""

    index: int
    error: str
    snippet: str


class BodyError(ValueError):
    """The body as a whole can never be read; the sender should not expect a different answer.

    The message is cut to a few hundred characters: it quotes what the sender sent (a 20 MB
    ``kind`` must not become a 20 MB log line, rejected row and answer).
    """

    def __init__(self, message: str) -> None:
        super().__init__(cut(message))


class TooManyItems(BodyError):
    """More items in one body than the store queue holds (``--queue-events``)."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} events in one body, more than the {limit} the queue holds")
        self.count = count
        self.limit = limit


_event_decoder = msgspec.json.Decoder(Event)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_v1beta1_decoder = msgspec.json.Decoder(_V1Beta1Fields)
_encoder = msgspec.json.Encoder()
_LOG_PREFIX = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",'

SNIPPET_BYTES = 200


def snippet(data: bytes, limit: int = SNIPPET_BYTES) -> str:
    """A short printable excerpt of ``data`` for logs: never a whole object.

    >>> snippet(b'{"a": 1}')
    '{"a": 1}'
    """
    text = bytes(data[:limit]).decode("utf-8", "replace")
    # A rejected item is anything at all: its raw newlines and escapes must not reach the log.
    return printable(text) + ("..." if len(data) > limit else "")


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body, refusing to inflate past ``limit`` bytes (zip bombs)."""
    decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decomp.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(f"invalid gzip body: {exc}") from None
    if len(out) > limit:
        raise BodyTooLarge(limit)
    if not decomp.eof:
        raise BodyError("invalid gzip body: truncated stream")
    return out


class BodyTooLarge(ValueError):
    """The (decompressed) body is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds the limit of {limit} bytes")
        self.limit = limit


def split_body(body: bytes) -> list[msgspec.Raw] | list[bytes]:
    """Split a body into raw items, whatever form the sender used.

    Accepts an EventList (v1 or v1beta1), a JSON array of events, a single Event, and
    newline-delimited events (the ``--audit-log-path`` format). Raises :class:`BodyError` when the
    body cannot be read at all.

    >>> [bytes(r) for r in split_body(b'{"kind":"EventList","items":[{"a":1}]}')]
    [b'{"a":1}']
    """
    start = body.lstrip()[:1]
    if not start:
        raise BodyError("empty body: expected an audit.k8s.io/v1 EventList or Event")
    if start == b"[":
        try:
            return _raw_list_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise BodyError(f"unreadable JSON array: {exc}") from None
    if start != b"{":
        raise BodyError("body is not JSON: expected an audit.k8s.io/v1 EventList or Event")
    try:
        envelope = _envelope_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BodyError(f"not an EventList or Event: {exc}") from None
    except msgspec.DecodeError as exc:
        if "trailing characters" in str(exc):
            return _split_lines(body)
        raise BodyError(f"unreadable JSON: {exc}") from None
    if envelope.apiVersion not in ACCEPTED_API_VERSIONS:
        raise BodyError(
            f"unsupported apiVersion {envelope.apiVersion!r}: expected audit.k8s.io/v1 "
            "(or v1beta1)"
        )
    if envelope.items is not None:
        if envelope.kind not in ("EventList", ""):
            raise BodyError(f"unsupported kind {envelope.kind!r} with items: expected EventList")
        return envelope.items
    if envelope.kind not in ("Event", ""):
        raise BodyError(f"unsupported kind {envelope.kind!r}: expected EventList or Event")
    return [body]


def _split_lines(body: bytes) -> list[msgspec.Raw] | list[bytes]:
    """Newline-delimited events, or EventLists one per line (webhook captures).

    Blank lines are skipped; a line whose head names ``EventList`` is split into its items.
    """
    items: list[Any] = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        if b'"EventList"' in line[:200]:
            items.extend(split_body(line))
        else:
            items.append(line)
    return items


# A JSON escape sequence the surrogate repair must look at: an escaped backslash (skipped, so
# that "\\\\ud800" stays text), a valid surrogate pair (kept), or a lone surrogate (replaced).
_ESCAPES = re.compile(
    rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)


def _fix_escape(match: re.Match[bytes]) -> bytes:
    found = match.group()
    return found if len(found) != 6 or found == b"\\\\" else b"\\ufffd"


def repair_surrogates(data: bytes) -> bytes | None:
    r"""``data`` with lone UTF-16 surrogate escapes replaced by ``\ufffd``; None if it has none.

    Go's encoding/json (the API server's own decoder) reads ``"\ud800"`` as U+FFFD, so a
    client can put one in any string it sends and the API server audits it verbatim; msgspec
    refuses it. Repairing it the way Go reads it keeps the item (and, at the body level, its
    399 neighbours) instead of losing the batch.

    >>> repair_surrogates(rb'{"a":"\ud800","pair":"\ud83d\ude00","text":"\\ud800"}')
    b'{"a":"\\ufffd","pair":"\\ud83d\\ude00","text":"\\\\ud800"}'
    """
    if b"\\u" not in data:
        return None
    repaired = _ESCAPES.sub(_fix_escape, data)
    return repaired if repaired != data else None


def decode_item(raw: bytes) -> Event:
    """Decode one item to a v1 :class:`Event` (v1beta1 is upgraded). Raises msgspec errors."""
    event = _event_decoder.decode(raw)
    if event.kind or event.apiVersion:
        _normalize(event, raw)
    return event


def upgrade_v1beta1(event: Event, raw: bytes) -> None:
    """Convert a v1beta1 event to v1 in place (v1beta1 was removed in Kubernetes 1.24).

    v1beta1 has ``timestamp`` (seconds) and ``metadata.creationTimestamp`` instead of the
    microsecond timestamps, and ``objectRef.apiVersion`` may hold ``group/version``.
    """
    extra = _v1beta1_decoder.decode(raw)
    fallback = extra.timestamp or (extra.metadata or {}).get("creationTimestamp", "")
    if not event.requestReceivedTimestamp:
        event.requestReceivedTimestamp = fallback
    if not event.stageTimestamp:
        event.stageTimestamp = event.requestReceivedTimestamp
    ref = event.objectRef
    if ref is not None and not ref.apiGroup and "/" in ref.apiVersion:
        ref.apiGroup, ref.apiVersion = ref.apiVersion.split("/", 1)
    event.apiVersion = API_VERSION


def decode_body(body: bytes, max_items: int | None = None) -> tuple[list[Item], list[BadItem]]:
    """Decode a whole body into good items and bad items; only an unreadable body raises.

    ``max_items`` refuses (:class:`TooManyItems`) a body with more items before any is decoded:
    the decoded events take several times the bytes they came in.

    >>> good, bad = decode_body(
    ...     b'[{"level":"Metadata","auditID":"a","stage":"ResponseComplete"}, 7]')
    >>> len(good), bad[0].index
    (1, 1)
    """
    good: list[Item] = []
    bad: list[BadItem] = []
    try:
        try:
            raws = split_body(body)
        except BodyError:
            repaired = repair_surrogates(body)
            if repaired is None:
                raise
            body = repaired
            raws = split_body(body)
    except RecursionError:
        raise BodyError("JSON nested too deeply") from None
    if max_items is not None and len(raws) > max_items:
        raise TooManyItems(len(raws), max_items)
    # Raw object bodies are not UTF-8-checked by the decoder: check the whole body once (fast)
    # and only look item by item when that fails.
    check_items = not _is_utf8(body)
    decode = _event_decoder.decode
    for index, raw in enumerate(raws):
        try:
            if check_items:
                bytes(raw).decode("utf-8")
            try:
                event = decode(raw)
            except msgspec.DecodeError:
                repaired = repair_surrogates(bytes(raw))
                if repaired is None:
                    raise
                raw = repaired
                event = decode(raw)
            if event.kind or event.apiVersion:
                data = _normalize(event, bytes(raw))
            else:
                data = bytes(raw)
            if not event.auditID:
                raise msgspec.ValidationError("auditID is empty")
        except (
            msgspec.DecodeError,
            msgspec.ValidationError,
            UnicodeDecodeError,
            RecursionError,
        ) as exc:
            reason = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            bad.append(BadItem(index=index, error=cut(reason), snippet=snippet(bytes(raw))))
            continue
        good.append(Item(event=event, raw=data))
    return good, bad


def _normalize(event: Event, data: bytes) -> bytes:
    """Check kind/apiVersion, upgrade v1beta1, and return the v1 webhook-item bytes."""
    if event.kind not in ("Event", ""):
        raise msgspec.ValidationError(f"unsupported kind {event.kind!r}: expected Event")
    if event.apiVersion == API_VERSION_V1BETA1:
        upgrade_v1beta1(event, data)
    elif event.apiVersion not in ACCEPTED_API_VERSIONS:
        raise msgspec.ValidationError(f"unsupported apiVersion {event.apiVersion!r}")
    # Store the v1 wire form (no kind/apiVersion, as webhook items have). Audit-log lines start
    # with exactly this prefix, so slicing keeps their bytes intact.
    if data.startswith(_LOG_PREFIX):
        data = b"{" + data[len(_LOG_PREFIX) :].strip()
    else:
        event.kind = event.apiVersion = ""
        data = _encoder.encode(event)
    event.kind = event.apiVersion = ""
    return data


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def iter_file_bodies(path: str) -> Iterator[bytes]:
    """Yield bodies from a file: an audit log (plain or .gz, one event per line) or an EventList.

    Audit logs are read in chunks of lines so that huge files never sit in memory whole. A
    first line that is the tail of an event (a log copied mid-line) comes alone, as a body
    that :func:`decode_body` refuses, so that it costs no other event.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(1 << 16)
        first, newline, after = head.lstrip().partition(b"\n")
        if newline and first[:1] not in (b"{", b"[") and after.lstrip()[:1] == b"{":
            # A log copied from the middle of a line: its first line is the tail of an event.
            # Alone, it is one unreadable body; the lines after it are read as usual.
            yield first
            head = after
        rest_is_lines = b"\n" in head.strip() and head.lstrip()[:1] == b"{"
        if not rest_is_lines:
            yield head + fh.read()
            return
        pending = head
        while True:
            cut = pending.rfind(b"\n")
            if cut >= 0:
                yield pending[: cut + 1]
                pending = pending[cut + 1 :]
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            pending += chunk
        if pending.strip():
            yield pending


def to_log_line(raw: bytes) -> bytes:
    """The ``--audit-log-path`` form of a stored item: kind and apiVersion first, no newline.

    >>> to_log_line(b'{"level":"Metadata"}')
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata"}'
    """
    return _LOG_PREFIX + raw.lstrip()[1:]


def encode(event: Event) -> bytes:
    """Encode an event in the webhook item form (no kind/apiVersion)."""
    return _encoder.encode(event)


def decode_object(raw: RawObject | bytes | None) -> Any:
    """Decode a raw ``requestObject``/``responseObject``; absent (UNSET/None) is ``None``."""
    if raw is None or raw is msgspec.UNSET:
        return None
    return msgspec.json.decode(raw)
