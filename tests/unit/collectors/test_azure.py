from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import pytest

from errorreplay_server.collectors.azure import AzureLogAnalyticsCollector
from errorreplay_server.collectors.base import CollectorResult
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import MICROS_PER_SECOND, CollectionState
from tests.unit.collectors.conftest import AT, HOSTILE, Backend, json_reply, snapshot, text_reply, timeout_reply

S = MICROS_PER_SECOND
WORKSPACE = "b8f0a4c4-0f8e-4a5b-9a55-1b3b5d0c7e11"
COLUMNS = [
    {"name": "TimeGenerated", "type": "datetime"},
    {"name": "Message", "type": "string"},
    {"name": "SeverityLevel", "type": "int"},
    {"name": "AppRoleInstance", "type": "string"},
    {"name": "AppRoleName", "type": "string"},
]


def settings(**overrides: Any) -> CollectorSettings:
    values: dict[str, Any] = {"azure_workspace_id": WORKSPACE, "azure_token": "eyJ0eXAi.test.token"}
    values.update(overrides)
    return CollectorSettings(**values)


def tables(*rows: Sequence[object], columns: list[dict[str, str]] = COLUMNS) -> dict[str, object]:
    """The documented query answer: tables[0] with columns and rows."""
    return {"tables": [{"name": "PrimaryResult", "columns": columns, "rows": list(rows)}]}


async def collect(backend: Backend, s: CollectorSettings | None = None, **fields: Any) -> CollectorResult:
    s = s or settings()
    collector = AzureLogAnalyticsCollector(s, backend.transport())
    try:
        fields.setdefault("resource_id", "api-7f9")
        return await collector.collect(snapshot(**fields), s.windows.logs.around(AT))
    finally:
        await collector.aclose()


async def test_exact_kql_for_a_hostile_resource_id() -> None:
    backend = Backend(json_reply(tables()))
    result = await collect(backend, resource_id=HOSTILE)
    assert result.state is CollectionState.EMPTY
    (request,) = backend.requests
    assert request.method == "POST"
    assert str(request.url) == f"https://api.loganalytics.io/v1/workspaces/{WORKSPACE}/query"
    assert request.headers["Authorization"] == "Bearer eyJ0eXAi.test.token"
    (body,) = backend.json_bodies()
    assert body["timespan"] == "2023-11-14T22:08:20.000000Z/2023-11-14T22:18:20.000000Z"
    assert body["query"] == (
        "let lines = AppTraces\n"
        "| where TimeGenerated between "
        "(datetime(2023-11-14T22:08:20.000000Z) .. datetime(2023-11-14T22:18:20.000000Z))\n"
        r'''| where AppRoleInstance == "api\"}|'\\\n{x=\"1\"} or vector(1)"''' + "\n"
        "| project TimeGenerated, Message, SeverityLevel, AppRoleInstance, AppRoleName;\n"
        "union (lines | where TimeGenerated <= datetime(2023-11-14T22:13:20.000000Z) | top 150 by TimeGenerated desc), "
        "(lines | where TimeGenerated >= datetime(2023-11-14T22:13:20.000001Z) | top 50 by TimeGenerated asc)\n"
        "| order by TimeGenerated asc"
    )


async def test_service_fallback_and_configured_columns() -> None:
    s = settings(
        azure_table="ContainerLogV2",
        azure_time_column="TimeGenerated",
        azure_message_column="LogMessage",
        azure_level_column="LogLevel",
        azure_service_column="ContainerName",
        log_lines_after=0,
        azure_endpoint="https://api.loganalytics.azure.cn/",
    )
    backend = Backend(json_reply(tables()))
    await collect(backend, s, resource_id="", service="it's")
    (request,) = backend.requests
    assert request.url.host == "api.loganalytics.azure.cn"
    query = backend.json_bodies()[0]["query"]
    assert query.startswith("let lines = ContainerLogV2\n")
    assert '| where ContainerName == "it\'s"\n' in query
    assert "| project TimeGenerated, LogMessage, LogLevel, AppRoleInstance, ContainerName;\n" in query
    assert "top 50" not in query and "top 150 by TimeGenerated desc)\n" in query


async def test_rows_are_parsed() -> None:
    rows: list[list[object]] = [
        ["2023-11-14T22:13:21.5Z", "recovered", 1, "api-7f9", "api"],
        ["2023-11-14T22:13:19.1234567Z", "db timeout", 3, "api-7f9", "api"],
        ["2023-11-14T22:13:19.9Z", "WARNING pool low", None, None, None],
        ["not a time", "dropped", 3, "api-7f9", "api"],
    ]
    result = await collect(Backend(json_reply(tables(*rows))))
    assert result.state is CollectionState.OK and result.detail == ""
    assert [(line.time, line.level, line.message) for line in result.logs] == [
        (AT - S + 123_456, "error", "db timeout"),
        (AT - S + 900_000, "warn", "WARNING pool low"),
        (AT + S + 500_000, "info", "recovered"),
    ]
    assert result.logs[0].labels == {"resource_id": "api-7f9", "service": "api"} and result.logs[1].labels == {}


async def test_partial_answer_is_noted() -> None:
    body = tables(["2023-11-14T22:13:20Z", "x", 2, "api-7f9", "api"])
    body["error"] = {"code": "PartialError", "message": "query limits exceeded"}
    result = await collect(Backend(json_reply(body)))
    assert (result.state, result.detail) == (CollectionState.OK, "partial: PartialError")


async def test_empty_result_is_empty() -> None:
    assert (await collect(Backend(json_reply(tables())))).state is CollectionState.EMPTY
    assert (await collect(Backend(json_reply({"tables": []})))).state is CollectionState.EMPTY


async def test_http_500_fails() -> None:
    result = await collect(Backend(json_reply({"error": {"code": "InternalServerError"}}, 500)))
    assert (result.state, result.detail) == (
        CollectionState.FAILED,
        'HTTP 500: {"error":{"code":"InternalServerError"}}',
    )


async def test_timeout_fails() -> None:
    result = await collect(Backend(timeout_reply))
    assert (result.state, result.detail) == (CollectionState.FAILED, "timeout after 2.0s")


async def test_malformed_json_fails() -> None:
    result = await collect(Backend(text_reply("{'tables': []}")))
    assert (result.state, result.detail) == (CollectionState.FAILED, "malformed JSON in response")


async def test_missing_columns_fail() -> None:
    body = tables(["2023-11-14T22:13:20Z"], columns=[{"name": "TimeGenerated", "type": "datetime"}])
    result = await collect(Backend(json_reply(body)))
    assert result.state is CollectionState.FAILED and "Message" in result.detail


async def test_not_configured_is_skipped() -> None:
    backend = Backend(json_reply(tables()))
    assert (await collect(backend, CollectorSettings())).state is CollectionState.SKIPPED
    assert (await collect(backend, resource_id="")).state is CollectionState.SKIPPED
    assert backend.requests == []


@pytest.mark.skipif(importlib.util.find_spec("azure") is not None, reason="azure-identity is installed here")
async def test_without_a_token_or_azure_identity_the_reason_says_what_to_do() -> None:
    backend = Backend(json_reply(tables()))
    result = await collect(backend, settings(azure_token=""))
    assert result.state is CollectionState.FAILED
    assert result.detail == "no Azure credential: set ERRORREPLAY_AZURE_TOKEN or install azure-identity"
    assert backend.requests == []
