"""Which errors and changes relate to an error, and the DEPENDS_ON graph walks behind that.

Edges run from the dependent to its dependency (`api DEPENDS_ON db`). Walking "towards
dependencies" goes api -> db; "towards dependents" goes db -> api, towards the callers.

The relation rule, symmetric by construction, is `RelationRule`: replays (`related_errors`) and
the stream hub (streaming/hub.py) both ask it, with the same AnalysisSettings, so
ERRORREPLAY_RELATED_WINDOW and ERRORREPLAY_RELATED_HOPS change both alike. Two distinct errors
are related when
their occurred_at differ by at most the related window and
- they share a correlation_id or a trace_id, or
- they sit on the same resource, or
- one resource reaches the other along DEPENDS_ON within `related_hops` hops, in either
  direction. The path must run one way (a -> b -> c); two callers of one shared dependency are
  not related through it alone, since that dependency's own error, if any, links them.

A cascade reaches further (issue 20): errors are also related when a chain of errors links them,
each step from an error to one on a resource it depends on, within `related_hops` hops (the
stretch of resources with no error a step may cross), at or before it and within the related
window of it; or the same chain read the other way, towards the callers and forward in time. A
chain reaches at most `max_cascade_depth` DEPENDS_ON hops from the error's resource. So a
failure five or eight services deep, each service failing shortly after its dependency, is
followed to its origin, with or without a correlation id, while a stretch of more than
`related_hops` hops through silent resources, or a pause longer than the window, ends it. Read
backwards a chain is a chain, so on a chain of services this too is symmetric.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from errorreplay_server.analysis.model import CorrelationReason
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.domain.model import Change, Dependency, ErrorSnapshot, Micros, nearest


def occurred_at(error: ErrorSnapshot) -> Micros:
    """When the error happened; the receipt time stands in if the report had none."""
    return error.report.occurred_at or error.received_at


def order_key(error: ErrorSnapshot) -> tuple[Micros, str]:
    """The analysis' total order of errors: by time, then by error_id for equal times."""
    return occurred_at(error), error.error_id


class Direction(Enum):
    TOWARDS_DEPENDENCIES = "dependencies"
    TOWARDS_DEPENDENTS = "dependents"


@dataclass(frozen=True, slots=True)
class DependencyGraph:
    """Adjacency of DEPENDS_ON edges, both ways, with neighbours sorted so walks are deterministic.
    Self-loops are ignored; duplicate edges count once."""

    dependencies: dict[str, tuple[str, ...]]
    dependents: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, edges: Iterable[Dependency]) -> DependencyGraph:
        down: dict[str, set[str]] = {}
        up: dict[str, set[str]] = {}
        for edge in edges:
            if not edge.dependent_id or not edge.dependency_id or edge.dependent_id == edge.dependency_id:
                continue
            down.setdefault(edge.dependent_id, set()).add(edge.dependency_id)
            up.setdefault(edge.dependency_id, set()).add(edge.dependent_id)
        return cls(
            {k: tuple(sorted(v)) for k, v in down.items()},
            {k: tuple(sorted(v)) for k, v in up.items()},
        )

    def knows(self, resource_id: str) -> bool:
        return resource_id in self.dependencies or resource_id in self.dependents

    def neighbours(self, resource_id: str, direction: Direction) -> tuple[str, ...]:
        side = self.dependencies if direction is Direction.TOWARDS_DEPENDENCIES else self.dependents
        return side.get(resource_id, ())

    def distances(self, start: str, direction: Direction, max_hops: int | None = None) -> dict[str, int]:
        """Hop distance from `start` to every resource reachable one way, `start` itself at 0.
        Breadth-first with a visited set, so cycles end the walk instead of looping."""
        seen = {start: 0}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            hops = seen[node]
            if max_hops is not None and hops >= max_hops:
                continue
            for nxt in self.neighbours(node, direction):
                if nxt not in seen:
                    seen[nxt] = hops + 1
                    queue.append(nxt)
        return seen

    def path(self, start: str, goal: str, direction: Direction) -> list[str]:
        """A shortest path from start to goal, both included; [] when there is none. Among equal
        paths the one through the alphabetically first neighbours wins."""
        parents: dict[str, str] = {start: start}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if node == goal:
                out = [node]
                while node != start:
                    node = parents[node]
                    out.append(node)
                return out[::-1]
            for nxt in self.neighbours(node, direction):
                if nxt not in parents:
                    parents[nxt] = node
                    queue.append(nxt)
        return []


