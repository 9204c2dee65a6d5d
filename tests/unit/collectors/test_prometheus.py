from __future__ import annotations

from typing import Any

import httpx
import pytest

from errorreplay_server.collectors.base import CollectorResult, Window
from errorreplay_server.collectors.prometheus import (
    AnomalyRules,
    History,
    PrometheusCollector,
    find_anomalies,
    judge_series,
)
from errorreplay_server.collectors.promql import CPU, ERROR_RATE, MEMORY, PERCENT, PromQLTemplates
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import MICROS_PER_SECOND, AnomalyKind, CollectionState, MetricPoint
from tests.unit.collectors.conftest import AT, HOSTILE, Backend, json_reply, snapshot, text_reply, timeout_reply

S = MICROS_PER_SECOND
# HOSTILE as a PromQL string literal, written out by hand.
HOSTILE_LITERAL = r'''"api\"}|'\\\n{x=\"1\"} or vector(1)"'''


def settings(**overrides: Any) -> CollectorSettings:
    return CollectorSettings(prometheus_url="http://prometheus:9090", **overrides)


def window() -> Window:
    return CollectorSettings().windows.metrics.around(AT)


def matrix(*series: tuple[dict[str, str], list[tuple[float, str]]]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": labels, "values": [[t, v] for t, v in values]} for labels, values in series],
        },
    }


def cpu_values() -> list[tuple[float, str]]:
    """20-22% for 14 minutes, then 97% from the error on."""
    values = []
    for i in range(81):
        t = (AT - 900 * S + i * 15 * S) / S
        values.append((t, "97" if t >= AT / S else str(20 + i % 3)))
    return values


def by_query(request: httpx.Request) -> httpx.Response:
    query = request.url.params["query"]
    if "process_cpu_seconds_total" in query:
        return httpx.Response(200, json=matrix(({"resource_id": "api"}, cpu_values())))
    if "http_requests_total" in query and "5.." not in query:
        # A division by zero gives NaN; such points carry nothing and are dropped.
        return httpx.Response(200, json=matrix(({"resource_id": "api"}, [(AT / S, "NaN"), (AT / S + 15, "3")])))
    return httpx.Response(200, json=matrix())


async def collect(backend: Backend, s: CollectorSettings | None = None, **fields: Any) -> CollectorResult:
    collector = PrometheusCollector(s or settings(), backend.transport())
    try:
        fields.setdefault("resource_id", "api")
        return await collector.collect(snapshot(**fields), window())
    finally:
        await collector.aclose()


async def test_exact_queries_for_a_hostile_resource_id() -> None:
    backend = Backend(json_reply(matrix()))
    result = await collect(backend, resource_id=HOSTILE)
    assert result.state is CollectionState.EMPTY
    # No series in the window: no history queries either.
    assert [r.url.path for r in backend.requests] == ["/api/v1/query_range"] * 6
    queries = {r.url.params["query"] for r in backend.requests}
    selector = "resource_id=" + HOSTILE_LITERAL
    assert queries == {
        f"100 * sum by (resource_id) (rate(process_cpu_seconds_total{{{selector}}}[5m]))",
        f"sum by (resource_id) (process_resident_memory_bytes{{{selector}}})",
        "histogram_quantile(0.95, sum by (resource_id, le) "
        f"(rate(http_request_duration_seconds_bucket{{{selector}}}[5m])))",
        "histogram_quantile(0.99, sum by (resource_id, le) "
        f"(rate(http_request_duration_seconds_bucket{{{selector}}}[5m])))",
        f"sum by (resource_id) (rate(http_requests_total{{{selector}}}[5m]))",
        f'100 * sum by (resource_id) (rate(http_requests_total{{{selector},code=~"5.."}}[5m])) '
        f"/ sum by (resource_id) (rate(http_requests_total{{{selector}}}[5m]))",
    }
    params = backend.requests[0].url.params
    # 15 minutes before to 5 minutes after, every 15 s.
    assert (params["start"], params["end"], params["step"]) == ("1699999100.000000", "1700000300.000000", "15")


