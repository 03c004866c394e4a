"""``blackhole``: takes every batch and keeps nothing; the baseline of the benchmarks, and a
way to measure what an output costs (``delay_seconds`` makes it a slow destination)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from auditsink.forward.base import Doc, Output, OutputConfig, Rejection


@dataclass
class BlackholeConfig(OutputConfig):
    """``delay_seconds``: how long each send takes (a slow destination)."""

    delay_seconds: float = 0.0


class BlackholeOutput(Output):
    """Counts what it is sent."""

    config_class = BlackholeConfig

    def __init__(self, config: BlackholeConfig) -> None:
        super().__init__(config)
        self.events = 0

    def render(self, docs: Sequence[Doc]) -> int:
        """Only the count."""
        return len(docs)

    def send(self, payload: int) -> Sequence[Rejection]:
        if self.config.delay_seconds:
            time.sleep(self.config.delay_seconds)
        self.events += payload
        return ()
