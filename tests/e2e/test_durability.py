"""Acknowledged captures survive SIGKILL of the server process."""

from __future__ import annotations

import uuid
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
