"""The cascade path of a failure through DEPENDS_ON (docs/ARCHITECTURE.md §4 "Propagation").

Rule, for an error E on resource R:
- Candidates are the correlated errors that sit on a resource other than R. Errors without a
  resource have no place in the graph and are left out; so is an E without a resource.
- Errors are ordered by time. At equal times, the error on the resource farther from R along
  DEPENDS_ON counts as earlier (a dependency fails before its callers notice), then the smaller
  error_id. This is a total order, so no cycle in the graph can make the cascade loop.
- Error y can explain error x when y is earlier than x and y's resource is a dependency of x's
  resource within `related_hops` hops (a step may pass a resource that reported nothing).
- The origin is, among the errors that explain E directly or through a chain, the one on the
  deepest resource: the largest shortest-path hop distance from R along DEPENDS_ON. Ties go to
  the earliest error, then the smallest error_id, then the smallest resource_id.
- A dependency that failed only after E explains nothing: no chain runs backwards in time.
- The path is the longest chain from the origin to E (the most failing resources it can name);
  among equal chains, each step takes the earliest error. A resource appears once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from errorreplay_server.analysis.correlation import (
    DependencyGraph,
    Direction,
    GraphLike,
    as_graph,
    occurred_at,
    order_key,
)
from errorreplay_server.analysis.formatting import human_duration, iso_time
from errorreplay_server.analysis.model import Propagation, PropagationStep
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.domain.model import ErrorSnapshot, Micros


def propagation_path(
    error: ErrorSnapshot,
    related: Iterable[ErrorSnapshot],
    dependencies: GraphLike,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> Propagation | None:
    """The cascade from its origin to `error`, or None when no earlier dependency failure
    explains it. See the module docstring for the rule."""
    root = error.report.resource_id
    if not root:
        return None
    graph = as_graph(dependencies)
    depth = graph.distances(root, Direction.TOWARDS_DEPENDENCIES)
    hops = settings.related_hops

    def key(e: ErrorSnapshot) -> tuple[Micros, int, str]:
        return occurred_at(e), -depth[e.report.resource_id], e.error_id

    target_key = key(error)
    seen: set[str] = {error.error_id}
    earlier: list[ErrorSnapshot] = []
    failing: set[str] = {root}
    for e in related:
        rid = e.report.resource_id
        if e.error_id in seen or not rid or rid == root or rid not in depth:
            continue
        failing.add(rid)
        seen.add(e.error_id)
        if key(e) < target_key:
            earlier.append(e)
    if not earlier:
        return None
    earlier.sort(key=key)
    chain = [*earlier, error]

    # Which errors lead to `error`: walk back from it, latest first.
    reaches = [False] * len(chain)
    reaches[-1] = True
    reaching_resources = {root}
    within: dict[str, set[str]] = {}
    for i in range(len(chain) - 2, -1, -1):
        rid = chain[i].report.resource_id
        if rid not in within:
            within[rid] = _callers_within(graph, rid, hops)
        if within[rid] & reaching_resources:
            reaches[i] = True
            reaching_resources.add(rid)
    explaining = [e for e, ok in zip(chain[:-1], reaches[:-1], strict=True) if ok]
    if not explaining:
        return None
    origin = min(
        explaining,
        key=lambda e: (-depth[e.report.resource_id], occurred_at(e), e.error_id, e.report.resource_id),
    )
    start = next(i for i, e in enumerate(chain) if e.error_id == origin.error_id)
    steps = _longest_chain(chain, reaches, start, graph, hops)
    path = [PropagationStep(e.report.resource_id, e.error_id, occurred_at(e)) for e in steps]
    return Propagation(
        origin_error_id=origin.error_id,
        origin_resource_id=origin.report.resource_id,
        path=path,
        explanation=_explain(path, graph, failing),
    )


def _callers_within(graph: DependencyGraph, resource_id: str, hops: int) -> set[str]:
    found = graph.distances(resource_id, Direction.TOWARDS_DEPENDENTS, hops)
    found.pop(resource_id, None)
    return set(found)


def _longest_chain(
    chain: Sequence[ErrorSnapshot], reaches: Sequence[bool], start: int, graph: DependencyGraph, hops: int
) -> list[ErrorSnapshot]:
    """Longest run of explaining steps from chain[start] to chain[-1] (dynamic programming over
    the time order, which is acyclic). Each step keeps the first predecessor that achieves its
    length, so equal chains take the earliest error; loops through one resource are cut."""
    length: dict[int, int] = {start: 1}
    parent: dict[int, int] = {}
    reach: dict[str, dict[str, int]] = {}
    for i in range(start + 1, len(chain)):
        if not reaches[i]:
            continue
        rid = chain[i].report.resource_id
        if rid not in reach:
            reach[rid] = graph.distances(rid, Direction.TOWARDS_DEPENDENCIES, hops)
        dependencies = reach[rid]
        best = -1
        for j in range(start, i):
            other = chain[j].report.resource_id
            if j in length and other != rid and other in dependencies and (best < 0 or length[j] > length[best]):
                best = j
        if best >= 0:
            length[i], parent[i] = length[best] + 1, best
    steps = [len(chain) - 1]
    while steps[-1] in parent:
        steps.append(parent[steps[-1]])
    ordered = [chain[i] for i in reversed(steps)]
    return _without_loops(ordered)


def _without_loops(steps: list[ErrorSnapshot]) -> list[ErrorSnapshot]:
    """Keep each resource once: from its first visit jump to the step after its last visit.
    The shortened chain stays valid, since the order is total and the skipped-to step depends
    on the same resource."""
    out: list[ErrorSnapshot] = []
    i = 0
    while i < len(steps):
        rid = steps[i].report.resource_id
        last = max(k for k in range(i, len(steps)) if steps[k].report.resource_id == rid)
        # The explained error must stay the last step.
        keep = steps[last] if last == len(steps) - 1 else steps[i]
        out.append(keep)
        i = last + 1
    return out


def _explain(path: Sequence[PropagationStep], graph: DependencyGraph, failing: set[str]) -> str:
    """`The cascade started on db at 12:00:00Z (err_1). api, which depends on db, failed 1 min
    later (err_2); web, which depends on api, failed 2 min later (err_3).` A resource passed
    between two steps is marked when it reported no error at all."""
    origin = path[0]
    text = f"The cascade started on {origin.resource_id} at {iso_time(origin.occurred_at)} ({origin.error_id})."
    hops = []
    for prev, step in itertools.pairwise(path):
        route = graph.path(step.resource_id, prev.resource_id, Direction.TOWARDS_DEPENDENCIES)
        between = [r if r in failing else f"{r} (no error reported)" for r in route[1:-1]]
        through = f" through {', '.join(between)}" if between else ""
        delay = step.occurred_at - origin.occurred_at
        when = f"{human_duration(delay)} later" if delay else "at the same time"
        hops.append(
            f"{step.resource_id}, which depends on {prev.resource_id}{through}, failed {when} ({step.error_id})"
        )
    return f"{text} {'; '.join(hops)}."


def silent_hops(path: Sequence[PropagationStep], dependencies: GraphLike) -> int:
    """Hops of the path through resources that are not steps of it (resources that reported no
    error, or none in the cascade's order)."""
    graph = as_graph(dependencies)
    total = 0
    for prev, step in itertools.pairwise(path):
        route = graph.path(step.resource_id, prev.resource_id, Direction.TOWARDS_DEPENDENCIES)
        total += max(0, len(route) - 2)
    return total


def correlation_origin(
    errors: Iterable[ErrorSnapshot],
    dependencies: GraphLike,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> Propagation | None:
    """Where a set of errors (one correlation id's) started: the propagation of the latest
    error that has an earlier failing dependency in the set, by the same rule as
    propagation_path, so ListErrorsByCorrelation and ReplayError name the same origin. None
    when no error in the set is explained by another."""
    graph = as_graph(dependencies)
    unique = {e.error_id: e for e in errors if e.report.resource_id}
    ordered = sorted(unique.values(), key=order_key)
    first_failure: dict[str, Micros] = {}
    for e in ordered:
        first_failure.setdefault(e.report.resource_id, occurred_at(e))
    for target in reversed(ordered):
        rid, t = target.report.resource_id, occurred_at(target)
        deps = graph.distances(rid, Direction.TOWARDS_DEPENDENCIES, settings.related_hops)
        if any(first_failure.get(d, t + 1) <= t for d in deps if d != rid):
            found = propagation_path(target, ordered, graph, settings)
            if found is not None:
                return found
    return None
