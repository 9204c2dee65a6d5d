"""What a notification says: the error and the replay's verdict, independent of any target's format."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from errorreplay_server.analysis.model import ReplayAnalysis
from errorreplay_server.domain.model import MICROS_PER_SECOND, ErrorSnapshot, Micros

# Related changes listed per message (newest first); the replay page has the rest.
MAX_CHANGES = 3
# Recommendations listed per message, most urgent first: the first is often "escalate" or "look
# at the origin", and the concrete fix (a rollback) comes next.
MAX_RECOMMENDATIONS = 3
# Long messages are cut here: chat cards are read at a glance.
MAX_TEXT_CHARS = 500


@dataclass(frozen=True, slots=True)
class RootCauseSummary:
    category: str
    summary: str
    confidence: float
    origin_resource_id: str
    top_evidence: str


@dataclass(frozen=True, slots=True)
class RecommendationSummary:
    kind: str
    title: str
    rationale: str
    target: str


@dataclass(frozen=True, slots=True)
class ChangeSummary:
    change_id: str
    kind: str
    resource_id: str
    version: str
    description: str
    occurred_at: str


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    rule: str
    trigger: str
    error_id: str
    group_id: str
    title: str
    message: str
    service: str
    environment: str
    resource_id: str
    severity: str
    # Errors in the group so far.
    count: int
    occurred_at: str
    root_cause: RootCauseSummary | None = None
    # Most urgent first (the replay's priority order).
    recommendations: list[RecommendationSummary] = field(default_factory=list)
    related_changes: list[ChangeSummary] = field(default_factory=list)
    # The console's replay page, "" when the console URL is not set.
    replay_url: str = ""
    # Set when the replay could not be computed (the message still goes out, without a verdict).
    analysis_note: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def iso(micros: Micros) -> str:
    return datetime.fromtimestamp(micros / MICROS_PER_SECOND, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _cut(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compose(
    message_id: str,
    rule: str,
    trigger: str,
    snapshot: ErrorSnapshot,
    title: str,
    count: int,
    analysis: ReplayAnalysis | None,
    console_url: str,
    analysis_note: str = "",
) -> Message:
    r = snapshot.report
    root_cause = None
    recommendations: list[RecommendationSummary] = []
    changes: list[ChangeSummary] = []
    if analysis is not None:
        rc = analysis.root_cause
        if rc.primary_cause is not None:
            evidence = rc.primary_cause.evidence or rc.evidence
            origin = analysis.propagation.origin_resource_id if analysis.propagation else ""
            root_cause = RootCauseSummary(
                category=rc.category.name,
                summary=_cut(rc.primary_cause.summary),
                confidence=round(rc.confidence, 2),
                origin_resource_id=origin or rc.primary_cause.resource_id,
                top_evidence=_cut(evidence[0].description) if evidence else "",
            )
        recommendations = [
            RecommendationSummary(rec.kind.name, _cut(rec.title), _cut(rec.rationale), rec.target)
            for rec in sorted(analysis.recommendations, key=lambda rec: rec.priority)[:MAX_RECOMMENDATIONS]
        ]
        changes = [
            ChangeSummary(c.change_id, c.kind.name, c.resource_id, c.version, _cut(c.description), iso(c.occurred_at))
            for c in analysis.related_changes[:MAX_CHANGES]
        ]
    return Message(
        message_id=message_id,
        rule=rule,
        trigger=trigger,
        error_id=snapshot.error_id,
        group_id=snapshot.group_id,
        title=_cut(title or r.message, 150),
        message=_cut(r.message),
        service=r.service,
        environment=r.environment,
        resource_id=r.resource_id,
        severity=r.severity.name,
        count=count,
        occurred_at=iso(r.occurred_at),
        root_cause=root_cause,
        recommendations=recommendations,
        related_changes=changes,
        replay_url=f"{console_url}/errors/{snapshot.error_id}" if console_url else "",
        analysis_note=analysis_note,
    )
