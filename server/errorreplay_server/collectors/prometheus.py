"""Metrics around the error from Prometheus (`/api/v1/query_range`), with anomalies marked."""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from errorreplay_server.analysis.formatting import human_duration
from errorreplay_server.collectors.base import (
    CollectorFailure,
    CollectorResult,
    Window,
    WindowSpec,
    error_time,
    reports_failures,
)
from errorreplay_server.collectors.httpclient import make_client, request_json, shape_error
from errorreplay_server.collectors.promql import CPU, ERROR_RATE, MEMORY, PERCENT, MetricTemplate
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import (
    MICROS_PER_SECOND,
    AnomalyKind,
    CollectionState,
    ErrorSnapshot,
    MetricAnomaly,
    MetricBaseline,
    MetricPoint,
    MetricSeries,
    Micros,
)
from errorreplay_server.domain.quantities import limit_closeness, quantity

# MAD is 0 whenever over half the baseline equals its median (a series stepping 5, 6, 5, 4, 5),
# and then any wobble would pass it. The mean absolute deviation stands in, scaled to MAD's
# units for normal data (MAD ≈ 0.6745σ, mean AD ≈ 0.7979σ).
MEAN_AD_TO_MAD = 0.6745 / 0.7979
# A perfectly flat baseline has neither; the floor is this share of its median (and a tiny
# absolute amount for a baseline of zero).
MAD_FLOOR_RELATIVE = 0.01
MAD_FLOOR_ABSOLUTE = 1e-9
# MetricBaseline.source values.
BASELINE_FROM_LOOKBACK = "lookback"
BASELINE_FROM_WINDOW = "window"


@dataclass(slots=True, frozen=True)
class AnomalyRules:
    mad_k: float = 5.0
    min_baseline_points: int = 5
    lead: Micros = 60 * MICROS_PER_SECOND
    cpu_limit_percent: float = 90.0
    memory_limit_percent: float = 90.0
    error_rate_limit_percent: float = 5.0
    seasonal_margin: float = 0.2
    trend_min_points: int = 8
    trend_min_r2: float = 0.8
    trend_min_rise: float = 1.5

    @classmethod
    def from_settings(cls, settings: CollectorSettings) -> AnomalyRules:
        return cls(
            mad_k=settings.anomaly_mad_k,
            min_baseline_points=settings.anomaly_min_baseline_points,
            lead=round(settings.anomaly_lead_seconds * MICROS_PER_SECOND),
            cpu_limit_percent=settings.cpu_limit_percent,
            memory_limit_percent=settings.memory_limit_percent,
            error_rate_limit_percent=settings.error_rate_limit_percent,
            seasonal_margin=settings.anomaly_seasonal_margin,
            trend_min_points=settings.trend_min_points,
            trend_min_r2=settings.trend_min_r2,
            trend_min_rise=settings.trend_min_rise,
        )

    def fixed_limit(self, kind: str, unit: str) -> float | None:
        if unit != PERCENT:
            return None
        return {
            CPU: self.cpu_limit_percent,
            MEMORY: self.memory_limit_percent,
            ERROR_RATE: self.error_rate_limit_percent,
        }.get(kind)


@dataclass(slots=True, frozen=True)
class History:
    """A series' points from outside the window it is judged in: the lookback just before the
    window (`start` to `end`) and the same window `seasonal_offset` earlier."""

    lookback: Sequence[MetricPoint] = ()
    start: Micros = 0
    end: Micros = 0
    seasonal: Sequence[MetricPoint] = ()
    seasonal_offset: Micros = 0


NO_HISTORY = History()


def location_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Median and MAD (with the stand-ins and floors above) of a baseline."""
    median = statistics.median(values)
    deviations = [abs(v - median) for v in values]
    mad = statistics.median(deviations) or statistics.fmean(deviations) * MEAN_AD_TO_MAD
    return median, max(mad, abs(median) * MAD_FLOOR_RELATIVE, MAD_FLOOR_ABSOLUTE)


def choose_baseline(
    points: Sequence[MetricPoint], cut: Micros, history: History, rules: AnomalyRules
) -> MetricBaseline | None:
    """The lookback when it has enough points, else the window's own points before `cut`."""
    if len(history.lookback) >= rules.min_baseline_points:
        values = [p.value for p in history.lookback]
        source, start, end = BASELINE_FROM_LOOKBACK, history.start, history.end
    else:
        own = [p for p in points if p.time < cut]
        values = [p.value for p in own]
        source, start, end = BASELINE_FROM_WINDOW, own[0].time if own else cut, cut
    if len(values) < rules.min_baseline_points:
        return None
    median, spread = location_and_spread(values)
    baseline = MetricBaseline(median, spread, len(values), source, start, end)
    if len(history.seasonal) >= rules.min_baseline_points:
        baseline.seasonal_peak = max(p.value for p in history.seasonal)
        baseline.seasonal_offset_us = history.seasonal_offset
    return baseline


