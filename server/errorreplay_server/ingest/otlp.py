"""OTLP exports -> ErrorReports with stable request ids. Pure: no I/O, no validation, no scrubbing.

Everything a report goes through after this (validation, scrubbing, fingerprinting, idempotency,
durability, streaming, enrichment) is the one capture path's (capture/service.py). The mapping is
the table in README.md, "OpenTelemetry (OTLP)"; tests/unit/test_otlp_adapter.py tests each row.

What becomes an error:
- every span event named `exception` (OpenTelemetry semantic conventions: exception.type,
  exception.message, exception.stacktrace, exception.escaped);
- every log record with exception.type or exception.message, or at or above
  OtlpSettings.min_log_severity;
- with OtlpSettings.error_spans, every span with status ERROR and no `exception` event.
Everything else in an export is accepted and dropped.

Request ids are derived from what an exporter sends again unchanged when it retries, so a retried
export stores nothing twice: trace id, span id, event index and time for span events; trace id,
span id, time and a digest of the record for log records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from errorreplay_server.capture.service import CaptureRequest
from errorreplay_server.domain.model import ErrorReport, Severity, Source
from errorreplay_server.settings import OtlpSettings

EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"
EXCEPTION_ESCAPED = "exception.escaped"
SERVICE_NAME = "service.name"
SERVICE_VERSION = "service.version"
ENVIRONMENT_KEYS = ("deployment.environment.name", "deployment.environment")
"""The current semantic-conventions key first, then the older one."""

SCOPE_NAME = "otel.scope.name"
SCOPE_VERSION = "otel.scope.version"
SPAN_NAME = "otel.span.name"
SIGNAL = "otel.signal"
SEVERITY_TEXT = "otel.severity_text"
LOG_BODY = "otel.log.body"
MAX_LOG_BODY_ATTRIBUTE_CHARS = 1024
"""A log body kept beside an exception message is context, not the error: a short cut is enough."""

_EXCEPTION_KEYS = frozenset((EXCEPTION_TYPE, EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE, EXCEPTION_ESCAPED))


@dataclass(frozen=True, slots=True)
class OtlpItem:
    """One error found in an export: what to capture, where it came from, and which OTLP unit
    (span or log record, numbered in export order) a rejection counts against."""

    request: CaptureRequest
    path: str
    unit: int


def severity_for_log(severity_number: int) -> Severity:
    """OTLP SeverityNumber ranges (logs.proto): 1-12 TRACE..INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL.
    A record with no severity that carries an exception is an error: HIGH."""
    if severity_number == 0 or 17 <= severity_number <= 20:
        return Severity.HIGH
    if severity_number >= 21:
        return Severity.CRITICAL
    if severity_number >= 13:
        return Severity.MEDIUM
    return Severity.INFO


def severity_for_span_event(status_code: int, escaped: bool) -> Severity:
    """An exception that failed its span (status ERROR) or escaped it is HIGH; one the span survived
    (handled, status UNSET or OK) is MEDIUM."""
    if status_code == Status.STATUS_CODE_ERROR or escaped:
        return Severity.HIGH
    return Severity.MEDIUM


def any_value_str(value: AnyValue) -> str:
    text = value.string_value  # nearly every attribute: one read instead of WhichOneof and a compare
    if text:
        return text
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return json.dumps(_any_value_py(value), ensure_ascii=False, separators=(",", ":"))


def _any_value_py(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value_py(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value_py(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind is None:
        return None
    return getattr(value, kind)


def _pick(attributes: Iterable[KeyValue], keys: frozenset[str]) -> dict[str, str]:
    """The wanted attributes as strings, in one pass (exports can carry many attributes)."""
    return {kv.key: any_value_str(kv.value) for kv in attributes if kv.key in keys}


def _truthy(text: str) -> bool:
    return text.strip().lower() == "true"


def _micros(unix_nano: int) -> int:
    return unix_nano // 1000


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class _ResourceFields:
    """What every error of one resource shares."""

    service: str
    resource_id: str
    release: str
    environment: str
    tags: dict[str, str]


class OtlpAdapter:
    def __init__(self, settings: OtlpSettings, max_tag_value_chars: int = 1024) -> None:
        self._settings = settings
        self._max_tag_value_chars = max_tag_value_chars
        self._tag_keys = frozenset(settings.tag_attributes)
        self._resource_keys = frozenset(
            (SERVICE_NAME, SERVICE_VERSION, settings.resource_id_attribute, *ENVIRONMENT_KEYS, *self._tag_keys)
        )
        self._event_keys = _EXCEPTION_KEYS | self._tag_keys

    # --- the shared parts -------------------------------------------------------------------
    def _resource(self, resource: Resource) -> _ResourceFields:
        attrs = _pick(resource.attributes, self._resource_keys)
        service = attrs.get(SERVICE_NAME, "")
        environment = next((attrs[k] for k in ENVIRONMENT_KEYS if attrs.get(k)), "")
        return _ResourceFields(
            service=service,
            resource_id=attrs.get(self._settings.resource_id_attribute, ""),
            release=attrs.get(SERVICE_VERSION, ""),
            environment=environment,
            tags=self._tags(attrs),
        )

    def _tags(self, attrs: Mapping[str, str]) -> dict[str, str]:
        cut = self._max_tag_value_chars
        return {k: v[:cut] for k, v in attrs.items() if k in self._tag_keys and v}

    @staticmethod
    def _scope_attributes(scope: InstrumentationScope, signal: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {SIGNAL: signal}
        if scope.name:
            attributes[SCOPE_NAME] = scope.name
        if scope.version:
            attributes[SCOPE_VERSION] = scope.version
        return attributes

    def _report(
        self,
        res: _ResourceFields,
        *,
        message: str,
        severity: Severity,
        error_type: str,
        stack_trace: str,
        trace_id: str,
        span_id: str,
        occurred_at: int,
        tags: dict[str, str],
        attributes: dict[str, Any],
    ) -> ErrorReport:
        return ErrorReport(
            message=message,
            severity=severity,
            source=Source.APPLICATION,
            resource_id=res.resource_id,
            service=res.service,
            environment=res.environment,
            release=res.release,
            error_type=error_type,
            stack_trace=stack_trace,
            # A trace is one request: its errors list together (ListErrorsByCorrelation).
            correlation_id=trace_id,
            trace_id=trace_id,
            span_id=span_id,
            occurred_at=occurred_at,
            tags=tags,
            attributes=attributes,
        )

    # --- traces -----------------------------------------------------------------------------
    def from_traces(self, request: ExportTraceServiceRequest) -> list[OtlpItem]:
        """The errors of a trace export, in export order."""
        items: list[OtlpItem] = []
        unit = 0
        for r, resource_spans in enumerate(request.resource_spans):
            res: _ResourceFields | None = None
            for s, scope_spans in enumerate(resource_spans.scope_spans):
                scope_attributes: dict[str, Any] | None = None
                for p, span in enumerate(scope_spans.spans):
                    unit += 1
                    exception_events = [
                        (e, event) for e, event in enumerate(span.events) if event.name == EXCEPTION_EVENT
                    ]
                    error_span = (
                        not exception_events
                        and self._settings.error_spans
                        and span.status.code == Status.STATUS_CODE_ERROR
                    )
                    if not exception_events and not error_span:
                        continue
                    if res is None:
                        res = self._resource(resource_spans.resource)
                    if scope_attributes is None:
                        scope_attributes = self._scope_attributes(scope_spans.scope, "trace")
                    path = f"resource_spans[{r}].scope_spans[{s}].spans[{p}]"
                    span_tags = {**res.tags, **self._tags(_pick(span.attributes, self._tag_keys))}
                    for e, event in exception_events:
                        captured = self._event_request(res, scope_attributes, span, span_tags, e, event)
                        items.append(OtlpItem(captured, f"{path}.events[{e}]", unit - 1))
                    if error_span:
                        captured = self._error_span_request(res, scope_attributes, span, span_tags)
                        items.append(OtlpItem(captured, path, unit - 1))
        return items

    def _event_request(
        self,
        res: _ResourceFields,
        scope_attributes: dict[str, Any],
        span: Span,
        span_tags: dict[str, str],
        index: int,
        event: Span.Event,
    ) -> CaptureRequest:
        attrs = _pick(event.attributes, self._event_keys)
        trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
        error_type = attrs.get(EXCEPTION_TYPE, "")
        message = attrs.get(EXCEPTION_MESSAGE, "") or error_type
        escaped = _truthy(attrs.get(EXCEPTION_ESCAPED, ""))
        attributes = {**scope_attributes, SPAN_NAME: span.name}
        if EXCEPTION_ESCAPED in attrs:
            attributes[EXCEPTION_ESCAPED] = escaped
        report = self._report(
            res,
            message=message,
            severity=severity_for_span_event(span.status.code, escaped),
            error_type=error_type,
            stack_trace=attrs.get(EXCEPTION_STACKTRACE, ""),
            trace_id=trace_id,
            span_id=span_id,
            occurred_at=_micros(event.time_unix_nano),
            tags={**span_tags, **self._tags(attrs)},
            attributes=attributes,
        )
        request_id = f"otlp:event:{trace_id}:{span_id}:{index}:{event.time_unix_nano}"
        if not (trace_id or span_id):
            # Without ids, the content tells apart two exceptions recorded at the same instant.
            request_id += ":" + _digest(error_type, message)
        return CaptureRequest(report, request_id)

    def _error_span_request(
        self, res: _ResourceFields, scope_attributes: dict[str, Any], span: Span, span_tags: dict[str, str]
    ) -> CaptureRequest:
        trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
        report = self._report(
            res,
            message=span.status.message or f"span {span.name} failed",
            severity=Severity.HIGH,
            error_type="",
            stack_trace="",
            trace_id=trace_id,
            span_id=span_id,
            occurred_at=_micros(span.end_time_unix_nano or span.start_time_unix_nano),
            tags=dict(span_tags),
            attributes={**scope_attributes, SPAN_NAME: span.name},
        )
        request_id = f"otlp:span:{trace_id}:{span_id}:{span.end_time_unix_nano}"
        if not (trace_id or span_id):
            request_id += ":" + _digest(span.name, span.status.message)
        return CaptureRequest(report, request_id)

    # --- logs -------------------------------------------------------------------------------
    def is_error_log(self, record: LogRecord) -> bool:
        if record.severity_number >= self._settings.min_log_severity:
            return True
        return any(kv.key == EXCEPTION_TYPE or kv.key == EXCEPTION_MESSAGE for kv in record.attributes)

    def from_logs(self, request: ExportLogsServiceRequest) -> list[OtlpItem]:
        """The errors of a log export, in export order."""
        items: list[OtlpItem] = []
        unit = 0
        for r, resource_logs in enumerate(request.resource_logs):
            res: _ResourceFields | None = None
            for s, scope_logs in enumerate(resource_logs.scope_logs):
                scope_attributes: dict[str, Any] | None = None
                for i, record in enumerate(scope_logs.log_records):
                    unit += 1
                    if not self.is_error_log(record):
                        continue
                    if res is None:
                        res = self._resource(resource_logs.resource)
                    if scope_attributes is None:
                        scope_attributes = self._scope_attributes(scope_logs.scope, "log")
                    path = f"resource_logs[{r}].scope_logs[{s}].log_records[{i}]"
                    items.append(OtlpItem(self._log_request(res, scope_attributes, record), path, unit - 1))
        return items

    def _log_request(self, res: _ResourceFields, scope_attributes: dict[str, Any], record: LogRecord) -> CaptureRequest:
        attrs = _pick(record.attributes, self._event_keys)
        body = any_value_str(record.body)
        trace_id, span_id = record.trace_id.hex(), record.span_id.hex()
        error_type = attrs.get(EXCEPTION_TYPE, "")
        message = attrs.get(EXCEPTION_MESSAGE, "") or body or error_type
        attributes = dict(scope_attributes)
        if record.severity_text:
            attributes[SEVERITY_TEXT] = record.severity_text
        if body and body != message:
            attributes[LOG_BODY] = body[:MAX_LOG_BODY_ATTRIBUTE_CHARS]
        if EXCEPTION_ESCAPED in attrs:
            attributes[EXCEPTION_ESCAPED] = _truthy(attrs[EXCEPTION_ESCAPED])
        time_unix_nano = record.time_unix_nano or record.observed_time_unix_nano
        stack_trace = attrs.get(EXCEPTION_STACKTRACE, "")
        report = self._report(
            res,
            message=message,
            severity=severity_for_log(record.severity_number),
            error_type=error_type,
            stack_trace=stack_trace,
            trace_id=trace_id,
            span_id=span_id,
            occurred_at=_micros(time_unix_nano),
            tags={**res.tags, **self._tags(attrs)},
            attributes=attributes,
        )
        digest = _digest(body, error_type, attrs.get(EXCEPTION_MESSAGE, ""), stack_trace, str(record.severity_number))
        return CaptureRequest(report, f"otlp:log:{trace_id}:{span_id}:{time_unix_nano}:{digest}")

    # --- rate limits ------------------------------------------------------------------------
    def count_errors(self, request: ExportTraceServiceRequest | ExportLogsServiceRequest) -> int:
        """How many errors an export holds, without building them (the rate limiter charges per error)."""
        count = 0
        if isinstance(request, ExportTraceServiceRequest):
            error_spans = self._settings.error_spans
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        events = sum(1 for event in span.events if event.name == EXCEPTION_EVENT)
                        if events:
                            count += events
                        elif error_spans and span.status.code == Status.STATUS_CODE_ERROR:
                            count += 1
            return count
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                count += sum(1 for record in scope_logs.log_records if self.is_error_log(record))
        return count
