"""Answer only requests addressed to a name we serve: the read API's guard against DNS rebinding.

A web page on ``evil.example`` can make its own name resolve to 127.0.0.1 and then read
``http://evil.example:8081/api/v1/events`` as a same-origin page: the browser sends
``Host: evil.example:8081`` and the token-less loopback read API used to answer it (issue 17).
Checking ``Host`` against the names the listener is known by closes that: loopback names always,
the listen address when it is an IP, and every ``--api-host NAME`` (for a DNS name or a reverse
proxy in front).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("auditsink.receive")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})


def served_hosts(listen_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names a listener on ``listen_host`` answers to.

    >>> sorted(served_hosts("0.0.0.0", ["audit.example.com"]))
    ['127.0.0.1', '::1', 'audit.example.com', 'localhost', 'localhost.localdomain']
    """
    names = set(LOOPBACK_NAMES)
    host = listen_host.strip("[]").lower()
    try:
        if not ipaddress.ip_address(host).is_unspecified:
            names.add(host)
    except ValueError:
        names.add(host)  # a name given to --api-listen
    names.update(name.strip().lower().rstrip(".") for name in extra if name.strip())
    return frozenset(names)


def host_name(header: bytes) -> str:
    """The name part of a ``Host`` header, lower case, without port or trailing dot.

    >>> host_name(b"[::1]:8081"), host_name(b"Audit.Example.com.:443"), host_name(b"127.0.0.1")
    ('::1', 'audit.example.com', '127.0.0.1')
    """
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    name = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return name.rstrip(".")


class HostCheck:
    """ASGI wrapper: requests whose ``Host`` is not in ``hosts`` get 421 and reach nothing."""

    def __init__(self, app: Any, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(hosts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # the wrapped app's attributes (store, web) stay reachable

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = next((value for name, value in scope["headers"] if name == b"host"), b"")
            if host_name(host) not in self.hosts:
                await _misdirected(send, host)
                return
        await self.app(scope, receive, send)


async def _misdirected(send: Any, host: bytes) -> None:
    shown = host.decode("latin-1")[:100]
    body = json.dumps({"error": f"this server does not serve the host {shown!r}: add it with "
                                "--api-host NAME (see docs/security.md)"}).encode()
    await send({"type": "http.response.start", "status": 421, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
