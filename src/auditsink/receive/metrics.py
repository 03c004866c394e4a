"""Prometheus metrics in the text exposition format, without a client library.

Counters are plain dicts keyed by label tuples, cheap enough to update per event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(names: tuple[str, ...], values: tuple[object, ...]) -> str:
    if not names:
        return ""
    pairs = ",".join(
        f'{n}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for n, v in zip(names, values)
    )
    return "{" + pairs + "}"


class Metrics:
    """The receiver's counters, the latency histogram and gauges read at scrape time."""

    def __init__(self) -> None:
        self.events = Counter[tuple[str, str, str, str]]()  # cluster, verb, level, stage
        self.requests = Counter[tuple[int]]()
        self.bytes = 0
        self.bad_items = 0
        self.duplicates = 0
        self.dropped_by_policy = 0
        self.auth_failures = Counter[tuple[str]]()
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        # Families rendered elsewhere (prometheus-client collectors: the outputs' metrics).
        self.extra: list[Callable[[], bytes]] = []

    def observe_latency(self, seconds: float) -> None:
        """Add one request's latency to the histogram."""
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_counts[index] += 1
                break
        else:
            self.latency_counts[-1] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value is read when scraped (queue depth, store size)."""
        self.gauges[name] = (help_text, read)

    def render(self) -> bytes:
        """The text exposition format."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, labels: tuple[str, ...], data: dict) -> None:  # type: ignore[type-arg]
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for key, value in sorted(data.items()):
                out.append(f"{name}{_labels(labels, key)} {value}")

        family(
            "auditsink_events_received_total", "counter",
            "Audit events accepted, by cluster, verb, level and stage.",
            ("cluster", "verb", "level", "stage"), self.events,
        )
        family(
            "auditsink_http_requests_total", "counter", "Ingest requests by HTTP status code.",
            ("code",), self.requests,
        )
        family(
            "auditsink_auth_failures_total", "counter",
            "Ingest requests rejected by authentication, by method tried.",
            ("method",), self.auth_failures,
        )
        for name, help_text, value in (
            ("auditsink_received_bytes_total", "Request body bytes received (before gunzip).", self.bytes),
            ("auditsink_bad_items_total", "Items that could not be decoded (kept as rejected).", self.bad_items),
            ("auditsink_duplicate_events_total", "Retried events already stored.", self.duplicates),
            ("auditsink_policy_dropped_events_total", "Events dropped by the server-side policy or --match.", self.dropped_by_policy),
        ):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        name = "auditsink_request_duration_seconds"
        out += [f"# HELP {name} Ingest request latency.", f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, self.latency_counts):
            cumulative += count
            out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.latency_count}')
        out.append(f"{name}_sum {self.latency_sum:.6f}")
        out.append(f"{name}_count {self.latency_count}")
        for gname, (help_text, read) in sorted(self.gauges.items()):
            out += [f"# HELP {gname} {help_text}", f"# TYPE {gname} gauge", f"{gname} {read()}"]
        return ("\n".join(out) + "\n").encode() + b"".join(render() for render in self.extra)
