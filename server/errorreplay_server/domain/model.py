"""The domain model: plain dataclasses shared by the store, capture, collectors and analysis.

Timestamps are integers: microseconds since the epoch, UTC (`Micros`). Integers keep ranges and
ordering exact in every store, and cost nothing to compare.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Micros = int
MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_HOUR = 60 * MICROS_PER_MINUTE


def now_micros() -> Micros:
    return time.time_ns() // 1000


class Severity(IntEnum):
    """Ordered, so that a minimum severity is a comparison. Values match the protobuf enum."""

    UNSPECIFIED = 0
    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5


class Source(IntEnum):
    UNSPECIFIED = 0
    APPLICATION = 1
    PROMETHEUS = 2
    LOKI = 3
    TEMPO = 4
    ELASTICSEARCH = 5
    AZURE_LOG_ANALYTICS = 6
    MANUAL = 7


class CollectionState(IntEnum):
    UNSPECIFIED = 0
    PENDING = 1
    OK = 2
    EMPTY = 3
    FAILED = 4
    SKIPPED = 5


class SpanStatus(IntEnum):
    UNSPECIFIED = 0
    UNSET = 1
    OK = 2
    ERROR = 3


class ChangeKind(IntEnum):
    UNSPECIFIED = 0
    DEPLOYMENT = 1
    CONFIG = 2
    TOPOLOGY = 3


class GroupStatus(IntEnum):
    UNSPECIFIED = 0
    OPEN = 1
    ACKNOWLEDGED = 2
    RESOLVED = 3
    MUTED = 4


class GroupOrder(IntEnum):
    UNSPECIFIED = 0
    LAST_SEEN = 1
    COUNT = 2


@dataclass(slots=True)
class ErrorReport:
    """What a service reports. Validated and scrubbed before it is stored."""

    message: str
    severity: Severity
    source: Source
    resource_id: str = ""
    resource_type: str = ""
    service: str = ""
    environment: str = ""
    release: str = ""
    error_type: str = ""
    stack_trace: str = ""
    correlation_id: str = ""
    trace_id: str = ""
    span_id: str = ""
    occurred_at: Micros = 0
    tags: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    fingerprint: list[str] = field(default_factory=list)
    # What the client saw before the error (Sentry breadcrumbs). Capture scrubs them and stores them
    # as the snapshot's first context log lines (collector CLIENT_LOG_COLLECTOR); never stored here.
    breadcrumbs: list[LogLine] = field(default_factory=list)


CLIENT_LOG_COLLECTOR = "client"
"""The `collector` of context log lines that the reporting client sent with the error."""


@dataclass(slots=True)
class CollectorStatus:
    collector: str
    state: CollectionState
    detail: str = ""
    duration_ms: float = 0.0
    collected_at: Micros = 0


@dataclass(slots=True)
class LogLine:
    time: Micros
    level: str
    message: str
    collector: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class MetricPoint:
    time: Micros
    value: float


class AnomalyKind:
    """What rule found a MetricAnomaly (stored as text, so new kinds stay readable)."""

    BASELINE = "baseline"  # a point above median + k × spread of the baseline
    LIMIT = "limit"  # a point above a fixed limit (series in percent)
    TREND = "trend"  # a sustained rise over the window


@dataclass(slots=True)
class MetricAnomaly:
    time: Micros
    value: float
    baseline: float
    threshold: float
    reason: str
    kind: str = ""  # an AnomalyKind; "" in contexts stored before kinds existed
    # When the excess began (the first point of the run above the threshold, or the start of a
    # trend); 0 when unknown (contexts stored before it was recorded).
    since: Micros = 0


@dataclass(slots=True)
class MetricBaseline:
    """What a series was judged against, kept with the context so a later replay agrees.

    `source` is "lookback" (a range before the metrics window) or "window" (the window's own
    points before the error, when the lookback had too few); `start`/`end` is that range.
    `seasonal_peak` is the highest value in the same window `seasonal_offset_us` earlier (a day),
    when Prometheus still held it; a point must pass it too, so a daily peak is not an anomaly."""

    median: float
    spread: float
    points: int
    source: str
    start: Micros
    end: Micros
    seasonal_peak: float | None = None
    seasonal_offset_us: Micros = 0


@dataclass(slots=True)
class MetricSeries:
    name: str
    query: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    points: list[MetricPoint] = field(default_factory=list)
    anomalies: list[MetricAnomaly] = field(default_factory=list)
    unit: str = ""
    resource_id: str = ""
    baseline: MetricBaseline | None = None


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str = ""
    service: str = ""
    name: str = ""
    start_time: Micros = 0
    duration_us: int = 0
    status: SpanStatus = SpanStatus.UNSET
    status_message: str = ""
    failing: bool = False
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Resource:
    id: str
    type: str = ""
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Dependency:
    """Runs from the dependent to its dependency: api DEPENDS_ON db."""

    dependent_id: str
    dependency_id: str


@dataclass(slots=True)
class Topology:
    root_resource_id: str = ""
    resources: list[Resource] = field(default_factory=list)
    dependencies: list[Dependency] = field(default_factory=list)
    # Some neighbours or edges were left out: a hop had more than the cap (settings.Limits).
    truncated: bool = False


@dataclass(slots=True)
class Change:
    change_id: str
    kind: ChangeKind
    resource_id: str
    occurred_at: Micros
    version: str = ""
    description: str = ""
    author: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ErrorContext:
    """Context frozen around an error, so a replay works after the backends' retention."""

    logs: list[LogLine] = field(default_factory=list)
    metrics: list[MetricSeries] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    topology: Topology | None = None
    changes: list[Change] = field(default_factory=list)
    statuses: list[CollectorStatus] = field(default_factory=list)


