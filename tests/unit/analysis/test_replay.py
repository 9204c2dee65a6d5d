"""Issue 5's scenarios at the domain level: analyse() as ReplayError calls it."""

import random

from errorreplay_server.analysis.correlation import affected_resources
from errorreplay_server.analysis.grouping import fingerprint
from errorreplay_server.analysis.model import RecommendationKind, RootCauseCategory, TimelineEventKind
from errorreplay_server.analysis.propagation import correlation_origin
from errorreplay_server.analysis.replay import analyse
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    ErrorContext,
    ErrorReport,
    MetricAnomaly,
    MetricPoint,
    MetricSeries,
    Severity,
    Source,
    Topology,
)

from .builders import CASCADE, MIN, T0, change, edges, snap

R, C, K = RecommendationKind, RootCauseCategory, TimelineEventKind

# --- 1. cascade -----------------------------------------------------------------------------


def test_scenario_cascade() -> None:
    db = snap("e_db", "db", T0, correlation_id="corr-1", error_type="ConnectionError")
    api = snap("e_api", "api", T0 + MIN, correlation_id="corr-1")
    web = snap("e_web", "web", T0 + 2 * MIN, correlation_id="corr-1")

    replay = analyse(web, [db, api], [], CASCADE, group_first_seen=T0 + 2 * MIN)

    assert replay.propagation is not None
    assert replay.propagation.origin_error_id == "e_db"
    assert replay.propagation.origin_resource_id == "db"
    assert [s.resource_id for s in replay.propagation.path] == ["db", "api", "web"]
    assert replay.root_cause.category == C.DEPENDENCY_FAILURE
    assert replay.root_cause.primary_cause is not None
    assert replay.root_cause.primary_cause.resource_id == "db"
    assert replay.root_cause.confidence > 0.5
    assert any(r.target == "db" and "db" in r.title for r in replay.recommendations)
    first = replay.recommendations[0]
    assert (first.kind, first.target) == (R.INVESTIGATE_ORIGIN, "db")
    # Evidence points at the db and api errors on the timeline.
    evidence = [replay.timeline[e.timeline_index].reference_id for e in replay.root_cause.evidence]
    assert evidence == ["e_db", "e_api"]

    assert affected_resources(db, CASCADE, max_hops=2) == ["api", "web"]
    assert analyse(db, [api, web], [], CASCADE, None).affected_resource_ids == ["api", "web"]
    origin = correlation_origin([web, db, api], CASCADE)
    assert origin is not None and origin.origin_error_id == "e_db"


# --- 2. a change before the error -----------------------------------------------------------


def change_scenario(deploy_at: int) -> tuple:
    error = snap("e_api", "api", T0, severity=Severity.CRITICAL, error_type="OrderError")
    changes = [
        change("chg_new", "api", deploy_at, "v2.1.0", author="alice"),
        change("chg_old", "api", T0 - 30 * MICROS_PER_HOUR, "v2.0.0"),
    ]
    return error, changes


def test_scenario_recent_change() -> None:
    error, changes = change_scenario(T0 - 30 * MIN)
    replay = analyse(error, [], changes, [], group_first_seen=T0)

    cause = replay.root_cause.primary_cause
    assert cause is not None
    assert replay.root_cause.category == C.RECENT_CHANGE
    assert "v2.1.0" in cause.summary
    assert [c.version for c in replay.related_changes] == ["v2.1.0"]
    kinds = [(r.kind, r.target) for r in replay.recommendations]
    assert (R.ROLLBACK_CHANGE, "chg_new") in kinds
    assert (R.ESCALATE, "api") in kinds
    rollback = next(r for r in replay.recommendations if r.kind == R.ROLLBACK_CHANGE)
    assert "v2.1.0" in rollback.title
    assert [e.kind for e in replay.timeline] == [K.CHANGE, K.ERROR]


def test_scenario_change_after_the_error_is_no_cause() -> None:
    error, changes = change_scenario(T0 + 5 * MIN)
    replay = analyse(error, [], changes, [], group_first_seen=T0)
    assert replay.related_changes == []
    assert replay.root_cause.category == C.UNKNOWN
    assert all(r.kind != R.ROLLBACK_CHANGE for r in replay.recommendations)
    assert all(e.kind != K.CHANGE for e in replay.timeline)


# --- 3. saturation --------------------------------------------------------------------------


def test_scenario_saturation() -> None:
    points = [MetricPoint(T0 - i * MIN, 40.0) for i in range(15, 1, -1)] + [MetricPoint(T0 - MIN, 97.0)]
    cpu = MetricSeries(
        "cpu",
        unit="percent",
        resource_id="api",
        points=points,
        anomalies=[MetricAnomaly(T0 - MIN, 97.0, 40.0, 45.0, "cpu 97 above its baseline")],
    )
    error = snap("e", "api", context=ErrorContext(metrics=[cpu]))
    replay = analyse(error, [], [], CASCADE, None)
    assert replay.root_cause.category == C.SATURATION
    assert replay.root_cause.primary_cause is not None
    assert "cpu" in replay.root_cause.primary_cause.summary
    assert replay.propagation is None
    scale = next(r for r in replay.recommendations if r.kind == R.SCALE_RESOURCE)
    assert scale.target == "cpu"


