"""The OTLP adapter, row by row against the mapping table in README.md ("OpenTelemetry (OTLP)")."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from errorreplay_server.domain.model import ErrorReport, Severity, Source
from errorreplay_server.ingest.otlp import OtlpAdapter, any_value_str, severity_for_log, severity_for_span_event
from errorreplay_server.settings import OtlpSettings
from tests.otlp_builders import (
    RESOURCE,
    SPAN_ID,
    T0_NANOS,
    TRACE_ID,
    attrs,
    exception_event,
    log_record,
    logs_export,
    span,
    trace_export,
)

ADAPTER = OtlpAdapter(OtlpSettings())


def one_span_report(adapter: OtlpAdapter = ADAPTER, **export: object) -> ErrorReport:
    items = adapter.from_traces(trace_export(**export))  # type: ignore[arg-type]
    assert len(items) == 1
    return items[0].request.report


def one_log_report(adapter: OtlpAdapter = ADAPTER, **export: object) -> ErrorReport:
    items = adapter.from_logs(logs_export(**export))  # type: ignore[arg-type]
    assert len(items) == 1
    return items[0].request.report


# --- what becomes an error -----------------------------------------------------------------------


def test_row_every_exception_span_event_is_an_error() -> None:
    export = trace_export(
        [
            span([exception_event("first"), Span.Event(name="retry"), exception_event("second")]),
            span([exception_event("third")], span_id=b"\x01" * 8),
            span([], span_id=b"\x02" * 8, status=Status.STATUS_CODE_OK),  # a plain span: dropped
        ]
    )
    items = ADAPTER.from_traces(export)
    assert [i.request.report.message for i in items] == ["first", "second", "third"]
    assert [i.path for i in items] == [
        "resource_spans[0].scope_spans[0].spans[0].events[0]",
        "resource_spans[0].scope_spans[0].spans[0].events[2]",
        "resource_spans[0].scope_spans[0].spans[1].events[0]",
    ]
    assert [i.unit for i in items] == [0, 0, 1]
    assert all(i.request.report.source == Source.APPLICATION for i in items)
    assert ADAPTER.count_errors(export) == 3


def test_row_log_records_with_exception_attributes_are_errors_at_any_severity() -> None:
    export = logs_export(
        [
            log_record("handled", severity_number=9, attributes={"exception.type": "KeyError"}),
            log_record("also handled", severity_number=13, attributes={"exception.message": "no such key"}),
            log_record("just information", severity_number=9),  # dropped
            log_record("a warning", severity_number=13),  # dropped
        ]
    )
    items = ADAPTER.from_logs(export)
    assert [i.request.report.message for i in items] == ["handled", "no such key"]
    assert [i.request.report.error_type for i in items] == ["KeyError", ""]
    assert ADAPTER.count_errors(export) == 2


def test_row_log_records_at_or_above_the_minimum_severity_are_errors_with_the_body_as_message() -> None:
    export = logs_export(
        [
            log_record("warn", severity_number=16),
            log_record("error", severity_number=17),
            log_record("fatal", severity_number=21),
        ]
    )
    assert [i.request.report.message for i in ADAPTER.from_logs(export)] == ["error", "fatal"]
    warn_and_up = OtlpAdapter(OtlpSettings(min_log_severity=13))
    assert [i.request.report.message for i in warn_and_up.from_logs(export)] == ["warn", "error", "fatal"]
    assert warn_and_up.count_errors(export) == 3


def test_row_error_spans_without_exception_event_only_with_the_setting() -> None:
    failed = span([], status=Status.STATUS_CODE_ERROR, status_message="upstream timed out", name="GET /stock")
    unnamed = span([], status=Status.STATUS_CODE_ERROR, name="GET /price", span_id=b"\x03" * 8)
    ok = span([], status=Status.STATUS_CODE_OK, span_id=b"\x04" * 8)
    with_event = span([exception_event("boom")], span_id=b"\x05" * 8)
    export = trace_export([failed, unnamed, ok, with_event])
    assert [i.request.report.message for i in ADAPTER.from_traces(export)] == ["boom"]
    on = OtlpAdapter(OtlpSettings(error_spans=True))
    items = on.from_traces(export)
    assert [i.request.report.message for i in items] == ["upstream timed out", "span GET /price failed", "boom"]
    first = items[0].request.report
    assert first.severity == Severity.HIGH
    assert first.occurred_at == (T0_NANOS + 1_000) // 1000  # the span's end
    assert first.attributes["otel.span.name"] == "GET /stock"
    assert items[0].request.request_id != items[1].request.request_id
    assert on.count_errors(export) == 3


def test_row_everything_else_is_dropped() -> None:
    assert (
        ADAPTER.from_traces(trace_export([span([Span.Event(name="cache miss")], status=Status.STATUS_CODE_OK)])) == []
    )
    assert ADAPTER.from_logs(logs_export([log_record("ok", severity_number=9)])) == []


# --- resource ------------------------------------------------------------------------------------


def test_row_service_name_is_service_and_default_resource_id() -> None:
    report = one_span_report(spans=[span([exception_event()])])
    assert report.service == "checkout"
    assert report.resource_id == "checkout"


def test_row_resource_id_attribute_is_a_setting() -> None:
    adapter = OtlpAdapter(OtlpSettings(resource_id_attribute="k8s.deployment.name"))
    resource = {**RESOURCE, "k8s.deployment.name": "checkout-7f9c"}
    report = one_span_report(adapter, spans=[span([exception_event()])], resource=resource)
    assert (report.service, report.resource_id) == ("checkout", "checkout-7f9c")
    log = one_log_report(adapter, records=[log_record()], resource=resource)
    assert (log.service, log.resource_id) == ("checkout", "checkout-7f9c")


def test_row_service_version_is_release() -> None:
    assert one_span_report(spans=[span([exception_event()])]).release == "2.3.1"
    assert one_log_report(records=[log_record()]).release == "2.3.1"


@pytest.mark.parametrize(
    ("resource", "environment"),
    [
        ({"deployment.environment.name": "production"}, "production"),
        ({"deployment.environment": "staging"}, "staging"),
        ({"deployment.environment.name": "production", "deployment.environment": "old"}, "production"),
        ({}, ""),
    ],
)
def test_row_environment_from_current_or_older_key(resource: dict[str, str], environment: str) -> None:
    assert one_span_report(spans=[span([exception_event()])], resource=resource).environment == environment


# --- the exception -------------------------------------------------------------------------------


def test_row_exception_attributes() -> None:
    report = one_span_report(spans=[span([exception_event("db down", "psycopg.OperationalError", "Traceback ...")])])
    assert report.message == "db down"
    assert report.error_type == "psycopg.OperationalError"
    assert report.stack_trace == "Traceback ..."


def test_row_message_falls_back_to_the_type_then_the_log_body() -> None:
    assert one_span_report(spans=[span([exception_event("", "TimeoutError")])]).message == "TimeoutError"
    log = one_log_report(
        records=[log_record("checkout failed", attributes={"exception.type": "KeyError", "exception.message": "'sku'"})]
    )
    assert log.message == "'sku'"
    assert log.attributes["otel.log.body"] == "checkout failed"
    typed = one_log_report(records=[log_record("checkout failed", attributes={"exception.type": "KeyError"})])
    assert typed.message == "checkout failed"
    assert "otel.log.body" not in typed.attributes
    bare = one_log_report(records=[log_record("", attributes={"exception.type": "KeyError"})])
    assert bare.message == "KeyError"


def test_an_exception_event_with_nothing_in_it_maps_to_an_empty_message_for_validation_to_reject() -> None:
    assert one_span_report(spans=[span([exception_event("", "", "")])]).message == ""


def test_row_escaped_is_kept_and_raises_severity() -> None:
    escaped = one_span_report(
        spans=[span([exception_event(exception__escaped="True")], status=Status.STATUS_CODE_UNSET)]
    )
    assert escaped.attributes["exception.escaped"] is True
    assert escaped.severity == Severity.HIGH
    handled = one_span_report(
        spans=[span([exception_event(exception__escaped=False)], status=Status.STATUS_CODE_UNSET)]
    )
    assert handled.attributes["exception.escaped"] is False
    assert handled.severity == Severity.MEDIUM


# --- ids and time --------------------------------------------------------------------------------


def test_row_trace_and_span_ids_are_lowercase_hex_and_the_trace_is_the_correlation() -> None:
    for report in (one_span_report(spans=[span([exception_event()])]), one_log_report(records=[log_record()])):
        assert report.trace_id == "5b8efff798038103d269b633813fc60c" == TRACE_ID.hex()
        assert report.span_id == "eee19b7ec3c1b174" == SPAN_ID.hex()
        assert report.correlation_id == report.trace_id


def test_row_time_is_occurred_at_in_microseconds() -> None:
    assert one_span_report(spans=[span([exception_event(time_unix_nano=T0_NANOS)])]).occurred_at == T0_NANOS // 1000
    assert one_log_report(records=[log_record(time_unix_nano=T0_NANOS)]).occurred_at == T0_NANOS // 1000
    # A record without a time carries the time the SDK observed it.
    observed = one_log_report(records=[log_record(time_unix_nano=0, observed_time_unix_nano=T0_NANOS + 7_000)])
    assert observed.occurred_at == (T0_NANOS + 7_000) // 1000


# --- severity (one table) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "severity"),
    [
        (0, Severity.HIGH),
        (1, Severity.INFO),
        (5, Severity.INFO),
        (9, Severity.INFO),
        (12, Severity.INFO),
        (13, Severity.MEDIUM),
        (16, Severity.MEDIUM),
        (17, Severity.HIGH),
        (20, Severity.HIGH),
        (21, Severity.CRITICAL),
        (24, Severity.CRITICAL),
    ],
)
def test_row_log_severity_number(number: int, severity: Severity) -> None:
    assert severity_for_log(number) == severity
    record = log_record(severity_number=number, attributes={"exception.type": "E"})
    assert one_log_report(records=[record]).severity == severity


@pytest.mark.parametrize(
    ("status", "escaped", "severity"),
    [
        (Status.STATUS_CODE_ERROR, False, Severity.HIGH),
        (Status.STATUS_CODE_UNSET, True, Severity.HIGH),
        (Status.STATUS_CODE_UNSET, False, Severity.MEDIUM),
        (Status.STATUS_CODE_OK, False, Severity.MEDIUM),
    ],
)
def test_row_span_event_severity(status: int, escaped: bool, severity: Severity) -> None:
    assert severity_for_span_event(status, escaped) == severity
    event = exception_event(exception__escaped=escaped)
    assert one_span_report(spans=[span([event], status=status)]).severity == severity


# --- tags, attributes, scope ---------------------------------------------------------------------


def test_row_chosen_attributes_become_tags_event_over_span_over_resource() -> None:
    resource = {**RESOURCE, "host.name": "node-1", "k8s.namespace.name": "shop", "cloud.region": "eu-west-1"}
    event = exception_event(cloud__region="from-event", user__email="someone@example.com")
    report = one_span_report(
        spans=[span([event], attributes={"k8s.namespace.name": "from-span", "http.route": "/charge"})],
        resource=resource,
    )
    assert report.tags == {"host.name": "node-1", "k8s.namespace.name": "from-span", "cloud.region": "from-event"}
    adapter = OtlpAdapter(OtlpSettings(tag_attributes=("http.route",)))
    routed = one_span_report(adapter, spans=[span([event], attributes={"http.route": "/charge"})], resource=resource)
    assert routed.tags == {"http.route": "/charge"}
    log = one_log_report(records=[log_record(attributes={"cloud.region": "from-log"})], resource=resource)
    assert log.tags == {"host.name": "node-1", "k8s.namespace.name": "shop", "cloud.region": "from-log"}


def test_tag_values_are_cut_to_the_limit_and_empty_ones_left_out() -> None:
    adapter = OtlpAdapter(OtlpSettings(), max_tag_value_chars=8)
    report = one_span_report(
        adapter, spans=[span([exception_event()])], resource={"host.name": "a-very-long-host-name", "cloud.region": ""}
    )
    assert report.tags == {"host.name": "a-very-l"}


def test_row_scope_and_signal_are_recorded_in_attributes() -> None:
    report = one_span_report(
        spans=[span([exception_event()], name="POST /charge")],
        scope=InstrumentationScope(name="app.payments", version="3.1"),
    )
    assert report.attributes == {
        "otel.signal": "trace",
        "otel.scope.name": "app.payments",
        "otel.scope.version": "3.1",
        "otel.span.name": "POST /charge",
    }
    log = one_log_report(records=[log_record("x", severity_text="ERROR")], scope=InstrumentationScope(name="app.log"))
    assert log.attributes == {"otel.signal": "log", "otel.scope.name": "app.log", "otel.severity_text": "ERROR"}


def test_attribute_values_of_every_kind_read_as_text() -> None:
    assert any_value_str(AnyValue(string_value="s")) == "s"
    assert any_value_str(AnyValue(bool_value=True)) == "true"
    assert any_value_str(AnyValue(int_value=42)) == "42"
    assert any_value_str(AnyValue(double_value=1.5)) == "1.5"
    assert any_value_str(AnyValue(bytes_value=b"\x01\xff")) == "01ff"
    assert any_value_str(AnyValue()) == ""
    array = AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="a")]))
    assert any_value_str(array) == '[1,"a"]'
    kv = AnyValue(kvlist_value=KeyValueList(values=attrs({"k": "v"})))
    assert any_value_str(kv) == '{"k":"v"}'


# --- stable request ids --------------------------------------------------------------------------


def test_request_ids_are_stable_across_retries_and_distinct_per_event() -> None:
    def export() -> list[str]:
        spans = [
            span([exception_event("a"), exception_event("b")]),
            span([exception_event("a")], span_id=b"\x09" * 8),
            span([exception_event("a", time_unix_nano=T0_NANOS + 1)]),
        ]
        return [i.request.request_id for i in ADAPTER.from_traces(trace_export(spans))]

    first, retried = export(), export()
    assert first == retried
    assert len(set(first)) == 4
    assert first[0] == f"otlp:event:{TRACE_ID.hex()}:{SPAN_ID.hex()}:0:{T0_NANOS}"


def test_log_request_ids_derive_from_ids_time_and_a_digest_of_the_record() -> None:
    records = [log_record("a"), log_record("b"), log_record("a", time_unix_nano=T0_NANOS + 1), log_record("a")]
    ids = [i.request.request_id for i in ADAPTER.from_logs(logs_export(records))]
    assert ids[0] == ids[3]  # the same record sent again is the same error
    assert len({ids[0], ids[1], ids[2]}) == 3
    assert ids[0].startswith(f"otlp:log:{TRACE_ID.hex()}:{SPAN_ID.hex()}:{T0_NANOS}:")
    assert all(len(i) <= 256 for i in ids)


def test_events_without_ids_are_told_apart_by_content() -> None:
    spans = [
        span([exception_event("a")], trace_id=b"", span_id=b""),
        span([exception_event("b")], trace_id=b"", span_id=b""),
    ]
    ids = [i.request.request_id for i in ADAPTER.from_traces(trace_export(spans))]
    assert len(set(ids)) == 2
