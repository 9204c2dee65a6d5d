"""EnrichmentQueue: collects each captured error's context in the background.

A bounded queue feeds a fixed number of workers. `submit` never waits: when the queue is full it
returns False, and the error's sources are marked FAILED("overloaded") in the background, so a
capture is never slowed by a slow backend. Each job runs every collector concurrently, each
under its own timeout and its backend's circuit breaker, then stores the merged context with
one status (and duration) per source.

Jobs live in memory, but the need for one is durable: an error is stored with every source
PENDING, and stores keep an index of such errors. At start, `resume_pending` queues again the
ones a previous process left behind (oldest first, behind new captures), and marks those older
than the horizon (the backends' retention) FAILED("not collected before restart").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from errorreplay_server.collectors.base import Collector, CollectorResult, error_time
from errorreplay_server.collectors.circuit import CircuitBreaker
from errorreplay_server.collectors.httpclient import timeout_detail
from errorreplay_server.collectors.parsing import truncate
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.collectors.tempo import MAX_ATTRIBUTE_CHARS
from errorreplay_server.domain.errors import DomainError
from errorreplay_server.domain.model import (
    CLIENT_LOG_COLLECTOR,
    CollectionState,
    CollectorStatus,
    ErrorContext,
    ErrorSnapshot,
    LogLine,
    now_micros,
)
from errorreplay_server.store.base import Store

log = logging.getLogger(__name__)

OVERLOADED = "overloaded"
# How many finished jobs' outcomes are remembered for a wait_for that arrives late.
RECENT_OUTCOMES = 10_000
# Errors refused by a full queue wait here to be marked overloaded; past this backlog the store
# is not keeping up either, and they are left PENDING.
OVERLOAD_BACKLOG = 100_000
# Overload marks written concurrently, so the store can group them into few commits.
OVERLOAD_BATCH = 256
NOT_COLLECTED_BEFORE_RESTART = "not collected before restart"
# Pending errors read per store query while resuming after a restart.
RESUME_PAGE = 256


def _unchanged(text: str) -> str:
    return text


@dataclass(slots=True)
class EnrichmentCounters:
    """Monotonic counts for the service's own metrics."""

    queued: int = 0  # accepted by submit
    completed: int = 0  # jobs finished (a context that could not be stored counts in store_failures too)
    overloaded: int = 0  # refused by submit because the queue was full
    store_failures: int = 0  # contexts that could not be stored
    resumed: int = 0  # left PENDING by an earlier process, queued again at start
    expired: int = 0  # left PENDING by an earlier process, older than the horizon: marked FAILED


