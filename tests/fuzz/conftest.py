"""A real server for the fuzz tests, run in a thread of its own, and the budget of cases.

`ERRORREPLAY_FUZZ_EXAMPLES` is the total number of Hypothesis cases across the fuzz tests (default
FUZZ_EXAMPLES_DEFAULT, which keeps `make test` short); each test takes its share. A longer run:
`ERRORREPLAY_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/fuzz`.
`ERRORREPLAY_FUZZ_REPORT=path.json` writes the outcome counts (status code per RPC) there.

The server runs on its own event loop in a background thread so that Hypothesis drives plain
synchronous tests, and a sync gRPC client talks to it as any client would. Every ERROR the server
logs fails the test too (an unexpected exception is logged with its traceback, which the failure
shows), so a bug that the client cannot see, such as a stray task exception, is still caught.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, settings

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2, service_pb2_grpc
from errorreplay_server.api.auth import build_interceptors
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.server import RunningServer, start_server
from tests.grpc.conftest import server_settings

FUZZ_EXAMPLES_DEFAULT = 150
FUZZ_EXAMPLES = max(1, int(os.environ.get("ERRORREPLAY_FUZZ_EXAMPLES", "") or FUZZ_EXAMPLES_DEFAULT))
CALL_TIMEOUT_SECONDS = 15.0
"""A unary call slower than this counts as a hang, which is a failure too."""
STREAM_PROBE_SECONDS = 0.5
"""How long a fuzzed stream is watched before the client cancels it."""
FORBIDDEN = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        # The store is up and no limit is configured during the fuzz: UNAVAILABLE ("retry with the
        # same request_id") can only be an input error mapped wrongly, and RESOURCE_EXHAUSTED a reply
        # the client refused (e.g. trailers over its 16 KiB metadata limit echoing a huge id).
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

METHODS: dict[str, Any] = {
    f"/{s.full_name}/{meth.name}": meth for s in service_pb2.DESCRIPTOR.services_by_name.values() for meth in s.methods
}
OUTCOMES: Counter[str] = Counter()
"""`method code` -> count over the session, for the report."""

Metadata = tuple[tuple[str, str], ...]


def examples(share: float) -> int:
    """This test's part of the budget (at least 5 cases)."""
    return max(5, round(FUZZ_EXAMPLES * share))


def fuzz_settings(share: float) -> settings:
    return settings(
        max_examples=examples(share),
        deadline=None,
        database=None,  # no .hypothesis directory in the repository; failures print their example
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


def timeout_for(share: float) -> float:
    """pytest-timeout for a fuzz test: generous per case, so that longer runs are not cut short."""
    return 120.0 + examples(share) * 2.0


class ErrorLog(logging.Handler):
    """Collects every ERROR the server logs (an unexpected exception is logged with its traceback)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []
        self._records_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        with self._records_lock:
            self.records.append(text)

    def take(self) -> list[str]:
        with self._records_lock:
            out, self.records = self.records, []
        return out


@dataclass
class FuzzServer:
    running: RunningServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    channel: grpc.Channel
    log: ErrorLog
    auth: Metadata = ()
    """Metadata for the seeding and health calls (a bearer token when auth is on)."""
    seeded_ids: list[str] = field(default_factory=list)
    seeded_groups: list[str] = field(default_factory=list)

    @property
    def errors(self) -> service_pb2_grpc.ErrorReplayServiceStub:
        return service_pb2_grpc.ErrorReplayServiceStub(self.channel)

    @property
    def topology(self) -> service_pb2_grpc.TopologyServiceStub:
        return service_pb2_grpc.TopologyServiceStub(self.channel)

    def _fail(self, what: str, code: grpc.StatusCode, details: str | None) -> None:
        logged = "\n".join(self.log.take()) or "(nothing logged)"
        raise AssertionError(f"{what} -> {code.name}: {details}\nserver log:\n{logged}")

    def _check(self, path: str, code: grpc.StatusCode, details: str | None, streaming: bool) -> grpc.StatusCode:
        OUTCOMES[f"{path} {code.name}"] += 1
        if code in FORBIDDEN:
            self._fail(path, code, details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not streaming:
            self._fail(f"{path} (hung for {CALL_TIMEOUT_SECONDS} s)", code, details)
        logged = self.log.take()
        if logged:
            raise AssertionError(f"{path} -> {code.name}, but the server logged errors:\n" + "\n".join(logged))
        return code

    def call(
        self,
        path: str,
        payload: bytes,
        metadata: Metadata = (),
        timeout: float = CALL_TIMEOUT_SECONDS,
    ) -> grpc.StatusCode:
        """Sends raw request bytes to a method path; streams are read briefly, then cancelled."""
        method = METHODS.get(path)
        streaming = method is not None and method.server_streaming
        try:
            if streaming:
                call = self.channel.unary_stream(path)(payload, metadata=metadata, timeout=STREAM_PROBE_SECONDS)
                try:
                    for _ in call:
                        break
                finally:
                    call.cancel()
            else:
                self.channel.unary_unary(path)(payload, metadata=metadata, timeout=timeout)
        except grpc.RpcError as err:
            code, details = err.code(), err.details()  # type: ignore[attr-defined]
            if streaming and code == grpc.StatusCode.CANCELLED:
                code = grpc.StatusCode.OK  # our own cancel after the first message
            return self._check(path, code, details, streaming)
        return self._check(path, grpc.StatusCode.OK, None, streaming)

    def send(self, path: str, request: Any, metadata: Metadata = ()) -> grpc.StatusCode:
        return self.call(path, request.SerializeToString(), metadata)

    def assert_healthy(self) -> None:
        """SERVING, and a plain capture still goes through and can be read back."""
        reply = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        run = uuid.uuid4().hex
        captured = self.errors.CaptureError(
            rr.CaptureErrorRequest(
                error=m.ErrorReport(
                    message="still alive after fuzzing",
                    severity=m.SEVERITY_LOW,
                    source=m.SOURCE_APPLICATION,
                    tags={"run": run},
                )
            ),
            metadata=self.auth,
            timeout=10,
        )
        got = self.errors.GetError(rr.GetErrorRequest(error_id=captured.error_id), metadata=self.auth, timeout=10)
        assert got.error.report.tags["run"] == run
        logged = self.log.take()
        assert not logged, "\n".join(logged)


def _seed(server: FuzzServer) -> None:
    """Some stored errors, groups, resources and changes, so that fuzzed queries have rows to meet."""
    messages = [
        "connection refused to db:5432",
        'timeout after 30s calling "payments" NEAR checkout',
        "OutOfMemoryError: Java heap space",
        "MATCH (n) DETACH DELETE n",
        "user 42 not found OR deleted",
    ]
    batch = rr.BatchCaptureErrorsRequest()
    for i in range(25):
        item = batch.requests.add(request_id=f"seed-{i}")
        item.error.message = messages[i % len(messages)]
        item.error.severity = m.SEVERITY_INFO + i % 5
        item.error.source = m.SOURCE_APPLICATION
        item.error.resource_id = f"svc-{i % 3}"
        item.error.resource_type = "service"
        item.error.correlation_id = f"corr-{i % 4}"
        item.error.trace_id = f"{i % 6:032x}"
        item.error.tags["seed"] = "yes"
    reply = server.errors.BatchCaptureErrors(batch, metadata=server.auth, timeout=30)
    server.seeded_ids.extend(r.response.error_id for r in reply.results if r.response.error_id)
    server.seeded_groups.extend(sorted({r.response.group_id for r in reply.results if r.response.group_id}))
    server.topology.UpsertResources(
        rr.UpsertResourcesRequest(
            resources=[m.Resource(id=f"svc-{i}", type="service") for i in range(3)],
            dependencies=[m.Dependency(dependent_id="svc-0", dependency_id="svc-1")],
        ),
        metadata=server.auth,
        timeout=10,
    )


def start_fuzz_server(tmp: Path, security: SecuritySettings | None = None, auth: Metadata = ()) -> FuzzServer:
    log = ErrorLog()
    logging.getLogger().addHandler(log)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-server", daemon=True)
    thread.start()
    interceptors = build_interceptors(security) if security is not None else []
    running = asyncio.run_coroutine_threadsafe(
        start_server(server_settings(tmp), extra_interceptors=interceptors), loop
    ).result(60)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{running.port}",
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    server = FuzzServer(running, loop, thread, channel, log, auth)
    _seed(server)
    return server


def stop_fuzz_server(server: FuzzServer) -> None:
    try:
        server.channel.close()
        asyncio.run_coroutine_threadsafe(server.running.stop(grace=None), server.loop).result(60)
    finally:
        server.loop.call_soon_threadsafe(server.loop.stop)
        server.thread.join(30)
        server.loop.close()
        logging.getLogger().removeHandler(server.log)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    server = start_fuzz_server(tmp_path_factory.mktemp("fuzz"))
    try:
        yield server
        server.assert_healthy()
    finally:
        stop_fuzz_server(server)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("ERRORREPLAY_FUZZ_REPORT")
    if target and OUTCOMES:
        by_code: Counter[str] = Counter()
        for key, count in OUTCOMES.items():
            by_code[key.rsplit(" ", 1)[1]] += count
        report = {
            "total_calls": sum(OUTCOMES.values()),
            "by_code": by_code,
            "by_method": dict(sorted(OUTCOMES.items())),
        }
        Path(target).write_text(json.dumps(report, indent=2))
