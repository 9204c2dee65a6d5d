"""Prometheus metrics about the server itself, served on ERRORREPLAY_METRICS_PORT.

RPC counts and latencies are recorded per call by the error-mapping interceptor. Everything
else is read from the components' own counters when Prometheus scrapes, so the hot paths pay
nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Capture latency sits in the low milliseconds; replays and statistics reach tens of ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "errorreplay_rpc_handled", "RPCs handled, by method and status code", ["method", "code"], registry=registry
        )
        self.latency = Histogram(
            "errorreplay_rpc_duration_seconds",
            "RPC duration until the handler returned (streams: their whole life)",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.handled.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)


class _CaptureCounts(Protocol):
    stored: int
    duplicates: int
    rejected: int


class _Hub(Protocol):
    published: int
    delivered: int

    @property
    def subscriber_count(self) -> int: ...


class _EnrichmentCounts(Protocol):
    queued: int
    completed: int
    overloaded: int
    store_failures: int
    resumed: int
    expired: int


class _Enrichment(Protocol):
    @property
    def counters(self) -> _EnrichmentCounts: ...

    @property
    def depth(self) -> int: ...


class StateCollector(Collector):
    """Reads the capture, streaming and enrichment counters at scrape time."""

    def __init__(self, captures: _CaptureCounts | None, hub: _Hub | None, enrichment: _Enrichment | None) -> None:
        """captures and hub None: the writer process of a multi-process server, whose workers
        count the captures they answer and serve the streams."""
        self._captures = captures
        self._hub = hub
        self._enrichment = enrichment

    def collect(self) -> Iterator[Metric]:
        if self._captures is not None:
            captures = CounterMetricFamily("errorreplay_captures", "Capture requests by outcome", labels=["outcome"])
            captures.add_metric(["stored"], self._captures.stored)
            captures.add_metric(["duplicate"], self._captures.duplicates)
            captures.add_metric(["rejected"], self._captures.rejected)
            yield captures
        if self._hub is not None:
            yield GaugeMetricFamily(
                "errorreplay_stream_subscribers", "Open SubscribeErrors streams", value=self._hub.subscriber_count
            )
            yield CounterMetricFamily(
                "errorreplay_stream_published", "Errors published to the hub", value=self._hub.published
            )
            yield CounterMetricFamily(
                "errorreplay_stream_delivered", "Messages queued for subscribers", value=self._hub.delivered
            )
        if self._enrichment is not None:
            yield GaugeMetricFamily(
                "errorreplay_enrichment_queue_depth", "Errors waiting for context", value=self._enrichment.depth
            )
            jobs = CounterMetricFamily("errorreplay_enrichment_jobs", "Enrichment jobs by outcome", labels=["outcome"])
            c = self._enrichment.counters
            jobs.add_metric(["queued"], c.queued)
            jobs.add_metric(["completed"], c.completed)
            jobs.add_metric(["overloaded"], c.overloaded)
            jobs.add_metric(["store_failed"], c.store_failures)
            jobs.add_metric(["resumed"], c.resumed)
            jobs.add_metric(["not_collected_before_restart"], c.expired)
            yield jobs
