"""Text rendering for the `errorreplay` command: pure functions from protobuf messages to strings.

Colour is a parameter, never a global: the caller decides with `use_color` (a tty, and NO_COLOR unset).
Structure uses ASCII only, so output survives any terminal encoding and pastes cleanly.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr

_RESET = "\x1b[0m"
_BOLD = "1"
_DIM = "2"
_RED = "31"
_GREEN = "32"
_YELLOW = "33"
_BLUE = "34"
_MAGENTA = "35"
_CYAN = "36"

_SEVERITY_STYLE: dict[int, tuple[str, ...]] = {
    m.SEVERITY_CRITICAL: (_BOLD, _RED),
    m.SEVERITY_HIGH: (_RED,),
    m.SEVERITY_MEDIUM: (_YELLOW,),
    m.SEVERITY_LOW: (_CYAN,),
    m.SEVERITY_INFO: (_DIM,),
}

_EVENT_STYLE: dict[int, tuple[str, ...]] = {
    m.TIMELINE_EVENT_KIND_ERROR: (_BOLD, _RED),
    m.TIMELINE_EVENT_KIND_RELATED_ERROR: (_RED,),
    m.TIMELINE_EVENT_KIND_CHANGE: (_MAGENTA,),
    m.TIMELINE_EVENT_KIND_LOG: (_DIM,),
    m.TIMELINE_EVENT_KIND_METRIC_ANOMALY: (_YELLOW,),
    m.TIMELINE_EVENT_KIND_SPAN: (_BLUE,),
}


_ERROR_EVENTS = frozenset({m.TIMELINE_EVENT_KIND_ERROR, m.TIMELINE_EVENT_KIND_RELATED_ERROR})

WRAP_WIDTH = 100
"""Prose (explanations, rationales) is wrapped at this width; tables are not."""


class _Stream(Protocol):
    def isatty(self) -> bool: ...


def use_color(stream: _Stream, mode: str = "auto", env: Mapping[str, str] | None = None) -> bool:
    """`always`, `never`, or `auto`: colour only on a tty, and never when NO_COLOR is set."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    env = os.environ if env is None else env
    return not env.get("NO_COLOR") and stream.isatty()


class _Paint:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, *codes: str) -> str:
        if not self.color or not codes or not text:
            return text
        return f"\x1b[{';'.join(codes)}m{text}{_RESET}"

    def heading(self, text: str) -> str:
        return self(text, _BOLD, _CYAN)

    def severity(self, severity: int) -> str:
        return self(severity_name(severity), *_SEVERITY_STYLE.get(severity, ()))


def to_json(message: Message, *, indent: int | None = 2) -> str:
    """The message as JSON with proto field names (`error_id`, not `errorId`)."""
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=indent)


def _label(name: str, prefix: str) -> str:
    return name.removeprefix(prefix)


def severity_name(value: int) -> str:
    return _enum(m.Severity, value, "SEVERITY_")


def _enum(wrapper: Any, value: int, prefix: str) -> str:
    try:
        return _label(str(wrapper.Name(value)), prefix)
    except ValueError:
        return str(value)


def _time(ts: timestamp_pb2.Timestamp, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC).strftime(fmt)


