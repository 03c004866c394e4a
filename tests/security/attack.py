"""Helpers for the attack tests (issue 17): raw sockets, TLS clients, and a server's memory,
descriptors and log, read from /proc while the real server process runs."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any


TOKEN = "s3cr3t-token-0123456789"


def event(audit_id: str, **fields: Any) -> dict[str, Any]:
    """A minimal ResponseComplete event, as the API server sends it."""
    base: dict[str, Any] = {
        "level": "Metadata", "auditID": audit_id, "stage": "ResponseComplete", "verb": "get",
        "requestURI": "/api/v1/namespaces/demo/pods/web", "user": {"username": "admin"},
        "objectRef": {"resource": "pods", "namespace": "demo", "name": "web", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
        "stageTimestamp": "2026-11-26T10:00:00.000002Z",
    }
    base.update(fields)
    return base


def event_list(*items: dict[str, Any]) -> bytes:
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                       "items": list(items)}).encode()


def rss_mib(server: Any) -> float:
    """The server process's resident memory now."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(server: Any) -> int:
    assert server.proc is not None
    return len(list(Path(f"/proc/{server.proc.pid}/fd").iterdir()))


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A plain TCP connection from ``source`` (any 127.0.0.0/8 address works on Linux)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))
    return sock


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Read one HTTP/1.1 answer (status, body) with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closes ``sock`` (reading and discarding), or None."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
            host: str = "127.0.0.1") -> bytes:
    """The bytes of one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def tls_context(pki: Path, client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client:
        context.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
    return context


def tls_args(pki: Path) -> list[str]:
    return ["--tls-cert", str(pki / "server.crt"), "--tls-key", str(pki / "server.key")]