GraphLike = DependencyGraph | Iterable[Dependency]


def as_graph(dependencies: GraphLike) -> DependencyGraph:
    return dependencies if isinstance(dependencies, DependencyGraph) else DependencyGraph.of(dependencies)


def hop_distances(
    start: str, dependencies: GraphLike, direction: Direction, max_hops: int | None = None
) -> dict[str, int]:
    """Hop distance from `start` (0) to each resource reachable along DEPENDS_ON one way."""
    return as_graph(dependencies).distances(start, direction, max_hops)


def affected_resources(error: ErrorSnapshot, dependencies: GraphLike, max_hops: int = 2) -> list[str]:
    """Resources that depend on the error's resource, directly or through others, within
    max_hops: the callers a failure here can reach. Nearest first, then by id. With
    web -> api -> db and lb -> web, the db error affects api and web but not lb (3 hops)."""
    resource = error.report.resource_id
    if not resource:
        return []
    found = hop_distances(resource, dependencies, Direction.TOWARDS_DEPENDENTS, max_hops)
    found.pop(resource, None)
    return sorted(found, key=lambda r: (found[r], r))


def neighbour_resource_ids(resource_id: str, dependencies: GraphLike, max_hops: int = 2) -> list[str]:
    """The resource and every resource within max_hops of it one way or the other: where a
    related error may sit (what a store query for related errors should ask for)."""
    if not resource_id:
        return []
    graph = as_graph(dependencies)
    found = set(graph.distances(resource_id, Direction.TOWARDS_DEPENDENCIES, max_hops))
    found.update(graph.distances(resource_id, Direction.TOWARDS_DEPENDENTS, max_hops))
    return sorted(found)


@dataclass(slots=True)
class RelationFacts:
    """What the relation rule reads of an error; small, so the hub can remember thousands. Not
    frozen, though never changed: a frozen one is built four times slower (object.__setattr__
    per field), and a GetError builds one per candidate. Not a NamedTuple either: its fields
    read slower, and the hub reads them in a loop over its memory."""

    error_id: str
    occurred_at: Micros
    correlation_id: str
    trace_id: str
    resource_id: str

    @classmethod
    def of(cls, error: ErrorSnapshot) -> RelationFacts:
        r = error.report
        return cls(error.error_id, occurred_at(error), r.correlation_id, r.trace_id, r.resource_id)


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    """The resources within related_hops of one resource along DEPENDS_ON, each way, itself left
    out: the dependencies it reaches, and the dependents (callers) that reach it."""

    resource_id: str
    dependencies: frozenset[str]
    dependents: frozenset[str]

    @property
    def resource_ids(self) -> frozenset[str]:
        return self.dependencies | self.dependents


NO_NEIGHBOURHOOD = Neighbourhood("", frozenset(), frozenset())


