from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx

from errorreplay_server.collectors.base import CollectorResult
from errorreplay_server.collectors.elasticsearch import ElasticsearchCollector, lookup
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import MICROS_PER_SECOND, CollectionState
from tests.unit.collectors.conftest import AT, HOSTILE, Backend, json_reply, snapshot, text_reply, timeout_reply

S = MICROS_PER_SECOND
MS = 1000


def settings(**overrides: Any) -> CollectorSettings:
    return CollectorSettings(
        elasticsearch_url="http://es:9200",
        elasticsearch_api_key="c2VjcmV0LWtleQ==",
        **overrides,
    )


def hits(*docs: dict[str, object]) -> dict[str, object]:
    """The documented _search answer: hits.hits[]._source, with the sort values."""
    return {
        "took": 3,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": len(docs), "relation": "eq"},
            "max_score": None,
            "hits": [
                {"_index": "logs-2023.11.14", "_id": str(i), "_score": None, "_source": doc, "sort": [i]}
                for i, doc in enumerate(docs)
            ],
        },
    }


def two_sides(request: httpx.Request) -> httpx.Response:
    body = request.read().decode()
    if '"desc"' in body:
        return httpx.Response(
            200,
            json=hits(
                # ECS nests log.level; some shippers write the dotted key flat.
                {"@timestamp": "2023-11-14T22:13:20Z", "message": "deadlock", "log": {"level": "ERROR"}},
                {"@timestamp": "2023-11-14T22:13:19.250000123Z", "message": "slow", "log.level": "warning"},
            ),
        )
    return httpx.Response(
        200,
        json=hits({"@timestamp": 1_700_000_001_500, "message": "CRITICAL gave up", "service": {"name": "api"}}),
    )


async def collect(backend: Backend, s: CollectorSettings | None = None, **fields: Any) -> CollectorResult:
    s = s or settings()
    collector = ElasticsearchCollector(s, backend.transport())
    try:
        fields.setdefault("resource_id", "api")
        return await collector.collect(snapshot(**fields), s.windows.logs.around(AT))
    finally:
        await collector.aclose()


def expected_body(size: int, order: str, gte: str, lte: str, term: Mapping[str, object]) -> dict[str, object]:
    return {
        "size": size,
        "track_total_hits": False,
        "sort": [{"@timestamp": {"order": order, "unmapped_type": "date"}}],
        "_source": ["@timestamp", "message", "log.level", "resource_id", "service.name"],
        "query": {
            "bool": {
                "filter": [
                    {"term": term},
                    {"range": {"@timestamp": {"gte": gte, "lte": lte, "format": "strict_date_optional_time_nanos"}}},
                ]
            }
        },
    }


async def test_exact_body_for_a_hostile_resource_id() -> None:
    backend = Backend(json_reply(hits()))
    result = await collect(backend, resource_id=HOSTILE)
    assert result.state is CollectionState.EMPTY
    for request in backend.requests:
        assert request.method == "POST" and request.url.path == "/logs-*/_search"
        assert request.headers["Authorization"] == "ApiKey c2VjcmV0LWtleQ=="
        assert request.headers["Content-Type"] == "application/json"
        # The value travels as a JSON string, escaped by the JSON encoder, never as query text.
        assert b"query_string" not in request.content
        assert b'"resource_id":"api\\"}|\'\\\\\\n{x=\\"1\\"} or vector(1)"' in request.content
    before, after = sorted(backend.json_bodies(), key=lambda b: b["size"], reverse=True)
    term = {"resource_id": HOSTILE}
    assert before == expected_body(150, "desc", "2023-11-14T22:08:20.000000Z", "2023-11-14T22:13:20.000000Z", term)
    assert after == expected_body(50, "asc", "2023-11-14T22:13:20.000001Z", "2023-11-14T22:18:20.000000Z", term)


async def test_basic_auth_index_and_service_fallback() -> None:
    s = CollectorSettings(
        elasticsearch_url="http://es:9200",
        elasticsearch_username="elastic",
        elasticsearch_password="changeme",
        elasticsearch_index="app-logs-*,audit",
    )
    backend = Backend(json_reply(hits()))
    await collect(backend, s, resource_id="", service="pay'ments")
    request = backend.requests[0]
    assert request.url.path == "/app-logs-*,audit/_search"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"elastic:changeme").decode()
    assert backend.json_bodies()[0]["query"]["bool"]["filter"][0] == {"term": {"service.name": "pay'ments"}}


async def test_hits_are_parsed_in_time_order() -> None:
    result = await collect(Backend(two_sides))
    assert result.state is CollectionState.OK
    assert [(line.time, line.level, line.message) for line in result.logs] == [
        (AT - S + 250_000, "warn", "slow"),
        (AT, "error", "deadlock"),
        (AT + 1500 * MS, "critical", "CRITICAL gave up"),  # level from the text; epoch millis
    ]
    assert result.logs[2].labels == {"index": "logs-2023.11.14", "service": "api"}
    assert {line.collector for line in result.logs} == {"elasticsearch"}


async def test_empty_result_is_empty() -> None:
    assert (await collect(Backend(json_reply(hits())))).state is CollectionState.EMPTY


async def test_http_500_fails() -> None:
    body = {"error": {"type": "search_phase_execution_exception"}, "status": 500}
    result = await collect(Backend(json_reply(body, 500)))
    assert result.state is CollectionState.FAILED
    assert result.detail == 'HTTP 500: {"error":{"type":"search_phase_execution_exception"},"status":500}'


async def test_timeout_fails() -> None:
    result = await collect(Backend(timeout_reply))
    assert (result.state, result.detail) == (CollectionState.FAILED, "timeout after 2.0s")


async def test_malformed_json_fails() -> None:
    result = await collect(Backend(text_reply('{"hits": {"hits": [')))
    assert (result.state, result.detail) == (CollectionState.FAILED, "malformed JSON in response")


async def test_wrong_shape_fails() -> None:
    result = await collect(Backend(json_reply({"acknowledged": True})))
    assert result.state is CollectionState.FAILED and result.detail.startswith("unexpected response shape")


async def test_not_configured_is_skipped() -> None:
    backend = Backend(json_reply(hits()))
    assert (await collect(backend, CollectorSettings())).state is CollectionState.SKIPPED
    assert (await collect(backend, resource_id="")).state is CollectionState.SKIPPED
    assert backend.requests == []


def test_lookup_handles_nested_and_dotted_fields() -> None:
    source = {"log": {"level": "info"}, "service.name": "a", "host": {"os.name": "linux"}}
    assert lookup(source, "log.level") == "info"
    assert lookup(source, "service.name") == "a"
    assert lookup(source, "host.os.name") == "linux"
    assert lookup(source, "missing.field") is None
