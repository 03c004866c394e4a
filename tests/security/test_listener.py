"""Listener limits (issue 17), each attack replayed over real sockets on a real server process.

Before: a 30 MB header was accepted, every distinct ``Authorization`` scheme became a log line
and a permanent /metrics label (20 requests: RSS 51 -> 383 MiB), idle or slow TLS connections
were never closed and ~1,000 of them locked the API server out.
"""

from __future__ import annotations

import base64
import http.client
import resource
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from security.attack import (
    TOKEN,
    closed_within,
    connect,
    event,
    event_list,
    open_fds,
    read_answer,
    request,
    rss_mib,
    tls_args,
    tls_context,
)

BODY = event_list(event("limits-1"))


def test_oversized_headers_get_431_and_cost_nothing(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--max-header-bytes", "64KiB")
    before = rss_mib(server)
    log_before = len(server.stderr())
    # The attack: 20 requests, each with a different 12 MB Authorization scheme.
    for i in range(20):
        with connect(server.port) as sock:
            scheme = (f"X{i}" + "A" * (12 * 1024 * 1024)).encode()
            try:
                sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: " + scheme
                             + b" t\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server closed as soon as it had seen enough
            status, _ = read_answer(sock)
            assert status in (431, 0)  # 0: closed before the answer could be read back
    with connect(server.port) as sock:  # a head of 100 KB in one piece: the answer is readable
        sock.sendall(request("GET", "/healthz", headers={"X-Big": "b" * 100_000}))
        assert read_answer(sock)[0] == 431
    status, text = server.request("GET", "/metrics")
    assert status == 200 and len(text) < 20_000
    assert server.post(BODY)[0] == 200  # still serving
    grown = rss_mib(server) - before
    assert grown < 40, f"RSS grew {grown:.0f} MiB"
    assert len(server.stderr()) - log_before < 2_000


def test_a_head_just_under_the_limit_is_served(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--max-header-bytes", "64KiB")
    with connect(server.port) as sock:
        sock.sendall(request("POST", "/", BODY, {"Content-Type": "application/json",
                                                 "X-Pad": "p" * 60_000}))
        assert read_answer(sock)[0] == 200


def test_credentials_of_any_shape_never_reach_log_or_metrics(server_factory: Any,
                                                             pki: Path) -> None:
    server = server_factory("--format", "none", "--token-file", str(pki / "tokens"))
    secret = "leaked-credential-7f3a9c"
    shapes = [f"Bearer\t{secret}", secret, f"{secret} {secret}", f"Token {secret}",
              f"Basic {base64.b64encode(secret.encode()).decode()}", f"bearer  {secret}",
              f"Bearer {secret}\u00e9".encode().decode("latin-1")]
    for value in shapes:
        status, _ = server.post(BODY, Authorization=value)
        assert status == 401, value
    assert server.post(BODY, Authorization=f"Bearer {TOKEN}")[0] == 200
    status, text = server.request("GET", "/metrics")
    metrics = text.decode()
    assert secret not in metrics and secret not in server.stderr()
    methods = {s.labels["method"] for f in text_string_to_metric_families(metrics)
               for s in f.samples if s.name == "auditsink_auth_failures_total"}
    assert methods <= {"none", "bearer", "basic", "other"}


def test_idle_and_slow_connections_are_closed(server_factory: Any) -> None:
    server = server_factory("--format", "none", "--idle-timeout", "1", "--header-timeout", "1")
    # A connection that never sends a byte.
    with connect(server.port) as idle:
        assert (closed_within(idle, 5) or 99) < 3
    # Slowloris: one byte of the head every 0.3 s never finishes a request.
    with connect(server.port) as slow:
        started = time.monotonic()
        head = request("POST", "/", BODY)
        closed = False
        for byte in head:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > 5:
                break
        if not closed:
            assert closed_within(slow, 3) is not None
        assert time.monotonic() - started < 4
    # A keep-alive connection idle after its answer.
    with connect(server.port) as kept:
        kept.sendall(request("POST", "/", BODY, {"Content-Type": "application/json"}))
        assert read_answer(kept)[0] == 200
        assert (closed_within(kept, 5) or 99) < 3


def test_tls_handshake_timeout(server_factory: Any, pki: Path) -> None:
    server = server_factory("--format", "none", *tls_args(pki), "--token-file",
                            str(pki / "tokens"), "--tls-handshake-timeout", "1")
    with connect(server.port) as silent:  # TCP only: never starts the handshake
        assert (closed_within(silent, 5) or 99) < 3


def _tls_post(port: int, context: ssl.SSLContext) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("POST", "/?timeout=30s", BODY, {"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {TOKEN}"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_idle_tls_connections_cannot_lock_the_sender_out(server_factory: Any, pki: Path) -> None:
    """The issue's lock-out: ~1,000 idle TLS connections under the 1,024-descriptor default.
    Here 1,100 of them against a limit of 200 connections, then the API server's request."""
    server = server_factory("--format", "none", *tls_args(pki), "--token-file",
                            str(pki / "tokens"), "--max-connections", "200")
    context = tls_context(pki)
    held: list[ssl.SSLSocket] = []
    lock = threading.Lock()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this test process holds 1,100

    def attacker(count: int) -> None:
        for _ in range(count):
            try:
                raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
            except OSError:
                continue  # closed by the server to make room: fine, that is the point
            with lock:
                held.append(tls)

    try:
        threads = [threading.Thread(target=attacker, args=(275,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(held) > 200  # they all got through the handshake
        assert open_fds(server) < 200 + 60, "the server holds no more than its limit"
        assert _tls_post(server.port, context) == 200
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_open_file_limit_raised_to_hard(server_factory: Any) -> None:
    server = server_factory("--format", "none")
    assert server.proc is not None
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard
