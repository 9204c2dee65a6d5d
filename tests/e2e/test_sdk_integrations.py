"""The SDK's automatic context and integrations against a real `errorreplay serve`: what a user of
`errorreplay.init()` sees stored, with nothing filled in by hand."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import pytest

import errorreplay
from errorreplay import InvalidArgumentError, SyncErrorReplayClient
from errorreplay.integrations import asyncio as asyncio_integration
from errorreplay.integrations.asgi import ErrorReplayMiddleware
from errorreplay.integrations.grpc import AioServerInterceptor, ServerInterceptor
from errorreplay.integrations.logging import ErrorReplayHandler
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.e2e.server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Iterator[ServerProcess]:
    """One server per process model (tests/e2e/conftest.py)."""
    proc = ServerProcess(tmp_path_factory.mktemp("sdk"), workers=server_workers).start()
    yield proc
    proc.stop()


@pytest.fixture
def service(server: ServerProcess) -> Iterator[str]:
    """A fresh service name, with the SDK initialised for it against the server."""
    name = f"svc-{uuid.uuid4().hex[:10]}"
    errorreplay.init(server.address, service=name, release="2.3.1", environment="staging", max_backoff=0.5)
    yield name
    errorreplay.close(timeout=1)


def stored(server: ServerProcess, service: str) -> list[m.ErrorSnapshot]:
    """Everything stored for `service`, oldest first, with contexts (GetError)."""
    assert errorreplay.flush(timeout=30)
    with SyncErrorReplayClient(server.address) as client:
        found = list(client.search_all(m.ErrorFilter(service=service)))
        return [client.get(s.error_id) for s in reversed(found)]


def test_automatic_context(server: ServerProcess, service: str) -> None:
    try:
        {}["missing"]
    except KeyError:
        request_id = errorreplay.capture_exception()
    (error,) = stored(server, service)
    r = error.report
    assert error.request_id == request_id
    assert (r.service, r.release, r.environment, r.resource_id) == (service, "2.3.1", "staging", service)
    assert r.error_type == "KeyError" and "test_automatic_context" in r.stack_trace
    assert r.tags["host.name"] == socket.gethostname()
    assert r.tags["process.pid"] == str(os.getpid())
    assert r.tags["process.runtime.name"] == sys.implementation.name
    assert r.source == m.SOURCE_APPLICATION and r.severity == m.SEVERITY_HIGH


def test_active_opentelemetry_span_fills_in_trace_and_span_ids(server: ServerProcess, service: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("checkout")
    with tracer.start_as_current_span("charge") as span:
        try:
            raise TimeoutError("bank did not answer")
        except TimeoutError:
            errorreplay.capture_exception()
        ids = span.get_span_context()
    (error,) = stored(server, service)
    assert error.report.trace_id == f"{ids.trace_id:032x}"
    assert error.report.span_id == f"{ids.span_id:016x}"


def test_before_send_filters_and_scrubs_client_side(server: ServerProcess) -> None:
    name = f"svc-{uuid.uuid4().hex[:10]}"

    def before_send(report: m.ErrorReport) -> m.ErrorReport | None:
        if "healthcheck" in report.message:
            return None
        report.tags["customer"] = "[removed]"
        return report

    errorreplay.init(server.address, service=name, before_send=before_send, tags={"customer": "alice"})
    try:
        assert errorreplay.capture_message("healthcheck failed once") == ""
        assert errorreplay.capture_message("charge failed") != ""
        (error,) = stored(server, name)
    finally:
        errorreplay.close(timeout=1)
    assert error.report.message == "charge failed" and error.report.tags["customer"] == "[removed]"


def test_sample_rate_zero_sends_nothing(server: ServerProcess) -> None:
    name = f"svc-{uuid.uuid4().hex[:10]}"
    errorreplay.init(server.address, service=name, sample_rate=0.0)
    try:
        assert [errorreplay.capture_message(f"m{i}") for i in range(20)] == [""] * 20
        assert stored(server, name) == []
    finally:
        errorreplay.close(timeout=1)


def test_logging_handler_breadcrumbs_arrive_in_order_and_scrubbed(server: ServerProcess, service: str) -> None:
    logger = logging.getLogger(f"app.{service}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(ErrorReplayHandler(level=logging.ERROR, breadcrumb_level=logging.INFO))
    logger.debug("below the breadcrumb level")
    logger.info("step 1: reserve stock")
    logger.warning("step 2: connecting with password=hunter2secret")
    logger.info("step 3: charge card")
    try:
        raise ConnectionResetError("payment gateway reset the connection")
    except ConnectionResetError:
        logger.exception("checkout failed")
    logger.error("refund queue is stuck")  # no exc_info, at ERROR: captured as a message
    first, second = stored(server, service)
    assert first.report.error_type == "ConnectionResetError" and first.report.message == (
        "checkout failed: payment gateway reset the connection"
    )
    lines = [(line.level, line.message, line.collector) for line in first.context.logs]
    assert lines == [
        ("INFO", "step 1: reserve stock", "client"),
        ("WARNING", "step 2: connecting with password=[REDACTED:password]", "client"),
        ("INFO", "step 3: charge card", "client"),
    ]
    assert "hunter2secret" not in str(first)
    assert second.report.message == "refund queue is stuck" and second.report.severity == m.SEVERITY_HIGH
    assert [line.message for line in second.context.logs][-1] == "checkout failed"  # the record before it
    assert first.context.logs[0].labels["logger.name"] == logger.name


def test_uncaught_exception_in_a_script_is_stored_before_exit(server: ServerProcess, tmp_path: Path) -> None:
    name = f"svc-{uuid.uuid4().hex[:10]}"
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import errorreplay
            errorreplay.init()  # everything from ERRORREPLAY_* variables

            def main():
                raise RuntimeError("inventory service returned garbage")

            main()
            """
        )
    )
    env = {**os.environ, "ERRORREPLAY_ADDRESS": server.address, "ERRORREPLAY_SERVICE": name}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1  # Python's own behaviour is kept: the traceback, then exit status 1
    assert "RuntimeError: inventory service returned garbage" in done.stderr
    (error,) = stored(server, name)
    assert error.report.severity == m.SEVERITY_CRITICAL and error.report.tags["mechanism"] == "excepthook"
    assert "in main" in error.report.stack_trace


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_thread_excepthook_captures(server: ServerProcess, service: str) -> None:
    def work() -> None:
        raise LookupError("no such order")

    thread = threading.Thread(target=work, name="order-worker")
    thread.start()
    thread.join()
    (error,) = stored(server, service)
    assert error.report.error_type == "LookupError"
    assert error.report.tags["thread"] == "order-worker"


