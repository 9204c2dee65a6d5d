from __future__ import annotations

import base64
from typing import Any

import pytest

from errorreplay_server.collectors.base import CollectorResult
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.collectors.tempo import TempoCollector
from errorreplay_server.domain.model import CollectionState, SpanStatus
from tests.unit.collectors.conftest import AT, HOSTILE, Backend, json_reply, snapshot, text_reply, timeout_reply

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT, CHILD, GRANDCHILD = "00f067aa0ba902b7", "b7ad6b7169203331", "e457b5a2e4d86bd1"
NS = AT * 1000


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def attr(key: str, **value: object) -> dict[str, object]:
    return {"key": key, "value": value}


def batches_body() -> dict[str, object]:
    """Tempo's /api/traces answer in the older `batches` shape, as protobuf JSON: base64 ids,
    numeric enums, int64 as strings, instrumentationLibrarySpans."""
    return {
        "batches": [
            {
                "resource": {"attributes": [attr("service.name", stringValue="checkout")]},
                "instrumentationLibrarySpans": [
                    {
                        "spans": [
                            {
                                "traceId": b64(TRACE),
                                "spanId": b64(ROOT),
                                "name": "POST /checkout",
                                "kind": 2,
                                "startTimeUnixNano": str(NS),
                                "endTimeUnixNano": str(NS + 250_000_000),
                                "attributes": [attr("http.status_code", intValue="500")],
                                "status": {"code": 2, "message": "upstream failed"},
                            }
                        ]
                    }
                ],
            },
            {
                "resource": {"attributes": [attr("service.name", stringValue="payments")]},
                "instrumentationLibrarySpans": [
                    {
                        "spans": [
                            {
                                "traceId": b64(TRACE),
                                "spanId": b64(CHILD),
                                "parentSpanId": b64(ROOT),
                                "name": "charge",
                                "startTimeUnixNano": str(NS + 10_000_000),
                                "endTimeUnixNano": str(NS + 200_000_000),
                                "attributes": [
                                    attr("retry", boolValue=True),
                                    attr("amounts", arrayValue={"values": [{"intValue": "1"}, {"doubleValue": 2.5}]}),
                                ],
                                "status": {},
                            }
                        ]
                    }
                ],
            },
        ]
    }


