"""RetryInfo and typed errors, against a real grpc.aio server on port 0 whose servicer answers with a
google.rpc.Status on purpose: the direct-call clients and the SDK's background transport wait as the
server says, and decode the details into typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

import errorreplay
from errorreplay import ErrorReplayClient, RetryPolicy, SyncErrorReplayClient
from errorreplay.errors import InvalidArgumentError, ResourceExhaustedError
from errorreplay.transport import BackgroundTransport, TransportOptions
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)
REPORT = m.ErrorReport(message="boom", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION)


def details(code: int, message: str, *extra: object) -> tuple[tuple[str, bytes], ...]:
    status = status_pb2.Status(code=code, message=message)
    for detail in extra:
        status.details.add().Pack(detail)
    return (("grpc-status-details-bin", status.SerializeToString()),)


@dataclass
class ThrottlingServicer(service_pb2_grpc.ErrorReplayServiceServicer):
    """Answers the first `failures` calls RESOURCE_EXHAUSTED (with a RetryInfo when `retry_delay`)."""

    failures: int = 2
    retry_delay: float | None = 0.05
    invalid: bool = False
    calls: list[list[str]] = field(default_factory=list)

    async def _fail(self, context: grpc.aio.ServicerContext) -> None:
        if self.invalid:
            bad = error_details_pb2.BadRequest()
            bad.field_violations.add(field="requests", description="is empty")
            message = "invalid argument: requests is empty"
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, message, details(code_pb2.INVALID_ARGUMENT, message, bad)
            )
        extra = []
        if self.retry_delay is not None:
            extra.append(
                error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=int(self.retry_delay * 1e9)))
            )
        message = "rate limit exceeded"
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED, message, details(code_pb2.RESOURCE_EXHAUSTED, message, *extra)
        )

    async def CaptureError(
        self, request: rr.CaptureErrorRequest, context: grpc.aio.ServicerContext
    ) -> rr.CaptureErrorResponse:
        self.calls.append([request.request_id])
        if len(self.calls) <= self.failures:
            await self._fail(context)
        return rr.CaptureErrorResponse(error_id="err_1")

    async def BatchCaptureErrors(
        self, request: rr.BatchCaptureErrorsRequest, context: grpc.aio.ServicerContext
    ) -> rr.BatchCaptureErrorsResponse:
        self.calls.append([item.request_id for item in request.requests])
        if len(self.calls) <= self.failures:
            await self._fail(context)
        return rr.BatchCaptureErrorsResponse(stored_count=len(request.requests))


@pytest.fixture
async def throttling() -> AsyncIterator[tuple[ThrottlingServicer, str]]:
    servicer = ThrottlingServicer()  # type: ignore[abstract]  # a partial fake: the rest answer UNIMPLEMENTED
    server = grpc.aio.server()
    service_pb2_grpc.add_ErrorReplayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def test_resource_exhausted_with_retry_info_is_retried(throttling: tuple[ThrottlingServicer, str]) -> None:
    servicer, address = throttling
    async with ErrorReplayClient(address, retry=FAST) as client:
        assert (await client.capture(REPORT)).error_id == "err_1"
    assert len(servicer.calls) == 3 and len({ids[0] for ids in servicer.calls}) == 1


async def test_resource_exhausted_without_retry_info_is_a_typed_error(
    throttling: tuple[ThrottlingServicer, str],
) -> None:
    servicer, address = throttling
    servicer.retry_delay = None
    async with ErrorReplayClient(address, retry=FAST) as client:
        with pytest.raises(ResourceExhaustedError) as raised:
            await client.capture(REPORT)
    assert raised.value.retry_delay is None and raised.value.details() == "rate limit exceeded"
    assert len(servicer.calls) == 1


async def test_typed_error_carries_the_retry_delay(throttling: tuple[ThrottlingServicer, str]) -> None:
    servicer, address = throttling
    servicer.failures = 100
    servicer.retry_delay = 0.02

    def call() -> None:
        with SyncErrorReplayClient(address, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01)) as client:
            client.capture(REPORT)

    with pytest.raises(ResourceExhaustedError) as raised:
        await asyncio.to_thread(call)
    assert raised.value.retry_delay == pytest.approx(0.02)
    assert isinstance(raised.value, grpc.RpcError) and isinstance(raised.value, grpc.Call)
    assert len(servicer.calls) == 2


async def test_typed_invalid_argument_from_the_sync_client(throttling: tuple[ThrottlingServicer, str]) -> None:
    servicer, address = throttling
    servicer.invalid = True

    def call() -> None:
        with SyncErrorReplayClient(address, retry=FAST) as client:
            client.capture(REPORT)

    with pytest.raises(InvalidArgumentError) as raised:
        await asyncio.to_thread(call)
    assert [(v.field, v.description) for v in raised.value.field_violations] == [("requests", "is empty")]
    assert "requests is empty" in str(raised.value)


async def test_transport_waits_out_retry_info_and_keeps_request_ids(
    throttling: tuple[ThrottlingServicer, str],
) -> None:
    servicer, address = throttling
    options = TransportOptions(retry=RetryPolicy(max_attempts=10**6, initial_backoff=0.01, max_backoff=0.05))
    transport = BackgroundTransport(address, options=options)
    try:
        for i in range(5):
            transport.submit(rr.CaptureErrorRequest(error=REPORT, request_id=f"r{i}"))
        assert await asyncio.to_thread(transport.flush, 30)
    finally:
        await asyncio.to_thread(transport.close, 1)
    assert transport.stats.sent == 5 and transport.stats.dropped_rejected == 0
    attempts_of_first_batch = [ids for ids in servicer.calls if "r0" in ids]
    assert len(attempts_of_first_batch) >= 2 and all(
        ids == attempts_of_first_batch[0] for ids in attempts_of_first_batch
    )


async def test_transport_drops_and_counts_a_refused_batch(throttling: tuple[ThrottlingServicer, str]) -> None:
    servicer, address = throttling
    servicer.invalid = True
    servicer.failures = 100
    transport = BackgroundTransport(address)
    try:
        transport.submit(rr.CaptureErrorRequest(error=REPORT, request_id="bad"))
        assert await asyncio.to_thread(transport.flush, 30)
    finally:
        await asyncio.to_thread(transport.close, 1)
    assert transport.stats.dropped_rejected == 1 and transport.stats.sent == 0
    assert len(servicer.calls) == 1  # not retried


def test_sdk_options_come_from_the_environment() -> None:
    env = {
        "ERRORREPLAY_ADDRESS": "127.0.0.1:1",
        "ERRORREPLAY_SERVICE": "billing",
        "ERRORREPLAY_SAMPLE_RATE": "0.5",
        "ERRORREPLAY_QUEUE_SIZE": "7",
        "ERRORREPLAY_TAGS": "team=payments, region=eu",
        "ERRORREPLAY_DEFAULT_INTEGRATIONS": "false",
    }
    try:
        options = errorreplay.init(release="9.9", env=env)
    finally:
        errorreplay.close(timeout=0.1)
    assert (options.address, options.service, options.release) == ("127.0.0.1:1", "billing", "9.9")
    assert options.sample_rate == 0.5 and options.queue_size == 7 and not options.default_integrations
    assert dict(options.tags) == {"team": "payments", "region": "eu"}
