"""Interpreter settings for the long-running ingest processes (``serve``, ``worker``)."""

from __future__ import annotations

import gc
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
