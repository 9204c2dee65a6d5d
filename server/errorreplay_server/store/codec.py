"""JSON encoding of the parts of a snapshot that stores keep as documents.

Both stores keep the searchable report fields as columns/properties and the rest (tags,
attributes, stack trace, context) as JSON, because Neo4j rejects map properties and SQLite
has no nested types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from errorreplay_server.domain.model import (
    Change,
    ChangeKind,
    CollectionState,
    CollectorStatus,
    Dependency,
    ErrorContext,
    ErrorGroup,
    ErrorReport,
    ErrorSnapshot,
    GroupStatus,
    LogLine,
    MetricAnomaly,
    MetricBaseline,
    MetricPoint,
    MetricSeries,
    Resource,
    Severity,
    Source,
    Span,
    SpanStatus,
    Topology,
    idempotency_key,
    split_idempotency_key,
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=False).encode


def dumps(value: Any) -> str:
    return _dumps(value)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def context_to_json(ctx: ErrorContext) -> str:
    doc: dict[str, Any] = {}
    if ctx.logs:
        doc["logs"] = [[x.time, x.level, x.message, x.collector, x.labels] for x in ctx.logs]
    if ctx.metrics:
        doc["metrics"] = [
            {
                "name": m.name,
                "query": m.query,
                "labels": m.labels,
                "points": [[p.time, p.value] for p in m.points],
                "anomalies": [
                    [a.time, a.value, a.baseline, a.threshold, a.reason, a.kind, a.since] for a in m.anomalies
                ],
                "unit": m.unit,
                "resource_id": m.resource_id,
                **({"baseline": baseline_to_doc(m.baseline)} if m.baseline is not None else {}),
            }
            for m in ctx.metrics
        ]
    if ctx.spans:
        doc["spans"] = [
            [
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.service,
                s.name,
                s.start_time,
                s.duration_us,
                int(s.status),
                s.status_message,
                s.failing,
                s.attributes,
            ]
            for s in ctx.spans
        ]
    if ctx.topology is not None:
        doc["topology"] = topology_to_doc(ctx.topology)
    if ctx.changes:
        doc["changes"] = [change_to_doc(c) for c in ctx.changes]
    if ctx.statuses:
        doc["statuses"] = [[s.collector, int(s.state), s.detail, s.duration_ms, s.collected_at] for s in ctx.statuses]
    return dumps(doc)


def context_pending(ctx: ErrorContext) -> bool:
    """True while a source still waits for collection: the stores index such errors so that a
    restarted server can queue them again (capture/enrichment.py: resume_pending)."""
    return any(s.state is CollectionState.PENDING for s in ctx.statuses)


def context_from_json(text: str | None) -> ErrorContext:
    doc = loads(text) or {}
    topology = doc.get("topology")
    return ErrorContext(
        logs=[LogLine(t, lvl, msg, col, labels) for t, lvl, msg, col, labels in doc.get("logs", ())],
        metrics=[
            MetricSeries(
                name=m["name"],
                query=m.get("query", ""),
                labels=m.get("labels", {}),
                points=[MetricPoint(t, v) for t, v in m.get("points", ())],
                anomalies=[MetricAnomaly(*a) for a in m.get("anomalies", ())],
                unit=m.get("unit", ""),
                resource_id=m.get("resource_id", ""),
                baseline=baseline_from_doc(m["baseline"]) if m.get("baseline") else None,
            )
            for m in doc.get("metrics", ())
        ],
        spans=[
            Span(a[0], a[1], a[2], a[3], a[4], a[5], a[6], SpanStatus(a[7]), a[8], a[9], a[10])
            for a in doc.get("spans", ())
        ],
        topology=topology_from_doc(topology) if topology is not None else None,
        changes=[change_from_doc(c) for c in doc.get("changes", ())],
        statuses=[CollectorStatus(c, CollectionState(st), d, dur, at) for c, st, d, dur, at in doc.get("statuses", ())],
    )


def baseline_to_doc(b: MetricBaseline) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "median": b.median,
        "spread": b.spread,
        "points": b.points,
        "source": b.source,
        "start": b.start,
        "end": b.end,
    }
    if b.seasonal_peak is not None:
        doc["seasonal_peak"] = b.seasonal_peak
        doc["seasonal_offset_us"] = b.seasonal_offset_us
    return doc


def baseline_from_doc(d: dict[str, Any]) -> MetricBaseline:
    return MetricBaseline(
        median=d["median"],
        spread=d["spread"],
        points=d["points"],
        source=d["source"],
        start=d["start"],
        end=d["end"],
        seasonal_peak=d.get("seasonal_peak"),
        seasonal_offset_us=d.get("seasonal_offset_us", 0),
    )


def topology_to_doc(t: Topology) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "root": t.root_resource_id,
        "resources": [[r.id, r.type, r.name, r.labels] for r in t.resources],
        "dependencies": [[d.dependent_id, d.dependency_id] for d in t.dependencies],
    }
    if t.truncated:
        doc["truncated"] = True
    return doc


def topology_from_doc(doc: dict[str, Any]) -> Topology:
    return Topology(
        root_resource_id=doc.get("root", ""),
        resources=[Resource(i, ty, n, lb) for i, ty, n, lb in doc.get("resources", ())],
        dependencies=[Dependency(a, b) for a, b in doc.get("dependencies", ())],
        truncated=bool(doc.get("truncated", False)),
    )


def change_to_doc(c: Change) -> dict[str, Any]:
    return {
        "change_id": c.change_id,
        "kind": int(c.kind),
        "resource_id": c.resource_id,
        "occurred_at": c.occurred_at,
        "version": c.version,
        "description": c.description,
        "author": c.author,
        "metadata": c.metadata,
    }


def change_from_doc(d: dict[str, Any]) -> Change:
    return Change(
        change_id=d["change_id"],
        kind=ChangeKind(d["kind"]),
        resource_id=d["resource_id"],
        occurred_at=d["occurred_at"],
        version=d.get("version", ""),
        description=d.get("description", ""),
        author=d.get("author", ""),
        metadata=d.get("metadata", {}),
    )


# Enum members by stored value: a dict lookup is a tenth of the cost of calling the Enum, and
# GetError decodes about 100 rows per call.
_SEVERITIES: dict[int, Severity] = {int(s): s for s in Severity}
_SOURCES: dict[int, Source] = {int(s): s for s in Source}

# Affected resources listed per group are capped: the list is a hint, not an inventory.
MAX_GROUP_RESOURCES_LISTED = 50


# --- rows shared by the stores: the column order of ERROR_COLUMNS / _GROUP_COLUMNS ---
# The columns (SQLite) or properties (Neo4j) of a stored error, in the order of snapshot_from_row.
ERROR_COLUMNS = [
    "error_id",
    "request_id",
    "group_id",
    "fingerprint",
    "received_at",
    "occurred_at",
    "severity",
    "source",
    "resource_id",
    "resource_type",
    "service",
    "environment",
    "error_type",
    "correlation_id",
    "trace_id",
    "message",
    "details",
    "context",
]


def error_columns(snap: ErrorSnapshot) -> dict[str, Any]:
    """The ERROR_COLUMNS of a snapshot as both stores write them. request_id holds the idempotency
    key, (scope, request_id) in one string, and is None without one."""
    r = snap.report
    return {
        "error_id": snap.error_id,
        "request_id": idempotency_key(snap) or None,
        "group_id": snap.group_id,
        "fingerprint": snap.fingerprint,
        "received_at": snap.received_at,
        "occurred_at": r.occurred_at,
        "severity": int(r.severity),
        "source": int(r.source),
        "resource_id": r.resource_id,
        "resource_type": r.resource_type,
        "service": r.service,
        "environment": r.environment,
        "error_type": r.error_type,
        "correlation_id": r.correlation_id,
        "trace_id": r.trace_id,
        "message": r.message,
        "details": report_details_json(r),
        "context": context_to_json(snap.context),
    }


def snapshot_from_row(row: Sequence[Any]) -> ErrorSnapshot:
    (
        error_id,
        request_id,
        group_id,
        fingerprint,
        received_at,
        occurred_at,
        severity,
        source,
        resource_id,
        resource_type,
        service,
        environment,
        error_type,
        correlation_id,
        trace_id,
        message,
        details,
        context,
    ) = row
    d = loads(details)
    report = ErrorReport(
        message=message,
        severity=_SEVERITIES[severity],
        source=_SOURCES[source],
        resource_id=resource_id,
        resource_type=resource_type,
        service=service,
        environment=environment,
        release=d.get("release", ""),
        error_type=error_type,
        stack_trace=d.get("stack_trace", ""),
        correlation_id=correlation_id,
        trace_id=trace_id,
        span_id=d.get("span_id", ""),
        occurred_at=occurred_at,
        tags=d.get("tags", {}),
        attributes=d.get("attributes", {}),
        fingerprint=d.get("fingerprint", []),
    )
    # The stored key is (scope, request_id) in one string: see domain.model.idempotency_key.
    scope, plain_request_id = split_idempotency_key(request_id or "")
    return ErrorSnapshot(
        error_id=error_id,
        group_id=group_id,
        received_at=received_at,
        report=report,
        fingerprint=fingerprint,
        request_id=plain_request_id,
        context=context_from_json(context),
        idempotency_scope=scope,
    )


# The columns of a link row (`link_from_row`), in order: what the relation rule and the cascade
# walk read of a candidate (analysis/correlation.py RelationFacts), plus group and severity.
LINK_COLUMNS = (
    "error_id",
    "group_id",
    "received_at",
    "occurred_at",
    "severity",
    "source",
    "resource_id",
    "correlation_id",
    "trace_id",
)


def link_from_row(row: Sequence[Any]) -> ErrorSnapshot:
    """A snapshot with only the LINK_COLUMNS set; message, documents and context stay empty.
    GetError needs no more of its related errors than their ids, and decoding ~100 documents
    and contexts per call was most of its latency."""
    error_id, group_id, received_at, occurred_at, severity, source, resource_id, correlation_id, trace_id = row
    report = ErrorReport(
        message="",
        severity=_SEVERITIES[severity],
        source=_SOURCES[source],
        resource_id=resource_id,
        correlation_id=correlation_id,
        trace_id=trace_id,
        occurred_at=occurred_at,
    )
    return ErrorSnapshot(error_id=error_id, group_id=group_id, received_at=received_at, report=report, fingerprint="")


def report_details_json(r: ErrorReport) -> str:
    """The report fields that are not searched, as one JSON document."""
    doc: dict[str, Any] = {}
    if r.release:
        doc["release"] = r.release
    if r.stack_trace:
        doc["stack_trace"] = r.stack_trace
    if r.span_id:
        doc["span_id"] = r.span_id
    if r.tags:
        doc["tags"] = r.tags
    if r.attributes:
        doc["attributes"] = r.attributes
    if r.fingerprint:
        doc["fingerprint"] = r.fingerprint
    return dumps(doc)


def group_from_row(row: tuple[Any, ...], resources: list[str]) -> ErrorGroup:
    gid, title, etype, count, first, last, status, regression, rep, maxsev = row
    return ErrorGroup(
        group_id=gid,
        title=title,
        error_type=etype,
        count=count,
        first_seen=first,
        last_seen=last,
        status=GroupStatus(status),
        regression=bool(regression),
        affected_resource_ids=resources,
        representative_error_id=rep,
        max_severity=Severity(maxsev),
    )
