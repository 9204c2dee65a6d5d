"""Assembles the service: store, capture pipeline, servicers, health, reflection and metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from errorreplay.v1 import service_pb2, service_pb2_grpc
from errorreplay_server.api.auth import build_interceptors
from errorreplay_server.api.errors import ErrorMappingInterceptor
from errorreplay_server.api.otlp import OTLP_SERVICE_NAMES, OtlpCapture, add_otlp_servicers
from errorreplay_server.api.servicer import ErrorReplayServicer, TopologyServicer
from errorreplay_server.api.tls import server_credentials
from errorreplay_server.capture.enrichment import EnrichmentQueue
from errorreplay_server.capture.scrubbing import SecretScrubber
from errorreplay_server.capture.service import CaptureService
from errorreplay_server.collectors import Collector, build_collectors, close_collectors
from errorreplay_server.dataplane import DataPlane
from errorreplay_server.http.app import HttpListener
from errorreplay_server.ingest.otlp import OtlpAdapter
from errorreplay_server.metrics import RpcMetrics, StateCollector
from errorreplay_server.settings import Settings
from errorreplay_server.store.base import Store
from errorreplay_server.store.factory import open_store
from errorreplay_server.streaming.hub import InProcessHub

log = logging.getLogger("errorreplay")

# Of the shutdown grace period, at most this much is kept for closing enrichment and the store.
CLOSE_RESERVE_SECONDS = 2.0
SERVICE_NAMES = (*(s.full_name for s in service_pb2.DESCRIPTOR.services_by_name.values()), *OTLP_SERVICE_NAMES)


@dataclass
class Enrichment:
    queue: EnrichmentQueue
    collectors: list[Collector]

    async def close(self) -> None:
        await self.queue.stop()
        await close_collectors(self.collectors)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    store: Store
    hub: InProcessHub
    health: health.aio.HealthServicer
    settings: Settings
    metrics: CollectorRegistry
    enrichment: Enrichment | None = None
    http: HttpListener | None = None

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, drain in-flight ones within `grace`, then flush and close the store.

        Part of `grace` is kept for closing: the store interrupts reads still running rather than
        waiting for them (store/sqlite.py close), so the whole stop fits in `grace`."""
        await self.health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.draining()
        # Streams flush what they hold, then end with UNAVAILABLE so subscribers resume elsewhere.
        await self.hub.close()
        drain = None if grace is None else max(0.0, grace - min(CLOSE_RESERVE_SECONDS, grace / 5))
        await self.server.stop(drain)
        if self.http is not None:
            await self.http.stop()
        if self.enrichment is not None:
            await self.enrichment.close()
        await self.store.close()


async def start_server(
    settings: Settings,
    store: Store | None = None,
    *,
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
) -> RunningServer:
    """Start the service. `extra_interceptors` run before the error mapping (auth, rate limits);
    with `credentials` the port is served over TLS."""
    store = store or open_store(settings)
    await store.start()
    scrubber = SecretScrubber.from_env(os.environ)
    hub = InProcessHub(store, settings.hub)
    await hub.start()
    enrichment: Enrichment | None = None
    if settings.enrichment_enabled:
        collectors = build_collectors(settings.collectors, store)
        queue = EnrichmentQueue.from_settings(store, collectors, settings.collectors, scrub_text=scrubber.scrub_text)
        await queue.start()
        enrichment = Enrichment(queue, collectors)
    capture = CaptureService(
        store,
        scrubber,
        settings.limits,
        publisher=hub,
        enricher=enrichment.queue if enrichment else None,
        analysis=settings.analysis,
    )
    await capture.start()
    plane = DataPlane(store, capture, hub, settings.limits, settings.analysis)

    registry = CollectorRegistry()
    registry.register(StateCollector(capture, hub, enrichment.queue if enrichment else None))
    server = grpc.aio.server(
        interceptors=[*extra_interceptors, ErrorMappingInterceptor(RpcMetrics(registry))],
        options=[
            ("grpc.max_receive_message_length", settings.limits.max_receive_message_bytes),
            # A stale server on the same port must make start-up fail, not silently share the port.
            ("grpc.so_reuseport", 0),
        ],
    )
    service_pb2_grpc.add_ErrorReplayServiceServicer_to_server(ErrorReplayServicer(plane), server)
    service_pb2_grpc.add_TopologyServiceServicer_to_server(TopologyServicer(plane), server)
    otlp_adapter = OtlpAdapter(settings.otlp, settings.limits.max_tag_value_chars)
    add_otlp_servicers(server, OtlpCapture(plane, otlp_adapter, settings.limits.max_batch_size))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        port = (
            server.add_secure_port(settings.listen_address, credentials)
            if credentials is not None
            else server.add_insecure_port(settings.listen_address)
        )
    except RuntimeError as exc:
        await store.close()
        raise RuntimeError(f"cannot listen on {settings.listen_address}: {exc}") from exc
    await server.start()
    http = await _start_http(settings, plane, registry, server, store)
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, store, hub, health_servicer, settings, registry, enrichment, http)


async def _start_http(
    settings: Settings, plane: DataPlane, registry: CollectorRegistry, server: grpc.aio.Server, store: Store
) -> HttpListener | None:
    """The HTTP listener (Sentry, Alertmanager, /healthz) when configured; on failure nothing stays open."""
    if not settings.http.enabled:
        return None
    try:
        return await HttpListener.start(
            settings.http, settings.security, settings.limits, plane, registry, settings.shutdown_grace_seconds
        )
    except Exception:
        await server.stop(None)
        await store.close()
        raise


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start_server(
        settings,
        extra_interceptors=build_interceptors(settings.security, settings.otlp),
        credentials=server_credentials(settings.security),
    )
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr="127.0.0.1", registry=running.metrics)
    log.info(
        "errorreplay listening on %s (port %d), store=%s, data_dir=%s",
        settings.listen_address,
        running.port,
        settings.store,
        settings.data_dir,
    )
    if running.http is not None:
        log.info(
            "HTTP (Sentry, Alertmanager, /healthz) on %s (port %d%s)",
            settings.http.address,
            running.http.port,
            ", TLS" if running.http.tls else "",
        )
    log.info("security: %s", settings.security.describe())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight calls for up to %.1f s", settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)
    log.info("stopped")
