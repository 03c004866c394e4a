"""End-to-end HTTP benchmark: wrk POSTs EventLists to a webhook server on 127.0.0.1.

    python -m benchmarks.run_http --target baseline --mode batch --duration 10
    python -m benchmarks.run_http --all            # every target, both modes, one run

Per run: start the target as a subprocess pinned to CPU 0 on a free loopback port, wait until it
answers, warm it up with wrk for --warmup seconds (on bodies of its own), run wrk pinned to CPU 1
for --duration seconds while sampling the server's RSS, stop the server, print a result row and
append it to benchmarks/results/latest.json.

Every POSTed event is new (uuid4 auditID, increasing timestamps; see generate_data.py), so a
deduplicating store cannot skip work. The bodies are pre-generated and cached in --data-dir.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditsink.detect import CURSOR as RULES_CURSOR
from benchmarks.bench_store import copy_store, fresh_database
from benchmarks.generate_data import write_bodies

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "wrk_bodies.lua"
RESULTS = HERE / "results" / "latest.json"
PYTHON = sys.executable
AUDITSINK = str(Path(sys.executable).with_name("auditsink"))
MAX_DURATION = 15.0  # seconds per wrk run, a hard bound
DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "auditsink-bench-data"


@dataclass(frozen=True)
class Mode:
    """How kube-apiserver sends: batch = EventLists of up to 400, blocking = one event each."""

    name: str
    events_per_body: int
    bodies: int  # distinct bodies for the measured run
    warm_bodies: int  # separate bodies for the warm-up, so the measured ones stay new


MODES = {
    # 6,000 x 400 = 2.4 M events (about 2 GB): enough for 600 requests/s over 10 s
    "batch": Mode("batch", 400, 6_000, 500),
    # 300,000 one-event bodies (about 260 MB): enough for 30,000 requests/s over 10 s
    "blocking": Mode("blocking", 1, 300_000, 30_000),
}


@dataclass(frozen=True)
class Target:
    """A server to measure: ``argv(port, store_url)`` starts it; its stdout goes to /dev/null.
    ``store`` says what ``store_url`` is: a fresh SQLite file, a fresh PostgreSQL database
    (``--postgres``), or nothing."""

    name: str
    argv: Callable[[int, str], list[str]]
    description: str
    needs_auditsink: bool = True
    in_all: bool = True  # part of --all
    deduplicates: bool = True  # re-sent bodies would be skipped: they must stay fresh
    store: str = "none"  # "sqlite", "postgres" or "none"


TARGETS = {
    t.name: t
    for t in (
        Target("baseline",
               lambda port, store: [PYTHON, "-m", "benchmarks.baseline_seed_server",
                                    "--port", str(port)],
               "the seed article's Go server, ported literally (print every body, json.loads)",
               needs_auditsink=False),
        Target("blackhole",
               lambda port, store: [PYTHON, "-m", "benchmarks.blackhole_server",
                                    "--port", str(port)],
               "reads each body and answers 200 (uvloop): the harness's ceiling, not a backend",
               needs_auditsink=False, deduplicates=False),
        Target("auditsink-json",
               lambda port, store: [AUDITSINK, "serve", "--listen", f"127.0.0.1:{port}",
                                    "--format", "json", "--store", "none"],
               "auditsink serve: one JSON line per event to stdout, no store"),
        Target("auditsink-sqlite",
               lambda port, store: [AUDITSINK, "serve", "--listen", f"127.0.0.1:{port}",
                                    "--format", "none", "--store", store],
               "auditsink serve: SQLite store (acknowledged after commit), no output",
               store="sqlite"),
        Target("auditsink-sqlite-receivers",
               lambda port, store: [AUDITSINK, "serve", "--listen", f"127.0.0.1:{port}",
                                    "--format", "none", "--store", store,
                                    "--receivers", "0"],
               "as auditsink-sqlite with one receiver process per core and the rules in a "
               "process of their own (issue 16); run it with --no-pin", in_all=False,
               store="sqlite"),
        Target("auditsink-sqlite-norules",
               lambda port, store: [AUDITSINK, "serve", "--listen", f"127.0.0.1:{port}",
                                    "--format", "none", "--store", store,
                                    "--no-rules"],
               "as auditsink-sqlite without detection rules: what the rules cost",
               in_all=False, store="sqlite"),
        Target("auditsink-postgres",
               lambda port, store: [AUDITSINK, "serve", "--listen", f"127.0.0.1:{port}",
                                    "--format", "none", "--store", store],
               "auditsink serve: PostgreSQL store (--postgres URL: a fresh database each run)",
               in_all=False, store="postgres"),
        Target("auditsink-postgres-receivers",
               lambda port, store: [AUDITSINK, "serve", "--listen", f"127.0.0.1:{port}",
                                    "--format", "none", "--store", store, "--receivers", "0"],
               "as auditsink-postgres with one receiver process per core, each committing "
               "over its own connection (issue 16); run it with --no-pin",
               in_all=False, store="postgres"),
    )
}


# ---------------------------------------------------------------------------------------------
# data


def ensure_data(data_dir: Path, mode: Mode, warm: bool) -> Path:
    """The cached bodies file for ``mode`` (generated once; seed 1 measured, 2 warm-up)."""
    count = mode.warm_bodies if warm else mode.bodies
    kind = "warm" if warm else "main"
    path = data_dir / f"{mode.name}-{kind}-{count}x{mode.events_per_body}.jsonl"
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    n_events = count * mode.events_per_body
    print(f"generating {path} ({n_events:,} events) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    write_bodies(str(tmp), n_events, mode.events_per_body, seed=2 if warm else 1)
    tmp.rename(path)
    print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return path


# ---------------------------------------------------------------------------------------------
# processes: tree, memory, CPU


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    tree = _children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def busy_seconds() -> float:
    """CPU seconds the machine spent in processes (user, nice, system; all cores), /proc/stat.

    irq and softirq (loopback networking, for one) are left out: they are charged to nobody.
    """
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2]) / os.sysconf("SC_CLK_TCK")


def core_idle_seconds(cpu: str) -> float | None:
    """Idle seconds of one core (``cpu`` like "0"), or None when ``cpu`` is not one core."""
    if not cpu or not cpu.isdigit():
        return None
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                fields = [int(x) for x in line.split()[1:]]
                return (fields[3] + fields[4]) / os.sysconf("SC_CLK_TCK")
    return None


def self_seconds() -> float:
    """CPU seconds of this harness process (the RSS sampler, reading wrk's output)."""
    t = os.times()
    return t.user + t.system


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class TreeSampler(threading.Thread):
    """Samples the summed VmRSS and CPU ticks of a process tree every ``interval`` seconds."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss_kb = 0
        self.ticks: dict[int, int] = {}  # last seen CPU ticks per pid (exited ones keep theirs)
        self.hwm_kb: dict[int, int] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        pids = process_tree(self.root)
        self.peak_rss_kb = max(self.peak_rss_kb, sum(_status_kb(p, "VmRSS") for p in pids))
        for p in pids:
            self.ticks[p] = max(self.ticks.get(p, 0), _cpu_ticks(p))
            self.hwm_kb[p] = max(self.hwm_kb.get(p, 0), _status_kb(p, "VmHWM"))

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()

    def cpu_seconds(self) -> float:
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


def rules_lag(port: int) -> int | None:
    """``auditsink_rules_lag_events`` from the server's /metrics; None without it."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        if family.name == "auditsink_rules_lag_events":
            return int(sum(sample.value for sample in family.samples))
    return None


class LagSampler(threading.Thread):
    """Reads the rules lag every ``interval`` seconds while wrk runs: bounded or growing?"""

    def __init__(self, port: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            lag = rules_lag(self.port)
            if lag is not None:
                self.samples.append(lag)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def catch_up(self, limit: float = 30.0) -> float | None:
        """Seconds until the rules have evaluated everything stored (None: not within
        ``limit``, or no rules)."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            lag = rules_lag(self.port)
            if lag is None:
                return None
            if lag == 0:
                return round(time.monotonic() - started, 1)
            time.sleep(0.2)
        return None


# ---------------------------------------------------------------------------------------------
# server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 30) -> None:
    """Until the server answers any HTTP request (any status) on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer within {timeout} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def seed_store(source: Path, db: Path) -> int:
    """Copy the store ``source`` (bench_query's 10M-event one, say) to ``db``, its rules cursor
    moved to its end: the run then ingests into a full store instead of the rules evaluating
    what it held. Returns how many events it holds."""
    copy_store(source, db)
    conn = sqlite3.connect(db)
    try:
        held, newest = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM events").fetchone()
        conn.execute("INSERT INTO cursors (name, position) VALUES (?, ?) ON CONFLICT (name)"
                     " DO UPDATE SET position = excluded.position", (RULES_CURSOR, newest))
        conn.commit()
    finally:
        conn.close()
    return int(held)


def count_stored_postgres(url: str) -> int | None:
    """Rows in a PostgreSQL store's event table."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    return None if row is None else int(row[0])


def count_stored(db: Path) -> int | None:
    """Rows in the store's event table, if there is a recognisable one."""
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for name in ("events", "event"):
            if name in tables:
                return int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
        return None
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# wrk


def run_wrk(url: str, bodies: Path, mode: Mode, connections: int, duration: float,
            cpus: str | None, on_start: Callable[[], None] | None = None,
            ) -> tuple[dict[str, Any], float, float]:
    """Run wrk; return its WRK_RESULT, its CPU seconds and the wall seconds of the load phase.

    wrk first loads and formats every body (init), then prints "Running ..." and starts the
    load. stdbuf makes that line arrive at once, so CPU and time are measured from there on,
    not over the loading. ``on_start`` is called at that moment.
    """
    argv = [*pin(cpus), "stdbuf", "-oL", "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
            "--latency", "--timeout", "30s", "-s", str(LUA), url, "--", str(bodies),
            str(mode.events_per_body), "1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killer = threading.Timer(duration + 180, proc.kill)
    killer.start()
    lines, cpu_at_start, t_start = [], 0.0, time.monotonic()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Running "):
                cpu_at_start = _cpu_ticks(proc.pid) / os.sysconf("SC_CLK_TCK")
                t_start = time.monotonic()
                if on_start:
                    on_start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t_start
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        killer.cancel()
    cpu = usage.ru_utime + usage.ru_stime - cpu_at_start
    out = "".join(lines)
    match = re.search(r"^WRK_RESULT (\{.*\})$", out, re.M)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{out}")
    return json.loads(match.group(1)), cpu, wall


# ---------------------------------------------------------------------------------------------
# one measurement


def measure(target: Target, mode: Mode, *, duration: float, warmup: float, connections: int,
            data_dir: Path, server_cpus: str | None, driver_cpus: str | None,
            store_from: Path | None = None, postgres: str | None = None,
            before: Before | None = None) -> dict[str, Any]:
    """Start ``target`` (on a copy of the store ``store_from``, when given: its row is named
    ``<target>+full``; from the checkout ``before``, when given: ``<target>@REV``), warm it
    up, load it with wrk, stop it; return the result row."""
    main_bodies = ensure_data(data_dir, mode, warm=False)
    warm_bodies = ensure_data(data_dir, mode, warm=True)
    tmp = Path(tempfile.mkdtemp(prefix="auditsink-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/?timeout=30s"
    log = tmp / "server.stderr"
    store_url, drop = "none", None
    if target.store == "sqlite":
        store_url = f"sqlite:///{tmp}/bench.db"
    elif target.store == "postgres":
        if not postgres:
            raise RuntimeError("needs --postgres URL (or AUDITSINK_TEST_POSTGRES)")
        store_url, drop = fresh_database(postgres)
    argv = target.argv(port, store_url)
    held = seed_store(store_from, tmp / "bench.db") if store_from else 0
    if target.needs_auditsink and "--api-listen" in serve_help():
        # the read API listens on a fixed port (8081) by default: give it a free one, so that
        # nothing else on the machine can make the run fail; it stays idle
        argv += ["--api-listen", f"127.0.0.1:{free_port()}"]
    env = before.env() if before is not None else None
    with open(log, "wb") as err:
        proc = subprocess.Popen([*pin(server_cpus), *argv], stdout=subprocess.DEVNULL,
                                stderr=err, cwd=ROOT, env=env)
    try:
        wait_ready(proc, port, log)
        warm_requests = 0
        if warmup > 0:
            warm, _, _ = run_wrk(url, warm_bodies, mode, connections, warmup, driver_cpus)
            warm_requests = warm["requests"] - warm["non2xx"]
        sampler = TreeSampler(proc.pid)
        lags = LagSampler(port) if target.needs_auditsink else None
        started: dict[str, Any] = {}

        def on_start() -> None:
            sampler.sample()
            started["cpu"] = sampler.cpu_seconds()
            started["busy"] = busy_seconds()
            started["self"] = self_seconds()
            started["idle"] = core_idle_seconds(server_cpus or "")
            started["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
            sampler.start()
            if lags is not None:
                lags.start()

        res, driver_cpu, wall = run_wrk(url, main_bodies, mode, connections, duration,
                                        driver_cpus, on_start)
        busy = busy_seconds() - started["busy"]
        harness = self_seconds() - started["self"]
        idle_end = core_idle_seconds(server_cpus or "")
        idle = None if idle_end is None else idle_end - started["idle"]
        sampler.stop()
        server_cpu = sampler.cpu_seconds() - started["cpu"]
        catch_up = None
        if lags is not None:
            lags.stop()
            catch_up = lags.catch_up() if lags.samples else None
        loadavg = started["loadavg"]
        if proc.poll() is not None:
            raise RuntimeError(f"server died during the run:\n{_tail(log)}")
        stop(proc)
        stored = (count_stored_postgres(store_url) if target.store == "postgres"
                  else count_stored(tmp / "bench.db"))
        if stored is not None:
            stored -= held
        server_log = _tail(log, 5)
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
        if drop is not None:
            drop()

    seconds = res["duration_us"] / 1e6
    ok = res["requests"] - res["non2xx"]
    lat = res["latency_us"]
    errors = res["errors"]
    row: dict[str, Any] = {
        "target": target.name + ("+full" if store_from else "")
        + (f"@{before.rev}" if before is not None else ""),
        "mode": mode.name,
        "events_per_s": round(ok * mode.events_per_body / seconds),
        "requests_per_s": round(res["requests"] / seconds, 1),
        # events per CPU-second of the server: less sensitive to CPU taken by other processes
        "events_per_cpu_s": round(ok * mode.events_per_body / server_cpu) if server_cpu else None,
        "p50_ms": round(lat["p50"] / 1000, 2),
        "p90_ms": round(lat["p90"] / 1000, 2),
        "p99_ms": round(lat["p99"] / 1000, 2),
        "max_ms": round(lat["max"] / 1000, 2),
        "peak_rss_mb": round(max(sampler.peak_rss_kb, max(sampler.hwm_kb.values(), default=0))
                             / 1024, 1),
        "server_cpu_pct": round(100 * server_cpu / wall),
        "driver_cpu_pct": round(100 * driver_cpu / wall),
        # every other process on the machine (other users' work; 200% = both cores busy)
        "other_cpu_pct": max(0, round(100 * (busy - server_cpu - driver_cpu - harness) / wall)),
        # idle time of the server's core: >0 means the server sometimes waited for requests
        "server_core_idle_pct": None if idle is None else round(100 * idle / wall),
        "requests": res["requests"],
        "non2xx": res["non2xx"],
        "socket_errors": sum(errors.values()) - errors["status"],
        "wraps": res["wraps"],
        "distinct_bodies": res["bodies"],
        "events_per_body": mode.events_per_body,
        "connections": connections,
        "duration_s": duration,
        "warmup_s": warmup,
        "pinning": f"server cpu {server_cpus}, wrk cpu {driver_cpus}" if server_cpus else "none",
        "loadavg_before": loadavg,
        "command": re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", " ".join(argv).replace(
            store_url, "POSTGRES_URL" if target.store == "postgres" else store_url))
        .replace(f"--port {port}", "--port PORT").replace(str(tmp), "TMPDIR"),
    }
    if store_from:
        row["store_from"] = str(store_from)
        row["store_held_events"] = held
    if lags is not None and lags.samples:
        # the rules' lag behind the store, sampled each second of the run: its largest, its
        # last, and how long the rules took to catch up once wrk stopped (None: over 30 s)
        row["rules_lag_max"] = max(lags.samples)
        row["rules_lag_end"] = lags.samples[-1]
        row["rules_catch_up_s"] = catch_up
    if stored is not None:
        expected = (warm_requests + ok) * mode.events_per_body
        row["stored_events"] = stored
        row["expected_stored_at_least"] = expected if not res["wraps"] else None
        if stored < expected and not res["wraps"]:
            row["warning"] = f"only {stored} of {expected} acknowledged events are stored"
    if res["wraps"] and target.deduplicates:
        row["warning"] = "bodies ran out and were re-sent: raise Mode.bodies"
    if row["driver_cpu_pct"] > 85:
        row["warning"] = "wrk used >85% of its core: the driver may be the bottleneck"
    if res["non2xx"] or row["socket_errors"]:
        row["server_log_tail"] = server_log
    return row


# ---------------------------------------------------------------------------------------------
# CLI


@functools.cache
def serve_help() -> str:
    try:
        return subprocess.run([AUDITSINK, "serve", "--help"], capture_output=True, text=True,
                              timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def auditsink_serve_ready() -> bool:
    """Does ``auditsink serve --help`` show the flags the auditsink targets use?"""
    return all(flag in serve_help() for flag in ("--listen", "--format", "--store"))


HEADER = (f"{'target':<32} {'mode':<9} {'events/s':>10} {'req/s':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'RSS MB':>7} {'srv CPU':>7} {'wrk CPU':>7} {'others':>7} "
          f"{'srvidle':>7}")


def _pct(value: int | None) -> str:
    return "-" if value is None else f"{value}%"


def format_row(r: dict[str, Any]) -> str:
    line = (f"{r['target']:<32} {r['mode']:<9} {r['events_per_s']:>10,} "
            f"{r['requests_per_s']:>9,.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['peak_rss_mb']:>7.1f} {r['server_cpu_pct']:>6}% {r['driver_cpu_pct']:>6}% "
            f"{r['other_cpu_pct']:>6}% {_pct(r.get('server_core_idle_pct')):>7}")
    if "rules_lag_max" in r:
        catch_up = r["rules_catch_up_s"]
        line += (f"  rules lag max {r['rules_lag_max']:,} end {r['rules_lag_end']:,}, caught up "
                 + ("after >30 s" if catch_up is None else f"in {catch_up:g} s"))
    if r.get("warning"):
        line += f"  !! {r['warning']}"
    if r.get("non2xx"):
        line += f"  ({r['non2xx']} non-2xx)"
    return line


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (target, mode): median events/s, p50, p99; the range of events/s; max RSS."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["mode"]), []).append(r)
    out = []
    for (target, mode), rs in groups.items():
        out.append({
            "target": target, "mode": mode, "runs": len(rs),
            "events_per_s": round(statistics.median(r["events_per_s"] for r in rs)),
            "events_per_s_min": min(r["events_per_s"] for r in rs),
            "events_per_s_max": max(r["events_per_s"] for r in rs),
            "events_per_cpu_s": round(statistics.median(r["events_per_cpu_s"] or 0 for r in rs)),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rs), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 2),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "other_cpu_pct": round(statistics.median(r["other_cpu_pct"] for r in rs)),
        })
        if all("rules_lag_max" in r for r in rs):
            catch_ups = [r["rules_catch_up_s"] for r in rs]
            out[-1]["rules_lag_max"] = max(r["rules_lag_max"] for r in rs)
            out[-1]["rules_catch_up_s"] = None if None in catch_ups else max(catch_ups)
    return out


def summary_lines(summary: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'target':<32} {'mode':<9} {'events/s':>10} {'[min - max]':>21} {'ev/CPU-s':>9} "
             f"{'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>7} {'others':>7}"]
    for s in summary:
        lines.append(f"{s['target']:<32} {s['mode']:<9} {s['events_per_s']:>10,} "
                     f"{'[' + format(s['events_per_s_min'], ',') + ' - ':>12}"
                     f"{format(s['events_per_s_max'], ',') + ']':>9} {s['events_per_cpu_s']:>9,} "
                     f"{s['p50_ms']:>8.2f} "
                     f"{s['p99_ms']:>8.2f} {s['peak_rss_mb']:>7.1f} {s['other_cpu_pct']:>6}%")
        if "rules_lag_max" in s:
            catch_up = s["rules_catch_up_s"]
            lines[-1] += (f"  rules lag <= {s['rules_lag_max']:,}, caught up "
                          + ("after >30 s" if catch_up is None else f"in <= {catch_up:g} s"))
    return lines


def append_results(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        runs = json.loads(RESULTS.read_text())
        if not isinstance(runs, list):
            runs = []
    except (OSError, ValueError):
        runs = []
    runs.append({**meta, "results": rows})
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(runs, indent=1) + "\n")
    tmp.replace(RESULTS)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "wrk": wrk.splitlines()[0] if wrk else "?"}


def source_version() -> str:
    """The commit measured, "+dirty" when src/ has uncommitted changes (others edit it live)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=ROOT, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, cwd=ROOT, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (head or "?") + ("+dirty" if dirty.strip() else "")


@dataclass(frozen=True)
class Before:
    """An earlier commit of auditsink, checked out beside this one (``--before REV``): its
    servers run with its own ``src/`` first on the path, so a change is measured against
    what it changed in the same rounds, not against a figure from another day."""

    rev: str
    path: Path

    @classmethod
    def check_out(cls, rev: str) -> Before:
        path = Path(tempfile.mkdtemp(prefix="auditsink-before-"))
        done = subprocess.run(["git", "worktree", "add", "--detach", str(path), rev],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            raise ValueError(f"--before {rev}: {done.stderr.strip()}")
        short = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                               text=True, cwd=path).stdout.strip()
        return cls(short or rev, path)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.path / "src")}

    def remove(self) -> None:
        subprocess.run(["git", "worktree", "remove", "--force", str(self.path)],
                       capture_output=True, cwd=ROOT)
        shutil.rmtree(self.path, ignore_errors=True)


Case = tuple[Target, Path | None, Before | None]


def cases(targets: list[Target], store_from: Path | None, before: Before | None = None,
          ) -> list[Case]:
    """Each target, and with ``store_from`` each SQLite target once more on a copy of it;
    with ``before``, each auditsink case once more from that checkout."""
    out: list[Case] = []
    for target in targets:
        sources = [None, before] if before is not None and target.needs_auditsink else [None]
        for source in sources:
            out.append((target, None, source))
            if store_from and target.store == "sqlite":
                out.append((target, store_from, source))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_http",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=sorted(TARGETS), action="append",
                        help="repeatable; default baseline")
    parser.add_argument("--mode", choices=sorted(MODES), action="append",
                        help="repeatable; default batch")
    parser.add_argument("--all", action="store_true",
                        help="baseline, blackhole and the auditsink targets (not *-norules), "
                             "batch and blocking")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up first")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--data-dir", type=Path,
                        default=DEFAULT_DATA_DIR,
                        help="where generated bodies are cached")
    parser.add_argument("--server-cpus", default="0", help="taskset list for the server")
    parser.add_argument("--driver-cpus", default="1", help="taskset list for wrk")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every (mode, target) this often, interleaved; medians shown")
    parser.add_argument("--no-save", action="store_true", help="do not append to latest.json")
    parser.add_argument("--postgres", metavar="URL",
                        default=os.environ.get("AUDITSINK_TEST_POSTGRES"),
                        help="PostgreSQL server for the *-postgres targets (a fresh database "
                             "each run; default $AUDITSINK_TEST_POSTGRES)")
    parser.add_argument("--store-from", type=Path, metavar="DB",
                        help="measure each SQLite target twice, into an empty store and into a "
                             "copy of DB (a store file, e.g. bench_query's 10M-event one; "
                             "row <target>+full)")
    parser.add_argument("--before", metavar="REV",
                        help="also run each auditsink target from the commit REV (a git "
                             "worktree), in the same rounds: row <target>@REV")
    args = parser.parse_args(argv)
    if args.duration > MAX_DURATION or args.warmup > MAX_DURATION:
        parser.error(f"--duration and --warmup are bounded to {MAX_DURATION:g} s")
    if not shutil.which("wrk"):
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    server_cpus = None if args.no_pin else args.server_cpus
    driver_cpus = None if args.no_pin else args.driver_cpus

    if args.all:
        targets = [t for t in TARGETS.values() if t.in_all]
        modes = [MODES["batch"], MODES["blocking"]]
    else:
        targets = [TARGETS[t] for t in (args.target or ["baseline"])]
        modes = [MODES[m] for m in (args.mode or ["batch"])]
    if args.store_from and not args.store_from.exists():
        parser.error(f"--store-from {args.store_from}: no such store file (build one with "
                     "python -m benchmarks.bench_query --events 10000000)")
    if any(t.needs_auditsink for t in targets) and not auditsink_serve_ready():
        print(f"skipping auditsink targets: {AUDITSINK} serve lacks --listen/--format/--store",
              file=sys.stderr)
        targets = [t for t in targets if not t.needs_auditsink]

    meta = {"run": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "argv": ["python", "-m", "benchmarks.run_http", *(argv or sys.argv[1:])],
            "machine": machine(), "auditsink_source": source_version()}
    try:
        before = Before.check_out(args.before) if args.before else None
    except ValueError as exc:
        parser.error(str(exc))
    print(HEADER, flush=True)
    rows = []
    try:
        # interleaved (all targets, then again) so that noise from the rest of the machine
        # spreads over every target instead of hitting one
        for _ in range(args.repeat):
            for mode in modes:
                for target, store_from, source in cases(targets, args.store_from, before):
                    try:
                        row = measure(target, mode, duration=args.duration,
                                      warmup=args.warmup, connections=args.connections,
                                      data_dir=args.data_dir, server_cpus=server_cpus,
                                      driver_cpus=driver_cpus, store_from=store_from,
                                      postgres=args.postgres, before=source)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print(f"{target.name:<32} {mode.name:<9} FAILED: {exc}", flush=True)
                        continue
                    row["auditsink_source"] = (source.rev if source is not None
                                               else source_version())
                    rows.append(row)
                    print(format_row(row), flush=True)
    finally:
        if before is not None:
            before.remove()
    summary = summarize(rows)
    if args.repeat > 1 and summary:
        print(f"\nmedian of {args.repeat} runs (events/s range in brackets):")
        for line in summary_lines(summary):
            print(line)
    meta["summary"] = summary
    if rows and not args.no_save:
        append_results(rows, meta)
        print(f"appended to {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
