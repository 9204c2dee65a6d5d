"""One replica with ERRORREPLAY_NATS_URL on the default SQLite store: a cursor older than what the
JetStream stream keeps is OUT_OF_RANGE with a message (streaming/jetstream.py _resume_point), and
a NATS that cannot be reached stops start-up with a message naming the setting."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import nats
import pytest
from google.protobuf import duration_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.e2e.server_process import ServerProcess
from tests.nats_server import NatsServer, nats_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.nats
GUARD_SECONDS = 60.0


async def test_a_cursor_older_than_the_stream_keeps_is_out_of_range(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    server = ServerProcess(tmp_path / "r1", extra_env={"ERRORREPLAY_NATS_URL": nats_server.url}).start(timeout=60)
    run = uuid.uuid4().hex
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            errors = service_pb2_grpc.ErrorReplayServiceStub(channel)

            def subscribe(resume_after: str = "") -> grpc.aio.UnaryStreamCall:
                return errors.SubscribeErrors(
                    rr.SubscribeErrorsRequest(
                        filter=m.ErrorFilter(tags={"run": run}),
                        resume_after=resume_after,
                        heartbeat_interval=duration_pb2.Duration(nanos=200_000_000),
                    )
                )

            async def capture(i: int) -> str:
                report = m.ErrorReport(
                    message=f"failure {i}", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION, tags={"run": run}
                )
                return (await errors.CaptureError(rr.CaptureErrorRequest(error=report), timeout=30)).error_id

            async def next_error(call: grpc.aio.UnaryStreamCall) -> rr.SubscribeErrorsResponse:
                while True:
                    msg = await asyncio.wait_for(call.read(), GUARD_SECONDS)
                    assert msg is not grpc.aio.EOF
                    if not msg.heartbeat:
                        return msg

            live = subscribe()
            assert (await asyncio.wait_for(live.read(), GUARD_SECONDS)).heartbeat
            ids = [await capture(i) for i in range(3)]
            got = [await next_error(live) for _ in ids]
            live.cancel()
            assert [g.error.error_id for g in got] == ids

            # Retention discarding the first messages (max age or max bytes), done at once.
            nc = await nats.connect(nats_server.url)
            await nc.jetstream().purge_stream("ERRORREPLAY_ERRORS")
            await nc.close()

            too_old = subscribe(resume_after=got[0].cursor)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await too_old.read()
            assert refused.value.code() is grpc.StatusCode.OUT_OF_RANGE
            assert "older than the stream keeps" in (refused.value.details() or "")

            # The newest cursor still resumes: nothing after it was discarded.
            resumed = subscribe(resume_after=got[-1].cursor)
            newer = await capture(3)
            assert (await next_error(resumed)).error.error_id == newer
            resumed.cancel()
    finally:
        server.stop()


def test_unreachable_nats_fails_start_up_naming_the_setting(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra_env={"ERRORREPLAY_NATS_URL": "nats://127.0.0.1:1"})
    try:
        with pytest.raises(RuntimeError) as failed:
            server.start(timeout=60)
        assert "ERRORREPLAY_NATS_URL" in str(failed.value) and "nats://127.0.0.1:1" in str(failed.value)
        assert server.process is not None and server.process.wait(10) != 0
    finally:
        server.stop()
