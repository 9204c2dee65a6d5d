"""Saturation against a real Prometheus holding hours of backfilled history (issue 23).

One Prometheus per module, backfilled with promtool from tests/integration/scenarios.py: three
hours before each scenario's error, and a day earlier for the daily peak. The collector is
tested directly, then every scenario is replayed over gRPC through a real server whose
enrichment queries that Prometheus.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.collectors.prometheus import BASELINE_FROM_LOOKBACK, PrometheusCollector
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import MICROS_PER_HOUR, MICROS_PER_SECOND, AnomalyKind, MetricSeries
from errorreplay_server.server import start_server
from tests.factories import new_error
from tests.grpc.conftest import Api, server_settings, serving
from tests.grpc.helpers import capture, ts
from tests.integration import scenarios as sc
from tests.integration.backfill import HAVE_PROMETHEUS, NEEDS_PROMETHEUS, STEP_SECONDS, backfilled_prometheus

pytestmark = pytest.mark.skipif(not HAVE_PROMETHEUS, reason=NEEDS_PROMETHEUS)

LEAK_EVIDENCE = "memory grew 5.0× in 15 min (from 210 MB to 1.05 GB)"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(Prometheus URL, the scenarios' error time in seconds): the error is 15 minutes ago, so
    its 5 minutes after are in the past too."""
    at = int(time.time()) // STEP_SECONDS * STEP_SECONDS - 15 * 60
    with backfilled_prometheus(sc.build(at), tmp_path_factory.mktemp("prometheus")) as url:
        yield url, at


def collector_settings(url: str, **overrides: object) -> CollectorSettings:
    return CollectorSettings(prometheus_url=url, timeout_seconds=10).model_copy(update=overrides)


async def collect(url: str, at: int, resource: str, resource_type: str = "", **overrides: object) -> list[MetricSeries]:
    s = collector_settings(url, **overrides)
    collector = PrometheusCollector(s)
    try:
        error = new_error(resource_id=resource, resource_type=resource_type, occurred_at=at * MICROS_PER_SECOND)
        result = await collector.collect(error.snapshot, s.windows.metrics.around(at * MICROS_PER_SECOND))
    finally:
        await collector.aclose()
    assert result.detail == "", result.detail
    return result.metrics


def only(series: list[MetricSeries], name: str) -> MetricSeries:
    (found,) = [s for s in series if s.name == name]
    return found


# --- the collector against the real query API ------------------------------------------------


async def test_a_leak_is_a_trend_judged_against_the_hour_before_the_window(history: tuple[str, int]) -> None:
    url, at = history
    memory = only(await collect(url, at, sc.LEAK), "memory")
    baseline = memory.baseline
    assert baseline is not None and baseline.source == BASELINE_FROM_LOOKBACK
    window_start = (at - 15 * 60) * MICROS_PER_SECOND
    assert (baseline.start, baseline.end) == (window_start - MICROS_PER_HOUR, window_start)
    assert baseline.points == 60  # one hour at the coarser 1 min step
    assert baseline.median == pytest.approx(210e6, rel=0.01)
    assert baseline.seasonal_peak is None  # nothing a day earlier for this resource
    by_kind = {a.kind: a for a in memory.anomalies}
    trend = by_kind[AnomalyKind.TREND]
    assert trend.reason == LEAK_EVIDENCE
    assert trend.since == window_start and trend.time == at * MICROS_PER_SECOND
    assert by_kind[AnomalyKind.BASELINE].value > 3 * baseline.median

    # The old baseline, the window's own earlier points, is the ramp itself and misses the leak.
    memory = only(await collect(url, at, sc.LEAK, metrics_baseline_lookback_seconds=0), "memory")
    assert memory.baseline is not None and memory.baseline.source == "window"
    assert [a for a in memory.anomalies if a.kind == AnomalyKind.BASELINE] == []


async def test_a_daily_peak_is_judged_against_the_same_window_a_day_earlier(history: tuple[str, int]) -> None:
    url, at = history
    cpu = only(await collect(url, at, sc.DAILY_PEAK), "cpu")
    assert cpu.baseline is not None and cpu.baseline.seasonal_peak == pytest.approx(70, rel=0.05)
    assert cpu.baseline.seasonal_offset_us == 24 * MICROS_PER_HOUR
    assert cpu.anomalies == []
    # Without the day-earlier query the same curve is an anomaly.
    cpu = only(await collect(url, at, sc.DAILY_PEAK, metrics_seasonal_offset_seconds=0), "cpu")
    assert {a.kind for a in cpu.anomalies} == {AnomalyKind.BASELINE, AnomalyKind.TREND}