class RelationRule:
    """The one definition of "related" (see the module docstring), for one AnalysisSettings."""

    __slots__ = ("hops", "limit", "window_us")

    def __init__(self, settings: AnalysisSettings = DEFAULT_SETTINGS) -> None:
        self.window_us = settings.related_window_us
        self.hops = settings.related_hops
        self.limit = settings.related_limit

    def neighbourhood(self, resource_id: str, dependencies: GraphLike) -> Neighbourhood:
        if not resource_id:
            return NO_NEIGHBOURHOOD
        graph = as_graph(dependencies)
        down = graph.distances(resource_id, Direction.TOWARDS_DEPENDENCIES, self.hops)
        up = graph.distances(resource_id, Direction.TOWARDS_DEPENDENTS, self.hops)
        return Neighbourhood(resource_id, frozenset(down) - {resource_id}, frozenset(up) - {resource_id})

    def reason(self, a: RelationFacts, b: RelationFacts, near: Neighbourhood) -> CorrelationReason | None:
        """Why `b` is related to `a`, or None when it is not. The first reason that holds wins,
        in this order: same correlation id, same trace id, same resource, then the graph:
        DOWNSTREAM_FAILURE when `b` sits on a dependency of `a`'s resource, UPSTREAM_FAILURE when
        on a dependent (a caller). `near` is this rule's neighbourhood of `a`'s resource or of
        `b`'s: hop distance one way is the distance the other way back, so either answers
        alike (a replay knows the replayed error's, the hub the newest error's)."""
        found = self.first_related((a,), b, near)
        return found[0] if found is not None else None

    def first_related(
        self, candidates: Iterable[RelationFacts], b: RelationFacts, near: Neighbourhood
    ) -> tuple[CorrelationReason, RelationFacts] | None:
        """The first candidate `a` that `b` is related to, and `reason(a, b, near)`. The rule is
        written here only, as one loop, so the hub can scan a subscription's memory per error."""
        window, t, error_id = self.window_us, b.occurred_at, b.error_id
        correlation_id, trace_id, resource_id = b.correlation_id, b.trace_id, b.resource_id
        near_id, below, above = near.resource_id, near.dependencies, near.dependents
        near_is_b = near_id == resource_id
        for a in candidates:
            if abs(a.occurred_at - t) > window or a.error_id == error_id:
                continue
            if correlation_id and a.correlation_id == correlation_id:
                return CorrelationReason.SAME_CORRELATION_ID, a
            if trace_id and a.trace_id == trace_id:
                return CorrelationReason.SAME_TRACE_ID, a
            other = a.resource_id
            if not resource_id or not other:
                continue
            if other == resource_id:
                return CorrelationReason.SAME_RESOURCE, a
            if near_is_b:
                b_below, b_above = other in above, other in below
            elif near_id == other:
                b_below, b_above = resource_id in below, resource_id in above
            else:
                raise ValueError(f"the neighbourhood of {near_id!r} is neither error's resource")
            if b_below:
                return CorrelationReason.DOWNSTREAM_FAILURE, a
            if b_above:
                return CorrelationReason.UPSTREAM_FAILURE, a
        return None


