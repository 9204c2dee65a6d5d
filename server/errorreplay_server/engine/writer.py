"""The writer process: the one owner of the store's writes in a multi-process server.

Workers send prepared captures (validated, scrubbed, fingerprinted: capture/service.py) and the
other writes over a Unix socket (engine/frames.py). The writer stamps each capture's cursor,
commits captures in groups (the store's own batching writer), and answers each call only after
its COMMIT. Every committed capture is then sent to every worker, in commit order, so that each
worker's stream hub fans it out to its own subscribers.

Enrichment and notifications run here: the writer sees every commit first, its enrichment
writes are local, and the durable resume (pending contexts) needs one owner, not N.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from errorreplay_server.capture.scrubbing import SecretScrubber
from errorreplay_server.capture.service import CaptureService
from errorreplay_server.dataplane import DataPlane
from errorreplay_server.domain.errors import DomainError
from errorreplay_server.domain.model import CaptureOutcome, CollectorStatus, ErrorSnapshot, NewError
from errorreplay_server.engine import frames
from errorreplay_server.metrics import StateCollector
from errorreplay_server.notify.metrics import NotifyCollector
from errorreplay_server.notify.notifier import Notifier
from errorreplay_server.server import Enrichment, NotifySource, build_notifier, start_enrichment, start_hub
from errorreplay_server.settings import Settings
from errorreplay_server.store.base import Store
from errorreplay_server.store.factory import open_store

log = logging.getLogger("errorreplay.writer")

# Commits buffered for one worker beyond which the writer drops its connection.
MAX_WORKER_BACKLOG_BYTES = 64 * 1024 * 1024
# The store writes a worker may ask for; everything else a worker reads itself.
STORE_WRITES = frozenset({"update_context", "update_group_status", "upsert_resources", "record_change"})


class CommitBroadcast:
    """Sends each committed capture to every connected worker, in commit order (the capture
    service's ErrorPublisher here)."""

    def __init__(self) -> None:
        self.connections: set[asyncio.StreamWriter] = set()
        self._committed: list[ErrorSnapshot] = []

    def publish(self, snapshot: ErrorSnapshot) -> None:
        if not self._committed:
            # One frame for what one turn of the loop committed, encoded once for every worker.
            asyncio.get_running_loop().call_soon(self._send_committed)
        self._committed.append(snapshot)

    def _send_committed(self) -> None:
        frame = frames.encode((frames.COMMITTED, self._committed))
        self._committed = []
        self.send(frame)

    def send(self, frame: bytes) -> None:
        for writer in list(self.connections):
            if writer.is_closing():
                continue
            if writer.transport.get_write_buffer_size() > MAX_WORKER_BACKLOG_BYTES:
                # A worker that does not read (stopped, or far behind) must not make the writer
                # buffer without bound: drop it; it reconnects and reads what it missed from the store.
                log.warning("a worker is %d bytes behind; disconnecting it", writer.transport.get_write_buffer_size())
                writer.close()
                continue
            writer.write(frame)


@dataclass
class WriterEngine:
    """Serves the workers' calls."""

    store: Store
    capture: CaptureService
    enrichment: Enrichment | None
    broadcast: CommitBroadcast
    notifier: Notifier | None = None
    calls: set[asyncio.Task[None]] = field(default_factory=set)
    # Each connection's worker index (its HELLO frame).
    workers: dict[asyncio.StreamWriter, int] = field(default_factory=dict)
    _metrics_asked: dict[int, asyncio.Future[list[Metric]]] = field(default_factory=dict)
    _server: asyncio.AbstractServer | None = None
    _metric_ids: itertools.count[int] = field(default_factory=itertools.count)

    # --- the socket -----------------------------------------------------------------------------
    async def listen(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a writer that died left it
        self._server = await asyncio.start_unix_server(self._connection, path)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.broadcast.connections.add(writer)
        try:
            while True:
                frame = await frames.read(reader)
                if frame[0] == frames.HELLO:
                    self.workers[writer] = frame[1]
                    continue
                if frame[0] == frames.METRICS:
                    answer = self._metrics_asked.get(frame[1])
                    if answer is not None and not answer.done():
                        answer.set_result(frame[2])
                    continue
                # A task per call: calls that arrive together are committed together. Tasks start
                # in arrival order, so captures are stamped in that order.
                task = asyncio.create_task(self._call(writer, frame))
                self.calls.add(task)
                task.add_done_callback(self.calls.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker has gone; its calls in flight still commit
        finally:
            self.broadcast.connections.discard(writer)
            self.workers.pop(writer, None)
            writer.close()

    async def _call(self, writer: asyncio.StreamWriter, frame: tuple[Any, ...]) -> None:
        _, call_id, method, args = frame
        try:
            reply = (frames.REPLY, call_id, True, await self._dispatch(method, args))
        except Exception as exc:
            if not isinstance(exc, DomainError):
                log.exception("%s from a worker failed", method)
            reply = (frames.REPLY, call_id, False, frames.pack_error(exc))
        if not writer.is_closing():
            writer.write(frames.encode(reply))

    async def _dispatch(self, method: str, args: Sequence[Any]) -> Any:
        if method == "capture":
            (items,) = args
            outcomes = await self.capture.commit(items)
            return [_capture_reply(item, outcome) for item, outcome in zip(items, outcomes, strict=True)]
        if method in STORE_WRITES:
            value = await getattr(self.store, method)(*args)
            if method == "upsert_resources":
                self.broadcast.send(frames.encode((frames.TOPOLOGY,)))
            return value
        queue = self.enrichment.queue if self.enrichment is not None else None
        if method == "wait_for_context":
            return await queue.wait_for(*args) if queue is not None else False
        if method == "refresh_context":
            return await queue.refresh(*args) if queue is not None else args[0]
        raise ValueError(f"unknown writer call {method!r}")

    def metrics(self) -> CollectorRegistry:
        """The server's /metrics: enrichment and notifications from here, and every worker's own
        series (calls, captures, streams, HTTP) with a `worker` label."""
        registry = CollectorRegistry()
        registry.register(StateCollector(None, None, self.enrichment.queue if self.enrichment else None))
        if self.notifier is not None:
            registry.register(NotifyCollector(self.notifier.counters))
        registry.register(WorkerMetrics(self, asyncio.get_running_loop()))
        return registry

    async def worker_metrics(self, timeout: float) -> list[tuple[int, list[Metric]]]:
        """Each connected worker's metric families; a worker that does not answer in time is left out."""
        asked: dict[int, tuple[int, asyncio.Future[list[Metric]]]] = {}
        loop = asyncio.get_running_loop()
        for writer, index in list(self.workers.items()):
            if not writer.is_closing():
                request_id = next(self._metric_ids)
                asked[request_id] = (index, loop.create_future())
                self._metrics_asked[request_id] = asked[request_id][1]
                writer.write(frames.encode((frames.METRICS, request_id)))
        try:
            if asked:
                await asyncio.wait([f for _, f in asked.values()], timeout=timeout)
        finally:
            for request_id in asked:
                self._metrics_asked.pop(request_id, None)
        return [(index, f.result()) for index, f in asked.values() if f.done() and not f.cancelled()]

    async def stop(self) -> None:
        """Refuse new connections, finish the calls in hand (their replies still go out)."""
        if self._server is not None:
            self._server.close()
        if self.calls:
            await asyncio.gather(*list(self.calls), return_exceptions=True)
        for writer in list(self.broadcast.connections):
            writer.close()


# How long a scrape waits for the workers' metrics.
WORKER_METRICS_SECONDS = 2.0


class WorkerMetrics(Collector):
    """Collected in the metrics listener's thread: asks the workers on the writer's loop, then
    merges each family's samples from every worker, labelled `worker`."""

    def __init__(self, engine: WriterEngine, loop: asyncio.AbstractEventLoop) -> None:
        self._engine = engine
        self._loop = loop

    def collect(self) -> Iterator[Metric]:
        asked = asyncio.run_coroutine_threadsafe(self._engine.worker_metrics(WORKER_METRICS_SECONDS), self._loop)
        try:
            answers = asked.result(WORKER_METRICS_SECONDS + 1.0)
        except Exception:
            log.warning("the workers' metrics did not come in time; this scrape has the writer's only")
            return
        merged: dict[str, Metric] = {}
        for index, families in sorted(answers, key=lambda a: a[0]):
            for family in families:
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                into.samples += [s._replace(labels={**s.labels, "worker": str(index)}) for s in family.samples]
        yield from merged.values()


# A new error's reply: what the writer set on the worker's snapshot, and the outcome's flags.
NewErrorReply = tuple[str, int, list[CollectorStatus], bool, bool]


def _capture_reply(item: NewError, outcome: CaptureOutcome) -> CaptureOutcome | NewErrorReply:
    """The worker holds the snapshot it sent: a new error is answered with its stamps only. A
    duplicate (or a capture an earlier, lost commit stored) is answered with the stored one."""
    s = outcome.snapshot
    if outcome.duplicate or s is not item.snapshot:
        return outcome
    return (s.error_id, s.received_at, s.context.statuses, outcome.regression, outcome.new_group)


async def start_writer(settings: Settings, socket_path: str, started: contextlib.AsyncExitStack) -> WriterEngine:
    """The store, enrichment, notifications and the workers' socket, stopped in reverse order by
    `started`. Raises with a message naming what failed."""
    store = open_store(settings)
    await store.start()
    started.push_async_callback(store.close)
    scrubber = SecretScrubber.from_settings(settings.scrub)
    # The hub: commits go to the workers over their sockets, or to JetStream, whose stream every
    # worker of every replica consumes. Its own subscribers are none: the workers serve streams.
    hub, nc = await start_hub(settings, store, started)
    enrichment = await start_enrichment(settings, store, scrubber, nc, started)
    notifier = build_notifier(settings, enrichment)
    broadcast = CommitBroadcast()
    capture = CaptureService(
        store,
        scrubber,
        settings.limits,
        publisher=broadcast if nc is None else hub,
        enricher=enrichment.queue if enrichment else None,
        analysis=settings.analysis,
        observer=notifier,
    )
    engine = WriterEngine(store, capture, enrichment, broadcast, notifier)
    await capture.start()
    if notifier is not None:
        # Replays for notification messages: a data plane over this process' store.
        plane = DataPlane(store, capture, hub, settings.limits, settings.analysis)
        await notifier.start(NotifySource(plane, store))
        started.push_async_callback(notifier.stop)
    await engine.listen(socket_path)
    started.push_async_callback(engine.stop)
    return engine
