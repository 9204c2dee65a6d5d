"""Acknowledged captures survive SIGKILL of the server process."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.e2e.server_process import ServerProcess


def test_acknowledged_captures_survive_sigkill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    run = uuid.uuid4().hex
    acknowledged: list[str] = []
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            futures = [
                stub.CaptureError.future(
                    rr.CaptureErrorRequest(
                        error=m.ErrorReport(
                            message=f"crash test {i}",
                            severity=m.SEVERITY_HIGH,
                            source=m.SOURCE_APPLICATION,
                            tags={"run": run},
                        )
                    ),
                    timeout=10,
                )
                for i in range(300)
            ]
            acknowledged = [f.result().error_id for f in futures]
        server.kill()
        server = ServerProcess(tmp_path).start()
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            found: list[str] = []
            token = ""
            while True:
                page = stub.SearchErrors(
                    rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), page_size=1000, page_token=token)
                )
                found.extend(e.error_id for e in page.errors)
                token = page.next_page_token
                if not token:
                    break
        assert sorted(found) == sorted(acknowledged)
        assert len(acknowledged) == 300
    finally:
        server.stop()


def test_sigterm_shuts_down_cleanly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        assert server.terminate() == 0
        assert "stopped" in server.output()
    finally:
        server.stop()


def _pending_sources(stub: service_pb2_grpc.ErrorReplayServiceStub, error_id: str) -> m.ErrorContext:
    return stub.GetError(rr.GetErrorRequest(error_id=error_id), timeout=10).error.context


def test_context_left_pending_by_sigkill_is_collected_after_restart(tmp_path: Path) -> None:
    # A Loki that accepts connections and never answers keeps every enrichment job in flight.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    common = {"ERRORREPLAY_ENRICHMENT_RESUME_HORIZON": "1h"}
    hanging = {
        **common,
        "ERRORREPLAY_LOKI_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
        "ERRORREPLAY_COLLECTOR_TIMEOUT": "10m",
    }
    server = ServerProcess(tmp_path, extra_env=hanging).start()
    now = datetime.now(UTC)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)

            def capture(message: str, occurred_at: datetime) -> str:
                report = m.ErrorReport(
                    message=message, severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, resource_id="api-restart"
                )
                report.occurred_at.FromDatetime(occurred_at)
                return stub.CaptureError(rr.CaptureErrorRequest(error=report), timeout=10).error_id

            recent = [capture(f"recent {i}", now - timedelta(minutes=5)) for i in range(3)]
            old = capture("older than the horizon", now - timedelta(hours=2))
            for error_id in [*recent, old]:
                states = {s.state for s in _pending_sources(stub, error_id).statuses}
                assert states == {m.COLLECTION_STATE_PENDING}
        server.kill()
        # The backends are back (no Loki configured now: SKIPPED is an outcome, PENDING is not).
        server = ServerProcess(tmp_path, extra_env=common).start()
        with grpc.insecure_channel(server.address) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            for error_id in [*recent, old]:
                for _ in range(300):  # collected in the background after start
                    context = _pending_sources(stub, error_id)
                    if all(s.state != m.COLLECTION_STATE_PENDING for s in context.statuses):
                        break
                    time.sleep(0.1)
                by_source = {s.collector: s for s in context.statuses}
                if error_id == old:
                    assert {s.state for s in context.statuses} == {m.COLLECTION_STATE_FAILED}, by_source
                    assert {s.detail for s in context.statuses} == {"not collected before restart"}
                else:
                    # The store-backed sources ran: api-restart is not declared, so its topology is EMPTY.
                    assert by_source["topology"].state == m.COLLECTION_STATE_EMPTY, by_source
                    assert by_source["loki"].state == m.COLLECTION_STATE_SKIPPED, by_source
                    assert m.COLLECTION_STATE_PENDING not in {s.state for s in context.statuses}
    finally:
        server.stop()
        silent.close()
