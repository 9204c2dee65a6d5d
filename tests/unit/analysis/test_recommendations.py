from errorreplay_server.analysis.model import (
    Cause,
    Evidence,
    Propagation,
    PropagationStep,
    Recommendation,
    RecommendationKind,
    RootCause,
    RootCauseCategory,
)
from errorreplay_server.analysis.recommendations import recommendations_for
from errorreplay_server.domain.model import (
    ChangeKind,
    CollectionState,
    CollectorStatus,
    ErrorContext,
    ErrorSnapshot,
    Severity,
)

from .builders import CASCADE, MIN, T0, change, snap

R, C = RecommendationKind, RootCauseCategory


def primary(cause: Cause, *others: Cause, confidence: float = 0.8) -> RootCause:
    return RootCause(cause, cause.category, confidence, list(others), [])


NOTHING = RootCause(None, C.UNKNOWN, 0.0, [], [])
CASCADE_PATH = Propagation(
    "e_db",
    "db",
    [
        PropagationStep("db", "e_db", T0),
        PropagationStep("api", "e_api", T0 + MIN),
        PropagationStep("web", "e_web", T0 + 2 * MIN),
    ],
    "The cascade started on db.",
)


def kinds(recs: list[Recommendation]) -> list[tuple[RecommendationKind, str]]:
    return [(r.kind, r.target) for r in recs]


def recs_for(
    error: ErrorSnapshot,
    rc: RootCause,
    propagation: Propagation | None = None,
    changes: list = [],  # noqa: B006
) -> list[Recommendation]:
    recs = recommendations_for(error, rc, propagation, changes, CASCADE)
    assert [r.priority for r in recs] == list(range(1, len(recs) + 1))
    assert all(r.title and r.rationale for r in recs)
    return recs


def test_cascade_looks_at_the_origin_and_breaks_the_edge_it_came_in_by() -> None:
    cascade = Cause(C.DEPENDENCY_FAILURE, "db failed first", 0.9, "db", [])
    recs = recs_for(snap("e_web", "web"), primary(cascade), CASCADE_PATH)
    assert kinds(recs) == [(R.INVESTIGATE_ORIGIN, "db"), (R.ADD_CIRCUIT_BREAKER, "web->api")]
    assert recs[0].title == "Look at db first: the cascade started there"
    assert "The cascade started on db." in recs[0].rationale
    assert recs[1].title == "Add a circuit breaker on web → api"


def test_cascade_through_a_silent_resource_breaks_the_first_hop() -> None:
    path = Propagation("e_db", "db", [PropagationStep("db", "e_db", T0), PropagationStep("web", "e_web", T0 + MIN)], "")
    cascade = Cause(C.DEPENDENCY_FAILURE, "db failed first", 0.7, "db", [])
    recs = recs_for(snap("e_web", "web"), primary(cascade), path)
    assert (R.ADD_CIRCUIT_BREAKER, "web->api") in kinds(recs)


def test_a_recent_change_is_rolled_back_by_name_and_version() -> None:
    deploy = change("chg_1", "api", T0 - 30 * MIN, "v2.1.0")
    cause = Cause(C.RECENT_CHANGE, "Deployment v2.1.0 on api", 0.84, "api", [Evidence(0, "chg_1", "")])
    (rec,) = recs_for(snap("e", "api"), primary(cause), changes=[deploy])
    assert (rec.kind, rec.target, rec.title) == (R.ROLLBACK_CHANGE, "chg_1", "Roll back deployment v2.1.0 on api")
    assert rec.rationale == "Primary cause (score 0.84): Deployment v2.1.0 on api."


def test_a_config_change_without_version_is_named_by_its_id() -> None:
    config = change("chg_9", "api", T0 - MIN, kind=ChangeKind.CONFIG)
    cause = Cause(C.RECENT_CHANGE, "Config change chg_9 on api", 0.5, "api", [])
    (rec,) = recs_for(snap("e", "api"), primary(cause), changes=[config])
    assert rec.title == "Roll back config change chg_9 on api"


