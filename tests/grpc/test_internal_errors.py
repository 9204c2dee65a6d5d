"""An unexpected failure reaches the client as INTERNAL, with nothing of the internals."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.domain.model import ErrorSnapshot
from errorreplay_server.server import start_server
from errorreplay_server.store.sqlite import SqliteStore
from tests.grpc.conftest import server_settings


class ExplodingStore(SqliteStore):
    async def get_error(self, error_id: str) -> ErrorSnapshot:
        raise RuntimeError("password=hunter2 in /srv/errorreplay/secret_module.py")


async def test_unexpected_exception_is_internal_and_opaque(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    running = await start_server(server_settings(tmp_path), store=ExplodingStore(tmp_path / "x.db"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetError(rr.GetErrorRequest(error_id="err_1"))
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "hunter2" not in (info.value.details() or "") and "secret_module" not in (info.value.details() or "")
        assert "secret_module" in caplog.text  # the traceback went to the log instead
    finally:
        await running.stop(None)
