import random

import pytest

from errorreplay_server.analysis.correlation import cascade_errors as cascade_linked
from errorreplay_server.analysis.model import RootCauseCategory
from errorreplay_server.analysis.propagation import correlation_origin, propagation_path, silent_hops
from errorreplay_server.analysis.replay import analyse
from errorreplay_server.analysis.settings import AnalysisSettings

from .builders import CASCADE, MIN, T0, edges, snap


def path_of(p: object) -> list[tuple[str, str]]:
    assert p is not None
    return [(s.resource_id, s.error_id) for s in p.path]  # type: ignore[attr-defined]


def cascade_errors() -> tuple:
    db = snap("e_db", "db", T0, correlation_id="c1")
    api = snap("e_api", "api", T0 + MIN, correlation_id="c1")
    web = snap("e_web", "web", T0 + 2 * MIN, correlation_id="c1")
    return db, api, web


def test_cascade_from_db_through_api_to_web() -> None:
    db, api, web = cascade_errors()
    p = propagation_path(web, [db, api], CASCADE)
    assert p is not None
    assert (p.origin_error_id, p.origin_resource_id) == ("e_db", "db")
    assert path_of(p) == [("db", "e_db"), ("api", "e_api"), ("web", "e_web")]
    assert [s.occurred_at for s in p.path] == [T0, T0 + MIN, T0 + 2 * MIN]
    assert p.explanation == (
        "The cascade started on db at 2024-05-01T12:00:00Z (e_db). api, which depends on db, failed 1 min "
        "later (e_api); web, which depends on api, failed 2 min later (e_web)."
    )


def test_the_middle_of_the_cascade_and_its_start() -> None:
    db, api, web = cascade_errors()
    assert path_of(propagation_path(api, [db, web], CASCADE)) == [("db", "e_db"), ("api", "e_api")]
    assert propagation_path(db, [api, web], CASCADE) is None


def test_a_caller_that_failed_earlier_is_not_a_cause() -> None:
    lb = snap("e_lb", "lb", T0 - MIN)
    assert propagation_path(snap("e_web", "web", T0), [lb], CASCADE) is None


def test_a_dependency_that_failed_after_the_error_is_not_a_cause() -> None:
    web = snap("e_web", "web", T0)
    later_db = snap("e_db", "db", T0 + MIN)
    assert propagation_path(web, [later_db], CASCADE) is None
    # An earlier api failure still explains it; the later db failure stays out of the path.
    api = snap("e_api", "api", T0 - MIN)
    assert path_of(propagation_path(web, [later_db, api], CASCADE)) == [("api", "e_api"), ("web", "e_web")]


def test_a_silent_resource_in_between_is_named_in_the_explanation() -> None:
    db = snap("e_db", "db", T0)
    web = snap("e_web", "web", T0 + 2 * MIN)
    p = propagation_path(web, [db], CASCADE)
    assert p is not None
    assert path_of(p) == [("db", "e_db"), ("web", "e_web")]
    assert "web, which depends on db through api (no error reported), failed 2 min later" in p.explanation
    assert silent_hops(p.path, CASCADE) == 1


def test_errors_without_a_resource_are_left_out() -> None:
    db, api, web = cascade_errors()
    loose = snap("e_loose", "", T0 - 5 * MIN, correlation_id="c1")
    assert path_of(propagation_path(web, [loose, db, api], CASCADE))[0] == ("db", "e_db")
    assert propagation_path(snap("e_x", "", T0 + 5 * MIN), [db, api, web], CASCADE) is None


def test_two_origins_at_the_same_time_and_depth_take_the_smallest_error_id() -> None:
    graph = edges("web>api", "api>db1", "api>db2")
    a = snap("e_b", "db1", T0)
    b = snap("e_a", "db2", T0)
    web = snap("e_web", "web", T0 + 2 * MIN)
    api = snap("e_api", "api", T0 + MIN)
    for related in ([a, b, api], [b, a, api], [api, a, b]):
        p = propagation_path(web, related, graph)
        assert p is not None
        assert (p.origin_error_id, p.origin_resource_id) == ("e_a", "db2")


def test_the_deepest_failing_dependency_wins_over_an_earlier_shallow_one() -> None:
    graph = edges("web>api", "api>db", "web>cache")
    cache = snap("e_cache", "cache", T0 - MIN)
    db = snap("e_db", "db", T0)
    api = snap("e_api", "api", T0 + MIN)
    p = propagation_path(snap("e_web", "web", T0 + 2 * MIN), [cache, db, api], graph)
    assert p is not None and p.origin_resource_id == "db"


def test_the_earliest_error_on_the_origin_is_the_origin() -> None:
    db1 = snap("e_db1", "db", T0 - 3 * MIN)
    db2 = snap("e_db2", "db", T0)
    api = snap("e_api", "api", T0 + MIN)
    p = propagation_path(snap("e_web", "web", T0 + 2 * MIN), [db2, api, db1], CASCADE)
    assert path_of(p) == [("db", "e_db1"), ("api", "e_api"), ("web", "e_web")]


