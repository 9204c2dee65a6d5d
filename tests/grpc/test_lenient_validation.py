"""Input that used to be accepted and now gets a named field violation (issue 19, item 5)."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from tests.grpc.conftest import Api, field_violations
from tests.grpc.helpers import report, uid


async def violations_of(call: Any) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return field_violations(info.value)


def with_attributes(value: dict[str, Any], **fields: Any) -> m.ErrorReport:
    error = report(**fields)
    error.attributes.update(value)
    return error


@pytest.mark.parametrize(
    ("attributes", "field"),
    [
        ({"ratio": math.nan}, "error.attributes.ratio"),
        ({"limit": math.inf}, "error.attributes.limit"),
        ({"a": {"b": [1, -math.inf]}}, "error.attributes.a.b[1]"),
    ],
)
async def test_nan_and_infinity_in_attributes_are_refused(api: Api, attributes: dict[str, Any], field: str) -> None:
    run = uid()
    error = with_attributes(attributes, tags={"run": run})
    assert await violations_of(api.errors.CaptureError(rr.CaptureErrorRequest(error=error))) == [field]
    found = await api.errors.SearchErrors(rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run})))
    assert not found.errors


async def test_attribute_size_is_counted_in_utf8_bytes(api: Api) -> None:
    # 9,000 characters: under the 16 KiB limit as characters, 18,000 bytes as UTF-8.
    wide = with_attributes({"text": "é" * 9000})
    assert await violations_of(api.errors.CaptureError(rr.CaptureErrorRequest(error=wide))) == ["error.attributes"]
    narrow = with_attributes({"text": "e" * 9000})
    assert (await api.errors.CaptureError(rr.CaptureErrorRequest(error=narrow))).error_id


@pytest.mark.parametrize("message", ["\u200b\u200c\u200d\ufeff", "\u2060\u200e \u200f", "\u3164\u115f", "\u0301\u0301"])
async def test_a_message_of_invisible_characters_is_refused(api: Api, message: str) -> None:
    error = report(message=message)
    assert await violations_of(api.errors.CaptureError(rr.CaptureErrorRequest(error=error))) == ["error.message"]


async def test_a_message_with_one_visible_character_is_kept(api: Api) -> None:
    captured = await api.errors.CaptureError(rr.CaptureErrorRequest(error=report(message="\u200bx\u200b")))
    assert captured.error.report.message == "\u200bx\u200b"


async def test_unknown_min_severity_is_refused(api: Api) -> None:
    search = rr.SearchErrorsRequest(filter=m.ErrorFilter(min_severity=99))  # type: ignore[arg-type]
    assert await violations_of(api.errors.SearchErrors(search)) == ["filter.min_severity"]
    recent = rr.ListRecentErrorsRequest(min_severity=99)  # type: ignore[arg-type]
    assert await violations_of(api.errors.ListRecentErrors(recent)) == ["min_severity"]
    subscribe = api.errors.SubscribeErrors(
        rr.SubscribeErrorsRequest(filter=m.ErrorFilter(min_severity=-1))  # type: ignore[arg-type]
    )
    assert await violations_of(subscribe.read()) == ["filter.min_severity"]


async def test_unknown_order_by_is_refused(api: Api) -> None:
    request = rr.ListErrorGroupsRequest(order_by=99)  # type: ignore[arg-type]
    assert await violations_of(api.errors.ListErrorGroups(request)) == ["order_by"]
    ok = rr.ListErrorGroupsRequest(order_by=rr.ERROR_GROUP_ORDER_COUNT)
    await api.errors.ListErrorGroups(ok)


@pytest.mark.parametrize(
    "bucket",
    [
        duration_pb2.Duration(nanos=1),
        duration_pb2.Duration(nanos=999),
        duration_pb2.Duration(nanos=500_000_000),
        duration_pb2.Duration(seconds=90, nanos=500_000_000),
    ],
    ids=["1ns", "999ns", "0.5s", "90.5s"],
)
async def test_statistics_bucket_must_be_whole_seconds(api: Api, bucket: duration_pb2.Duration) -> None:
    request = rr.GetStatisticsRequest(bucket=bucket)
    assert await violations_of(api.errors.GetStatistics(request)) == ["bucket"]


async def test_statistics_bucket_of_whole_seconds_or_unset_is_kept(api: Api) -> None:
    assert (await api.errors.GetStatistics(rr.GetStatisticsRequest())).timed_counts  # 1 h buckets
    ten = rr.GetStatisticsRequest(bucket=duration_pb2.Duration(seconds=10))
    ten.start_time.FromSeconds(1_760_000_000)
    ten.end_time.FromSeconds(1_760_000_000 + 60)
    starts = [c.start_time.seconds for c in (await api.errors.GetStatistics(ten)).timed_counts]
    assert starts[:6] == [1_760_000_000 + 10 * i for i in range(6)]
