"""OTLP export builders shared by the adapter, gRPC and bench tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

T0_NANOS = 1_760_000_000_123_456_789
TRACE_ID = bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
SPAN_ID = bytes.fromhex("EEE19B7EC3C1B174")
RESOURCE = {
    "service.name": "checkout",
    "service.version": "2.3.1",
    "deployment.environment.name": "production",
}

AttrValue = str | bool | int | float


def any_value(value: AttrValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def attrs(values: Mapping[str, AttrValue]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items()]


def exception_event(
    message: str = "connection refused to db:5432",
    error_type: str = "ConnectionRefusedError",
    stacktrace: str = 'Traceback (most recent call last):\n  File "app.py", line 3, in charge\nConnectionRefusedError',
    time_unix_nano: int = T0_NANOS,
    **extra: AttrValue,
) -> Span.Event:
    values: dict[str, AttrValue] = {}
    if error_type:
        values["exception.type"] = error_type
    if message:
        values["exception.message"] = message
    if stacktrace:
        values["exception.stacktrace"] = stacktrace
    values.update({k.replace("__", "."): v for k, v in extra.items()})
    return Span.Event(name="exception", time_unix_nano=time_unix_nano, attributes=attrs(values))


def span(
    events: Sequence[Span.Event] = (),
    *,
    name: str = "POST /charge",
    trace_id: bytes = TRACE_ID,
    span_id: bytes = SPAN_ID,
    status: int = Status.STATUS_CODE_ERROR,
    status_message: str = "",
    attributes: Mapping[str, AttrValue] | None = None,
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        start_time_unix_nano=T0_NANOS - 5_000_000,
        end_time_unix_nano=T0_NANOS + 1_000,
        events=list(events),
        status=Status(code=status, message=status_message),  # type: ignore[arg-type]
        attributes=attrs(attributes or {}),
    )


def trace_export(
    spans: Sequence[Span],
    resource: Mapping[str, AttrValue] | None = None,
    scope: InstrumentationScope | None = None,
) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=attrs(RESOURCE if resource is None else resource)),
                scope_spans=[
                    ScopeSpans(scope=scope or InstrumentationScope(name="checkout.api", version="1.0"), spans=spans)
                ],
            )
        ]
    )


def log_record(
    body: str = "failed to charge order 42",
    *,
    severity_number: int = 17,
    severity_text: str = "ERROR",
    time_unix_nano: int = T0_NANOS,
    observed_time_unix_nano: int = 0,
    trace_id: bytes = TRACE_ID,
    span_id: bytes = SPAN_ID,
    attributes: Mapping[str, AttrValue] | None = None,
) -> LogRecord:
    return LogRecord(
        time_unix_nano=time_unix_nano,
        observed_time_unix_nano=observed_time_unix_nano,
        severity_number=severity_number,  # type: ignore[arg-type]
        severity_text=severity_text,
        body=AnyValue(string_value=body),
        trace_id=trace_id,
        span_id=span_id,
        attributes=attrs(attributes or {}),
    )


def logs_export(
    records: Sequence[LogRecord],
    resource: Mapping[str, AttrValue] | None = None,
    scope: InstrumentationScope | None = None,
) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=attrs(RESOURCE if resource is None else resource)),
                scope_logs=[
                    ScopeLogs(
                        scope=scope or InstrumentationScope(name="checkout.logs", version="1.0"), log_records=records
                    )
                ],
            )
        ]
    )
