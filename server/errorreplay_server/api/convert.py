"""Protobuf <-> domain conversion. The only module besides the servicers that knows protobuf."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from errorreplay.v1 import message_pb2 as pb
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.analysis.model import Cause, Evidence, Propagation, ReplayAnalysis
from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.domain.model import (
    Change,
    ChangeKind,
    CollectorStatus,
    Dependency,
    ErrorContext,
    ErrorFilter,
    ErrorGroup,
    ErrorReport,
    ErrorSnapshot,
    GroupOrder,
    GroupStatus,
    LogLine,
    MetricSeries,
    Micros,
    Resource,
    Severity,
    Source,
    Span,
    Statistics,
    Topology,
)
from errorreplay_server.streaming.hub import StreamItem

E = TypeVar("E", Severity, Source, ChangeKind, GroupStatus, GroupOrder)

# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


def enum_value(kind: type[E], value: int) -> E:
    """Unknown numbers (proto3 enums are open) become UNSPECIFIED, which validation rejects."""
    try:
        return kind(value)
    except ValueError:
        return kind(0)


def known_enum(kind: type[E], value: int, field: str) -> E:
    """For fields where 0 means "the default" (min_severity, order_by): an unknown number is an
    error, not the default, or ``min_severity = 99`` would quietly mean "every severity"."""
    try:
        return kind(value)
    except ValueError:
        raise InvalidArgument.single(field, f"{value} is not a known {kind.__name__} value") from None


def micros_from(ts: timestamp_pb2.Timestamp, field: str) -> Micros:
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS) or not (0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument.single(field, "is not a valid timestamp")
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def optional_micros(msg: Any, name: str, field: str) -> Micros | None:
    return micros_from(getattr(msg, name), field) if msg.HasField(name) else None


def set_timestamp(ts: timestamp_pb2.Timestamp, micros: Micros) -> None:
    seconds, rest = divmod(micros, 1_000_000)
    ts.seconds = seconds
    ts.nanos = rest * 1000


# google.protobuf.Duration's valid range: about ±10,000 years, nanos of the same sign as seconds.
_MAX_DURATION_SECONDS = 315_576_000_000


def duration_micros(d: duration_pb2.Duration, field: str = "duration") -> Micros:
    if (
        abs(d.seconds) > _MAX_DURATION_SECONDS
        or abs(d.nanos) >= 1_000_000_000
        or (d.seconds < 0 < d.nanos)
        or (d.nanos < 0 < d.seconds)
    ):
        raise InvalidArgument.single(field, "is not a valid duration")
    return d.seconds * 1_000_000 + d.nanos // 1000


def bucket_micros(d: duration_pb2.Duration, field: str = "bucket") -> Micros:
    """A statistics bucket: unset (0, the default) or whole seconds, at least 1 s. A bucket of a few
    nanoseconds would otherwise round to 0 µs and silently become the 1 h default."""
    micros = duration_micros(d, field)
    if d.seconds == 0 and d.nanos == 0:
        return 0
    if d.seconds < 1 or d.nanos != 0:
        raise InvalidArgument.single(field, "must be a whole number of seconds, at least 1 s")
    return micros


def duration_from_ms(ms: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    us = int(ms * 1000)
    d.seconds, rest = divmod(us, 1_000_000)
    d.nanos = rest * 1000
    return d


# --- requests -> domain ------------------------------------------------------------------------
def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python values; what json_format.MessageToDict gives, at a fraction of its
    cost on the capture path (the profile showed MessageToDict at 8% of batch capture)."""
    return {key: _value(value) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None


def report_from_pb(msg: pb.ErrorReport, field: str = "error") -> ErrorReport:
    return ErrorReport(
        message=msg.message,
        severity=enum_value(Severity, msg.severity),
        source=enum_value(Source, msg.source),
        resource_id=msg.resource_id,
        resource_type=msg.resource_type,
        service=msg.service,
        environment=msg.environment,
        release=msg.release,
        error_type=msg.error_type,
        stack_trace=msg.stack_trace,
        correlation_id=msg.correlation_id,
        trace_id=msg.trace_id,
        span_id=msg.span_id,
        occurred_at=micros_from(msg.occurred_at, f"{field}.occurred_at") if msg.HasField("occurred_at") else 0,
        tags=dict(msg.tags),
        attributes=struct_to_dict(msg.attributes) if msg.HasField("attributes") else {},
        fingerprint=list(msg.fingerprint),
        breadcrumbs=[
            LogLine(
                time=micros_from(line.time, f"{field}.breadcrumbs[{i}].time") if line.HasField("time") else 0,
                level=line.level,
                message=line.message,
                labels=dict(line.labels),
            )
            for i, line in enumerate(msg.breadcrumbs)
        ],
    )


def filter_from_pb(msg: pb.ErrorFilter, field: str = "filter") -> ErrorFilter:
    return ErrorFilter(
        severities=[enum_value(Severity, s) for s in msg.severities],
        min_severity=known_enum(Severity, msg.min_severity, f"{field}.min_severity"),
        sources=[enum_value(Source, s) for s in msg.sources],
        resource_ids=list(msg.resource_ids),
        resource_type=msg.resource_type,
        error_type=msg.error_type,
        correlation_id=msg.correlation_id,
        trace_id=msg.trace_id,
        group_id=msg.group_id,
        tags=dict(msg.tags),
        text=msg.text,
        start_time=optional_micros(msg, "start_time", f"{field}.start_time"),
        end_time=optional_micros(msg, "end_time", f"{field}.end_time"),
        service=msg.service,
        environment=msg.environment,
    )


def resource_from_pb(msg: pb.Resource) -> Resource:
    return Resource(id=msg.id, type=msg.type, name=msg.name, labels=dict(msg.labels))


def dependency_from_pb(msg: pb.Dependency) -> Dependency:
    return Dependency(msg.dependent_id, msg.dependency_id)


def change_from_pb(msg: pb.Change, field: str = "change") -> Change:
    return Change(
        change_id=msg.change_id,
        kind=enum_value(ChangeKind, msg.kind),
        resource_id=msg.resource_id,
        occurred_at=micros_from(msg.occurred_at, f"{field}.occurred_at") if msg.HasField("occurred_at") else 0,
        version=msg.version,
        description=msg.description,
        author=msg.author,
        metadata=dict(msg.metadata),
    )


# --- domain -> responses -----------------------------------------------------------------------
def report_to_pb(r: ErrorReport, out: pb.ErrorReport) -> None:
    out.message = r.message
    out.severity = int(r.severity)  # type: ignore[assignment]
    out.source = int(r.source)  # type: ignore[assignment]
    out.resource_id = r.resource_id
    out.resource_type = r.resource_type
    out.service = r.service
    out.environment = r.environment
    out.release = r.release
    out.error_type = r.error_type
    out.stack_trace = r.stack_trace
    out.correlation_id = r.correlation_id
    out.trace_id = r.trace_id
    out.span_id = r.span_id
    set_timestamp(out.occurred_at, r.occurred_at)
    if r.tags:
        out.tags.update(r.tags)
    if r.attributes:
        out.attributes.update(r.attributes)
    if r.fingerprint:
        out.fingerprint.extend(r.fingerprint)


def _log_to_pb(x: LogLine, out: pb.LogLine) -> None:
    set_timestamp(out.time, x.time)
    out.level = x.level
    out.message = x.message
    out.collector = x.collector
    out.labels.update(x.labels)


def _series_to_pb(m: MetricSeries, out: pb.MetricSeries) -> None:
    out.name = m.name
    out.query = m.query
    out.labels.update(m.labels)
    out.unit = m.unit
    out.resource_id = m.resource_id
    for p in m.points:
        point = out.points.add()
        set_timestamp(point.time, p.time)
        point.value = p.value
    for a in m.anomalies:
        an = out.anomalies.add()
        set_timestamp(an.time, a.time)
        an.value = a.value
        an.baseline = a.baseline
        an.threshold = a.threshold
        an.reason = a.reason
        an.kind = a.kind
        if a.since:
            set_timestamp(an.since, a.since)
    if m.baseline is not None:
        b = out.baseline
        b.median = m.baseline.median
        b.spread = m.baseline.spread
        b.points = m.baseline.points
        b.source = m.baseline.source
        set_timestamp(b.start_time, m.baseline.start)
        set_timestamp(b.end_time, m.baseline.end)
        if m.baseline.seasonal_peak is not None:
            b.seasonal_offset.FromMicroseconds(m.baseline.seasonal_offset_us)
            b.seasonal_peak = m.baseline.seasonal_peak


def _span_to_pb(s: Span, out: pb.Span) -> None:
    out.trace_id = s.trace_id
    out.span_id = s.span_id
    out.parent_span_id = s.parent_span_id
    out.service = s.service
    out.name = s.name
    set_timestamp(out.start_time, s.start_time)
    out.duration.CopyFrom(duration_from_ms(s.duration_us / 1000))
    out.status = int(s.status)  # type: ignore[assignment]
    out.status_message = s.status_message
    out.failing = s.failing
    out.attributes.update(s.attributes)


def topology_to_pb(t: Topology, out: pb.Topology) -> None:
    out.root_resource_id = t.root_resource_id
    out.truncated = t.truncated
    for r in t.resources:
        resource_to_pb(r, out.resources.add())
    for d in t.dependencies:
        out.dependencies.add(dependent_id=d.dependent_id, dependency_id=d.dependency_id)


def resource_to_pb(r: Resource, out: pb.Resource) -> None:
    out.id = r.id
    out.type = r.type
    out.name = r.name
    out.labels.update(r.labels)


def change_to_pb(c: Change, out: pb.Change) -> None:
    out.change_id = c.change_id
    out.kind = int(c.kind)  # type: ignore[assignment]
    out.resource_id = c.resource_id
    out.version = c.version
    out.description = c.description
    out.author = c.author
    set_timestamp(out.occurred_at, c.occurred_at)
    out.metadata.update(c.metadata)


def _status_to_pb(s: CollectorStatus, out: pb.CollectorStatus) -> None:
    out.collector = s.collector
    out.state = int(s.state)  # type: ignore[assignment]
    out.detail = s.detail
    out.duration.CopyFrom(duration_from_ms(s.duration_ms))
    if s.collected_at:
        set_timestamp(out.collected_at, s.collected_at)


def context_to_pb(ctx: ErrorContext, out: pb.ErrorContext) -> None:
    for x in ctx.logs:
        _log_to_pb(x, out.logs.add())
    for m in ctx.metrics:
        _series_to_pb(m, out.metrics.add())
    for s in ctx.spans:
        _span_to_pb(s, out.spans.add())
    if ctx.topology is not None:
        topology_to_pb(ctx.topology, out.topology)
    for c in ctx.changes:
        change_to_pb(c, out.changes.add())
    for st in ctx.statuses:
        _status_to_pb(st, out.statuses.add())


def snapshot_to_pb(s: ErrorSnapshot, out: pb.ErrorSnapshot) -> None:
    out.error_id = s.error_id
    out.group_id = s.group_id
    set_timestamp(out.received_at, s.received_at)
    report_to_pb(s.report, out.report)
    context_to_pb(s.context, out.context)
    out.related_error_ids.extend(s.related_error_ids)
    out.affected_resource_ids.extend(s.affected_resource_ids)
    out.fingerprint = s.fingerprint
    out.request_id = s.request_id


def snapshots_to_pb(items: Iterable[ErrorSnapshot], out: Any) -> None:
    for s in items:
        snapshot_to_pb(s, out.add())


def group_to_pb(g: ErrorGroup, out: pb.ErrorGroup) -> None:
    out.group_id = g.group_id
    out.title = g.title
    out.error_type = g.error_type
    out.count = g.count
    set_timestamp(out.first_seen, g.first_seen)
    set_timestamp(out.last_seen, g.last_seen)
    out.status = int(g.status)  # type: ignore[assignment]
    out.regression = g.regression
    out.affected_resource_ids.extend(g.affected_resource_ids)
    out.representative_error_id = g.representative_error_id
    out.max_severity = int(g.max_severity)  # type: ignore[assignment]


def _enum_counts(counts: Mapping[Any, int], enum_type: Any) -> dict[str, int]:
    return {enum_type.Name(int(k)): n for k, n in counts.items()}


def statistics_to_pb(stats: Statistics, out: Any) -> None:
    out.total_count = stats.total_count
    out.by_severity.update(_enum_counts(stats.by_severity, pb.Severity))
    out.by_source.update(_enum_counts(stats.by_source, pb.Source))
    out.by_resource.update(stats.by_resource)
    out.by_resource_type.update(stats.by_resource_type)
    out.by_error_type.update(stats.by_error_type)
    for tc in stats.timed_counts:
        item = out.timed_counts.add()
        set_timestamp(item.start_time, tc.start_time)
        item.count = tc.count
    for gc in stats.top_groups:
        out.top_groups.add(group_id=gc.group_id, title=gc.title, count=gc.count, status=int(gc.status))


# --- analysis -> responses ---------------------------------------------------------------------
def propagation_to_pb(p: Propagation, out: pb.Propagation) -> None:
    out.origin_error_id = p.origin_error_id
    out.origin_resource_id = p.origin_resource_id
    out.explanation = p.explanation
    for step in p.path:
        item = out.path.add(resource_id=step.resource_id, error_id=step.error_id)
        set_timestamp(item.occurred_at, step.occurred_at)


def _evidence_to_pb(items: Iterable[Evidence], out: Any) -> None:
    for e in items:
        out.add(timeline_index=e.timeline_index, reference_id=e.reference_id, description=e.description)


def _cause_to_pb(c: Cause, out: pb.Cause) -> None:
    out.category = int(c.category)  # type: ignore[assignment]
    out.summary = c.summary
    out.score = c.score
    out.resource_id = c.resource_id
    _evidence_to_pb(c.evidence, out.evidence)


def replay_to_pb(snapshot: ErrorSnapshot, analysis: ReplayAnalysis, out: Any) -> None:
    """Fills a ReplayErrorResponse."""
    snapshot_to_pb(snapshot, out.error)
    for ev in analysis.timeline:
        item = out.timeline.add(
            kind=int(ev.kind),
            resource_id=ev.resource_id,
            summary=ev.summary,
            reference_id=ev.reference_id,
            severity=int(ev.severity),
        )
        set_timestamp(item.time, ev.time)
    if analysis.propagation is not None:
        propagation_to_pb(analysis.propagation, out.propagation)
    rc = analysis.root_cause
    if rc.primary_cause is not None:
        _cause_to_pb(rc.primary_cause, out.root_cause.primary_cause)
    out.root_cause.category = int(rc.category)
    out.root_cause.confidence = rc.confidence
    for factor in rc.contributing_factors:
        _cause_to_pb(factor, out.root_cause.contributing_factors.add())
    _evidence_to_pb(rc.evidence, out.root_cause.evidence)
    for r in analysis.recommendations:
        out.recommendations.add(
            kind=int(r.kind), title=r.title, rationale=r.rationale, target=r.target, priority=r.priority
        )
    for c in analysis.related_changes:
        change_to_pb(c, out.related_changes.add())
    snapshots_to_pb(analysis.related_errors, out.related_errors)
    coverage = analysis.context_coverage
    out.context_coverage.sources = coverage.sources
    out.context_coverage.missing_sources.extend(coverage.missing_sources)
    out.context_coverage.limited = coverage.limited
    out.context_coverage.summary = coverage.summary


class StreamEncoder:
    """Encodes stream items to SubscribeErrorsResponse bytes, once per error and correlation.

    Every subscriber that receives an error for the same reason gets the same snapshot and the
    same correlation object (see the hub), so the whole message is encoded once and reused.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        # Keyed by identity; the objects are kept so their ids cannot be reused while cached.
        self._cache: OrderedDict[tuple[int, int], tuple[ErrorSnapshot, object, bytes]] = OrderedDict()

    def encode(self, item: StreamItem) -> bytes:
        snapshot, correlation = item.snapshot, item.correlation
        if snapshot is None:
            return rr.SubscribeErrorsResponse(cursor=item.cursor, heartbeat=True).SerializeToString()
        key = (id(snapshot), id(correlation))
        hit = self._cache.get(key)
        if hit is not None and hit[0] is snapshot and hit[1] is correlation:
            return hit[2]
        out = rr.SubscribeErrorsResponse(cursor=item.cursor)
        snapshot_to_pb(snapshot, out.error)
        if correlation is not None:
            c = out.correlation
            c.correlated = correlation.correlated
            c.reason = int(correlation.reason)  # type: ignore[assignment]
            c.origin_error_id = correlation.origin_error_id
            c.related_error_ids.extend(correlation.related_error_ids)
            c.affected_resource_ids.extend(correlation.affected_resource_ids)
            c.matched_error_id = correlation.matched_error_id
        encoded = out.SerializeToString()
        self._cache[key] = (snapshot, correlation, encoded)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return encoded
