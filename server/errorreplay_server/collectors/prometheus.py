"""Metrics around the error from Prometheus (`/api/v1/query_range`), with anomalies marked."""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

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
    CollectionState,
    ErrorSnapshot,
    MetricAnomaly,
    MetricPoint,
    MetricSeries,
    Micros,
)

# MAD is 0 whenever over half the baseline equals its median (a series stepping 5, 6, 5, 4, 5),
# and then any wobble would pass it. The mean absolute deviation stands in, scaled to MAD's
# units for normal data (MAD ≈ 0.6745σ, mean AD ≈ 0.7979σ).
MEAN_AD_TO_MAD = 0.6745 / 0.7979
# A perfectly flat baseline has neither; the floor is this share of its median (and a tiny
# absolute amount for a baseline of zero).
MAD_FLOOR_RELATIVE = 0.01
MAD_FLOOR_ABSOLUTE = 1e-9


@dataclass(slots=True, frozen=True)
class AnomalyRules:
    mad_k: float = 5.0
    min_baseline_points: int = 5
    lead: Micros = 60 * MICROS_PER_SECOND
    cpu_limit_percent: float = 90.0
    memory_limit_percent: float = 90.0
    error_rate_limit_percent: float = 5.0

    @classmethod
    def from_settings(cls, settings: CollectorSettings) -> AnomalyRules:
        return cls(
            mad_k=settings.anomaly_mad_k,
            min_baseline_points=settings.anomaly_min_baseline_points,
            lead=round(settings.anomaly_lead_seconds * MICROS_PER_SECOND),
            cpu_limit_percent=settings.cpu_limit_percent,
            memory_limit_percent=settings.memory_limit_percent,
            error_rate_limit_percent=settings.error_rate_limit_percent,
        )

    def fixed_limit(self, kind: str, unit: str) -> float | None:
        if unit != PERCENT:
            return None
        return {
            CPU: self.cpu_limit_percent,
            MEMORY: self.memory_limit_percent,
            ERROR_RATE: self.error_rate_limit_percent,
        }.get(kind)


def find_anomalies(
    kind: str, unit: str, points: Sequence[MetricPoint], at: Micros, rules: AnomalyRules
) -> list[MetricAnomaly]:
    """At most one anomaly per rule: the first point, from `at - lead` on, that breaks it.

    Baseline rule: value > median + k × MAD of the points before `at - lead` (the series' own
    past, so a service that always runs at 80% CPU is not flagged and one that jumps from 5%
    to 40% is). Fixed rule: value above the kind's limit, for series in percent."""
    cut = at - rules.lead
    baseline = [p.value for p in points if p.time < cut]
    judged = [p for p in points if p.time >= cut]
    anomalies: list[MetricAnomaly] = []
    median = statistics.median(baseline) if baseline else 0.0
    if len(baseline) >= rules.min_baseline_points:
        deviations = [abs(v - median) for v in baseline]
        mad = statistics.median(deviations) or statistics.fmean(deviations) * MEAN_AD_TO_MAD
        mad = max(mad, abs(median) * MAD_FLOOR_RELATIVE, MAD_FLOOR_ABSOLUTE)
        threshold = median + rules.mad_k * mad
        for point in judged:
            if point.value > threshold:
                anomalies.append(
                    MetricAnomaly(
                        time=point.time,
                        value=point.value,
                        baseline=median,
                        threshold=threshold,
                        reason=(
                            f"{kind} {point.value:.4g} above its baseline: median {median:.4g} "
                            f"+ {rules.mad_k:g} × MAD {mad:.4g} = {threshold:.4g}"
                        ),
                    )
                )
                break
    limit = rules.fixed_limit(kind, unit)
    if limit is not None:
        for point in judged:
            if point.value > limit:
                anomalies.append(
                    MetricAnomaly(
                        time=point.time,
                        value=point.value,
                        baseline=median,
                        threshold=limit,
                        reason=f"{kind} {point.value:.4g}% above the fixed limit of {limit:g}%",
                    )
                )
                break
    return anomalies


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

    @reports_failures
    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        if self._client is None:
            return CollectorResult.skipped("PROMETHEUS_URL not set")
        queries = self.queries(error)
        if not queries:
            return CollectorResult.skipped("error has no resource_id or service to select metrics by")
        step = self.step_seconds(window)
        outcomes = await asyncio.gather(
            *(self._query(template, query, window, step, error_time(error)) for template, query in queries),
            return_exceptions=True,
        )
        series: list[MetricSeries] = []
        failures: list[str] = []
        for (template, _), outcome in zip(queries, outcomes, strict=True):
            if isinstance(outcome, CollectorFailure):
                failures.append(f"{template.kind}: {outcome}")
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                series.extend(outcome)
        for s in series:
            s.resource_id = error.report.resource_id
        if series:
            detail = f"{len(failures)} of {len(queries)} queries failed: {failures[0]}" if failures else ""
            return CollectorResult(CollectionState.OK, detail, metrics=series)
        if failures:
            if len(failures) == len(queries):
                return CollectorResult.failed(str(outcomes[0]))
            return CollectorResult.failed(f"{len(failures)} of {len(queries)} queries failed: {failures[0]}")
        return CollectorResult.empty("no series matched")

    async def _query(
        self, template: MetricTemplate, query: str, window: Window, step: float, at: Micros
    ) -> list[MetricSeries]:
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
            return self._parse(template, query, body, at)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise shape_error(exc) from None

    def _parse(self, template: MetricTemplate, query: str, body: Any, at: Micros) -> list[MetricSeries]:
        if body.get("status") != "success":
            raise CollectorFailure(f"{body.get('errorType', 'error')}: {body.get('error', '')}"[:200])
        data = body["data"]
        if data["resultType"] != "matrix":
            raise CollectorFailure(f"expected a matrix, got {data['resultType']}")
        series = []
        for result in data["result"][: self._settings.prometheus_max_series]:
            points = []
            for stamp, raw in result["values"]:
                value = float(raw)
                if math.isfinite(value):  # NaN and ±Inf (e.g. a 0/0 error rate) carry nothing
                    points.append(MetricPoint(round(float(stamp) * MICROS_PER_SECOND), value))
            labels = {str(k): str(v) for k, v in result.get("metric", {}).items()}
            series.append(
                MetricSeries(
                    name=template.kind,
                    query=query,
                    labels=labels,
                    points=points,
                    anomalies=find_anomalies(template.kind, template.unit, points, at, self._rules),
                    unit=template.unit,
                )
            )
        return series


def _seconds(at: Micros) -> str:
    whole, micros = divmod(at, MICROS_PER_SECOND)
    return f"{whole}.{micros:06d}"
