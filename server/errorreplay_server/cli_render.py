"""Text rendering for the `errorreplay` command: pure functions from protobuf messages to strings.

Colour is a parameter, never a global: the caller decides with `use_color` (a tty, and NO_COLOR unset).
Structure uses ASCII only, so output survives any terminal encoding and pastes cleanly.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
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
"""Prose is wrapped to the terminal's width; this is the width when there is no terminal."""
MIN_WIDTH = 40
STACK_TRACE_LINES = 40
"""A replay shows this many stack trace lines; `errorreplay get ID` shows them all."""
BAR_WIDTH = 40
PROSE_MIN_WIDTH = 40
PROSE_INDENT = " " * 6


def terminal_width() -> int:
    """Columns of the terminal (or $COLUMNS); WRAP_WIDTH when output is not a terminal."""
    return max(MIN_WIDTH, shutil.get_terminal_size((WRAP_WIDTH, 24)).columns)


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
    """Colours, and the width prose is wrapped to: what every section needs to lay itself out."""

    def __init__(self, color: bool, width: int | None = None) -> None:
        self.color = color
        self.width = max(MIN_WIDTH, width) if width else terminal_width()

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


def _wrap(text: str, first: str, rest: str | None = None, width: int = WRAP_WIDTH) -> list[str]:
    """Prose wrapped at `width` visible columns, with `first` before the first line and `rest`
    (spaces) before the others. Escape codes never count, so coloured and plain text wrap alike."""
    rest = " " * _visible_len(first) if rest is None else rest
    lines: list[str] = []
    line, used, words = first, _visible_len(first), 0
    space = ""
    for chunk in re.findall(r"\S+|\s+", " ".join(text.splitlines())):
        if chunk.isspace():
            space = chunk
            continue
        size = _visible_len(chunk)
        if not size:  # escape codes alone: they take no room, and a pending space stays pending
            line += chunk
            continue
        if words and used + len(space) + size > width:
            lines.append(line)
            line, used, words = rest, _visible_len(rest), 0
        if words:
            line, used = line + space, used + len(space)
        line, used, words = line + chunk, used + size, words + 1
    lines.append(line if words else line.rstrip())
    return lines


def _table_with_prose(rows: list[list[str]], width: int) -> list[str]:
    """A table whose last column is prose, wrapped to `width` under its own column; when that
    column would be narrower than PROSE_MIN_WIDTH, the prose goes under the row instead."""
    if not rows:
        return []
    head = _table([[*row[:-1], ""] for row in rows])
    column = max(_visible_len(line) for line in head) + 2
    out: list[str] = []
    for line, row in zip(head, rows, strict=True):
        if width - column >= PROSE_MIN_WIDTH:
            out += _wrap(row[-1], line + " " * (column - _visible_len(line)), " " * column, width)
        else:
            out.append(line.rstrip())
            if row[-1].strip():
                out += _wrap(row[-1], PROSE_INDENT, PROSE_INDENT, width)
    return out


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


def render_replay(replay: rr.ReplayErrorResponse, *, color: bool = False, width: int | None = None) -> str:
    """The replay as a terminal report: header, stack trace, timeline, propagation, root cause,
    recommendations, changes. Prose wraps at `width` (default: the terminal's)."""
    paint = _Paint(color, width)
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
    lines += _stack_trace_section(error, paint)
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
    return [paint(line, _YELLOW) for line in _wrap(text, "  Limited context: ", width=paint.width)] + [""]


def _stack_trace_section(error: m.ErrorSnapshot, paint: _Paint) -> list[str]:
    trace = error.report.stack_trace.rstrip("\n").splitlines()
    if not trace:
        return []
    lines = [paint.heading("Stack trace"), *_indent(trace[:STACK_TRACE_LINES])]
    if len(trace) > STACK_TRACE_LINES:
        more = len(trace) - STACK_TRACE_LINES
        lines.append(paint(f"  ... {more} more lines (errorreplay get {error.error_id})", _DIM))
    return [*lines, ""]


