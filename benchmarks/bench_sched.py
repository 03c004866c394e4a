"""Where each thread of ``serve --receivers`` spends a run under load: on a core, or waiting.

    flock /tmp/auditsink-bench.lock python -m benchmarks.bench_sched
    flock /tmp/auditsink-bench.lock python -m benchmarks.bench_sched --renice 0   # equal

Starts ``auditsink serve --receivers 0`` (or ``--receivers N``) on a fresh SQLite file, warms
it up, loads it with wrk (run_http's batch bodies, or its one-event ones with ``--mode
blocking``; generated on first use) and reads ``/proc/<pid>/task/<tid>/schedstat`` of every
thread of the process tree over the middle of the run: the share of the wall time each spent
running and waiting on a run queue, and the machine's idle time. A stage that
waits for a core while the machine is idle is a scheduling problem, not a CPU one (the
"Priorities" section of benchmarks/README.md). ``--renice N`` sets every child's nice value
to N after start (``--renice 0`` undoes the server's own priorities, for a comparison).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.run_http import AUDITSINK, MODES, ensure_data, run_wrk, wait_ready

Sample = tuple[float, dict[tuple[int, int, str], tuple[int, int]], list[int]]


def snapshot(pids: list[int]) -> Sample:
    """(monotonic time, {(pid, tid, comm): (ns running, ns waiting)}, /proc/stat cpu line).
    Python does not name its threads for the kernel: they are told apart by tid."""
    threads: dict[tuple[int, int, str], tuple[int, int]] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                running, waiting, _ = (task / "schedstat").read_text().split()
                name = (task / "comm").read_text().strip()
            except (OSError, ValueError):
                continue  # the thread ended meanwhile
            threads[(pid, int(task.name), name)] = (int(running), int(waiting))
    cpu = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return time.monotonic(), threads, cpu


def report(first: Sample, last: Sample, names: dict[int, str]) -> None:
    wall = last[0] - first[0]
    per_process: dict[int, list[float]] = {}
    for key, (running, waiting) in last[1].items():
        if key not in first[1]:
            continue
        ran = (running - first[1][key][0]) / 1e9 / wall * 100
        waited = (waiting - first[1][key][1]) / 1e9 / wall * 100
        total = per_process.setdefault(key[0], [0.0, 0.0])
        total[0] += ran
        total[1] += waited
        if ran >= 2:
            try:
                nice = str(os.getpriority(os.PRIO_PROCESS, key[1]))
            except OSError:
                nice = "-"  # the thread ended
            print(f"  {names[key[0]]:9} thread {key[1]:<8} nice {nice:>3}"
                  f"  ran {ran:4.0f} %  waited for a core {waited:4.0f} %")
    for pid, (ran, waited) in per_process.items():
        print(f"{names[pid]:9} ran {ran:4.0f} %  waited for a core {waited:4.0f} %")
    delta = [b - a for a, b in zip(first[2], last[2])]
    share = [200 * d / sum(delta) for d in delta]
    print(f"machine (of 200 %): user {share[0] + share[1]:.0f} %  system {share[2]:.0f} %"
          f"  idle {share[3]:.0f} %  iowait {share[4]:.0f} %  steal {share[7]:.0f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="batch",
                        help="run_http's bodies: 400 events each, or one (blocking)")
    parser.add_argument("--receivers", type=int, default=0,
                        help="serve --receivers (0: one per core; 1: everything in one process)")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--renice", type=int, default=None,
                        help="set every child process's nice value to this after start")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "auditsink-bench-data")
    parser.add_argument("--port", type=int, default=18555)
    args = parser.parse_args()
    mode = MODES[args.mode]
    bodies = ensure_data(args.data_dir, mode, warm=False)
    warm = ensure_data(args.data_dir, mode, warm=True)
    tmp = Path(tempfile.mkdtemp(prefix="auditsink-bench-sched-"))
    url = f"http://127.0.0.1:{args.port}/"
    log = tmp / "server.stderr"
    server = subprocess.Popen(
        [AUDITSINK, "serve", "--listen", f"127.0.0.1:{args.port}", "--format", "none",
         "--store", f"sqlite:///{tmp}/sched.db", "--receivers", str(args.receivers)],
        stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        wait_ready(server, args.port, log)
        time.sleep(1)  # the rules process opens the store after the writer
        children = [int(c) for task in Path(f"/proc/{server.pid}/task").glob("*")
                    for c in (task / "children").read_text().split()]
        if args.renice is not None:
            for pid in children:
                for task in Path(f"/proc/{pid}/task").glob("*"):
                    os.setpriority(os.PRIO_PROCESS, int(task.name), args.renice)
        names = {server.pid: "writer", **{pid: f"child {i}" for i, pid in enumerate(children)}}
        run_wrk(url, warm, mode, args.connections, 2, None)
        samples: list[Sample] = []

        def sample_middle() -> None:  # from 2 s into the load until 2 s before its end
            time.sleep(2)
            samples.append(snapshot([server.pid, *children]))
            time.sleep(max(1.0, args.duration - 4))
            samples.append(snapshot([server.pid, *children]))

        sampler = threading.Thread(target=sample_middle)
        result, _, _ = run_wrk(url, bodies, mode, args.connections, args.duration, None,
                               on_start=sampler.start)
        sampler.join()
        seconds = result["duration_us"] / 1e6
        print(f"{result['requests'] * mode.events_per_body / seconds:,.0f} events/s, p50"
              f" {result['latency_us']['p50'] / 1000:.0f} ms, p99"
              f" {result['latency_us']['p99'] / 1000:.0f} ms, {result['non2xx']} not 200")
        report(samples[0], samples[1], names)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