def _offset(ts: timestamp_pb2.Timestamp, anchor: timestamp_pb2.Timestamp) -> str:
    """Time relative to the replayed error, such as `-20m00s` or `+5s`."""
    if not (ts.seconds or ts.nanos) or not (anchor.seconds or anchor.nanos):
        return ""
    delta = round(ts.seconds + ts.nanos / 1e9 - anchor.seconds - anchor.nanos / 1e9)
    if delta == 0:
        return "0s"
    sign = "+" if delta > 0 else "-"
    minutes, seconds = divmod(abs(delta), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{seconds:02d}s"
    return f"{sign}{seconds}s"


def _occurred(snapshot: m.ErrorSnapshot) -> timestamp_pb2.Timestamp:
    return snapshot.report.occurred_at if snapshot.report.HasField("occurred_at") else snapshot.received_at


def _table(rows: Iterable[list[str]]) -> list[str]:
    """Left-aligned columns; the last column is never padded. ANSI codes are not counted."""
    rows = list(rows)
    if not rows:
        return []
    columns = len(rows[0]) - 1
    widths = [max(_visible_len(r[i]) for r in rows) for i in range(columns)]
    out = []
    for row in rows:
        cells = [cell + " " * (widths[i] - _visible_len(cell)) for i, cell in enumerate(row[:columns])]
        out.append("  ".join([*cells, *row[columns:]]).rstrip())
    return out


def _visible_len(text: str) -> int:
    length, i = 0, 0
    while i < len(text):
        if text[i] == "\x1b":
            i = text.find("m", i) + 1 or len(text)
            continue
        length += 1
        i += 1
    return length


def _unless_named(resource_id: str, text: str) -> str:
    return f" ({resource_id})" if resource_id and resource_id not in text else ""


def _wrap(text: str, first: str, rest: str | None = None, first_width: int = WRAP_WIDTH) -> list[str]:
    """Prose wrapped at WRAP_WIDTH, with `first` before the first line and `rest` (spaces) before the others."""
    rest = " " * len(first) if rest is None else rest
    lines = textwrap.wrap(text, width=first_width, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False)
    return lines or [first.rstrip()]


def _indent(lines: Iterable[str], prefix: str = "  ") -> list[str]:
    return [prefix + line if line else line for line in lines]


def error_line(snapshot: m.ErrorSnapshot, *, color: bool = False, note: str = "") -> str:
    """One line per error, for search and watch: time, severity, resource, id, message."""
    paint = _Paint(color)
    report = snapshot.report
    parts = [
        _time(_occurred(snapshot), "%Y-%m-%d %H:%M:%S"),
        paint.severity(report.severity) + " " * max(0, 8 - len(severity_name(report.severity))),
        report.resource_id or "-",
        paint(snapshot.error_id, _DIM),
        _one_line(report.message),
    ]
    if note:
        parts.append(paint(f"[{note}]", _MAGENTA))
    return "  ".join(parts)


def correlation_note(correlation: m.Correlation) -> str:
    """Why a watched error arrived when it did not match the filter itself, such as `correlated: same trace id`."""
    if not correlation.correlated:
        return ""
    reason = _enum(m.CorrelationReason, correlation.reason, "CORRELATION_REASON_")
    return f"correlated: {reason.lower().replace('_', ' ')}"


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def render_snapshot(snapshot: m.ErrorSnapshot, *, color: bool = False) -> str:
    """A stored error: report fields, then a summary of its frozen context."""
    paint = _Paint(color)
    report = snapshot.report
    lines = [
        f"{paint(snapshot.error_id, _BOLD)}  {paint.severity(report.severity)}  {_one_line(report.message)}",
    ]
    fields = [
        ("occurred", _time(_occurred(snapshot))),
        ("received", _time(snapshot.received_at)),
        ("source", _enum(m.Source, report.source, "SOURCE_")),
        (
            "resource",
            " ".join(filter(None, [report.resource_id, f"({report.resource_type})" * bool(report.resource_type)])),
        ),
        ("service", report.service),
        ("environment", report.environment),
        ("release", report.release),
        ("error type", report.error_type),
        ("correlation", report.correlation_id),
        ("trace", " / ".join(filter(None, [report.trace_id, report.span_id]))),
        ("group", snapshot.group_id),
        ("request id", snapshot.request_id),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted(report.tags.items()))),
        ("related", ", ".join(snapshot.related_error_ids)),
        ("affected", ", ".join(snapshot.affected_resource_ids)),
    ]
    lines += _indent(_table([[paint(name, _DIM), value] for name, value in fields if value]))
    ctx = snapshot.context
    if ctx.statuses:
        lines.append(paint.heading("Context"))
        rows = [
            [
                status.collector,
                _enum(m.CollectionState, status.state, "COLLECTION_STATE_"),
                _one_line(status.detail, 100),
            ]
            for status in ctx.statuses
        ]
        lines += _indent(_table(rows))
        counts = f"{len(ctx.logs)} log lines, {len(ctx.metrics)} metric series, {len(ctx.spans)} spans, "
        counts += f"{len(ctx.changes)} changes, {len(ctx.topology.resources)} resources in topology"
        lines += _indent([paint(counts, _DIM)])
    if report.stack_trace:
        lines.append(paint.heading("Stack trace"))
        lines += _indent(report.stack_trace.rstrip("\n").splitlines())
    return "\n".join(lines) + "\n"