async def test_series_with_points_get_their_history_queried_at_a_coarser_step() -> None:
    backend = Backend(by_query)
    await collect(backend)
    by_query_text: dict[str, list[tuple[str, str, str]]] = {}
    for r in backend.requests:
        p = r.url.params
        by_query_text.setdefault(p["query"], []).append((p["start"], p["end"], p["step"]))
    with_series = {q for q in by_query_text if "process_cpu" in q or ("http_requests_total" in q and "5.." not in q)}
    assert len(with_series) == 2
    for query, ranges in by_query_text.items():
        if query not in with_series:
            assert len(ranges) == 1  # an empty window: nothing more is asked
            continue
        assert sorted(ranges) == sorted(
            [
                # 15 minutes before to 5 minutes after, every 15 s.
                ("1699999100.000000", "1700000300.000000", "15"),
                # The baseline: the hour before that, every minute.
                ("1699995500.000000", "1699999100.000000", "60"),
                # The same window a day earlier, every minute.
                ("1699912700.000000", "1699913900.000000", "60"),
            ]
        )


async def test_service_is_the_fallback_selector() -> None:
    backend = Backend(json_reply(matrix()))
    await collect(backend, resource_id="", service='pay"ments')
    assert all('service="pay\\"ments"' in r.url.params["query"] for r in backend.requests)


async def test_series_come_back_with_a_baseline_anomaly() -> None:
    backend = Backend(by_query)
    result = await collect(backend)
    assert result.state is CollectionState.OK and result.detail == ""
    by_name = {s.name: s for s in result.metrics}
    assert set(by_name) == {"cpu", "request_rate"}
    cpu = by_name["cpu"]
    assert cpu.labels == {"resource_id": "api"} and cpu.resource_id == "api"
    assert cpu.unit == "percent_of_core" and len(cpu.points) == 81
    assert cpu.points[0] == MetricPoint(AT - 900 * S, 20.0)
    (anomaly,) = cpu.anomalies
    assert anomaly.time == AT and anomaly.value == 97.0 and anomaly.baseline == 21.0
    assert "above its baseline" in anomaly.reason
    assert by_name["request_rate"].points == [MetricPoint(AT + 15 * S, 3.0)]


async def test_empty_result_is_empty() -> None:
    assert (await collect(Backend(json_reply(matrix())))).state is CollectionState.EMPTY


async def test_http_500_fails() -> None:
    result = await collect(Backend(text_reply("upstream exploded", 500)))
    assert result.state is CollectionState.FAILED
    assert result.detail == "HTTP 500: upstream exploded"


async def test_timeout_fails() -> None:
    result = await collect(Backend(timeout_reply))
    assert (result.state, result.detail) == (CollectionState.FAILED, "timeout after 2.0s")


async def test_malformed_json_fails() -> None:
    result = await collect(Backend(text_reply("{not json")))
    assert (result.state, result.detail) == (CollectionState.FAILED, "malformed JSON in response")


async def test_unexpected_shape_fails() -> None:
    result = await collect(Backend(json_reply({"status": "success", "data": {"resultType": "vector", "result": []}})))
    assert result.state is CollectionState.FAILED and "expected a matrix" in result.detail
    result = await collect(Backend(json_reply(["not", "an", "object"])))
    assert result.state is CollectionState.FAILED and result.detail.startswith("unexpected response shape")


async def test_some_queries_failing_still_keeps_the_rest() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if "process_resident_memory_bytes" in request.url.params["query"]:
            return httpx.Response(503, text="overloaded")
        return by_query(request)

    result = await collect(Backend(reply))
    assert result.state is CollectionState.OK
    assert result.detail == "1 of 6 queries failed: memory: HTTP 503: overloaded"


async def test_not_configured_is_skipped_and_sends_nothing() -> None:
    backend = Backend(json_reply(matrix()))
    result = await collect(backend, CollectorSettings())
    assert result.state is CollectionState.SKIPPED and backend.requests == []
    result = await collect(backend, resource_id="", service="")
    assert result.state is CollectionState.SKIPPED and "resource_id or service" in result.detail


