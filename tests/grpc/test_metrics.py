"""The server's own Prometheus metrics count what happened."""

from __future__ import annotations

import contextlib

import grpc
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.grpc.conftest import Api


def samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(api.running.metrics).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_captures_rpcs_and_streams_are_counted(api: Api) -> None:
    report = m.ErrorReport(message="x", severity=m.SEVERITY_LOW, source=m.SOURCE_MANUAL)
    await api.errors.CaptureError(rr.CaptureErrorRequest(error=report, request_id="r1"))
    await api.errors.CaptureError(rr.CaptureErrorRequest(error=report, request_id="r1"))
    with contextlib.suppress(grpc.aio.AioRpcError):
        await api.errors.GetError(rr.GetErrorRequest(error_id="err_missing"))
    got = samples(api)
    assert got[("errorreplay_captures_total", (("outcome", "stored"),))] == 1
    assert got[("errorreplay_captures_total", (("outcome", "duplicate"),))] == 1
    capture = "/errorreplay.v1.ErrorReplayService/CaptureError"
    assert got[("errorreplay_rpc_handled_total", (("code", "OK"), ("method", capture)))] == 2
    get = "/errorreplay.v1.ErrorReplayService/GetError"
    assert got[("errorreplay_rpc_handled_total", (("code", "NOT_FOUND"), ("method", get)))] == 1
    assert got[("errorreplay_stream_subscribers", ())] == 0
    assert ("errorreplay_enrichment_queue_depth", ()) in got
