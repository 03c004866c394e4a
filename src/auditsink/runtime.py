"""Interpreter settings for the long-running ingest processes (``serve``, ``worker``)."""

from __future__ import annotations

import gc
import os
import sys


def tune_for_ingest() -> None:
    """Call once, after start-up and before taking traffic.

    - The event loop shares the GIL with the store writer and the consumers; by default a
      thread that wants it waits up to 5 ms. 1 ms took blocking-mode p99 from ~10.5 ms to
      ~7.5 ms with rules on, at no cost in batch throughput (benchmarks/README.md).
    - A 400-event batch allocates thousands of container objects, so the cyclic GC ran every
      few events and took 13 % of the CPU in batch mode (py-spy), re-scanning the start-up
      heap (compiled rules, policy, modules) at each full pass. Nothing per request forms
      cycles: freeze the start-up heap and collect far less often. With the event structs
      untracked (model.py): ~40 % more events/s with ``--format json``.
    """
    sys.setswitchinterval(0.001)
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def lower_priority(step: int) -> None:
    """Make the calling thread ``step`` nicer (``nice(2)``; on Linux it applies to one
    thread, and threads it starts afterwards inherit it), so that the kernel gives a core to
    the processes it waits for first.

    ``serve --receivers`` (issue 16) runs the writer, the receivers and the rules on two
    cores, and the writer is the one stage that cannot be spread: with equal priorities it
    waited for a core a third of the time while the machine was a fifth idle, the receivers
    and the rules having taken its core (benchmarks/README.md, "Priorities"). Failing to
    change it (a seccomp profile, say) only costs that speed, so it is not an error.
    """
    try:
        os.nice(step)
    except OSError:
        pass