@dataclass(slots=True)
class ErrorSnapshot:
    """A stored error. `received_at` is unique and increases in commit order (see Store)."""

    error_id: str
    group_id: str
    received_at: Micros
    report: ErrorReport
    fingerprint: str
    request_id: str = ""
    context: ErrorContext = field(default_factory=ErrorContext)
    related_error_ids: list[str] = field(default_factory=list)
    affected_resource_ids: list[str] = field(default_factory=list)
    # Whose request_id it is: the caller's identity when auth is on, "" when off. Idempotency is
    # keyed by (idempotency_scope, request_id), so one caller's request_id never finds another's.
    idempotency_scope: str = ""


def nearness(occurred_at: Micros, received_at: Micros, pivot: Micros) -> tuple[Micros, Micros, Micros]:
    """Orders errors nearest to `pivot` first. At equal distance the earlier side comes first;
    within one time, latest received first before the pivot and earliest received first after
    it (the order an index walk away from the pivot gives). Neo4j's related query orders alike."""
    return abs(occurred_at - pivot), occurred_at, received_at if occurred_at > pivot else -received_at


def nearest(snapshots: Iterable[ErrorSnapshot], pivot: Micros, limit: int) -> list[ErrorSnapshot]:
    """The `limit` snapshots nearest in time to `pivot` (`nearness`), oldest first."""
    near = list(snapshots)
    if len(near) > limit:
        near = sorted(near, key=lambda s: nearness(s.report.occurred_at, s.received_at, pivot))[:limit]
    return sorted(near, key=lambda s: (s.report.occurred_at, s.received_at))


def idempotency_key(snapshot: ErrorSnapshot) -> str:
    """The stored, unique form of (idempotency_scope, request_id); "" without a request_id.

    Unscoped keys are the bare request_id (as before scopes existed); scoped ones put the scope
    first, split off by a control character that request ids may not contain."""
    if not snapshot.request_id or not snapshot.idempotency_scope:
        return snapshot.request_id
    return f"{snapshot.idempotency_scope}{SCOPE_SEPARATOR}{snapshot.request_id}"


def split_idempotency_key(stored: str) -> tuple[str, str]:
    """(idempotency_scope, request_id) of a stored key."""
    scope, sep, request_id = stored.partition(SCOPE_SEPARATOR)
    return (scope, request_id) if sep else ("", stored)


# A control character: request ids may not contain one (capture/validation.py).
SCOPE_SEPARATOR = "\x1f"


@dataclass(slots=True)
class ErrorGroup:
    group_id: str
    title: str
    error_type: str
    count: int
    first_seen: Micros
    last_seen: Micros
    status: GroupStatus
    regression: bool = False
    affected_resource_ids: list[str] = field(default_factory=list)
    representative_error_id: str = ""
    max_severity: Severity = Severity.UNSPECIFIED


@dataclass(slots=True)
class ErrorFilter:
    """Every field that is set must match. Time bounds are inclusive, on occurred_at."""

    severities: list[Severity] = field(default_factory=list)
    min_severity: Severity = Severity.UNSPECIFIED
    sources: list[Source] = field(default_factory=list)
    resource_ids: list[str] = field(default_factory=list)
    resource_type: str = ""
    error_type: str = ""
    correlation_id: str = ""
    trace_id: str = ""
    group_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    text: str = ""
    start_time: Micros | None = None
    end_time: Micros | None = None
    service: str = ""
    environment: str = ""
    # Groups to leave out (statistics leave muted groups out by default).
    exclude_group_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class NewError:
    """One capture handed to the store: the snapshot to insert, and its idempotency key."""

    snapshot: ErrorSnapshot
    group_title: str


@dataclass(slots=True)
class CaptureOutcome:
    snapshot: ErrorSnapshot
    duplicate: bool
    regression: bool = False
    # The first error of its group: the group did not exist before this capture (notifications).
    new_group: bool = False
    # A duplicate answered to a caller that may not read errors: `snapshot` holds only the ids.
    snapshot_withheld: bool = False


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str = ""
    # -1: not counted. Counts stop at a limit (store/base.py SEARCH_COUNT_LIMIT): when more items
    # match, total_size is the limit and total_capped is True.
    total_size: int = -1
    total_capped: bool = False


@dataclass(slots=True)
class TimedCount:
    start_time: Micros
    count: int


def statistics_buckets(start: Micros, end: Micros, bucket: Micros) -> tuple[Micros, int]:
    """The buckets that cover the statistics window [start, end): the first bucket's start
    (start rounded down to a multiple of `bucket` since the Unix epoch, so hourly buckets begin
    on the hour in UTC) and how many there are. None starts at or after `end`; there is always
    at least one. The first and last may be partial: they count only errors inside the window."""
    first = start - start % bucket
    return first, max(1, -(-(end - first) // bucket))


@dataclass(slots=True)
class GroupCount:
    group_id: str
    title: str
    count: int
    status: GroupStatus


@dataclass(slots=True)
class Statistics:
    total_count: int = 0
    by_severity: dict[Severity, int] = field(default_factory=dict)
    by_source: dict[Source, int] = field(default_factory=dict)
    by_resource: dict[str, int] = field(default_factory=dict)
    by_resource_type: dict[str, int] = field(default_factory=dict)
    by_error_type: dict[str, int] = field(default_factory=dict)
    timed_counts: list[TimedCount] = field(default_factory=list)
    top_groups: list[GroupCount] = field(default_factory=list)
