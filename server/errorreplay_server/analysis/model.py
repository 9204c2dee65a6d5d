"""What the analysis returns. Each class maps 1:1 to a message of errorreplay/v1/message.proto,
and each enum's values equal the protobuf enum numbers, so the api layer only copies fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from errorreplay_server.domain.model import Change, ErrorSnapshot, Micros, Severity


class TimelineEventKind(IntEnum):
    UNSPECIFIED = 0
    ERROR = 1
    RELATED_ERROR = 2
    CHANGE = 3
    LOG = 4
    METRIC_ANOMALY = 5
    SPAN = 6


class RootCauseCategory(IntEnum):
    UNSPECIFIED = 0
    UNKNOWN = 1
    DEPENDENCY_FAILURE = 2
    RECENT_CHANGE = 3
    SATURATION = 4
    ERROR_BURST = 5
    EXTERNAL_DEPENDENCY = 6


class RecommendationKind(IntEnum):
    UNSPECIFIED = 0
    ROLLBACK_CHANGE = 1
    INVESTIGATE_ORIGIN = 2
    SCALE_RESOURCE = 3
    ESCALATE = 4
    ADD_CIRCUIT_BREAKER = 5
    INVESTIGATE_ERROR = 6
    GATHER_CONTEXT = 7


class CorrelationReason(IntEnum):
    """Why one error is related to another (SubscribeErrors' Correlation.reason).

    Direction follows the callers: an UPSTREAM failure sits on a resource that depends on the
    error's resource (a caller), a DOWNSTREAM failure on one it depends on (a dependency)."""

    UNSPECIFIED = 0
    FILTER_MATCH = 1
    SAME_CORRELATION_ID = 2
    SAME_TRACE_ID = 3
    SAME_RESOURCE = 4
    UPSTREAM_FAILURE = 5
    DOWNSTREAM_FAILURE = 6


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    time: Micros
    kind: TimelineEventKind
    resource_id: str
    summary: str
    # Error id, change id, "log:<index into context.logs>", series name or span id.
    reference_id: str
    severity: Severity = Severity.UNSPECIFIED


@dataclass(frozen=True, slots=True)
class PropagationStep:
    resource_id: str
    error_id: str
    occurred_at: Micros


@dataclass(frozen=True, slots=True)
class Propagation:
    """The cascade path, from the origin (first step) to the explained error (last step)."""

    origin_error_id: str
    origin_resource_id: str
    path: list[PropagationStep]
    explanation: str


@dataclass(frozen=True, slots=True)
class Evidence:
    timeline_index: int
    reference_id: str
    description: str


@dataclass(frozen=True, slots=True)
class Cause:
    category: RootCauseCategory
    summary: str
    # In [0, 1].
    score: float
    resource_id: str
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RootCause:
    # None when nothing is known (category UNKNOWN, confidence 0).
    primary_cause: Cause | None
    category: RootCauseCategory
    confidence: float
    contributing_factors: list[Cause] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Recommendation:
    kind: RecommendationKind
    title: str
    rationale: str
    # What it names: a change id, a resource id, a metric name or an edge "dependent->dependency".
    target: str
    # 1 is the most urgent; unique within one analysis.
    priority: int


@dataclass(frozen=True, slots=True)
class ContextCoverage:
    """How much of the frozen context the analysis could use (analysis/coverage.py)."""

    sources: int
    # "<collector> <STATE>: <detail>" for each source that gave nothing to analyse.
    missing_sources: list[str]
    limited: bool
    summary: str


NO_CONTEXT_JUDGED = ContextCoverage(0, [], False, "")


@dataclass(frozen=True, slots=True)
class ReplayAnalysis:
    """Everything ReplayError adds to the stored snapshot."""

    timeline: list[TimelineEvent]
    propagation: Propagation | None
    root_cause: RootCause
    recommendations: list[Recommendation]
    # Newest first.
    related_changes: list[Change]
    # Oldest first; the errors that passed the relation rule.
    related_errors: list[ErrorSnapshot]
    affected_resource_ids: list[str]
    context_coverage: ContextCoverage = NO_CONTEXT_JUDGED
