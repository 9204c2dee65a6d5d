"""Context coverage: when a replay says its diagnosis had little to go on (issue 20)."""

import pytest

from errorreplay_server.analysis.coverage import context_coverage
from errorreplay_server.analysis.model import RecommendationKind
from errorreplay_server.analysis.replay import analyse
from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.domain.model import CollectionState, CollectorStatus, ErrorContext

from .builders import CASCADE, MIN, T0, snap

S = CollectionState


def context(*states: CollectionState) -> ErrorContext:
    names = ["changes", "loki", "prometheus", "tempo", "topology", "elasticsearch", "azure_log_analytics"]
    return ErrorContext(
        statuses=[
            CollectorStatus(name, state, "not configured" if state is S.SKIPPED else "")
            for name, state in zip(names, states, strict=False)
        ]
    )


def test_most_sources_skipped_or_failed_is_limited() -> None:
    coverage = context_coverage(context(S.OK, S.SKIPPED, S.FAILED, S.SKIPPED, S.OK))
    assert coverage.limited and coverage.sources == 5
    assert coverage.missing_sources == [
        "loki SKIPPED: not configured",
        "prometheus FAILED",
        "tempo SKIPPED: not configured",
    ]
    assert coverage.summary.startswith("The diagnosis had little to go on: 3 of 5 context sources gave nothing")


@pytest.mark.parametrize(
    "states",
    [
        (S.OK, S.EMPTY, S.OK, S.SKIPPED),  # an empty answer is an answer
        (S.OK, S.SKIPPED, S.FAILED, S.OK),  # half is not most
    ],
)
def test_enough_sources_is_not_limited(states: tuple[CollectionState, ...]) -> None:
    coverage = context_coverage(context(*states))
    assert not coverage.limited and coverage.summary == ""


def test_no_source_recorded_is_not_judged() -> None:
    coverage = context_coverage(ErrorContext())
    assert (coverage.sources, coverage.limited) == (0, False)


def test_the_threshold_is_a_setting() -> None:
    half = context(S.OK, S.SKIPPED, S.FAILED, S.OK)
    assert context_coverage(half, AnalysisSettings(limited_context_share=0.4)).limited
    assert not context_coverage(
        context(S.PENDING, S.PENDING, S.OK), AnalysisSettings(limited_context_share=0.7)
    ).limited


def test_a_limited_replay_says_so_in_a_recommendation_after_the_others() -> None:
    ctx = context(S.OK, S.SKIPPED, S.SKIPPED, S.FAILED, S.OK)
    db = snap("e_db", "db", T0)
    web = snap("e_web", "web", T0 + 2 * MIN, context=ctx)
    replay = analyse(web, [db, snap("e_api", "api", T0 + MIN)], [], CASCADE, None)
    assert replay.context_coverage.limited
    last = replay.recommendations[-1]
    assert last.kind == RecommendationKind.GATHER_CONTEXT
    assert last.target == "loki,prometheus,tempo"
    assert replay.context_coverage.summary in last.rationale and "refresh_context" in last.rationale
    assert replay.recommendations[0].kind == RecommendationKind.INVESTIGATE_ORIGIN
    full = analyse(snap("e_web", "web", T0 + 2 * MIN, context=context(S.OK, S.OK, S.EMPTY)), [db], [], CASCADE, None)
    assert not full.context_coverage.limited
    assert all(r.kind != RecommendationKind.GATHER_CONTEXT for r in full.recommendations)