def test_the_path_names_every_failing_resource_it_can() -> None:
    # web calls db directly and through api; the path through api explains more.
    graph = edges("web>api", "api>db", "web>db")
    db, api, web = cascade_errors()
    assert path_of(propagation_path(web, [db, api], graph)) == [("db", "e_db"), ("api", "e_api"), ("web", "e_web")]


def test_each_step_takes_the_earliest_error_that_follows_the_previous_one() -> None:
    db = snap("e_db", "db", T0)
    api_early = snap("e_api0", "api", T0 - MIN)
    api1 = snap("e_api1", "api", T0 + MIN)
    api2 = snap("e_api2", "api", T0 + 90 * 1_000_000)
    web = snap("e_web", "web", T0 + 2 * MIN)
    p = propagation_path(web, [api2, db, api1, api_early], CASCADE)
    assert path_of(p) == [("db", "e_db"), ("api", "e_api1"), ("web", "e_web")]


def test_equal_times_put_the_dependency_first() -> None:
    db = snap("z_db", "db", T0)
    api = snap("y_api", "api", T0)
    web = snap("x_web", "web", T0)
    p = propagation_path(web, [api, db], CASCADE)
    assert path_of(p) == [("db", "z_db"), ("api", "y_api"), ("web", "x_web")]
    assert "failed at the same time" in p.explanation  # type: ignore[union-attr]


def test_cycles_end_and_give_one_answer() -> None:
    cyclic = edges("a>b", "b>c", "c>a")
    b = snap("e_b", "b", T0)
    c = snap("e_c", "c", T0 - MIN)
    a_earlier = snap("e_a0", "a", T0 - 2 * MIN)
    a = snap("e_a", "a", T0 + MIN)
    p = propagation_path(a, [b, c, a_earlier], cyclic)
    # c is two hops deep from a; the earlier error on a itself is never an origin.
    assert p is not None and p.origin_resource_id == "c"
    assert path_of(p) == [("c", "e_c"), ("b", "e_b"), ("a", "e_a")]


def test_cycles_with_equal_times_stay_deterministic() -> None:
    cyclic = edges("a>b", "b>c", "c>a")
    errors = [snap("e_a", "a"), snap("e_b", "b"), snap("e_c", "c")]
    for target in errors:
        others = [e for e in errors if e is not target]
        first = propagation_path(target, others, cyclic)
        second = propagation_path(target, others[::-1], cyclic)
        assert first == second
        assert first is not None
        assert len({s.resource_id for s in first.path}) == len(first.path)


def test_a_two_node_cycle_with_bouncing_errors_names_each_resource_once() -> None:
    cyclic = edges("a>b", "b>a")
    errors = [snap("b1", "b", T0), snap("a1", "a", T0 + MIN), snap("b2", "b", T0 + 2 * MIN)]
    p = propagation_path(snap("a2", "a", T0 + 3 * MIN), errors, cyclic)
    assert path_of(p) == [("b", "b1"), ("a", "a2")]


def test_long_chains_follow_dependencies_beyond_two_hops_step_by_step() -> None:
    chain = edges("a>b", "b>c", "c>d", "d>e")
    errors = [snap(f"e_{r}", r, T0 - i * MIN) for i, r in enumerate("bcde", start=1)]
    p = propagation_path(snap("e_a", "a", T0), errors, chain)
    assert p is not None and p.origin_resource_id == "e"
    assert [s.resource_id for s in p.path] == ["e", "d", "c", "b", "a"]


# --- correlation origin ---------------------------------------------------------------------


def test_correlation_origin_of_the_cascade_is_db() -> None:
    db, api, web = cascade_errors()
    errors = [web, api, db]
    for _ in range(5):
        random.Random(_).shuffle(errors)
        p = correlation_origin(errors, CASCADE)
        assert p is not None and p.origin_error_id == "e_db"
        assert path_of(p) == [("db", "e_db"), ("api", "e_api"), ("web", "e_web")]


def test_correlation_origin_ignores_a_later_unexplained_error() -> None:
    db, api, web = cascade_errors()
    stray = snap("e_stray", "stray", T0 + 5 * MIN, correlation_id="c1")
    loose = snap("e_loose", "", T0 + 6 * MIN, correlation_id="c1")
    p = correlation_origin([db, api, web, stray, loose], CASCADE)
    assert p is not None and p.origin_error_id == "e_db"


def test_correlation_origin_agrees_with_the_replay_of_its_last_step() -> None:
    db, api, web = cascade_errors()
    p = correlation_origin([db, api, web], CASCADE)
    assert p == propagation_path(web, [db, api], CASCADE)


def test_correlation_origin_without_a_cascade_is_none() -> None:
    assert correlation_origin([], CASCADE) is None
    # lb calls web, so an lb error before a web error explains nothing.
    assert correlation_origin([snap("a", "lb"), snap("b", "web", T0 + MIN)], CASCADE) is None
    assert correlation_origin([snap("a", ""), snap("b", "")], CASCADE) is None