async def test_series_and_points_are_capped() -> None:
    many = [({"pod": str(i)}, [(AT / S, "1")]) for i in range(20)]
    result = await collect(Backend(json_reply(matrix(*many))), settings(prometheus_max_series=3))
    assert len(result.metrics) == 6 * 3
    step = PrometheusCollector(settings(prometheus_max_points=10), None).step_seconds(window())
    assert step == 120  # 20 minutes in at most 10 points


async def test_templates_per_resource_type_and_renamed_labels() -> None:
    templates = PromQLTemplates.from_mapping(
        {"labels": {"resource": "instance"}, "templates": {"kubernetes_pod": {"latency_p95": ""}}}
    )
    backend = Backend(json_reply(matrix()))
    await collect(backend, settings(promql_templates=templates), resource_type="Pod", resource_id="p-1")
    queries = {r.url.params["query"] for r in backend.requests}
    assert len(queries) == 5
    assert any('container_memory_working_set_bytes{instance="p-1",container!=""}' in q for q in queries)


# --- the anomaly rules -------------------------------------------------------------------


def series(values: list[float], at_index: int) -> tuple[list[MetricPoint], int]:
    points = [MetricPoint(i * 15 * S, v) for i, v in enumerate(values)]
    return points, at_index * 15 * S


RULES = AnomalyRules(mad_k=5.0, min_baseline_points=5, lead=0)


def test_baseline_is_the_series_own_past() -> None:
    # Always at 80%: high, but normal for this series.
    points, at = series([80, 81, 79, 80, 82, 80, 81, 80, 81], at_index=7)
    assert find_anomalies(CPU, "percent_of_core", points, at, RULES) == []
    # 5% -> 40%: low, but far outside this series' past.
    points, at = series([4, 6, 4, 6, 5, 4, 6, 40, 41], at_index=7)
    (anomaly,) = find_anomalies(CPU, "percent_of_core", points, at, RULES)
    assert (anomaly.time, anomaly.value, anomaly.baseline) == (at, 40, 5)
    # median 5, MAD 1, k 5
    assert anomaly.threshold == 10.0


def test_k_is_the_named_setting() -> None:
    points, at = series([4, 6, 4, 6, 5, 4, 6, 9], at_index=7)
    assert find_anomalies(CPU, "", points, at, RULES) == []  # 9 <= 5 + 5 * 1
    strict = AnomalyRules(mad_k=3.0, min_baseline_points=5, lead=0)
    assert [a.value for a in find_anomalies(CPU, "", points, at, strict)] == [9]


def test_mostly_equal_baseline_uses_the_mean_deviation() -> None:
    # Over half the points equal the median, so MAD is 0: a step to 6 must not count.
    points, at = series([5, 6, 5, 4, 5, 6, 5, 6, 9], at_index=7)
    anomalies = find_anomalies(CPU, "", points, at, RULES)
    assert [a.value for a in anomalies] == [9]
    # mean AD 3/7 in MAD units
    assert anomalies[0].threshold == pytest.approx(5 + 5 * (3 / 7) * 0.6745 / 0.7979)


def test_flat_baseline_has_a_floor() -> None:
    points, at = series([50, 50, 50, 50, 50, 50, 50.2, 60], at_index=6)
    # MAD 0 -> floor of 1% of the median: 50 + 5 * 0.5 = 52.5
    assert [a.value for a in find_anomalies(CPU, "", points, at, RULES)] == [60]


def test_too_short_a_baseline_judges_nothing() -> None:
    points, at = series([5, 5, 5, 90], at_index=3)
    assert find_anomalies(CPU, "", points, at, RULES) == []


def test_lead_judges_points_just_before_the_error() -> None:
    points, at = series([5, 6, 5, 4, 5, 6, 5, 40, 5], at_index=8)
    assert find_anomalies(CPU, "", points, at, RULES) == []
    lead = AnomalyRules(mad_k=5.0, min_baseline_points=5, lead=15 * S)
    assert [a.time for a in find_anomalies(CPU, "", points, at, lead)] == [7 * 15 * S]


