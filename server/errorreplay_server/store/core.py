"""What every store shares: batching of writes, capture planning, statistics assembly.

The dialects (sqlite.py, neo4j.py) hold schema and query text; this module holds the decisions.

- BatchWriter. Writes are queued to one writer per store that drains up to MAX_JOBS_PER_COMMIT
  jobs into one transaction (`drain_batch`), which runs consecutive capture jobs as one set-wise
  write (`runs`), so a commit's cost is shared. The store supplies the transaction (`Commit`):
  SQLite runs it on its writer thread, Neo4j in a driver transaction with retries.
- CapturePlan. Given the captures of one commit and what the store already holds (the errors of
  their idempotency keys, the statuses of their groups), it decides each outcome: duplicate,
  new, or new and reopening a resolved group (a regression); and what the commit must write: the
  new errors, and one delta per group (count, first/last seen, max severity, representative,
  affected resources). It is pure: the dialect reads the lookups, then executes the plan.
- StatisticsBuilder. The dialects count errors grouped by columns (`StoreCore._count_by`), or
  read rollups; this turns the counts into a Statistics (empty keys left out, one entry per
  bucket of `statistics_buckets`, top groups ordered by count then id).
- StoreCore. The Store methods written once for both stores (get_error(s), list_groups,
  statistics, the timed counts), over the reads each store supplies as its own query text.

docs/ARCHITECTURE.md §3 describes the store contract this module serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from errorreplay_server.domain.errors import DomainError, InvalidArgument, NotFound, StoreUnavailable
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    CaptureOutcome,
    Dependency,
    ErrorFilter,
    ErrorGroup,
    ErrorSnapshot,
    GroupCount,
    GroupOrder,
    GroupStatus,
    Micros,
    NewError,
    Page,
    Resource,
    Severity,
    Source,
    Statistics,
    TimedCount,
    Topology,
    idempotency_key,
    statistics_buckets,
)
from errorreplay_server.store import codec
from errorreplay_server.store.pagination import PageTokens, group_key, query_digest

# Commits are grouped up to this many jobs; bigger groups stop paying off and delay the first caller.
MAX_JOBS_PER_COMMIT = 256
# Captured errors folded into one commit; a single capture call is never split.
MAX_ERRORS_PER_COMMIT = 500

J = TypeVar("J")
log = logging.getLogger(__name__)


# --- the writer -----------------------------------------------------------------------------------
@dataclass(slots=True)
class WriteJob:
    """One queued write: captures (consecutive ones share their statements, `runs`) or other work,
    a function of the store's transaction."""

    future: asyncio.Future[Any]
    captures: list[NewError] | None = None
    work: Callable[[Any], Any] | None = None


Commit = Callable[[list[WriteJob]], Awaitable[list[Any]]]


