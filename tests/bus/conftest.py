"""A real three-node nats-server cluster with JetStream, and auditsink workers as processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ServerProcess, free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsNode:
    """One nats-server process of the cluster."""

    def __init__(self, name: str, workdir: Path, client_port: int, cluster_port: int,
                 http_port: int, routes: list[str]) -> None:
        self.name = name
        self.workdir = workdir
        self.client_port = client_port
        self.cluster_port = cluster_port
        self.http_port = http_port
        self.routes = routes
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        cmd = [NATS_SERVER, "-js", "-n", self.name, "-a", "127.0.0.1", "-p", str(self.client_port),
               "-m", str(self.http_port), "--cluster_name", "auditsink-test",
               "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
               "--routes", ",".join(self.routes),
               "-sd", str(self.workdir / self.name)]
        with open(self.workdir / f"{self.name}.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def jsz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/jsz", timeout=2) as answer:
            data: dict[str, Any] = json.load(answer)
            return data


class NatsCluster:
    """Three nodes on 127.0.0.1; ``urls`` is what ``--bus`` takes."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        routes = [f"nats://127.0.0.1:{cluster}" for _, cluster, _ in ports]
        self.nodes = [NatsNode(f"n{i + 1}", workdir, client, cluster, http, routes)
                      for i, (client, cluster, http) in enumerate(ports)]

    @property
    def urls(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> NatsNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 20.0) -> None:
        for node in self.nodes:
            node.start()
        self.wait_for_meta_leader(timeout)

    def wait_for_meta_leader(self, timeout: float = 20.0) -> None:
        """Until every running node knows the JetStream meta leader and the leader sees every
        other running node as a current peer: only then can it place a stream with a replica on
        each (before, stream creation fails with "no suitable peers for placement")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
            try:
                metas = {n.name: n.jsz().get("meta_cluster") or {} for n in running}
            except OSError:
                metas = {}
            leaders = {meta.get("leader") for meta in metas.values()}
            if len(leaders) == 1 and None not in leaders and "" not in leaders:
                peers = (metas.get(leaders.pop()) or {}).get("replicas") or []
                if sum(1 for peer in peers if peer.get("current")) >= len(running) - 1:
                    return
            time.sleep(0.1)
        raise RuntimeError("the NATS cluster elected no JetStream meta leader")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def js(self, call: Any) -> Any:
        """Run ``await call(js)`` on a short-lived connection (closed before returning)."""
        import nats

        urls = [node.url for node in self.nodes
                if node.proc is not None and node.proc.poll() is None]

        async def run() -> Any:
            nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=2)
            try:
                return await call(nc.jetstream(timeout=3))
            finally:
                await nc.close()

        return asyncio.run(run())


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A fresh three-node JetStream cluster for one test (tests kill nodes)."""
    if not os.path.exists(NATS_SERVER):
        pytest.skip(f"nats-server is not installed ({NATS_SERVER}): apt-get install nats-server")
    pytest.importorskip("nats", reason="nats-py is not installed: pip install 'auditsink[bus]'")
    workdir = tmp_path / "nats"
    workdir.mkdir()
    cluster = NatsCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


class WorkerProcess:
    """``auditsink worker`` as a real process."""

    def __init__(self, workdir: Path, name: str, *args: str) -> None:
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "auditsink", "worker", *args], cwd=workdir,
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def wait_consuming(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "worker consuming" in self.log_path.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"worker did not start: {self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    """Start ``auditsink worker`` processes; all are killed at the end of the test."""
    started: list[WorkerProcess] = []

    def start(name: str, *args: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, name, *args)
        started.append(worker)
        worker.wait_consuming()
        return worker

    yield start
    for worker in started:
        worker.stop(signal.SIGKILL)


@pytest.fixture
def bus_server(tmp_path: Path) -> Iterator[Any]:
    """Start ``auditsink serve --bus ...`` (no read API); killed at the end even if it never
    became healthy."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(tmp_path, *args, api=False)
        started.append(server)
        return server.start(timeout=40)

    yield start
    for server in started:
        if server.proc is not None:
            server.stop(signal.SIGKILL)
