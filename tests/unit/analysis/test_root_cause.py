from dataclasses import replace

import pytest

from errorreplay_server.analysis.correlation import related_changes
from errorreplay_server.analysis.model import Cause, Evidence, RootCauseCategory
from errorreplay_server.analysis.propagation import propagation_path
from errorreplay_server.analysis.root_cause import (
    candidate_causes,
    change_score,
    confidence,
    rank,
    relative_excess,
    root_cause_from,
)
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.analysis.timeline import build_timeline
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    AnomalyKind,
    Change,
    Dependency,
    ErrorContext,
    ErrorSnapshot,
    LogLine,
    MetricAnomaly,
    MetricPoint,
    MetricSeries,
    Span,
)

from .builders import CASCADE, MIN, T0, change, edges, snap

C = RootCauseCategory


def causes_of(
    error: ErrorSnapshot,
    related: list[ErrorSnapshot] = [],  # noqa: B006
    changes: list[Change] = [],  # noqa: B006
    deps: list[Dependency] = CASCADE,
    first_seen: int | None = None,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> list[Cause]:
    kept = related_changes(error, changes, deps, settings)
    timeline = build_timeline(error, related, kept, error.context, settings)
    found = candidate_causes(
        error,
        timeline=timeline,
        propagation=propagation_path(error, related, deps, settings),
        related_errors=related,
        related_changes=kept,
        dependencies=deps,
        group_first_seen=first_seen,
        settings=settings,
    )
    for cause in found:
        assert 0.0 <= cause.score <= 1.0
        for item in cause.evidence:
            assert timeline[item.timeline_index].reference_id == item.reference_id
    return found


def only(causes: list[Cause], category: C) -> list[Cause]:
    return [c for c in causes if c.category == category]


# --- cascade --------------------------------------------------------------------------------


def test_cascade_is_a_dependency_failure_with_its_weight() -> None:
    db, api = snap("e_db", "db", T0), snap("e_api", "api", T0 + MIN)
    (cause,) = causes_of(snap("e_web", "web", T0 + 2 * MIN), [db, api])
    assert cause.category == C.DEPENDENCY_FAILURE
    assert cause.resource_id == "db"
    assert cause.score == DEFAULT_SETTINGS.cascade_weight
    assert "db → api → web" in cause.summary
    assert [e.reference_id for e in cause.evidence] == ["e_db", "e_api"]


def test_cascade_through_a_silent_resource_scores_less() -> None:
    settings = AnalysisSettings(cascade_weight=0.8, cascade_silent_hop_factor=0.5)
    (cause,) = causes_of(snap("e_web", "web", T0 + 2 * MIN), [snap("e_db", "db", T0)], settings=settings)
    assert cause.score == 0.4
    assert "1 hop through resources with no error in the cascade" in cause.summary


# --- changes --------------------------------------------------------------------------------


def test_change_score_halves_per_half_life() -> None:
    s = AnalysisSettings(change_weight=0.8, change_half_life_us=MICROS_PER_HOUR)
    c = change("c", "api", T0 - MICROS_PER_HOUR)
    assert change_score(c, T0, 0, None, s) == 0.4
    assert change_score(change("c", "api", T0 - 2 * MICROS_PER_HOUR), T0, 0, None, s) == 0.2
    assert change_score(change("c", "api", T0), T0, 0, None, s) == 0.8


def test_change_score_is_stronger_when_the_group_is_new_since_the_change() -> None:
    s = AnalysisSettings(change_weight=0.8, change_half_life_us=MICROS_PER_HOUR, change_regression_factor=1.5)
    c = change("c", "api", T0 - MICROS_PER_HOUR)
    assert change_score(c, T0, 0, T0 - 30 * MIN, s) == 0.6
    assert change_score(c, T0, 0, T0 - MICROS_PER_HOUR, s) == 0.6
    assert change_score(c, T0, 0, T0 - 2 * MICROS_PER_HOUR, s) == 0.4
    # Clamped to 1.
    assert change_score(change("c", "api", T0), T0, 0, T0, AnalysisSettings(change_weight=1.0)) == 1.0


def test_change_score_weakens_per_hop_to_a_dependency() -> None:
    s = AnalysisSettings(change_weight=0.8, change_dependency_factor=0.5)
    c = change("c", "db", T0)
    assert change_score(c, T0, 1, None, s) == 0.4
    assert change_score(c, T0, 2, None, s) == 0.2


def test_a_change_after_the_error_scores_nothing() -> None:
    assert change_score(change("c", "api", T0 + 1), T0, 0, None) == 0.0
    assert causes_of(snap("e", "api"), changes=[change("c", "api", T0 + MIN, "v9")]) == []


def test_recent_change_beats_an_old_one_and_the_30h_one_is_out_of_window() -> None:
    changes = [change("new", "api", T0 - 30 * MIN, "v2.1.0"), change("old", "api", T0 - 30 * MICROS_PER_HOUR, "v2.0")]
    found = causes_of(snap("e", "api"), changes=changes, first_seen=T0)
    assert [c.category for c in found] == [C.RECENT_CHANGE]
    assert "Deployment v2.1.0 on api, 30 min before the error" in found[0].summary
    assert "first seen after it" in found[0].summary
    assert found[0].evidence[0].reference_id == "new"


def test_a_change_on_a_dependency_is_named_as_such() -> None:
    (cause,) = causes_of(snap("e", "api"), changes=[change("c", "db", T0 - MIN, "v7")])
    assert cause.resource_id == "db"
    assert "(a dependency of api)" in cause.summary


def test_a_change_too_old_to_matter_is_dropped_as_noise() -> None:
    assert causes_of(snap("e", "api"), changes=[change("c", "api", T0 - 20 * MICROS_PER_HOUR)]) == []


# --- saturation -----------------------------------------------------------------------------


def metrics(*series: MetricSeries) -> ErrorContext:
    return ErrorContext(metrics=list(series))


def cpu(value: float, baseline: float, at: int = T0 - MIN, name: str = "cpu") -> MetricSeries:
    return MetricSeries(name, unit="percent", resource_id="api", anomalies=[MetricAnomaly(at, value, baseline, 60, "")])


def test_cpu_at_97_against_40_is_saturation_naming_the_metric() -> None:
    (cause,) = causes_of(snap("e", "api", context=metrics(cpu(97, 40))))
    assert cause.category == C.SATURATION
    assert cause.summary == "cpu on api reached 97% against a baseline of 40%"
    assert cause.score == DEFAULT_SETTINGS.saturation_weight
    assert cause.evidence[0].reference_id == "cpu"


def test_saturation_scales_with_the_excess() -> None:
    s = AnalysisSettings(saturation_weight=0.8, saturation_full_excess=1.0)
    (cause,) = causes_of(snap("e", "api", context=metrics(cpu(60, 40))), settings=s)
    assert cause.score == 0.4
    assert relative_excess(5, 0) == float("inf")
    assert relative_excess(0, 0) == 0.0


def test_anomalies_after_the_lag_drops_and_other_metrics_do_not_count() -> None:
    late = cpu(97, 40, at=T0 + 2 * MIN)
    drop = cpu(10, 40)
    other = cpu(500, 40, name="request_rate")
    assert causes_of(snap("e", "api", context=metrics(late, drop, other))) == []
    within_lag = cpu(97, 40, at=T0 + DEFAULT_SETTINGS.evidence_lag_us)
    assert only(causes_of(snap("e", "api", context=metrics(within_lag))), C.SATURATION)


def test_saturation_score_grows_with_how_long_the_excess_lasted() -> None:
    s = AnalysisSettings(saturation_weight=0.8, saturation_full_duration_us=10 * MIN, saturation_brief_factor=0.5)

    def score(since: int) -> float:
        series = MetricSeries(
            "cpu", unit="percent", resource_id="api", anomalies=[MetricAnomaly(T0, 97, 40, 60, "", "baseline", since)]
        )
        (cause,) = causes_of(snap("e", "api", context=metrics(series)), settings=s)
        return cause.score

    assert score(T0) == 0.4  # began at the error: the brief factor
    assert score(T0 - 5 * MIN) == 0.6
    assert score(T0 - 10 * MIN) == score(T0 - 60 * MIN) == 0.8
    assert score(T0 + MIN // 2) == 0.4  # began after the error, within the evidence lag
    assert score(0) == 0.8  # no recorded start (a context stored before it was): as before


def test_a_trend_is_named_as_a_sustained_rise() -> None:
    reason = "memory grew 5.0× in 15 min (from 210 MB to 1.05 GB)"
    trend = MetricAnomaly(T0, 1.05e9, 2.1e8, 3.15e8, reason, AnomalyKind.TREND, T0 - 15 * MIN)
    step = MetricAnomaly(T0 - MIN, 9.9e8, 2.1e8, 2.2e8, "above", AnomalyKind.BASELINE, T0 - 14 * MIN)
    series = MetricSeries("memory", unit="bytes", resource_id="api", anomalies=[step, trend])
    error = snap("e", "api", context=metrics(series))
    timeline = build_timeline(error, [], [], error.context)
    (cause,) = causes_of(error)
    # Equally strong (full excess, full duration): the trend explains more and is named.
    assert cause.summary == f"Sustained rise on api: {reason}"
    assert cause.score == DEFAULT_SETTINGS.saturation_weight
    assert [e.description for e in cause.evidence] == ["memory at 990 MB (threshold 220 MB)", reason]
    assert all(timeline[e.timeline_index].reference_id == "memory" for e in cause.evidence)


def test_a_share_of_capacity_says_how_close_to_full_it_came() -> None:
    series = cpu(97, 40)
    series.points = [MetricPoint(T0 - 2 * MIN, 40), MetricPoint(T0 - MIN, 97), MetricPoint(T0 + 5 * MIN, 100)]
    (cause,) = causes_of(snap("e", "api", context=metrics(series)))
    assert cause.summary == (
        "cpu on api reached 97% against a baseline of 40%; its highest, 97%, was 3 points below its limit (100%)"
    )


@pytest.mark.parametrize("name", ["cpu", "memory_working_set", "latency_p95", "error_rate"])
def test_saturation_metrics(name: str) -> None:
    assert only(causes_of(snap("e", "api", context=metrics(cpu(97, 40, name=name)))), C.SATURATION)


# --- burst ----------------------------------------------------------------------------------


def test_three_errors_on_the_resource_are_a_burst() -> None:
    related = [snap("b1", "api", T0 - 2 * MIN), snap("b2", "api", T0 - MIN)]
    (cause,) = causes_of(snap("e", "api"), related)
    assert cause.category == C.ERROR_BURST
    assert cause.summary == "3 errors on api within 5 min up to this one"
    assert cause.score == pytest.approx(DEFAULT_SETTINGS.burst_weight * 3 / DEFAULT_SETTINGS.burst_full_errors)
    assert [e.reference_id for e in cause.evidence] == ["b1", "b2"]


def test_no_burst_below_the_minimum_or_from_later_or_older_errors() -> None:
    related = [snap("b1", "api", T0 - MIN), snap("later", "api", T0 + MIN), snap("old", "api", T0 - 6 * MIN)]
    assert causes_of(snap("e", "api"), related) == []


def test_unrelated_errors_on_the_resource_are_no_burst() -> None:
    # Issue 20: OutOfStock errors on the db were blamed as a burst for its ConnectionError.
    def out_of_stock(error_id: str, at: int) -> ErrorSnapshot:
        return replace(snap(error_id, "db", at, error_type="OutOfStock"), group_id="grp_stock")

    failure = replace(snap("e", "db", error_type="ConnectionError"), group_id="grp_conn")
    unrelated = [out_of_stock(f"s{i}", T0 - i * MIN) for i in range(1, 4)]
    assert only(causes_of(failure, unrelated), C.ERROR_BURST) == []


def test_a_burst_counts_its_group_and_the_errors_linked_to_it() -> None:
    failure = replace(snap("e", "db", error_type="ConnectionError", correlation_id="req-1"), group_id="grp_conn")
    same_group = replace(snap("g1", "db", T0 - 3 * MIN), group_id="grp_conn")
    same_request = replace(snap("c1", "db", T0 - 2 * MIN, correlation_id="req-1"), group_id="grp_other")
    same_trace = replace(snap("t1", "db", T0 - 90_000_000, trace_id="tr"), group_id="grp_other")
    other = replace(snap("o1", "db", T0 - MIN), group_id="grp_stock")
    traced = replace(failure, report=replace(failure.report, trace_id="tr"))
    (cause,) = only(causes_of(traced, [same_group, same_request, same_trace, other]), C.ERROR_BURST)
    assert cause.summary == "4 errors on db within 5 min up to this one"
    assert [e.reference_id for e in cause.evidence] == ["g1", "c1", "t1"]


def test_burst_reaches_full_weight() -> None:
    related = [snap(f"b{i}", "api", T0 - i * 1_000_000) for i in range(1, 20)]
    s = AnalysisSettings(burst_weight=0.5, burst_full_errors=10)
    (cause,) = causes_of(snap("e", "api"), related, settings=s)
    assert cause.score == 0.5


# --- failing spans and error logs elsewhere -------------------------------------------------


def test_failing_spans_of_another_service_point_at_it() -> None:
    spans = [
        Span("t", "mine", service="api", start_time=T0 - 2_000_000, duration_us=1_000_000),
        Span("t", "pay", "mine", service="payments", start_time=T0 - 2_000_000, duration_us=500_000, failing=True),
    ]
    (cause,) = causes_of(snap("e", "api", service="api", context=ErrorContext(spans=spans)))
    assert cause.category == C.EXTERNAL_DEPENDENCY
    assert cause.resource_id == "payments"
    assert cause.summary == "1 failing span points at payments"
    assert cause.score == pytest.approx(DEFAULT_SETTINGS.external_weight / DEFAULT_SETTINGS.external_full_signals)


def test_a_callers_failing_span_is_an_effect_not_a_cause() -> None:
    spans = [
        Span("t", "root", service="gateway", start_time=T0 - 3_000_000, duration_us=2_000_000, failing=True),
        Span("t", "mine", "root", service="api", start_time=T0 - 2_000_000, duration_us=1_000_000, failing=True),
        Span("t", "web", service="web", start_time=T0 - 2_000_000, duration_us=1_000_000, failing=True),
    ]
    # gateway sits above api in the trace; web is a known caller in the topology.
    assert causes_of(snap("e", "api", service="api", context=ErrorContext(spans=spans))) == []


def test_error_logs_from_or_naming_another_resource_point_at_it() -> None:
    logs = [
        LogLine(T0 - 3_000_000, "error", "connection to db timed out", labels={"service": "api"}),
        LogLine(T0 - 2_000_000, "ERROR", "refused", labels={"resource_id": "db"}),
        LogLine(T0 - 1_000_000, "error", "db-replica lagging; api-gateway slow", labels={"service": "api"}),
        LogLine(T0 - 1_000_000, "warn", "db is slow", labels={"service": "api"}),
        LogLine(T0 - 1_000_000, "error", "web gave up", labels={"service": "web"}),
        LogLine(T0 + 5 * MIN, "error", "db down", labels={"service": "api"}),
    ]
    (cause,) = causes_of(snap("e", "api", context=ErrorContext(logs=logs)))
    assert cause.resource_id == "db"
    assert cause.summary == "2 error logs point at db"
    assert [e.reference_id for e in cause.evidence] == ["log:0", "log:1"]


def test_without_an_identity_nothing_points_elsewhere() -> None:
    spans = [Span("t", "s", service="payments", start_time=T0 - 1, failing=True)]
    assert causes_of(snap("e", "", context=ErrorContext(spans=spans))) == []


# --- ranking and confidence -----------------------------------------------------------------


def cause(category: C, score: float, resource: str) -> Cause:
    return Cause(category, f"{category.name} {resource}", score, resource, [])


def test_nothing_known_is_unknown_with_zero_confidence() -> None:
    rc = root_cause_from([])
    assert (rc.primary_cause, rc.category, rc.confidence, rc.contributing_factors, rc.evidence) == (
        None,
        C.UNKNOWN,
        0.0,
        [],
        [],
    )
    assert causes_of(snap("lonely", "api")) == []


def test_confidence_is_the_best_score_less_a_share_of_the_best_rival() -> None:
    s = AnalysisSettings(ambiguity_penalty=0.5)
    ranked = rank([cause(C.RECENT_CHANGE, 0.8, "api"), cause(C.SATURATION, 0.6, "db")], s)
    assert confidence(ranked, s) == 0.5
    # Agreeing evidence on the same resource does not compete.
    ranked = rank([cause(C.RECENT_CHANGE, 0.8, "api"), cause(C.ERROR_BURST, 0.6, "api")], s)
    assert confidence(ranked, s) == 0.8
    # Two changes on one resource do: which one is it?
    ranked = rank([cause(C.RECENT_CHANGE, 0.8, "api"), cause(C.RECENT_CHANGE, 0.4, "api")], s)
    assert confidence(ranked, s) == 0.6
    assert confidence([cause(C.RECENT_CHANGE, 0.8, "api")], s) == 0.8


def test_ranking_breaks_ties_by_category_then_resource_and_drops_noise() -> None:
    s = AnalysisSettings(min_cause_score=0.1)
    ranked = rank(
        [
            cause(C.SATURATION, 0.5, "a"),
            cause(C.DEPENDENCY_FAILURE, 0.5, "b"),
            cause(C.RECENT_CHANGE, 0.5, "z"),
            cause(C.RECENT_CHANGE, 0.5, "y"),
            cause(C.ERROR_BURST, 0.09, "a"),
        ],
        s,
    )
    assert [(c.category, c.resource_id) for c in ranked] == [
        (C.DEPENDENCY_FAILURE, "b"),
        (C.RECENT_CHANGE, "y"),
        (C.RECENT_CHANGE, "z"),
        (C.SATURATION, "a"),
    ]


def test_root_cause_gathers_evidence_once_in_timeline_order() -> None:
    a = Cause(C.RECENT_CHANGE, "a", 0.9, "api", [Evidence(3, "c", "change"), Evidence(1, "x", "first")])
    b = Cause(C.SATURATION, "b", 0.5, "api", [Evidence(1, "x", "again"), Evidence(0, "cpu", "cpu")])
    rc = root_cause_from([a, b])
    assert rc.primary_cause == a
    assert rc.category == C.RECENT_CHANGE
    assert rc.contributing_factors == [b]
    assert [(e.timeline_index, e.description) for e in rc.evidence] == [(0, "cpu"), (1, "first"), (3, "change")]


@pytest.mark.parametrize(
    ("weight", "build"),
    [
        ("cascade_weight", lambda: causes_of(snap("w", "web", T0 + MIN), [snap("a", "api", T0)])),
        ("change_weight", lambda: causes_of(snap("e", "api"), changes=[change("c", "api", T0)])),
        ("saturation_weight", lambda: causes_of(snap("e", "api", context=metrics(cpu(97, 40))))),
    ],
)
def test_each_weight_is_what_its_rule_scores_at_full_strength(weight: str, build: object) -> None:
    # At full strength (no decay, no silent hop, full excess) the score is the weight itself.
    (found,) = build()  # type: ignore[operator]
    assert found.score == getattr(DEFAULT_SETTINGS, weight)


def test_weights_are_settings_not_constants() -> None:
    s = AnalysisSettings(
        cascade_weight=0.3, change_weight=0.2, saturation_weight=0.1, burst_weight=1.0, burst_full_errors=3
    )
    assert causes_of(snap("w", "web", T0 + MIN), [snap("a", "api", T0)], settings=s)[0].score == 0.3
    assert causes_of(snap("e", "api"), changes=[change("c", "api", T0)], settings=s)[0].score == 0.2
    assert causes_of(snap("e", "api", context=metrics(cpu(97, 40))), settings=s)[0].score == 0.1
    burst = [snap("b1", "api", T0 - 2), snap("b2", "api", T0 - 1)]
    assert causes_of(snap("e", "api"), burst, settings=s)[0].score == 1.0
    spans = [Span("t", str(i), service="pay", start_time=T0 - 10, failing=True) for i in range(2)]
    ext = AnalysisSettings(external_weight=0.9, external_full_signals=2)
    assert causes_of(snap("e", "api", context=ErrorContext(spans=spans)), settings=ext)[0].score == 0.9


def test_cascade_and_a_change_elsewhere_compete() -> None:
    related = [snap("e_db", "db", T0 - MIN)]
    found = causes_of(
        snap("e", "api"), related, changes=[change("c", "api", T0 - 10 * MIN, "v3")], deps=edges("api>db")
    )
    assert [c.category for c in found] == [C.DEPENDENCY_FAILURE, C.RECENT_CHANGE]
    rc = root_cause_from(found)
    assert rc.confidence == pytest.approx(
        found[0].score - DEFAULT_SETTINGS.ambiguity_penalty * found[1].score, abs=1e-4
    )
