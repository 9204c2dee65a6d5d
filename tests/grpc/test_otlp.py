"""The OTLP/gRPC receiver over the wire: a real server on port 0, the generated OTLP stubs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.domain.model import CaptureOutcome, NewError
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.server import start_server
from errorreplay_server.settings import Limits
from errorreplay_server.store.sqlite import SqliteStore
from tests.grpc.conftest import Api, server_settings, serving, status_of
from tests.grpc.test_auth import Tokens, bearer, secured_server
from tests.grpc.test_auth import tokens as tokens  # the fixture
from tests.grpc.test_ratelimit import limiter_of
from tests.grpc.test_subscribe import read_errors, subscribed
from tests.otlp_builders import exception_event, log_record, logs_export, span, trace_export

MESSAGE_LIMIT = 16 * 1024


def trace_id() -> bytes:
    return os.urandom(16)


def traces(api: Api | grpc.aio.Channel) -> trace_service_pb2_grpc.TraceServiceStub:
    return trace_service_pb2_grpc.TraceServiceStub(api.channel if isinstance(api, Api) else api)


def logs(api: Api | grpc.aio.Channel) -> logs_service_pb2_grpc.LogsServiceStub:
    return logs_service_pb2_grpc.LogsServiceStub(api.channel if isinstance(api, Api) else api)


async def stored(api: Api, trace: bytes) -> list[m.ErrorSnapshot]:
    found = await api.errors.SearchErrors(
        rr.SearchErrorsRequest(filter=m.ErrorFilter(trace_id=trace.hex()), page_size=100)
    )
    return list(found.errors)


async def test_exception_events_are_captured_with_the_mapping(api: Api) -> None:
    tid = trace_id()
    export = trace_export(
        [
            span([exception_event("db down", "psycopg.OperationalError")], trace_id=tid),
            span([], trace_id=tid, span_id=b"\x07" * 8, status=Status.STATUS_CODE_OK),
        ],
        resource={"service.name": "checkout", "service.version": "2.3.1", "deployment.environment": "staging"},
    )
    reply = await traces(api).Export(export, timeout=10)
    assert not reply.HasField("partial_success")
    (error,) = await stored(api, tid)
    r = error.report
    assert (r.message, r.error_type, r.service, r.resource_id) == (
        "db down",
        "psycopg.OperationalError",
        "checkout",
        "checkout",
    )
    assert (r.release, r.environment, r.source, r.severity) == (
        "2.3.1",
        "staging",
        m.SOURCE_APPLICATION,
        m.SEVERITY_HIGH,
    )
    assert r.trace_id == tid.hex() and r.correlation_id == tid.hex()
    assert r.attributes["otel.scope.name"] == "checkout.api"
    assert error.request_id.startswith(f"otlp:event:{tid.hex()}:")
    # The one capture path fingerprinted and grouped it like any other capture.
    assert error.group_id and error.fingerprint


async def test_the_same_export_sent_twice_stores_each_error_once(api: Api) -> None:
    tid = trace_id()
    export = trace_export([span([exception_event("first"), exception_event("second")], trace_id=tid)])
    records = logs_export([log_record("logged", trace_id=tid, attributes={"exception.type": "ValueError"})])
    for _ in range(2):
        assert not (await traces(api).Export(export, timeout=10)).HasField("partial_success")
        assert not (await logs(api).Export(records, timeout=10)).HasField("partial_success")
    found = await stored(api, tid)
    assert sorted(e.report.message for e in found) == ["first", "logged", "second"]
    assert len({e.error_id for e in found}) == 3


async def test_a_mixed_export_reports_partial_success_and_stores_the_valid_ones(api: Api) -> None:
    tid = trace_id()
    too_long = "x" * (MESSAGE_LIMIT + 1)
    export = trace_export(
        [
            span([exception_event("valid one")], trace_id=tid, span_id=b"\x01" * 8),
            span([exception_event("valid two"), exception_event(too_long)], trace_id=tid, span_id=b"\x02" * 8),
            span([], trace_id=tid, span_id=b"\x03" * 8, status=Status.STATUS_CODE_OK),
            span([Span.Event(name="cache miss")], trace_id=tid, span_id=b"\x04" * 8),
            span([exception_event("", "", "")], trace_id=tid, span_id=b"\x05" * 8),
        ]
    )
    reply = await traces(api).Export(export, timeout=10)
    assert reply.partial_success.rejected_spans == 2
    message = reply.partial_success.error_message
    assert message.startswith("2 of 4 errors rejected: ")
    assert (
        "resource_spans[0].scope_spans[0].spans[1].events[1]: error.message: is longer than 16384 characters" in message
    )
    assert "resource_spans[0].scope_spans[0].spans[4].events[0]: error.message: is required" in message
    assert sorted(e.report.message for e in await stored(api, tid)) == ["valid one", "valid two"]


async def test_a_mixed_log_export_counts_rejected_log_records(api: Api) -> None:
    tid = trace_id()
    export = logs_export(
        [
            log_record("stored", trace_id=tid),
            log_record("y" * (MESSAGE_LIMIT + 1), trace_id=tid),
            log_record("an info line", trace_id=tid, severity_number=9),
        ]
    )
    reply = await logs(api).Export(export, timeout=10)
    assert reply.partial_success.rejected_log_records == 1
    assert "resource_logs[0].scope_logs[0].log_records[1]: error.message" in reply.partial_success.error_message
    assert [e.report.message for e in await stored(api, tid)] == ["stored"]


async def test_an_export_where_everything_is_rejected_still_succeeds_with_the_count(api: Api) -> None:
    tid = trace_id()
    export = trace_export([span([exception_event("z" * (MESSAGE_LIMIT + 1))], trace_id=tid)])
    reply = await traces(api).Export(export, timeout=10)
    assert reply.partial_success.rejected_spans == 1
    assert await stored(api, tid) == []


async def test_an_empty_export_is_accepted(api: Api) -> None:
    assert not (await traces(api).Export(ExportTraceServiceRequest(), timeout=10)).HasField("partial_success")
    assert not (await logs(api).Export(ExportLogsServiceRequest(), timeout=10)).HasField("partial_success")


async def test_secrets_in_exception_message_and_stacktrace_are_never_stored(api: Api) -> None:
    tid = trace_id()
    message = "login failed for postgres://app:hunter2secret@db:5432/x password=s3cr3t-value"
    stack = 'Traceback (most recent call last):\n  File "db.py", line 9\n    connect(password="tr0ub4dor-pw")\n'
    await traces(api).Export(trace_export([span([exception_event(message, "AuthError", stack)], trace_id=tid)]))
    await logs(api).Export(
        logs_export(
            [
                log_record(
                    "charge failed token=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                    trace_id=tid,
                    attributes={"exception.message": message, "exception.stacktrace": stack},
                )
            ]
        )
    )
    found = await stored(api, tid)
    assert len(found) == 2
    for error in found:
        got = await api.errors.GetError(rr.GetErrorRequest(error_id=error.error_id))
        text = str(got.error)
        for secret in ("hunter2secret", "s3cr3t-value", "tr0ub4dor-pw", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"):
            assert secret not in text
        assert "[REDACTED:" in got.error.report.message
        assert "[REDACTED:" in got.error.report.stack_trace


async def test_errors_stream_to_subscribers_like_any_capture(api: Api) -> None:
    tid = trace_id()
    stream = await subscribed(api, rr.SubscribeErrorsRequest(filter=m.ErrorFilter(resource_ids=["streamed-svc"])))
    export = trace_export(
        [span([exception_event("streamed")], trace_id=tid)], resource={"service.name": "streamed-svc"}
    )
    await traces(api).Export(export, timeout=10)
    (message,) = await read_errors(stream, 1)
    assert message.error.report.message == "streamed"
    assert message.error.report.trace_id == tid.hex()
    stream.cancel()


async def test_store_down_fails_the_export_with_unavailable(api: Api) -> None:
    await api.running.store.close()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await traces(api).Export(trace_export([span([exception_event()])]), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert status_of(info.value).code == code_pb2.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await logs(api).Export(logs_export([log_record()]), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_nothing_to_store_succeeds_even_with_the_store_down(api: Api) -> None:
    """An export of plain spans stores nothing, so it has nothing to fail on."""
    await api.running.store.close()
    reply = await traces(api).Export(trace_export([span([], status=Status.STATUS_CODE_OK)]), timeout=10)
    assert not reply.HasField("partial_success")


async def test_a_malformed_export_is_invalid_argument(api: Api) -> None:
    method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api.channel.unary_unary(method)(b"\xff\xff\xff\xff", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_export_larger_than_one_batch_is_captured_in_batches(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, limits=Limits(max_batch_size=3))
    async with serving(await start_server(settings)) as api:
        tid = trace_id()
        events = [exception_event(f"error {i}", time_unix_nano=1_760_000_000_000_000_000 + i) for i in range(8)]
        reply = await traces(api).Export(trace_export([span(events, trace_id=tid)]), timeout=10)
        assert not reply.HasField("partial_success")
        assert len(await stored(api, tid)) == 8


# --- auth and rate limits ------------------------------------------------------------------------


async def test_auth_an_export_without_a_token_is_unauthenticated(tmp_path: Path, tokens: Tokens) -> None:
    tid = trace_id()
    export = trace_export([span([exception_event("authed")], trace_id=tid)])
    async with secured_server(tmp_path, tokens.security()) as srv:
        for call in (traces(srv.channel).Export(export), logs(srv.channel).Export(logs_export([log_record()]))):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await traces(srv.channel).Export(export, metadata=bearer(tokens.reader))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await traces(srv.channel).Export(export, metadata=bearer(tokens.writer))
        found = await srv.errors.SearchErrors(
            rr.SearchErrorsRequest(filter=m.ErrorFilter(trace_id=tid.hex())), metadata=bearer(tokens.reader)
        )
        assert [e.report.message for e in found.errors] == ["authed"]


async def test_an_export_retried_by_another_token_is_its_own_capture(tmp_path: Path, tokens: Tokens) -> None:
    """OTLP request ids are scoped to the caller like any request_id: the same export from two
    writer tokens stores one error for each, and each token's retry stores nothing new."""
    tid = trace_id()
    export = trace_export([span([exception_event("scoped")], trace_id=tid)])
    async with secured_server(tmp_path, tokens.security()) as srv:
        for token in (tokens.writer, tokens.read_write, tokens.writer, tokens.read_write):
            await traces(srv.channel).Export(export, metadata=bearer(token))
        found = await srv.errors.SearchErrors(
            rr.SearchErrorsRequest(filter=m.ErrorFilter(trace_id=tid.hex())), metadata=bearer(tokens.reader)
        )
        assert [e.report.message for e in found.errors] == ["scoped", "scoped"]


