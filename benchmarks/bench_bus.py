"""Batch ingest through the NATS JetStream bus vs straight into SQLite, in the same run.

    python -m benchmarks.bench_bus                        # both setups, 10 s each
    python -m benchmarks.bench_bus --repeat 3 --duration 10 --warmup 2

Setups (server side pinned to CPU 0 like run_http.py, wrk to CPU 1; ``--no-pin`` to unpin):

- ``direct``: ``auditsink serve --store sqlite:///... --no-rules``: 200 after the SQLite commit.
- ``bus``: one ``nats-server -js``, ``auditsink serve --bus`` (200 after JetStream's PubAck) and
  one ``auditsink worker --store sqlite:///...`` (no rules either, so the two do the same work).

wrk POSTs the same 400-event bodies as ``run_http.py --mode batch`` (every event new). For the
bus, *acknowledged* events/s is what the API servers see; *stored* events/s is end to end: from
the start of the run until the worker has committed every acknowledged event to SQLite. Rows are
appended to benchmarks/results/bus.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.run_http import (
    AUDITSINK,
    MODES,
    ROOT,
    TreeSampler,
    count_stored,
    ensure_data,
    free_port,
    machine,
    pin,
    run_wrk,
    source_version,
    stop,
    wait_ready,
)

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
RESULTS = Path(__file__).resolve().parent / "results" / "bus.json"
SETUPS = ("direct", "bus")


def start(argv: list[str], log: Path, cpus: str | None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen([*pin(cpus), *argv], stdout=subprocess.DEVNULL, stderr=err,
                                cwd=ROOT)


def wait_stored(db: Path, at_least: int, timeout: float) -> float | None:
    """Until the store holds ``at_least`` events; the moment it did, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (count_stored(db) or 0) >= at_least:
                return time.monotonic()
        except sqlite3.Error:  # the worker has not created the schema yet
            pass
        time.sleep(0.05)
    return None


