"""The attacks of issue 17 that cost memory, log or descriptors, measured on a real server.

Runs ``auditsink serve`` from a source tree (``--src``, default this checkout's ``src``) so the
same script measures the code before and after the hardening:

    flock /tmp/auditsink-bench.lock python -m benchmarks.attack_doors --src /path/to/old/src
    flock /tmp/auditsink-bench.lock python -m benchmarks.attack_doors

Each attack gets a fresh server with the open-file limits of a systemd service without
LimitNOFILE (soft 1,024, hard 524,288), and prints one JSON line of figures:
- ``auth_schemes``: 20 requests, each with a distinct 12 MB ``Authorization`` scheme: RSS before
  and after, log bytes written, /metrics bytes;
- ``gzip_bomb``: one gzip body (~260 KB) of a million tiny items: peak RSS;
- ``idle_tls``: 1,100 idle TLS connections, then the API server's request: answered or not, and
  the descriptors the server holds;
- ``huge_kind``: a body whose ``kind`` is 20 MB: answer bytes and log bytes.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789"
EVENT = {"level": "Metadata", "auditID": "a", "stage": "ResponseComplete", "verb": "get",
         "user": {"username": "admin"}, "stageTimestamp": "2026-11-26T10:00:00.000002Z"}
BODY = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [EVENT]}).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, min(524288, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1])))


class Server:
    def __init__(self, src: Path, work: Path, *args: str) -> None:
        self.port, self.api_port = _free_port(), _free_port()
        self.err = work / f"stderr-{self.port}"
        cmd = [sys.executable, "-m", "auditsink", "serve", "--listen", f"127.0.0.1:{self.port}",
               "--api-listen", f"127.0.0.1:{self.api_port}", "--format", "none",
               "--store", f"sqlite:///{work}/a-{self.port}.db", *args]
        env = {**os.environ, "PYTHONPATH": str(src)}
        self.proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL,
                                     stderr=self.err.open("wb"), env=env, preexec_fn=_limits)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(self.err.read_text())

    def rss(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def log_bytes(self) -> int:
        return self.err.stat().st_size

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _raw(port: int, data: bytes) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(data)
            sock.settimeout(30)
            sock.recv(65536)
    except OSError:
        pass


def _get(port: int, path: str, context: ssl.SSLContext | None = None) -> bytes:
    conn: http.client.HTTPConnection = (http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, timeout=30) if context else
        http.client.HTTPConnection("127.0.0.1", port, timeout=30))
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    return conn.getresponse().read()


def auth_schemes(src: Path, work: Path) -> dict[str, Any]:
    server = Server(src, work, "--token-file", str(work / "tokens"))
    try:
        before, log_before = server.rss(), server.log_bytes()
        for i in range(20):
            scheme = (f"S{i}" + "A" * (12 * 1024 * 1024)).encode()
            _raw(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nAuthorization: %s t\r\n\r\n%s" % (len(BODY), scheme, BODY))
        time.sleep(0.5)
        metrics = _get(server.port, "/metrics")
        return {"rss_before_mib": before, "rss_after_mib": server.rss(),
                "log_bytes": server.log_bytes() - log_before, "metrics_bytes": len(metrics)}
    finally:
        server.stop()


def gzip_bomb(src: Path, work: Path) -> dict[str, Any]:
    tiny = b'{"level":"Metadata","auditID":"x","stage":"RequestReceived"}'
    body = gzip.compress(
        b'{"kind":"EventList","items":[' + b",".join([tiny] * 1_000_000) + b"]}", 9)
    server = Server(src, work)
    try:
        before, peak, done = server.rss(), [0.0], threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], server.rss())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        conn.request("POST", "/", body, {"Content-Type": "application/json",
                                         "Content-Encoding": "gzip"})
        status = conn.getresponse().status
        done.set()
        watcher.join()
        return {"body_bytes": len(body), "status": status, "rss_before_mib": before,
                "rss_peak_mib": peak[0], "rss_after_mib": server.rss()}
    finally:
        server.stop()


def idle_tls(src: Path, work: Path) -> dict[str, Any]:
    server = Server(src, work, "--tls-cert", str(work / "server.crt"), "--tls-key",
                    str(work / "server.key"), "--token-file", str(work / "tokens"))
    context = ssl.create_default_context(cafile=str(work / "ca.crt"))
    held: list[Any] = []
    try:
        for _ in range(1100):
            try:
                raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                held.append(context.wrap_socket(raw, server_hostname="127.0.0.1"))
            except OSError:
                pass
        fds = server.fds()
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context,
                                               timeout=10)
            conn.request("POST", "/", BODY, {"Content-Type": "application/json",
                                             "Authorization": f"Bearer {TOKEN}"})
            answer: Any = conn.getresponse().status
        except OSError as exc:
            answer = f"{type(exc).__name__}: {exc}"
        return {"handshakes_completed": len(held), "server_fds": fds, "sender_answer": answer,
                "log_bytes": server.log_bytes()}
    finally:
        for sock in held:
            sock.close()
        server.stop()


def huge_kind(src: Path, work: Path) -> dict[str, Any]:
    server = Server(src, work)
    try:
        log_before = server.log_bytes()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/", json.dumps({"kind": "K" * 20_000_000, "items": []}).encode(),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        return {"status": response.status, "answer_bytes": len(response.read()),
                "log_bytes": server.log_bytes() - log_before}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--only", choices=["auth_schemes", "gzip_bomb", "idle_tls", "huge_kind"])
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from auditsink.setup.certs import generate_bundle

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker holds 1,100
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, data in generate_bundle(["127.0.0.1"]).items():
            (work / name).write_bytes(data)
        (work / "tokens").write_text(TOKEN + "\n")
        for attack in (auth_schemes, gzip_bomb, idle_tls, huge_kind):
            if args.only in (None, attack.__name__):
                print(json.dumps({"attack": attack.__name__, **attack(args.src.resolve(), work)}),
                      flush=True)


if __name__ == "__main__":
    main()
