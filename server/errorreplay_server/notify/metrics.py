"""The notifier's Prometheus metrics, read from its counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from errorreplay_server.notify.notifier import NotifyCounters


class NotifyCollector(Collector):
    def __init__(self, counters: NotifyCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "errorreplay_notifications",
            "Notifications by rule, target and outcome: decided, sent, failed (an attempt),"
            " dead_letter, suppressed (quiet period), dropped (outbox writer behind)",
            labels=["rule", "target", "outcome"],
        )
        for (rule, target, outcome), n in sorted(self._counters.by_rule.items()):
            family.add_metric([rule, target, outcome], n)
        yield family
        outbox = GaugeMetricFamily(
            "errorreplay_notification_outbox", "Outbox messages by state (pending, sent, dead)", labels=["state"]
        )
        for state, n in self._counters.outbox.items():
            outbox.add_metric([state.value], n)
        yield outbox
