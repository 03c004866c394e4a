"""Each output's metrics, per output name (vector's component spec: received, sent, errors,
dropped), in prometheus-client's exposition format.

A custom collector reads the forwarders' counters when scraped, so delivery pays nothing per
event for its metrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class ForwardCollector:
    """The metrics of a set of :class:`~auditsink.forward.delivery.Forwarder`."""

    def __init__(self, forwarders: Sequence[Any]) -> None:
        self.forwarders = list(forwarders)

    def collect(self) -> Iterator[Metric]:
        counters = (
            ("auditsink_output_delivered_events", "Events the output's destination took.",
             "delivered"),
            ("auditsink_output_failed_attempts",
             "Delivery attempts that failed (each is retried).", "failed"),
            ("auditsink_output_retried_batches", "Batches that needed more than one attempt.",
             "retried"),
            ("auditsink_output_dead_letter_events",
             "Events given up on after max_attempts (dead letters).", "dead"),
            ("auditsink_output_rejected_events",
             "Events the destination refused for good (per-item errors).", "rejected"),
            ("auditsink_output_filtered_events",
             "Events the output's filter or policy left out.", "filtered"),
        )
        for name, help_text, attr in counters:
            family = CounterMetricFamily(name, help_text, labels=["output"])
            for forwarder in self.forwarders:
                family.add_metric([forwarder.config.name], getattr(forwarder.stats, attr))
            yield family
        gauges = (
            ("auditsink_output_lag_events", "Committed events not yet delivered by the output.",
             lambda f: f.lag()),
            ("auditsink_output_lag_seconds",
             "Seconds since the output was last caught up (0 while it is).",
             lambda f: f.lag_seconds()),
            ("auditsink_output_active",
             "Whether this process runs the output (1) or another replica does (0).",
             lambda f: int(f.loop.active)),
        )
        for name, help_text, read in gauges:
            gauge = GaugeMetricFamily(name, help_text, labels=["output"])
            for forwarder in self.forwarders:
                gauge.add_metric([forwarder.config.name], read(forwarder))
            yield gauge


def render(forwarders: Sequence[Any]) -> bytes:
    """The exposition text of these outputs' metrics (empty without outputs)."""
    if not forwarders:
        return b""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ForwardCollector(forwarders))
    return generate_latest(registry)