def relation_reason(
    error: ErrorSnapshot,
    other: ErrorSnapshot,
    dependencies: GraphLike,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> CorrelationReason | None:
    """Why `other` is related to `error`, or None when it is not (`RelationRule.reason`)."""
    rule = RelationRule(settings)
    near = rule.neighbourhood(error.report.resource_id, dependencies)
    return rule.reason(RelationFacts.of(error), RelationFacts.of(other), near)


def are_related(
    a: ErrorSnapshot, b: ErrorSnapshot, dependencies: GraphLike, settings: AnalysisSettings = DEFAULT_SETTINGS
) -> bool:
    """The relation rule; symmetric: are_related(a, b) == are_related(b, a)."""
    return relation_reason(a, b, dependencies, settings) is not None


def related_errors(
    error: ErrorSnapshot,
    candidates: Iterable[ErrorSnapshot],
    dependencies: GraphLike,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
    cascade: Iterable[ErrorSnapshot] | None = None,
) -> list[ErrorSnapshot]:
    """The candidates related to `error`, each once, oldest first (ties by error_id): the pairwise
    rule, and the errors a cascade chain links to it (`cascade`: cascade_errors of the same
    arguments, when the caller has it already). At most related_limit, the nearest in time."""
    candidates = list(candidates)
    graph = as_graph(dependencies)
    rule = RelationRule(settings)
    near = rule.neighbourhood(error.report.resource_id, graph)
    facts = (RelationFacts.of(error),)
    out: dict[str, ErrorSnapshot] = {}
    for other in candidates:
        if other.error_id not in out and rule.first_related(facts, RelationFacts.of(other), near) is not None:
            out[other.error_id] = other
    for other in cascade_errors(error, candidates, graph, settings) if cascade is None else cascade:
        out.setdefault(other.error_id, other)
    return sorted(nearest(out.values(), error.report.occurred_at, settings.related_limit), key=order_key)


def cascade_errors(
    error: ErrorSnapshot,
    candidates: Iterable[ErrorSnapshot],
    dependencies: GraphLike,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> list[ErrorSnapshot]:
    """The candidates a cascade chain links to `error` (see the module docstring), each once,
    oldest first. One walk towards dependencies (back in time) and one towards dependents
    (forward in time); the two walks never mix, so two callers of one dependency are not linked
    through it."""
    resource = error.report.resource_id
    if not resource or settings.max_cascade_depth <= 0:
        return []
    graph = as_graph(dependencies)
    by_resource: dict[str, list[ErrorSnapshot]] = {}
    for e in dict((e.error_id, e) for e in candidates if e.error_id != error.error_id).values():
        if e.report.resource_id:
            by_resource.setdefault(e.report.resource_id, []).append(e)
    times: dict[str, list[Micros]] = {}
    for rid, errors in by_resource.items():
        errors.sort(key=order_key)
        times[rid] = [occurred_at(e) for e in errors]
    window, hops = settings.related_window_us, settings.related_hops
    found: dict[str, ErrorSnapshot] = {}
    for direction, backwards in ((Direction.TOWARDS_DEPENDENCIES, True), (Direction.TOWARDS_DEPENDENTS, False)):
        scope = graph.distances(resource, direction, settings.max_cascade_depth)
        reach: dict[str, list[str]] = {}
        # Per resource, each index points at the next error not yet reached in this walk (union-
        # find with path compression): overlapping windows skip what earlier ones reached, so a
        # walk reads each candidate about once, not once per window it falls in.
        unreached = {rid: list(range(len(errors) + 1)) for rid, errors in by_resource.items()}
        pending = [error]
        while pending:
            x = pending.pop()
            rid, t = x.report.resource_id, occurred_at(x)
            if rid not in reach:
                near = graph.distances(rid, direction, hops)
                reach[rid] = [r for r in near if r != rid and r in scope and r in by_resource]
            lo, hi = (t - window, t) if backwards else (t, t + window)
            for other in reach[rid]:
                errors, at, skip = by_resource[other], times[other], unreached[other]
                i = _next_unreached(skip, bisect.bisect_left(at, lo))
                while i < len(errors) and at[i] <= hi:
                    y = errors[i]
                    pending.append(y)
                    found[y.error_id] = y
                    skip[i] = i + 1
                    i = _next_unreached(skip, i + 1)
    return sorted(found.values(), key=order_key)


def _next_unreached(skip: list[int], i: int) -> int:
    """The first index at or after i not yet reached (skip[i] == i), compressing the path."""
    root = i
    while skip[root] != root:
        root = skip[root]
    while skip[i] != root:
        skip[i], i = root, skip[i]
    return root


def related_changes(
    error: ErrorSnapshot,
    changes: Iterable[Change],
    dependencies: GraphLike,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> list[Change]:
    """Changes that may explain the error: at or before it, within the change window, on its
    resource or on a dependency within `related_hops`. A change after the error never is.
    Newest first (ties by change_id); each change_id once, and the first version of a change
    given wins: callers pass the store's current changes before the frozen context's, so a
    change corrected since capture (moved after the error, say) is judged as it is now."""
    resource = error.report.resource_id
    if not resource:
        return []
    scope = hop_distances(resource, dependencies, Direction.TOWARDS_DEPENDENCIES, settings.related_hops)
    t = occurred_at(error)
    seen: set[str] = set()
    out: dict[str, Change] = {}
    for change in changes:
        if change.change_id in seen:
            continue
        seen.add(change.change_id)
        if change.resource_id not in scope:
            continue
        if t - settings.change_window_us <= change.occurred_at <= t:
            out[change.change_id] = change
    return sorted(out.values(), key=lambda c: (-c.occurred_at, c.change_id))


def dedupe_dependencies(*groups: Sequence[Dependency]) -> list[Dependency]:
    """Edges from several sources (the store, the frozen topology), each once, sorted."""
    edges = {edge for group in groups for edge in group}
    return sorted(edges, key=lambda d: (d.dependent_id, d.dependency_id))
