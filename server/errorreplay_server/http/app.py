"""The HTTP listener: routes, middlewares, and its start and stop in the server's event loop.

Routes:
- `GET /healthz`: 200 `{"status": "serving"}`; 503 once the server is shutting down.
- `POST /api/<project_id>/envelope/` and `POST /api/<project_id>/store/`: Sentry ingestion.
- `POST /alertmanager/webhook`: Alertmanager's webhook (payload version 4).
- The web console (console/views.py: `/`, `/errors/<id>`, `/live`, `/statistics`, `/static/`)
  unless ERRORREPLAY_CONSOLE=off.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from errorreplay_server.api.ratelimit import TokenBucketLimiter
from errorreplay_server.capture.service import CaptureRequest
from errorreplay_server.console.session import Sessions
from errorreplay_server.console.views import Console, security_headers
from errorreplay_server.dataplane import DataPlane
from errorreplay_server.domain.errors import DomainError, InvalidArgument, NotFound, ResourceExhausted
from errorreplay_server.domain.model import CaptureOutcome, ErrorReport, GroupStatus, now_micros
from errorreplay_server.http.auth import BearerAuth, HttpCaller, SentryKeyring
from errorreplay_server.http.body import read_body
from errorreplay_server.http.errors import domain_response, error_middleware, retry_after_seconds
from errorreplay_server.http.metrics import HttpMetrics
from errorreplay_server.http.settings import HttpSettings
from errorreplay_server.ingest import alertmanager, sentry
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.settings import Limits

log = logging.getLogger(__name__)

ENVELOPE_ROUTE = "/api/{project_id}/envelope/"
STORE_ROUTE = "/api/{project_id}/store/"
WEBHOOK_ROUTE = "/alertmanager/webhook"
HEALTH_ROUTE = "/healthz"
CONSOLE_FORM_MAX_BYTES = 16 * 1024


class Ingestion:
    """The handlers. They authenticate, charge the rate limit, read the body with its limits, hand
    the payload to an adapter (../ingest) and the reports to the one capture path (DataPlane)."""

    def __init__(
        self,
        plane: DataPlane,
        settings: HttpSettings,
        security: SecuritySettings,
        limits: Limits,
        metrics: HttpMetrics,
    ) -> None:
        self._plane = plane
        self._settings = settings
        self._limits = limits
        self._metrics = metrics
        self._keyring = SentryKeyring(settings.all_sentry_keys, security.auth_enabled)
        self._bearer = BearerAuth(security)
        self._limiter = (
            TokenBucketLimiter(security.rate_limit_per_second, security.effective_burst)
            if security.rate_limit_enabled
            else None
        )
        self.serving = True

    # --- shared steps ---------------------------------------------------------------------------
    def _charge(self, caller: HttpCaller) -> HttpCaller:
        if self._limiter is None:
            return caller
        wait = self._limiter.take(caller.key, 1)
        if wait:
            raise ResourceExhausted(
                f"rate limit: {self._limiter.rate:g} requests/s with a burst of {self._limiter.burst} per caller; "
                f"retry in {wait:.3f} s",
                retry_after_seconds=wait,
            )
        return caller

    async def _body(self, request: web.Request) -> bytes:
        return await read_body(request, self._settings.max_body_bytes, self._settings.max_decompressed_bytes)

    # --- health ---------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        if not self.serving:
            return web.json_response({"status": "shutting_down"}, status=503)
        return web.json_response({"status": "serving"})

    # --- Sentry ---------------------------------------------------------------------------------
    async def sentry_envelope(self, request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        try:
            caller = self._charge(self._keyring.authenticate(request, project_id))
        except ResourceExhausted as exc:
            return _sentry_rate_limited(exc)
        envelope = sentry.parse_envelope(await self._body(request))
        header_id = envelope.headers.get("event_id")
        events: list[sentry.SentryEvent] = []
        now = now_micros()
        for i, item in enumerate(envelope.items):
            if item.type not in sentry.EVENT_ITEM_TYPES:
                kind = item.type if item.type in sentry.KNOWN_DROPPED_TYPES else "other"
                self._metrics.sentry_items.labels(kind, "dropped").inc()
                continue
            try:
                payload = sentry.parse_event(item.payload, f"envelope.items[{i}]")
                events.append(
                    sentry.event_report(payload, project_id, self._limits, fallback_event_id=_str(header_id), now=now)
                )
            except InvalidArgument:
                self._metrics.sentry_items.labels("event", "rejected").inc()
                raise
        await self._capture_events(events, caller)
        reply_id = events[0].event_id if events else _str(header_id).replace("-", "")
        return web.json_response({"id": reply_id} if reply_id else {})

    async def sentry_store(self, request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        try:
            caller = self._charge(self._keyring.authenticate(request, project_id))
        except ResourceExhausted as exc:
            return _sentry_rate_limited(exc)
        try:
            event = sentry.event_report(
                sentry.parse_event(await self._body(request)), project_id, self._limits, now=now_micros()
            )
        except InvalidArgument:
            self._metrics.sentry_items.labels("event", "rejected").inc()
            raise
        await self._capture_events([event], caller)
        return web.json_response({"id": event.event_id})

    async def _capture_events(self, events: list[sentry.SentryEvent], caller: HttpCaller) -> None:
        # One at a time (an envelope holds one event in practice), so a refusal names `error.<field>`.
        for event in events:
            try:
                outcome = await self._plane.capture(_request(event.report, event.request_id, caller), None)
            except DomainError:
                self._metrics.sentry_items.labels("event", "rejected").inc()
                raise
            self._metrics.sentry_items.labels("event", "duplicate" if outcome.duplicate else "captured").inc()

    # --- Alertmanager ---------------------------------------------------------------------------
    async def alertmanager_webhook(self, request: web.Request) -> web.Response:
        caller = self._charge(self._bearer.authenticate(request))
        payload = sentry.json_object(await self._body(request), "notification")
        alerts = alertmanager.parse_notification(
            payload, self._limits, self._settings.alertmanager_resource_labels, now_micros()
        )
        firing = [a for a in alerts if not a.resolved]
        counts = {"captured": 0, "duplicate": 0, "resolved": 0, "unknown_group": 0}
        failure: DomainError | None = None
        if firing:
            results = await self._plane.capture_batch([_request(a.report, a.request_id, caller) for a in firing], None)
            for result in results:
                if isinstance(result, CaptureOutcome):
                    outcome = "duplicate" if result.duplicate else "captured"
                    counts[outcome] += 1
                    self._metrics.alerts.labels("firing", outcome).inc()
                else:
                    self._metrics.alerts.labels("firing", "rejected").inc()
                    failure = failure or result
        for alert in alerts:
            if not alert.resolved:
                continue
            try:
                await self._plane.update_group(self._plane.group_id_of(alert.report), GroupStatus.RESOLVED)
                outcome = "resolved"
            except NotFound:
                outcome = "unknown_group"
            counts[outcome] += 1
            self._metrics.alerts.labels("resolved", outcome).inc()
        if failure is not None:
            raise failure
        return web.json_response({"alerts": len(alerts), **counts})


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _sentry_rate_limited(exc: ResourceExhausted) -> web.Response:
    # Sentry SDKs honour X-Sentry-Rate-Limits (retry_after:categories:scope); no category means all.
    seconds = retry_after_seconds(exc)
    return domain_response(exc, {"Retry-After": str(seconds), "X-Sentry-Rate-Limits": f"{seconds}::key"})


def build_app(ingestion: Ingestion, metrics: HttpMetrics, console: Console | None = None) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics.requests.labels(route, str(response.status)).inc()
        return response

    # Bodies are read by read_body, with its own limits; aiohttp's whole-body cap is not used.
    middlewares = [count, error_middleware] + ([security_headers] if console is not None else [])
    # The console's forms are small; the ingestion routes read bodies with read_body instead.
    app = web.Application(middlewares=middlewares, client_max_size=CONSOLE_FORM_MAX_BYTES if console else 1)
    app.router.add_get(HEALTH_ROUTE, ingestion.health)
    app.router.add_post(ENVELOPE_ROUTE, ingestion.sentry_envelope)
    app.router.add_post(STORE_ROUTE, ingestion.sentry_store)
    app.router.add_post(WEBHOOK_ROUTE, ingestion.alertmanager_webhook)
    if console is not None:
        console.add_routes(app)
    return app


def ssl_context(security: SecuritySettings) -> ssl.SSLContext | None:
    """TLS from the gRPC settings: the same certificate, and client certificates when mTLS is on."""
    if not security.tls_enabled:
        return None
    assert security.tls_cert_file is not None and security.tls_key_file is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(security.tls_cert_file, security.tls_key_file)
    if security.tls_client_ca_file is not None:
        context.load_verify_locations(security.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass
class HttpListener:
    runner: web.AppRunner
    ingestion: Ingestion
    port: int
    tls: bool

    @classmethod
    async def start(
        cls,
        settings: HttpSettings,
        security: SecuritySettings,
        limits: Limits,
        plane: DataPlane,
        registry: CollectorRegistry,
        shutdown_grace_seconds: float = 10.0,
        *,
        shared_port: bool = False,
    ) -> HttpListener:
        """shared_port: the workers of one multi-process server listen on the same port
        (SO_REUSEPORT); otherwise a taken port fails start-up."""
        metrics = HttpMetrics(registry)
        ingestion = Ingestion(plane, settings, security, limits, metrics)
        context = ssl_context(security)
        console = (
            Console(plane, Sessions(security, context is not None), settings.console_cache_seconds)
            if settings.console
            else None
        )
        # auto_decompress off: read_body decompresses with a cap (aiohttp would inflate it all).
        runner = web.AppRunner(
            build_app(ingestion, metrics, console),
            access_log=None,
            auto_decompress=False,
            shutdown_timeout=shutdown_grace_seconds,
        )
        await runner.setup()
        host, port = settings.host_port
        site = web.TCPSite(runner, host, port, ssl_context=context, reuse_port=shared_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise RuntimeError(f"cannot listen for HTTP on {settings.address}: {exc}") from exc
        bound = runner.addresses[0][1] if runner.addresses else port
        return cls(runner, ingestion, int(bound), context is not None)

    def draining(self) -> None:
        """/healthz answers 503 from now on, so load balancers move away before the port closes."""
        self.ingestion.serving = False

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish within the grace."""
        self.draining()
        await self.runner.shutdown()
        await self.runner.cleanup()


def _request(report: ErrorReport, request_id: str, caller: HttpCaller) -> CaptureRequest:
    """Request ids scoped to the caller, as on the gRPC port (api/auth.py scoped_to_caller). The
    replies here carry ids only, never a stored snapshot."""
    return CaptureRequest(report, request_id, idempotency_scope=caller.scope, caller_may_read=False)
