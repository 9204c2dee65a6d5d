from __future__ import annotations

from typing import Any

import httpx

from errorreplay_server.collectors.base import CollectorResult
from errorreplay_server.collectors.loki import LokiCollector
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import MICROS_PER_SECOND, CollectionState, LogLine
from tests.unit.collectors.conftest import AT, HOSTILE, Backend, json_reply, snapshot, text_reply, timeout_reply

S = MICROS_PER_SECOND
HOSTILE_SELECTOR = r"""{resource_id="api\"}|'\\\n{x=\"1\"} or vector(1)"}"""


def settings(**overrides: Any) -> CollectorSettings:
    return CollectorSettings(loki_url="http://loki:3100", **overrides)


def streams(*result: tuple[dict[str, str], list[tuple[int, str]]]) -> dict[str, object]:
    """Loki's documented query_range answer: timestamps are nanosecond strings."""
    return {
        "status": "success",
        "data": {
            "resultType": "streams",
            "result": [
                {"stream": labels, "values": [[str(t * 1000), line] for t, line in values]} for labels, values in result
            ],
            "stats": {"summary": {"bytesProcessedPerSecond": 1}},
        },
    }


def two_sides(request: httpx.Request) -> httpx.Response:
    if request.url.params["direction"] == "backward":
        return httpx.Response(
            200,
            json=streams(
                ({"resource_id": "api", "level": "error"}, [(AT, "db timeout"), (AT - 2 * S, "retrying")]),
                ({"resource_id": "api"}, [(AT - S, 'level=warn msg="pool exhausted"')]),
            ),
        )
    return httpx.Response(200, json=streams(({"resource_id": "api"}, [(AT + S, "INFO recovered")])))


async def collect(backend: Backend, s: CollectorSettings | None = None, **fields: Any) -> CollectorResult:
    s = s or settings()
    collector = LokiCollector(s, backend.transport())
    try:
        fields.setdefault("resource_id", "api")
        return await collector.collect(snapshot(**fields), s.windows.logs.around(AT))
    finally:
        await collector.aclose()


async def test_exact_queries_for_a_hostile_resource_id() -> None:
    backend = Backend(json_reply(streams()))
    result = await collect(backend, resource_id=HOSTILE)
    assert result.state is CollectionState.EMPTY
    before, after = sorted(backend.requests, key=lambda r: r.url.params["direction"])
    for request in (before, after):
        assert request.url.path == "/loki/api/v1/query_range"
        assert request.url.params["query"] == HOSTILE_SELECTOR
        assert "X-Scope-OrgID" not in request.headers
    # The 150 lines before the error, newest first; the 50 after, oldest first. Nanoseconds;
    # Loki's end is exclusive, hence the extra microsecond.
    assert dict(before.url.params) == {
        "query": HOSTILE_SELECTOR,
        "start": "1699999700000000000",
        "end": "1700000000000001000",
        "limit": "150",
        "direction": "backward",
    }
    assert dict(after.url.params) == {
        "query": HOSTILE_SELECTOR,
        "start": "1700000000000001000",
        "end": "1700000300000001000",
        "limit": "50",
        "direction": "forward",
    }


async def test_tenant_header_and_service_fallback() -> None:
    backend = Backend(json_reply(streams()))
    await collect(
        backend, settings(loki_tenant="team-a", loki_service_label="app"), resource_id="", service="check\nout"
    )
    assert {r.headers["X-Scope-OrgID"] for r in backend.requests} == {"team-a"}
    assert {r.url.params["query"] for r in backend.requests} == {'{app="check\\nout"}'}


async def test_lines_are_parsed_with_levels_in_time_order() -> None:
    result = await collect(Backend(two_sides))
    assert result.state is CollectionState.OK and result.detail == ""
    assert [(line.time, line.level, line.message) for line in result.logs] == [
        (AT - 2 * S, "error", "retrying"),  # the stream's level label
        (AT - S, "warn", 'level=warn msg="pool exhausted"'),  # level=... in the text
        (AT, "error", "db timeout"),
        (AT + S, "info", "INFO recovered"),  # a bare upper-case level word
    ]
    assert result.logs[0].collector == "loki" and result.logs[0].labels == {"resource_id": "api", "level": "error"}


async def test_lines_are_capped() -> None:
    many = [(AT - i, "x" * 50) for i in range(30)]
    s = settings(log_lines_before=10, log_lines_after=0)
    result = await collect(Backend(json_reply(streams(({"a": "b"}, many)))), s)
    assert len(result.logs) == 10
    # The ten nearest the error are kept (lines are cut to size after scrubbing, by the queue).
    assert [line.time for line in result.logs] == [AT - i for i in range(9, -1, -1)]


async def test_empty_result_is_empty() -> None:
    result = await collect(Backend(json_reply(streams())))
    assert result.state is CollectionState.EMPTY


async def test_http_500_fails() -> None:
    result = await collect(Backend(text_reply("too many outstanding requests", 500)))
    assert (result.state, result.detail) == (CollectionState.FAILED, "HTTP 500: too many outstanding requests")


async def test_timeout_fails() -> None:
    result = await collect(Backend(timeout_reply))
    assert (result.state, result.detail) == (CollectionState.FAILED, "timeout after 2.0s")


async def test_malformed_json_fails() -> None:
    result = await collect(Backend(text_reply('{"status": "success", "data": ')))
    assert (result.state, result.detail) == (CollectionState.FAILED, "malformed JSON in response")


async def test_wrong_result_type_fails() -> None:
    body = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    result = await collect(Backend(json_reply(body)))
    assert result.state is CollectionState.FAILED and "expected streams" in result.detail


async def test_one_side_failing_keeps_the_other() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.params["direction"] == "forward":
            return httpx.Response(502, text="bad gateway")
        return two_sides(request)

    result = await collect(Backend(reply))
    assert result.state is CollectionState.OK and result.detail == "partial: HTTP 502: bad gateway"
    assert len(result.logs) == 3


async def test_one_side_failing_and_the_other_empty_is_a_failure() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.params["direction"] == "forward":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=streams())

    result = await collect(Backend(reply))
    assert (result.state, result.detail) == (CollectionState.FAILED, "ConnectError: connection refused")


async def test_structured_metadata_entries_are_read() -> None:
    body = streams()
    body["data"]["result"] = [  # type: ignore[index]
        {"stream": {"app": "api"}, "values": [[str(AT * 1000), "ERROR boom", {"trace_id": "abc"}]]}
    ]
    result = await collect(Backend(json_reply(body)))
    assert result.logs == [LogLine(AT, "error", "ERROR boom", "loki", {"app": "api"})] * 2  # both sides answered


async def test_not_configured_or_nothing_to_select_by_is_skipped() -> None:
    backend = Backend(json_reply(streams()))
    assert (await collect(backend, CollectorSettings())).state is CollectionState.SKIPPED
    assert (await collect(backend, resource_id="")).state is CollectionState.SKIPPED
    assert backend.requests == []