def _timeline_section(replay: rr.ReplayErrorResponse, anchor: timestamp_pb2.Timestamp, paint: _Paint) -> list[str]:
    count = len(replay.timeline)
    lines = [paint.heading(f"Timeline ({count} event{'s' * (count != 1)})")]
    if not replay.timeline:
        return [*lines, "  (no events)", ""]
    rows = []
    for i, event in enumerate(replay.timeline):
        kind = _enum(m.TimelineEventKind, event.kind, "TIMELINE_EVENT_KIND_")
        this = event.kind == m.TIMELINE_EVENT_KIND_ERROR and event.reference_id == replay.error.error_id
        summary = _one_line(event.summary, 1000)
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
    return [*lines, *_indent(_table_with_prose(rows, paint.width - 2)), ""]


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
        lines += _wrap(propagation.explanation, "  ", width=paint.width)
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
        lines += _wrap(primary.summary + _unless_named(primary.resource_id, primary.summary), "  ", width=paint.width)
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
            lines += _wrap(text, head, "      ", paint.width)
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
        lines += _wrap(
            f"{paint(rec.title.strip() or kind, _BOLD)}  {paint(f'[{kind}{target}]', _DIM)}",
            f"  {n}. ",
            width=paint.width,
        )
        rationale = _without_repeats(rec.rationale, replay)
        if rationale:
            lines += _wrap(rationale, "     why: ", "          ", paint.width)
    return [*lines, ""]


def _without_repeats(rationale: str, replay: rr.ReplayErrorResponse) -> str:
    """A recommendation's rationale without the paragraphs the report already shows above it:
    the root cause's summary, a contributing factor's, and the propagation explanation (the API
    keeps them whole, so that each recommendation stands alone there)."""
    root = replay.root_cause
    shown = [(root.primary_cause, "the root cause above")] if root.primary_cause.summary else []
    shown += [(cause, "a contributing factor above") for cause in root.contributing_factors if cause.summary]
    for cause, where in shown:
        role = re.compile(r"(Primary cause|Contributing factor) \(score [0-9.]+\): " + re.escape(cause.summary) + r"\.")
        rationale = role.sub(f"See {where} (score {cause.score:.2f}).", rationale)
        rationale = rationale.replace(cause.summary, where)
    explanation = replay.propagation.explanation
    if explanation:
        rationale = rationale.replace(explanation, "")
    return " ".join(rationale.split())


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
    return [paint.heading("Related changes"), *_indent(_table_with_prose(rows, paint.width - 2)), ""]


def render_statistics(
    stats: rr.GetStatisticsResponse,
    *,
    color: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
    width: int | None = None,
) -> str:
    """Totals, the window they cover (when given), the breakdowns, counts over time as bars, and
    the top groups."""
    paint = _Paint(color, width)
    lines = [f"{paint.heading('Errors')}  {stats.total_count}"]
    if start is not None and end is not None:
        window = f"  from {start.strftime('%Y-%m-%d %H:%M:%S')} to {end.strftime('%Y-%m-%d %H:%M:%S UTC')}"
        lines.append(paint(window + f" ({_span(end - start)})", _DIM))
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
    lines += _timed_counts_section(stats.timed_counts, paint)
    if stats.top_groups:
        lines.append(paint.heading("Top groups"))
        rows = [
            [str(g.count), _enum(m.ErrorGroupStatus, g.status, "ERROR_GROUP_STATUS_"), paint(g.group_id, _DIM), g.title]
            for g in stats.top_groups
        ]
        lines += _indent(_table(rows))
    return "\n".join(lines) + "\n"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _timed_counts_section(counts: Sequence[m.TimedCount], paint: _Paint) -> list[str]:
    """One row per bucket: its start, its count, and a bar scaled to the largest bucket."""
    if not counts:
        return []
    starts = [datetime.fromtimestamp(c.start_time.seconds, UTC) for c in counts]
    step = starts[1] - starts[0] if len(starts) > 1 else timedelta(0)
    fmt = "%Y-%m-%d %H:%M" if starts[-1].date() != starts[0].date() or step >= timedelta(days=1) else "%H:%M"
    if step and step < timedelta(minutes=1):
        fmt += ":%S"
    top = max(c.count for c in counts) or 1
    room = max(10, min(BAR_WIDTH, paint.width - 30))
    heading = "Over time" + (f" ({_span(step)} buckets)" if step else "")
    rows = [
        [at.strftime(fmt), str(c.count), paint("#" * round(room * c.count / top) or ("." if c.count else ""), _RED)]
        for at, c in zip(starts, counts, strict=True)
    ]
    return [paint.heading(heading), *_indent(_table(rows))]


