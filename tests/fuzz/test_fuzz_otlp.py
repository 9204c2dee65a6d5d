"""Fuzzed OTLP exports (well-formed and raw bytes) to the OTLP receiver: never INTERNAL, UNKNOWN,
UNAVAILABLE or RESOURCE_EXHAUSTED, nothing logged as an error, and the server stays healthy."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests.fuzz import strategies as fz
from tests.fuzz.conftest import FuzzServer, fuzz_settings, timeout_for

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
SHARES = {"traces": 0.05, "logs": 0.04, "raw": 0.04}

KEYS = st.sampled_from(
    [
        "exception.type",
        "exception.message",
        "exception.stacktrace",
        "exception.escaped",
        "service.name",
        "service.version",
        "deployment.environment",
        "deployment.environment.name",
        "host.name",
        "cloud.region",
    ]
) | fz.texts(20)

SCALARS = st.one_of(
    fz.texts(60).map(lambda s: AnyValue(string_value=s)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats().map(lambda f: AnyValue(double_value=f)),
    st.binary(max_size=20).map(lambda b: AnyValue(bytes_value=b)),
    st.just(AnyValue()),
)


def _nest(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
    arrays = st.lists(children, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs)))
    kvlists = st.lists(st.tuples(KEYS, children), max_size=3).map(
        lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
    )
    return arrays | kvlists


ANY_VALUES = st.recursive(SCALARS, _nest, max_leaves=8)
ATTRIBUTES = st.lists(st.builds(KeyValue, key=KEYS, value=ANY_VALUES), max_size=6)
IDS = st.sampled_from([b"", bytes(16), bytes(8)]) | st.binary(max_size=300)
TIMES = st.integers(0, 2**64 - 1) | st.just(1_760_000_000_000_000_000)
ENUMS = st.integers(-(2**31), 2**31 - 1) | st.integers(0, 30)
SCOPES = st.builds(InstrumentationScope, name=fz.texts(20), version=fz.texts(10))
RESOURCES = st.builds(Resource, attributes=ATTRIBUTES)

EVENTS = st.builds(
    Span.Event, name=st.sampled_from(["exception", "log"]) | fz.texts(10), time_unix_nano=TIMES, attributes=ATTRIBUTES
)
SPANS = st.builds(
    Span,
    trace_id=IDS,
    span_id=IDS,
    name=fz.texts(30),
    end_time_unix_nano=TIMES,
    events=st.lists(EVENTS, max_size=4),
    status=st.builds(Status, code=ENUMS, message=fz.texts(30)),
    attributes=ATTRIBUTES,
)
TRACE_EXPORTS = st.builds(
    ExportTraceServiceRequest,
    resource_spans=st.lists(
        st.builds(
            ResourceSpans,
            resource=RESOURCES,
            scope_spans=st.lists(st.builds(ScopeSpans, scope=SCOPES, spans=st.lists(SPANS, max_size=4)), max_size=2),
        ),
        max_size=2,
    ),
)
RECORDS = st.builds(
    LogRecord,
    time_unix_nano=TIMES,
    observed_time_unix_nano=TIMES,
    severity_number=ENUMS,
    severity_text=fz.texts(10),
    body=ANY_VALUES,
    attributes=ATTRIBUTES,
    trace_id=IDS,
    span_id=IDS,
)
LOG_EXPORTS = st.builds(
    ExportLogsServiceRequest,
    resource_logs=st.lists(
        st.builds(
            ResourceLogs,
            resource=RESOURCES,
            scope_logs=st.lists(
                st.builds(ScopeLogs, scope=SCOPES, log_records=st.lists(RECORDS, max_size=5)), max_size=2
            ),
        ),
        max_size=2,
    ),
)


@pytest.mark.timeout(timeout_for(SHARES["traces"]))
def test_fuzz_otlp_trace_exports(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["traces"])
    @given(request=TRACE_EXPORTS)
    def run(request: ExportTraceServiceRequest) -> None:
        assert fuzz_server.send(TRACES, request) == grpc.StatusCode.OK

    run()
    fuzz_server.assert_healthy()


@pytest.mark.timeout(timeout_for(SHARES["logs"]))
def test_fuzz_otlp_log_exports(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["logs"])
    @given(request=LOG_EXPORTS)
    def run(request: ExportLogsServiceRequest) -> None:
        assert fuzz_server.send(LOGS, request) == grpc.StatusCode.OK

    run()
    fuzz_server.assert_healthy()


@pytest.mark.timeout(timeout_for(SHARES["raw"]))
def test_fuzz_otlp_raw_bytes(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["raw"])
    @given(
        call=st.sampled_from([(TRACES, TRACE_EXPORTS), (LOGS, LOG_EXPORTS)]).flatmap(
            lambda c: st.tuples(st.just(c[0]), fz.raw_payloads(c[1]))
        )
    )
    def run(call: tuple[str, bytes]) -> None:
        fuzz_server.call(*call)

    run()
    for path in (TRACES, LOGS):
        assert fuzz_server.call(path, b"\xff\xff\xff\xff") == grpc.StatusCode.INVALID_ARGUMENT
    fuzz_server.assert_healthy()
