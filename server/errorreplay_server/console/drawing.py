"""Geometry for the console's inline SVG: the dependency graph of a replay, sparklines, metric
charts and the span waterfall. Only numbers and the original strings come out; the templates
escape every string (Jinja2 autoescape covers SVG text too)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from errorreplay_server.analysis.model import Propagation
from errorreplay_server.domain.model import MICROS_PER_SECOND, Dependency, MetricSeries, Micros, Span

NODE_WIDTH, NODE_HEIGHT = 150, 40
COLUMN_GAP, ROW_GAP, MARGIN = 60, 24, 12


def when(micros: Micros) -> str:
    if not micros:
        return "—"
    return datetime.fromtimestamp(micros / MICROS_PER_SECOND, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def offset(micros: Micros, anchor: Micros) -> str:
    """`-5m 02s`, `+1.250s`: the time relative to the error."""
    delta = micros - anchor
    sign = "-" if delta < 0 else "+"
    seconds = abs(delta) / MICROS_PER_SECOND
    if seconds < 60:
        return f"{sign}{seconds:.3f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{sign}{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours}h {minutes:02d}m"


@dataclass(slots=True)
class Node:
    resource_id: str
    x: int
    y: int
    on_path: bool = False
    origin: bool = False
    failing: bool = False


@dataclass(slots=True)
class Edge:
    dependent_id: str
    dependency_id: str
    x1: int
    y1: int
    x2: int
    y2: int
    on_path: bool = False


@dataclass(slots=True)
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    width: int = 0
    height: int = 0


def dependency_graph(
    dependencies: Iterable[Dependency],
    propagation: Propagation | None,
    error_resource_id: str,
    failing_resource_ids: Iterable[str] = (),
    max_nodes: int = 40,
) -> Graph:
    """Callers on the left, their dependencies to the right (a column per longest distance from a
    resource nothing depends on). The propagation path is drawn along its edges, which the path
    adds when the topology lacks them, and its first step is the origin."""
    path = [step.resource_id for step in propagation.path] if propagation else []
    edges = {(d.dependent_id, d.dependency_id) for d in dependencies}
    # The path runs from the origin (a dependency) to the explained error (a caller).
    path_edges = {(path[i + 1], path[i]) for i in range(len(path) - 1) if path[i + 1] != path[i]}
    edges |= path_edges
    names = set(path) | {error_resource_id} - {""}
    for a, b in edges:
        names.update((a, b))
    keep = sorted(names, key=lambda r: (r not in path and r != error_resource_id, r))[:max_nodes]
    kept = set(keep)
    edges = {(a, b) for a, b in edges if a in kept and b in kept}
    column: dict[str, int] = dict.fromkeys(kept, 0)
    # Longest-path layering, bounded so that a cycle cannot loop forever.
    for _ in range(len(kept)):
        moved = False
        for a, b in sorted(edges):
            if column[b] < column[a] + 1 and column[a] + 1 < len(kept):
                column[b] = column[a] + 1
                moved = True
        if not moved:
            break
    rows: dict[int, int] = {}
    graph = Graph()
    placed: dict[str, Node] = {}
    failing = set(failing_resource_ids) | set(path)
    for rid in sorted(kept, key=lambda r: (column[r], r not in path, r)):
        c = column[rid]
        r = rows.get(c, 0)
        rows[c] = r + 1
        node = Node(
            rid,
            MARGIN + c * (NODE_WIDTH + COLUMN_GAP),
            MARGIN + r * (NODE_HEIGHT + ROW_GAP),
            on_path=rid in path,
            origin=bool(path) and rid == path[0],
            failing=rid in failing,
        )
        placed[rid] = node
        graph.nodes.append(node)
    for a, b in sorted(edges):
        na, nb = placed[a], placed[b]
        graph.edges.append(
            Edge(
                a,
                b,
                na.x + NODE_WIDTH,
                na.y + NODE_HEIGHT // 2,
                nb.x,
                nb.y + NODE_HEIGHT // 2,
                on_path=(a, b) in path_edges,
            )
        )
    graph.width = MARGIN * 2 + (max(column.values(), default=0) + 1) * (NODE_WIDTH + COLUMN_GAP)
    graph.height = MARGIN * 2 + max(rows.values(), default=1) * (NODE_HEIGHT + ROW_GAP)
    return graph


def sparkline(counts: Sequence[int], width: int = 120, height: int = 24) -> str:
    """The `points` of an SVG polyline."""
    if not counts:
        return ""
    top = max(counts) or 1
    step = width / max(1, len(counts) - 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (c / top) * (height - 4):.1f}" for i, c in enumerate(counts))


@dataclass(slots=True)
class Chart:
    name: str
    unit: str
    points: str
    anomalies: list[tuple[float, float, str]]
    error_x: float | None
    low: float
    high: float
    width: int
    height: int


def metric_chart(series: MetricSeries, error_at: Micros, width: int = 320, height: int = 90) -> Chart:
    times = [p.time for p in series.points] + [a.time for a in series.anomalies] + [error_at]
    values = [p.value for p in series.points] + [a.value for a in series.anomalies]
    t0, t1 = min(times), max(times)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    span_t = (t1 - t0) or 1
    span_v = (high - low) or 1.0

    def x(t: Micros) -> float:
        return round(4 + (t - t0) / span_t * (width - 8), 1)

    def y(v: float) -> float:
        return round(height - 4 - (v - low) / span_v * (height - 8), 1)

    points = " ".join(f"{x(p.time)},{y(p.value)}" for p in series.points)
    anomalies = [(x(a.time), y(a.value), a.reason) for a in series.anomalies]
    return Chart(series.name, series.unit, points, anomalies, x(error_at), low, high, width, height)


@dataclass(slots=True)
class Bar:
    span: Span
    x: float
    width: float
    y: int
    depth: int


def waterfall(spans: Sequence[Span], width: int = 600, row: int = 18) -> tuple[list[Bar], int]:
    """Spans in start order, indented by depth under their parent, on one time axis."""
    if not spans:
        return [], 0
    ordered = sorted(spans, key=lambda s: (s.start_time, s.span_id))
    t0 = ordered[0].start_time
    t1 = max(s.start_time + s.duration_us for s in ordered)
    total = (t1 - t0) or 1
    by_id = {s.span_id: s for s in ordered}

    def depth(s: Span) -> int:
        d, seen = 0, {s.span_id}
        while s.parent_span_id in by_id and s.parent_span_id not in seen and d < 20:
            s = by_id[s.parent_span_id]
            seen.add(s.span_id)
            d += 1
        return d

    bars = []
    for i, s in enumerate(ordered):
        x = (s.start_time - t0) / total * width
        w = max(2.0, s.duration_us / total * width)
        bars.append(Bar(s, round(x, 1), round(min(w, width - x), 1), i * row, depth(s)))
    return bars, len(ordered) * row


@dataclass(slots=True)
class StackedBars:
    # (x, y, width, height, series name, count, bucket start)
    rects: list[tuple[float, float, float, float, str, int, Micros]]
    top: int
    width: int
    height: int
    first: Micros
    last: Micros


def stacked_bars(
    starts: Sequence[Micros], series: Sequence[tuple[str, Sequence[int]]], width: int = 720, height: int = 160
) -> StackedBars:
    """One bar per bucket, the series stacked bottom up in the order given."""
    n = len(starts)
    totals = [sum(values[i] for _, values in series if i < len(values)) for i in range(n)]
    top = max(totals, default=0) or 1
    slot = width / max(1, n)
    rects = []
    for i in range(n):
        y = float(height)
        for name, values in series:
            count = values[i] if i < len(values) else 0
            if not count:
                continue
            h = count / top * (height - 4)
            y -= h
            rects.append(
                (round(i * slot + 1, 1), round(y, 1), round(max(1.0, slot - 2), 1), round(h, 1), name, count, starts[i])
            )
    return StackedBars(rects, top, width, height, starts[0] if starts else 0, starts[-1] if starts else 0)