@pytest.mark.parametrize(
    ("kind", "unit", "values", "expected"),
    [
        (CPU, PERCENT, [91.0], [91.0]),
        (CPU, PERCENT, [89.0], []),
        (MEMORY, PERCENT, [95.0], [95.0]),
        (ERROR_RATE, PERCENT, [4.0, 6.0], [6.0]),
        (CPU, "percent_of_core", [300.0], []),  # a share of one core is not a share of capacity
        ("latency_p99", "seconds", [1000.0], []),
    ],
)
def test_fixed_limits(kind: str, unit: str, values: list[float], expected: list[float]) -> None:
    points = [MetricPoint(i, v) for i, v in enumerate(values)]
    anomalies = find_anomalies(kind, unit, points, 0, RULES)
    assert [a.value for a in anomalies] == expected
    for anomaly in anomalies:
        assert "fixed limit" in anomaly.reason


def test_both_rules_can_fire_once_each() -> None:
    values = [10, 11, 10, 9, 10, 95, 96, 97]
    points, at = series([float(v) for v in values], at_index=5)
    anomalies = find_anomalies(CPU, PERCENT, points, at, RULES)
    assert [a.value for a in anomalies] == [95, 95]
    assert "baseline" in anomalies[0].reason and anomalies[0].threshold < 15
    assert "fixed limit" in anomalies[1].reason and anomalies[1].threshold == 90


# --- baselines from before the window, seasonality and trends (issue 23) ---------------------

MIN_US = 60 * S


def minutes(values: list[float], start_minute: int = 0) -> list[MetricPoint]:
    return [MetricPoint((start_minute + i) * MIN_US, v) for i, v in enumerate(values)]


def ramp_window(low: float, high: float, n: int = 16) -> list[MetricPoint]:
    """n points a minute apart from low to high; the error is at the last one."""
    return minutes([low + (high - low) * i / (n - 1) for i in range(n)])


def lookback(values: list[float]) -> History:
    return History(lookback=minutes(values, start_minute=-len(values)), start=-len(values) * MIN_US, end=0)


CALM = [100.0 + (i % 3) for i in range(60)]  # 100-102 for an hour: median 101, MAD 1 (floored to 1%)


def test_a_ramp_filling_the_window_is_missed_by_its_own_past_but_not_by_the_lookback() -> None:
    points = ramp_window(100, 500)
    at = points[-1].time
    assert find_anomalies(MEMORY, "bytes", points, at, RULES) == []  # the ramp is its own baseline
    anomalies, baseline = judge_series(MEMORY, "bytes", points, at, RULES, lookback(CALM))
    assert baseline is not None
    assert (baseline.source, baseline.median, baseline.spread, baseline.points) == ("lookback", 101, 1.01, 60)
    assert (baseline.start, baseline.end) == (-60 * MIN_US, 0)
    first, trend = anomalies
    assert first.kind == AnomalyKind.BASELINE and first.value == 500 and first.threshold == pytest.approx(106.05)
    assert first.since == 1 * MIN_US  # the run above 106.05 began at the second point (126.7)
    assert trend.kind == AnomalyKind.TREND
    assert trend.reason == "memory grew 5.0× in 15 min (from 100 B to 500 B)"
    assert (trend.since, trend.time, trend.baseline, trend.value) == (0, at, 100, 500)


def test_a_trend_needs_a_fit_a_rise_and_to_end_above_the_baseline() -> None:
    history = lookback(CALM)
    # Noise around a flat line: no fit.
    noisy = minutes([100 + (37 * i % 11) for i in range(16)])
    assert all(a.kind != AnomalyKind.TREND for a in judge_series(CPU, "", noisy, noisy[-1].time, RULES, history)[0])
    # A step is not a trend (R² of a line through a late step is about 0.5).
    step = minutes([100.0] * 12 + [400.0] * 4)
    kinds = [a.kind for a in judge_series(CPU, "", step, step[-1].time, RULES, history)[0]]
    assert kinds == [AnomalyKind.BASELINE]
    # A clean rise of only 1.3×: below the minimum rise.
    small = ramp_window(100, 130)
    assert all(a.kind != AnomalyKind.TREND for a in judge_series(CPU, "", small, small[-1].time, RULES, history)[0])
    # A clean 3× rise that stays under a high baseline (always busy at 400): not an anomaly.
    busy = lookback([400.0 + (i % 3) for i in range(60)])
    rise = ramp_window(100, 300)
    assert judge_series(CPU, "", rise, rise[-1].time, RULES, busy)[0] == []