class BatchWriter:
    """The one writer of a store. Callers queue writes; the writer takes what is queued, up to
    MAX_JOBS_PER_COMMIT jobs and MAX_ERRORS_PER_COMMIT errors, and `commit` (the store's) runs it
    in one transaction and returns each job's result, a DomainError being a job's own failure.
    Every caller is answered after COMMIT, so an acknowledged write is durable. A batch that fails
    on some job's data runs again job by job, so a bad job fails alone; StoreUnavailable fails the
    batch. One writer also means captures commit in submission (received_at) order."""

    def __init__(self, commit: Commit, name: str) -> None:
        self._commit = commit
        self._name = name
        self._jobs: asyncio.Queue[WriteJob | Stop] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def capture(self, items: list[NewError]) -> list[CaptureOutcome]:
        return await self._submit(WriteJob(asyncio.get_running_loop().create_future(), captures=items))

    async def write(self, work: Callable[[Any], Any]) -> Any:
        return await self._submit(WriteJob(asyncio.get_running_loop().create_future(), work=work))

    async def _submit(self, job: WriteJob) -> Any:
        if self._task is None or self._task.done():
            raise StoreUnavailable(f"the store is not open ({self._name})")
        self._jobs.put_nowait(job)
        return await job.future

    async def close(self) -> None:
        """Commits what is queued, then stops; a write queued after that is refused."""
        if self._task is not None:
            self._jobs.put_nowait(STOP)
            await self._task
            self._task = None

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._jobs.get()
            if isinstance(first, Stop):
                break
            batch, stopping = drain_batch(first, self._jobs.get_nowait, lambda job: len(job.captures or ()))
            try:
                await self._commit_or_split(batch)
            except BaseException as exc:  # the writer must outlive any one batch
                log.exception("%s failed a batch", self._name)
                _fail(batch, exc if isinstance(exc, Exception) else StoreUnavailable(str(exc)))
                if not isinstance(exc, Exception):
                    raise
        while not self._jobs.empty():
            late = self._jobs.get_nowait()
            if not isinstance(late, Stop):
                _fail([late], StoreUnavailable("the store is closing"))

    async def _commit_or_split(self, batch: list[WriteJob]) -> None:
        try:
            results = await self._commit(batch)
        except Exception as exc:  # unavailable, a constraint, a value the store cannot take, …
            if isinstance(exc, StoreUnavailable) or len(batch) == 1:
                _fail(batch, exc)
                return
            log.warning("a batch of %d writes failed (%r); retrying them one by one", len(batch), exc)
            for job in batch:
                await self._commit_or_split([job])
            return
        for job, value in zip(batch, results, strict=True):
            if isinstance(value, DomainError):
                _fail([job], value)
            elif not job.future.done():  # the caller gave up; the write stands
                job.future.set_result(value)


class Stop:
    """The marker that tells a writer to finish the batch in hand and stop."""


STOP = Stop()


def drain_batch(
    first: J,
    get_nowait: Callable[[], J | Stop],
    errors_of: Callable[[J], int],
    max_jobs: int = MAX_JOBS_PER_COMMIT,
    max_errors: int = MAX_ERRORS_PER_COMMIT,
) -> tuple[list[J], bool]:
    """The jobs of one commit: `first` and whatever is already queued behind it, up to the caps.
    Returns (jobs, stopping), stopping when the stop marker was met."""
    batch = [first]
    errors = errors_of(first)
    while len(batch) < max_jobs and errors < max_errors:
        try:
            nxt = get_nowait()
        except asyncio.QueueEmpty:
            break
        if isinstance(nxt, Stop):
            return batch, True
        batch.append(nxt)
        errors += errors_of(nxt)
    return batch, False


def _fail(jobs: list[WriteJob], exc: BaseException) -> None:
    """Fails the jobs whose callers still wait (a caller that gave up has a done future)."""
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)


def runs(jobs: Sequence[J], is_capture: Callable[[J], bool]) -> Iterable[tuple[bool, list[J]]]:
    """The jobs in order, consecutive captures together: (True, captures) or (False, [one job])."""
    i = 0
    while i < len(jobs):
        if not is_capture(jobs[i]):
            yield False, [jobs[i]]
            i += 1
            continue
        j = i
        while j < len(jobs) and is_capture(jobs[j]):
            j += 1
        yield True, list(jobs[i:j])
        i = j


# --- capture planning -----------------------------------------------------------------------------
@dataclass(slots=True)
class GroupDelta:
    """What one commit does to one group."""

    group_id: str
    title: str
    error_type: str
    representative_error_id: str
    first_seen: Micros
    last_seen: Micros
    max_severity: int
    status: int  # the status the commit found, then OPEN once reopened
    count: int = 0
    reopen: bool = False
    resources: set[str] = field(default_factory=set)

    def add(self, snap: ErrorSnapshot) -> bool:
        """Counts one error; True when it reopens a resolved group (a regression)."""
        r = snap.report
        regression = self.status == GroupStatus.RESOLVED
        if regression:
            self.status = int(GroupStatus.OPEN)
            self.reopen = True
        self.count += 1
        self.first_seen = min(self.first_seen, r.occurred_at)
        self.last_seen = max(self.last_seen, r.occurred_at)
        self.max_severity = max(self.max_severity, int(r.severity))
        if r.resource_id:
            self.resources.add(r.resource_id)
        return regression


@dataclass(frozen=True, slots=True)
class CaptureLookups:
    """What the plan needs to know about the store: the keys and groups to read."""

    request_ids: list[str]
    group_ids: list[str]
    error_ids: list[str]


