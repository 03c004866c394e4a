"""What a newcomer meets running ``auditsink serve``, as real processes: listener errors that
name the flag, ports that are ports, ``--notify stdout`` on stdout, a logged 403 for a cluster
mismatch, and a retried batch printed once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, FALCO, free_port

FIXTURE_LOG = DATA / "fixtures" / "kube-apiserver-1.20" / "audit.log"


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "auditsink", "serve", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def _event_list(lines: list[bytes]) -> bytes:
    items = [json.loads(line) for line in lines]
    for item in items:
        item.pop("kind", None)
        item.pop("apiVersion", None)
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                       "items": items}).encode()


@pytest.mark.parametrize("flag", ["--api-listen", "--listen"])
def test_a_second_serve_names_the_busy_listener(tmp_path: Path, server_factory: Any,
                                                 flag: str) -> None:
    first = server_factory("--store", "sqlite:///first.db")
    busy = first.api_port if flag == "--api-listen" else first.port
    other = free_port()
    ports = {"--listen": f"127.0.0.1:{other}", "--api-listen": f"127.0.0.1:{free_port()}"}
    ports[flag] = f"127.0.0.1:{busy}"
    second = _serve(tmp_path, "--store", "sqlite:///second.db", *[a for kv in ports.items()
                                                                   for a in kv])
    assert second.returncode == 2, second.stderr
    assert f"{flag} 127.0.0.1:{busy}: cannot listen there: address already in use" in (
        second.stderr)
    assert "Errno" not in second.stderr and "uvicorn" not in second.stderr
    assert first.proc is not None and first.proc.poll() is None  # the first one is untouched


@pytest.mark.parametrize("flag", ["--listen", "--api-listen"])
def test_a_port_out_of_range_is_refused(tmp_path: Path, flag: str) -> None:
    result = _serve(tmp_path, flag, "127.0.0.1:99999")
    assert result.returncode == 2
    assert f"{flag} '127.0.0.1:99999': the port must be 1 to 65535" in result.stderr


def test_notify_stdout_writes_to_stdout(tmp_path: Path, server_factory: Any) -> None:
    server = server_factory("--store", "sqlite:///a.db", "--format", "none", "--notify", "stdout",
                            "--notify-since", "all")
    trace = FALCO / "traces" / "create_nginx_pod_privileged.json"
    assert server.post(trace.read_bytes())[0] == 200
    deadline = time.monotonic() + 30
    while "Privileged Pod Created" not in server.stdout_path.read_text():
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.1)
    server.stop()
    (line,) = [x for x in server.stdout_path.read_text().splitlines() if "Privileged" in x]
    assert line.startswith("2018-10-25T14:09:12.581541Z WARNING Privileged Pod Created: ")
    assert "Privileged Pod Created" not in server.stderr()


def test_a_cluster_mismatch_is_logged(tmp_path: Path, server_factory: Any) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cr3t-token-for-prod,prod\n")
    server = server_factory("--store", "sqlite:///a.db", "--token-file", str(tokens))
    body = _event_list(FIXTURE_LOG.read_bytes().splitlines()[:1])
    status, answer = server.post(body, path="/clusters/dev?timeout=30s",
                                 Authorization="Bearer s3cr3t-token-for-prod")
    assert status == 403 and "not valid for cluster 'dev'" in answer["error"]
    server.stop()
    log = server.stderr()
    assert "refused a request for cluster 'dev' from 127.0.0.1" in log
    assert "credential is bound to cluster 'prod'" in log
    assert "s3cr3t" not in log  # never the credential itself


def test_a_retried_batch_is_printed_once(tmp_path: Path, server_factory: Any) -> None:
    server = server_factory("--store", "sqlite:///a.db", "--format", "json")
    lines = FIXTURE_LOG.read_bytes().splitlines()
    first, retry = _event_list(lines[:40]), _event_list(lines[20:60])
    assert server.post(first)[1] == {"stored": 40, "duplicates": 0, "rejected": 0}
    assert server.post(first)[1] == {"stored": 0, "duplicates": 40, "rejected": 0}
    # A batch half seen before: only its new half is printed, in its order.
    assert server.post(retry)[1] == {"stored": 20, "duplicates": 20, "rejected": 0}
    server.stop()
    printed = [json.loads(x) for x in server.stdout_path.read_text().splitlines()]
    assert [(e["auditID"], e["stage"]) for e in printed] == [
        (e["auditID"], e["stage"]) for e in map(json.loads, lines[:60])]


def test_import_prints_only_what_it_stored(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"\n".join(FIXTURE_LOG.read_bytes().splitlines()[:30]) + b"\n")
    args = [sys.executable, "-m", "auditsink", "import", "--store", "sqlite:///a.db",
            "--format", "json", str(log)]
    once = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert len(once.stdout.splitlines()) == 30 and again.stdout == ""