def _group_status(group: m.ErrorGroup, paint: _Paint) -> str:
    status = _enum(m.ErrorGroupStatus, group.status, "ERROR_GROUP_STATUS_")
    return status + (paint(" REGRESSION", _BOLD, _RED) if group.regression else "")


def render_groups(groups: Sequence[m.ErrorGroup], *, color: bool = False, width: int | None = None) -> str:
    """One line per group (lists stay greppable): count, status, worst severity, last seen, id, title."""
    paint = _Paint(color, width)
    if not groups:
        return "(no groups)\n"
    rows = [
        [
            str(g.count),
            _group_status(g, paint),
            paint.severity(g.max_severity),
            _time(g.last_seen, "%Y-%m-%d %H:%M:%S"),
            paint(g.group_id, _DIM),
            _one_line(g.title, 1000),
        ]
        for g in groups
    ]
    return "\n".join(_table(rows)) + "\n"


def render_group(
    group: m.ErrorGroup, recent: Sequence[m.ErrorSnapshot], *, color: bool = False, width: int | None = None
) -> str:
    """A group's fields, then its latest errors."""
    paint = _Paint(color, width)
    lines = [f"{paint(group.group_id, _BOLD)}  {_group_status(group, paint)}  {_one_line(group.title)}"]
    fields = [
        ("count", str(group.count)),
        ("error type", group.error_type),
        ("max severity", paint.severity(group.max_severity) if group.max_severity else ""),
        ("first seen", _time(group.first_seen)),
        ("last seen", _time(group.last_seen)),
        ("resources", ", ".join(group.affected_resource_ids)),
        ("example", group.representative_error_id),
    ]
    lines += _indent(_table([[paint(name, _DIM), value] for name, value in fields if value]))
    if recent:
        lines.append(paint.heading("Latest errors"))
        lines += _indent([error_line(snapshot, color=color) for snapshot in recent])
    return "\n".join(lines) + "\n"


def render_topology(topology: m.Topology, *, color: bool = False, width: int | None = None) -> str:
    """The resources around the root, then each DEPENDS_ON edge as `dependent -> dependency`."""
    paint = _Paint(color, width)
    count = f"{len(topology.resources)} resources, {len(topology.dependencies)} dependencies"
    lines = [f"{paint.heading('Topology of')} {paint(topology.root_resource_id, _BOLD)}  {paint(count, _DIM)}"]
    rows = [
        [
            paint(r.id, _BOLD) if r.id == topology.root_resource_id else r.id,
            r.type or "-",
            r.name or "-",
            ", ".join(f"{k}={v}" for k, v in sorted(r.labels.items())),
        ]
        for r in sorted(topology.resources, key=lambda r: r.id)
    ]
    lines += _indent(_table(rows))
    if topology.dependencies:
        lines.append(paint.heading("Depends on") + paint("  (dependent -> dependency)", _DIM))
        edges = sorted((d.dependent_id, d.dependency_id) for d in topology.dependencies)
        lines += _indent(_table([[a, paint("->", _DIM), b] for a, b in edges]))
    return "\n".join(lines) + "\n"


def render_changes(changes: Sequence[m.Change], *, color: bool = False, width: int | None = None) -> str:
    """One line per change (lists stay greppable), newest first as the server sends them."""
    paint = _Paint(color, width)
    if not changes:
        return "(no changes)\n"
    rows = [
        [
            _time(c.occurred_at, "%Y-%m-%d %H:%M:%S"),
            paint(_enum(m.ChangeKind, c.kind, "CHANGE_KIND_"), _MAGENTA),
            c.resource_id,
            c.version or "-",
            paint(c.change_id, _DIM),
            " ".join(filter(None, [_one_line(c.description, 1000), f"by {c.author}" * bool(c.author)])),
        ]
        for c in changes
    ]
    return "\n".join(_table(rows)) + "\n"