def test_points_after_the_error_are_not_part_of_a_trend() -> None:
    points = minutes([100.0] * 16 + [200.0 + 100 * i for i in range(5)])
    anomalies, _ = judge_series(CPU, "", points, 15 * MIN_US, RULES, lookback(CALM))
    assert [a.kind for a in anomalies] == [AnomalyKind.BASELINE]
    assert anomalies[0].time == 16 * MIN_US  # judged after the error; the analysis drops it


def test_a_peak_seen_at_the_same_time_a_day_earlier_raises_the_threshold() -> None:
    points = ramp_window(100, 300)
    at = points[-1].time
    yesterday = [MetricPoint(i * MIN_US - 86_400 * S, 100 + 200 * i / 15) for i in range(16)]
    history = History(lookback(CALM).lookback, -60 * MIN_US, 0, yesterday, 86_400 * S)
    anomalies, baseline = judge_series(CPU, "", points, at, RULES, history)
    assert anomalies == []
    assert baseline is not None and baseline.seasonal_peak == 300 and baseline.seasonal_offset_us == 86_400 * S
    # Well above yesterday's peak (300 + 20% = 360): an anomaly, and the reason says why.
    higher = ramp_window(100, 450)
    anomalies, _ = judge_series(CPU, "", higher, at, RULES, history)
    assert [a.kind for a in anomalies] == [AnomalyKind.BASELINE, AnomalyKind.TREND]
    assert anomalies[0].threshold == 360
    assert "20% over its peak of 300 24 h earlier" in anomalies[0].reason


def test_a_rise_near_full_capacity_says_how_close_it_got() -> None:
    points = ramp_window(30, 96)
    (_, trend, limit) = judge_series(MEMORY, PERCENT, points, points[-1].time, RULES, lookback([30.0] * 60))[0]
    assert trend.reason == "memory grew 3.2× in 15 min (from 30% to 96%), 4 points below its limit (100%)"
    assert limit.kind == AnomalyKind.LIMIT and limit.since == points[-2].time  # 91.6% and on


async def test_history_queries_use_the_coarser_step_and_their_failure_keeps_the_window() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.params["step"] == "60":
            return httpx.Response(503, text="overloaded")
        return by_query(request)

    backend = Backend(reply)
    result = await collect(backend)
    assert result.state is CollectionState.OK
    assert result.detail.startswith("4 history queries failed, the window's own points are the baseline: ")
    cpu = next(s for s in result.metrics if s.name == "cpu")
    assert cpu.baseline is not None and cpu.baseline.source == "window"
    assert [a.value for a in cpu.anomalies] == [97.0]


async def test_history_is_matched_to_its_series_by_labels() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if "process_cpu_seconds_total" not in request.url.params["query"]:
            return httpx.Response(200, json=matrix())
        start, end = float(request.url.params["start"]), float(request.url.params["end"])
        if request.url.params["step"] == "60" and end <= (AT - 900 * S) / S and end - start == 3600:
            # The hour before: api at 60-62%, another pod at 1%.
            calm = [(start + 60 * i, str(60 + i % 3)) for i in range(60)]
            other = [(start + 60 * i, "1") for i in range(60)]
            return httpx.Response(200, json=matrix(({"pod": "b"}, other), ({"resource_id": "api"}, calm)))
        if request.url.params["step"] == "60":
            return httpx.Response(200, json=matrix())
        return by_query(request)

    result = await collect(Backend(reply))
    cpu = next(s for s in result.metrics if s.name == "cpu")
    assert cpu.baseline is not None and cpu.baseline.source == "lookback" and cpu.baseline.median == 61
    # 97% against 61 ± 1: still an anomaly; 20-22% in the window is not a trend.
    assert [(a.kind, a.value) for a in cpu.anomalies] == [(AnomalyKind.BASELINE, 97.0)]