def render_replay(replay: rr.ReplayErrorResponse, *, color: bool = False) -> str:
    """The replay as a terminal report: header, timeline, propagation, root cause, recommendations, changes."""
    paint = _Paint(color)
    error = replay.error
    report = error.report
    anchor = _occurred(error)
    where = " / ".join(filter(None, [report.resource_id, report.service, report.environment]))
    lines = [
        f"{paint('Replay of', _BOLD)} {paint(error.error_id, _BOLD)}  {paint.severity(report.severity)}  {where}",
        f"  {_one_line(report.message)}",
        paint(f"  occurred {_time(anchor)}" + (f"  type {report.error_type}" if report.error_type else ""), _DIM),
        "",
    ]
    lines += _context_coverage_lines(replay, paint)
    lines += _timeline_section(replay, anchor, paint)
    lines += _propagation_section(replay, paint)
    lines += _root_cause_section(replay, paint)
    lines += _recommendations_section(replay, paint)
    lines += _changes_section(replay, anchor, paint)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def _context_coverage_lines(replay: rr.ReplayErrorResponse, paint: _Paint) -> list[str]:
    """One warning, before anything else, when the diagnosis had little context to go on."""
    coverage = replay.context_coverage
    if not coverage.limited:
        return []
    text = coverage.summary or f"{len(coverage.missing_sources)} of {coverage.sources} context sources gave nothing."
    return [paint(line, _YELLOW) for line in _wrap(text, "  Limited context: ", "                   ")] + [""]


def _timeline_section(replay: rr.ReplayErrorResponse, anchor: timestamp_pb2.Timestamp, paint: _Paint) -> list[str]:
    count = len(replay.timeline)
    lines = [paint.heading(f"Timeline ({count} event{'s' * (count != 1)})")]
    if not replay.timeline:
        return [*lines, "  (no events)", ""]
    rows = []
    for i, event in enumerate(replay.timeline):
        kind = _enum(m.TimelineEventKind, event.kind, "TIMELINE_EVENT_KIND_")
        this = event.kind == m.TIMELINE_EVENT_KIND_ERROR and event.reference_id == replay.error.error_id
        summary = _one_line(event.summary, 160)
        if event.severity and event.kind in _ERROR_EVENTS:
            summary = f"{paint.severity(event.severity)} {summary}"
        if this:
            summary += paint("  <- this error", _BOLD)
        rows.append(
            [
                paint(f"[{i}]", _DIM),
                _time(event.time, "%H:%M:%S"),
                paint(_offset(event.time, anchor), _DIM),
                paint(kind, *_EVENT_STYLE.get(event.kind, ())),
                event.resource_id or "-",
                summary,
            ]
        )
    return [*lines, *_indent(_table(rows)), ""]


def _propagation_section(replay: rr.ReplayErrorResponse, paint: _Paint) -> list[str]:
    propagation = replay.propagation
    if not propagation.path and not propagation.origin_error_id:
        return []
    origin = propagation.origin_resource_id or "-"
    lines = [paint.heading("Propagation") + paint(f"  origin {origin} ({propagation.origin_error_id})", _DIM)]
    if propagation.path:
        chain = paint(" -> ", _DIM).join(
            paint(step.resource_id, _BOLD, _RED) if i == 0 else step.resource_id
            for i, step in enumerate(propagation.path)
        )
        lines.append(f"  {chain}")
        rows = [
            [
                paint("origin", _RED) if i == 0 else "  then",
                step.resource_id,
                _time(step.occurred_at, "%H:%M:%S"),
                paint(step.error_id, _DIM),
            ]
            for i, step in enumerate(propagation.path)
        ]
        lines += _indent(_table(rows))
    if propagation.explanation:
        lines += _wrap(propagation.explanation, "  ")
    return [*lines, ""]


def _evidence_lines(evidence: Iterable[m.Evidence], timeline: Sequence[m.TimelineEvent], paint: _Paint) -> list[str]:
    """Each piece of evidence, with `[i]` pointing at its timeline entry."""
    out = []
    for item in evidence:
        points = 0 <= item.timeline_index < len(timeline)
        text = item.description or (timeline[item.timeline_index].summary if points else "") or item.reference_id
        out.append(f"- {paint(f'[{item.timeline_index}]', _DIM)} {text}" if points else f"- {text}")
    return out