@dataclass(slots=True)
class StoredState:
    """What the store holds for a batch's lookups."""

    # Stored errors by idempotency key (scope and request id in one string).
    by_request: dict[str, ErrorSnapshot] = field(default_factory=dict)
    # Stored errors by id: only a retried commit asks (its lost COMMIT may have landed).
    by_id: dict[str, ErrorSnapshot] = field(default_factory=dict)
    # The status of every stored group the batch touches.
    statuses: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class CapturePlan:
    """The decisions for the captures of one commit, in submission order."""

    outcomes: list[list[CaptureOutcome]]  # one list per capture job
    fresh: list[NewError]  # the errors to insert
    groups: dict[str, GroupDelta]  # the groups to upsert

    @staticmethod
    def lookups(jobs: Sequence[Sequence[NewError]], *, retry: bool = False) -> CaptureLookups:
        items = [item for job in jobs for item in job]
        return CaptureLookups(
            request_ids=sorted({key for i in items if (key := idempotency_key(i.snapshot))}),
            group_ids=sorted({i.snapshot.group_id for i in items}),
            error_ids=[i.snapshot.error_id for i in items] if retry else [],
        )

    @classmethod
    def build(cls, jobs: Sequence[Sequence[NewError]], stored: StoredState) -> CapturePlan:
        """Decides every capture as one-by-one inserts would: an idempotency key seen before (in
        the store or earlier in the batch) is a duplicate of the first; the first error on a
        resolved group reopens it and is the regression, the rest of the batch sees it open."""
        by_request = dict(stored.by_request)
        plan = cls([], [], {})
        for job in jobs:
            outcomes: list[CaptureOutcome] = []
            for item in job:
                outcomes.append(plan._decide(item, by_request, stored))
            plan.outcomes.append(outcomes)
        return plan

    def rollup_rows(self) -> list[list[Any]]:
        """(hour, dimension, key, count): what the new errors add to the statistics rollups."""
        return [[*key, n] for key, n in rollup_counts(rollup_row(i.snapshot) for i in self.fresh).items()]

    def _decide(self, item: NewError, by_request: dict[str, ErrorSnapshot], stored: StoredState) -> CaptureOutcome:
        snap = item.snapshot
        r = snap.report
        key = idempotency_key(snap)
        if key and key in by_request:
            return CaptureOutcome(by_request[key], duplicate=True)
        if snap.error_id in stored.by_id:
            # Stored by an attempt whose COMMIT reply was lost: the same outcome, counted once.
            return CaptureOutcome(stored.by_id[snap.error_id], duplicate=False)
        if key:
            by_request[key] = snap
        self.fresh.append(item)
        group = self.groups.get(snap.group_id)
        # The first error of a group no commit has seen yet (notifications' "new group" trigger).
        new_group = group is None and snap.group_id not in stored.statuses
        if group is None:
            group = GroupDelta(
                group_id=snap.group_id,
                title=item.group_title,
                error_type=r.error_type,
                representative_error_id=snap.error_id,
                first_seen=r.occurred_at,
                last_seen=r.occurred_at,
                max_severity=int(r.severity),
                status=stored.statuses.get(snap.group_id, int(GroupStatus.OPEN)),
            )
            self.groups[snap.group_id] = group
        regression = group.add(snap)
        return CaptureOutcome(snap, duplicate=False, regression=regression, new_group=new_group)


# --- statistics -----------------------------------------------------------------------------------
def bounded_total(counted: int, count_limit: int) -> tuple[int, bool]:
    """(total_size, total_capped) of a search from its matches counted with LIMIT count_limit + 1."""
    return (count_limit, True) if counted > count_limit else (counted, False)


def statistics_filter(flt: ErrorFilter, start: Micros, end: Micros) -> ErrorFilter:
    """The filter bounded to the statistics window [start, end) (inclusive bounds end - 1), so
    that consecutive windows count each error once."""
    bounded = replace(flt)
    bounded.start_time = start if flt.start_time is None else max(start, flt.start_time)
    bounded.end_time = end - 1 if flt.end_time is None else min(end - 1, flt.end_time)
    return bounded