def test_a_resource_whose_error_came_too_late_is_passed_but_not_called_silent() -> None:
    db = snap("e_db", "db", T0)
    late_api = snap("e_api", "api", T0 + 3 * MIN)
    p = propagation_path(snap("e_web", "web", T0 + 2 * MIN), [db, late_api], CASCADE)
    assert p is not None
    assert path_of(p) == [("db", "e_db"), ("web", "e_web")]
    assert "web, which depends on db through api, failed 2 min later" in p.explanation
    assert silent_hops(p.path, CASCADE) == 1


# --- deep cascades (issue 20) ---------------------------------------------------------------


def chain(n: int) -> list:
    """s1 <- s2 <- ... <- sn: each service depends on the one before; s1 is the database."""
    return edges(*(f"s{i + 1}>s{i}" for i in range(1, n)))


def chain_errors(n: int, gap: int, correlation_id: str = "", silent: tuple[int, ...] = ()) -> list:
    """One error per service, s1 first, each `gap` after its dependency's; none on `silent`."""
    return [
        snap(f"e{i}", f"s{i}", T0 + (i - 1) * gap, correlation_id=correlation_id)
        for i in range(1, n + 1)
        if i not in silent
    ]


@pytest.mark.parametrize(
    ("n", "gap", "correlation_id"),
    [(5, MIN // 2, ""), (5, MIN // 2, "req-5"), (6, MIN, ""), (6, MIN, "req-6"), (8, 2 * MIN, ""), (8, 2 * MIN, "r8")],
)
def test_replay_follows_a_chain_to_its_origin(n: int, gap: int, correlation_id: str) -> None:
    # The 8-service chain spans 14 min, beyond the 10 min related window: the cascade goes on
    # as long as each service fails within the window after its dependency.
    *before, last = chain_errors(n, gap, correlation_id)
    replay = analyse(last, before, [], chain(n), None)
    assert replay.propagation is not None
    assert replay.propagation.origin_resource_id == "s1"
    assert [s.resource_id for s in replay.propagation.path] == [f"s{i}" for i in range(1, n + 1)]
    assert replay.root_cause.category == RootCauseCategory.DEPENDENCY_FAILURE
    assert replay.root_cause.primary_cause is not None and replay.root_cause.primary_cause.resource_id == "s1"
    assert {e.error_id for e in replay.related_errors} == {e.error_id for e in before}


def test_a_chain_crosses_a_silent_service_within_the_hop_limit() -> None:
    *before, last = chain_errors(6, MIN, silent=(3,))
    replay = analyse(last, before, [], chain(6), None)
    assert replay.propagation is not None and replay.propagation.origin_resource_id == "s1"
    assert [s.resource_id for s in replay.propagation.path] == ["s1", "s2", "s4", "s5", "s6"]
    assert "s3 (no error reported)" in replay.propagation.explanation


def test_more_silent_services_than_the_hop_limit_end_the_chain() -> None:
    *before, last = chain_errors(6, MIN, silent=(3, 4))
    replay = analyse(last, before, [], chain(6), None)
    assert replay.propagation is not None and replay.propagation.origin_resource_id == "s5"
    assert {e.error_id for e in replay.related_errors} == {"e5"}


def test_a_gap_in_time_ends_the_chain() -> None:
    # s2 failed 11 min after s1, beyond the related window: s1's failure is not part of it.
    errors = [snap("e1", "s1", T0), *(snap(f"e{i}", f"s{i}", T0 + 11 * MIN + (i - 2) * MIN) for i in range(2, 7))]
    *before, last = errors
    replay = analyse(last, before, [], chain(6), None)
    assert replay.propagation is not None and replay.propagation.origin_resource_id == "s2"
    assert "e1" not in {e.error_id for e in replay.related_errors}


def test_the_cascade_depth_is_a_setting() -> None:
    *before, last = chain_errors(8, MIN)
    replay = analyse(last, before, [], chain(8), None, AnalysisSettings(max_cascade_depth=3))
    assert replay.propagation is not None and replay.propagation.origin_resource_id == "s5"


def test_cascade_links_are_symmetric() -> None:
    errors = chain_errors(8, 2 * MIN)
    deps = chain(8)
    for a in errors:
        linked = {e.error_id for e in cascade_linked(a, errors, deps)}
        for b in errors:
            if b.error_id != a.error_id:
                assert (b.error_id in linked) == (a.error_id in {e.error_id for e in cascade_linked(b, errors, deps)})
    # Two callers of one failing dependency are not linked through it.
    fan = edges("a>db", "b>db")
    trio = [snap("db1", "db", T0), snap("a1", "a", T0 + MIN), snap("b1", "b", T0 + MIN)]
    assert [e.error_id for e in cascade_linked(trio[1], trio, fan)] == ["db1"]
