"""The process's Prometheus metrics, exposed by prometheus-client from one registry.

One :class:`Metrics` per process (the pipeline's): the receiver counts requests and auth
failures into it, the pipeline counts events, and service.py registers the gauges; the worker's
metrics (bus/metrics.py) are its own process's one registry.

The hot path stays a dict increment per event (``events[(cluster, verb, level, stage)] += 1``);
a collector hands those counts to prometheus-client when scraped, which writes the exposition
format (escaping included). Label values come only from fixed sets or validated names, so
nothing a sender writes becomes a label of its choosing (issue 17: every distinct
``Authorization`` scheme used to become a permanent label): verbs outside the Kubernetes set
count as ``other``, auth methods are one of :data:`AUTH_METHODS`, clusters are validated names
(receive/auth.py ``CLUSTER_NAME``) and at most :data:`MAX_CLUSTER_LABELS` of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# One process, one registry: the ``*_created`` series prometheus-client adds by default would
# double every counter for nothing a dashboard reads.
prometheus_client.disable_created_metrics()

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0)
# The verbs kube-apiserver audits: resource verbs, and lowercase HTTP methods for non-resource
# URLs (k8s.io/apiserver pkg/endpoints/request RequestInfoFactory).
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
         "post", "put", "head", "options", "connect", "proxy")
VERB_LABELS = {verb: verb for verb in VERBS}
OTHER = "other"
AUTH_METHODS = ("none", "bearer", "basic", OTHER)
MAX_CLUSTER_LABELS = 256
OTHER_CLUSTERS = "_other"


def auth_method(authorization: bytes | None) -> str:
    """The label for a rejected request's credential: a fixed word, never the header itself.

    >>> auth_method(b"Bearer\\tsecret"), auth_method(b"NTLM TlRMTVNTUA=="), auth_method(None)
    ('other', 'other', 'none')
    """
    if not authorization:
        return "none"
    scheme = authorization.split(b" ", 1)[0].lower()
    return {b"bearer": "bearer", b"basic": "basic"}.get(scheme, OTHER)


class Metrics:
    """The counters, the latency histogram and the gauges read when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.events = Counter[tuple[str, str, str, str]]()  # cluster, verb, level, stage
        self.requests = Counter[tuple[int]]()
        self.bytes = 0
        self.bad_items = 0
        self.duplicates = 0
        self.dropped_by_policy = 0
        self.auth_failures = Counter[tuple[str]]()
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self._clusters: set[str] = set()
        self.latency = Histogram("auditsink_request_duration_seconds", "Ingest request latency.",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_Counts(self))

    def observe_latency(self, seconds: float) -> None:
        """Add one request's latency to the histogram."""
        self.latency.observe(seconds)

    def cluster_label(self, cluster: str) -> str:
        """``cluster`` as a label value: the first :data:`MAX_CLUSTER_LABELS` names, then
        ``_other``, so that many clusters cannot grow the counters without bound."""
        if cluster in self._clusters:
            return cluster
        if len(self._clusters) >= MAX_CLUSTER_LABELS:
            return OTHER_CLUSTERS
        self._clusters.add(cluster)
        return cluster

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value is read when scraped (queue depth, store size)."""
        self.gauges[name] = (help_text, read)

    def register(self, collector: Any) -> None:
        """Add a prometheus-client collector (the outputs') to the process's one registry."""
        self.registry.register(collector)

    def render(self) -> bytes:
        """The Prometheus text exposition format, written by prometheus-client."""
        return generate_latest(self.registry)


class _Counts:
    """A prometheus-client collector over the plain counters :class:`Metrics` updates."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield _labelled("auditsink_events_received_total",
                        "Audit events accepted, by cluster, verb, level and stage.",
                        ("cluster", "verb", "level", "stage"), m.events)
        yield _labelled("auditsink_http_requests_total", "Ingest requests by HTTP status code.",
                        ("code",), m.requests)
        yield _labelled("auditsink_auth_failures_total",
                        "Ingest requests rejected by authentication, by method tried.",
                        ("method",), m.auth_failures)
        for name, help_text, value in (
            ("auditsink_received_bytes_total", "Request body bytes received (before gunzip).",
             m.bytes),
            ("auditsink_bad_items_total", "Items that could not be decoded (kept as rejected).",
             m.bad_items),
            ("auditsink_duplicate_events_total", "Retried events already stored.", m.duplicates),
            ("auditsink_policy_dropped_events_total",
             "Events dropped by the server-side policy or --match.", m.dropped_by_policy),
        ):
            yield CounterMetricFamily(name, help_text, value=value)
        for name, (help_text, read) in sorted(m.gauges.items()):
            yield GaugeMetricFamily(name, help_text, value=read())


def _labelled(name: str, help_text: str, labels: tuple[str, ...],
              counts: (Counter[tuple[str, str, str, str]] | Counter[tuple[int]]
                       | Counter[tuple[str]]),
              ) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=labels)
    for key, value in sorted(counts.items()):
        family.add_metric([str(part) for part in key], value)
    return family
