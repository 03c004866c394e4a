"""Print events: one human line each (``text``) or the audit-log JSON line (``json``)."""

from __future__ import annotations

import sys
from typing import IO, Any

from auditsink.model import Event, Item, to_log_line
from auditsink.textsafe import printable

FORMATS = ("text", "json", "none")


def text_line(event: Event, cluster: str = "") -> str:
    """One human line: time, cluster, user, verb, resource, namespace/name, code.

    >>> from auditsink.model import ObjectReference, UserInfo
    >>> e = Event(level="Metadata", auditID="a", stage="ResponseComplete", verb="delete",
    ...     user=UserInfo(username="alice"), objectRef=ObjectReference(resource="pods",
    ...     namespace="demo", name="web"), stageTimestamp="2026-11-26T14:19:51.292366Z")
    >>> text_line(e)
    '2026-11-26T14:19:51.292366Z alice delete pods demo/web -'
    """
    ref = event.objectRef
    if ref is not None:
        what = event.resource_path
        if ref.apiGroup:
            what = f"{what}.{ref.apiGroup}"
        target = "/".join(part for part in (ref.namespace, ref.name) if part) or "-"
    else:
        what, target = event.requestURI.split("?", 1)[0] or "-", "-"
    user = event.user.username or "(anonymous)"
    if event.impersonatedUser is not None:
        user = f"{user} as {event.impersonatedUser.username}"
    code = str(event.code) if event.code else "-"
    prefix = f"[{cluster}] " if cluster else ""
    # Every field comes from the sender: escape control characters (one event, one line).
    return printable(f"{event.stageTimestamp} {prefix}{user} {event.verb} {what} {target} {code}")


class Printer:
    """Writes batches to a byte stream; one ``write`` call per batch keeps it cheap."""

    def __init__(self, fmt: str = "text", stream: IO[Any] | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
        self.format = fmt
        self.stream = stream if stream is not None else sys.stdout.buffer

    def render(self, items: list[Item], cluster: str = "") -> bytes:
        """The bytes ``write`` would print."""
        if self.format == "json":
            return b"".join(to_log_line(item.raw) + b"\n" for item in items)
        if self.format == "text":
            return "".join(text_line(item.event, cluster) + "\n" for item in items).encode()
        return b""

    def write(self, items: list[Item], cluster: str = "") -> None:
        """Print a batch and flush, so a pipe sees events as they arrive."""
        data = self.render(items, cluster)
        if data:
            self.stream.write(data)
            self.stream.flush()