def resource_spans_body() -> dict[str, object]:
    """The OTLP/JSON shape (resourceSpans, scopeSpans) with hex ids and enum names."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [attr("service.name", stringValue="db")]},
                "scopeSpans": [
                    {
                        "scope": {"name": "sql"},
                        "spans": [
                            {
                                "traceId": TRACE.upper(),
                                "spanId": GRANDCHILD,
                                "parentSpanId": CHILD,
                                "name": "SELECT",
                                "kind": "SPAN_KIND_CLIENT",
                                "startTimeUnixNano": NS + 20_000_000,
                                "endTimeUnixNano": NS + 190_000_000,
                                "status": {"code": "STATUS_CODE_ERROR", "message": "deadlock"},
                            },
                            {
                                "traceId": TRACE,
                                "spanId": "1111111111111111",
                                "parentSpanId": GRANDCHILD,
                                "name": "connect",
                                "startTimeUnixNano": NS + 21_000_000,
                                "endTimeUnixNano": NS + 22_000_000,
                                "status": {"code": "STATUS_CODE_OK"},
                            },
                        ],
                    }
                ],
            }
        ]
    }


def settings(**overrides: Any) -> CollectorSettings:
    return CollectorSettings(tempo_url="http://tempo:3200", **overrides)


async def collect(backend: Backend, s: CollectorSettings | None = None, **fields: Any) -> CollectorResult:
    s = s or settings()
    collector = TempoCollector(s, backend.transport())
    try:
        fields.setdefault("trace_id", TRACE)
        return await collector.collect(snapshot(**fields), s.windows.logs.around(AT))
    finally:
        await collector.aclose()


async def test_batches_shape() -> None:
    backend = Backend(json_reply(batches_body()))
    result = await collect(backend, trace_id=TRACE.upper())
    (request,) = backend.requests
    assert request.method == "GET" and request.url.path == f"/api/traces/{TRACE}"
    assert request.url.query == b""
    assert result.state is CollectionState.OK
    root, child = result.spans
    assert (root.trace_id, root.span_id, root.parent_span_id) == (TRACE, ROOT, "")
    assert (root.service, root.name, root.start_time, root.duration_us) == ("checkout", "POST /checkout", AT, 250_000)
    assert (root.status, root.status_message, root.failing) == (SpanStatus.ERROR, "upstream failed", True)
    assert root.attributes == {"http.status_code": "500"}
    assert (child.parent_span_id, child.service, child.status, child.failing) == (
        ROOT,
        "payments",
        SpanStatus.UNSET,
        False,
    )
    assert child.attributes == {"retry": "true", "amounts": "[1, 2.5]"}


async def test_resource_spans_shape() -> None:
    result = await collect(Backend(json_reply(resource_spans_body())))
    assert result.state is CollectionState.OK
    select, connect = result.spans
    assert (select.trace_id, select.span_id, select.parent_span_id) == (TRACE, GRANDCHILD, CHILD)
    assert (select.service, select.status, select.failing, select.status_message) == (
        "db",
        SpanStatus.ERROR,
        True,
        "deadlock",
    )
    assert (connect.status, connect.failing, connect.duration_us) == (SpanStatus.OK, False, 1000)


async def test_tempo_v2_wrapper_and_tenant() -> None:
    backend = Backend(json_reply({"trace": resource_spans_body()}))
    result = await collect(backend, settings(tempo_tenant="t1"))
    assert len(result.spans) == 2 and backend.requests[0].headers["X-Scope-OrgID"] == "t1"


@pytest.mark.parametrize("trace_id", [HOSTILE, "../../api/search?q=1", TRACE + "0", "zz", 'abc"|}'])
async def test_a_trace_id_that_is_not_hex_never_reaches_the_url(trace_id: str) -> None:
    backend = Backend(json_reply(batches_body()))
    result = await collect(backend, trace_id=trace_id)
    assert (result.state, result.detail) == (CollectionState.SKIPPED, "trace_id is not 1 to 32 hex digits")
    assert backend.requests == []


async def test_no_trace_id_or_no_url_is_skipped() -> None:
    backend = Backend(json_reply(batches_body()))
    assert (await collect(backend, trace_id="")).state is CollectionState.SKIPPED
    assert (await collect(backend, CollectorSettings())).state is CollectionState.SKIPPED
    assert backend.requests == []


async def test_not_found_is_empty() -> None:
    result = await collect(Backend(text_reply("trace not found", 404)))
    assert (result.state, result.detail) == (CollectionState.EMPTY, "trace not found")


async def test_no_spans_is_empty() -> None:
    assert (await collect(Backend(json_reply({"batches": []})))).state is CollectionState.EMPTY
    assert (await collect(Backend(json_reply({})))).state is CollectionState.EMPTY


async def test_http_500_fails() -> None:
    result = await collect(Backend(text_reply("error querying ingesters", 500)))
    assert (result.state, result.detail) == (CollectionState.FAILED, "HTTP 500: error querying ingesters")


async def test_timeout_fails() -> None:
    result = await collect(Backend(timeout_reply))
    assert (result.state, result.detail) == (CollectionState.FAILED, "timeout after 2.0s")


async def test_malformed_json_fails() -> None:
    result = await collect(Backend(text_reply("<html>gateway</html>")))
    assert (result.state, result.detail) == (CollectionState.FAILED, "malformed JSON in response")


async def test_bad_ids_in_the_answer_fail() -> None:
    body = resource_spans_body()
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "not an id!"  # type: ignore[index]
    result = await collect(Backend(json_reply(body)))
    assert result.state is CollectionState.FAILED and result.detail.startswith("unexpected response shape")


async def test_spans_are_capped_keeping_failing_ones() -> None:
    spans = [
        {
            "traceId": TRACE,
            "spanId": f"{i:016x}",
            "name": f"s{i}",
            "startTimeUnixNano": NS + i * 1000,
            "endTimeUnixNano": NS + i * 1000 + 500,
            "status": {"code": 2 if i in (7, 9) else 0},
        }
        for i in range(10)
    ]
    body = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": spans}]}]}
    result = await collect(Backend(json_reply(body)), settings(max_spans=4))
    assert [s.name for s in result.spans] == ["s0", "s1", "s7", "s9"]
    assert result.detail == "kept 4 of 10 spans, failing ones first"
