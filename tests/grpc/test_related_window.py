"""ERRORREPLAY_RELATED_WINDOW changes replays and streams alike (one related-errors rule)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.server import start_server
from errorreplay_server.settings import Settings
from tests.grpc.conftest import Api, server_settings, serving
from tests.grpc.helpers import T0, capture, ts, uid


async def _errors(call: grpc.aio.UnaryStreamCall, n: int) -> list[rr.SubscribeErrorsResponse]:
    out: list[rr.SubscribeErrorsResponse] = []
    while len(out) < n:
        msg = await asyncio.wait_for(call.read(), 10)
        if not msg.heartbeat:
            out.append(msg)
    return out


@pytest.mark.parametrize(("window", "related"), [("10m", True), ("1m", False)])
async def test_related_window_variable_reaches_replays_and_streams(tmp_path: Path, window: str, related: bool) -> None:
    analysis = Settings.from_env({"ERRORREPLAY_RELATED_WINDOW": window}).analysis
    async with serving(await start_server(server_settings(tmp_path, analysis=analysis))) as api:
        await _check(api, related)


async def _check(api: Api, related: bool) -> None:
    run, corr = uid("run-"), uid("corr-")
    request = rr.SubscribeErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), include_correlated=True)
    request.heartbeat_interval.CopyFrom(duration_pb2.Duration(nanos=100_000_000))
    call = api.errors.SubscribeErrors(request)
    assert (await asyncio.wait_for(call.read(), 10)).heartbeat  # registered
    first = await capture(api, resource_id=uid("a"), correlation_id=corr, tags={"run": run}, occurred_at=ts(T0))
    # Five minutes later, same correlation id, not matching the filter.
    second = await capture(api, resource_id=uid("b"), correlation_id=corr, occurred_at=ts(T0 + 300))
    sentinel = await capture(api, resource_id=uid("c"), tags={"run": run}, occurred_at=ts(T0 + 3600))
    got = [msg.error.error_id for msg in await _errors(call, 2)]
    call.cancel()
    assert got == [first.error_id, second.error_id if related else sentinel.error_id]
    replay = await api.errors.ReplayError(rr.ReplayErrorRequest(error_id=first.error_id), timeout=10)
    assert (second.error_id in [e.error_id for e in replay.related_errors]) == related