class EnrichmentQueue:
    def __init__(
        self,
        store: Store,
        collectors: Sequence[Collector],
        *,
        scrub_text: Callable[[str], str] = _unchanged,
        log_line_max_chars: int = 2000,
        workers: int = 4,
        max_queued: int = 10_000,
        timeout_seconds: float = 2.0,
        breaker_failures: int = 5,
        breaker_cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`scrub_text` masks secrets in collected log lines and span texts before they are
        stored (capture/scrubbing.py's scrubber); texts are cut to `log_line_max_chars` (span
        texts to tempo.MAX_ATTRIBUTE_CHARS) after scrubbing. `clock` drives the circuit breakers."""
        if workers < 1 or max_queued < 1:
            raise ValueError("workers and max_queued must be at least 1")
        names = [c.name for c in collectors]
        if len(set(names)) != len(names):
            raise ValueError(f"collector names must be unique: {names}")
        self._store = store
        self._collectors = list(collectors)
        self._scrub = scrub_text
        self._log_line_max_chars = log_line_max_chars
        self._workers = workers
        self._max_queued = max_queued
        self._timeout = timeout_seconds
        self._breakers = {c.name: CircuitBreaker(breaker_failures, breaker_cooldown_seconds, clock) for c in collectors}
        self._queue: asyncio.Queue[ErrorSnapshot] = asyncio.Queue(maxsize=max_queued)
        self._tasks: list[asyncio.Task[None]] = []
        # Errors refused by the full queue, waiting to be marked overloaded in the store.
        # Errors refused by a full queue, with the client's log lines to keep in their context.
        self._overloaded: asyncio.Queue[tuple[str, list[LogLine]]] = asyncio.Queue()
        # error_id -> future resolved with "context stored", for wait_for.
        self._waiters: dict[str, asyncio.Future[bool]] = {}
        # Outcomes of recent jobs, so a wait_for that arrives after the job still gets an answer.
        self._recent: OrderedDict[str, bool] = OrderedDict()
        self._closed = False
        self.counters = EnrichmentCounters()
        self._resume_task: asyncio.Task[None] | None = None
        # Set by workers when the queue is at most half full: resumed jobs never crowd out new
        # captures, which would then be refused as overloaded.
        self._room = asyncio.Event()

    @classmethod
    def from_settings(
        cls,
        store: Store,
        collectors: Sequence[Collector],
        settings: CollectorSettings,
        *,
        scrub_text: Callable[[str], str] = _unchanged,
    ) -> EnrichmentQueue:
        return cls(store, collectors, scrub_text=scrub_text, **queue_options(settings))

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._tasks:
            return
        self._closed = False
        self._tasks = [asyncio.create_task(self._work(), name=f"enrichment-worker-{i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._mark_overloaded(), name="enrichment-overload-marker"))

    async def resume_pending(self, horizon_seconds: float) -> None:
        """Queue again, in the background, the errors an earlier process stored but never
        collected: those that occurred within `horizon_seconds`, oldest first; older ones are
        marked FAILED("not collected before restart"). Call it before captures start, so that
        only errors stored before now are resumed (newer ones are submitted by their capture)."""
        if self._resume_task is not None:
            return
        until = await self._store.latest_received_at()
        cutoff = now_micros() - int(horizon_seconds * 1_000_000)
        self._resume_task = asyncio.create_task(self._resume(until, cutoff), name="enrichment-resume")

    async def _resume(self, until: int, cutoff: int) -> None:
        after = 0
        try:
            while not self._closed:
                page = [
                    s for s in await self._store.pending_context_errors(after, RESUME_PAGE) if s.received_at <= until
                ]
                if not page:
                    break
                after = page[-1].received_at
                expired = [s for s in page if error_time(s) < cutoff]
                for snapshot in page:
                    if error_time(snapshot) >= cutoff:
                        await self._wait_for_room()
                        if self._closed:
                            return
                        self._queue.put_nowait(snapshot)
                        self._waiters.setdefault(snapshot.error_id, asyncio.get_running_loop().create_future())
                        self.counters.resumed += 1
                stored = await asyncio.gather(
                    *(self._store_context(s.error_id, not_collected_before_restart(s.context)) for s in expired)
                )
                self.counters.expired += sum(stored)
        except DomainError as exc:  # the store went away: the rest stays PENDING for the next start
            log.warning("enrichment: resuming pending errors stopped: %s", exc)
        if self.counters.resumed or self.counters.expired:
            log.info(
                "enrichment: %d errors left pending before the restart queued again, %d older ones marked FAILED",
                self.counters.resumed,
                self.counters.expired,
            )

    async def _wait_for_room(self) -> None:
        while not self._closed and self._queue.qsize() >= max(1, self._max_queued // 2):
            self._room.clear()
            await self._room.wait()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Refuse new work, let queued jobs finish for up to `drain_timeout`, then cancel the rest.
        Waiters of jobs that never ran get False. Errors whose job never ran stay PENDING in the
        store, for the next start to resume."""
        self._closed = True
        self._room.set()
        if self._resume_task is not None:
            self._resume_task.cancel()
            await asyncio.gather(self._resume_task, return_exceptions=True)
            self._resume_task = None
        if self._tasks:
            try:
                await asyncio.wait_for(self._drained(), drain_timeout)
            except TimeoutError:
                log.warning(
                    "enrichment: %d jobs and %d overload marks left undone at shutdown",
                    self._queue.qsize(),
                    self._overloaded.qsize(),
                )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        while not self._overloaded.empty():
            self._overloaded.get_nowait()
            self._overloaded.task_done()
        for error_id in list(self._waiters):
            self._resolve(error_id, False)

    async def _drained(self) -> None:
        await self._queue.join()
        await self._overloaded.join()

    # --- the capture side -------------------------------------------------------------------
    def initial_context(self) -> ErrorContext:
        """What a snapshot is stored with at capture: every source PENDING."""
        return self._uniform_context(CollectionState.PENDING, "")

    def overloaded_context(self) -> ErrorContext:
        """What an error refused by a full queue ends with: every source FAILED("overloaded")."""
        return self._uniform_context(CollectionState.FAILED, OVERLOADED)

    def _uniform_context(self, state: CollectionState, detail: str) -> ErrorContext:
        at = 0 if state is CollectionState.PENDING else now_micros()
        return ErrorContext(statuses=[CollectorStatus(c.name, state, detail, 0.0, at) for c in self._collectors])

    def submit(self, snapshot: ErrorSnapshot) -> bool:
        """Queue the error for enrichment without waiting. False when the queue is full (its
        sources are then marked FAILED("overloaded") in the background) or stopped."""
        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        try:
            self._queue.put_nowait(snapshot)
        except asyncio.QueueFull:
            self.counters.overloaded += 1
            if self._overloaded.qsize() < OVERLOAD_BACKLOG:
                self._waiters.setdefault(snapshot.error_id, loop.create_future())
                self._overloaded.put_nowait((snapshot.error_id, client_logs(snapshot.context)))
            return False
        self.counters.queued += 1
        self._waiters.setdefault(snapshot.error_id, loop.create_future())
        return True

    async def wait_for(self, error_id: str, timeout: float | None) -> bool:
        """True once the error's enriched context is stored; False on timeout, for an error that
        was never submitted, or when the context could not be stored."""
        future = self._waiters.get(error_id)
        if future is None:
            return self._recent.get(error_id, False)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return False

    @property
    def depth(self) -> int:
        """Jobs queued and not yet started."""
        return self._queue.qsize()

    def breaker(self, collector_name: str) -> CircuitBreaker:
        return self._breakers[collector_name]

    # --- the work ---------------------------------------------------------------------------
    async def refresh(self, snapshot: ErrorSnapshot) -> ErrorSnapshot:
        """Collect the window again now (ReplayError with refresh_context), store and return the
        snapshot with the new context. A source that fails now but succeeded before keeps its
        earlier data: frozen context must survive the backend's retention."""
        context = keep_earlier_data(snapshot.context, await self.collect(snapshot))
        await self._store.update_context(snapshot.error_id, context)
        return replace(snapshot, context=context)

    async def collect(self, snapshot: ErrorSnapshot) -> ErrorContext:
        """Run every collector concurrently and merge what they return; nothing is stored."""
        at = error_time(snapshot)
        results = await asyncio.gather(*(self._run(c, snapshot, at) for c in self._collectors))
        context = ErrorContext()
        for collector, (result, duration_ms) in zip(self._collectors, results, strict=True):
            context.logs.extend(result.logs)
            context.metrics.extend(result.metrics)
            context.spans.extend(result.spans)
            context.changes.extend(result.changes)
            if result.topology is not None and context.topology is None:
                context.topology = result.topology
            context.statuses.append(
                CollectorStatus(collector.name, result.state, result.detail, duration_ms, now_micros())
            )
        # The client's own lines (breadcrumbs) were stored at capture and are not collected again.
        context.logs.extend(client_logs(snapshot.context))
        context.logs.sort(key=lambda line: line.time)
        return context

    async def _run(self, collector: Collector, snapshot: ErrorSnapshot, at: int) -> tuple[CollectorResult, float]:
        breaker = self._breakers[collector.name]
        permit = breaker.acquire()
        if permit is None:
            return CollectorResult.skipped(breaker.refusal_detail()), 0.0
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                result = await collector.collect(snapshot, collector.window_spec.around(at))
        except TimeoutError:
            result = CollectorResult.failed(timeout_detail(self._timeout))
        except asyncio.CancelledError:
            breaker.release(permit)
            raise
        except DomainError as exc:  # e.g. StoreUnavailable from a store-backed collector
            result = CollectorResult.failed(f"{type(exc).__name__}: {exc}"[:200])
        except Exception as exc:
            log.exception("enrichment: collector %s crashed", collector.name)
            result = CollectorResult.failed(f"internal error: {type(exc).__name__}")
        duration_ms = (time.perf_counter() - started) * 1000
        if result.state is CollectionState.FAILED:
            breaker.failure(permit)
        elif result.state in (CollectionState.OK, CollectionState.EMPTY):
            breaker.success(permit)
        else:
            breaker.release(permit)
        return self._scrubbed(result), duration_ms

    def _scrubbed(self, result: CollectorResult) -> CollectorResult:
        """Mask secrets in collected text, then cut it to size (cutting first could split a
        secret past recognition). If the scrubber fails, the text is dropped, never stored raw."""
        if not (result.logs or result.spans):
            return result
        line_chars = self._log_line_max_chars

        def scrub(text: str, max_chars: int = MAX_ATTRIBUTE_CHARS) -> str:
            return truncate(self._scrub(text), max_chars)

        try:
            logs = [
                replace(
                    line,
                    message=scrub(line.message, line_chars),
                    labels={k: scrub(v) for k, v in line.labels.items()},
                )
                for line in result.logs
            ]
            spans = [
                replace(
                    span,
                    status_message=scrub(span.status_message),
                    attributes={k: scrub(v) for k, v in span.attributes.items()},
                )
                for span in result.spans
            ]
        except Exception as exc:
            log.exception("enrichment: scrubbing failed")
            return CollectorResult.failed(f"scrubbing failed: {type(exc).__name__}")
        return replace(result, logs=logs, spans=spans)

    async def _work(self) -> None:
        while True:
            snapshot = await self._queue.get()
            if self._queue.qsize() < max(1, self._max_queued // 2):
                self._room.set()
            stored = False
            try:
                stored = await self._store_context(snapshot.error_id, await self.collect(snapshot))
                self.counters.completed += 1
            except Exception:
                log.exception("enrichment: job for %s failed", snapshot.error_id)
            finally:
                self._queue.task_done()
            await self._job_done(snapshot.error_id, stored)

    async def _job_done(self, error_id: str, stored: bool) -> None:
        """A job ended; `stored` says whether its context is in the store."""
        self._resolve(error_id, stored)

    async def _mark_overloaded(self) -> None:
        while True:
            batch = [await self._overloaded.get()]
            while len(batch) < OVERLOAD_BATCH and not self._overloaded.empty():
                batch.append(self._overloaded.get_nowait())
            try:
                stored = await asyncio.gather(
                    *(self._store_context(i, replace(self.overloaded_context(), logs=lines)) for i, lines in batch)
                )
                for (error_id, _), ok in zip(batch, stored, strict=True):
                    self._resolve(error_id, ok)
            finally:
                for _ in batch:
                    self._overloaded.task_done()

    async def _store_context(self, error_id: str, context: ErrorContext) -> bool:
        try:
            await self._store.update_context(error_id, context)
        except DomainError as exc:
            self.counters.store_failures += 1
            log.warning("enrichment: cannot store the context of %s: %s", error_id, exc)
            return False
        return True

    def _resolve(self, error_id: str, stored: bool) -> None:
        future = self._waiters.pop(error_id, None)
        if future is not None and not future.done():
            future.set_result(stored)
        self._recent[error_id] = stored
        while len(self._recent) > max(self._max_queued, RECENT_OUTCOMES):
            self._recent.popitem(last=False)


def client_logs(context: ErrorContext) -> list[LogLine]:
    """The log lines the reporting client sent (capture stored them); enrichment keeps them."""
    return [line for line in context.logs if line.collector == CLIENT_LOG_COLLECTOR]


def not_collected_before_restart(context: ErrorContext) -> ErrorContext:
    """The context with each PENDING source marked FAILED("not collected before restart")."""
    at = now_micros()
    statuses = [
        replace(s, state=CollectionState.FAILED, detail=NOT_COLLECTED_BEFORE_RESTART, collected_at=at)
        if s.state is CollectionState.PENDING
        else s
        for s in context.statuses
    ]
    return replace(context, statuses=statuses)


def queue_options(settings: CollectorSettings) -> dict[str, Any]:
    """The EnrichmentQueue arguments that come from the collector settings."""
    return {
        "log_line_max_chars": settings.log_line_max_chars,
        "workers": settings.enrichment_workers,
        "max_queued": settings.enrichment_queue_size,
        "timeout_seconds": settings.timeout_seconds,
        "breaker_failures": settings.breaker_failures,
        "breaker_cooldown_seconds": settings.breaker_cooldown_seconds,
    }


def keep_earlier_data(earlier: ErrorContext, fresh: ErrorContext) -> ErrorContext:
    """The fresh context, except that a source whose fresh attempt is not OK while its earlier
    one was keeps its earlier data and status (with the refresh outcome noted)."""
    before = {s.collector: s for s in earlier.statuses}
    kept: set[str] = set()
    statuses = []
    for status in fresh.statuses:
        old = before.get(status.collector)
        if status.state is not CollectionState.OK and old is not None and old.state is CollectionState.OK:
            kept.add(status.collector)
            note = f"kept from the earlier collection; refresh {status.state.name}: {status.detail}"
            statuses.append(replace(old, detail=note.rstrip(": ")))
        else:
            statuses.append(status)
    merged = replace(fresh, statuses=statuses)
    if not kept:
        return merged
    logs: list[LogLine] = [*fresh.logs, *(line for line in earlier.logs if line.collector in kept)]
    merged.logs = sorted(logs, key=lambda line: line.time)
    # Only one collector produces each of these, so an empty fresh list means it was not OK.
    if not fresh.metrics:
        merged.metrics = earlier.metrics
    if not fresh.spans:
        merged.spans = earlier.spans
    if not fresh.changes:
        merged.changes = earlier.changes
    if fresh.topology is None:
        merged.topology = earlier.topology
    return merged