class StatisticsBuilder:
    """Accumulates counts from any number of reads (rows, rollups, or both), then builds."""

    def __init__(self, start: Micros, end: Micros, bucket: Micros) -> None:
        self.first, self.n_buckets = statistics_buckets(start, end, bucket)
        self.bucket = bucket
        self.by_severity: dict[Any, int] = {}
        self.by_source: dict[Any, int] = {}
        self.by_resource: dict[Any, int] = {}
        self.by_resource_type: dict[Any, int] = {}
        self.by_error_type: dict[Any, int] = {}
        self.by_group: dict[Any, int] = {}
        self.buckets: dict[int, int] = {}

    @staticmethod
    def add(counts: dict[Any, int], key: Any, n: int) -> None:
        """Counts n under key; the empty string (a field not set) is not a key."""
        if key != "" and n:
            counts[key] = counts.get(key, 0) + n

    def add_all(self, counts: dict[Any, int], rows: Iterable[Sequence[Any]]) -> None:
        for key, n in rows:
            self.add(counts, key, n)

    def top_groups(self, limit: int) -> list[tuple[str, int]]:
        """The `limit` groups with the most errors, ties by group id."""
        return sorted(self.by_group.items(), key=lambda g: (-g[1], g[0]))[: max(0, limit)]

    def build(self, top_groups: Sequence[GroupCount] = ()) -> Statistics:
        return Statistics(
            total_count=sum(self.by_severity.values()),
            by_severity={Severity(k): n for k, n in self.by_severity.items()},
            by_source={Source(k): n for k, n in self.by_source.items()},
            by_resource=dict(self.by_resource),
            by_resource_type=dict(self.by_resource_type),
            by_error_type=dict(self.by_error_type),
            timed_counts=[
                TimedCount(self.first + i * self.bucket, self.buckets.get(i, 0)) for i in range(self.n_buckets)
            ],
            top_groups=list(top_groups),
        )


def group_counts(counted: Sequence[tuple[str, int]], info: dict[str, tuple[str, int]]) -> list[GroupCount]:
    """Top groups with their titles and statuses (info: group id -> (title, status)), in order."""
    out = []
    for gid, n in counted:
        title, status = info.get(gid, ("", int(GroupStatus.OPEN)))
        out.append(GroupCount(gid, title or "", n, GroupStatus(status if status is not None else GroupStatus.OPEN)))
    return out


# --- statistics rollups ---------------------------------------------------------------------------
# Hourly counts per dimension, maintained at capture, so that statistics over a window read a row
# per (hour, dimension, key) instead of a row per error. The dimension numbers are stored.
ROLLUP_HOUR = MICROS_PER_HOUR
ROLLUP_SEVERITY, ROLLUP_SOURCE, ROLLUP_RESOURCE, ROLLUP_RESOURCE_TYPE, ROLLUP_ERROR_TYPE, ROLLUP_GROUP = range(6)


def rollup_row(snap: ErrorSnapshot) -> tuple[Any, ...]:
    """What rollup_counts reads of an error: occurred_at, severity, source, resource_id,
    resource_type, error_type, group_id (a store reading stored errors back for their rollups,
    as the Bolt store does once, selects the same columns in this order)."""
    r = snap.report
    return r.occurred_at, int(r.severity), int(r.source), r.resource_id, r.resource_type, r.error_type, snap.group_id


def rollup_counts(rows: Iterable[Sequence[Any]]) -> dict[tuple[int, int, str], int]:
    """(hour, dimension, key) -> how many of `rows` (rollup_row tuples) add to it. Empty keys
    (a field not set) are not counted."""
    counts: dict[tuple[int, int, str], int] = {}
    for occurred, severity, source, resource_id, resource_type, error_type, group_id in rows:
        hour = occurred - occurred % ROLLUP_HOUR
        for dimension, key in (
            (ROLLUP_SEVERITY, str(severity)),
            (ROLLUP_SOURCE, str(source)),
            (ROLLUP_RESOURCE, resource_id),
            (ROLLUP_RESOURCE_TYPE, resource_type),
            (ROLLUP_ERROR_TYPE, error_type),
            (ROLLUP_GROUP, group_id),
        ):
            if key:
                counts[hour, dimension, key] = counts.get((hour, dimension, key), 0) + 1
    return counts


