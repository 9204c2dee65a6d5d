import itertools

import pytest

from errorreplay_server.analysis.correlation import (
    DependencyGraph,
    Direction,
    affected_resources,
    are_related,
    hop_distances,
    neighbour_resource_ids,
    related_changes,
    related_errors,
    relation_reason,
)
from errorreplay_server.analysis.model import CorrelationReason
from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.domain.model import MICROS_PER_HOUR, Dependency

from .builders import CASCADE, MIN, T0, change, edges, snap

# --- graph walks ----------------------------------------------------------------------------


def test_hop_distances_each_way() -> None:
    assert hop_distances("web", CASCADE, Direction.TOWARDS_DEPENDENCIES) == {"web": 0, "api": 1, "db": 2}
    assert hop_distances("db", CASCADE, Direction.TOWARDS_DEPENDENTS) == {"db": 0, "api": 1, "web": 2, "lb": 3}
    assert hop_distances("db", CASCADE, Direction.TOWARDS_DEPENDENTS, max_hops=2) == {"db": 0, "api": 1, "web": 2}
    assert hop_distances("nowhere", CASCADE, Direction.TOWARDS_DEPENDENCIES) == {"nowhere": 0}


def test_hop_distances_survive_cycles_and_self_loops() -> None:
    cyclic = edges("a>b", "b>c", "c>a", "a>a")
    assert hop_distances("a", cyclic, Direction.TOWARDS_DEPENDENCIES) == {"a": 0, "b": 1, "c": 2}
    assert hop_distances("a", cyclic, Direction.TOWARDS_DEPENDENTS) == {"a": 0, "c": 1, "b": 2}


def test_graph_ignores_duplicate_and_empty_edges() -> None:
    graph = DependencyGraph.of([Dependency("a", "b"), Dependency("a", "b"), Dependency("", "b")])
    assert graph.dependencies == {"a": ("b",)}
    assert graph.path("a", "b", Direction.TOWARDS_DEPENDENCIES) == ["a", "b"]
    assert graph.path("b", "a", Direction.TOWARDS_DEPENDENCIES) == []


def test_affected_resources_of_db_are_api_and_web_but_not_lb() -> None:
    db_error = snap("e_db", "db")
    assert affected_resources(db_error, CASCADE, max_hops=2) == ["api", "web"]
    assert affected_resources(db_error, CASCADE, max_hops=3) == ["api", "web", "lb"]
    assert affected_resources(snap("e_lb", "lb"), CASCADE) == []
    assert affected_resources(snap("e_x", ""), CASCADE) == []


def test_affected_resources_in_a_cycle_leave_out_the_resource_itself() -> None:
    assert affected_resources(snap("e", "a"), edges("a>b", "b>a")) == ["b"]


def test_neighbour_resource_ids() -> None:
    assert neighbour_resource_ids("api", CASCADE) == ["api", "db", "lb", "web"]
    assert neighbour_resource_ids("db", CASCADE) == ["api", "db", "web"]
    assert neighbour_resource_ids("", CASCADE) == []


# --- the relation rule ----------------------------------------------------------------------


def test_same_correlation_id_relates_errors_on_unrelated_resources() -> None:
    a = snap("a", "x", correlation_id="c1")
    b = snap("b", "y", T0 + 5 * MIN, correlation_id="c1")
    assert relation_reason(a, b, []) == CorrelationReason.SAME_CORRELATION_ID


def test_same_trace_id_relates() -> None:
    a = snap("a", "x", trace_id="t1")
    b = snap("b", "y", T0 + MIN, trace_id="t1")
    assert relation_reason(a, b, []) == CorrelationReason.SAME_TRACE_ID


def test_empty_ids_do_not_match_each_other() -> None:
    assert not are_related(snap("a", "x"), snap("b", "y"), [])
    assert not are_related(snap("a", ""), snap("b", ""), [])


def test_same_resource_relates() -> None:
    assert relation_reason(snap("a", "api"), snap("b", "api", T0 + MIN), []) == CorrelationReason.SAME_RESOURCE


