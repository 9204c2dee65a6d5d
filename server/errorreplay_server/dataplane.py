"""DataPlane: every operation the API offers, in domain terms. It knows nothing of gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from errorreplay_server.analysis.correlation import (
    DependencyGraph,
    Direction,
    affected_resources,
    cascade_errors,
    occurred_at,
    related_errors,
)
from errorreplay_server.analysis.model import Propagation, ReplayAnalysis
from errorreplay_server.analysis.propagation import correlation_origin
from errorreplay_server.analysis.replay import analyse
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.capture.service import CaptureRequest, CaptureService
from errorreplay_server.capture.validation import check_page_size, filter_violations, raise_if
from errorreplay_server.domain.errors import DomainError, FieldViolation, InvalidArgument, NotFound
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    MICROS_PER_SECOND,
    CaptureOutcome,
    Change,
    ChangeKind,
    Dependency,
    ErrorFilter,
    ErrorGroup,
    ErrorReport,
    ErrorSnapshot,
    GroupOrder,
    GroupStatus,
    Micros,
    Page,
    Resource,
    Severity,
    Statistics,
    TimedCount,
    Topology,
    nearest,
    now_micros,
    statistics_buckets,
)
from errorreplay_server.settings import Limits
from errorreplay_server.store.base import Store
from errorreplay_server.streaming.hub import Hub, Stream
from errorreplay_server.streaming.matcher import ErrorMatcher

SEARCH_PAGE_DEFAULT, SEARCH_PAGE_MAX = 50, 1000
RECENT_PAGE_DEFAULT, RECENT_PAGE_MAX = 20, 100
LIST_PAGE_DEFAULT, LIST_PAGE_MAX = 50, 500
CHANGES_PAGE_DEFAULT, CHANGES_PAGE_MAX = 100, 1000
DEFAULT_WINDOW: Micros = 24 * MICROS_PER_HOUR
DEFAULT_BUCKET: Micros = MICROS_PER_HOUR
# More buckets than this in one statistics call is refused: the answer would not fit a screen.
MAX_BUCKETS = 10_000
DEFAULT_TOP_GROUPS = 10
TOPOLOGY_DEPTH_DEFAULT, TOPOLOGY_DEPTH_MAX = 2, 5
CHANGES_LIMIT = 1000
MIN_HEARTBEAT: Micros = 100_000
MAX_HEARTBEAT: Micros = MICROS_PER_HOUR

T = TypeVar("T")


async def gather_all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """asyncio.gather's results; a lone awaitable is awaited in place, without a task and the
    loop turns one costs (a GetError's rounds mostly read one thing each)."""
    if len(awaitables) == 1:
        return [await awaitables[0]]
    return list(await asyncio.gather(*awaitables))


class NearestLinked:
    """The `limit` errors nearest to `error` (store.related_errors) over a window and a set of
    resources that only grow, as a cascade widens them round by round. Each round reads only what
    can enter the nearest: the new resources over the window, the earlier ones over the window's
    new parts, and both no farther from the error than the farthest kept once `limit` are kept.
    The answer equals one read of every resource over the whole window."""

    def __init__(self, store: Store, error: ErrorSnapshot, limit: int, documents: bool) -> None:
        self._store, self._error, self._limit, self._documents = store, error, limit, documents
        self._kept: list[ErrorSnapshot] = []
        self._resources: frozenset[str] = frozenset()  # read over [self._lo, self._hi]
        self._lo: Micros | None = None
        self._hi: Micros = 0

    async def over(self, lo: Micros, hi: Micros, resource_ids: Collection[str]) -> list[ErrorSnapshot]:
        t = self._error.report.occurred_at
        near_lo, near_hi = lo, hi
        if len(self._kept) >= self._limit:
            reach = max(abs(occurred_at(e) - t) for e in self._kept)
            near_lo, near_hi = max(lo, t - reach), min(hi, t + reach)
        new = sorted(set(resource_ids) - self._resources)
        reads = [(near_lo, near_hi, new)] if new or self._lo is None else []
        if self._lo is not None:
            old = sorted(self._resources)
            reads += [(near_lo, min(near_hi, self._lo - 1), old), (max(near_lo, self._hi + 1), near_hi, old)]
        found = {e.error_id: e for e in self._kept}
        for read in await gather_all(
            [
                self._store.related_errors(self._error, start, end, resources, self._limit, documents=self._documents)
                for start, end, resources in reads
                if start <= end
            ]
        ):
            for e in read:
                found.setdefault(e.error_id, e)
        if len(found) > len(self._kept):
            self._kept = nearest(found.values(), t, self._limit)
        self._resources |= frozenset(resource_ids)
        self._lo, self._hi = lo if self._lo is None else min(lo, self._lo), max(hi, self._hi)
        return self._kept


@dataclass(slots=True)
class CorrelationPage:
    page: Page[ErrorSnapshot]
    origin_error_id: str
    propagation: Propagation | None


class DataPlane:
    def __init__(
        self,
        store: Store,
        capture: CaptureService,
        hub: Hub,
        limits: Limits,
        analysis: AnalysisSettings = DEFAULT_SETTINGS,
    ) -> None:
        self._store = store
        self._capture = capture
        self._hub = hub
        self._limits = limits
        self._analysis = analysis

    # --- capture ----------------------------------------------------------------------------
    async def capture(self, req: CaptureRequest, timeout: float | None) -> CaptureOutcome:
        return await self._capture.capture(req, timeout)

    async def capture_batch(
        self, reqs: Sequence[CaptureRequest | InvalidArgument], timeout: float | None
    ) -> list[CaptureOutcome | DomainError]:
        return await self._capture.capture_batch(reqs, timeout)

    def group_id_of(self, report: ErrorReport) -> str:
        """The group `report` belongs to (the webhook resolves an alert's group with it)."""
        return self._capture.group_id_of(report)

    # --- reads ------------------------------------------------------------------------------
    def _required_id(self, field: str, value: str) -> None:
        # A lookup id is echoed in NOT_FOUND; an unbounded one makes trailers that clients refuse.
        if not value:
            raise InvalidArgument.single(field, "is required")
        if len(value) > self._limits.max_id_chars:
            raise InvalidArgument.single(field, f"is longer than {self._limits.max_id_chars} characters")

    async def get_error(self, error_id: str) -> ErrorSnapshot:
        self._required_id("error_id", error_id)
        snapshot = await self._store.get_error(error_id)
        # Only the ids of the related errors are returned: read them as link rows, not documents.
        related, dependencies = await self.related(snapshot, documents=False)
        snapshot.related_error_ids = [e.error_id for e in related]
        snapshot.affected_resource_ids = affected_resources(snapshot, dependencies, self._analysis.related_hops)
        return snapshot

    async def replay(self, error_id: str, refresh_context: bool) -> tuple[ErrorSnapshot, ReplayAnalysis]:
        self._required_id("error_id", error_id)
        snapshot = await self._store.get_error(error_id)
        if refresh_context:
            snapshot = await self._capture.refresh_context(snapshot)
        related, dependencies = await self.related(snapshot)
        r = snapshot.report
        graph = DependencyGraph.of(dependencies)
        resources = [r.resource_id] if r.resource_id else []
        resources += sorted(
            set(graph.distances(r.resource_id, Direction.TOWARDS_DEPENDENCIES, self._analysis.related_hops))
            - {r.resource_id}
        )
        # Up to now, not only up to the error: a change recorded in the frozen context and moved
        # since must be judged by its current time, so its current version has to be at hand.
        changes = (
            await self._store.list_changes(
                resources, r.occurred_at - self._analysis.change_window_us, now_micros(), [], CHANGES_LIMIT
            )
            if resources
            else []
        )
        try:
            first_seen: Micros | None = (await self._store.get_group(snapshot.group_id)).first_seen
        except NotFound:
            first_seen = None
        analysis = analyse(snapshot, related, changes, dependencies, first_seen, self._analysis)
        snapshot.related_error_ids = [e.error_id for e in analysis.related_errors]
        snapshot.affected_resource_ids = analysis.affected_resource_ids
        return snapshot, analysis

    async def related(
        self, snapshot: ErrorSnapshot, *, documents: bool = True
    ) -> tuple[list[ErrorSnapshot], list[Dependency]]:
        """Errors related to `snapshot` (computed now, so links are symmetric) and the edges used.

        Starts with the topology within related_hops of the error's resource and the errors in
        the related window there. While a cascade continues (analysis/correlation.py
        `cascade_errors`: errors on resources further along DEPENDS_ON, each within the window of
        the next), it reads the topology around the newly linked failing resources and the
        errors around their times, up to max_cascade_depth rounds and cascade_max_resources
        resources. A lone error costs one topology read and one error query, as before. The
        topology comes from the hub's cache (streaming/hub.py TopologyCache), which a topology
        write drops at once and ERRORREPLAY_STREAM_TOPOLOGY_TTL bounds for writes elsewhere.
        documents=False returns link snapshots (store.related_errors): the same errors, without
        message, documents or context."""
        settings = self._analysis
        root = snapshot.report.resource_id
        t = snapshot.report.occurred_at
        window = settings.related_window_us
        if not root:
            return (
                await self._store.related_errors(
                    snapshot, t - window, t + window, [], settings.related_limit, documents=documents
                ),
                [],
            )
        edges: set[Dependency] = set()
        known: set[str] = {root}
        explored: set[str] = set()
        found: dict[str, ErrorSnapshot] = {}
        frontier = [root]
        linked: list[ErrorSnapshot] = []
        lo, hi = t - window, t + window
        nearest_linked = NearestLinked(self._store, snapshot, settings.related_limit, documents)
        for _ in range(settings.max_cascade_depth + 1):
            explored.update(frontier)
            # One round's topology reads at once: a cascade that links ten resources waits for
            # the store (on a cache miss) once, not ten times in a row.
            for neighbours in await gather_all([self._hub.neighbours(rid) for rid in frontier]):
                edges.update(neighbours.edges)
                known.update(neighbours.resource_ids)
            for e in await nearest_linked.over(lo, hi, known):
                found.setdefault(e.error_id, e)
            linked = cascade_errors(snapshot, found.values(), edges, settings)
            frontier = sorted({e.report.resource_id for e in linked} - explored)
            room = settings.cascade_max_resources - len(explored)
            frontier = frontier[: max(0, room)]
            if not frontier:
                break
            times = [occurred_at(e) for e in linked]
            lo, hi = min(lo, min(times) - window), max(hi, max(times) + window)
        dependencies = sorted(edges, key=lambda d: (d.dependent_id, d.dependency_id))
        # The widened reads fetch more than the rule relates (a neighbour's neighbour, minutes
        # outside the window); keep what the rule keeps, as the replay does. The last round's
        # cascade is over these very errors and edges.
        return related_errors(snapshot, found.values(), dependencies, settings, cascade=linked), dependencies

    def _checked_filter(self, flt: ErrorFilter, prefix: str = "filter") -> ErrorFilter:
        raise_if(filter_violations(flt, self._limits, prefix))
        return flt

    async def search(self, flt: ErrorFilter, page_size: int, page_token: str) -> Page[ErrorSnapshot]:
        size = check_page_size(page_size, SEARCH_PAGE_DEFAULT, SEARCH_PAGE_MAX)
        limit = self._limits.search_count_limit
        return await self._store.search_errors(self._checked_filter(flt), size, page_token, count_limit=limit)

    async def recent(self, page_size: int, min_severity: Severity, window: Micros) -> list[ErrorSnapshot]:
        size = check_page_size(page_size, RECENT_PAGE_DEFAULT, RECENT_PAGE_MAX)
        if window < 0:
            raise InvalidArgument.single("window", "must not be negative")
        flt = ErrorFilter(min_severity=min_severity, start_time=now_micros() - (window or DEFAULT_WINDOW))
        self._checked_filter(flt, prefix="")
        page = await self._store.search_errors(flt, size, with_total=False)
        return page.items

    async def by_resource(self, resource_id: str, page_size: int, page_token: str) -> Page[ErrorSnapshot]:
        self._required_id("resource_id", resource_id)
        size = check_page_size(page_size, LIST_PAGE_DEFAULT, LIST_PAGE_MAX)
        flt = ErrorFilter(resource_ids=[resource_id])
        return await self._store.search_errors(flt, size, page_token, with_total=False)

    async def by_correlation(self, correlation_id: str, page_size: int, page_token: str) -> CorrelationPage:
        self._required_id("correlation_id", correlation_id)
        size = check_page_size(page_size, LIST_PAGE_DEFAULT, LIST_PAGE_MAX)
        flt = ErrorFilter(correlation_id=correlation_id)
        page = await self._store.search_errors(flt, size, page_token, oldest_first=True, with_total=False)
        # The origin is judged over the whole correlation set, not one page of it.
        everything = await self._store.search_errors(flt, LIST_PAGE_MAX, oldest_first=True, with_total=False)
        resource_ids = sorted({e.report.resource_id for e in everything.items if e.report.resource_id})
        dependencies = await self._dependencies_among(resource_ids)
        propagation = correlation_origin(everything.items, dependencies, self._analysis)
        origin = propagation.origin_error_id if propagation else ""
        return CorrelationPage(page, origin, propagation)

    async def _dependencies_among(self, resource_ids: Sequence[str]) -> list[Dependency]:
        edges: set[Dependency] = set()
        for rid in resource_ids:
            try:
                topology = await self._store.get_topology(rid, 1)
            except NotFound:
                continue
            edges.update(topology.dependencies)
        return sorted(edges, key=lambda d: (d.dependent_id, d.dependency_id))

    async def statistics(
        self,
        start: Micros | None,
        end: Micros | None,
        bucket: Micros,
        flt: ErrorFilter,
        top_groups: int,
        include_muted: bool,
    ) -> Statistics:
        start, end, bucket = _statistics_window(start, end, bucket)
        if top_groups < 0:
            raise InvalidArgument.single("top_groups_limit", "must not be negative")
        flt = self._checked_filter(flt)
        if not include_muted:
            flt = replace(flt, exclude_group_ids=await self._store.muted_group_ids())
        return await self._store.statistics(flt, start, end, bucket, top_groups or DEFAULT_TOP_GROUPS)

    async def severity_timed_counts(
        self, start: Micros | None, end: Micros | None, bucket: Micros, include_muted: bool
    ) -> dict[Severity, list[TimedCount]]:
        """Per severity, the timed counts `statistics` gives for that severity alone, in one store
        call (Store.severity_timed_counts)."""
        start, end, bucket = _statistics_window(start, end, bucket)
        muted = [] if include_muted else await self._store.muted_group_ids()
        return await self._store.severity_timed_counts(start, end, bucket, muted)

    async def group_timed_counts(
        self, group_id: str, start: Micros | None, end: Micros | None, bucket: Micros
    ) -> list[TimedCount]:
        self._required_id("group_id", group_id)
        start, end, bucket = _statistics_window(start, end, bucket)
        return await self._store.group_timed_counts(group_id, start, end, bucket)

    # --- streaming --------------------------------------------------------------------------
    async def subscribe(
        self, flt: ErrorFilter, include_correlated: bool, resume_after: str, heartbeat: Micros
    ) -> Stream:
        if heartbeat and not (MIN_HEARTBEAT <= heartbeat <= MAX_HEARTBEAT):
            raise InvalidArgument.single("heartbeat_interval", "must be between 100 ms and 1 hour")
        if len(resume_after) > self._limits.max_id_chars:
            raise InvalidArgument.single("resume_after", f"is longer than {self._limits.max_id_chars} characters")
        matcher = ErrorMatcher(self._checked_filter(flt))
        return await self._hub.subscribe(
            matcher, include_correlated, resume_after, heartbeat / MICROS_PER_SECOND if heartbeat else None
        )

    # --- groups -----------------------------------------------------------------------------
    async def list_groups(
        self, statuses: Sequence[GroupStatus], order: GroupOrder, page_size: int, page_token: str
    ) -> Page[ErrorGroup]:
        if any(s == GroupStatus.UNSPECIFIED for s in statuses):
            raise InvalidArgument.single("statuses", "contains an unknown or unspecified status")
        size = check_page_size(page_size, LIST_PAGE_DEFAULT, LIST_PAGE_MAX)
        return await self._store.list_groups(statuses, order or GroupOrder.LAST_SEEN, size, page_token)

    async def update_group(self, group_id: str, status: GroupStatus) -> ErrorGroup:
        violations: list[tuple[str, str]] = []
        if not group_id:
            violations.append(("group_id", "is required"))
        elif len(group_id) > self._limits.max_id_chars:
            violations.append(("group_id", f"is longer than {self._limits.max_id_chars} characters"))
        if status == GroupStatus.UNSPECIFIED:
            violations.append(("status", "must be OPEN, ACKNOWLEDGED, RESOLVED or MUTED"))
        if violations:
            raise _many(violations)
        return await self._store.update_group_status(group_id, status)

    # --- topology and changes ---------------------------------------------------------------
    async def upsert_resources(
        self, resources: Sequence[Resource], dependencies: Sequence[Dependency]
    ) -> tuple[int, int]:
        limits = self._limits
        # The counts first: a call over them is refused before any item is looked at.
        counts: list[tuple[str, str]] = []
        if len(resources) > limits.max_resources_per_call:
            counts.append(("resources", f"has more than {limits.max_resources_per_call} items"))
        if len(dependencies) > limits.max_dependencies_per_call:
            counts.append(("dependencies", f"has more than {limits.max_dependencies_per_call} items"))
        if counts:
            raise _many(counts)
        violations: list[tuple[str, str]] = []
        for i, r in enumerate(resources):
            violations += _id_violations(f"resources[{i}].id", r.id, limits.max_id_chars)
            for name, value in (("type", r.type), ("name", r.name)):
                if len(value) > limits.max_resource_name_chars:
                    violations.append(
                        (f"resources[{i}].{name}", f"is longer than {limits.max_resource_name_chars} characters")
                    )
            violations += _map_violations(f"resources[{i}].labels", r.labels, limits.max_labels, limits)
        for i, d in enumerate(dependencies):
            violations += _id_violations(f"dependencies[{i}].dependent_id", d.dependent_id, limits.max_id_chars)
            violations += _id_violations(f"dependencies[{i}].dependency_id", d.dependency_id, limits.max_id_chars)
            if d.dependent_id and d.dependent_id == d.dependency_id:
                violations.append((f"dependencies[{i}]", "a resource cannot depend on itself"))
        if violations:
            raise _many(violations)
        resources, dependencies = self._capture.clean_topology(resources, dependencies)
        written = await self._store.upsert_resources(resources, dependencies)
        # Live correlated streams work out their neighbourhood from the topology: tell the hub.
        self._hub.topology_changed()
        return written

    async def get_topology(self, resource_id: str, depth: int) -> Topology:
        self._required_id("resource_id", resource_id)
        if depth < 0 or depth > TOPOLOGY_DEPTH_MAX:
            raise InvalidArgument.single("depth", f"must be between 0 and {TOPOLOGY_DEPTH_MAX}")
        return await self._store.get_topology(resource_id, depth or TOPOLOGY_DEPTH_DEFAULT)

    async def record_change(self, change: Change) -> Change:
        violations: list[tuple[str, str]] = []
        if change.kind == ChangeKind.UNSPECIFIED:
            violations.append(("change.kind", "must be DEPLOYMENT, CONFIG or TOPOLOGY"))
        if not change.resource_id:
            violations.append(("change.resource_id", "is required"))
        for name in ("change_id", "resource_id", "version", "author"):
            if len(getattr(change, name)) > self._limits.max_id_chars:
                violations.append((f"change.{name}", f"is longer than {self._limits.max_id_chars} characters"))
        if len(change.description) > self._limits.max_message_chars:
            violations.append(("change.description", f"is longer than {self._limits.max_message_chars} characters"))
        violations += _map_violations(
            "change.metadata", change.metadata, self._limits.max_change_metadata, self._limits
        )
        if violations:
            raise _many(violations)
        # Scrubbed before it is stored: change texts reappear in replay timelines and contexts.
        change = self._capture.clean_change(change)
        stamped = replace(
            change,
            change_id=change.change_id or f"chg_{now_micros():014x}",
            occurred_at=change.occurred_at or now_micros(),
        )
        return await self._store.record_change(stamped)

    async def list_changes(
        self,
        resource_ids: Sequence[str],
        start: Micros | None,
        end: Micros | None,
        kinds: Sequence[ChangeKind],
        page_size: int,
    ) -> list[Change]:
        end = now_micros() if end is None else end
        start = end - DEFAULT_WINDOW if start is None else start
        if end < start:
            raise InvalidArgument.single("end_time", "is before start_time")
        if any(k == ChangeKind.UNSPECIFIED for k in kinds):
            raise InvalidArgument.single("kinds", "contains an unknown or unspecified kind")
        size = check_page_size(page_size, CHANGES_PAGE_DEFAULT, CHANGES_PAGE_MAX)
        return await self._store.list_changes(resource_ids, start, end, kinds, size)


# A status lists at most this many violations (a 5,000-item call could otherwise make trailers
# larger than clients accept); the last entry says how many more there were.
MAX_VIOLATIONS_LISTED = 20


def _many(violations: list[tuple[str, str]]) -> InvalidArgument:
    listed = [FieldViolation(f, d) for f, d in violations[:MAX_VIOLATIONS_LISTED]]
    if len(violations) > MAX_VIOLATIONS_LISTED:
        more = len(violations) - MAX_VIOLATIONS_LISTED
        listed.append(FieldViolation("request", f"{more} more violations not listed"))
    return InvalidArgument(listed)


def _id_violations(field: str, value: str, max_chars: int) -> list[tuple[str, str]]:
    if not value:
        return [(field, "is required")]
    if len(value) > max_chars:
        return [(field, f"is longer than {max_chars} characters")]
    return []


def _map_violations(field: str, entries: dict[str, str], max_entries: int, limits: Limits) -> list[tuple[str, str]]:
    """Labels and change metadata: the entry count, then each key and value against the tag limits."""
    if len(entries) > max_entries:
        return [(field, f"has more than {max_entries} entries")]
    out: list[tuple[str, str]] = []
    for key, value in entries.items():
        if len(key) > limits.max_tag_key_chars:
            out.append((f"{field}[{key[:32]!r}]", f"key is longer than {limits.max_tag_key_chars} characters"))
        if len(value) > limits.max_tag_value_chars:
            out.append((f"{field}[{key[:32]!r}]", f"is longer than {limits.max_tag_value_chars} characters"))
    return out


def _statistics_window(start: Micros | None, end: Micros | None, bucket: Micros) -> tuple[Micros, Micros, Micros]:
    """A statistics window with its defaults filled in (the last 24 h, hourly), or InvalidArgument."""
    end = now_micros() if end is None else end
    start = end - DEFAULT_WINDOW if start is None else start
    if end < start:
        raise InvalidArgument.single("end_time", "is before start_time")
    bucket = bucket or DEFAULT_BUCKET
    if bucket < 0:
        raise InvalidArgument.single("bucket", "must be positive")
    if statistics_buckets(start, end, bucket)[1] > MAX_BUCKETS:
        raise InvalidArgument.single("bucket", f"gives more than {MAX_BUCKETS} buckets for this range")
    return start, end, bucket
