"""A real grpc.aio server on port 0, on a fresh embedded store, with generated stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.server import RunningServer, start_server
from errorreplay_server.settings import Neo4jSettings, Settings
from errorreplay_server.store.base import Store
from tests.bolt_server import bolt_server  # noqa: F401  (the session-scoped ArcadeDB fixture)


@dataclass
class Api:
    channel: grpc.aio.Channel
    errors: service_pb2_grpc.ErrorReplayServiceStub
    topology: service_pb2_grpc.TopologyServiceStub
    running: RunningServer


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(listen_address="127.0.0.1:0", data_dir=tmp_path, metrics_address="").model_copy(update=overrides)


def status_of(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status a server sent in its trailers (empty when it sent none)."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return status_pb2.Status()


def field_violations(err: grpc.aio.AioRpcError) -> list[str]:
    fields = []
    for detail in status_of(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields.extend(v.field for v in bad.field_violations)
    return fields


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(await start_server(server_settings(tmp_path))) as api:
        yield api


@pytest.fixture(params=["sqlite", "bolt"])
async def api_on_each_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The server on the embedded store, then on the Bolt store (ArcadeDB)."""
    store: Store | None = None
    if request.param == "bolt":
        from errorreplay_server.store.neo4j import Neo4jStore

        bolt = request.getfixturevalue("bolt_server")
        store = Neo4jStore(
            Neo4jSettings(uri=bolt.uri, username=bolt.username, password=bolt.password, database=bolt.database)
        )
    async with serving(await start_server(server_settings(tmp_path), store=store)) as api:
        yield api


@asynccontextmanager
async def serving(running: RunningServer) -> AsyncIterator[Api]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Api(
            channel,
            service_pb2_grpc.ErrorReplayServiceStub(channel),
            service_pb2_grpc.TopologyServiceStub(channel),
            running,
        )
    finally:
        await channel.close()
        await running.stop(grace=None)
