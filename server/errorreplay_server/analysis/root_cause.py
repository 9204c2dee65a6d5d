"""Root-cause candidates, each scored from evidence in [0, 1] (docs/ARCHITECTURE.md §4, issue 5).

Rules (weights and factors are AnalysisSettings fields):
- Cascade (DEPENDENCY_FAILURE): a propagation path exists. score = cascade_weight ×
  cascade_silent_hop_factor ^ (hops of the path through resources with no error in the cascade).
- Change (RECENT_CHANGE), for each related change (at or before the error, within the change
  window, on the resource or a dependency): score = change_weight × 0.5 ^ (age / half-life)
  × change_dependency_factor ^ (hops from the error's resource to the changed one)
  × change_regression_factor when the error group was first seen at or after the change.
  A change after the error is never a candidate.
- Saturation (SATURATION), per metric series named like a saturation metric, from its anomalies
  up to evidence_lag after the error that lie above the baseline: excess = (value - baseline) /
  |baseline| (full when the baseline is 0), lasted = error time - the anomaly's start;
  score = saturation_weight × min(1, excess / saturation_full_excess) × (brief + (1 - brief) ×
  min(1, lasted / saturation_full_duration)), brief = saturation_brief_factor, from the series'
  strongest anomaly. A trend anomaly's baseline is where its line starts, so a leak from 210 MB
  to 1.05 GB has an excess of 4. An anomaly with no recorded start counts as lasting the full
  duration (contexts stored before starts were recorded keep their verdict).
- Burst (ERROR_BURST): at least burst_min_errors errors (this one included) on the error's
  resource within burst_window up to it, counting only errors linked to this one: of its group,
  with its correlation or trace id, or on its propagation path. Unrelated errors that share the
  resource (an OutOfStock next to a ConnectionError) are no burst of this failure.
  score = burst_weight × min(1, count / burst_full_errors).
- Elsewhere (EXTERNAL_DEPENDENCY), per other service: failing spans of another service, error
  logs labelled with another resource, and error logs of this resource that name one of its
  dependencies, up to evidence_lag after the error. Callers are left out, since they fail
  because of this error: spans above this service's spans in the trace, and resources that
  depend on this one. score = external_weight × min(1, signals / external_full_signals).

Every score is clamped to [0, 1] and rounded to 4 places; candidates under min_cause_score are
dropped. The best is the primary cause, ties broken by category (the order of the rules above),
then resource id, then summary. Confidence = primary score - ambiguity_penalty × (best score
among its rivals), in [0, 1]; a rival blames another resource, or is of the primary's own
category (a second change, a second metric). Candidates of other categories on the same
resource tell one story and do not compete. With no candidate, the category is UNKNOWN and the
confidence 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from errorreplay_server.analysis.correlation import Direction, GraphLike, as_graph, occurred_at, order_key
from errorreplay_server.analysis.formatting import human_duration, iso_time, number
from errorreplay_server.analysis.model import (
    Cause,
    Evidence,
    Propagation,
    RootCause,
    RootCauseCategory,
    TimelineEvent,
    TimelineEventKind,
)
from errorreplay_server.analysis.propagation import silent_hops
from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.analysis.timeline import (
    EventIndex,
    change_label,
    is_failing,
    log_reference,
    log_resource,
    log_severity,
    span_end,
)
from errorreplay_server.domain.model import (
    AnomalyKind,
    Change,
    ErrorContext,
    ErrorSnapshot,
    MetricAnomaly,
    Micros,
    Severity,
    Span,
)
from errorreplay_server.domain.quantities import limit_closeness

CATEGORY_RANK: dict[RootCauseCategory, int] = {
    RootCauseCategory.DEPENDENCY_FAILURE: 0,
    RootCauseCategory.RECENT_CHANGE: 1,
    RootCauseCategory.SATURATION: 2,
    RootCauseCategory.ERROR_BURST: 3,
    RootCauseCategory.EXTERNAL_DEPENDENCY: 4,
}
SCORE_DIGITS = 4


def _clamp(value: float) -> float:
    return round(min(1.0, max(0.0, value)), SCORE_DIGITS)


def cascade_cause(
    propagation: Propagation | None,
    dependencies: GraphLike,
    index: EventIndex,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> Cause | None:
    if propagation is None or len(propagation.path) < 2:
        return None
    silent = silent_hops(propagation.path, dependencies)
    score = settings.cascade_weight * settings.cascade_silent_hop_factor**silent
    evidence = []
    for step in propagation.path[:-1]:
        i = index.find(TimelineEventKind.RELATED_ERROR, step.error_id)
        if i is not None:
            desc = f"{step.resource_id} failed at {iso_time(step.occurred_at)}"
            evidence.append(Evidence(i, step.error_id, desc))
    route = " → ".join(s.resource_id for s in propagation.path)
    summary = f"{propagation.origin_resource_id} failed first and the failure cascaded along DEPENDS_ON: {route}"
    if silent:
        summary += f" ({silent} hop{'s' if silent > 1 else ''} through resources with no error in the cascade)"
    return Cause(RootCauseCategory.DEPENDENCY_FAILURE, summary, _clamp(score), propagation.origin_resource_id, evidence)


def change_score(
    change: Change,
    error_time: Micros,
    hops: int,
    group_first_seen: Micros | None,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> float:
    """The change rule's score (0 for a change after the error)."""
    age = error_time - change.occurred_at
    if age < 0:
        return 0.0
    score = settings.change_weight * 0.5 ** (age / settings.change_half_life_us)
    score *= settings.change_dependency_factor**hops
    if group_first_seen is not None and group_first_seen >= change.occurred_at:
        score *= settings.change_regression_factor
    return _clamp(score)


