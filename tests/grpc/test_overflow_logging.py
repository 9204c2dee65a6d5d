"""A subscriber that never reads is expected overflow, not an error (issue 19, item 6).

A flood overflowed slow subscribers' queues while their first message was still being written;
the watcher cancelled that write before grpc had marked the initial metadata sent, so the
RESOURCE_EXHAUSTED status went out with a second initial-metadata op, which grpc core refused:
an ERROR-level `ExecuteBatchError` traceback per stream, and no status (nor resume cursor) for the
client. The server now logs one INFO line per overflowed stream with its counts, and the status
always arrives.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest

from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from errorreplay_server.server import start_server
from errorreplay_server.streaming.hub import HubSettings
from tests.grpc.conftest import server_settings
from tests.grpc.helpers import report, uid

SLOW_SUBSCRIBERS = 6


async def test_subscribers_that_never_read_are_logged_once_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    running = await start_server(server_settings(tmp_path, hub=HubSettings(queue_size=8)))
    # Slow subscribers keep grpc's flow-control window small, so the server's writes block.
    tight = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16_384)]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")] + [
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}", options=tight) for _ in range(SLOW_SUBSCRIBERS)
    ]
    try:
        writer = service_pb2_grpc.ErrorReplayServiceStub(channels[0])
        before = running.hub.subscriber_count
        # No heartbeat: the first message a stream writes is an error from the flood.
        slow = [
            service_pb2_grpc.ErrorReplayServiceStub(ch).SubscribeErrors(rr.SubscribeErrorsRequest())
            for ch in channels[1:]
        ]
        for _ in range(200):
            if running.hub.subscriber_count == before + SLOW_SUBSCRIBERS:
                break
            await asyncio.sleep(0.02)
        run = uid()
        # The first message is larger than the slow clients' window: its write stays in flight.
        first = report(message="first", stack_trace="s" * 65_000, tags={"run": run})
        await writer.CaptureError(rr.CaptureErrorRequest(error=first), timeout=10)
        await asyncio.sleep(0.3)
        big = "x" * 4_000
        for _ in range(3):
            items = [rr.CaptureErrorRequest(error=report(message=f"{big} {i}", tags={"run": run})) for i in range(500)]
            await writer.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items), timeout=30)
        for call in slow:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                while True:
                    msg = await asyncio.wait_for(call.read(), 10)
                    assert msg is not grpc.aio.EOF
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    finally:
        for ch in channels:
            await ch.close()
        await running.stop(None)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not errors, [f"{r.name}: {r.getMessage()[:200]}" for r in errors]
    overflow = [r for r in caplog.records if "overflow" in r.getMessage() and r.levelno == logging.INFO]
    assert len(overflow) == SLOW_SUBSCRIBERS
