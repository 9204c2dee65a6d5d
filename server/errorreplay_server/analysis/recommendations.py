"""Recommendations, each following from a root-cause candidate and naming what it is about.

From each candidate, primary first, then contributing factors by rank:
- DEPENDENCY_FAILURE: look at the origin resource first; add a circuit breaker on the call
  from the error's resource towards the origin (the cascade edge that reached it).
- RECENT_CHANGE: roll back the change, named by kind and version.
- SATURATION: scale the resource or raise its limits, naming the metric.
- ERROR_BURST: investigate the burst on the resource.
- EXTERNAL_DEPENDENCY: look at the service the signals point at; add a circuit breaker on the
  call to it.
Escalation comes first when the error is CRITICAL. With no candidate, the only other
recommendation is to inspect the error itself, which is always true; there is no filler.
When the context coverage is limited (analysis/coverage.py), a GATHER_CONTEXT recommendation
comes last: the diagnosis above rests on little, so get the missing sources and replay again.
A (kind, target) pair appears once. Priorities run 1, 2, 3... in that order.
"""

from __future__ import annotations

from collections.abc import Sequence

from errorreplay_server.analysis.correlation import Direction, GraphLike, as_graph
from errorreplay_server.analysis.model import (
    Cause,
    ContextCoverage,
    Propagation,
    Recommendation,
    RecommendationKind,
    RootCause,
    RootCauseCategory,
)
from errorreplay_server.analysis.timeline import change_label
from errorreplay_server.domain.model import Change, CollectionState, ErrorSnapshot, Severity

_INCOMPLETE = (CollectionState.PENDING, CollectionState.FAILED, CollectionState.SKIPPED)


def edge_target(dependent: str, dependency: str) -> str:
    """How a recommendation names a DEPENDS_ON edge."""
    return f"{dependent}->{dependency}"


def _where(error: ErrorSnapshot) -> str:
    return error.report.resource_id or error.report.service or "the reporting service"


def _why(cause: Cause, primary: bool) -> str:
    role = "Primary cause" if primary else "Contributing factor"
    return f"{role} (score {cause.score:.2f}): {cause.summary}."


def _change_of(cause: Cause, changes: Sequence[Change]) -> Change | None:
    by_id = {c.change_id: c for c in changes}
    for item in cause.evidence:
        if item.reference_id in by_id:
            return by_id[item.reference_id]
    # Without evidence, the change the summary names on the cause's resource.
    for c in changes:
        if c.resource_id == cause.resource_id and cause.summary.startswith(change_label(c)):
            return c
    return None


def _metric_of(cause: Cause) -> str:
    if cause.evidence:
        return cause.evidence[0].reference_id
    return cause.summary.split(" ", 1)[0]


def _breaker(
    dependent: str, towards: str, graph: GraphLike, why: str, *, unknown_edge_ok: bool = False
) -> Recommendation | None:
    """A circuit breaker on the dependent's own call towards `towards` (the first hop of the
    route). With unknown_edge_ok, a service the topology does not know at all is taken as a
    direct callee, for services that only spans or logs name."""
    known = as_graph(graph)
    route = known.path(dependent, towards, Direction.TOWARDS_DEPENDENCIES)
    if len(route) >= 2:
        callee = route[1]
    elif unknown_edge_ok and not known.knows(towards):
        callee = towards
    else:
        return None
    return Recommendation(
        RecommendationKind.ADD_CIRCUIT_BREAKER,
        f"Add a circuit breaker on {dependent} → {callee}",
        f"{why} A breaker on {dependent}'s calls to {callee} lets {dependent} fail fast or degrade "
        f"instead of failing with {callee}.",
        edge_target(dependent, callee),
        0,
    )