def test_asyncio_exception_handler_captures(server: ServerProcess, service: str) -> None:
    async def main() -> None:
        asyncio_integration.install()

        def callback() -> None:
            raise ZeroDivisionError("rate per second with no seconds")

        asyncio.get_running_loop().call_soon(callback)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    (error,) = stored(server, service)
    assert error.report.error_type == "ZeroDivisionError" and error.report.tags["mechanism"] == "asyncio"


class RaisingServicer(service_pb2_grpc.ErrorReplayServiceServicer):
    """GetError fails with a bug; ReplayError answers NOT_FOUND on purpose."""

    async def GetError(self, request: rr.GetErrorRequest, context: grpc.aio.ServicerContext) -> rr.GetErrorResponse:
        raise ValueError(f"cannot parse id {request.error_id}")

    async def ReplayError(
        self, request: rr.ReplayErrorRequest, context: grpc.aio.ServicerContext
    ) -> rr.ReplayErrorResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such error")

    async def SubscribeErrors(
        self, request: rr.SubscribeErrorsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rr.SubscribeErrorsResponse]:
        yield rr.SubscribeErrorsResponse(cursor="c1")
        raise RuntimeError("subscription state lost")


class SyncRaisingServicer(service_pb2_grpc.ErrorReplayServiceServicer):
    def GetError(self, request: rr.GetErrorRequest, context: grpc.ServicerContext) -> rr.GetErrorResponse:
        raise ValueError(f"cannot parse id {request.error_id}")

    def ReplayError(self, request: rr.ReplayErrorRequest, context: grpc.ServicerContext) -> rr.ReplayErrorResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such error")
        raise AssertionError("unreachable")