# --- 4. nothing known -----------------------------------------------------------------------


def test_scenario_nothing_known() -> None:
    error = snap("e", "api", error_type="KeyError", stack_trace='File "x.py", line 1, in f')
    replay = analyse(error, [], [], [], None)
    assert replay.root_cause.category == C.UNKNOWN
    assert replay.root_cause.confidence == 0.0
    assert replay.root_cause.primary_cause is None
    assert replay.root_cause.evidence == []
    assert replay.propagation is None
    assert [(r.kind, r.title) for r in replay.recommendations] == [
        (R.INVESTIGATE_ERROR, "Inspect the stack trace of KeyError on api")
    ]
    assert [e.kind for e in replay.timeline] == [K.ERROR]


# --- 5. grouping ----------------------------------------------------------------------------


def test_scenario_grouping() -> None:
    def report(message: str, error_type: str = "PaymentError", stack: str = "") -> ErrorReport:
        return ErrorReport(
            message, Severity.HIGH, Source.APPLICATION, service="pay", error_type=error_type, stack_trace=stack
        )

    a = fingerprint(report("card 4 declined for order 9b2c1f4e-8a7d-4c3b-9e2f-1a2b3c4d5e6f by 'bob'"))[0]
    b = fingerprint(report("card 77 declined for order 11111111-2222-3333-4444-555555555555 by 'eve'"))[0]
    c = fingerprint(report("card 4 declined for order 9b2c1f4e-8a7d-4c3b-9e2f-1a2b3c4d5e6f by 'bob'", "FraudError"))[0]
    assert a == b != c

    frames = ["f1", "f2", "f3", "f4", "f5"]

    def trace(line: int) -> str:
        body = "".join(f'  File "/app/pay.py", line {line + 3 * i}, in {f}\n' for i, f in enumerate(frames))
        return f"Traceback (most recent call last):\n{body}PaymentError: x\n"

    assert fingerprint(report("x", stack=trace(10)))[0] == fingerprint(report("y", stack=trace(200)))[0]


# --- the whole --------------------------------------------------------------------------------


def test_analyse_is_deterministic_whatever_the_input_order() -> None:
    db = snap("e_db", "db", T0, correlation_id="c")
    api = snap("e_api", "api", T0 + MIN, correlation_id="c")
    other = snap("e_other", "web", T0 + 90 * 1_000_000)
    web = snap("e_web", "web", T0 + 2 * MIN, severity=Severity.CRITICAL)
    related = [db, api, other]
    changes = [change("c1", "api", T0 - 10 * MIN, "v1"), change("c2", "web", T0 - 20 * MIN, "v2")]
    first = analyse(web, related, changes, CASCADE, T0)
    for seed in range(5):
        rng = random.Random(seed)
        shuffled_related, shuffled_changes, shuffled_edges = related[:], changes[:], CASCADE[:]
        rng.shuffle(shuffled_related)
        rng.shuffle(shuffled_changes)
        rng.shuffle(shuffled_edges)
        assert analyse(web, shuffled_related, shuffled_changes, shuffled_edges, T0) == first


def test_unrelated_candidates_are_dropped_and_frozen_context_is_used() -> None:
    # The store gave no edges; the frozen topology and frozen changes still count.
    context = ErrorContext(
        topology=Topology("web", dependencies=CASCADE), changes=[change("frozen", "api", T0 - 5 * MIN, "v5")]
    )
    web = snap("e_web", "web", T0, context=context)
    candidates = [
        snap("e_api", "api", T0 - MIN),
        snap("e_far", "elsewhere", T0 - MIN),
        snap("e_old", "api", T0 - 30 * MIN),
    ]
    replay = analyse(web, candidates, [change("frozen", "api", T0 - 5 * MIN, "v5")], [], None)
    assert [e.error_id for e in replay.related_errors] == ["e_api"]
    assert [c.change_id for c in replay.related_changes] == ["frozen"]
    assert replay.propagation is not None and replay.propagation.origin_resource_id == "api"
    categories = [replay.root_cause.category, *(c.category for c in replay.root_cause.contributing_factors)]
    assert categories == [C.DEPENDENCY_FAILURE, C.RECENT_CHANGE]


def test_an_error_without_resource_still_gets_a_timeline_and_safe_answers() -> None:
    loose = snap("e", "", correlation_id="c", service="checkout")
    friend = snap("f", "api", T0 - MIN, correlation_id="c")
    replay = analyse(loose, [friend], [change("c1", "api", T0 - MIN)], edges("api>db"), None)
    assert [e.reference_id for e in replay.timeline] == ["f", "e"]
    assert replay.propagation is None
    assert replay.related_changes == []
    assert replay.affected_resource_ids == []
    assert replay.root_cause.category == C.UNKNOWN