def _from_cause(
    cause: Cause,
    primary: bool,
    error: ErrorSnapshot,
    propagation: Propagation | None,
    changes: Sequence[Change],
    dependencies: GraphLike,
) -> list[Recommendation]:
    why = _why(cause, primary)
    resource = error.report.resource_id
    out: list[Recommendation | None] = []
    if cause.category == RootCauseCategory.DEPENDENCY_FAILURE:
        origin = cause.resource_id
        detail = f" {propagation.explanation}" if propagation is not None else ""
        out.append(
            Recommendation(
                RecommendationKind.INVESTIGATE_ORIGIN,
                f"Look at {origin} first: the cascade started there",
                f"{why}{detail}",
                origin,
                0,
            )
        )
        if resource and propagation is not None and len(propagation.path) >= 2:
            out.append(_breaker(resource, propagation.path[-2].resource_id, dependencies, why))
    elif cause.category == RootCauseCategory.RECENT_CHANGE:
        change = _change_of(cause, changes)
        if change is not None:
            out.append(
                Recommendation(
                    RecommendationKind.ROLLBACK_CHANGE,
                    f"Roll back {change_label(change).lower()} on {change.resource_id}",
                    why,
                    change.change_id,
                    0,
                )
            )
    elif cause.category == RootCauseCategory.SATURATION:
        metric = _metric_of(cause)
        out.append(
            Recommendation(
                RecommendationKind.SCALE_RESOURCE,
                f"Scale {cause.resource_id or _where(error)} or raise its limits: {metric} is saturated",
                why,
                metric,
                0,
            )
        )
    elif cause.category == RootCauseCategory.ERROR_BURST:
        out.append(
            Recommendation(
                RecommendationKind.INVESTIGATE_ERROR,
                f"Investigate the error burst on {cause.resource_id}",
                why,
                cause.resource_id,
                0,
            )
        )
    elif cause.category == RootCauseCategory.EXTERNAL_DEPENDENCY:
        out.append(
            Recommendation(
                RecommendationKind.INVESTIGATE_ORIGIN,
                f"Look at {cause.resource_id} first: failures there preceded this error",
                why,
                cause.resource_id,
                0,
            )
        )
        if resource and resource != cause.resource_id:
            out.append(_breaker(resource, cause.resource_id, dependencies, why, unknown_edge_ok=True))
    return [r for r in out if r is not None]


def _escalation(error: ErrorSnapshot, root_cause: RootCause) -> Recommendation:
    where = _where(error)
    if root_cause.primary_cause is not None:
        known = f" The likeliest cause is: {root_cause.primary_cause.summary} (confidence {root_cause.confidence:.2f})."
    else:
        known = " No cause was found in the captured context."
    return Recommendation(
        RecommendationKind.ESCALATE,
        f"Escalate: CRITICAL error on {where}",
        f"The error's severity is CRITICAL.{known}",
        error.report.resource_id or error.report.service,
        0,
    )


def _inspect_error(error: ErrorSnapshot) -> Recommendation:
    r = error.report
    what = r.error_type or "the error"
    where = _where(error)
    if r.stack_trace:
        title = f"Inspect the stack trace of {what} on {where}"
    else:
        title = f"Inspect {what} on {where}: no stack trace was captured"
    rationale = (
        "No cause stood out: the captured context shows no earlier dependency failure, recent "
        "change, metric anomaly, error burst, or failing span or error log elsewhere."
    )
    gaps = [f"{s.collector} {s.state.name}" for s in error.context.statuses if s.state in _INCOMPLETE]
    if gaps:
        rationale += f" The context is incomplete ({', '.join(sorted(gaps))}), so a cause may be missing from it."
    return Recommendation(RecommendationKind.INVESTIGATE_ERROR, title, rationale, r.resource_id or r.service, 0)


def _gather_context(coverage: ContextCoverage) -> Recommendation:
    names = sorted({item.split(" ", 1)[0] for item in coverage.missing_sources})
    return Recommendation(
        RecommendationKind.GATHER_CONTEXT,
        "Little context was collected: fill the gaps before trusting this diagnosis",
        f"{coverage.summary} The root cause and the recommendations above rest on what is left. "
        "Configure or repair those sources, then replay with refresh_context.",
        ",".join(names),
        0,
    )


def recommendations_for(
    error: ErrorSnapshot,
    root_cause: RootCause,
    propagation: Propagation | None,
    changes: Sequence[Change],
    dependencies: GraphLike,
    coverage: ContextCoverage | None = None,
) -> list[Recommendation]:
    """Recommendations in priority order (see the module docstring). `changes` are the related
    changes the RECENT_CHANGE candidates came from."""
    graph = as_graph(dependencies)
    drafts: list[Recommendation] = []
    if error.report.severity == Severity.CRITICAL:
        drafts.append(_escalation(error, root_cause))
    causes = [root_cause.primary_cause, *root_cause.contributing_factors] if root_cause.primary_cause else []
    for n, cause in enumerate(causes):
        drafts += _from_cause(cause, n == 0, error, propagation, changes, graph)
    if not causes:
        drafts.append(_inspect_error(error))
    if coverage is not None and coverage.limited:
        drafts.append(_gather_context(coverage))
    out: list[Recommendation] = []
    seen: set[tuple[RecommendationKind, str]] = set()
    for draft in drafts:
        key = (draft.kind, draft.target)
        if key in seen:
            continue
        seen.add(key)
        out.append(Recommendation(draft.kind, draft.title, draft.rationale, draft.target, priority=len(out) + 1))
    return out
