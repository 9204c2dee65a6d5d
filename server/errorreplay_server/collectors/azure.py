"""Log lines around the error from Azure Log Analytics (`POST /v1/workspaces/{id}/query`).

The token comes from ERRORREPLAY_AZURE_TOKEN, else from azure-identity's DefaultAzureCredential,
imported only when needed so azure-identity stays an optional extra.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Protocol

import httpx

from errorreplay_server.collectors.base import (
    CollectorFailure,
    CollectorResult,
    Window,
    WindowSpec,
    error_time,
    reports_failures,
)
from errorreplay_server.collectors.escaping import kql_string, path_segment
from errorreplay_server.collectors.httpclient import make_client, request_json, shape_error
from errorreplay_server.collectors.logsplit import sides
from errorreplay_server.collectors.parsing import (
    UNKNOWN_LEVEL,
    detect_level,
    iso_utc,
    normalise_level,
    parse_timestamp,
)
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import CollectionState, ErrorSnapshot, LogLine

# Application Insights' SeverityLevel: Verbose, Information, Warning, Error, Critical.
_SEVERITY_LEVELS = {0: "debug", 1: "info", 2: "warn", 3: "error", 4: "critical"}
# Renew a cached token this long before it expires.
TOKEN_RENEW_SECONDS = 300


class TokenSource(Protocol):
    async def token(self) -> str: ...

    async def close(self) -> None: ...


class StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    async def close(self) -> None:
        return None


class AzureIdentityToken:
    """DefaultAzureCredential (managed identity, workload identity, az login, ...)."""

    def __init__(self, scope: str) -> None:
        self._scope = scope
        self._credential: Any = None
        self._token = ""
        self._expires_on = 0.0

    async def token(self) -> str:
        if self._token and self._expires_on - TOKEN_RENEW_SECONDS > time.time():
            return self._token
        if self._credential is None:
            try:
                identity = importlib.import_module("azure.identity.aio")
            except ImportError:
                raise CollectorFailure(
                    "no Azure credential: set ERRORREPLAY_AZURE_TOKEN or install azure-identity"
                ) from None
            self._credential = identity.DefaultAzureCredential()
        try:
            access = await self._credential.get_token(self._scope)
        except Exception as exc:  # azure-identity raises its own hierarchy
            raise CollectorFailure(f"Azure credential failed: {type(exc).__name__}") from None
        self._token, self._expires_on = access.token, float(access.expires_on)
        return self._token

    async def close(self) -> None:
        if self._credential is not None:
            await self._credential.close()


class AzureLogAnalyticsCollector:
    name = "azure_log_analytics"

    def __init__(
        self,
        settings: CollectorSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        token_source: TokenSource | None = None,
    ) -> None:
        self.window_spec: WindowSpec = settings.windows.logs
        self._s = settings
        endpoint = settings.azure_endpoint.rstrip("/")
        self._tokens = token_source or (
            StaticToken(settings.azure_token) if settings.azure_token else AzureIdentityToken(f"{endpoint}/.default")
        )
        self._client = (
            make_client(endpoint, timeout_seconds=settings.timeout_seconds, transport=transport)
            if settings.azure_workspace_id
            else None
        )
        self.path = f"/v1/workspaces/{path_segment(settings.azure_workspace_id)}/query"

    async def aclose(self) -> None:
        await self._tokens.close()
        if self._client is not None:
            await self._client.aclose()

    def kql(self, error: ErrorSnapshot, window: Window) -> str | None:
        """The query: the resource (else service) column equals the value, as a KQL string
        literal; the nearest lines on each side of the error, oldest first."""
        s = self._s
        if error.report.resource_id:
            column, value = s.azure_resource_column, error.report.resource_id
        elif error.report.service:
            column, value = s.azure_service_column, error.report.service
        else:
            return None
        t = s.azure_time_column
        columns = list(
            dict.fromkeys(
                [t, s.azure_message_column, s.azure_level_column, s.azure_resource_column, s.azure_service_column]
            )
        )
        parts = []
        for side in sides(window, error_time(error), s.log_lines_before, s.log_lines_after):
            op = "<=" if side.newest_first else ">="
            bound = side.end if side.newest_first else side.start
            order = "desc" if side.newest_first else "asc"
            parts.append(f"(lines | where {t} {op} datetime({iso_utc(bound)}) | top {side.limit} by {t} {order})")
        return (
            f"let lines = {s.azure_table}\n"
            f"| where {t} between (datetime({iso_utc(window.start)}) .. datetime({iso_utc(window.end)}))\n"
            f"| where {column} == {kql_string(value)}\n"
            f"| project {', '.join(columns)};\n"
            f"union {', '.join(parts)}\n"
            f"| order by {t} asc"
        )

    @staticmethod
    def timespan(window: Window) -> str:
        return f"{iso_utc(window.start)}/{iso_utc(window.end)}"

    @reports_failures
    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        if self._client is None:
            return CollectorResult.skipped("ERRORREPLAY_AZURE_LOG_ANALYTICS_WORKSPACE_ID not set")
        query = self.kql(error, window)
        if query is None:
            return CollectorResult.skipped("error has no resource_id or service to select logs by")
        token = await self._tokens.token()
        # One request carries both sides of the error (the union in the query).
        body = await request_json(
            self._client,
            "POST",
            self.path,
            json={"query": query, "timespan": self.timespan(window)},
            headers={"Authorization": f"Bearer {token}"},
        )
        try:
            lines = self._parse(body)
            # A 200 can still carry an error: the query ran partly (e.g. a limit was hit).
            partial = body.get("error")
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise shape_error(exc) from None
        lines.sort(key=lambda line: line.time)
        lines = lines[: self._s.log_lines_cap]
        if not lines:
            return CollectorResult.empty("no log lines")
        detail = f"partial: {partial.get('code', 'error') if isinstance(partial, dict) else partial}" if partial else ""
        return CollectorResult(CollectionState.OK, detail, logs=lines)

    def _parse(self, body: Any) -> list[LogLine]:
        s = self._s
        tables = body["tables"]
        if not tables:
            return []
        table = tables[0]
        index = {str(c["name"]): i for i, c in enumerate(table["columns"])}
        t, m = index[s.azure_time_column], index[s.azure_message_column]
        lvl = index.get(s.azure_level_column)
        # Label names shared by every log source: the analysis reads `resource_id` and `service`.
        label_columns = {
            "resource_id": index.get(s.azure_resource_column),
            "service": index.get(s.azure_service_column),
        }
        lines = []
        for row in table["rows"]:
            at = parse_timestamp(row[t])
            if at is None:
                continue
            message = "" if row[m] is None else str(row[m])
            raw_level = row[lvl] if lvl is not None else None
            if isinstance(raw_level, int) and not isinstance(raw_level, bool):
                level = _SEVERITY_LEVELS.get(raw_level, UNKNOWN_LEVEL)
            else:
                level = normalise_level(raw_level or "")
            if level == UNKNOWN_LEVEL:
                level = detect_level({}, message)
            labels = {k: str(row[i]) for k, i in label_columns.items() if i is not None and row[i] not in (None, "")}
            lines.append(
                LogLine(
                    time=at,
                    level=level,
                    message=message,
                    collector=self.name,
                    labels=labels,
                )
            )
        return lines
