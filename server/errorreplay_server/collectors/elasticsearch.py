"""Log lines around the error from Elasticsearch (`POST /{index}/_search`).

The query is a JSON document: user values are JSON values inside `term` filters, never text
spliced into a `query_string`, so they cannot change the query's meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from errorreplay_server.collectors.base import CollectorResult, Window, WindowSpec, error_time, reports_failures
from errorreplay_server.collectors.escaping import path_segment
from errorreplay_server.collectors.httpclient import make_client, request_json, shape_error
from errorreplay_server.collectors.logsplit import Side, collect_sides, nearest
from errorreplay_server.collectors.parsing import (
    UNKNOWN_LEVEL,
    detect_level,
    iso_utc,
    normalise_level,
    parse_timestamp,
)
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import ErrorSnapshot, LogLine


class ElasticsearchCollector:
    name = "elasticsearch"

    def __init__(self, settings: CollectorSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.window_spec: WindowSpec = settings.windows.logs
        self._s = settings
        headers: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        if settings.elasticsearch_api_key:
            headers["Authorization"] = f"ApiKey {settings.elasticsearch_api_key}"
        elif settings.elasticsearch_username:
            auth = (settings.elasticsearch_username, settings.elasticsearch_password)
        self._client = (
            make_client(
                settings.elasticsearch_url,
                timeout_seconds=settings.timeout_seconds,
                transport=transport,
                headers=headers,
                auth=auth,
            )
            if settings.elasticsearch_url
            else None
        )
        # `,` and `*` keep their meaning in an index pattern; anything else is escaped.
        self.path = f"/{path_segment(settings.elasticsearch_index, safe=',*')}/_search"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def term(self, error: ErrorSnapshot) -> dict[str, Any] | None:
        if error.report.resource_id:
            return {"term": {self._s.elasticsearch_resource_field: error.report.resource_id}}
        if error.report.service:
            return {"term": {self._s.elasticsearch_service_field: error.report.service}}
        return None

    def body(self, term: dict[str, Any], side: Side) -> dict[str, Any]:
        ts = self._s.elasticsearch_timestamp_field
        return {
            "size": side.limit,
            "track_total_hits": False,
            "sort": [{ts: {"order": "desc" if side.newest_first else "asc", "unmapped_type": "date"}}],
            "_source": [
                ts,
                self._s.elasticsearch_message_field,
                self._s.elasticsearch_level_field,
                self._s.elasticsearch_resource_field,
                self._s.elasticsearch_service_field,
            ],
            "query": {
                "bool": {
                    "filter": [
                        term,
                        {
                            "range": {
                                ts: {
                                    "gte": iso_utc(side.start),
                                    "lte": iso_utc(side.end),
                                    "format": "strict_date_optional_time_nanos",
                                }
                            }
                        },
                    ]
                }
            },
        }

    @reports_failures
    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        if self._client is None:
            return CollectorResult.skipped("ERRORREPLAY_ELASTICSEARCH_URL not set")
        term = self.term(error)
        if term is None:
            return CollectorResult.skipped("error has no resource_id or service to select logs by")

        async def fetch(side: Side) -> list[LogLine]:
            assert self._client is not None
            body = await request_json(self._client, "POST", self.path, json=self.body(term, side))
            try:
                return nearest(self._parse(body), side)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise shape_error(exc) from None

        s = self._s
        return await collect_sides(fetch, window, error_time(error), s.log_lines_before, s.log_lines_after)

    def _parse(self, body: Any) -> list[LogLine]:
        s = self._s
        lines = []
        for hit in body["hits"]["hits"]:
            source = hit.get("_source") or {}
            at = parse_timestamp(lookup(source, s.elasticsearch_timestamp_field))
            if at is None and hit.get("sort"):
                at = parse_timestamp(hit["sort"][0])  # the sort value is epoch millis
            if at is None:
                continue
            message = str(lookup(source, s.elasticsearch_message_field) or "")
            level = normalise_level(lookup(source, s.elasticsearch_level_field) or "")
            if level == UNKNOWN_LEVEL:
                level = detect_level({}, message)
            # Label names shared by every log source: the analysis reads `resource_id` and `service`.
            labels = {"index": str(hit.get("_index", ""))}
            for label, path in (
                ("resource_id", s.elasticsearch_resource_field),
                ("service", s.elasticsearch_service_field),
            ):
                value = lookup(source, path)
                if value is not None:
                    labels[label] = str(value)
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


def lookup(source: Mapping[str, Any], path: str) -> Any:
    """A field by dotted path, whether _source nests it (`log: {level}`) or not (`log.level`)."""
    if path in source:
        return source[path]
    parts = path.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        node = source.get(head)
        if isinstance(node, Mapping):
            found = lookup(node, ".".join(parts[i:]))
            if found is not None:
                return found
    return None
