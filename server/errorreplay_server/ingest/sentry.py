"""The error subset of the Sentry ingestion protocol: envelopes and events onto ErrorReport.

Envelope format (https://develop.sentry.dev/sdk/data-model/envelopes/): a JSON header line, then
items. Each item is a JSON header line (`type`, optional `length`) and a payload: exactly `length`
bytes when the header gives it (then a newline or the end), else everything up to the next newline.

The README (HTTP ingestion: Sentry) has the mapping table; tests/unit/ingest/test_sentry.py tests
it row by row.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from errorreplay_server.domain.errors import InvalidArgument
from errorreplay_server.domain.model import (
    CLIENT_LOG_COLLECTOR,
    ErrorReport,
    LogLine,
    Micros,
    Severity,
    Source,
)
from errorreplay_server.ingest.timestamps import parse_timestamp
from errorreplay_server.settings import Limits

EVENT_ITEM_TYPES = frozenset({"event"})
"""Items that become captured errors. Every other type is accepted, counted and dropped."""
KNOWN_DROPPED_TYPES = frozenset(
    {
        "transaction",
        "session",
        "sessions",
        "client_report",
        "attachment",
        "profile",
        "profile_chunk",
        "check_in",
        "replay_event",
        "replay_recording",
        "user_report",
        "feedback",
        "statsd",
        "metric_meta",
        "span",
        "log",
        "otel_log",
        "trace_metric",
    }
)
"""Dropped item types counted by name in metrics; anything else is counted as `other`."""

LEVEL_SEVERITY: dict[str, Severity] = {
    "fatal": Severity.CRITICAL,
    "critical": Severity.CRITICAL,
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "info": Severity.INFO,
    "log": Severity.INFO,
    "debug": Severity.INFO,
}
"""Sentry `level` to severity. A missing level is Sentry's default, `error`; an unknown one is HIGH."""
DEFAULT_SEVERITY = Severity.HIGH

MAX_BREADCRUMBS = 100
"""The newest breadcrumbs kept per event (Sentry SDKs keep 100 by default)."""
MAX_EXCEPTIONS = 32
MAX_FRAMES_PER_EXCEPTION = 256
CHAIN_SEPARATOR = "\n\nThe above exception led to the next one:\n\n"
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(slots=True)
class EnvelopeItem:
    type: str
    payload: bytes
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Envelope:
    headers: dict[str, Any]
    items: list[EnvelopeItem]


@dataclass(slots=True)
class SentryEvent:
    """One event, mapped: the report, the idempotency key, and the id the SDK expects back."""

    event_id: str
    request_id: str
    report: ErrorReport


def _bad(where: str, why: str) -> InvalidArgument:
    return InvalidArgument.single(where, why)


def json_object(raw: bytes, where: str) -> dict[str, Any]:
    """`raw` as a JSON object, or INVALID_ARGUMENT naming `where` and the parse error's place."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        detail = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else ""
        raise _bad(where, f"is not valid JSON{': ' + detail if detail else ''}") from None
    if not isinstance(value, dict):
        raise _bad(where, "must be a JSON object")
    return value


def parse_envelope(body: bytes) -> Envelope:
    """Split an envelope into its header and items. A bad header or length is INVALID_ARGUMENT."""
    first_end = body.find(b"\n")
    header_line = body if first_end < 0 else body[:first_end]
    if not header_line.strip():
        raise _bad("envelope", "is empty; expected a JSON header line")
    headers = json_object(header_line, "envelope.header")
    items: list[EnvelopeItem] = []
    pos = len(body) if first_end < 0 else first_end + 1
    while pos < len(body):
        where = f"envelope.items[{len(items)}]"
        line_end = body.find(b"\n", pos)
        item_line = body[pos:] if line_end < 0 else body[pos:line_end]
        if not item_line.strip():  # blank lines between items (and a trailing newline) are allowed
            pos = len(body) if line_end < 0 else line_end + 1
            continue
        item_headers = json_object(item_line, f"{where}.header")
        item_type = item_headers.get("type")
        if not isinstance(item_type, str) or not item_type:
            raise _bad(f"{where}.header.type", "is required")
        start = len(body) if line_end < 0 else line_end + 1
        length = item_headers.get("length")
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, int) or length < 0:
                raise _bad(f"{where}.header.length", "must be a whole number of bytes >= 0")
            end = start + length
            if end > len(body):
                raise _bad(
                    f"{where}.header.length",
                    f"is {length} bytes but only {len(body) - start} bytes follow the item header",
                )
            if end < len(body) and body[end : end + 1] != b"\n":
                raise _bad(f"{where}.header.length", f"is {length} bytes but the payload does not end there")
            payload = body[start:end]
            pos = end + 1
        else:
            payload_end = body.find(b"\n", start)
            payload_end = len(body) if payload_end < 0 else payload_end
            payload = body[start:payload_end]
            pos = payload_end + 1
        items.append(EnvelopeItem(item_type, payload, item_headers))
    return Envelope(headers, items)


def normalise_event_id(value: object, where: str) -> str:
    """A Sentry event id as 32 lowercase hex digits (dashes dropped)."""
    if not isinstance(value, str):
        raise _bad(where, "must be a string of 32 hex digits")
    text = value.replace("-", "").lower()
    if len(text) != 32 or not _HEX.match(text):
        raise _bad(where, "must be 32 hex digits (a UUID)")
    return text


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, default=str)[:4096]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _values(container: object) -> list[Any]:
    """Sentry's interfaces come as {"values": [...]} or as a bare list."""
    if isinstance(container, dict):
        container = container.get("values")
    return container if isinstance(container, list) else []


