"""Log lines around the error from Loki (`/loki/api/v1/query_range`)."""

from __future__ import annotations

from typing import Any

import httpx

from errorreplay_server.collectors.base import CollectorResult, Window, WindowSpec, error_time, reports_failures
from errorreplay_server.collectors.escaping import label_matcher
from errorreplay_server.collectors.httpclient import make_client, request_json, shape_error
from errorreplay_server.collectors.logsplit import Side, collect_sides, nearest
from errorreplay_server.collectors.parsing import detect_level
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import ErrorSnapshot, LogLine

_NANOS_PER_MICRO = 1000


class LokiCollector:
    name = "loki"

    def __init__(self, settings: CollectorSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.window_spec: WindowSpec = settings.windows.logs
        self._settings = settings
        headers = {"X-Scope-OrgID": settings.loki_tenant} if settings.loki_tenant else {}
        self._client = (
            make_client(
                settings.loki_url, timeout_seconds=settings.timeout_seconds, transport=transport, headers=headers
            )
            if settings.loki_url
            else None
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def selector(self, error: ErrorSnapshot) -> str | None:
        """The LogQL stream selector: the resource label, else the service label."""
        s = self._settings
        if error.report.resource_id:
            return "{" + label_matcher(s.loki_resource_label, error.report.resource_id) + "}"
        if error.report.service:
            return "{" + label_matcher(s.loki_service_label, error.report.service) + "}"
        return None

    @reports_failures
    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        if self._client is None:
            return CollectorResult.skipped("ERRORREPLAY_LOKI_URL not set")
        query = self.selector(error)
        if query is None:
            return CollectorResult.skipped("error has no resource_id or service to select logs by")

        async def fetch(side: Side) -> list[LogLine]:
            assert self._client is not None
            # Loki's range is [start, end) in nanoseconds; end + 1 µs keeps `side.end` in it.
            body = await request_json(
                self._client,
                "GET",
                "/loki/api/v1/query_range",
                params={
                    "query": query,
                    "start": str(side.start * _NANOS_PER_MICRO),
                    "end": str((side.end + 1) * _NANOS_PER_MICRO),
                    "limit": str(side.limit),
                    "direction": "backward" if side.newest_first else "forward",
                },
            )
            try:
                return nearest(self._parse(body), side)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                raise shape_error(exc) from None

        s = self._settings
        return await collect_sides(fetch, window, error_time(error), s.log_lines_before, s.log_lines_after)

    def _parse(self, body: Any) -> list[LogLine]:
        if body.get("status") != "success":
            raise ValueError(f"status {body.get('status')!r}")
        data = body["data"]
        if data["resultType"] != "streams":
            raise ValueError(f"expected streams, got {data['resultType']!r}")
        lines = []
        for stream in data["result"]:
            labels = {str(k): str(v) for k, v in stream.get("stream", {}).items()}
            for entry in stream["values"]:
                # [ns, line] or, with structured metadata, [ns, line, {...}].
                text = str(entry[1])
                lines.append(
                    LogLine(
                        time=int(entry[0]) // _NANOS_PER_MICRO,
                        level=detect_level(labels, text),
                        message=text,
                        collector=self.name,
                        labels=labels,
                    )
                )
        return lines
