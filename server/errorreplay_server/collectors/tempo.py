"""The error's trace from Tempo (`/api/traces/{trace_id}`), as spans with the failing ones marked.

Tempo answers in OTLP JSON: `{"batches": [...]}` (older releases) or `{"resourceSpans": [...]}`,
each with `scopeSpans` (or the older `instrumentationLibrarySpans`). Ids may be base64 (protobuf
JSON mapping) or hex (OTLP/JSON); enums may be numbers or names. All are accepted.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import httpx

from errorreplay_server.collectors.base import CollectorResult, Window, WindowSpec, reports_failures
from errorreplay_server.collectors.escaping import normalise_trace_id, path_segment
from errorreplay_server.collectors.httpclient import make_client, request_json, shape_error
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import CollectionState, ErrorSnapshot, Span, SpanStatus

_NANOS_PER_MICRO = 1000
# Per-span caps, so one chatty span cannot dominate the stored context. Texts are cut to
# MAX_ATTRIBUTE_CHARS by the enrichment queue, after scrubbing, so a cut never splits a secret
# the scrubber would have recognised whole.
MAX_SPAN_ATTRIBUTES = 32
MAX_ATTRIBUTE_CHARS = 256

_HEX_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
# OTLP status codes: 0 unset, 1 ok, 2 error.
_STATUS = {
    0: SpanStatus.UNSET,
    1: SpanStatus.OK,
    2: SpanStatus.ERROR,
    "STATUS_CODE_UNSET": SpanStatus.UNSET,
    "STATUS_CODE_OK": SpanStatus.OK,
    "STATUS_CODE_ERROR": SpanStatus.ERROR,
}


class TempoCollector:
    name = "tempo"

    def __init__(self, settings: CollectorSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # A trace is fetched whole by id; the window is not sent.
        self.window_spec: WindowSpec = settings.windows.logs
        self._max_spans = settings.max_spans
        headers = {"Accept": "application/json"}
        if settings.tempo_tenant:
            headers["X-Scope-OrgID"] = settings.tempo_tenant
        self._client = (
            make_client(
                settings.tempo_url, timeout_seconds=settings.timeout_seconds, transport=transport, headers=headers
            )
            if settings.tempo_url
            else None
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    @staticmethod
    def path(trace_id: str) -> str | None:
        """The request path, or None when the id is not hex (it is never put in a URL then)."""
        normalised = normalise_trace_id(trace_id)
        return None if normalised is None else f"/api/traces/{path_segment(normalised)}"

    @reports_failures
    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult:
        if self._client is None:
            return CollectorResult.skipped("ERRORREPLAY_TEMPO_URL not set")
        if not error.report.trace_id:
            return CollectorResult.skipped("error has no trace_id")
        path = self.path(error.report.trace_id)
        if path is None:
            return CollectorResult.skipped("trace_id is not 1 to 32 hex digits")
        body = await request_json(self._client, "GET", path, none_on_404=True)
        if body is None:
            return CollectorResult.empty("trace not found")
        try:
            spans = parse_otlp_trace(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise shape_error(exc) from None
        if not spans:
            return CollectorResult.empty("trace has no spans")
        detail = ""
        if len(spans) > self._max_spans:
            detail = f"kept {self._max_spans} of {len(spans)} spans, failing ones first"
            spans.sort(key=lambda s: (not s.failing, s.start_time))
            spans = spans[: self._max_spans]
            spans.sort(key=lambda s: s.start_time)
        return CollectorResult(CollectionState.OK, detail, spans=spans)


def parse_otlp_trace(body: Any) -> list[Span]:
    if "trace" in body and isinstance(body["trace"], dict):  # Tempo's v2 API wraps the trace
        body = body["trace"]
    batches = body.get("batches")
    if batches is None:
        batches = body.get("resourceSpans", [])
    spans = []
    for batch in batches or ():
        resource_attrs = _attributes(batch.get("resource", {}).get("attributes", []))
        service = resource_attrs.get("service.name", "")
        scopes = batch.get("scopeSpans")
        if scopes is None:
            scopes = batch.get("instrumentationLibrarySpans", [])
        for scope in scopes or ():
            for raw in scope.get("spans", []) or ():
                spans.append(_span(raw, service))
    spans.sort(key=lambda s: s.start_time)
    return spans


def _span(raw: dict[str, Any], service: str) -> Span:
    start = int(raw.get("startTimeUnixNano", 0))
    end = int(raw.get("endTimeUnixNano", start))
    status_raw = raw.get("status") or {}
    status = _STATUS.get(status_raw.get("code", 0), SpanStatus.UNSET)
    attributes = _attributes(raw.get("attributes", []))
    return Span(
        trace_id=_id(raw["traceId"]),
        span_id=_id(raw["spanId"]),
        parent_span_id=_id(raw.get("parentSpanId", "")),
        service=service,
        name=str(raw.get("name", "")),
        start_time=start // _NANOS_PER_MICRO,
        duration_us=max(end - start, 0) // _NANOS_PER_MICRO,
        status=status,
        status_message=str(status_raw.get("message", "")),
        failing=status is SpanStatus.ERROR,
        attributes=dict(list(attributes.items())[:MAX_SPAN_ATTRIBUTES]),
    )


def _id(value: Any) -> str:
    """Hex, whichever encoding the id came in."""
    text = str(value or "")
    if not text or _HEX_ID.fullmatch(text):
        return text.lower()
    try:
        return base64.b64decode(text, validate=True).hex()
    except (binascii.Error, ValueError):
        raise ValueError(f"span id is neither hex nor base64: {text[:40]!r}") from None


def _attributes(raw: Any) -> dict[str, str]:
    return {str(a["key"]): _value(a.get("value", {})) for a in raw or ()}


def _value(value: dict[str, Any]) -> str:
    for key in ("stringValue", "intValue", "doubleValue", "boolValue", "bytesValue"):
        if key in value:
            v = value[key]
            return str(v).lower() if isinstance(v, bool) else str(v)
    if "arrayValue" in value:
        return "[" + ", ".join(_value(v) for v in value["arrayValue"].get("values", [])) + "]"
    if "kvlistValue" in value:
        pairs = value["kvlistValue"].get("values", [])
        return "{" + ", ".join(f"{p['key']}={_value(p.get('value', {}))}" for p in pairs) + "}"
    return ""
