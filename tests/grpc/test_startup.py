"""A start-up that fails names what failed and stops everything it had started."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from errorreplay_server.domain.errors import StoreUnavailable
from errorreplay_server.server import StartupError, serve, start_server
from errorreplay_server.store.sqlite import SqliteStore
from tests.grpc.conftest import server_settings


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def other_tasks() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())


async def test_a_taken_grpc_port_names_the_address_and_stops_the_store_hub_and_workers(
    tmp_path: Path, taken_port: int
) -> None:
    store = SqliteStore(tmp_path / "errorreplay.db")
    settings = server_settings(tmp_path, listen_address=f"127.0.0.1:{taken_port}")
    assert settings.enrichment_enabled
    with pytest.raises(StartupError, match=rf"gRPC server cannot listen on 127\.0\.0\.1:{taken_port}"):
        await start_server(settings, store=store)
    assert other_tasks() == []  # no hub dispatcher, no enrichment worker left running
    with pytest.raises(StoreUnavailable):
        await store.count_errors()


async def test_a_taken_metrics_port_names_the_metrics_server_and_stops_everything(
    tmp_path: Path, taken_port: int
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        grpc_port = probe.getsockname()[1]
    settings = server_settings(
        tmp_path, listen_address=f"127.0.0.1:{grpc_port}", metrics_address=f"127.0.0.1:{taken_port}"
    )
    with pytest.raises(StartupError) as info:
        await serve(settings)
    assert f"metrics server cannot listen on 127.0.0.1:{taken_port}" in str(info.value)
    assert "ERRORREPLAY_METRICS_ADDRESS" in str(info.value)
    assert other_tasks() == []
    with socket.socket() as again:  # the gRPC server that had started has let go of its port
        again.bind(("127.0.0.1", grpc_port))
