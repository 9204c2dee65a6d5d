"""The replay timeline: what happened around an error, in time order.

Entries: the error itself, the related errors, the changes given, log lines at WARN or above,
metric anomalies, and failing spans (at their end, when the failure was seen).

Order: by time. Equal times keep a stable order: changes, metric anomalies, spans, logs,
related errors, then the error itself (likely causes before their effects), then by reference
id, then by input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from errorreplay_server.analysis.correlation import occurred_at
from errorreplay_server.analysis.formatting import number, one_line
from errorreplay_server.analysis.model import TimelineEvent, TimelineEventKind
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.domain.model import (
    Change,
    ChangeKind,
    ErrorContext,
    ErrorSnapshot,
    LogLine,
    MetricAnomaly,
    MetricSeries,
    Severity,
    Span,
    SpanStatus,
)

# Levels kept on the timeline (compared case-insensitively) and the severity each maps to.
LOG_LEVEL_SEVERITY: dict[str, Severity] = {
    "warn": Severity.MEDIUM,
    "warning": Severity.MEDIUM,
    "error": Severity.HIGH,
    "err": Severity.HIGH,
    "severe": Severity.HIGH,
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "alert": Severity.CRITICAL,
    "emerg": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "panic": Severity.CRITICAL,
}
# Anomalies and failing spans carry no severity of their own; these say how loud they are.
ANOMALY_SEVERITY = Severity.MEDIUM
FAILING_SPAN_SEVERITY = Severity.HIGH
CHANGE_SEVERITY = Severity.INFO

TIE_ORDER: dict[TimelineEventKind, int] = {
    TimelineEventKind.CHANGE: 0,
    TimelineEventKind.METRIC_ANOMALY: 1,
    TimelineEventKind.SPAN: 2,
    TimelineEventKind.LOG: 3,
    TimelineEventKind.RELATED_ERROR: 4,
    TimelineEventKind.ERROR: 5,
}


def log_severity(level: str) -> Severity | None:
    """The severity of a log level at WARN or above; None for lower or unknown levels."""
    return LOG_LEVEL_SEVERITY.get(level.strip().lower())


def is_failing(span: Span) -> bool:
    return span.failing or span.status == SpanStatus.ERROR


def span_end(span: Span) -> int:
    return span.start_time + max(0, span.duration_us)


def log_reference(index: int) -> str:
    return f"log:{index}"


def log_resource(line: LogLine, settings: AnalysisSettings = DEFAULT_SETTINGS) -> str:
    """The resource a log line came from, from the first label in log_resource_labels; "" when
    no label says."""
    for label in settings.log_resource_labels:
        value = line.labels.get(label, "").strip()
        if value:
            return value
    return ""


def error_summary(error: ErrorSnapshot, max_chars: int) -> str:
    r = error.report
    head = r.error_type or "Error"
    where = f" on {r.resource_id}" if r.resource_id else (f" in {r.service}" if r.service else "")
    return one_line(f"{head}{where}: {r.message}", max_chars)


CHANGE_NOUN: dict[ChangeKind, str] = {
    ChangeKind.DEPLOYMENT: "Deployment",
    ChangeKind.CONFIG: "Config change",
    ChangeKind.TOPOLOGY: "Topology change",
}


def change_label(change: Change) -> str:
    """`Deployment v2.1.0`, `Config change chg_1` (the id when there is no version)."""
    noun = CHANGE_NOUN.get(change.kind, "Change")
    return f"{noun} {change.version or change.change_id}".strip()


def change_summary(change: Change, max_chars: int) -> str:
    author = f" by {change.author}" if change.author else ""
    description = f": {change.description}" if change.description else ""
    return one_line(f"{change_label(change)} on {change.resource_id}{author}{description}", max_chars)


def anomaly_summary(series: MetricSeries, anomaly: MetricAnomaly, max_chars: int) -> str:
    where = f" on {series.resource_id}" if series.resource_id else ""
    text = (
        f"{series.name}{where} at {number(anomaly.value, series.unit)} against a baseline of "
        f"{number(anomaly.baseline, series.unit)} (threshold {number(anomaly.threshold, series.unit)})"
    )
    if anomaly.reason:
        text += f": {anomaly.reason}"
    return one_line(text, max_chars)


def span_summary(span: Span, max_chars: int) -> str:
    name = span.name or span.span_id
    where = f" in {span.service}" if span.service else ""
    status = f": {span.status_message}" if span.status_message else ""
    return one_line(f"Span {name}{where} failed{status}", max_chars)


def build_timeline(
    error: ErrorSnapshot,
    related_errors: Iterable[ErrorSnapshot],
    changes: Iterable[Change],
    context: ErrorContext,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> list[TimelineEvent]:
    """Events around the error, time-ordered (see the module docstring for ties). `changes` are
    taken as given (pass the related changes); context.changes is not read, so a change never
    shows twice."""
    width = settings.summary_max_chars
    events: list[TimelineEvent] = [
        TimelineEvent(
            occurred_at(error),
            TimelineEventKind.ERROR,
            error.report.resource_id,
            error_summary(error, width),
            error.error_id,
            error.report.severity,
        )
    ]
    seen = {error.error_id}
    for other in related_errors:
        if other.error_id in seen:
            continue
        seen.add(other.error_id)
        events.append(
            TimelineEvent(
                occurred_at(other),
                TimelineEventKind.RELATED_ERROR,
                other.report.resource_id,
                error_summary(other, width),
                other.error_id,
                other.report.severity,
            )
        )
    for change in changes:
        events.append(
            TimelineEvent(
                change.occurred_at,
                TimelineEventKind.CHANGE,
                change.resource_id,
                change_summary(change, width),
                change.change_id,
                CHANGE_SEVERITY,
            )
        )
    for index, line in enumerate(context.logs):
        severity = log_severity(line.level)
        if severity is None:
            continue
        events.append(
            TimelineEvent(
                line.time,
                TimelineEventKind.LOG,
                log_resource(line, settings),
                one_line(f"{line.level.upper()} {line.message}", width),
                log_reference(index),
                severity,
            )
        )
    for series in context.metrics:
        for anomaly in series.anomalies:
            events.append(
                TimelineEvent(
                    anomaly.time,
                    TimelineEventKind.METRIC_ANOMALY,
                    series.resource_id,
                    anomaly_summary(series, anomaly, width),
                    series.name,
                    ANOMALY_SEVERITY,
                )
            )
    for span in context.spans:
        if is_failing(span):
            events.append(
                TimelineEvent(
                    span_end(span),
                    TimelineEventKind.SPAN,
                    span.service,
                    span_summary(span, width),
                    span.span_id,
                    FAILING_SPAN_SEVERITY,
                )
            )
    order = sorted(
        range(len(events)),
        key=lambda i: (events[i].time, TIE_ORDER[events[i].kind], events[i].reference_id, i),
    )
    return [events[i] for i in order]


class EventIndex:
    """Finds timeline entries by kind and reference id (and time, for series with several
    anomalies), so evidence can point at them."""

    __slots__ = ("_by_ref", "_by_time")

    def __init__(self, timeline: Sequence[TimelineEvent]) -> None:
        self._by_ref: dict[tuple[TimelineEventKind, str], int] = {}
        self._by_time: dict[tuple[TimelineEventKind, str, int], int] = {}
        for i, event in enumerate(timeline):
            self._by_ref.setdefault((event.kind, event.reference_id), i)
            self._by_time.setdefault((event.kind, event.reference_id, event.time), i)

    def find(self, kind: TimelineEventKind, reference_id: str, time: int | None = None) -> int | None:
        if time is None:
            return self._by_ref.get((kind, reference_id))
        return self._by_time.get((kind, reference_id, time))