def _frame_line(frame: dict[str, Any]) -> str:
    where = _text(frame.get("filename") or frame.get("abs_path") or frame.get("module")) or "?"
    parts = [f'  File "{where}"']
    if isinstance(frame.get("lineno"), int):
        parts.append(f"line {frame['lineno']}")
    function = _text(frame.get("function"))
    if function:
        parts.append(f"in {function}")
    line = ", ".join(parts)
    source = frame.get("context_line")
    if isinstance(source, str) and source.strip():
        line += "\n    " + source.strip()
    return line


def render_exception(exc: dict[str, Any]) -> str:
    """One exception as a readable trace: its frames oldest call first, then `type: value`.
    Frame variables (`vars`) are never rendered: they hold whatever the program held."""
    frames = [f for f in _values(_object(exc.get("stacktrace")).get("frames")) if isinstance(f, dict)]
    if len(frames) > MAX_FRAMES_PER_EXCEPTION:
        skipped = len(frames) - MAX_FRAMES_PER_EXCEPTION
        frames = frames[-MAX_FRAMES_PER_EXCEPTION:]
        lines = ["Traceback (oldest call first):", f"  ... {skipped} older frames left out"]
    else:
        lines = ["Traceback (oldest call first):"] if frames else []
    lines += [_frame_line(f) for f in frames]
    lines.append(_exception_title(exc))
    return "\n".join(lines)


def _exception_title(exc: dict[str, Any]) -> str:
    kind, value = _text(exc.get("type")), _text(exc.get("value"))
    module = _text(exc.get("module"))
    if module and kind and module not in ("builtins", "__builtin__", "exceptions"):
        kind = f"{module}.{kind}"
    if kind and value:
        return f"{kind}: {value}"
    return kind or value or "(exception without type or value)"


def render_stack_trace(exceptions: list[dict[str, Any]], max_chars: int) -> str:
    """Chained exceptions oldest first, as Sentry orders them. Over `max_chars`, the oldest text
    is cut: the outermost exception, the one that was reported, is kept."""
    text = CHAIN_SEPARATOR.join(render_exception(e) for e in exceptions[-MAX_EXCEPTIONS:])
    if len(text) > max_chars:
        marker = "... (older part of the trace cut)\n"
        text = marker + text[len(text) - (max_chars - len(marker)) :]
    return text


def _message(event: dict[str, Any]) -> str:
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        text = logentry.get("formatted") or logentry.get("message")
        if isinstance(text, str) and text:
            return text
    message = event.get("message")
    if isinstance(message, dict):
        message = message.get("formatted") or message.get("message")
    return message if isinstance(message, str) else ""


def _tags(event: dict[str, Any], limits: Limits) -> dict[str, str]:
    raw = event.get("tags")
    pairs: list[tuple[object, object]] = []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = [(p[0], p[1]) for p in raw if isinstance(p, list | tuple) and len(p) == 2]
    server_name = event.get("server_name")
    if isinstance(server_name, str) and server_name:
        pairs.append(("server_name", server_name))
    tags: dict[str, str] = {}
    for key, value in pairs:
        k = _cut(_text(key), limits.max_tag_key_chars)
        if not k or len(tags) >= limits.max_tags:
            continue
        tags[k] = _cut(_text(value), limits.max_tag_value_chars)
    return tags


def _request_attributes(event: dict[str, Any]) -> dict[str, str]:
    request = event.get("request")
    if not isinstance(request, dict):
        return {}
    url = _text(request.get("url"))
    query = request.get("query_string")
    if isinstance(query, dict | list) and query:
        pairs = query.items() if isinstance(query, dict) else [p for p in query if isinstance(p, list) and len(p) == 2]
        query = urlencode([(_text(k), _text(v)) for k, v in pairs])
    if isinstance(query, str) and query and url and "?" not in url:
        url = f"{url}?{query}"
    out = {}
    if url:
        out["url"] = _cut(url, 2048)
    method = _text(request.get("method"))
    if method:
        out["method"] = _cut(method, 16)
    return out


