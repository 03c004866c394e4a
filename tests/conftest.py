"""Shared fixtures: real API-server traffic and Falco's traces (tests/data), and helpers to run
real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Copies of what the tests need from ../shared (tests/data/README.md says where each came from),
# so that a plain clone runs the whole suite.
DATA = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared"
FIXTURES = DATA / "fixtures" / "kube-apiserver-1.20"
FALCO = DATA / "conformance" / "falco"


def shared_path(*parts: str) -> Path:
    """A file of the shared test material: tests/data's copy, else ../shared's, else skip.

    Only material too large to copy lives in ../shared alone; a test needing it skips, saying so.
    """
    for base in (DATA, SHARED):
        path = base.joinpath(*parts)
        if path.exists():
            return path
    pytest.skip(f"{SHARED.joinpath(*parts)} is absent: ../shared (real API-server traffic) is "
                "not beside this clone")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Real traffic of kube-apiserver 1.20 (tests/data/fixtures/kube-apiserver-1.20)."""
    return shared_path("fixtures", "kube-apiserver-1.20")


@pytest.fixture(scope="session")
def falco_dir() -> Path:
    """Falco's k8s audit conformance suite (tests/data/conformance/falco)."""
    return shared_path("conformance", "falco")


# -- a real auditsink server process ---------------------------------------------------------

import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``auditsink serve`` started as a real process, spoken to over real sockets."""

    def __init__(self, workdir: Path, *args: str, api: bool = True) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.api = api
        self.port = free_port()
        self.api_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_path = workdir / "serve.stdout"
        self.stderr_path = workdir / "serve.stderr"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        cmd = [
            sys.executable,
            "-m",
            "auditsink",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--api-listen",
            f"127.0.0.1:{self.api_port}" if self.api else "none",
            *self.args,
        ]
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdout=out,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"auditsink serve exited: {self.stderr_path.read_text()}")
            try:
                # The read API answers /healthz too, in plain http even when ingest is mTLS.
                port = self.api_port if self.api else None
                status, _ = self.request("GET", "/healthz", port=port)
                if status == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop(signal.SIGKILL)  # never leave a half-started server behind
        raise RuntimeError(
            f"auditsink serve did not become healthy: {self.stderr_path.read_text()}")

    def exchange(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        port: int | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], Any]:
        """One request on a new connection: status, lower-cased headers, JSON (or bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()
        try:
            return response.status, answer_headers, json.loads(data) if data else None
        except ValueError:
            return response.status, answer_headers, data

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        port: int | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        status, self.last_headers, answer = self.exchange(
            method, path, body, headers, port, timeout
        )
        return status, answer

    def post(self, body: bytes, path: str = "/?timeout=30s", **headers: str) -> tuple[int, Any]:
        """POST like kube-apiserver does (Content-Type application/json, ?timeout=30s)."""
        sent = {"Content-Type": "application/json", "User-Agent": "Go-http-client/1.1"}
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        return self.request("POST", path, body, sent)

    def api_get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path, port=self.api_port)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc = None

    def stderr(self) -> str:
        return self.stderr_path.read_text()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start auditsink servers in tmp_path; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(*args: str, api: bool = True) -> ServerProcess:
        server = ServerProcess(tmp_path, *args, api=api).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc is not None:
            server.stop(signal.SIGKILL)


def run_rules(store: Any) -> None:
    """Run the built-in rules over everything the store holds, as serve's detector does."""
    from auditsink.detect import Detector
    from auditsink.rules.engine import load_rules
    from auditsink.rules.stateful import StatefulDetectors

    detector = Detector(store, load_rules(None), stateful=StatefulDetectors())
    while detector.step():
        pass


def ui_json(ui: Any, url: str) -> tuple[int, Any]:
    """A UI page's JSON twin from its link (``/ui/x?q`` -> ``/ui/x.json?q``)."""
    path, _, query = url.partition("?")
    path = path.removesuffix(".html")
    answer = ui.respond(path if path.endswith(".json") else path + ".json", query)
    return answer.status, json.loads(answer.body)


import threading  # noqa: E402


@pytest.fixture(autouse=True)
def no_thread_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test must not leave a non-daemon thread running: the interpreter waits for those at
    exit, so one stuck thread hangs pytest after its summary (and CI until its time-out, as a
    restart timer of test_nats once did). ``asyncio_N`` threads are exempt: the default
    executor of Playwright's event loop, idle, and woken at exit by concurrent.futures."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [t.name for t in threading.enumerate()
                if t not in before and t.is_alive() and not t.daemon
                and not t.name.startswith("asyncio_")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"{request.node.nodeid} left non-daemon threads running: {left}"