@dataclass(frozen=True, slots=True)
class RollupSplit:
    """A statistics window cut into whole hours, read from rollups, and the partial hours at its
    edges, read from rows. Times are inclusive bounds on occurred_at, like ErrorFilter's."""

    first_hour: Micros  # the whole hours are [first_hour, end_hour)
    end_hour: Micros
    edges: list[tuple[Micros, Micros]]


def rollup_split(bounded: ErrorFilter, bucket: Micros) -> RollupSplit | None:
    """How to read statistics for `bounded` (a statistics_filter) from rollups, or None when they
    cannot answer it: a condition other than time (rollups count dimensions one by one, not their
    combinations), buckets that are not whole hours, or a window without a whole hour."""
    assert bounded.start_time is not None and bounded.end_time is not None
    only_time = bounded == ErrorFilter(start_time=bounded.start_time, end_time=bounded.end_time)
    if not only_time or bucket % ROLLUP_HOUR:
        return None
    lo, hi = bounded.start_time, bounded.end_time + 1  # [lo, hi)
    first_hour = -(-lo // ROLLUP_HOUR) * ROLLUP_HOUR
    end_hour = hi - hi % ROLLUP_HOUR
    if first_hour >= end_hour:
        return None
    edges = [(a, b - 1) for a, b in ((lo, first_hour), (end_hour, hi)) if a < b]
    return RollupSplit(first_hour, end_hour, edges)


async def collect_statistics(
    bounded: ErrorFilter,
    builder: StatisticsBuilder,
    read_rollups: Callable[[Micros, Micros], Awaitable[list[Sequence[Any]]]],
    count_rows: Callable[[ErrorFilter, StatisticsBuilder], Awaitable[None]],
) -> None:
    """Counts `bounded` (a statistics_filter) into `builder`: whole hours from the rollups
    (read_rollups(first_hour, end_hour) -> (hour, dimension, key, count) rows) and the partial
    hours at the edges from the rows, when the rollups can answer; otherwise all from the rows."""
    split = rollup_split(bounded, builder.bucket)
    if split is None:
        await count_rows(bounded, builder)
        return
    rollups, *_ = await asyncio.gather(
        read_rollups(split.first_hour, split.end_hour),
        *(count_rows(replace(bounded, start_time=lo, end_time=hi), builder) for lo, hi in split.edges),
    )
    add_rollup_rows(builder, rollups)


def add_rollup_rows(builder: StatisticsBuilder, rows: Iterable[Sequence[Any]]) -> None:
    """Adds (hour, dimension, key, count) rows; the buckets are whole hours (rollup_split)."""
    targets = {
        ROLLUP_SEVERITY: builder.by_severity,
        ROLLUP_SOURCE: builder.by_source,
        ROLLUP_RESOURCE: builder.by_resource,
        ROLLUP_RESOURCE_TYPE: builder.by_resource_type,
        ROLLUP_ERROR_TYPE: builder.by_error_type,
        ROLLUP_GROUP: builder.by_group,
    }
    for hour, dimension, key, n in rows:
        if dimension in (ROLLUP_SEVERITY, ROLLUP_SOURCE):
            key = int(key)
        builder.add(targets[dimension], key, n)
        if dimension == ROLLUP_SEVERITY:
            index = (hour - builder.first) // builder.bucket
            builder.buckets[index] = builder.buckets.get(index, 0) + n


# --- timed counts by key --------------------------------------------------------------------------
class TimedCountsBuilder:
    """Timed counts per key of one rollup dimension (severity as str(int), or group id), one entry
    per bucket of `statistics_buckets(start, end, bucket)`: the same buckets as GetStatistics'.
    Counts come from rollup hours, from rows by bucket index, or are taken away (excluded groups)."""

    def __init__(self, start: Micros, end: Micros, bucket: Micros) -> None:
        self.first, self.n_buckets = statistics_buckets(start, end, bucket)
        self.bucket = bucket
        self.counts: dict[str, dict[int, int]] = {}

    def add(self, key: Any, index: int, n: int) -> None:
        if n:
            buckets = self.counts.setdefault(str(key), {})
            buckets[index] = buckets.get(index, 0) + n

    def add_hours(self, rows: Iterable[Sequence[Any]]) -> None:
        """Adds (hour, dimension, key, count) rollup rows of one dimension; the buckets are whole
        hours (rollup_split)."""
        for hour, _, key, n in rows:
            self.add(key, (hour - self.first) // self.bucket, n)

    def series(self, key: str) -> list[TimedCount]:
        buckets = self.counts.get(key, {})
        return [TimedCount(self.first + i * self.bucket, buckets.get(i, 0)) for i in range(self.n_buckets)]

    def build(self) -> dict[str, list[TimedCount]]:
        """Every key with at least one error in the window."""
        return {key: self.series(key) for key, buckets in sorted(self.counts.items()) if any(buckets.values())}


def timed_counts_split(start: Micros, end: Micros, bucket: Micros) -> RollupSplit | None:
    """How to read timed counts of [start, end) from rollups (whole hours, rows for the partial
    edge hours), or None when the rows must be counted (buckets shorter than an hour, or no whole
    hour in the window)."""
    return rollup_split(statistics_filter(ErrorFilter(), start, end), bucket)


async def collect_timed_counts(
    builder: TimedCountsBuilder,
    flt: ErrorFilter,
    start: Micros,
    end: Micros,
    read_rollups: Callable[[Micros, Micros], Awaitable[list[Sequence[Any]]]],
    count_rows: Callable[[ErrorFilter, TimedCountsBuilder, int, Sequence[str]], Awaitable[None]],
) -> None:
    """Timed counts of `flt` (at most a group_id and exclude_group_ids) over [start, end) into
    `builder`: whole hours from the rollups (read_rollups(first_hour, end_hour) -> (hour,
    dimension, key, count) rows of the dimension), less the excluded groups' errors in them, and
    the partial edge hours from the errors; everything from the errors for buckets shorter than an
    hour.
    count_rows(filter, builder, sign, only_groups) adds sign x the matching errors' counts, of
    the groups in only_groups when it is not empty."""
    bounded = statistics_filter(flt, start, end)
    split = timed_counts_split(start, end, builder.bucket)
    if split is None:
        await count_rows(bounded, builder, 1, ())
        return
    whole_hours = ErrorFilter(start_time=split.first_hour, end_time=split.end_hour - 1)
    excluded = sorted(set(flt.exclude_group_ids))
    rollups, *_ = await asyncio.gather(
        read_rollups(split.first_hour, split.end_hour),
        *(count_rows(replace(bounded, start_time=lo, end_time=hi), builder, 1, ()) for lo, hi in split.edges),
        # Rollups count every group: the excluded groups' errors in the whole hours are taken away.
        *([count_rows(whole_hours, builder, -1, excluded)] if excluded else []),
    )
    builder.add_hours(rollups)


# --- topology -------------------------------------------------------------------------------------
DEPENDENCIES, DEPENDENTS = "dependencies", "dependents"
# Yields (direction, frontier, limit), is sent the ids one hop from the frontier, returns (ids, truncated).
TopologyWalk = Generator[tuple[str, list[str], int], Iterable[str], tuple[list[str], bool]]


def walk_topology(resource_id: str, depth: int, cap: int) -> TopologyWalk:
    """The resources within `depth` hops of resource_id (sorted), and whether a hop left some out.
    A store answers each (direction, frontier, limit) it yields with at most `limit` distinct ids
    one hop from the frontier in that direction (run_walk, run_walk_async).

    Dependencies and dependents are walked separately: a sibling (the dependency of a dependent) is
    not a neighbour. Each hop asks for at most cap + |reach| + 1 ids: enough to find cap + 1 new
    ones even when every known one comes first, and never a hub's all (a hub with 20,000
    dependents costs a bounded read)."""
    reach = {resource_id}
    truncated = False
    for direction in (DEPENDENCIES, DEPENDENTS):
        frontier = [resource_id]
        for _ in range(depth):
            if not frontier:
                break
            seen = set(reach)
            found: list[str] = []
            for far in (yield direction, frontier, cap + len(reach) + 1):
                if far in seen:
                    continue
                if len(found) == cap:
                    truncated = True
                    break
                seen.add(far)
                found.append(far)
            reach.update(found)
            frontier = found
    return sorted(reach), truncated


def run_walk(walk: TopologyWalk, neighbours: Callable[[str, list[str], int], Iterable[str]]) -> tuple[list[str], bool]:
    try:
        request = next(walk)
        while True:
            request = walk.send(neighbours(*request))
    except StopIteration as done:
        return done.value


async def run_walk_async(
    walk: TopologyWalk, neighbours: Callable[[str, list[str], int], Awaitable[Iterable[str]]]
) -> tuple[list[str], bool]:
    try:
        request = next(walk)
        while True:
            request = walk.send(await neighbours(*request))
    except StopIteration as done:
        return done.value


def topology(
    resource_id: str, resources: Iterable[Sequence[Any]], edges: Sequence[Any], max_edges: int, truncated: bool
) -> Topology:
    """The Topology of the walk's resources, (id, type, name, labels JSON) rows, and the edges among
    them, (dependent, dependency) rows read with LIMIT max_edges + 1."""
    found = [Resource(i, t or "", n or "", codec.loads(lb) or {}) for i, t, n, lb in resources]
    deps = sorted({Dependency(a, b) for a, b in edges[:max_edges]}, key=lambda d: (d.dependent_id, d.dependency_id))
    return Topology(resource_id, sorted(found, key=lambda r: r.id), deps, truncated or len(edges) > max_edges)


# --- the shared Store methods ---------------------------------------------------------------------
class StoreCore:
    """The Store methods whose logic both stores share. A store supplies the reads they need (the
    methods below that raise NotImplementedError) as its own query text."""

    _token_key = b""
    _tokens: PageTokens

    def token_key(self) -> bytes:
        return self._token_key

    async def _errors_by_id(self, ids: list[str]) -> list[ErrorSnapshot]:
        """The stored errors of `ids` (distinct), in any order."""
        raise NotImplementedError

    async def get_errors(self, error_ids: Sequence[str]) -> list[ErrorSnapshot]:
        ids = list(dict.fromkeys(error_ids))
        if not ids:
            return []
        by_id = {snap.error_id: snap for snap in await self._errors_by_id(ids)}
        return [by_id[i] for i in ids if i in by_id]

    async def get_error(self, error_id: str) -> ErrorSnapshot:
        found = await self.get_errors([error_id])
        if not found:
            raise NotFound("error", error_id)
        return found[0]

    # Groups: up to `limit` with one of `statuses` (any when empty), descending by `key` (the
    # property count or last_seen) then group id, after `after` ([key, group id]) when set.
    async def _groups(self, statuses: list[int], key: str, after: list[Any] | None, limit: int) -> list[ErrorGroup]:
        raise NotImplementedError

    async def list_groups(
        self, statuses: Sequence[GroupStatus], order: GroupOrder, page_size: int, page_token: str = ""
    ) -> Page[ErrorGroup]:
        key = "count" if order == GroupOrder.COUNT else "last_seen"
        digest = query_digest("groups", sorted(int(s) for s in statuses), key)
        after = self._tokens.decode(page_token, digest, (int, str))
        groups = await self._groups([int(s) for s in statuses], key, after, page_size + 1)
        return Page(*self._tokens.page(groups, page_size, digest, group_key(key == "count")))

    # Rollup rows (hour, dimension, key, count) of [first_hour, end_hour), of one dimension (and
    # one key) when given.
    async def _rollups(
        self, first_hour: Micros, end_hour: Micros, dimension: int | None = None, key: str = ""
    ) -> list[Sequence[Any]]:
        raise NotImplementedError

    # The errors that match a bounded filter, counted per value of `columns` (error columns, named
    # as in codec.ERROR_COLUMNS; constants, never user input) and, when `buckets` is (first,
    # size), per bucket index (occurred_at - first) // size, of the groups in `only_groups` when it
    # is not empty: rows of (*values, [index], count), a key perhaps in more than one row.
    async def _count_by(
        self,
        bounded: ErrorFilter,
        columns: Sequence[str],
        buckets: tuple[Micros, Micros] | None = None,
        only_groups: Sequence[str] = (),
    ) -> list[Sequence[Any]]:
        raise NotImplementedError

    async def _count_rows(self, bounded: ErrorFilter, builder: StatisticsBuilder) -> None:
        """Counts the errors that match `bounded` into `builder`, from the errors: three counts,
        which a store may run at once (SQLite on separate reader threads)."""
        by_bucket, by_resource, by_group = await asyncio.gather(
            self._count_by(bounded, ("severity", "source", "resource_type"), (builder.first, builder.bucket)),
            self._count_by(bounded, ("resource_id", "error_type")),
            self._count_by(bounded, ("group_id",)),
        )
        for severity, source, resource_type, index, n in by_bucket:
            builder.add(builder.by_severity, severity, n)
            builder.add(builder.by_source, source, n)
            builder.add(builder.by_resource_type, resource_type, n)
            builder.add(builder.buckets, index, n)
        for resource_id, error_type, n in by_resource:
            builder.add(builder.by_resource, resource_id, n)
            builder.add(builder.by_error_type, error_type, n)
        builder.add_all(builder.by_group, by_group)

    async def _group_titles(self, group_ids: list[str]) -> dict[str, tuple[str, int]]:
        raise NotImplementedError

    async def statistics(
        self, flt: ErrorFilter, start: Micros, end: Micros, bucket: Micros, top_groups: int
    ) -> Statistics:
        if bucket <= 0:
            raise InvalidArgument.single("bucket", "must be positive")
        builder = StatisticsBuilder(start, end, bucket)
        await collect_statistics(statistics_filter(flt, start, end), builder, self._rollups, self._count_rows)
        top = builder.top_groups(top_groups)
        return builder.build(group_counts(top, await self._group_titles([g for g, _ in top]) if top else {}))

    async def _count_timed_rows(
        self, dimension: int, bounded: ErrorFilter, into: TimedCountsBuilder, sign: int, only_groups: Sequence[str]
    ) -> None:
        """collect_timed_counts' count_rows: sign x the errors that match `bounded`, per value of
        the dimension and bucket index, of the groups in only_groups when it is not empty."""
        column = "group_id" if dimension == ROLLUP_GROUP else "severity"
        for value, index, n in await self._count_by(bounded, (column,), (into.first, into.bucket), only_groups):
            into.add(value, index, sign * n)

    async def severity_timed_counts(
        self, start: Micros, end: Micros, bucket: Micros, exclude_group_ids: Sequence[str] = ()
    ) -> dict[Severity, list[TimedCount]]:
        counts = await self._timed_counts(ROLLUP_SEVERITY, "", start, end, bucket, exclude_group_ids)
        return {Severity(int(key)): series for key, series in counts.build().items()}

    async def group_timed_counts(self, group_id: str, start: Micros, end: Micros, bucket: Micros) -> list[TimedCount]:
        return (await self._timed_counts(ROLLUP_GROUP, group_id, start, end, bucket)).series(group_id)

    async def _timed_counts(
        self,
        dimension: int,
        key: str,
        start: Micros,
        end: Micros,
        bucket: Micros,
        exclude_group_ids: Sequence[str] = (),
    ) -> TimedCountsBuilder:
        """Timed counts per value of `dimension` (only `key` when set): whole hours from the
        rollups, less the excluded groups' errors in them; partial edge hours (or everything, for
        buckets shorter than an hour) from the errors."""
        if bucket <= 0:
            raise InvalidArgument.single("bucket", "must be positive")
        builder = TimedCountsBuilder(start, end, bucket)
        flt = ErrorFilter(group_id=key if dimension == ROLLUP_GROUP else "", exclude_group_ids=list(exclude_group_ids))
        read_rollups = partial(self._rollups, dimension=dimension, key=key)
        await collect_timed_counts(builder, flt, start, end, read_rollups, partial(self._count_timed_rows, dimension))
        return builder
