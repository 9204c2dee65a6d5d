"""A real server (gRPC and the HTTP listener, both on port 0) with a real aiohttp client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.http.sentry_keys import SentryKey
from errorreplay_server.http.settings import HttpSettings
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.server import RunningServer, start_server
from tests.grpc.conftest import server_settings

PROJECT = "42"
KEY = "0123456789abcdef0123456789abcdef"
OTHER_PROJECT = "7"
OTHER_KEY = "fedcba9876543210fedcba9876543210"


@dataclass
class Http:
    running: RunningServer
    session: aiohttp.ClientSession
    errors: service_pb2_grpc.ErrorReplayServiceStub
    scheme: str = "http"

    @property
    def port(self) -> int:
        assert self.running.http is not None
        return self.running.http.port

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def dsn(self) -> str:
        return f"http://{KEY}@127.0.0.1:{self.port}/{PROJECT}"

    def url(self, path: str) -> str:
        return self.base + path

    def envelope_url(self, project: str = PROJECT, key: str | None = KEY) -> str:
        query = f"?sentry_key={key}" if key else ""
        return self.url(f"/api/{project}/envelope/{query}")


def http_settings(tmp_path: Path, security: SecuritySettings | None = None, **http: Any) -> Any:
    values: dict[str, Any] = {
        "address": "127.0.0.1:0",
        "sentry_keys": (SentryKey(PROJECT, KEY), SentryKey(OTHER_PROJECT, OTHER_KEY)),
    }
    values.update(http)
    return server_settings(
        tmp_path, enrichment_enabled=False, http=HttpSettings(**values), security=security or SecuritySettings()
    )


@asynccontextmanager
async def http_server(settings: Any, **session: Any) -> AsyncIterator[Http]:
    running = await start_server(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        async with aiohttp.ClientSession(auto_decompress=False, **session) as client:
            yield Http(running, client, service_pb2_grpc.ErrorReplayServiceStub(channel))
    finally:
        await channel.close()
        await running.stop(grace=None)


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[Http]:
    async with http_server(http_settings(tmp_path)) as h:
        yield h