async def test_grpc_aio_interceptor_captures_a_raising_servicer(server: ServerProcess, service: str) -> None:
    app = grpc.aio.server(interceptors=[AioServerInterceptor()])
    service_pb2_grpc.add_ErrorReplayServiceServicer_to_server(RaisingServicer(), app)
    port = app.add_insecure_port("127.0.0.1:0")
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetError(rr.GetErrorRequest(error_id="x1"))
            assert raised.value.code() == grpc.StatusCode.UNKNOWN  # what the caller gets without the interceptor
            with pytest.raises(grpc.aio.AioRpcError) as aborted:
                await stub.ReplayError(rr.ReplayErrorRequest(error_id="x2"))
            assert aborted.value.code() == grpc.StatusCode.NOT_FOUND
            received = []
            with pytest.raises(grpc.aio.AioRpcError) as streamed:
                async for message in stub.SubscribeErrors(rr.SubscribeErrorsRequest()):
                    received.append(message.cursor)
            assert received == ["c1"] and streamed.value.code() == grpc.StatusCode.UNKNOWN
    finally:
        await app.stop(None)
    error, stream_error = stored(server, service)  # the deliberate NOT_FOUND is not an error
    assert stream_error.report.tags["rpc.method"] == "SubscribeErrors"
    assert stream_error.report.message == "subscription state lost"
    tags = error.report.tags
    assert error.report.error_type == "ValueError" and error.report.message == "cannot parse id x1"
    assert (tags["rpc.service"], tags["rpc.method"]) == ("errorreplay.v1.ErrorReplayService", "GetError")
    assert tags["rpc.grpc.status_code"] == "UNKNOWN" and tags["net.peer"].startswith("ipv4:127.0.0.1:")


def test_sync_grpc_interceptor_captures_a_raising_servicer(server: ServerProcess, service: str) -> None:
    with futures.ThreadPoolExecutor(2) as pool:
        app = grpc.server(pool, interceptors=[ServerInterceptor()])
        service_pb2_grpc.add_ErrorReplayServiceServicer_to_server(SyncRaisingServicer(), app)
        port = app.add_insecure_port("127.0.0.1:0")
        app.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
                with pytest.raises(grpc.RpcError) as raised:
                    stub.GetError(rr.GetErrorRequest(error_id="y1"))
                assert raised.value.code() == grpc.StatusCode.UNKNOWN
                with pytest.raises(grpc.RpcError) as aborted:
                    stub.ReplayError(rr.ReplayErrorRequest(error_id="y2"))
                assert aborted.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            app.stop(None)
    (error,) = stored(server, service)
    assert error.report.tags["rpc.method"] == "GetError" and error.report.message == "cannot parse id y1"


async def test_asgi_middleware_captures_and_reraises(server: ServerProcess, service: str) -> None:
    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        raise PermissionError("tenant mismatch")

    transport = httpx.ASGITransport(app=ErrorReplayMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        with pytest.raises(PermissionError):
            await client.post("/orders/7")
    (error,) = stored(server, service)
    assert error.report.tags["http.method"] == "POST" and error.report.tags["url.path"] == "/orders/7"


def test_typed_errors_carry_field_violations(server: ServerProcess) -> None:
    bad = m.ErrorReport(message="", severity=m.SEVERITY_UNSPECIFIED, source=m.SOURCE_APPLICATION)
    with SyncErrorReplayClient(server.address) as client, pytest.raises(InvalidArgumentError) as raised:
        client.capture(bad)
    fields = {v.field for v in raised.value.field_violations}
    assert {"error.message", "error.severity"} <= fields
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_async_typed_errors_carry_field_violations(server: ServerProcess) -> None:
    bad = m.ErrorReport(message="x", severity=m.SEVERITY_HIGH, source=m.SOURCE_UNSPECIFIED)
    async with errorreplay.ErrorReplayClient(server.address) as client:
        with pytest.raises(InvalidArgumentError) as raised:
            await client.capture(bad)
    assert [v.field for v in raised.value.field_violations] == ["error.source"]


def test_sdk_example_program_runs(server: ServerProcess) -> None:
    example = Path(__file__).resolve().parents[2] / "clients" / "python" / "examples" / "sdk_example.py"
    done = subprocess.run([sys.executable, str(example), server.address], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    request_id = done.stdout.splitlines()[0]
    assert len(request_id) == 32 and "flushed=True" in done.stdout
    with SyncErrorReplayClient(server.address) as client:
        (found,) = [s for s in client.search_all(m.ErrorFilter(service="checkout")) if s.request_id == request_id]
        error = client.get(found.error_id)
    assert [x.message for x in error.context.logs] == ["checkout started", "charging order o-1001"]
