"""The Store interface that every store implements, and that one contract suite tests.

Rules every store keeps:
- `capture` commits before it returns; what it returns is durable.
- Snapshots are committed in the order of their `received_at`, which the capture layer makes
  unique and increasing. A subscriber's cursor is a `received_at`, so "everything after the
  cursor" is exact.
- A `request_id` seen before returns the first snapshot with `duplicate=True`, and nothing new is
  stored (the group count does not move either).
- Lists are keyset-paginated; page tokens are opaque strings bound to the query that made them
  and signed with `token_key()`. A token from another query or database, a forged or garbled
  one, raises InvalidArgument("page_token").
- Time bounds are inclusive. Search order is newest first by (occurred_at, received_at).
- Errors on a store that cannot be reached raise StoreUnavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from errorreplay_server.domain.model import (
    CaptureOutcome,
    Change,
    ChangeKind,
    Dependency,
    ErrorContext,
    ErrorFilter,
    ErrorGroup,
    ErrorSnapshot,
    GroupOrder,
    GroupStatus,
    Micros,
    NewError,
    Page,
    Resource,
    Severity,
    Statistics,
    TimedCount,
    Topology,
)

# How many matches search_errors counts by default (settings.Limits.search_count_limit).
SEARCH_COUNT_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class TopologyBounds:
    """How much of a neighbourhood get_topology reads (settings.Limits holds the configured values)."""

    max_neighbours_per_hop: int = 100
    max_edges: int = 2000


class Store(Protocol):
    async def start(self) -> None:
        """Open connections and create the schema (idempotent)."""

    async def close(self) -> None:
        """Flush pending writes and close."""

    def token_key(self) -> bytes:
        """The database's secret (created by its first start, then kept) that signs page tokens
        and stream cursors. Valid after start()."""

    # --- errors ---------------------------------------------------------------------------
    async def capture(self, errors: Sequence[NewError]) -> list[CaptureOutcome]:
        """Insert errors and update their groups in one transaction; one outcome per input, in
        order. A resolved group that receives an error is reopened and flagged as a regression."""

    async def get_error(self, error_id: str) -> ErrorSnapshot:
        """Raises NotFound("error", error_id)."""

    async def get_errors(self, error_ids: Sequence[str]) -> list[ErrorSnapshot]:
        """The errors that exist, in the order given; unknown ids are left out."""

    async def search_errors(
        self,
        flt: ErrorFilter,
        page_size: int,
        page_token: str = "",
        *,
        oldest_first: bool = False,
        with_total: bool = True,
        count_limit: int = SEARCH_COUNT_LIMIT,
    ) -> Page[ErrorSnapshot]:
        """Matching errors, newest first (oldest first on request). With with_total, total_size
        counts the matches exactly up to count_limit; when more match, it is count_limit and
        total_capped is True (an exact count of 100,000 matches reads every one of them)."""

    async def errors_after(self, received_after: Micros, limit: int) -> list[ErrorSnapshot]:
        """Errors with received_at > received_after, oldest first (for stream resume)."""

    async def related_errors(
        self,
        error: ErrorSnapshot,
        start: Micros,
        end: Micros,
        resource_ids: Sequence[str],
        limit: int,
        *,
        documents: bool = True,
    ) -> list[ErrorSnapshot]:
        """Errors other than `error` with occurred_at in [start, end] that share its correlation_id
        or trace_id, or sit on one of `resource_ids`: the `limit` nearest in time to the error
        (store/core.py `nearness`), oldest first. With documents=False they are link snapshots
        (codec.link_from_row): the same errors in the same order, without message, documents or
        context."""

    async def update_context(self, error_id: str, context: ErrorContext) -> None:
        """Replace the frozen context of an error. Raises NotFound."""

    async def pending_context_errors(self, received_after: Micros, limit: int) -> list[ErrorSnapshot]:
        """Errors whose stored context still has a PENDING source (codec.context_pending), with
        received_at > received_after, oldest first. Served by an index of pending errors only, so
        its cost follows the backlog, not the table."""

    async def statistics(
        self, flt: ErrorFilter, start: Micros, end: Micros, bucket: Micros, top_groups: int
    ) -> Statistics:
        """Counts of errors with occurred_at in [start, end) matching `flt`. timed_counts has one
        entry per bucket of `statistics_buckets(start, end, bucket)` (aligned to multiples of the
        width since the epoch), including empty ones; none starts at or after `end`."""

    async def severity_timed_counts(
        self, start: Micros, end: Micros, bucket: Micros, exclude_group_ids: Sequence[str] = ()
    ) -> dict[Severity, list[TimedCount]]:
        """Per severity, the timed counts of errors with occurred_at in [start, end) outside
        `exclude_group_ids`: exactly what `statistics(ErrorFilter(severities=[s],
        exclude_group_ids=...), start, end, bucket, ...)` gives as timed_counts, for every
        severity with an error in the window (the others are left out). Whole-hour buckets are
        answered from hourly rollups where the store keeps them, so the cost follows the hours,
        not the errors."""

    async def group_timed_counts(self, group_id: str, start: Micros, end: Micros, bucket: Micros) -> list[TimedCount]:
        """The timed counts of one group's errors in [start, end): exactly the timed_counts of
        `statistics(ErrorFilter(group_id=group_id), start, end, bucket, ...)`, empty buckets
        included (all of them for an unknown group)."""

    async def count_errors(self) -> int: ...

    async def latest_received_at(self) -> Micros:
        """The largest received_at stored, or 0; the capture clock starts after it."""

    # --- groups ---------------------------------------------------------------------------
    async def get_group(self, group_id: str) -> ErrorGroup:
        """Raises NotFound("group", group_id)."""

    async def list_groups(
        self, statuses: Sequence[GroupStatus], order: GroupOrder, page_size: int, page_token: str = ""
    ) -> Page[ErrorGroup]: ...

    async def update_group_status(self, group_id: str, status: GroupStatus) -> ErrorGroup:
        """Setting a status clears the regression flag unless the group is reopened."""

    async def muted_group_ids(self) -> list[str]: ...

    # --- topology and changes -------------------------------------------------------------
    async def upsert_resources(
        self, resources: Sequence[Resource], dependencies: Sequence[Dependency]
    ) -> tuple[int, int]:
        """Insert or update resources and DEPENDS_ON edges. A dependency whose ends are unknown
        creates bare resources for them. Returns (resources, dependencies) written."""

    async def get_topology(self, resource_id: str, depth: int) -> Topology:
        """Resources within `depth` hops of resource_id in either direction, and the edges
        among them. Raises NotFound("resource", id) for an unknown resource.

        Bounded by the store's TopologyBounds: at most max_neighbours_per_hop new resources per hop
        and direction, at most max_edges edges, with `truncated` set when anything was left out.
        The work is linear in what is read, never in the square of a hub's degree."""

    async def record_change(self, change: Change) -> Change: ...

    async def list_changes(
        self,
        resource_ids: Sequence[str],
        start: Micros,
        end: Micros,
        kinds: Sequence[ChangeKind],
        limit: int,
    ) -> list[Change]:
        """Changes with occurred_at in [start, end], newest first. Empty lists match all."""