async def test_a_host_near_all_of_its_cpu_says_how_close(history: tuple[str, int]) -> None:
    url, at = history
    cpu = only(await collect(url, at, sc.DB_HOST, "host"), "cpu")
    assert cpu.unit == "percent"
    limit = [a for a in cpu.anomalies if a.kind == AnomalyKind.LIMIT]
    assert limit and "above the fixed limit of 90%" in limit[0].reason


# --- replays over gRPC -----------------------------------------------------------------------


@pytest.fixture
async def api(history: tuple[str, int], tmp_path: Path) -> AsyncIterator[Api]:
    url, _ = history
    settings = server_settings(tmp_path, collectors=collector_settings(url))
    async with serving(await start_server(settings)) as api:
        yield api


async def replay_of(api: Api, at: int, resource: str, resource_type: str = "") -> rr.ReplayErrorResponse:
    reply = await capture(
        api, resource_id=resource, resource_type=resource_type, occurred_at=ts(at), wait_for_context=True
    )
    states = {s.collector: s.state for s in reply.error.context.statuses}
    assert states["prometheus"] == m.COLLECTION_STATE_OK, reply.error.context.statuses
    return await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=reply.error_id))


SATURATED = [
    # (resource, resource type, summary pattern, evidence pattern)
    (sc.LEAK, "", re.escape(f"Sustained rise on {sc.LEAK}: {LEAK_EVIDENCE}"), re.escape(LEAK_EVIDENCE)),
    (
        sc.POD_LEAK,
        "kubernetes_pod",
        rf"Sustained rise on {sc.POD_LEAK}: memory grew 3\.2× in 15 min \(from 30% to 95%\), "
        r"5 points below its limit \(100%\)",
        r"memory grew 3\.2× in 15 min",
    ),
    (
        sc.CPU_CLIMB,
        "",
        rf"Sustained rise on {sc.CPU_CLIMB}: cpu grew 3\.\d× in 15 min \(from 20% of a core to 7\d(\.\d)?% of a core\)",
        r"cpu grew 3\.\d× in 15 min",
    ),
    (
        sc.LATENCY_CREEP,
        "",
        rf"Sustained rise on {sc.LATENCY_CREEP}: latency_p9[59] grew \d\.\d× in 15 min \(from 0\.\d+ s to 2\.\d+ s\)",
        r"latency_p9[59] grew \d\.\d× in 15 min",
    ),
    # The same curve as the daily peak, but with no history a day earlier: a first-time peak.
    (
        sc.FIRST_PEAK,
        "",
        rf"Sustained rise on {sc.FIRST_PEAK}: cpu grew 3\.\d× in 15 min \(from 20% of a core to 70% of a core\)",
        r"cpu at \d+(\.\d+)?% of a core \(threshold 2\d(\.\d+)?% of a core\)",
    ),
    (
        sc.SPIKE_1M,
        "",
        rf"cpu on {sc.SPIKE_1M} reached 19(\.\d+)?% of a core against a baseline of 1[45](\.\d+)?% of a core, "
        r"above its threshold for 1 min before the error",
        r"cpu at 19(\.\d+)?% of a core \(threshold 15(\.\d+)?% of a core\)",
    ),
    (
        sc.SPIKE_5M,
        "",
        rf"cpu on {sc.SPIKE_5M} reached 8\d(\.\d+)?% of a core against a baseline of 1[45](\.\d+)?% of a core, "
        r"above its threshold for 5 min before the error",
        r"cpu at ",
    ),
    (
        sc.MEMORY_STEP,
        "",
        rf"memory on {sc.MEMORY_STEP} reached 900 MB against a baseline of 300(\.\d+)? MB, "
        r"above its threshold for 3 min before the error",
        r"memory at 900 MB \(threshold 315(\.\d+)? MB\)",
    ),
    (
        sc.P99_JUMP,
        "",
        rf"latency_p9[59] on {sc.P99_JUMP} reached 2\.\d+ s against a baseline of 0\.2\d* s, "
        r"above its threshold for 2 min before the error",
        r"latency_p9[59] at 2\.\d+ s \(threshold 0\.2\d* s\)",
    ),
    (
        sc.DB_HOST,
        "host",
        rf"cpu on {sc.DB_HOST} reached 6\d(\.\d+)?% against a baseline of 3[45](\.\d+)?%, "
        r"above its threshold for 3 min before the error; "
        r"its highest, \d\d(\.\d+)?%, was \d+(\.\d+)? points below its limit \(100%\)",
        r"cpu at 6\d(\.\d+)?% \(threshold 3\d(\.\d+)?%\)",
    ),
]


