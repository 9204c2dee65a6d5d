"""Builds every collector from the settings; one HTTP client per backend lives inside each."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import httpx

from errorreplay_server.collectors.azure import AzureLogAnalyticsCollector
from errorreplay_server.collectors.base import Collector
from errorreplay_server.collectors.changes import ChangesCollector
from errorreplay_server.collectors.elasticsearch import ElasticsearchCollector
from errorreplay_server.collectors.loki import LokiCollector
from errorreplay_server.collectors.prometheus import PrometheusCollector
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.collectors.tempo import TempoCollector
from errorreplay_server.collectors.topology import TopologyCollector
from errorreplay_server.store.base import Store


def build_collectors(
    settings: CollectorSettings,
    store: Store,
    *,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> list[Collector]:
    """Every collector, configured or not: an unconfigured backend reports SKIPPED, so the
    context always says why a source is missing. `transports` (by collector name) replaces the
    network in tests.

    There is no related-errors collector: related links are computed when an error is read
    (DataPlane.related, docs/ARCHITECTURE.md §4), so they stay symmetric and see later errors."""
    t = transports or {}
    return [
        PrometheusCollector(settings, t.get(PrometheusCollector.name)),
        LokiCollector(settings, t.get(LokiCollector.name)),
        TempoCollector(settings, t.get(TempoCollector.name)),
        ElasticsearchCollector(settings, t.get(ElasticsearchCollector.name)),
        AzureLogAnalyticsCollector(settings, t.get(AzureLogAnalyticsCollector.name)),
        TopologyCollector(store, settings),
        ChangesCollector(store, settings),
    ]


async def close_collectors(collectors: Sequence[Collector]) -> None:
    """Close every collector's HTTP client; the store is left to its owner."""
    await asyncio.gather(*(c.aclose() for c in collectors), return_exceptions=True)
