"""Local servers the output tests send to: an HTTP server that records what it is sent and
answers what the test says (the protocol double for collectors that cannot run here)."""

from __future__ import annotations

import gzip
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes   # gunzipped when it came gzipped
    raw_size: int


Answer = tuple[int, bytes]


@dataclass
class Recorder:
    """What a test's server received; ``respond`` decides each answer (200 ``{}`` by default)."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    respond: Callable[[Request], Answer] = lambda request: (200, b"{}")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r.body for r in self.requests]


@contextmanager
def http_server(tls: ssl.SSLContext | None = None) -> Iterator[Recorder]:
    """A threaded HTTP(S) server on 127.0.0.1 and a free port."""
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as collectors answer

        def do_POST(self) -> None:  # noqa: N802
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = gzip.decompress(data) if self.headers.get("Content-Encoding") == "gzip" else data
            request = Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                              body, len(data))
            status, answer = recorder.respond(request)
            if 200 <= status < 300:
                with recorder.lock:
                    recorder.requests.append(request)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender died (a test SIGKILLs it); what it sent is recorded

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    recorder.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
