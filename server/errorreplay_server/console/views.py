"""The console's pages. Views call DataPlane only (the same domain calls as the gRPC servicer),
render Jinja2 templates with autoescape on, and send a Content-Security-Policy that allows no
inline script or style: everything a page runs or styles with is under /static/."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from errorreplay_server.analysis.model import ReplayAnalysis, TimelineEventKind
from errorreplay_server.api.errors import status_for
from errorreplay_server.console import drawing
from errorreplay_server.console.session import CSRF_FIELD, Sessions, Viewer
from errorreplay_server.dataplane import DataPlane
from errorreplay_server.domain.errors import DomainError, InvalidArgument
from errorreplay_server.domain.model import (
    MICROS_PER_HOUR,
    MICROS_PER_MINUTE,
    MICROS_PER_SECOND,
    CollectionState,
    ErrorFilter,
    ErrorSnapshot,
    GroupOrder,
    GroupStatus,
    Micros,
    Severity,
    Statistics,
    TimedCount,
    now_micros,
    statistics_buckets,
)
from errorreplay_server.http.errors import HTTP_STATUS

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PAGE_SIZE = 25
LIVE_BACKLOG = 20
LIVE_HEARTBEAT_US = 15 * MICROS_PER_SECOND
SPARKLINE_WINDOW_US = 24 * MICROS_PER_HOUR
WINDOWS: dict[str, tuple[int, int]] = {
    # name: (window, bucket)
    "1h": (MICROS_PER_HOUR, 5 * MICROS_PER_MINUTE),
    "6h": (6 * MICROS_PER_HOUR, 15 * MICROS_PER_MINUTE),
    "24h": (24 * MICROS_PER_HOUR, MICROS_PER_HOUR),
    "7d": (7 * 24 * MICROS_PER_HOUR, 6 * MICROS_PER_HOUR),
}
CHART_SEVERITIES = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO)
ACTIONS = {
    "acknowledge": GroupStatus.ACKNOWLEDGED,
    "resolve": GroupStatus.RESOLVED,
    "mute": GroupStatus.MUTED,
    "reopen": GroupStatus.OPEN,
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = drawing.when
    env.filters["offset"] = drawing.offset
    env.filters["severity"] = lambda s: Severity(s).name if s else "—"
    env.filters["status"] = lambda s: GroupStatus(s).name
    env.filters["state"] = lambda s: CollectionState(s).name
    env.filters["kind"] = lambda k: TimelineEventKind(k).name.lower()
    env.filters["percent"] = lambda x: f"{x * 100:.0f}%"
    return env


@dataclass(frozen=True, slots=True)
class Filters:
    """The query parameters shared by groups, live and the filtered search: SearchErrors' meaning."""

    service: str = ""
    environment: str = ""
    status: str = ""
    severity: str = ""
    text: str = ""

    @classmethod
    def of(cls, request: web.Request) -> Filters:
        q = request.query
        return cls(*(q.get(name, "").strip() for name in ("service", "environment", "status", "severity", "text")))

    @property
    def searches_errors(self) -> bool:
        return bool(self.service or self.environment or self.severity or self.text)

    def error_filter(self) -> ErrorFilter:
        severity = Severity.UNSPECIFIED
        if self.severity:
            try:
                severity = Severity[self.severity.upper()]
            except KeyError:
                raise InvalidArgument.single("severity", "must be INFO, LOW, MEDIUM, HIGH or CRITICAL") from None
        return ErrorFilter(service=self.service, environment=self.environment, min_severity=severity, text=self.text)

    def statuses(self) -> list[GroupStatus]:
        if not self.status:
            return []
        try:
            return [GroupStatus[self.status.upper()]]
        except KeyError:
            raise InvalidArgument.single("status", "must be OPEN, ACKNOWLEDGED, RESOLVED or MUTED") from None

    def query(self, **more: str) -> str:
        values = {name: getattr(self, name) for name in ("service", "environment", "status", "severity", "text")}
        values.update(more)
        return urlencode({k: v for k, v in values.items() if v})