def change_causes(
    error: ErrorSnapshot,
    changes: Iterable[Change],
    dependencies: GraphLike,
    group_first_seen: Micros | None,
    index: EventIndex,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> list[Cause]:
    resource = error.report.resource_id
    if not resource:
        return []
    hops = as_graph(dependencies).distances(resource, Direction.TOWARDS_DEPENDENCIES, settings.related_hops)
    t = occurred_at(error)
    out = []
    for change in changes:
        if change.resource_id not in hops or not t - settings.change_window_us <= change.occurred_at <= t:
            continue
        score = change_score(change, t, hops[change.resource_id], group_first_seen, settings)
        where = "" if change.resource_id == resource else f" (a dependency of {resource})"
        summary = (
            f"{change_label(change)} on {change.resource_id}{where}, "
            f"{human_duration(t - change.occurred_at)} before the error"
        )
        if group_first_seen is not None and group_first_seen >= change.occurred_at:
            summary += "; this error group was first seen after it"
        evidence = []
        i = index.find(TimelineEventKind.CHANGE, change.change_id)
        if i is not None:
            evidence.append(Evidence(i, change.change_id, f"{change_label(change)} at {iso_time(change.occurred_at)}"))
        out.append(Cause(RootCauseCategory.RECENT_CHANGE, summary, score, change.resource_id, evidence))
    return out


def is_saturation_metric(name: str, settings: AnalysisSettings = DEFAULT_SETTINGS) -> bool:
    lowered = name.lower()
    return any(lowered.startswith(prefix.lower()) for prefix in settings.saturation_metrics)


def relative_excess(value: float, baseline: float) -> float:
    """How far above its baseline a value is, relative to it; infinite for a zero baseline."""
    if baseline == 0:
        return float("inf") if value > 0 else 0.0
    return (value - baseline) / abs(baseline)


def lasted_before(anomaly: MetricAnomaly, error_time: Micros) -> Micros | None:
    """How long the anomaly's excess had lasted at the error (None when its start is unknown)."""
    if not anomaly.since:
        return None
    return max(0, error_time - anomaly.since)


def saturation_strength(
    anomaly: MetricAnomaly, error_time: Micros, settings: AnalysisSettings = DEFAULT_SETTINGS
) -> float:
    """The saturation rule's score for one anomaly, before clamping (see the module docstring)."""
    size = min(1.0, relative_excess(anomaly.value, anomaly.baseline) / settings.saturation_full_excess)
    lasted = lasted_before(anomaly, error_time)
    if lasted is None:
        return settings.saturation_weight * size
    brief = settings.saturation_brief_factor
    duration = brief + (1.0 - brief) * min(1.0, lasted / settings.saturation_full_duration_us)
    return settings.saturation_weight * size * duration


def saturation_causes(
    error: ErrorSnapshot,
    context: ErrorContext,
    index: EventIndex,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> list[Cause]:
    t = occurred_at(error)
    latest = t + settings.evidence_lag_us
    out = []
    for series in context.metrics:
        if not is_saturation_metric(series.name, settings):
            continue
        rising = [a for a in series.anomalies if a.time <= latest and a.value > a.baseline]
        if not rising:
            continue
        # At equal strength a trend explains more than one point above a threshold.
        worst = max(rising, key=lambda a: (saturation_strength(a, t, settings), a.kind == AnomalyKind.TREND, -a.time))
        resource = series.resource_id or error.report.resource_id
        where = f" on {resource}" if resource else ""
        if worst.kind == AnomalyKind.TREND:
            summary = f"Sustained rise{where}: {worst.reason}"
        else:
            summary = (
                f"{series.name}{where} reached {number(worst.value, series.unit)} against a baseline of "
                f"{number(worst.baseline, series.unit)}"
            )
            lasted = lasted_before(worst, t)
            if lasted:
                summary += f", above its threshold for {human_duration(lasted)} before the error"
            peak = max((p.value for p in series.points if p.time <= latest), default=None)
            if peak is not None and (closeness := limit_closeness(peak, series.unit)):
                summary += f"; its highest, {number(peak, series.unit)}, was{closeness.removeprefix(',')}"
        evidence = []
        for anomaly in rising:
            i = index.find(TimelineEventKind.METRIC_ANOMALY, series.name, anomaly.time)
            if i is not None:
                if anomaly.kind == AnomalyKind.TREND:
                    desc = anomaly.reason
                else:
                    value, threshold = number(anomaly.value, series.unit), number(anomaly.threshold, series.unit)
                    desc = f"{series.name} at {value} (threshold {threshold})"
                evidence.append(Evidence(i, series.name, desc))
        score = saturation_strength(worst, t, settings)
        out.append(Cause(RootCauseCategory.SATURATION, summary, _clamp(score), resource, evidence))
    return out


def _linked_to(error: ErrorSnapshot, other: ErrorSnapshot, path_ids: set[str]) -> bool:
    """Whether `other` is the same failure as `error` or one the analysis ties to it: the same
    group, the same correlation or trace id, or a step of its propagation path. Another kind
    of error that merely shares the resource is not."""
    a, b = error.report, other.report
    return (
        (bool(error.group_id) and other.group_id == error.group_id)
        or (bool(a.correlation_id) and a.correlation_id == b.correlation_id)
        or (bool(a.trace_id) and a.trace_id == b.trace_id)
        or other.error_id in path_ids
    )


def burst_cause(
    error: ErrorSnapshot,
    related: Iterable[ErrorSnapshot],
    index: EventIndex,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
    propagation: Propagation | None = None,
) -> Cause | None:
    resource = error.report.resource_id
    if not resource:
        return None
    t, last = occurred_at(error), order_key(error)
    path_ids = {step.error_id for step in propagation.path} if propagation is not None else set()
    burst = sorted(
        (
            e
            for e in related
            if e.error_id != error.error_id
            and e.report.resource_id == resource
            and order_key(e) < last
            and occurred_at(e) >= t - settings.burst_window_us
            and _linked_to(error, e, path_ids)
        ),
        key=order_key,
    )
    count = len({e.error_id for e in burst}) + 1
    if count < settings.burst_min_errors:
        return None
    score = settings.burst_weight * min(1.0, count / settings.burst_full_errors)
    evidence = []
    for e in burst:
        i = index.find(TimelineEventKind.RELATED_ERROR, e.error_id)
        if i is not None:
            evidence.append(Evidence(i, e.error_id, f"{e.report.error_type or 'error'} on {resource}"))
    summary = f"{count} errors on {resource} within {human_duration(settings.burst_window_us)} up to this one"
    return Cause(RootCauseCategory.ERROR_BURST, summary, _clamp(score), resource, evidence)


@dataclass(slots=True)
class _Signals:
    spans: int = 0
    logs: int = 0
    evidence: list[Evidence] = field(default_factory=list)


def _mention_patterns(names: Iterable[str]) -> list[tuple[str, re.Pattern[str]]]:
    # A name counts only as a whole token, so "api" does not match inside "api-gateway".
    return [(n, re.compile(rf"(?<![\w-]){re.escape(n)}(?![\w-])")) for n in sorted(names)]


def _ancestors_of_own_spans(spans: Sequence[Span], own: set[str]) -> set[str]:
    """Span ids above any span of this service in the trace: its callers' spans."""
    by_id = {s.span_id: s for s in spans if s.span_id}
    found: set[str] = set()
    for span in spans:
        if span.service not in own:
            continue
        parent = span.parent_span_id
        while parent and parent not in found and parent in by_id:
            found.add(parent)
            parent = by_id[parent].parent_span_id
    return found


def external_causes(
    error: ErrorSnapshot,
    context: ErrorContext,
    dependencies: GraphLike,
    index: EventIndex,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> list[Cause]:
    own = {x for x in (error.report.resource_id, error.report.service) if x}
    if not own:
        return []
    latest = occurred_at(error) + settings.evidence_lag_us
    graph = as_graph(dependencies)
    callers: set[str] = set()
    if error.report.resource_id:
        callers = set(graph.distances(error.report.resource_id, Direction.TOWARDS_DEPENDENTS)) - own
    above_own = _ancestors_of_own_spans(context.spans, own)
    signals: dict[str, _Signals] = {}
    for span in context.spans:
        if not is_failing(span) or not span.service or span.service in own or span_end(span) > latest:
            continue
        # A caller's span fails because this service failed: an effect, not a cause.
        if span.span_id in above_own or span.service in callers:
            continue
        i = index.find(TimelineEventKind.SPAN, span.span_id, span_end(span))
        s = signals.setdefault(span.service, _Signals())
        s.spans += 1
        if i is not None:
            s.evidence.append(Evidence(i, span.span_id, f"span {span.name or span.span_id} failed in {span.service}"))
    deps: list[tuple[str, re.Pattern[str]]] = []
    if error.report.resource_id:
        near = graph.distances(error.report.resource_id, Direction.TOWARDS_DEPENDENCIES, settings.related_hops)
        deps = _mention_patterns(r for r in near if r not in own)
    for n, line in enumerate(context.logs):
        severity = log_severity(line.level)
        if severity is None or severity < Severity.HIGH or line.time > latest:
            continue
        source = log_resource(line, settings)
        if source and source in callers:
            continue
        if source and source not in own:
            targets = [source]
        else:
            targets = [name for name, pattern in deps if pattern.search(line.message)]
        ref = log_reference(n)
        i = index.find(TimelineEventKind.LOG, ref)
        for target in targets:
            s = signals.setdefault(target, _Signals())
            s.logs += 1
            if i is not None:
                where = f"from {source}" if source == target else f"naming {target}"
                s.evidence.append(Evidence(i, ref, f"{line.level.upper()} log {where}"))
    out = []
    for target in sorted(signals):
        s = signals[target]
        score = settings.external_weight * min(1.0, (s.spans + s.logs) / settings.external_full_signals)
        parts = []
        if s.spans:
            parts.append(f"{s.spans} failing span{'s' if s.spans > 1 else ''}")
        if s.logs:
            parts.append(f"{s.logs} error log{'s' if s.logs > 1 else ''}")
        verb = "points" if s.spans + s.logs == 1 else "point"
        summary = f"{' and '.join(parts)} {verb} at {target}"
        out.append(Cause(RootCauseCategory.EXTERNAL_DEPENDENCY, summary, _clamp(score), target, s.evidence))
    return out


def rank(causes: Iterable[Cause], settings: AnalysisSettings = DEFAULT_SETTINGS) -> list[Cause]:
    """Candidates at or above min_cause_score, best first (see the module docstring for ties)."""
    kept = [c for c in causes if c.score >= settings.min_cause_score and c.score > 0]
    return sorted(kept, key=lambda c: (-c.score, CATEGORY_RANK.get(c.category, 99), c.resource_id, c.summary))


def candidate_causes(
    error: ErrorSnapshot,
    *,
    timeline: Sequence[TimelineEvent],
    propagation: Propagation | None,
    related_errors: Iterable[ErrorSnapshot],
    related_changes: Iterable[Change],
    dependencies: GraphLike,
    group_first_seen: Micros | None,
    context: ErrorContext | None = None,
    settings: AnalysisSettings = DEFAULT_SETTINGS,
) -> list[Cause]:
    """Every rule's candidates, ranked. `timeline` is build_timeline's output, which evidence
    indexes point into; `context` defaults to the error's frozen context."""
    ctx = error.context if context is None else context
    graph = as_graph(dependencies)
    related = list(related_errors)
    index = EventIndex(timeline)
    causes: list[Cause] = []
    cascade = cascade_cause(propagation, graph, index, settings)
    if cascade is not None:
        causes.append(cascade)
    causes += change_causes(error, related_changes, graph, group_first_seen, index, settings)
    causes += saturation_causes(error, ctx, index, settings)
    burst = burst_cause(error, related, index, settings, propagation)
    if burst is not None:
        causes.append(burst)
    causes += external_causes(error, ctx, graph, index, settings)
    return rank(causes, settings)


def confidence(ranked: Sequence[Cause], settings: AnalysisSettings = DEFAULT_SETTINGS) -> float:
    """Primary score minus ambiguity_penalty × the best rival's score (see the module docstring)."""
    if not ranked:
        return 0.0
    primary = ranked[0]
    rival = max(
        (c.score for c in ranked[1:] if c.resource_id != primary.resource_id or c.category == primary.category),
        default=0.0,
    )
    return _clamp(primary.score - settings.ambiguity_penalty * rival)


def root_cause_from(ranked: Sequence[Cause], settings: AnalysisSettings = DEFAULT_SETTINGS) -> RootCause:
    """The ranked candidates as a RootCause: the first is primary, the rest contribute; the
    evidence of all, each timeline entry once, in timeline order."""
    if not ranked:
        return RootCause(None, RootCauseCategory.UNKNOWN, 0.0, [], [])
    evidence: dict[int, Evidence] = {}
    for cause in ranked:
        for item in cause.evidence:
            evidence.setdefault(item.timeline_index, item)
    return RootCause(
        primary_cause=ranked[0],
        category=ranked[0].category,
        confidence=confidence(ranked, settings),
        contributing_factors=list(ranked[1:]),
        evidence=[evidence[i] for i in sorted(evidence)],
    )