def _breadcrumb(crumb: dict[str, Any], default_time: Micros) -> LogLine:
    data = _object(crumb.get("data"))
    message = _text(crumb.get("message"))
    if not message and data:
        message = " ".join(f"{k}={_text(v)}" for k, v in list(data.items())[:16])
    labels = {name: _text(crumb[name]) for name in ("category", "type") if crumb.get(name)}
    labels.update({f"data.{k}": _text(v) for k, v in list(data.items())[:16]})
    return LogLine(
        time=parse_timestamp(crumb.get("timestamp")) or default_time,
        level=_text(crumb.get("level")) or "info",
        message=message,
        collector=CLIENT_LOG_COLLECTOR,
        labels=labels,
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _hex_id(value: object, digits: int) -> str:
    text = value.lower() if isinstance(value, str) else ""
    return text if len(text) == digits and _HEX.match(text) else ""


def event_report(
    event: dict[str, Any], project_id: str, limits: Limits, *, fallback_event_id: str = "", now: Micros = 0
) -> SentryEvent:
    """Map one Sentry event onto an ErrorReport (README: HTTP ingestion, the Sentry mapping)."""
    raw_id = event.get("event_id") or fallback_event_id
    event_id = normalise_event_id(raw_id, "event.event_id") if raw_id else uuid.uuid4().hex
    occurred_at = parse_timestamp(event.get("timestamp")) or now
    exceptions = [e for e in _values(event.get("exception")) if isinstance(e, dict)]
    tags = _tags(event, limits)
    if exceptions:
        outermost = exceptions[-1]
        error_type = _text(outermost.get("type"))
        message = _text(outermost.get("value")) or _message(event) or error_type
        stack_trace = render_stack_trace(exceptions, limits.max_stack_trace_chars)
    else:
        error_type = ""
        message = _message(event)
        stack_trace = ""
    if not message:
        message = "(Sentry event without a message)"
    level = event.get("level")
    severity = LEVEL_SEVERITY.get(level.lower(), DEFAULT_SEVERITY) if isinstance(level, str) else DEFAULT_SEVERITY
    trace = _object(_object(event.get("contexts")).get("trace"))
    sdk = _object(event.get("sdk"))
    sentry: dict[str, str] = {"project_id": project_id, "event_id": event_id}
    for name in ("platform", "logger", "transaction"):
        if isinstance(event.get(name), str) and event[name]:
            sentry[name] = _cut(event[name], 256)
    if sdk.get("name"):
        sentry["sdk"] = _cut(f"{_text(sdk.get('name'))}/{_text(sdk.get('version'))}", 128)
    attributes: dict[str, Any] = {"sentry": sentry}
    request = _request_attributes(event)
    if request:
        attributes["request"] = request
    service = tags.get("service", "")
    resource_id = tags.get("resource_id") or service or f"sentry-project-{project_id}"
    fingerprint = event.get("fingerprint")
    parts = (
        [_cut(_text(p), limits.max_id_chars) for p in fingerprint][: limits.max_fingerprint_parts]
        if isinstance(fingerprint, list) and fingerprint and not any("{{" in _text(p) for p in fingerprint)
        else []
    )
    crumbs = [c for c in _values(event.get("breadcrumbs")) if isinstance(c, dict)][-MAX_BREADCRUMBS:]
    report = ErrorReport(
        message=_cut(message, limits.max_message_chars),
        severity=severity,
        source=Source.APPLICATION,
        resource_id=_cut(resource_id, limits.max_id_chars),
        service=_cut(service or f"sentry-project-{project_id}", limits.max_id_chars),
        environment=_cut(_text(event.get("environment")), limits.max_id_chars),
        release=_cut(_text(event.get("release")), limits.max_id_chars),
        error_type=_cut(error_type, limits.max_id_chars),
        stack_trace=stack_trace,
        trace_id=_hex_id(trace.get("trace_id"), 32),
        span_id=_hex_id(trace.get("span_id"), 16),
        occurred_at=occurred_at,
        tags=tags,
        attributes=attributes,
        fingerprint=parts,
        breadcrumbs=[_breadcrumb(c, occurred_at) for c in crumbs],
    )
    return SentryEvent(event_id, request_id_for(project_id, event_id), report)


def request_id_for(project_id: str, event_id: str) -> str:
    """The idempotency key: an SDK retry of the same event is stored once."""
    return f"sentry:{project_id}:{event_id}"


def parse_event(raw: bytes, where: str = "event") -> dict[str, Any]:
    return json_object(raw, where)
