"""The seed article's Go webhook server, ported literally to the standard library: the BASELINE.

The Go original (../shared/seed/article.txt) does, for every request on "/":

    body, err := ioutil.ReadAll(r.Body)          -> 400 "can't read body" on error
    fmt.Printf("%s\\n", string(body))             -> every body goes to stdout
    json.Unmarshal(body, &events)                -> 400 "failed to unmarshal audit events"
    isPodCreation(event) for each item           -> printed
    (implicit) 200 with an empty body

Port decisions, each to stay close to Go's net/http, never to be faster:
- ``ThreadingHTTPServer``: Go serves each connection on its own goroutine.
- HTTP/1.1 keep-alive (Go's default); a listen backlog of SOMAXCONN (Go's).
- ``print(..., flush=True)``: Go's os.Stdout is unbuffered, one write(2) per Printf.
- No access log: Go's http server writes none.
- Any method is handled (``http.HandleFunc`` does not look at the method).

Not optimized on purpose. Benchmarks run it with stdout to /dev/null:

    python -m benchmarks.baseline_seed_server --port 8080 > /dev/null
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def is_pod_creation(event: dict) -> bool:
    """isPodCreation: verb create, stage ResponseComplete, objectRef.resource pods."""
    return (
        event.get("verb") == "create"
        and event.get("stage") == "ResponseComplete"
        and event.get("objectRef") is not None
        and event["objectRef"].get("resource") == "pods"
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Go

    def handle_any(self) -> None:
        # body, err := ioutil.ReadAll(r.Body)
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
        except (OSError, ValueError):
            self.reply(400, b"can't read body\n")
            return
        # fmt.Printf("%s\n", string(body))
        print(body.decode("utf-8", "replace"), flush=True)
        # var events v1.EventList; err = json.Unmarshal(body, &events)
        try:
            events = json.loads(body)
            items = events.get("items") or []
        except (ValueError, AttributeError):
            self.reply(400, b"failed to unmarshal audit events\n")
            return
        for event in items:
            if isinstance(event, dict) and is_pod_creation(event):
                ref = event["objectRef"]
                print(f"pod created: {ref.get('namespace', '')}/{ref.get('name', '')} by "
                      f"{(event.get('user') or {}).get('username', '')}", flush=True)
        self.reply(200, b"")

    do_POST = do_GET = do_PUT = handle_any

    def reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        if body:  # http.Error's headers
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # Go's net/http logs no requests


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN

    def handle_error(self, request: object, client_address: object) -> None:
        # a client hanging up mid-request (wrk stopping) is not worth a traceback; Go is silent
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline_seed_server",
                                     description="The seed article's webhook server (baseline).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = Server((args.host, args.port), Handler)
    print(f"Server listening on port {args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