def measure(setup: str, *, duration: float, warmup: float, connections: int, data_dir: Path,
            server_cpus: str | None, driver_cpus: str | None) -> dict[str, Any]:
    """Start one setup, warm it up, load it with wrk, wait for the store; the result row."""
    mode = MODES["batch"]
    main_bodies = ensure_data(data_dir, mode, warm=False)
    warm_bodies = ensure_data(data_dir, mode, warm=True)
    tmp = Path(tempfile.mkdtemp(prefix="auditsink-bench-bus-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/?timeout=30s"
    db = tmp / "bench.db"
    serve = [AUDITSINK, "serve", "--listen", f"127.0.0.1:{port}", "--api-listen", "none",
             "--format", "none"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if setup == "bus":
            nats_url = f"nats://127.0.0.1:{free_port()}"
            procs.append(start([NATS_SERVER, "-js", "-a", "127.0.0.1",
                                "-p", nats_url.rsplit(":", 1)[1], "-sd", str(tmp / "js")],
                               tmp / "nats.log", server_cpus))
            time.sleep(0.5)
            procs.append(start([*serve, "--bus", nats_url], tmp / "serve.log", server_cpus))
            wait_ready(procs[-1], port, tmp / "serve.log")
            procs.append(start([AUDITSINK, "worker", "--bus", nats_url, "--store", f"sqlite:///{db}"],
                               tmp / "worker.log", server_cpus))
        else:
            procs.append(start([*serve, "--store", f"sqlite:///{db}", "--no-rules"],
                               tmp / "serve.log", server_cpus))
            wait_ready(procs[-1], port, tmp / "serve.log")
        warm_ok = 0
        if warmup > 0:
            warm, _, _ = run_wrk(url, warm_bodies, mode, connections, warmup, driver_cpus)
            warm_ok = warm["requests"] - warm["non2xx"]
        # Let the worker store the warm-up first, so the measured run starts from an empty stream.
        if wait_stored(db, warm_ok * mode.events_per_body, 120) is None:
            raise RuntimeError(f"{setup}: the warm-up events were not stored within 120 s")
        samplers = [TreeSampler(p.pid) for p in procs]
        started: dict[str, float] = {}

        def on_start() -> None:
            for sampler in samplers:
                sampler.sample()
            started["cpu"] = sum(s.cpu_seconds() for s in samplers)
            started["t"] = time.monotonic()
            for sampler in samplers:
                sampler.start()

        res, driver_cpu, wall = run_wrk(url, main_bodies, mode, connections, duration,
                                        driver_cpus, on_start)
        ok = res["requests"] - res["non2xx"]
        expected = (warm_ok + ok) * mode.events_per_body
        done = wait_stored(db, expected, 300)
        for sampler in samplers:
            sampler.stop()
        server_cpu = sum(s.cpu_seconds() for s in samplers) - started["cpu"]
        stored = count_stored(db)
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = res["duration_us"] / 1e6
    lat = res["latency_us"]
    events = ok * mode.events_per_body
    until_stored = (done - started["t"]) if done is not None else None
    return {
        "setup": setup,
        "acknowledged_events_per_s": round(events / seconds),
        "stored_events_per_s": round(events / max(until_stored, seconds)) if until_stored else None,
        "seconds_until_stored": round(until_stored, 1) if until_stored else None,
        "p50_ms": round(lat["p50"] / 1000, 2),
        "p99_ms": round(lat["p99"] / 1000, 2),
        "server_cpu_pct": round(100 * server_cpu / max(until_stored or wall, wall)),
        "driver_cpu_pct": round(100 * driver_cpu / wall),
        "requests": res["requests"],
        "non2xx": res["non2xx"],
        "wraps": res["wraps"],
        "stored_events": stored,
        "expected_stored_at_least": expected,
        "duration_s": duration,
        "connections": connections,
        "pinning": (f"server side cpu {server_cpus}, wrk cpu {driver_cpus}" if server_cpus
                    else "none"),
    }


def print_summary(rows: list[dict[str, Any]]) -> None:
    print(f"{'setup':<8} {'runs':>4} {'acked ev/s':>11} {'stored ev/s':>12} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'server CPU':>10}")
    for setup in SETUPS:
        rs = [r for r in rows if r["setup"] == setup]
        if not rs:
            continue
        stored = [r["stored_events_per_s"] for r in rs if r["stored_events_per_s"]]
        print(f"{setup:<8} {len(rs):>4} "
              f"{round(statistics.median(r['acknowledged_events_per_s'] for r in rs)):>11,} "
              f"{round(statistics.median(stored)) if stored else 0:>12,} "
              f"{statistics.median(r['p50_ms'] for r in rs):>8.2f} "
              f"{statistics.median(r['p99_ms'] for r in rs):>8.2f} "
              f"{round(statistics.median(r['server_cpu_pct'] for r in rs)):>9}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="append", choices=SETUPS, help="default: both")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "auditsink-bench-data")
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--driver-cpus", default="1")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    if not Path(NATS_SERVER).exists():
        print(f"nats-server is not installed ({NATS_SERVER}): apt-get install nats-server",
              file=sys.stderr)
        return 2
    server_cpus = None if args.no_pin else args.server_cpus
    driver_cpus = None if args.no_pin else args.driver_cpus
    rows = []
    for _ in range(args.repeat):
        for setup in args.setup or SETUPS:  # interleaved, so both see the same machine load
            row = measure(setup, duration=min(args.duration, 15.0), warmup=args.warmup,
                          connections=args.connections, data_dir=args.data_dir,
                          server_cpus=server_cpus, driver_cpus=driver_cpus)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print_summary(rows)
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        try:
            runs = json.loads(RESULTS.read_text())
        except (OSError, ValueError):
            runs = []
        runs.append({"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                     "machine": machine(), "auditsink_source": source_version(),
                     "command": " ".join(["python -m benchmarks.bench_bus",
                                          *(argv or sys.argv[1:])]),
                     "results": rows})
        RESULTS.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
