"""ReplayError's analysis of one error: a pure function of the snapshot and what the store knows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from errorreplay_server.analysis.correlation import (
    DependencyGraph,
    affected_resources,
    dedupe_dependencies,
    related_changes,
    related_errors,
)
from errorreplay_server.analysis.coverage import context_coverage
from errorreplay_server.analysis.model import ReplayAnalysis
from errorreplay_server.analysis.propagation import propagation_path
from errorreplay_server.analysis.recommendations import recommendations_for
from errorreplay_server.analysis.root_cause import candidate_causes, root_cause_from
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.analysis.timeline import build_timeline
from errorreplay_server.domain.model import Change, Dependency, ErrorSnapshot, Micros


def analyse(
    error: ErrorSnapshot,
    related_errors_in: Iterable[ErrorSnapshot],
    changes: Iterable[Change],
    dependencies: Sequence[Dependency],
    group_first_seen: Micros | None,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> ReplayAnalysis:
    """Timeline, propagation, root cause, recommendations and related changes of `error`.

    - `related_errors_in`: candidates from the store; only those passing the relation rule are used.
    - `changes`: candidates from the store; merged with the frozen context's changes (by id), and
      only those at or before the error, within the change window, on its resource or a
      dependency are used.
    - `dependencies`: DEPENDS_ON edges from the store; merged with the frozen topology's.
    - `group_first_seen`: when the error's group was first seen (None if unknown); a change
      before it is a stronger suspect.
    Deterministic: the same inputs give the same output, whatever their order.
    """
    context = error.context
    frozen_edges = context.topology.dependencies if context.topology else []
    graph = DependencyGraph.of(dedupe_dependencies(dependencies, frozen_edges))
    related = related_errors(error, related_errors_in, graph, settings)
    changes_here = related_changes(error, [*changes, *context.changes], graph, settings)
    timeline = build_timeline(error, related, changes_here, context, settings)
    propagation = propagation_path(error, related, graph, settings)
    ranked = candidate_causes(
        error,
        timeline=timeline,
        propagation=propagation,
        related_errors=related,
        related_changes=changes_here,
        dependencies=graph,
        group_first_seen=group_first_seen,
        context=context,
        settings=settings,
    )
    root_cause = root_cause_from(ranked, settings)
    coverage = context_coverage(context, settings)
    return ReplayAnalysis(
        timeline=timeline,
        propagation=propagation,
        root_cause=root_cause,
        recommendations=recommendations_for(error, root_cause, propagation, changes_here, graph, coverage),
        related_changes=changes_here,
        related_errors=related,
        affected_resource_ids=affected_resources(error, graph, settings.related_hops),
        context_coverage=coverage,
    )
