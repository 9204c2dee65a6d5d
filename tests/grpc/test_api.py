"""Every RPC over the wire, its happy path and each of its status codes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server import cli
from errorreplay_server.server import start_server
from errorreplay_server.settings import Limits
from tests.grpc.conftest import Api, field_violations, server_settings, serving, status_of
from tests.grpc.helpers import T0, capture, report, ts, uid


async def expect_status(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    return info.value


async def count_tagged(api: Api, run: str) -> int:
    found = await api.errors.SearchErrors(rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run})))
    return found.total_size


# --- health and capture -----------------------------------------------------------------------
async def test_health_is_serving(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", "errorreplay.v1.ErrorReplayService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_capture_stores_and_acknowledges(api: Api) -> None:
    run = uid()
    reply = await capture(api, tags={"run": run}, resource_id="db-1", occurred_at=ts(T0))
    assert reply.error_id.startswith("err_") and reply.group_id.startswith("grp_")
    assert not reply.duplicate
    assert reply.error.report.message == "connection refused to db:5432"
    assert reply.error.report.occurred_at.seconds == T0
    assert reply.error.received_at.seconds > T0
    got = await api.errors.GetError(rr.GetErrorRequest(error_id=reply.error_id))
    assert got.error.error_id == reply.error_id
    assert got.error.report.resource_id == "db-1"
    assert got.error.report.tags["run"] == run


async def test_occurred_at_defaults_to_receipt_time(api: Api) -> None:
    reply = await capture(api)
    assert reply.error.report.occurred_at == reply.error.received_at or (
        abs(reply.error.report.occurred_at.ToMicroseconds() - reply.error.received_at.ToMicroseconds()) < 5_000_000
    )


async def test_attributes_and_fingerprint_round_trip(api: Api) -> None:
    r = report(fingerprint=["checkout", "card-declined"])
    r.attributes.update({"order": {"id": 42, "items": ["a", "b"]}, "retry": True})
    reply = await api.errors.CaptureError(rr.CaptureErrorRequest(error=r))
    got = await api.errors.GetError(rr.GetErrorRequest(error_id=reply.error_id))
    assert got.error.report.attributes == r.attributes
    assert list(got.error.report.fingerprint) == ["checkout", "card-declined"]


async def test_secrets_are_masked_before_storage(api: Api) -> None:
    reply = await capture(
        api,
        message="login failed for postgres://app:hunter2secret@db:5432/x password=s3cr3t-value",
        tags={"authorization": "Bearer abcdefghijklmnopqrstuvwxyz012345"},
    )
    got = await api.errors.GetError(rr.GetErrorRequest(error_id=reply.error_id))
    stored = got.error.report.message + str(dict(got.error.report.tags))
    for secret in ("hunter2secret", "s3cr3t-value", "abcdefghijklmnopqrstuvwxyz012345"):
        assert secret not in stored
    assert "[REDACTED:" in got.error.report.message


async def test_retry_with_same_request_id_is_idempotent(api: Api) -> None:
    run, rid = uid(), uid("req-")
    first = await capture(api, request_id=rid, tags={"run": run})
    retry = await capture(api, request_id=rid, tags={"run": run}, message="changed on retry")
    assert not first.duplicate and retry.duplicate
    assert retry.error_id == first.error_id
    assert retry.error.report.message == first.error.report.message
    assert await count_tagged(api, run) == 1


# --- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"message": ""}, "error.message"),
        ({"message": "   "}, "error.message"),
        ({"severity": m.SEVERITY_UNSPECIFIED}, "error.severity"),
        ({"severity": 42}, "error.severity"),
        ({"source": m.SOURCE_UNSPECIFIED}, "error.source"),
        ({"occurred_at": timestamp_pb2.Timestamp(seconds=253402300800)}, "error.occurred_at"),
        ({"occurred_at": timestamp_pb2.Timestamp(seconds=T0, nanos=-1)}, "error.occurred_at"),
        ({"occurred_at": timestamp_pb2.Timestamp(seconds=4_000_000_000)}, "error.occurred_at"),
        ({"message": "x" * 20_000}, "error.message"),
        ({"stack_trace": "y" * 70_000}, "error.stack_trace"),
        ({"resource_id": "r" * 300}, "error.resource_id"),
        ({"tags": {f"k{i}": "v" for i in range(65)}}, "error.tags"),
        ({"tags": {"k": "v" * 2000}}, "error.tags[k]"),
        ({"fingerprint": ["p"] * 17}, "error.fingerprint"),
        ({"request_id": "q" * 300}, "request_id"),
    ],
)
async def test_invalid_capture_is_rejected_naming_the_field(api: Api, kw: dict[str, object], field: str) -> None:
    run = uid()
    tags = dict(kw.pop("tags", {}))  # type: ignore[call-overload]
    tags.setdefault("run", run) if len(tags) < 65 else None
    err = await expect_status(capture(api, tags=tags, **kw), grpc.StatusCode.INVALID_ARGUMENT)
    assert field in field_violations(err)
    assert await count_tagged(api, run) == 0


async def test_deeply_nested_attributes_are_rejected(api: Api) -> None:
    r = report()
    inner = r.attributes
    for _ in range(12):
        inner = inner.get_or_create_struct("n")
    err = await expect_status(
        api.errors.CaptureError(rr.CaptureErrorRequest(error=r)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "error.attributes" in field_violations(err)


async def test_oversized_request_is_resource_exhausted(api: Api) -> None:
    huge = report(message="z" * (9 * 1024 * 1024))
    await expect_status(api.errors.CaptureError(rr.CaptureErrorRequest(error=huge)), grpc.StatusCode.RESOURCE_EXHAUSTED)


# --- batch --------------------------------------------------------------------------------------
async def test_batch_stores_good_items_and_reports_bad_ones(api: Api) -> None:
    run = uid()
    rid = uid("req-")
    items = [
        rr.CaptureErrorRequest(error=report(tags={"run": run}, message="one"), request_id=rid),
        rr.CaptureErrorRequest(error=report(tags={"run": run}, message="")),
        rr.CaptureErrorRequest(error=report(tags={"run": run}, occurred_at=timestamp_pb2.Timestamp(seconds=-(10**12)))),
        rr.CaptureErrorRequest(error=report(tags={"run": run}, message="two")),
        rr.CaptureErrorRequest(error=report(tags={"run": run}, message="one again"), request_id=rid),
    ]
    reply = await api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items))
    assert [r.index for r in reply.results] == [0, 1, 2, 3, 4]
    assert [r.WhichOneof("_response") if False else r.HasField("response") for r in reply.results] == [
        True,
        False,
        False,
        True,
        True,
    ]
    assert reply.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [v.field for v in reply.results[1].error.field_violations] == ["requests[1].error.message"]
    assert [v.field for v in reply.results[2].error.field_violations] == ["requests[2].error.occurred_at"]
    assert reply.results[4].response.duplicate
    assert reply.results[4].response.error_id == reply.results[0].response.error_id
    assert (reply.stored_count, reply.duplicate_count, reply.failed_count) == (2, 1, 2)
    assert await count_tagged(api, run) == 2


async def test_batch_over_limit_is_rejected(api: Api) -> None:
    run = uid()
    items = [rr.CaptureErrorRequest(error=report(tags={"run": run})) for _ in range(1001)]
    err = await expect_status(
        api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(err) == ["requests"]
    assert await count_tagged(api, run) == 0


async def test_batch_of_a_thousand(api: Api) -> None:
    run = uid()
    items = [rr.CaptureErrorRequest(error=report(tags={"run": run}, message=f"e {i}")) for i in range(1000)]
    reply = await api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items))
    assert reply.stored_count == 1000
    assert len({r.response.error_id for r in reply.results}) == 1000
    assert await count_tagged(api, run) == 1000


# --- get ------------------------------------------------------------------------------------------
async def test_unknown_error_is_not_found_naming_the_id(api: Api) -> None:
    missing = uid("err_")
    err = await expect_status(api.errors.GetError(rr.GetErrorRequest(error_id=missing)), grpc.StatusCode.NOT_FOUND)
    assert missing in (err.details() or "")
    info = error_details_pb2.ResourceInfo()
    assert status_of(err).details[0].Unpack(info) and info.resource_name == missing


async def test_get_without_id_is_invalid(api: Api) -> None:
    err = await expect_status(api.errors.GetError(rr.GetErrorRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(err) == ["error_id"]


async def test_get_shows_related_errors_both_ways(api: Api) -> None:
    corr = uid("corr-")
    first = await capture(api, correlation_id=corr, occurred_at=ts(T0))
    second = await capture(api, correlation_id=corr, occurred_at=ts(T0 + 60))
    got_first = await api.errors.GetError(rr.GetErrorRequest(error_id=first.error_id))
    got_second = await api.errors.GetError(rr.GetErrorRequest(error_id=second.error_id))
    assert list(got_first.error.related_error_ids) == [second.error_id]
    assert list(got_second.error.related_error_ids) == [first.error_id]


async def test_related_errors_follow_the_rule(api: Api) -> None:
    """Same correlation id, same resource, or within 2 DEPENDS_ON hops, within ±10 minutes."""
    p = uid("p")
    svc, db, disk, rack = (f"{p}-{n}" for n in ("api", "db", "disk", "rack"))
    await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(
            dependencies=[
                m.Dependency(dependent_id=svc, dependency_id=db),
                m.Dependency(dependent_id=db, dependency_id=disk),
                m.Dependency(dependent_id=disk, dependency_id=rack),
            ]
        )
    )
    corr = uid("corr-")
    me = await capture(api, resource_id=svc, correlation_id=corr, occurred_at=ts(T0))
    related = [
        await capture(api, resource_id=svc, occurred_at=ts(T0 - 300)),
        await capture(api, resource_id=db, occurred_at=ts(T0 - 60)),
        await capture(api, resource_id=disk, occurred_at=ts(T0 + 60)),  # 2 hops
        await capture(api, resource_id=uid("far-"), correlation_id=corr, occurred_at=ts(T0)),
    ]
    unrelated = [
        await capture(api, resource_id=rack, occurred_at=ts(T0)),  # 3 hops
        await capture(api, resource_id=svc, occurred_at=ts(T0 - 660)),  # 11 minutes earlier
        await capture(api, resource_id=uid("far-"), occurred_at=ts(T0)),
    ]
    got = await api.errors.GetError(rr.GetErrorRequest(error_id=me.error_id))
    assert set(got.error.related_error_ids) == {r.error_id for r in related}
    assert not set(got.error.related_error_ids) & {u.error_id for u in unrelated}


# --- search and lists -----------------------------------------------------------------------------
async def test_search_pages_walk_every_match_newest_first(api: Api) -> None:
    run = uid()
    items = [
        rr.CaptureErrorRequest(error=report(tags={"run": run}, message=f"m{i}", occurred_at=ts(T0 + i)))
        for i in range(17)
    ]
    await api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items))
    seen: list[str] = []
    token = ""
    while True:
        page = await api.errors.SearchErrors(
            rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), page_size=5, page_token=token)
        )
        assert page.total_size == 17
        seen.extend(e.report.message for e in page.errors)
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"m{i}" for i in range(16, -1, -1)]


async def test_search_counts_up_to_the_configured_limit_then_says_capped(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, limits=Limits(search_count_limit=10))
    async with serving(await start_server(settings)) as api:
        run = uid()
        items = [rr.CaptureErrorRequest(error=report(tags={"run": run}, message=f"m{i}")) for i in range(12)]
        await api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items))
        flt = m.ErrorFilter(tags={"run": run})
        first = await api.errors.SearchErrors(rr.SearchErrorsRequest(filter=flt, page_size=5))
        assert (first.total_size, first.total_size_capped) == (10, True)
        whole = await api.errors.SearchErrors(rr.SearchErrorsRequest(filter=flt, page_size=20))
        assert (whole.total_size, whole.total_size_capped, len(whole.errors)) == (12, False, 12)
        # The CLI says so too (a synchronous client: on a thread, beside the server's loop).
        out = io.StringIO()
        argv = ["search", "--address", f"127.0.0.1:{api.running.port}", "--tag", f"run={run}", "--limit", "5"]
        with contextlib.redirect_stdout(out):
            assert await asyncio.to_thread(cli.main, argv) == 0
        assert "(showing 5 of more than 10; next page: --page-token " in out.getvalue()


async def test_search_every_filter_field(api: Api) -> None:
    run = uid()
    corr, trace = uid("c"), uid("t")
    target = await capture(
        api,
        tags={"run": run, "team": "pay"},
        severity=m.SEVERITY_CRITICAL,
        source=m.SOURCE_PROMETHEUS,
        resource_id=f"{run}-db",
        resource_type="postgres",
        error_type="DiskFull",
        correlation_id=corr,
        trace_id=trace,
        service="ledger",
        environment="prod",
        message="disk full on volume",
        occurred_at=ts(T0),
    )
    await capture(api, tags={"run": run}, severity=m.SEVERITY_LOW, message="other thing", occurred_at=ts(T0 + 5))
    f = m.ErrorFilter(
        severities=[m.SEVERITY_CRITICAL],
        min_severity=m.SEVERITY_HIGH,
        sources=[m.SOURCE_PROMETHEUS],
        resource_ids=[f"{run}-db"],
        resource_type="postgres",
        error_type="DiskFull",
        correlation_id=corr,
        trace_id=trace,
        group_id=target.group_id,
        tags={"run": run, "team": "pay"},
        text="disk volume",
        start_time=ts(T0),
        end_time=ts(T0),
        service="ledger",
        environment="prod",
    )
    page = await api.errors.SearchErrors(rr.SearchErrorsRequest(filter=f))
    assert [e.error_id for e in page.errors] == [target.error_id]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (rr.SearchErrorsRequest(page_size=1001), "page_size"),
        (rr.SearchErrorsRequest(page_size=-1), "page_size"),
        (rr.SearchErrorsRequest(page_token="not-a-token"), "page_token"),
        (rr.SearchErrorsRequest(filter=m.ErrorFilter(start_time=ts(T0), end_time=ts(T0 - 1))), "filter.end_time"),
        (rr.SearchErrorsRequest(filter=m.ErrorFilter(severities=[m.SEVERITY_UNSPECIFIED])), "filter.severities"),
        (
            rr.SearchErrorsRequest(filter=m.ErrorFilter(start_time=timestamp_pb2.Timestamp(nanos=-5))),
            "filter.start_time",
        ),
        (rr.SearchErrorsRequest(filter=m.ErrorFilter(text="w" * 2000)), "filter.text"),
    ],
)
async def test_search_validation(api: Api, request_: rr.SearchErrorsRequest, field: str) -> None:
    err = await expect_status(api.errors.SearchErrors(request_), grpc.StatusCode.INVALID_ARGUMENT)
    assert field in field_violations(err)


async def test_list_recent_errors(api: Api) -> None:
    for i in range(3):
        await capture(api, severity=m.SEVERITY_CRITICAL, message=f"recent {i}")
    await capture(api, severity=m.SEVERITY_LOW)
    await capture(api, severity=m.SEVERITY_CRITICAL, occurred_at=ts(T0))  # older than the window
    reply = await api.errors.ListRecentErrors(rr.ListRecentErrorsRequest(min_severity=m.SEVERITY_HIGH))
    assert [e.report.message for e in reply.errors] == ["recent 2", "recent 1", "recent 0"]
    short = await api.errors.ListRecentErrors(rr.ListRecentErrorsRequest(page_size=1))
    assert len(short.errors) == 1
    err = await expect_status(
        api.errors.ListRecentErrors(rr.ListRecentErrorsRequest(page_size=101)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(err) == ["page_size"]
    tiny = await api.errors.ListRecentErrors(
        rr.ListRecentErrorsRequest(window=duration_pb2.Duration(seconds=1), min_severity=m.SEVERITY_CRITICAL)
    )
    assert all(e.report.message.startswith("recent") for e in tiny.errors)


async def test_list_errors_by_resource(api: Api) -> None:
    res = uid("res-")
    for i in range(3):
        await capture(api, resource_id=res, message=f"r{i}", occurred_at=ts(T0 + i))
    first = await api.errors.ListErrorsByResource(rr.ListErrorsByResourceRequest(resource_id=res, page_size=2))
    rest = await api.errors.ListErrorsByResource(
        rr.ListErrorsByResourceRequest(resource_id=res, page_size=2, page_token=first.next_page_token)
    )
    assert [e.report.message for e in [*first.errors, *rest.errors]] == ["r2", "r1", "r0"]
    assert rest.next_page_token == ""
    for bad, field in [
        (rr.ListErrorsByResourceRequest(), "resource_id"),
        (rr.ListErrorsByResourceRequest(resource_id=res, page_size=501), "page_size"),
    ]:
        err = await expect_status(api.errors.ListErrorsByResource(bad), grpc.StatusCode.INVALID_ARGUMENT)
        assert field_violations(err) == [field]


async def test_list_errors_by_correlation_oldest_first_with_origin(api: Api) -> None:
    p = uid("p")
    web, svc, db = f"{p}-web", f"{p}-api", f"{p}-db"
    await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(
            dependencies=[
                m.Dependency(dependent_id=web, dependency_id=svc),
                m.Dependency(dependent_id=svc, dependency_id=db),
            ]
        )
    )
    corr = uid("corr-")
    web_err = await capture(api, correlation_id=corr, resource_id=web, occurred_at=ts(T0 + 120))
    db_err = await capture(api, correlation_id=corr, resource_id=db, occurred_at=ts(T0))
    api_err = await capture(api, correlation_id=corr, resource_id=svc, occurred_at=ts(T0 + 60))
    reply = await api.errors.ListErrorsByCorrelation(rr.ListErrorsByCorrelationRequest(correlation_id=corr))
    assert [e.error_id for e in reply.errors] == [db_err.error_id, api_err.error_id, web_err.error_id]
    assert reply.origin_error_id == db_err.error_id
    err = await expect_status(
        api.errors.ListErrorsByCorrelation(rr.ListErrorsByCorrelationRequest()), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(err) == ["correlation_id"]


# --- statistics -----------------------------------------------------------------------------------
async def test_statistics_counts_add_up(api: Api) -> None:
    run = uid()
    items = [
        rr.CaptureErrorRequest(
            error=report(
                tags={"run": run},
                severity=1 + i % 5,
                resource_id=f"r{i % 3}",
                resource_type="db" if i % 2 else "api",
                error_type=f"E{i % 4}",
                occurred_at=ts(T0 + i * 600),
            )
        )
        for i in range(30)
    ]
    await api.errors.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=items))
    stats = await api.errors.GetStatistics(
        rr.GetStatisticsRequest(
            start_time=ts(T0),
            end_time=ts(T0 + 30 * 600 - 1),
            bucket=duration_pb2.Duration(seconds=3600),
            filter=m.ErrorFilter(tags={"run": run}),
        )
    )
    assert stats.total_count == 30
    for counts in (stats.by_severity, stats.by_source, stats.by_resource, stats.by_resource_type, stats.by_error_type):
        assert sum(counts.values()) == 30
    assert stats.by_severity["SEVERITY_CRITICAL"] == 6
    # Hourly buckets start on the hour (T0 is 3,200 s past one): six cover the five hours.
    assert [t.start_time.seconds for t in stats.timed_counts] == [T0 - 3200 + i * 3600 for i in range(6)]
    assert sum(t.count for t in stats.timed_counts) == 30
    assert sum(g.count for g in stats.top_groups) <= 30 and stats.top_groups


async def test_statistics_validation(api: Api) -> None:
    for bad, field in [
        (rr.GetStatisticsRequest(start_time=ts(T0), end_time=ts(T0 - 10)), "end_time"),
        (rr.GetStatisticsRequest(bucket=duration_pb2.Duration(seconds=-5)), "bucket"),
        (rr.GetStatisticsRequest(bucket=duration_pb2.Duration(nanos=1000)), "bucket"),
    ]:
        err = await expect_status(api.errors.GetStatistics(bad), grpc.StatusCode.INVALID_ARGUMENT)
        assert field_violations(err) == [field]


async def test_default_statistics_window_has_hourly_buckets_on_the_hour(api: Api) -> None:
    stats = await api.errors.GetStatistics(rr.GetStatisticsRequest())
    starts = [t.start_time for t in stats.timed_counts]
    assert 24 <= len(starts) <= 25
    assert all(s.seconds % 3600 == 0 and s.nanos == 0 for s in starts)
    assert starts[-1].ToMicroseconds() <= time.time() * 1_000_000  # no bucket past the end


async def test_muted_groups_leave_statistics_by_default(api: Api) -> None:
    run = uid()
    noisy = await capture(api, tags={"run": run}, error_type="Noise", message="noise", occurred_at=ts(T0))
    await capture(api, tags={"run": run}, error_type="Real", message="real", occurred_at=ts(T0))
    await api.errors.UpdateErrorGroup(
        rr.UpdateErrorGroupRequest(group_id=noisy.group_id, status=m.ERROR_GROUP_STATUS_MUTED)
    )
    window = {"start_time": ts(T0 - 1), "end_time": ts(T0 + 1), "filter": m.ErrorFilter(tags={"run": run})}
    assert (await api.errors.GetStatistics(rr.GetStatisticsRequest(**window))).total_count == 1  # type: ignore[arg-type]
    everything = await api.errors.GetStatistics(rr.GetStatisticsRequest(include_muted=True, **window))  # type: ignore[arg-type]
    assert everything.total_count == 2


# --- groups ---------------------------------------------------------------------------------------
async def test_groups_list_update_and_regression(api: Api) -> None:
    kind = uid("Err")
    first = await capture(api, error_type=kind, message="user 123 not found")
    second = await capture(api, error_type=kind, message="user 456 not found")
    assert first.group_id == second.group_id
    groups = await api.errors.ListErrorGroups(rr.ListErrorGroupsRequest(order_by=rr.ERROR_GROUP_ORDER_COUNT))
    mine = next(g for g in groups.groups if g.group_id == first.group_id)
    assert mine.count == 2 and mine.status == m.ERROR_GROUP_STATUS_OPEN
    resolved = await api.errors.UpdateErrorGroup(
        rr.UpdateErrorGroupRequest(group_id=first.group_id, status=m.ERROR_GROUP_STATUS_RESOLVED)
    )
    assert resolved.group.status == m.ERROR_GROUP_STATUS_RESOLVED
    again = await capture(api, error_type=kind, message="user 789 not found")
    assert again.regression and again.group_id == first.group_id
    listed = await api.errors.ListErrorGroups(rr.ListErrorGroupsRequest(statuses=[m.ERROR_GROUP_STATUS_OPEN]))
    reopened = next(g for g in listed.groups if g.group_id == first.group_id)
    assert reopened.regression and reopened.count == 3


async def test_group_errors(api: Api) -> None:
    await expect_status(
        api.errors.UpdateErrorGroup(
            rr.UpdateErrorGroupRequest(group_id=uid("grp_"), status=m.ERROR_GROUP_STATUS_MUTED)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    err = await expect_status(
        api.errors.UpdateErrorGroup(rr.UpdateErrorGroupRequest(group_id="grp_x")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(err) == ["status"]
    err = await expect_status(
        api.errors.ListErrorGroups(rr.ListErrorGroupsRequest(page_size=501)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(err) == ["page_size"]


# --- topology and changes -------------------------------------------------------------------------
async def test_topology_round_trip(api: Api) -> None:
    p = uid("p")
    web, svc, db = f"{p}-web", f"{p}-api", f"{p}-db"
    up = await api.topology.UpsertResources(
        rr.UpsertResourcesRequest(
            resources=[m.Resource(id=svc, type="service", name="API", labels={"team": "core"})],
            dependencies=[
                m.Dependency(dependent_id=web, dependency_id=svc),
                m.Dependency(dependent_id=svc, dependency_id=db),
            ],
        )
    )
    assert (up.resources_upserted, up.dependencies_upserted) == (1, 2)
    topo = await api.topology.GetTopology(rr.GetTopologyRequest(resource_id=svc, depth=1))
    assert {r.id for r in topo.topology.resources} == {web, svc, db}
    assert {(d.dependent_id, d.dependency_id) for d in topo.topology.dependencies} == {(web, svc), (svc, db)}
    await expect_status(api.topology.GetTopology(rr.GetTopologyRequest(resource_id=uid())), grpc.StatusCode.NOT_FOUND)
    err = await expect_status(
        api.topology.GetTopology(rr.GetTopologyRequest(resource_id=svc, depth=6)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert field_violations(err) == ["depth"]
    err = await expect_status(
        api.topology.UpsertResources(rr.UpsertResourcesRequest(dependencies=[m.Dependency(dependent_id=web)])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(err) == ["dependencies[0].dependency_id"]


async def test_changes_round_trip(api: Api) -> None:
    res = uid("res-")
    recorded = await api.topology.RecordChange(
        rr.RecordChangeRequest(
            change=m.Change(
                kind=m.CHANGE_KIND_DEPLOYMENT, resource_id=res, version="v2.1.0", author="ci", occurred_at=ts(T0)
            )
        )
    )
    assert recorded.change.change_id
    await api.topology.RecordChange(
        rr.RecordChangeRequest(change=m.Change(kind=m.CHANGE_KIND_CONFIG, resource_id=res, occurred_at=ts(T0 - 7200)))
    )
    listed = await api.topology.ListChanges(
        rr.ListChangesRequest(resource_ids=[res], start_time=ts(T0 - 3600), end_time=ts(T0))
    )
    assert [c.version for c in listed.changes] == ["v2.1.0"]
    err = await expect_status(
        api.topology.RecordChange(rr.RecordChangeRequest(change=m.Change(resource_id=res))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(err) == ["change.kind"]
    err = await expect_status(
        api.topology.ListChanges(rr.ListChangesRequest(start_time=ts(T0), end_time=ts(T0 - 1))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert field_violations(err) == ["end_time"]


# --- failure modes --------------------------------------------------------------------------------
async def test_store_down_is_unavailable(api: Api) -> None:
    await api.running.store.close()
    err = await expect_status(capture(api), grpc.StatusCode.UNAVAILABLE)
    assert "request_id" in (err.details() or "")
    await expect_status(api.errors.GetError(rr.GetErrorRequest(error_id="err_x")), grpc.StatusCode.UNAVAILABLE)