class TtlCache:
    """Computed results reused for `seconds` (http/settings.py ERRORREPLAY_CONSOLE_CACHE_SECONDS),
    at most `max_entries` of them, the oldest dropped first."""

    def __init__(self, seconds: float, max_entries: int = 2000) -> None:
        self._seconds = seconds
        self._max = max_entries
        self._entries: dict[Any, tuple[float, Any]] = {}

    async def get(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await compute()
        if self._seconds > 0:
            self._entries.pop(key, None)
            self._entries[key] = (now + self._seconds, value)
            while len(self._entries) > self._max:
                self._entries.pop(next(iter(self._entries)))
        return value


class Console:
    def __init__(self, plane: DataPlane, sessions: Sessions, cache_seconds: float = 0.0) -> None:
        self._plane = plane
        self._sessions = sessions
        self._env = _environment()
        self._cache = TtlCache(cache_seconds)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.groups)
        app.router.add_get("/groups/{group_id}/sparkline.svg", self.sparkline)
        app.router.add_get("/errors/{error_id}", self.replay)
        app.router.add_post("/groups/{group_id}/status", self.group_action)
        app.router.add_get("/live", self.live)
        app.router.add_get("/live/events", self.live_events)
        app.router.add_get("/statistics", self.statistics)
        app.router.add_get("/signin", self.signin_form)
        app.router.add_post("/signin", self.signin)
        app.router.add_post("/signout", self.signout)
        app.router.add_static("/static/", HERE / "static", append_version=False)

    # --- rendering -------------------------------------------------------------------------
    def _page(
        self, request: web.Request, viewer: Viewer, template: str, status: int = 200, **values: Any
    ) -> web.Response:
        response = web.Response(status=status, content_type="text/html", charset="utf-8")
        csrf = viewer.csrf or self._sessions.new_csrf()
        if not viewer.csrf:
            self._sessions.set_csrf(response, csrf)
        response.headers["Cache-Control"] = "no-store"
        response.text = self._env.get_template(template).render(
            viewer=viewer,
            auth_enabled=self._sessions.auth_enabled,
            csrf=csrf,
            csrf_field=CSRF_FIELD,
            path=request.path_qs,
            **values,
        )
        return response

    def _problem(self, request: web.Request, viewer: Viewer, exc: DomainError) -> web.Response:
        status = status_for(exc)
        http_status = HTTP_STATUS.get(status.code, 500)
        return self._page(
            request, viewer, "problem.html", http_status, title="Cannot show this", message=status.message
        )

    def _gate(self, request: web.Request) -> tuple[Viewer, web.Response | None]:
        """The viewer, and the answer instead of the page when it may not read."""
        viewer = self._sessions.viewer(request)
        if viewer.may_read:
            return viewer, None
        if viewer.signed_in:
            return viewer, self._page(
                request,
                viewer,
                "problem.html",
                403,
                title="Not allowed",
                message="This token lacks the reader role the console needs; sign in with another token.",
            )
        location = "/signin?" + urlencode({"next": request.path_qs})
        return viewer, web.Response(status=303, headers={"Location": location})

    # --- groups ----------------------------------------------------------------------------
    async def groups(self, request: web.Request) -> web.Response:
        viewer, refused = self._gate(request)
        if refused is not None:
            return refused
        filters = Filters.of(request)
        token = request.query.get("page_token", "")
        try:
            if filters.searches_errors:
                page = await self._plane.search(filters.error_filter(), PAGE_SIZE, token)
                return self._page(
                    request,
                    viewer,
                    "groups.html",
                    filters=filters,
                    groups=[],
                    errors=page.items,
                    next_token=page.next_page_token,
                    total=page.total_size,
                    total_capped=page.total_capped,
                    page_token=token,
                )
            groups = await self._plane.list_groups(filters.statuses(), GroupOrder.LAST_SEEN, PAGE_SIZE, token)
        except DomainError as exc:
            return self._problem(request, viewer, exc)
        return self._page(
            request,
            viewer,
            "groups.html",
            filters=filters,
            groups=groups.items,
            errors=[],
            next_token=groups.next_page_token,
            total=groups.total_size,
            total_capped=False,
            page_token=token,
        )

    async def sparkline(self, request: web.Request) -> web.Response:
        """A group's hourly counts over 24 h as a small SVG image: the groups page loads them
        after it renders, so the page does not wait for a statistics query per group."""
        viewer = self._sessions.viewer(request)
        if not viewer.may_read:
            return web.Response(status=401 if not viewer.signed_in else 403)
        group_id = request.match_info["group_id"]

        async def compute() -> list[int]:
            end = now_micros()
            counts = await self._plane.group_timed_counts(group_id, end - SPARKLINE_WINDOW_US, end, MICROS_PER_HOUR)
            return [c.count for c in counts]

        try:
            counts = await self._cache.get(("sparkline", group_id), compute)
        except DomainError as exc:
            return web.Response(status=HTTP_STATUS.get(status_for(exc).code, 500))
        svg = self._env.get_template("sparkline.svg").render(points=drawing.sparkline(counts), counts=counts)
        return web.Response(text=svg, content_type="image/svg+xml", headers={"Cache-Control": "private, max-age=60"})

    async def group_action(self, request: web.Request) -> web.Response:
        viewer = self._sessions.viewer(request)
        form = await request.post()
        if not self._sessions.csrf_ok(request, form.get(CSRF_FIELD)):
            return self._page(
                request,
                viewer,
                "problem.html",
                403,
                title="Refused",
                message="The form's CSRF token does not match this browser's; reload the page and try again.",
            )
        if not viewer.may_act:
            needs = (
                "sign in with a token that has the writer role"
                if viewer.signed_in or self._sessions.auth_enabled
                else ""
            )
            return self._page(
                request,
                viewer,
                "problem.html",
                403 if viewer.signed_in else 401,
                title="Not allowed",
                message="Group actions need the writer role (or admin); " + (needs or "sign in first") + ".",
            )
        action = form.get("action")
        status = ACTIONS.get(action) if isinstance(action, str) else None
        if status is None:
            return self._page(
                request,
                viewer,
                "problem.html",
                400,
                title="Unknown action",
                message="action must be acknowledge, resolve, mute or reopen",
            )
        try:
            await self._plane.update_group(request.match_info["group_id"], status)
        except DomainError as exc:
            return self._problem(request, viewer, exc)
        back = form.get("next")
        location = back if isinstance(back, str) and back.startswith("/") and not back.startswith("//") else "/"
        return web.Response(status=303, headers={"Location": location})

    # --- replay ----------------------------------------------------------------------------
    async def replay(self, request: web.Request) -> web.Response:
        viewer, refused = self._gate(request)
        if refused is not None:
            return refused
        try:
            snapshot, analysis = await self._plane.replay(request.match_info["error_id"], False)
        except DomainError as exc:
            return self._problem(request, viewer, exc)
        return self._page(request, viewer, "replay.html", **replay_values(snapshot, analysis))

    # --- live ------------------------------------------------------------------------------
    async def live(self, request: web.Request) -> web.Response:
        viewer, refused = self._gate(request)
        if refused is not None:
            return refused
        filters = Filters.of(request)
        try:
            recent = await self._plane.search(filters.error_filter(), LIVE_BACKLOG, "")
        except DomainError as exc:
            return self._problem(request, viewer, exc)
        return self._page(request, viewer, "live.html", filters=filters, errors=recent.items)

    async def live_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events from the hub SubscribeErrors reads, with the same filter."""
        viewer = self._sessions.viewer(request)
        if not viewer.may_read:
            return web.Response(status=401 if not viewer.signed_in else 403, text="sign in to the console\n")
        try:
            stream = await self._plane.subscribe(Filters.of(request).error_filter(), False, "", LIVE_HEARTBEAT_US)
        except DomainError as exc:
            return web.Response(status=HTTP_STATUS.get(status_for(exc).code, 500), text=status_for(exc).message)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            async for item in stream.items:
                if item.snapshot is None:
                    await response.write(b": heartbeat\n\n")
                    continue
                payload = json.dumps(_live_item(item.snapshot), separators=(",", ":"))
                await response.write(f"id: {item.cursor}\ndata: {payload}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except DomainError as exc:
            # The hub ends a stream on shutdown or overflow; EventSource reconnects.
            log.info("console live stream ended: %s", type(exc).__name__)
        finally:
            await stream.items.aclose()
        return response

    # --- statistics ------------------------------------------------------------------------
    async def statistics(self, request: web.Request) -> web.Response:
        viewer, refused = self._gate(request)
        if refused is not None:
            return refused
        window_name = request.query.get("window", "24h")
        if window_name not in WINDOWS:
            return self._problem(request, viewer, InvalidArgument.single("window", "must be 1h, 6h, 24h or 7d"))
        window, bucket = WINDOWS[window_name]

        # The chart is one store call, the totals and top groups another; both read the store's
        # hourly rollups for whole hours (the totals ask for hourly buckets, which they do not
        # show, for that). Cached all the same, as every view of a window asks the same.
        async def compute() -> tuple[Micros, Statistics, dict[Severity, list[TimedCount]]]:
            end = now_micros()
            start = end - window
            overall, by_severity = await asyncio.gather(
                self._plane.statistics(start, end, MICROS_PER_HOUR, ErrorFilter(), 10, include_muted=False),
                self._plane.severity_timed_counts(start, end, bucket, include_muted=False),
            )
            return end, overall, by_severity

        try:
            computed_at, overall, by_severity = await self._cache.get(("statistics", window_name), compute)
        except DomainError as exc:
            return self._problem(request, viewer, exc)
        first, n_buckets = statistics_buckets(computed_at - window, computed_at, bucket)
        none = [0] * n_buckets  # a severity without errors in the window
        chart = drawing.stacked_bars(
            [first + i * bucket for i in range(n_buckets)],
            [
                (s.name.lower(), [c.count for c in by_severity[s]] if s in by_severity else none)
                for s in CHART_SEVERITIES
            ],
        )
        return self._page(
            request,
            viewer,
            "statistics.html",
            window_name=window_name,
            windows=list(WINDOWS),
            stats=overall,
            chart=chart,
            severities=CHART_SEVERITIES,
            start=computed_at - window,
            end=computed_at,
        )

    # --- sign-in ---------------------------------------------------------------------------
    async def signin_form(self, request: web.Request) -> web.Response:
        viewer = self._sessions.viewer(request)
        return self._page(request, viewer, "signin.html", next=_local(request.query.get("next", "/")), failed=False)

    async def signin(self, request: web.Request) -> web.Response:
        viewer = self._sessions.viewer(request)
        form = await request.post()
        next_path = _local(form.get("next"))
        if not self._sessions.csrf_ok(request, form.get(CSRF_FIELD)):
            return self._page(
                request, viewer, "signin.html", 403, next=next_path, failed=True, reason="The form expired; try again."
            )
        token = form.get("token")
        roles = self._sessions.token_roles(token.strip() if isinstance(token, str) else "")
        if not self._sessions.auth_enabled:
            return web.Response(status=303, headers={"Location": next_path})
        if roles is None:
            return self._page(request, viewer, "signin.html", 401, next=next_path, failed=True, reason="Unknown token.")
        response = web.Response(status=303, headers={"Location": next_path})
        assert isinstance(token, str)
        self._sessions.sign_in(response, token.strip())
        return response

    async def signout(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not self._sessions.csrf_ok(request, form.get(CSRF_FIELD)):
            return web.Response(status=403, text="CSRF token mismatch\n")
        response = web.Response(status=303, headers={"Location": "/signin"})
        self._sessions.sign_out(response)
        return response


def replay_values(snapshot: ErrorSnapshot, analysis: ReplayAnalysis) -> dict[str, Any]:
    """What replay.html draws: the graph, the charts and the waterfall laid out here."""
    report = snapshot.report
    context = snapshot.context
    dependencies = list(context.topology.dependencies) if context.topology else []
    failing = [e.report.resource_id for e in analysis.related_errors] + [report.resource_id]
    bars, waterfall_height = drawing.waterfall(context.spans)
    return {
        "error": snapshot,
        "report": report,
        "analysis": analysis,
        "graph": drawing.dependency_graph(dependencies, analysis.propagation, report.resource_id, failing),
        "node_width": drawing.NODE_WIDTH,
        "node_height": drawing.NODE_HEIGHT,
        "charts": [drawing.metric_chart(s, report.occurred_at) for s in context.metrics],
        "bars": bars,
        "waterfall_height": waterfall_height,
        "anchor": report.occurred_at,
        "coverage": analysis.context_coverage,
    }


def _local(value: object) -> str:
    """A redirect target on this site only."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def _live_item(snapshot: ErrorSnapshot) -> dict[str, Any]:
    r = snapshot.report
    return {
        "error_id": snapshot.error_id,
        "group_id": snapshot.group_id,
        "time": drawing.when(r.occurred_at),
        "severity": Severity(r.severity).name,
        "service": r.service,
        "resource_id": r.resource_id,
        "message": r.message[:500],
    }
