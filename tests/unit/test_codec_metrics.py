"""The frozen metric context: the baseline summary and anomaly kinds survive JSON, and contexts
stored before they existed still decode (to the same verdict)."""

from __future__ import annotations

import json

from errorreplay_server.domain.model import (
    AnomalyKind,
    ErrorContext,
    MetricAnomaly,
    MetricBaseline,
    MetricPoint,
    MetricSeries,
)
from errorreplay_server.domain.quantities import quantity
from errorreplay_server.store.codec import context_from_json, context_to_json


def test_baseline_and_anomaly_kinds_round_trip() -> None:
    series = MetricSeries(
        name="memory",
        points=[MetricPoint(1, 2.1e8), MetricPoint(2, 1.05e9)],
        anomalies=[MetricAnomaly(2, 1.05e9, 2.1e8, 3.15e8, "memory grew 5.0×", AnomalyKind.TREND, 1)],
        unit="bytes",
        resource_id="api",
        baseline=MetricBaseline(2.1e8, 2.3e6, 60, "lookback", -3600, 0, 2.5e8, 86_400),
    )
    no_season = MetricSeries(name="cpu", baseline=MetricBaseline(20, 0.2, 60, "window", 5, 9))
    ctx = ErrorContext(metrics=[series, no_season, MetricSeries(name="latency_p99")])
    assert context_from_json(context_to_json(ctx)) == ctx


def test_a_context_stored_before_baselines_still_decodes() -> None:
    old = json.dumps(
        {
            "metrics": [
                {
                    "name": "cpu",
                    "query": "q",
                    "labels": {"resource_id": "api"},
                    "points": [[1, 40.0], [2, 97.0]],
                    "anomalies": [[2, 97.0, 40.0, 60.0, "cpu 97 above its baseline"]],
                    "unit": "percent",
                    "resource_id": "api",
                }
            ]
        }
    )
    (series,) = context_from_json(old).metrics
    assert series.baseline is None
    (anomaly,) = series.anomalies
    assert anomaly == MetricAnomaly(2, 97.0, 40.0, 60.0, "cpu 97 above its baseline", "", 0)


def test_quantities_read_like_a_dashboard() -> None:
    assert quantity(210e6, "bytes", 3) == "210 MB"
    assert quantity(1.05e9, "bytes", 3) == "1.05 GB"
    assert quantity(512, "bytes") == "512 B"
    assert quantity(0.25, "seconds") == "0.25 s"
    assert quantity(70.5, "percent_of_core") == "70.5% of a core"
    assert quantity(97, "percent") == "97%"
    assert quantity(3, "requests/s") == "3 requests/s"
