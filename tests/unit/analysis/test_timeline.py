import pytest

from errorreplay_server.analysis.model import TimelineEventKind
from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.analysis.timeline import EventIndex, build_timeline, log_severity
from errorreplay_server.domain.model import (
    ErrorContext,
    LogLine,
    MetricAnomaly,
    MetricSeries,
    Severity,
    Span,
    SpanStatus,
)

from .builders import MIN, T0, change, snap

K = TimelineEventKind


def kinds(timeline: list) -> list[tuple[K, str]]:
    return [(e.kind, e.reference_id) for e in timeline]


def test_the_error_alone() -> None:
    error = snap("e", "api", error_type="Boom", message="it  broke\nbadly", severity=Severity.CRITICAL)
    (event,) = build_timeline(error, [], [], ErrorContext())
    assert (event.time, event.kind, event.resource_id, event.reference_id) == (T0, K.ERROR, "api", "e")
    assert event.summary == "Boom on api: it broke badly"
    assert event.severity == Severity.CRITICAL


def test_events_are_in_time_order_with_every_kind() -> None:
    context = ErrorContext(
        logs=[
            LogLine(T0 - 3 * MIN, "error", "pool exhausted", labels={"service": "api"}),
            LogLine(T0 - 4 * MIN, "info", "all good"),
        ],
        metrics=[
            MetricSeries(
                "cpu", unit="percent", resource_id="api", anomalies=[MetricAnomaly(T0 - 2 * MIN, 97, 40, 60, "")]
            )
        ],
        spans=[
            Span(
                "t", "s1", service="db", name="query", start_time=T0 - 70_000_000, duration_us=10_000_000, failing=True
            ),
            Span("t", "s2", service="db", name="ok", start_time=T0 - MIN),
        ],
    )
    related = [snap("r_after", "db", T0 + MIN), snap("r_before", "db", T0 - 5 * MIN)]
    changes = [change("c1", "api", T0 - 30 * MIN, "v2.1.0", author="alice", description="new pool")]
    timeline = build_timeline(snap("e", "api"), related, changes, context)
    assert kinds(timeline) == [
        (K.CHANGE, "c1"),
        (K.RELATED_ERROR, "r_before"),
        (K.LOG, "log:0"),
        (K.METRIC_ANOMALY, "cpu"),
        (K.SPAN, "s1"),
        (K.ERROR, "e"),
        (K.RELATED_ERROR, "r_after"),
    ]
    assert [e.time for e in timeline] == sorted(e.time for e in timeline)
    by_kind = {e.kind: e for e in timeline}
    assert by_kind[K.CHANGE].summary == "Deployment v2.1.0 on api by alice: new pool"
    assert by_kind[K.LOG].resource_id == "api"
    assert by_kind[K.METRIC_ANOMALY].summary == "cpu on api at 97% against a baseline of 40% (threshold 60%)"
    # A failing span shows when it ended, which is when the failure was seen.
    assert by_kind[K.SPAN].time == T0 - MIN
    assert by_kind[K.SPAN].summary == "Span query in db failed"


def test_equal_times_keep_a_stable_order() -> None:
    context = ErrorContext(
        logs=[LogLine(T0, "WARN", "slow")],
        metrics=[MetricSeries("cpu", anomalies=[MetricAnomaly(T0, 1, 0, 0, "")])],
        spans=[Span("t", "sp", start_time=T0, status=SpanStatus.ERROR)],
    )
    related = [snap("rb", "x"), snap("ra", "x")]
    changes = [change("cb", "x", T0), change("ca", "x", T0)]
    expected = [
        (K.CHANGE, "ca"),
        (K.CHANGE, "cb"),
        (K.METRIC_ANOMALY, "cpu"),
        (K.SPAN, "sp"),
        (K.LOG, "log:0"),
        (K.RELATED_ERROR, "ra"),
        (K.RELATED_ERROR, "rb"),
        (K.ERROR, "e"),
    ]
    assert kinds(build_timeline(snap("e", "x"), related, changes, context)) == expected
    assert kinds(build_timeline(snap("e", "x"), related[::-1], changes[::-1], context)) == expected


@pytest.mark.parametrize("level", ["WARN", "warning", "Error", "ERR", "fatal", "CRITICAL", "crit", "panic"])
def test_logs_at_warn_or_above_are_kept(level: str) -> None:
    context = ErrorContext(logs=[LogLine(T0 - 1, level, "x")])
    assert kinds(build_timeline(snap("e", "x"), [], [], context))[0] == (K.LOG, "log:0")
    assert log_severity(level) is not None


@pytest.mark.parametrize("level", ["INFO", "debug", "trace", "notice", "unknown", ""])
def test_logs_below_warn_are_left_out(level: str) -> None:
    context = ErrorContext(logs=[LogLine(T0 - 1, level, "x")])
    assert kinds(build_timeline(snap("e", "x"), [], [], context)) == [(K.ERROR, "e")]


def test_log_reference_is_the_index_in_the_context() -> None:
    context = ErrorContext(logs=[LogLine(T0 - 2, "info", "a"), LogLine(T0 - 1, "error", "b")])
    assert kinds(build_timeline(snap("e", "x"), [], [], context))[0] == (K.LOG, "log:1")


def test_log_severities() -> None:
    assert log_severity("warn") == Severity.MEDIUM
    assert log_severity("error") == Severity.HIGH
    assert log_severity("FATAL") == Severity.CRITICAL


def test_spans_that_did_not_fail_are_left_out() -> None:
    context = ErrorContext(spans=[Span("t", "ok", status=SpanStatus.OK), Span("t", "unset")])
    assert kinds(build_timeline(snap("e", "x"), [], [], context)) == [(K.ERROR, "e")]


def test_the_error_and_duplicates_appear_once() -> None:
    error = snap("e", "x")
    timeline = build_timeline(error, [error, snap("r", "x"), snap("r", "x")], [], ErrorContext())
    assert kinds(timeline) == [(K.RELATED_ERROR, "r"), (K.ERROR, "e")]


def test_summaries_are_cut() -> None:
    error = snap("e", "x", message="m" * 500)
    (event,) = build_timeline(error, [], [], ErrorContext(), AnalysisSettings(summary_max_chars=30))
    assert len(event.summary) == 30


def test_event_index_finds_entries() -> None:
    context = ErrorContext(
        metrics=[
            MetricSeries("cpu", anomalies=[MetricAnomaly(T0 - 2, 1, 0, 0, ""), MetricAnomaly(T0 - 1, 2, 0, 0, "")])
        ]
    )
    timeline = build_timeline(snap("e", "x"), [], [], context)
    index = EventIndex(timeline)
    assert index.find(K.METRIC_ANOMALY, "cpu") == 0
    assert index.find(K.METRIC_ANOMALY, "cpu", T0 - 1) == 1
    assert index.find(K.ERROR, "e") == 2
    assert index.find(K.ERROR, "nope") is None
