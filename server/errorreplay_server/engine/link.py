"""A worker process' side of the writer socket (engine/writer.py).

- WriterLink: calls to the writer, each answered after its COMMIT; and the writer's stream of
  commits, handed to this worker's hub in cursor order, each once. When the writer goes (killed,
  restarting), calls in flight fail UNAVAILABLE (the client retries with its request_id; nothing
  acknowledged is lost), the link reconnects, and the commits made meanwhile are read from the
  store before the live ones, so the hub sees no gap and no duplicate.
- LinkedStore: the Store a worker uses. Reads go to its own read-only store; writes go to the writer.
- RemoteEnricher: waits for, and refreshes, context collected by the writer's enrichment.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

from prometheus_client.core import Metric

from errorreplay_server.domain.errors import StoreUnavailable
from errorreplay_server.domain.model import (
    CaptureOutcome,
    Change,
    Dependency,
    ErrorContext,
    ErrorGroup,
    ErrorSnapshot,
    GroupStatus,
    Micros,
    NewError,
    Resource,
)
from errorreplay_server.engine import frames
from errorreplay_server.store.base import Store
from errorreplay_server.streaming.hub import InProcessHub

log = logging.getLogger("errorreplay.worker")

RECONNECT_SECONDS = (0.05, 0.1, 0.2, 0.5, 1.0)
# Commits read from the store per page after a reconnect.
CATCH_UP_PAGE = 1000


class WriterLink:
    def __init__(self, socket_path: str, reads: Store, worker_index: int) -> None:
        self._path = socket_path
        self._index = worker_index
        # This worker's metric families, for the writer's /metrics (engine/writer.py WorkerMetrics).
        self.metrics: Callable[[], list[Metric]] = list
        self._reads = reads
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._hub: InProcessHub | None = None
        self._delivered: Micros = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def connect(self, timeout: float) -> None:
        """The first connection; StoreUnavailable naming the socket when the writer does not answer."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        await self._open()
                        return
                    except (FileNotFoundError, ConnectionError):
                        await asyncio.sleep(RECONNECT_SECONDS[0])
        except TimeoutError:
            raise StoreUnavailable(f"the writer process does not answer on {self._path}") from None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(self._path)
        self._writer.write(frames.encode((frames.HELLO, self._index)))

    def start(self, hub: InProcessHub | None, after: Micros) -> None:
        """Read the writer's frames from now on, handing `hub` every commit after `after` (where
        the hub started), in order. No hub: the commits reach this worker another way (JetStream)."""
        self._hub = hub
        self._delivered = after
        self._task = asyncio.create_task(self._run(), name="writer-link")

    async def call(self, method: str, *args: Any) -> Any:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise StoreUnavailable("the writer process is restarting; retry")
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        writer.write(frames.encode((frames.CALL, call_id, method, args)))
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
        self._fail_pending("the server is stopping")

    # --- the connection ---------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._closing:
            reader = self._reader
            assert reader is not None
            try:
                while True:
                    self._handle(await frames.read(reader))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            if self._closing:
                return
            log.warning("lost the writer process; calls in flight fail UNAVAILABLE; reconnecting")
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            self._fail_pending("the writer process went away before answering; retry")
            await self._reconnect()
            if self._hub is not None:
                await self._catch_up()

    def _handle(self, frame: tuple[Any, ...]) -> None:
        kind = frame[0]
        if kind == frames.REPLY:
            _, call_id, ok, value = frame
            future = self._pending.get(call_id)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(frames.unpack_error(value))
        elif kind == frames.COMMITTED:
            for snapshot in frame[1]:
                self._deliver(snapshot)
        elif kind == frames.TOPOLOGY and self._hub is not None:
            self._hub.topology_changed()
        elif kind == frames.METRICS and self._writer is not None:
            self._writer.write(frames.encode((frames.METRICS, frame[1], self.metrics())))

    def _deliver(self, snapshot: ErrorSnapshot) -> None:
        if snapshot.received_at <= self._delivered:
            return  # read from the store while catching up
        self._delivered = snapshot.received_at
        if self._hub is not None:
            self._hub.publish(snapshot)

    def _fail_pending(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(StoreUnavailable(why))
        self._pending.clear()

    async def _reconnect(self) -> None:
        for attempt in itertools.count():
            try:
                await self._open()
                log.info("reconnected to the writer process")
                return
            except (FileNotFoundError, ConnectionError):
                await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])

    async def _catch_up(self) -> None:
        """Commits made while the link was down, from the store, before the live ones (which
        wait in the socket meanwhile)."""
        while True:
            try:
                page = await self._reads.errors_after(self._delivered, CATCH_UP_PAGE)
            except StoreUnavailable:
                await asyncio.sleep(RECONNECT_SECONDS[-1])
                continue
            for snapshot in page:
                self._deliver(snapshot)
            if len(page) < CATCH_UP_PAGE:
                return


class LinkedStore:
    """A worker's Store: its own reads, the writer's writes (store/base.py for the contract)."""

    def __init__(self, reads: Store, link: WriterLink) -> None:
        self._reads = reads
        self._link = link

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reads, name)

    async def close(self) -> None:
        await self._link.close()
        await self._reads.close()

    async def capture(self, errors: Sequence[NewError]) -> list[CaptureOutcome]:
        replies = await self._link.call("capture", list(errors))
        outcomes = []
        for item, reply in zip(errors, replies, strict=True):
            if isinstance(reply, CaptureOutcome):
                outcomes.append(reply)
                continue
            # engine/writer.py _capture_reply: the stamps the writer put on this snapshot.
            snapshot = item.snapshot
            snapshot.error_id, snapshot.received_at, snapshot.context.statuses, regression, new_group = reply
            outcomes.append(CaptureOutcome(snapshot, duplicate=False, regression=regression, new_group=new_group))
        return outcomes

    async def update_context(self, error_id: str, context: ErrorContext) -> None:
        await self._link.call("update_context", error_id, context)

    async def update_group_status(self, group_id: str, status: GroupStatus) -> ErrorGroup:
        return cast(ErrorGroup, await self._link.call("update_group_status", group_id, status))

    async def upsert_resources(
        self, resources: Sequence[Resource], dependencies: Sequence[Dependency]
    ) -> tuple[int, int]:
        return cast(tuple[int, int], await self._link.call("upsert_resources", list(resources), list(dependencies)))

    async def record_change(self, change: Change) -> Change:
        return cast(Change, await self._link.call("record_change", change))

    def as_store(self) -> Store:
        return cast(Store, self)


class RemoteEnricher:
    """The writer's enrichment, seen from a worker: the writer stamps the initial context and
    queues each commit itself, so a worker only waits for or refreshes it."""

    def __init__(self, link: WriterLink) -> None:
        self._link = link

    def initial_context(self) -> ErrorContext:
        return ErrorContext()

    def submit(self, snapshot: ErrorSnapshot) -> bool:
        return True

    async def wait_for(self, error_id: str, timeout: float | None) -> bool:
        return bool(await self._link.call("wait_for_context", error_id, timeout))

    async def refresh(self, snapshot: ErrorSnapshot) -> ErrorSnapshot:
        return cast(ErrorSnapshot, await self._link.call("refresh_context", snapshot))