@pytest.mark.parametrize(("resource", "resource_type", "summary", "evidence"), SATURATED, ids=[s[0] for s in SATURATED])
async def test_saturation_names_the_resource_and_the_metric(
    api: Api, history: tuple[str, int], resource: str, resource_type: str, summary: str, evidence: str
) -> None:
    _, at = history
    out = await replay_of(api, at, resource, resource_type)
    cause = out.root_cause.primary_cause
    assert out.root_cause.category == m.ROOT_CAUSE_CATEGORY_SATURATION, cause.summary
    assert cause.resource_id == resource
    assert re.fullmatch(summary, cause.summary), cause.summary
    assert any(re.search(evidence, e.description) for e in cause.evidence), [e.description for e in cause.evidence]
    for e in cause.evidence:
        assert out.timeline[e.timeline_index].kind == m.TIMELINE_EVENT_KIND_METRIC_ANOMALY


CONTROLS = [sc.ALWAYS_BUSY, sc.NOISE, sc.FLAT, sc.SPIKE_AFTER, sc.DAILY_PEAK]


@pytest.mark.parametrize("resource", CONTROLS)
async def test_controls_stay_unknown(api: Api, history: tuple[str, int], resource: str) -> None:
    _, at = history
    out = await replay_of(api, at, resource)
    assert out.root_cause.category == m.ROOT_CAUSE_CATEGORY_UNKNOWN, out.root_cause.primary_cause.summary
    assert len(out.error.context.metrics) >= 1  # judged, not missing
    for series in out.error.context.metrics:
        assert series.baseline.source == "lookback" and series.baseline.points == 60
        if resource == sc.DAILY_PEAK:  # the API shows what the peak was judged against
            assert series.baseline.seasonal_offset.ToSeconds() == 86_400
            assert series.baseline.seasonal_peak == pytest.approx(70, rel=0.05)
        else:
            assert not series.baseline.HasField("seasonal_offset")


async def test_a_saturated_dependency_is_named_from_its_own_error(api: Api, history: tuple[str, int]) -> None:
    _, at = history
    await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(dependencies=[m.Dependency(dependent_id=sc.DB_CALLER, dependency_id=sc.DB_HOST)])
    )
    db = await replay_of(api, at, sc.DB_HOST, "host")
    caller = await capture(api, resource_id=sc.DB_CALLER, occurred_at=ts(at + 30), wait_for_context=True)
    out = await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=caller.error_id))
    assert out.root_cause.category == m.ROOT_CAUSE_CATEGORY_DEPENDENCY_FAILURE
    assert out.root_cause.primary_cause.resource_id == sc.DB_HOST
    assert db.root_cause.category == m.ROOT_CAUSE_CATEGORY_SATURATION
    assert db.root_cause.primary_cause.resource_id == sc.DB_HOST


async def test_the_verdict_is_frozen_with_the_baseline(history: tuple[str, int], tmp_path: Path) -> None:
    """The baseline summary is stored with the context: a server with no Prometheus at all
    replays the leak to the same verdict later."""
    url, at = history
    async with serving(await start_server(server_settings(tmp_path, collectors=collector_settings(url)))) as api:
        first = await replay_of(api, at, sc.LEAK)
        stored = await api.running.store.get_error(first.error.error_id)
    (shown,) = [s for s in first.error.context.metrics if s.name == "memory"]
    assert shown.baseline.median == pytest.approx(210e6, rel=0.01) and shown.baseline.source == "lookback"
    assert shown.baseline.start_time.ToSeconds() == at - 75 * 60 and shown.baseline.end_time.ToSeconds() == at - 15 * 60
    trend = next(a for a in shown.anomalies if a.kind == AnomalyKind.TREND)
    assert trend.reason == LEAK_EVIDENCE and trend.since.ToSeconds() == at - 15 * 60
    memory = only(stored.context.metrics, "memory")
    assert memory.baseline is not None and memory.baseline.source == BASELINE_FROM_LOOKBACK
    assert {a.kind for a in memory.anomalies} == {AnomalyKind.BASELINE, AnomalyKind.TREND}
    async with serving(await start_server(server_settings(tmp_path))) as api:
        again = await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=first.error.error_id))
    assert again.root_cause == first.root_cause
    assert LEAK_EVIDENCE in again.root_cause.primary_cause.summary
