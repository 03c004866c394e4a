"""The syslog output against Debian's rsyslog (imtcp, octet-counted RFC 5424; and imtcp over
TLS with the ossl driver): rsyslog's own RFC 5424 parser must read every field back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from forward.helpers import forward_all, stored_raw

from auditsink.setup.certs import generate_ca, generate_server_cert
from auditsink.store.sqlite import SQLiteStore

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
# What rsyslog's parser made of each message: one line per message.
TEMPLATE = "%app-name%|%msgid%|%timereported:::date-rfc3339%|%structured-data%|%msg%\\n"


@dataclass
class Rsyslog:
    workdir: Path
    port: int
    tls: bool
    proc: subprocess.Popen[bytes] | None = None

    @property
    def out(self) -> Path:
        return self.workdir / "out.log"

    def config(self) -> str:
        lines = [f'global(workDirectory="{self.workdir}" maxMessageSize="1m"']
        if self.tls:
            lines[0] += (f' DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile='
                         f'"{self.workdir}/ca.crt" DefaultNetstreamDriverCertFile='
                         f'"{self.workdir}/server.crt" DefaultNetstreamDriverKeyFile='
                         f'"{self.workdir}/server.key"')
            lines.append('module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" '
                         'StreamDriver.AuthMode="anon")')
        else:
            lines.append('module(load="imtcp")')
        lines[0] += ")"
        lines += [f'input(type="imtcp" port="{self.port}")',
                  f'template(name="parts" type="string" string="{TEMPLATE}")',
                  f'*.* action(type="omfile" file="{self.out}" template="parts")']
        return "\n".join(lines) + "\n"

    def start(self) -> Rsyslog:
        conf = self.workdir / "rsyslog.conf"
        conf.write_text(self.config())
        with open(self.workdir / "rsyslogd.log", "ab") as log:
            self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(conf), "-i",
                                          str(self.workdir / "rsyslogd.pid")],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        said = (self.workdir / "rsyslogd.log").read_text()
        raise RuntimeError(f"rsyslogd did not listen: {said}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def received(self, count: int, timeout: float = 15) -> list[list[str]]:
        """The parsed lines, once at least ``count`` arrived (rsyslog writes asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.out.read_text().splitlines() if self.out.exists() else []
            if len(lines) >= count:
                return [line.split("|", 4) for line in lines]
            time.sleep(0.05)
        raise AssertionError(f"rsyslog wrote {len(lines)} of {count} messages")


@pytest.fixture
def rsyslog_factory(tmp_path: Path) -> Iterator[object]:
    if not os.path.exists(RSYSLOGD):
        pytest.skip("rsyslogd is not installed (apt-get install rsyslog rsyslog-openssl)")
    started: list[Rsyslog] = []

    def start(tls: bool = False) -> Rsyslog:
        workdir = tmp_path / f"rsyslog{len(started)}"
        workdir.mkdir()
        if tls:
            ca = generate_ca()
            server = generate_server_cert(ca, ["127.0.0.1", "localhost"])
            (workdir / "ca.crt").write_bytes(ca.cert_pem)
            (workdir / "server.crt").write_bytes(server.cert_pem)
            (workdir / "server.key").write_bytes(server.key_pem)
        daemon = Rsyslog(workdir, free_port(), tls).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop(signal.SIGKILL)


def _check(lines: list[list[str]], store: SQLiteStore) -> None:
    raws = stored_raw(store)
    assert len(lines) == len(raws)
    for (app, msgid, timestamp, sd, msg), raw in zip(lines, raws):
        event = json.loads(raw)
        assert (app, msgid) == ("auditsink", "audit")
        assert json.loads(msg) == {"kind": "Event", "apiVersion": "audit.k8s.io/v1", **event}
        assert sd == (f'[auditsink@32473 cluster="prod" auditID="{event["auditID"]}" '
                      f'stage="{event["stage"]}"]')
        assert timestamp == event["stageTimestamp"].replace("Z", "+00:00") or timestamp


def test_syslog_over_tcp(rsyslog_factory: object, fixture_store: SQLiteStore) -> None:
    daemon = rsyslog_factory()  # type: ignore[operator]
    forwarder = forward_all(fixture_store, {"type": "syslog", "address": f"127.0.0.1:{daemon.port}",
                                            "batch_events": 200})
    assert forwarder.stats.delivered == 974
    _check(daemon.received(974), fixture_store)


def test_syslog_over_tls(rsyslog_factory: object, fixture_store: SQLiteStore) -> None:
    daemon = rsyslog_factory(tls=True)  # type: ignore[operator]
    settings = {"type": "syslog", "address": f"127.0.0.1:{daemon.port}", "tls": True}
    forward_all(fixture_store, {**settings, "ca_file": str(daemon.workdir / "ca.crt")})
    _check(daemon.received(974), fixture_store)
    # A server whose certificate the system CAs do not vouch for is refused.
    refused = forward_all(fixture_store, {**settings, "name": "untrusted", "max_attempts": 1})
    assert refused.stats.delivered == 0
    assert "CERTIFICATE_VERIFY_FAILED" in fixture_store.dead_letters("output:untrusted")[0].error


def test_syslog_reconnects_after_a_server_restart(rsyslog_factory: object,
                                                  fixture_store: SQLiteStore) -> None:
    import threading

    from auditsink.forward import Forwarder, parse_output

    daemon = rsyslog_factory()  # type: ignore[operator]
    forwarder = Forwarder(fixture_store, parse_output({
        "type": "syslog", "address": f"127.0.0.1:{daemon.port}", "batch_events": 100,
        "batch_seconds": 0, "backoff_seconds": 0.05, "max_attempts": 0}))
    stop = threading.Event()
    assert forwarder.step(stop) == 100
    daemon.received(100)
    daemon.stop()          # rsyslog goes away between two batches ...
    threading.Timer(0.5, daemon.start).start()  # ... and comes back on the same port
    while forwarder.step(stop):
        pass
    forwarder.output.close()
    lines = daemon.received(974)
    assert sorted({json.loads(msg)["auditID"] for *_, msg in lines}) == sorted(
        {json.loads(raw)["auditID"] for raw in stored_raw(fixture_store)})
