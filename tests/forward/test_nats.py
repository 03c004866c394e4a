"""The NATS output against a real nats-server with JetStream: every event acknowledged by
the stream, an event sent twice stored once (Nats-Msg-Id), and an outage only delays it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from forward.helpers import forward_all, stored_raw

from auditsink.forward import Forwarder, parse_output
from auditsink.store.sqlite import SQLiteStore

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class Nats:
    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.workdir / "nats.log", "ab") as log:
            self.proc = subprocess.Popen([NATS_SERVER, "-js", "-a", "127.0.0.1",
                                          "-p", str(self.port), "-sd", str(self.workdir / "js")],
                                         stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.run(lambda js: js.account_info())
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)

    def run(self, call: Any) -> Any:
        import nats

        async def go() -> Any:
            nc = await nats.connect(self.url, connect_timeout=1, max_reconnect_attempts=0)
            try:
                return await call(nc.jetstream(timeout=3))
            finally:
                await nc.close()

        # Bounded: a call racing the server's stop must not hang its thread (a hung
        # non-daemon thread keeps pytest from exiting after the summary).
        return asyncio.run(asyncio.wait_for(go(), timeout=10))

    def messages(self, stream: str) -> list[dict[str, Any]]:
        async def read(js: Any) -> list[dict[str, Any]]:
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append(json.loads(msg.data))
            return out

        result: list[dict[str, Any]] = self.run(read)
        return result


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Nats]:
    if not os.path.exists(NATS_SERVER):
        pytest.skip(f"nats-server is not installed ({NATS_SERVER}): apt-get install nats-server")
    pytest.importorskip("nats", reason="nats-py is not installed: pip install 'auditsink[bus]'")
    server = Nats(tmp_path)
    server.start()
    yield server
    server.stop()


def test_every_event_lands_in_the_stream_once(nats_server: Nats,
                                              fixture_store: SQLiteStore) -> None:
    settings = {"type": "nats", "url": nats_server.url, "subject": "audit.prod",
                "stream": "AUDIT", "batch_events": 300}
    forwarder = forward_all(fixture_store, settings)
    assert forwarder.stats.delivered == 974
    messages = nats_server.messages("AUDIT")
    stored = [json.loads(r)["auditID"] for r in stored_raw(fixture_store)]
    assert [m["auditID"] for m in messages] == stored
    assert messages[0]["kind"] == "Event"
    # Sent again (at least once: a restart before the cursor moved): the stream keeps one copy.
    forward_all(fixture_store, {**settings, "name": "again"})
    assert len(nats_server.messages("AUDIT")) == 974


def test_an_outage_delays_delivery(nats_server: Nats, fixture_store: SQLiteStore) -> None:
    settings = {"type": "nats", "url": nats_server.url, "subject": "audit.x", "stream": "X",
                "batch_events": 500, "batch_seconds": 0, "backoff_seconds": 0.05,
                "backoff_max_seconds": 0.2, "max_attempts": 0, "timeout": 2}
    forwarder = Forwarder(fixture_store, parse_output(settings))
    stop = threading.Event()
    assert forwarder.step(stop) == 500
    nats_server.stop()
    restart = threading.Timer(0.5, nats_server.start)
    restart.daemon = True
    restart.start()
    while forwarder.step(stop):
        pass
    forwarder.output.close()
    restart.join(timeout=15)  # its start() has returned: the teardown's stop() stops that server
    assert not restart.is_alive(), "nats-server did not come back"
    assert forwarder.stats.failed >= 1 and forwarder.stats.delivered == 974
    assert len(nats_server.messages("X")) == 974


def test_the_worker_runs_the_outputs_beside_the_bus(nats_server: Nats, tmp_path: Path,
                                                    fixtures_dir: Path) -> None:
    """With --bus, serve has no store: `auditsink worker` stores and forwards."""
    from bus.conftest import WorkerProcess
    from conftest import ServerProcess

    archive = tmp_path / "archive.jsonl"
    serve_dir = tmp_path / "serve"
    serve_dir.mkdir()
    server = ServerProcess(serve_dir, "--bus", nats_server.url, "--format", "none",
                           api=False).start()
    worker = WorkerProcess(tmp_path, "worker", "--bus", nats_server.url,
                           "--store", f"sqlite:///{tmp_path}/w.db", "--forward", f"file:{archive}")
    try:
        worker.wait_consuming()
        body = (fixtures_dir / "audit.log").read_bytes()
        assert server.post(body)[0] == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
                not archive.exists() or len(archive.read_text().splitlines()) < 974):
            time.sleep(0.1)
        lines = archive.read_text().splitlines()
        assert len(lines) == 974 and json.loads(lines[0])["kind"] == "Event"
    finally:
        server.stop()
        assert worker.stop() == 0
