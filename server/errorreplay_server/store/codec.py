"""JSON encoding of the parts of a snapshot that stores keep as documents.

Both stores keep the searchable report fields as columns/properties and the rest (tags,
attributes, stack trace, context) as JSON, because Neo4j rejects map properties and SQLite
has no nested types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass
from enum import Enum
from functools import cache
from operator import attrgetter
from types import MappingProxyType, NoneType, UnionType
from typing import Any, TypeVar, cast, get_args, get_origin, get_type_hints

from errorreplay_server.domain.model import (
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
    MetricPoint,
    Resource,
    Severity,
    Source,
    Span,
    Topology,
    idempotency_key,
    split_idempotency_key,
)

T = TypeVar("T")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=False).encode


def dumps(value: Any) -> str:
    return _dumps(value)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


# Records kept as arrays of their fields in declaration order, the compact form for what a context
# holds many of; a field may only be appended, with a default, so that older arrays still decode.
# The other records are objects keyed by field name. None, False and empty lists are left out.
_ARRAY_RECORDS = (LogLine, MetricPoint, MetricAnomaly, Span, CollectorStatus, Resource, Dependency)
# Object keys that are not their field's name (documents already stored use them).
_KEYS: dict[tuple[Any, str], str] = {(Topology, "root_resource_id"): "root"}


def to_doc(value: Any) -> Any:
    """A record (or a list of them) as JSON-ready values. Enums stay IntEnum members, which the
    JSON encoder and the Bolt driver both write as their ints (a change's kind is a Neo4j property:
    the contract suite's kind filter on the Bolt server reads it back as one)."""
    if isinstance(value, list):
        return [to_doc(v) for v in value]
    encode = _encoder(cast(Any, type(value)))
    return value if encode is None else encode(value)


def from_doc(cls: type[T], doc: Any) -> T:
    """The record of type `cls` that to_doc wrote (or an older version of it, missing later fields)."""
    decode = _decoder(cast(Any, cls))
    assert decode is not None
    return cast(T, decode(doc))


def _layout(tp: Any) -> list[tuple[str, str, Any]]:
    """(field, document key, type) of a record type, in declaration order."""
    hints = get_type_hints(tp)
    return [(f.name, _KEYS.get((tp, f.name), f.name), hints[f.name]) for f in fields(tp)]


@cache
def _encoder(tp: Any) -> Callable[[Any], Any] | None:
    """A function from a value of type `tp` to its document, made once per type; None when the
    JSON encoder writes the value as it is (strings, numbers, maps, enums as their ints)."""
    if get_origin(tp) is list:
        item = _encoder(get_args(tp)[0])
        return None if item is None else lambda values: [item(v) for v in values]
    if get_origin(tp) is UnionType:  # X | None: None is never written
        (inner,) = (a for a in get_args(tp) if a is not NoneType)
        return _encoder(inner)
    if not is_dataclass(tp):
        return None
    layout = [(name, key, _encoder(hint)) for name, key, hint in _layout(tp)]
    if tp in _ARRAY_RECORDS:  # the JSON encoder writes the tuple of plain values as an array
        assert all(conv is None for _, _, conv in layout), f"{tp.__name__} holds records: not an array record"
        return attrgetter(*(name for name, _, _ in layout))

    def encode(record: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for name, key, conv in layout:
            value = getattr(record, name)
            if value is not None and value is not False and value != []:
                doc[key] = value if conv is None else conv(value)
        return doc

    return encode


@cache
def _decoder(tp: Any) -> Callable[[Any], Any] | None:
    """A function from a document to a value of type `tp`, made once per type; None when the
    document is the value (strings, numbers, maps)."""
    if get_origin(tp) is list:
        item = _decoder(get_args(tp)[0])
        return None if item is None else lambda values: [item(v) for v in values]
    if get_origin(tp) is UnionType:  # X | None
        (inner,) = (a for a in get_args(tp) if a is not NoneType)
        some = _decoder(inner)
        return None if some is None else lambda v: None if v is None else some(v)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return {m.value: m for m in tp}.__getitem__
    if not is_dataclass(tp):
        return None
    record: Any = tp
    layout = _layout(tp)
    if tp in _ARRAY_RECORDS:
        converted = [(i, conv) for i, (_, _, hint) in enumerate(layout) if (conv := _decoder(hint)) is not None]

        def decode_array(row: list[Any]) -> Any:
            values = list(row)
            for i, conv in converted:
                if i < len(values):  # an array stored before the field existed
                    values[i] = conv(values[i])
            return record(*values)

        return decode_array if converted else lambda row: record(*row)
    by_key = {key: (name, _decoder(hint)) for name, key, hint in layout}

    def decode_object(doc: dict[str, Any]) -> Any:
        values: dict[str, Any] = {}
        for key, value in doc.items():
            target = by_key.get(key)
            if target is not None:  # a key written by a later version is passed over
                name, conv = target
                values[name] = value if conv is None else conv(value)
        return record(**values)

    return decode_object


def context_to_json(ctx: ErrorContext) -> str:
    return dumps(to_doc(ctx))


def context_from_json(text: str | None) -> ErrorContext:
    return from_doc(ErrorContext, loads(text) or {})


def context_pending(ctx: ErrorContext) -> bool:
    """True while a source still waits for collection: the stores index such errors so that a
    restarted server can queue them again (capture/enrichment.py: resume_pending)."""
    return any(s.state is CollectionState.PENDING for s in ctx.statuses)


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


# A link snapshot's containers: empty, read-only (a write raises), one set shared by all. Link
# snapshots are read by the relation rule and dropped; fresh containers for each of the ~150 a
# GetError reads were about 40 % of its walk (README "Performance"). Typed Any: a tuple stands in
# for each list.
_NO_ITEMS: Any = ()
_NO_ENTRIES: Any = MappingProxyType({})
_NO_CONTEXT = ErrorContext(_NO_ITEMS, _NO_ITEMS, _NO_ITEMS, None, _NO_ITEMS, _NO_ITEMS)


def link_from_row(row: Sequence[Any]) -> ErrorSnapshot:
    """A snapshot with only the LINK_COLUMNS set; message, documents and context stay empty.
    GetError needs no more of its related errors than their ids, and decoding ~100 documents
    and contexts per call was most of its latency. Positional arguments, in the dataclasses'
    field order: keywords for 18 fields took longer than the rest of the call
    (tests/unit/test_codec.py checks each field against a snapshot built by keyword)."""
    error_id, group_id, received_at, occurred_at, severity, source, resource_id, correlation_id, trace_id = row
    # fmt: off
    report = ErrorReport(
        "", _SEVERITIES[severity], _SOURCES[source], resource_id, "", "", "", "", "", "", correlation_id, trace_id,
        "", occurred_at, _NO_ENTRIES, _NO_ENTRIES, _NO_ITEMS, _NO_ITEMS,
    )
    # fmt: on
    return ErrorSnapshot(error_id, group_id, received_at, report, "", "", _NO_CONTEXT, _NO_ITEMS, _NO_ITEMS)


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