def _root_cause_section(replay: rr.ReplayErrorResponse, paint: _Paint) -> list[str]:
    if not replay.HasField("root_cause"):
        return []
    root = replay.root_cause
    category = _enum(m.RootCauseCategory, root.category or root.primary_cause.category, "ROOT_CAUSE_CATEGORY_")
    confidence = f"confidence {root.confidence:.2f}"
    lines = [f"{paint.heading('Root cause')}  {paint(category, _BOLD)}  {paint(confidence, _GREEN)}"]
    primary = root.primary_cause
    if primary.summary:
        lines += _wrap(primary.summary + _unless_named(primary.resource_id, primary.summary), "  ")
    evidence = list(root.evidence) or list(primary.evidence)
    if evidence:
        lines.append("  Evidence:")
        lines += _indent(_evidence_lines(evidence, replay.timeline, paint), "    ")
    if root.contributing_factors:
        lines.append("  Contributing factors:")
        for cause in root.contributing_factors:
            name = _enum(m.RootCauseCategory, cause.category, "ROOT_CAUSE_CATEGORY_")
            head = f"    - {name} {paint(f'score {cause.score:.2f}', _DIM)}: "
            text = cause.summary + _unless_named(cause.resource_id, cause.summary)
            lines += _wrap(text, head, "      ", first_width=WRAP_WIDTH - _visible_len(head) + len(head))
            lines += _indent(_evidence_lines(cause.evidence, replay.timeline, paint), "        ")
    return [*lines, ""]


def _recommendations_section(replay: rr.ReplayErrorResponse, paint: _Paint) -> list[str]:
    if not replay.recommendations:
        return []
    lines = [paint.heading("Recommendations")]
    ordered = sorted(replay.recommendations, key=lambda r: r.priority or 1 << 30)
    for n, rec in enumerate(ordered, 1):
        kind = _enum(m.RecommendationKind, rec.kind, "RECOMMENDATION_KIND_")
        target = f" -> {rec.target}" if rec.target else ""
        lines.append(f"  {n}. {paint(rec.title or kind, _BOLD)}  {paint(f'[{kind}{target}]', _DIM)}")
        if rec.rationale:
            lines += _wrap(rec.rationale, "     why: ", "          ")
    return [*lines, ""]


def _changes_section(replay: rr.ReplayErrorResponse, anchor: timestamp_pb2.Timestamp, paint: _Paint) -> list[str]:
    if not replay.related_changes:
        return []
    rows = [
        [
            _time(change.occurred_at, "%Y-%m-%d %H:%M:%S"),
            paint(_offset(change.occurred_at, anchor), _DIM),
            paint(_enum(m.ChangeKind, change.kind, "CHANGE_KIND_"), _MAGENTA),
            change.resource_id,
            change.version or "-",
            " ".join(filter(None, [_one_line(change.description, 120), f"by {change.author}" * bool(change.author)])),
        ]
        for change in replay.related_changes
    ]
    return [paint.heading("Related changes"), *_indent(_table(rows)), ""]


def render_statistics(stats: rr.GetStatisticsResponse, *, color: bool = False) -> str:
    paint = _Paint(color)
    lines = [f"{paint.heading('Errors')}  {stats.total_count}"]
    for title, counts in (
        ("By severity", stats.by_severity),
        ("By source", stats.by_source),
        ("By resource", stats.by_resource),
        ("By resource type", stats.by_resource_type),
        ("By error type", stats.by_error_type),
    ):
        if counts:
            lines.append(paint.heading(title))
            rows = [
                [_label(_label(k, "SEVERITY_"), "SOURCE_"), str(v)]
                for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
            ]
            lines += _indent(_table(rows))
    if stats.top_groups:
        lines.append(paint.heading("Top groups"))
        rows = [
            [str(g.count), _enum(m.ErrorGroupStatus, g.status, "ERROR_GROUP_STATUS_"), paint(g.group_id, _DIM), g.title]
            for g in stats.top_groups
        ]
        lines += _indent(_table(rows))
    return "\n".join(lines) + "\n"