def test_saturation_names_the_metric() -> None:
    cause = Cause(C.SATURATION, "cpu on api reached 97%", 0.7, "api", [Evidence(0, "cpu", "")])
    (rec,) = recs_for(snap("e", "api"), primary(cause))
    assert (rec.kind, rec.target) == (R.SCALE_RESOURCE, "cpu")
    assert rec.title == "Scale api or raise its limits: cpu is saturated"


def test_a_burst_is_investigated_on_its_resource() -> None:
    cause = Cause(C.ERROR_BURST, "5 errors on api", 0.3, "api", [])
    assert kinds(recs_for(snap("e", "api"), primary(cause))) == [(R.INVESTIGATE_ERROR, "api")]


def test_signals_elsewhere_look_there_and_break_the_call() -> None:
    cause = Cause(C.EXTERNAL_DEPENDENCY, "2 failing spans point at payments", 0.4, "payments", [])
    assert kinds(recs_for(snap("e", "api"), primary(cause))) == [
        (R.INVESTIGATE_ORIGIN, "payments"),
        (R.ADD_CIRCUIT_BREAKER, "api->payments"),
    ]
    # A known resource that api does not call gets no breaker on a call that does not exist.
    lb = Cause(C.EXTERNAL_DEPENDENCY, "1 error log points at lb", 0.2, "lb", [])
    assert kinds(recs_for(snap("e", "api"), primary(lb))) == [(R.INVESTIGATE_ORIGIN, "lb")]


def test_critical_escalates_first() -> None:
    cause = Cause(C.SATURATION, "cpu on api reached 97%", 0.7, "api", [Evidence(0, "cpu", "")])
    recs = recs_for(snap("e", "api", severity=Severity.CRITICAL), primary(cause, confidence=0.7))
    assert kinds(recs) == [(R.ESCALATE, "api"), (R.SCALE_RESOURCE, "cpu")]
    assert recs[0].title == "Escalate: CRITICAL error on api"
    assert "cpu on api reached 97% (confidence 0.70)" in recs[0].rationale


def test_contributing_factors_follow_the_primary_and_duplicates_go() -> None:
    a = Cause(C.SATURATION, "cpu", 0.7, "api", [Evidence(0, "cpu", "")])
    b = Cause(C.SATURATION, "cpu again", 0.5, "api", [Evidence(1, "cpu", "")])
    c = Cause(C.ERROR_BURST, "burst", 0.3, "api", [])
    recs = recs_for(snap("e", "api"), primary(a, b, c))
    assert kinds(recs) == [(R.SCALE_RESOURCE, "cpu"), (R.INVESTIGATE_ERROR, "api")]
    assert recs[1].rationale.startswith("Contributing factor (score 0.30)")


def test_nothing_known_gives_only_the_generic_but_true_inspection() -> None:
    (rec,) = recs_for(snap("e", "api", error_type="KeyError", stack_trace="Traceback ..."), NOTHING)
    assert (rec.kind, rec.target) == (R.INVESTIGATE_ERROR, "api")
    assert rec.title == "Inspect the stack trace of KeyError on api"
    assert rec.rationale.startswith("No cause stood out")


def test_nothing_known_without_stack_trace_or_resource_says_so() -> None:
    (rec,) = recs_for(snap("e", "", service="checkout"), NOTHING)
    assert rec.title == "Inspect the error on checkout: no stack trace was captured"
    (rec,) = recs_for(snap("e", ""), NOTHING)
    assert rec.title == "Inspect the error on the reporting service: no stack trace was captured"


def test_nothing_known_mentions_missing_context() -> None:
    statuses = [
        CollectorStatus("prometheus", CollectionState.SKIPPED),
        CollectorStatus("loki", CollectionState.FAILED),
        CollectorStatus("tempo", CollectionState.EMPTY),
    ]
    (rec,) = recs_for(snap("e", "api", context=ErrorContext(statuses=statuses)), NOTHING)
    assert "The context is incomplete (loki FAILED, prometheus SKIPPED)" in rec.rationale


def test_nothing_known_and_critical_escalates_and_inspects() -> None:
    recs = recs_for(snap("e", "api", severity=Severity.CRITICAL), NOTHING)
    assert kinds(recs) == [(R.ESCALATE, "api"), (R.INVESTIGATE_ERROR, "api")]
    assert "No cause was found" in recs[0].rationale