def baseline_threshold(baseline: MetricBaseline, rules: AnomalyRules) -> float:
    threshold = baseline.median + rules.mad_k * baseline.spread
    if baseline.seasonal_peak is not None:
        peak = baseline.seasonal_peak
        threshold = max(threshold, peak + rules.seasonal_margin * abs(peak))
    return threshold


@dataclass(slots=True, frozen=True)
class Line:
    """A least-squares line through points, over `start`..`end` (the first and last times)."""

    start: Micros
    end: Micros
    start_value: float
    end_value: float
    r2: float

    @property
    def slope(self) -> float:
        return self.end_value - self.start_value


def fit_line(points: Sequence[MetricPoint]) -> Line | None:
    """None for fewer than two points, one instant, or values that do not vary."""
    if len(points) < 2 or points[0].time == points[-1].time:
        return None
    t0 = points[0].time
    xs = [(p.time - t0) / MICROS_PER_SECOND for p in points]
    ys = [p.value for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return Line(t0, points[-1].time, intercept, intercept + slope * xs[-1], 1.0 - residual / syy)


def judge_series(
    kind: str,
    unit: str,
    points: Sequence[MetricPoint],
    at: Micros,
    rules: AnomalyRules,
    history: History = NO_HISTORY,
) -> tuple[list[MetricAnomaly], MetricBaseline | None]:
    """At most one anomaly per rule, and the baseline the series was judged against.

    Baseline rule: the first point from `at - lead` on above median + k × MAD of the baseline
    (and above the seasonal peak by the margin, when there is one). The baseline is the lookback
    before the window, else the window's own points before `at - lead`, so a service that always
    runs at 80% CPU is not flagged and one that jumps from 5% to 40% is. The anomaly's `since`
    is where the run of points above the threshold began.
    Trend rule: a least-squares line through the window's points up to `at` that fits (R²) and
    rises, whose last point is a multiple of its first and above the baseline threshold: a leak or a slow
    climb, which the baseline rule alone misses when the ramp fills the window.
    Fixed rule: a point from `at - lead` on above the kind's limit, for series in percent."""
    cut = at - rules.lead
    judged = [i for i, p in enumerate(points) if p.time >= cut]
    anomalies: list[MetricAnomaly] = []
    baseline = choose_baseline(points, cut, history, rules)
    if baseline is not None:
        threshold = baseline_threshold(baseline, rules)
        for i in judged:
            point = points[i]
            if point.value > threshold:
                onset = i
                while onset > 0 and points[onset - 1].value > threshold:
                    onset -= 1
                anomalies.append(
                    MetricAnomaly(
                        time=point.time,
                        value=point.value,
                        baseline=baseline.median,
                        threshold=threshold,
                        reason=_baseline_reason(kind, unit, point.value, baseline, threshold, rules),
                        kind=AnomalyKind.BASELINE,
                        since=points[onset].time,
                    )
                )
                break
        trend = _trend(kind, unit, [p for p in points if p.time <= at], threshold, rules)
        if trend is not None:
            anomalies.append(trend)
    limit = rules.fixed_limit(kind, unit)
    if limit is not None:
        for i in judged:
            point = points[i]
            if point.value > limit:
                onset = i
                while onset > 0 and points[onset - 1].value > limit:
                    onset -= 1
                anomalies.append(
                    MetricAnomaly(
                        time=point.time,
                        value=point.value,
                        baseline=baseline.median if baseline is not None else 0.0,
                        threshold=limit,
                        reason=f"{kind} {point.value:.4g}% above the fixed limit of {limit:g}%",
                        kind=AnomalyKind.LIMIT,
                        since=points[onset].time,
                    )
                )
                break
    return anomalies, baseline


def find_anomalies(
    kind: str, unit: str, points: Sequence[MetricPoint], at: Micros, rules: AnomalyRules
) -> list[MetricAnomaly]:
    """judge_series with no history: the window's own points are the baseline."""
    return judge_series(kind, unit, points, at, rules)[0]


def _baseline_reason(
    kind: str, unit: str, value: float, baseline: MetricBaseline, threshold: float, rules: AnomalyRules
) -> str:
    mad_threshold = baseline.median + rules.mad_k * baseline.spread
    reason = (
        f"{kind} {quantity(value, unit)} above its baseline: median {quantity(baseline.median, unit)} "
        f"+ {rules.mad_k:g} × MAD {quantity(baseline.spread, unit)} = {quantity(mad_threshold, unit)}"
    )
    if baseline.source == BASELINE_FROM_LOOKBACK:
        reason += f" over the {human_duration(baseline.end - baseline.start)} before the window"
    if threshold > mad_threshold and baseline.seasonal_peak is not None:
        reason += (
            f"; and above {quantity(threshold, unit)}, {rules.seasonal_margin:.0%} over its peak of "
            f"{quantity(baseline.seasonal_peak, unit)} {human_duration(baseline.seasonal_offset_us)} earlier"
        )
    return reason


def _trend(
    kind: str, unit: str, points: Sequence[MetricPoint], threshold: float, rules: AnomalyRules
) -> MetricAnomaly | None:
    """The line says whether the rise is sustained; the evidence quotes the measured first and
    last points, so a curve is not described by the line's extrapolated ends."""
    if len(points) < rules.trend_min_points:
        return None
    line = fit_line(points)
    if line is None or line.slope <= 0 or line.r2 < rules.trend_min_r2:
        return None
    first, last = points[0], points[-1]
    if first.value <= 0 or last.value <= threshold:
        return None
    rise = last.value / first.value
    if rise < rules.trend_min_rise:
        return None
    reason = (
        f"{kind} grew {rise:.1f}× in {human_duration(last.time - first.time)} "
        f"(from {quantity(first.value, unit, 3)} to {quantity(last.value, unit, 3)})"
        f"{limit_closeness(last.value, unit)}"
    )
    return MetricAnomaly(
        time=last.time,
        value=last.value,
        baseline=first.value,
        threshold=first.value * rules.trend_min_rise,
        reason=reason,
        kind=AnomalyKind.TREND,
        since=first.time,
    )


class PrometheusCollector:
    """One range query per metric template of the error's resource type, run concurrently."""

    name = "prometheus"

    def __init__(self, settings: CollectorSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.window_spec: WindowSpec = settings.windows.metrics
        self._settings = settings
        self._templates = settings.promql_templates
        self._rules = AnomalyRules.from_settings(settings)
        self._client = (
            make_client(settings.prometheus_url, timeout_seconds=settings.timeout_seconds, transport=transport)
            if settings.prometheus_url
            else None
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def selector(self, error: ErrorSnapshot) -> tuple[str, str] | None:
        """(label, value) that picks the error's resource: its resource_id, else its service."""
        report = error.report
        if report.resource_id:
            return self._templates.resource_label, report.resource_id
        if report.service:
            return self._templates.service_label, report.service
        return None

    def queries(self, error: ErrorSnapshot) -> list[tuple[MetricTemplate, str]]:
        chosen = self.selector(error)
        if chosen is None:
            return []
        label, value = chosen
        templates = self._templates.for_resource_type(error.report.resource_type)
        return [(t, self._templates.render(t, label, value)) for t in templates]

    def step_seconds(self, window: Window) -> float:
        span = (window.end - window.start) / MICROS_PER_SECOND
        return max(self._settings.prometheus_step_seconds, math.ceil(span / self._settings.prometheus_max_points))

    def history_ranges(self, window: Window) -> tuple[Window | None, Window | None, float]:
        """The lookback before the window and the window a season earlier (None when off), and
        the step both are queried at."""
        s = self._settings
        lookback = round(s.metrics_baseline_lookback_seconds * MICROS_PER_SECOND)
        offset = round(s.metrics_seasonal_offset_seconds * MICROS_PER_SECOND)
        before = Window(window.start - lookback, window.start) if lookback > 0 else None
        seasonal = Window(window.start - offset, window.end - offset) if offset > 0 else None
        longest = max(lookback, window.end - window.start if offset > 0 else 0) / MICROS_PER_SECOND
        step = max(s.metrics_baseline_step_seconds, math.ceil(longest / s.prometheus_max_points))
        return before, seasonal, step

    @reports_failures
    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        if self._client is None:
            return CollectorResult.skipped("ERRORREPLAY_PROMETHEUS_URL not set")
        queries = self.queries(error)
        if not queries:
            return CollectorResult.skipped("error has no resource_id or service to select metrics by")
        outcomes = await asyncio.gather(
            *(self._series_of(template, query, window, error_time(error)) for template, query in queries),
            return_exceptions=True,
        )
        series: list[MetricSeries] = []
        failures: list[str] = []
        notes: list[str] = []
        for (template, _), outcome in zip(queries, outcomes, strict=True):
            if isinstance(outcome, CollectorFailure):
                failures.append(f"{template.kind}: {outcome}")
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                series.extend(outcome[0])
                notes.extend(f"{template.kind} {note}" for note in outcome[1])
        for s in series:
            s.resource_id = error.report.resource_id
        if series:
            parts = [f"{len(failures)} of {len(queries)} queries failed: {failures[0]}"] if failures else []
            if notes:
                parts.append(
                    f"{len(notes)} history queries failed, the window's own points are the baseline: {notes[0]}"
                )
            return CollectorResult(CollectionState.OK, "; ".join(parts), metrics=series)
        if failures:
            if len(failures) == len(queries):
                return CollectorResult.failed(str(outcomes[0]))
            return CollectorResult.failed(f"{len(failures)} of {len(queries)} queries failed: {failures[0]}")
        return CollectorResult.empty("no series matched")

    async def _series_of(
        self, template: MetricTemplate, query: str, window: Window, at: Micros
    ) -> tuple[list[MetricSeries], list[str]]:
        """The window's series, each judged against its own history. The history queries (the
        lookback and the seasonal window, concurrently) run only when the window has series, so
        a metric the resource does not have costs one query; only the window's failure fails
        the template (without history a series falls back to its own points)."""
        current = await self._range(query, window, self.step_seconds(window))
        if not current:
            return [], []
        before, seasonal, history_step = self.history_ranges(window)
        ranges = [r for r in (before, seasonal) if r is not None]
        results = await asyncio.gather(*(self._range(query, r, history_step) for r in ranges), return_exceptions=True)
        notes: list[str] = []
        histories: list[dict[tuple[tuple[str, str], ...], list[MetricPoint]]] = []
        for r, result in zip(ranges, results, strict=True):
            if isinstance(result, CollectorFailure):
                notes.append(f"{'lookback' if r is before else 'seasonal'}: {result}")
                histories.append({})
            elif isinstance(result, BaseException):
                raise result
            else:
                # A backend may answer with more than was asked: keep the range's own points.
                histories.append({key: [p for p in pts if r.start <= p.time < r.end] for key, pts in result.items()})
        lookback = histories.pop(0) if before is not None else {}
        season = histories.pop(0) if seasonal is not None else {}
        offset = window.start - seasonal.start if seasonal is not None else 0
        series = []
        for key, points in current.items():
            history = History(
                lookback=lookback.get(key, ()),
                start=before.start if before is not None else 0,
                end=before.end if before is not None else 0,
                seasonal=season.get(key, ()),
                seasonal_offset=offset,
            )
            anomalies, baseline = judge_series(template.kind, template.unit, points, at, self._rules, history)
            series.append(
                MetricSeries(
                    name=template.kind,
                    query=query,
                    labels=dict(key),
                    points=points,
                    anomalies=anomalies,
                    unit=template.unit,
                    baseline=baseline,
                )
            )
        return series, notes

    async def _range(
        self, query: str, window: Window, step: float
    ) -> dict[tuple[tuple[str, str], ...], list[MetricPoint]]:
        """One range query: points per series, keyed by its sorted labels, in answer order."""
        assert self._client is not None
        body = await request_json(
            self._client,
            "GET",
            "/api/v1/query_range",
            params={
                "query": query,
                "start": _seconds(window.start),
                "end": _seconds(window.end),
                "step": f"{step:g}",
            },
        )
        try:
            return self._parse(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise shape_error(exc) from None

    def _parse(self, body: Any) -> dict[tuple[tuple[str, str], ...], list[MetricPoint]]:
        if body.get("status") != "success":
            raise CollectorFailure(f"{body.get('errorType', 'error')}: {body.get('error', '')}"[:200])
        data = body["data"]
        if data["resultType"] != "matrix":
            raise CollectorFailure(f"expected a matrix, got {data['resultType']}")
        series: dict[tuple[tuple[str, str], ...], list[MetricPoint]] = {}
        for result in data["result"][: self._settings.prometheus_max_series]:
            points = []
            for stamp, raw in result["values"]:
                value = float(raw)
                if math.isfinite(value):  # NaN and ±Inf (e.g. a 0/0 error rate) carry nothing
                    points.append(MetricPoint(round(float(stamp) * MICROS_PER_SECOND), value))
            labels = {str(k): str(v) for k, v in result.get("metric", {}).items()}
            series[tuple(sorted(labels.items()))] = points
        return series


def _seconds(at: Micros) -> str:
    whole, micros = divmod(at, MICROS_PER_SECOND)
    return f"{whole}.{micros:06d}"
