"""Fuzzed but well-formed requests to every RPC: never INTERNAL or UNKNOWN, never a hang, nothing logged.

Each test runs its share of ERRORREPLAY_FUZZ_EXAMPLES (see conftest), then checks that the server is
still SERVING and that a plain capture still works.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.fuzz import strategies as fz
from tests.fuzz.conftest import FuzzServer, fuzz_settings, timeout_for

E = "/errorreplay.v1.ErrorReplayService/"

SHARES = {
    "capture": 0.22,
    "batch": 0.07,
    "search": 0.14,
    "statistics": 0.08,
    "subscribe": 0.07,
    "other": 0.12,
}


@pytest.mark.timeout(timeout_for(SHARES["capture"]))
def test_fuzz_capture_error(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["capture"])
    @given(request=fz.capture_requests())
    def run(request: rr.CaptureErrorRequest) -> None:
        fuzz_server.send(E + "CaptureError", request)

    run()
    fuzz_server.assert_healthy()


@pytest.mark.timeout(timeout_for(SHARES["batch"]))
def test_fuzz_batch_capture_errors(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["batch"])
    @given(request=fz.batch_requests())
    def run(request: rr.BatchCaptureErrorsRequest) -> None:
        fuzz_server.send(E + "BatchCaptureErrors", request)

    run()
    fuzz_server.assert_healthy()


@pytest.mark.timeout(timeout_for(SHARES["search"]))
def test_fuzz_search_errors(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["search"])
    @given(request=fz.search_requests())
    def run(request: rr.SearchErrorsRequest) -> None:
        fuzz_server.send(E + "SearchErrors", request)

    run()
    fuzz_server.assert_healthy()


@pytest.mark.timeout(timeout_for(SHARES["statistics"]))
def test_fuzz_get_statistics(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["statistics"])
    @given(request=fz.statistics_requests())
    def run(request: rr.GetStatisticsRequest) -> None:
        fuzz_server.send(E + "GetStatistics", request)

    run()
    fuzz_server.assert_healthy()


@pytest.mark.timeout(timeout_for(SHARES["subscribe"]))
def test_fuzz_subscribe_errors(fuzz_server: FuzzServer) -> None:
    @fuzz_settings(SHARES["subscribe"])
    @given(request=fz.subscribe_requests(lambda: fuzz_server.seeded_ids))
    def run(request: rr.SubscribeErrorsRequest) -> None:
        fuzz_server.send(E + "SubscribeErrors", request)

    run()
    fuzz_server.assert_healthy()


@pytest.mark.timeout(timeout_for(SHARES["other"]))
def test_fuzz_other_rpcs(fuzz_server: FuzzServer) -> None:
    def known() -> list[str]:
        return fuzz_server.seeded_ids + fuzz_server.seeded_groups

    @fuzz_settings(SHARES["other"])
    @given(call=fz.other_unary_requests(known))
    def run(call: tuple[str, Any]) -> None:
        fuzz_server.send(*call)

    run()
    fuzz_server.assert_healthy()


def test_named_hostile_cases(fuzz_server: FuzzServer) -> None:
    """The cases issue 8 names, and those the fuzz found, each sent once whatever Hypothesis draws."""

    def report(**kw: Any) -> m.ErrorReport:
        base: dict[str, Any] = {"message": "named case", "severity": m.SEVERITY_HIGH, "source": m.SOURCE_APPLICATION}
        base.update(kw)
        return m.ErrorReport(**base)

    def attributes(value: float) -> fz.struct_pb2.Struct:
        s = fz.struct_pb2.Struct()
        s.fields["x"].number_value = value
        return s

    cases: list[tuple[str, Any]] = [
        (E + "CaptureError", rr.CaptureErrorRequest(error=report(message="nul\x00byte", service="a\x00b"))),
        (E + "CaptureError", rr.CaptureErrorRequest(error=report(tags={f"k{i}": "v" for i in range(10_000)}))),
        (E + "CaptureError", rr.CaptureErrorRequest(error=report(attributes=fz.deep_struct(28, False)))),
        (E + "CaptureError", rr.CaptureErrorRequest(error=report(attributes=fz.deep_struct(20, True)))),
        (E + "CaptureError", rr.CaptureErrorRequest(error=report(severity=2**31 - 1, source=-(2**31)))),
        (E + "CaptureError", rr.CaptureErrorRequest(error=report(occurred_at=fz.timestamp_pb2.Timestamp(nanos=-1)))),
    ]
    for value in (float("inf"), float("-inf"), float("nan")):  # found by the fuzz: no JSON form
        cases.append((E + "CaptureError", rr.CaptureErrorRequest(error=report(attributes=attributes(value)))))
    for seconds in (fz.YEAR_0, fz.YEAR_10000, fz.YEAR_1 - 1):
        stamp = fz.timestamp_pb2.Timestamp(seconds=seconds)
        cases.append((E + "CaptureError", rr.CaptureErrorRequest(error=report(occurred_at=stamp))))
    for text in ['"', "*", "NEAR(", "OR", "-", ":", "})", "//", "MATCH (n) DETACH DELETE n", 'db" OR "x', "\x00"]:
        # "\x00" was found by the fuzz: FTS5 read it as an unterminated string, answered UNAVAILABLE.
        cases.append((E + "SearchErrors", rr.SearchErrorsRequest(filter=m.ErrorFilter(text=text))))
        cases.append((E + "SearchErrors", rr.SearchErrorsRequest(filter=m.ErrorFilter(resource_ids=[text]))))
    for duration in (
        fz.duration_pb2.Duration(nanos=1),
        fz.duration_pb2.Duration(seconds=-3600),
        fz.duration_pb2.Duration(seconds=1),
        fz.duration_pb2.Duration(seconds=315_576_000_000),
        fz.duration_pb2.Duration(seconds=1, nanos=-1),
        fz.duration_pb2.Duration(seconds=2**63 - 1, nanos=-1),  # found by the fuzz: int64 overflow in SQLite
    ):
        cases.append((E + "GetStatistics", rr.GetStatisticsRequest(bucket=duration)))
        cases.append((E + "ListRecentErrors", rr.ListRecentErrorsRequest(window=duration)))
    huge = "x" * 70_000  # found by the fuzz: echoed in NOT_FOUND, the trailers outgrew the client's limit
    cases += [
        (E + "GetError", rr.GetErrorRequest(error_id=huge)),
        (E + "ReplayError", rr.ReplayErrorRequest(error_id=huge)),
        (E + "UpdateErrorGroup", rr.UpdateErrorGroupRequest(group_id=huge, status=m.ERROR_GROUP_STATUS_MUTED)),
        (E + "ListErrorsByResource", rr.ListErrorsByResourceRequest(resource_id=huge)),
        (E + "ListErrorsByCorrelation", rr.ListErrorsByCorrelationRequest(correlation_id=huge)),
        (E + "SearchErrors", rr.SearchErrorsRequest(page_token=huge)),
        (E + "SubscribeErrors", rr.SubscribeErrorsRequest(resume_after=huge)),
        ("/errorreplay.v1.TopologyService/GetTopology", rr.GetTopologyRequest(resource_id=huge)),
    ]
    for path, request in cases:
        fuzz_server.send(path, request)
    fuzz_server.assert_healthy()