def test_dependencies_within_two_hops_relate_with_direction() -> None:
    web, db, lb = snap("w", "web"), snap("d", "db", T0 + MIN), snap("l", "lb", T0 + MIN)
    assert relation_reason(web, db, CASCADE) == CorrelationReason.DOWNSTREAM_FAILURE
    assert relation_reason(db, web, CASCADE) == CorrelationReason.UPSTREAM_FAILURE
    assert relation_reason(web, lb, CASCADE) == CorrelationReason.UPSTREAM_FAILURE
    # lb -> web -> api -> db is three hops.
    assert not are_related(lb, db, CASCADE)
    assert are_related(lb, db, CASCADE, AnalysisSettings(related_hops=3))


def test_two_callers_of_one_dependency_are_not_related_through_it() -> None:
    shared = edges("a>db", "b>db")
    assert not are_related(snap("1", "a"), snap("2", "b"), shared)


def test_outside_the_window_nothing_relates() -> None:
    a = snap("a", "api", correlation_id="c")
    assert are_related(a, snap("b", "api", T0 + 10 * MIN, correlation_id="c"), [])
    assert not are_related(a, snap("b", "api", T0 + 10 * MIN + 1, correlation_id="c"), [])
    assert not are_related(a, snap("b", "api", T0 - 10 * MIN - 1), [])


def test_an_error_is_not_related_to_itself() -> None:
    a = snap("a", "api", correlation_id="c")
    assert not are_related(a, a, [])


def test_relation_is_symmetric() -> None:
    errors = [
        snap("1", "web", T0, correlation_id="c"),
        snap("2", "db", T0 + 3 * MIN),
        snap("3", "lb", T0 + 9 * MIN, trace_id="t"),
        snap("4", "api", T0 + 12 * MIN, trace_id="t"),
        snap("5", "", T0 + MIN, correlation_id="c"),
        snap("6", "other", T0 + 2 * MIN),
    ]
    for a, b in itertools.permutations(errors, 2):
        assert are_related(a, b, CASCADE) == are_related(b, a, CASCADE), (a.error_id, b.error_id)


def test_related_errors_filters_dedupes_and_orders() -> None:
    error = snap("e", "api", T0)
    candidates = [
        snap("late", "db", T0 + 2 * MIN),
        snap("early", "web", T0 - 2 * MIN),
        snap("early", "web", T0 - 2 * MIN),
        snap("tie_b", "api", T0 - MIN),
        snap("tie_a", "api", T0 - MIN),
        snap("far", "db", T0 + 11 * MIN),
        snap("elsewhere", "other", T0),
        error,
    ]
    got = [e.error_id for e in related_errors(error, candidates, CASCADE)]
    assert got == ["early", "tie_a", "tie_b", "late"]


def test_related_errors_of_an_error_without_resource_use_ids_only() -> None:
    error = snap("e", "", correlation_id="c")
    got = related_errors(error, [snap("a", "api", correlation_id="c"), snap("b", "api")], CASCADE)
    assert [e.error_id for e in got] == ["a"]


# --- related changes ------------------------------------------------------------------------


def test_related_changes_window_resource_and_order() -> None:
    error = snap("e", "api", T0)
    changes = [
        change("recent", "api", T0 - 30 * MIN, "v2.1.0"),
        change("old", "api", T0 - 30 * MICROS_PER_HOUR, "v2.0.0"),
        change("edge", "api", T0 - 24 * MICROS_PER_HOUR),
        change("after", "api", T0 + 1),
        change("at", "api", T0),
        change("dependency", "db", T0 - MIN),
        change("dependent", "web", T0 - MIN),
        change("unknown", "other", T0 - MIN),
        change("recent", "api", T0 - 30 * MIN, "v2.1.0"),
    ]
    got = [c.change_id for c in related_changes(error, changes, CASCADE)]
    assert got == ["at", "dependency", "recent", "edge"]


def test_no_resource_no_related_changes() -> None:
    assert related_changes(snap("e", ""), [change("c", "api", T0 - MIN)], CASCADE) == []


@pytest.mark.parametrize("hops", [0, 1])
def test_related_changes_follow_the_hops_setting(hops: int) -> None:
    got = related_changes(snap("e", "web"), [change("c", "db", T0 - MIN)], CASCADE, AnalysisSettings(related_hops=hops))
    assert got == []
