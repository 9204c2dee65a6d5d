"""Assembles the service: store, capture pipeline, servicers, health, reflection and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from errorreplay.v1 import service_pb2, service_pb2_grpc
from errorreplay_server.analysis.model import ReplayAnalysis
from errorreplay_server.api.auth import build_interceptors
from errorreplay_server.api.errors import ErrorMappingInterceptor
from errorreplay_server.api.otlp import OTLP_SERVICE_NAMES, OtlpCapture, add_otlp_servicers
from errorreplay_server.api.servicer import ErrorReplayServicer, TopologyServicer
from errorreplay_server.api.tls import server_credentials
from errorreplay_server.capture.enrichment import EnrichmentQueue
from errorreplay_server.capture.scrubbing import SecretScrubber
from errorreplay_server.capture.service import CaptureService, Enricher
from errorreplay_server.collectors import Collector, build_collectors, close_collectors
from errorreplay_server.dataplane import DataPlane
from errorreplay_server.domain.addresses import split_host_port
from errorreplay_server.domain.errors import StoreUnavailable
from errorreplay_server.domain.model import ErrorGroup, ErrorSnapshot
from errorreplay_server.engine.link import LinkedStore, RemoteEnricher, WriterLink
from errorreplay_server.http.app import HttpListener
from errorreplay_server.ingest.otlp import OtlpAdapter
from errorreplay_server.metrics import RpcMetrics, StateCollector
from errorreplay_server.notify.metrics import NotifyCollector
from errorreplay_server.notify.notifier import Notifier
from errorreplay_server.notify.outbox import open_outbox
from errorreplay_server.settings import Settings
from errorreplay_server.store.base import Store
from errorreplay_server.store.factory import open_store
from errorreplay_server.streaming.hub import InProcessHub

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

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
    notifier: Notifier | None = None
    nats: NatsClient | None = None

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
        # Captures committed while draining are published too (JetStream: no gap in the stream).
        await self.hub.finish_publishing()
        if self.http is not None:
            await self.http.stop()
        if self.enrichment is not None:
            await self.enrichment.close()
        if self.notifier is not None:
            await self.notifier.stop()
        if self.nats is not None:
            await self.nats.close()
        await self.store.close()


class StartupError(RuntimeError):
    """The server could not start; the message names what failed (and the setting behind it).
    Everything started before the failure has been stopped."""


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """A worker process of a multi-process server (engine/supervisor.py): its writes go to the
    writer process on `writer_socket`, and it shares its ports with the other workers."""

    index: int
    writer_socket: str
    connect_timeout: float = 30.0

    @property
    def health_name(self) -> str:
        """A health service name only this worker serves: a client can tell which one it reached."""
        return f"errorreplay-worker-{self.index}"


async def start_server(
    settings: Settings,
    store: Store | None = None,
    *,
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    worker: WorkerRole | None = None,
) -> RunningServer:
    """Start the service. `extra_interceptors` run before the error mapping (auth, rate limits);
    with `credentials` the port is served over TLS. On failure, what was started is stopped again
    (in reverse order) before the error propagates."""
    async with contextlib.AsyncExitStack() as started:
        running = await _start(settings, store, extra_interceptors, credentials, started, worker)
        started.pop_all()  # success: the running server owns everything now
        return running
    raise AssertionError("unreachable")  # for mypy: the block either returns or raises


async def _start(
    settings: Settings,
    store: Store | None,
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor],
    credentials: grpc.ServerCredentials | None,
    started: contextlib.AsyncExitStack,
    worker: WorkerRole | None = None,
) -> RunningServer:
    link: WriterLink | None = None
    if worker is not None:
        store, link = await _linked_store(settings, store, worker, started)
    else:
        store = store or open_store(settings)
        await store.start()
        started.push_async_callback(store.close)
    scrubber = SecretScrubber.from_settings(settings.scrub)
    hub, nc = await start_hub(settings, store, started)
    enricher: Enricher | None
    if link is not None:
        # Commits reach this hub from the writer, whichever worker took them (or from JetStream,
        # where the writer publishes them); enrichment and notifications run in the writer
        # (engine/writer.py).
        link.start(None if nc is not None else hub, hub.dispatched_through)
        enrichment, notifier = None, None
        enricher = RemoteEnricher(link) if settings.enrichment_enabled else None
    else:
        enrichment = await start_enrichment(settings, store, scrubber, nc, started)
        notifier = build_notifier(settings, enrichment)
        enricher = enrichment.queue if enrichment else None
    capture = CaptureService(
        store,
        scrubber,
        settings.limits,
        publisher=hub if link is None else None,
        enricher=enricher,
        analysis=settings.analysis,
        observer=notifier,
    )
    await capture.start()
    plane = DataPlane(store, capture, hub, settings.limits, settings.analysis)
    if notifier is not None:
        await notifier.start(NotifySource(plane, store))
        started.push_async_callback(notifier.stop)

    registry = CollectorRegistry()
    registry.register(StateCollector(capture, hub, enrichment.queue if enrichment else None))
    if notifier is not None:
        registry.register(NotifyCollector(notifier.counters))
    if link is not None:
        link.metrics = lambda: list(registry.collect())
    server = grpc.aio.server(
        interceptors=[*extra_interceptors, ErrorMappingInterceptor(RpcMetrics(registry))],
        options=[
            ("grpc.max_receive_message_length", settings.limits.max_receive_message_bytes),
            # A stale server on the same port must make start-up fail, not silently share the port;
            # only the workers of one server share theirs (engine/supervisor.py checks it is free).
            ("grpc.so_reuseport", 1 if worker is not None else 0),
        ],
    )
    # Stopped even if never started: otherwise its finaliser runs on a closed event loop.
    started.push_async_callback(server.stop, None)
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
        raise StartupError(
            f"gRPC server cannot listen on {settings.listen_address} (ERRORREPLAY_LISTEN_ADDRESS or serve --address):"
            " the address is in use by another process, or not an address of this host"
        ) from exc
    await server.start()
    http = await _start_http(settings, plane, registry, server, store, shared_port=worker is not None)
    for name in ("", *SERVICE_NAMES, *([worker.health_name] if worker else [])):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, store, hub, health_servicer, settings, registry, enrichment, http, notifier, nc)


def settle_heap() -> None:
    """Called once a serving process has started: moves what start-up allocated (modules, protos,
    the store, the hub) out of the collector's reach, so a full collection walks only what calls
    left alive, a few thousand objects instead of ~40,000 (7-16 ms against 0.15 ms here: it was
    GetError's p99, README "Performance"). Not in start_server: tests start many servers in one
    process, and frozen objects are never collected."""
    gc.collect()
    gc.freeze()


async def start_hub(
    settings: Settings, store: Store, started: contextlib.AsyncExitStack
) -> tuple[InProcessHub, NatsClient | None]:
    """The stream hub, on NATS JetStream when a URL is set (several replicas; then its client too)."""
    hub: InProcessHub
    nc: NatsClient | None = None
    if settings.nats.enabled:
        # Imported only then: nats-py is the `nats` extra.
        try:
            from errorreplay_server.streaming.jetstream import JetStreamHub, connect
        except ImportError as exc:
            raise StartupError(
                f"ERRORREPLAY_NATS_URL is set but the NATS client is missing ({exc}): pip install 'errorreplay[nats]'"
            ) from exc
        try:
            nc = await connect(settings.nats)
        except StoreUnavailable as exc:
            raise StartupError(str(exc)) from exc
        started.push_async_callback(nc.close)
        hub = JetStreamHub(store, nc, settings.nats, settings.hub, settings.analysis)
    else:
        hub = InProcessHub(store, settings.hub, settings.analysis)
    await hub.start()
    started.push_async_callback(hub.finish_publishing)
    started.push_async_callback(hub.close)
    return hub, nc


async def start_enrichment(
    settings: Settings,
    store: Store,
    scrubber: SecretScrubber,
    nc: NatsClient | None,
    started: contextlib.AsyncExitStack,
) -> Enrichment | None:
    """The collectors and the enrichment queue (on JetStream when `nc` is given), with the
    captures a previous run left pending queued again; None when enrichment is off."""
    if not settings.enrichment_enabled:
        return None
    collectors = build_collectors(settings.collectors, store)
    started.push_async_callback(close_collectors, collectors)
    if nc is None:
        queue = EnrichmentQueue.from_settings(store, collectors, settings.collectors, scrub_text=scrubber.scrub_text)
    else:
        from errorreplay_server.capture.jetstream_jobs import JetStreamEnrichmentQueue

        queue = JetStreamEnrichmentQueue.from_nats_settings(
            store, collectors, settings.collectors, nc, settings.nats, scrub_text=scrubber.scrub_text
        )
    await queue.start()
    started.push_async_callback(queue.stop)
    await queue.resume_pending(settings.collectors.enrichment_resume_horizon_seconds)
    return Enrichment(queue, collectors)


@dataclass
class NotifySource:
    """What the notifier reads to compose a message: the replay and the group."""

    plane: DataPlane
    store: Store

    async def replay(self, error_id: str, refresh_context: bool) -> tuple[ErrorSnapshot, ReplayAnalysis]:
        return await self.plane.replay(error_id, refresh_context)

    async def get_group(self, group_id: str) -> ErrorGroup:
        return await self.store.get_group(group_id)


def build_notifier(settings: Settings, enrichment: Enrichment | None) -> Notifier | None:
    """The notifier when rules are configured; its outbox lives in the store's database."""
    if not settings.notify.enabled:
        return None
    return Notifier(settings.notify, open_outbox(settings), enrichment.queue if enrichment else None)


async def _linked_store(
    settings: Settings, store: Store | None, worker: WorkerRole, started: contextlib.AsyncExitStack
) -> tuple[Store, WriterLink]:
    """A worker's store: reads on its own read-only connections, writes through the writer."""
    reads = store or open_store(settings, read_only=True)
    await reads.start()
    started.push_async_callback(reads.close)
    link = WriterLink(worker.writer_socket, reads, worker.index)
    try:
        await link.connect(worker.connect_timeout)
    except StoreUnavailable as exc:
        raise StartupError(str(exc)) from exc
    started.push_async_callback(link.close)
    return LinkedStore(reads, link).as_store(), link


async def _start_http(
    settings: Settings,
    plane: DataPlane,
    registry: CollectorRegistry,
    server: grpc.aio.Server,
    store: Store,
    shared_port: bool = False,
) -> HttpListener | None:
    """The HTTP listener (Sentry, Alertmanager, /healthz) when configured; on failure nothing stays open."""
    if not settings.http.enabled:
        return None
    try:
        return await HttpListener.start(
            settings.http,
            settings.security,
            settings.limits,
            plane,
            registry,
            settings.shutdown_grace_seconds,
            shared_port=shared_port,
        )
    except Exception:
        await server.stop(None)
        await store.close()
        raise


def start_metrics_listener(address: str, registry: CollectorRegistry) -> MetricsListener:
    """Serve /metrics on `address` (host:port) from a daemon thread."""
    from prometheus_client import start_http_server

    host, port = split_host_port(address, "ERRORREPLAY_METRICS_ADDRESS")
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise StartupError(
            f"metrics server cannot listen on {address} (ERRORREPLAY_METRICS_ADDRESS, ERRORREPLAY_METRICS_PORT"
            f" or serve --metrics-address; off disables it): {exc.strerror or exc}"
        ) from exc
    return MetricsListener(httpd, thread)


@dataclass
class MetricsListener:
    httpd: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def log_listening(settings: Settings, port: int, http_port: int | None, metrics: str, model: str = "") -> None:
    """Where the server listens, as one process and the supervisor of several both log it."""
    log.info(
        "errorreplay listening on %s (port %d), store=%s, data_dir=%s, metrics=%s%s",
        settings.listen_address,
        port,
        settings.store,
        settings.data_dir,
        metrics,
        model,
    )
    if http_port is not None:
        tls = settings.security.tls_enabled
        log.info(
            "HTTP (Sentry, Alertmanager, /healthz) on %s (port %d%s)",
            settings.http.address,
            http_port,
            ", TLS" if tls else "",
        )
        if settings.http.console_enabled:
            log.info("web console at %s/", settings.http.console_base_url(tls, http_port))
    log.info("security: %s", settings.security.describe())


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully. Raises StartupError (after stopping
    whatever had started) when a listener or the store cannot start."""
    running = await start_server(
        settings,
        extra_interceptors=build_interceptors(settings.security, settings.otlp),
        credentials=server_credentials(settings.security),
    )
    metrics: MetricsListener | None = None
    try:
        if settings.metrics_address:
            metrics = start_metrics_listener(settings.metrics_address, running.metrics)
    except BaseException:
        await running.stop(0)
        raise
    settle_heap()
    log_listening(
        settings,
        running.port,
        running.http.port if running.http else None,
        f"http://{settings.metrics_address}/metrics" if metrics else "off",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: draining in-flight calls for up to %.1f s", settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)
    if metrics is not None:
        metrics.close()
    log.info("stopped")
