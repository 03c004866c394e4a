"""Does a slow output slow ingest, or another output? Measured, every setup in the same run.

    flock /tmp/auditsink-bench.lock \
        python -m benchmarks.bench_forward --repeat 3 --duration 8 --warmup 1

Setups (``auditsink serve --no-rules --format none`` into a fresh SQLite file each, pinned to
CPU 0; the load driver on CPU 1; ``--no-pin`` to unpin):

- ``none``: no outputs: what ingest does alone;
- ``fast``: one ``blackhole`` output (``fast``): it takes every batch at once;
- ``fast+slow``: the same plus a ``blackhole`` output (``slow``) whose every send takes
  ``--slow-seconds`` (0.5 s per batch of 500 events: a destination ten times slower than ingest).

After ``--warmup`` seconds of load on other events, the driver POSTs 400-event EventLists
(every event new) from 4 threads over kept-alive connections for ``--duration`` seconds,
resending any batch not answered 200 (as the API server does). Reported per setup: acknowledged
events/s, p50/p99 request latency, and for the outputs
how long after the load ended each had delivered everything acknowledged (``fast caught up``),
and how far behind the slow one still was then. Rows go to benchmarks/results/forward.json.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.run_http import ROOT, free_port, pin, source_version, stop, wait_ready

RESULTS = Path(__file__).resolve().parent / "results" / "forward.json"
SETUPS = ("none", "fast", "fast+slow")
EVENTS_PER_BODY = 400


def bodies(count: int) -> list[bytes]:
    """``count`` EventLists of new events (built before the clock starts)."""
    out = []
    for _ in range(count):
        items = []
        for _ in range(EVENTS_PER_BODY):
            ident = str(uuid.uuid4())
            items.append({
                "level": "Request", "auditID": ident, "stage": "ResponseComplete", "verb": "update",
                "requestURI": f"/api/v1/namespaces/team-a/configmaps/{ident[:8]}",
                "user": {"username": "system:serviceaccount:team-a:deployer",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
                "sourceIPs": ["10.0.3.17"], "userAgent": "kubectl/v1.29.0",
                "objectRef": {"resource": "configmaps", "namespace": "team-a", "name": ident[:8],
                              "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 200},
                "requestObject": {"kind": "ConfigMap", "apiVersion": "v1",
                                  "data": {"settings.yaml": "x" * 300}},
                "requestReceivedTimestamp": "2026-11-26T10:00:00.000001Z",
                "stageTimestamp": "2026-11-26T10:00:00.004211Z"})
        out.append(json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                               "items": items}).encode())
    return out


def drive(port: int, payloads: list[bytes], duration: float, threads: int = 4) -> dict[str, Any]:
    """POST ``payloads`` round-robin for ``duration`` seconds; events acknowledged, latencies."""
    latencies: list[float] = []
    acked = [0]
    failures = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + duration
    cursor = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        pending: bytes | None = None
        while time.monotonic() < deadline:
            if pending is None:
                with lock:
                    pending = payloads[cursor[0] % len(payloads)]
                    cursor[0] += 1
            started = time.perf_counter()
            try:
                conn.request("POST", "/?timeout=30s", pending, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                with lock:
                    failures[0] += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status == 200:
                    acked[0] += EVENTS_PER_BODY
                    pending = None
                else:
                    failures[0] += 1
        conn.close()

    started = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.monotonic() - started
    latencies.sort()
    return {"acked": acked[0], "seconds": wall, "failures": failures[0],
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None}


def metric(port: int, name: str, output: str) -> float | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    found = re.search(rf'^{name}{{output="{output}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def measure(setup: str, payloads: list[bytes], duration: float, slow_seconds: float,
            server_cpus: str | None, driver_cpus: str | None,
            warm: list[bytes] | None = None, warmup: float = 0.0) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="auditsink-bench-forward-"))
    port = free_port()
    outputs = []
    if setup != "none":
        outputs.append({"type": "blackhole", "name": "fast"})
    if setup == "fast+slow":
        outputs.append({"type": "blackhole", "name": "slow", "delay_seconds": slow_seconds})
    config = tmp / "auditsink.yaml"
    config.write_text(json.dumps({"outputs": outputs}))  # JSON is YAML
    argv = [sys.executable, "-m", "auditsink", "serve", "--listen", f"127.0.0.1:{port}",
            "--api-listen", "none", "--format", "none", "--no-rules",
            "--store", f"sqlite:///{tmp}/bench.db", "--config", str(config)]
    log = tmp / "serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([*pin(server_cpus), *argv], stdout=subprocess.DEVNULL, stderr=err,
                                cwd=ROOT)
    try:
        wait_ready(proc, port, log)
        # The driver runs in this process: pin it for the load only.
        if driver_cpus:
            import os

            os.sched_setaffinity(0, {int(c) for c in driver_cpus.split(",")})
        warmed = drive(port, warm, warmup)["acked"] if warm and warmup > 0 else 0
        load = drive(port, payloads, duration)
        ended = time.monotonic()
        row: dict[str, Any] = {"setup": setup, **load,
                               "events_per_second": load["acked"] / load["seconds"]}
        if setup != "none":
            caught_up = None
            deadline = ended + 120
            while time.monotonic() < deadline:
                lag = metric(port, "auditsink_output_lag_events", "fast")
                if lag == 0 and (metric(port, "auditsink_output_delivered_events_total", "fast")
                                 or 0) >= load["acked"] + warmed:
                    caught_up = time.monotonic() - ended
                    break
                time.sleep(0.05)
            row["fast_caught_up_s"] = caught_up
            row["fast_delivered"] = metric(port, "auditsink_output_delivered_events_total", "fast")
        if setup == "fast+slow":
            row["slow_lag_events"] = metric(port, "auditsink_output_lag_events", "slow")
            row["slow_delivered"] = metric(port, "auditsink_output_delivered_events_total", "slow")
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slow-seconds", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--driver-cpus", default="1")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    server_cpus = None if args.no_pin else args.server_cpus
    driver_cpus = None if args.no_pin else args.driver_cpus
    # Enough distinct bodies that no run resends one (a resend would be a duplicate, cheaper).
    payloads = bodies(int(30_000 * args.duration / EVENTS_PER_BODY) + 50)
    warm = bodies(int(30_000 * args.warmup / EVENTS_PER_BODY) + 10)
    rows = []
    for round_ in range(args.repeat):
        for setup in SETUPS:  # interleaved, so drift on the shared machine hits all alike
            row = measure(setup, payloads, args.duration, args.slow_seconds, server_cpus,
                          driver_cpus, warm, args.warmup)
            row["round"] = round_
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = []
    for setup in SETUPS:
        mine = [r for r in rows if r["setup"] == setup]
        entry: dict[str, Any] = {"setup": setup}
        for key in ("events_per_second", "p50_ms", "p99_ms", "fast_caught_up_s", "slow_lag_events"):
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                entry[key] = statistics.median(values)
                entry[key + "_range"] = [min(values), max(values)]
        summary.append(entry)
    for entry in summary:
        print(json.dumps(entry))
    if not args.no_save:
        RESULTS.parent.mkdir(exist_ok=True)
        existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        existing.append({"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                         "command": "python -m benchmarks.bench_forward "
                         + " ".join(argv or sys.argv[1:]),
                         "auditsink_source": source_version(), "rows": rows, "summary": summary})
        RESULTS.write_text(json.dumps(existing, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