async def test_rate_limit_charges_one_token_per_exported_error(tmp_path: Path) -> None:
    security = SecuritySettings(rate_limit_per_second=0.001, rate_limit_burst=10)
    async with secured_server(tmp_path, security) as srv:
        limiter = limiter_of(srv).limiter
        assert limiter is not None
        key = "ipv4:127.0.0.1"
        events = [exception_event(f"e{i}", time_unix_nano=1_760_000_000_000_000_000 + i) for i in range(4)]
        plain = span([], span_id=b"\x08" * 8, status=Status.STATUS_CODE_OK)
        await traces(srv.channel).Export(trace_export([span(events, trace_id=trace_id()), plain]))
        assert round(limiter.tokens(key)) == 6  # four errors, the plain span is free
        await logs(srv.channel).Export(
            logs_export([log_record("a", trace_id=trace_id()), log_record("info", severity_number=9)])
        )
        assert round(limiter.tokens(key)) == 5
        # An export with no error still costs one call.
        await traces(srv.channel).Export(trace_export([plain]))
        assert round(limiter.tokens(key)) == 4
        # A large export may overdraw; the next call is refused with RetryInfo.
        many = [exception_event(f"m{i}", time_unix_nano=1_760_000_000_000_000_000 + i) for i in range(20)]
        await traces(srv.channel).Export(trace_export([span(many, trace_id=trace_id())]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await traces(srv.channel).Export(trace_export([span([exception_event()], trace_id=trace_id())]))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert status_of(info.value).code == code_pb2.RESOURCE_EXHAUSTED


class ExplodingStore(SqliteStore):
    async def capture(self, errors: Sequence[NewError]) -> list[CaptureOutcome]:
        raise RuntimeError("password=hunter2 in /srv/errorreplay/secret_module.py")


async def test_an_unexpected_failure_is_internal_and_opaque(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    running = await start_server(server_settings(tmp_path), store=ExplodingStore(tmp_path / "x.db"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await traces(channel).Export(trace_export([span([exception_event()])]), timeout=10)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "hunter2" not in (info.value.details() or "") and "secret_module" not in (info.value.details() or "")
        assert "secret_module" in caplog.text  # the traceback went to the log instead
    finally:
        await running.stop(None)
