"""Enrichment jobs on a NATS JetStream work queue, shared by every replica (README: Deployment).

A capture publishes its error id to the jobs stream (work-queue retention: a message is gone once
acknowledged). Every replica pulls from one durable consumer, never more jobs than it has workers,
and runs them with EnrichmentQueue's workers. A job is acknowledged once its context is stored;
a replica that dies holding jobs has them delivered again after the ack wait, to whichever replica
pulls next. The delivery numbered `job_max_deliver` marks the error FAILED instead of running
again, so no error stays PENDING for ever. A finished job is announced on a core NATS subject, so
`wait_for_context` returns on the replica that captured the error whichever replica ran it; the
store is checked too, in case that announcement was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api as js_api
from nats.js.errors import FetchTimeoutError

from errorreplay_server.capture.enrichment import (
    EnrichmentQueue,
    _unchanged,
    not_collected_before_restart,
    queue_options,
)
from errorreplay_server.collectors.base import Collector, error_time
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.errors import DomainError, NotFound
from errorreplay_server.domain.model import CollectionState, ErrorContext, ErrorSnapshot, now_micros
from errorreplay_server.store.base import Store
from errorreplay_server.store.codec import context_pending
from errorreplay_server.streaming.jetstream import PUBLISH_RETRY_SECONDS, PUBLISH_TIMEOUT_SECONDS, ensure_stream
from errorreplay_server.streaming.nats_settings import NatsSettings

log = logging.getLogger(__name__)

# How often wait_for looks at the store while it waits for the job's announcement.
STORE_CHECK_SECONDS = 1.0
# A job whose context could not be stored is delivered again after this delay.
RETRY_DELAY_SECONDS = 1.0


def abandoned(context: ErrorContext, deliveries: int) -> ErrorContext:
    """The context with each PENDING source marked FAILED: its job was delivered too many times."""
    at = now_micros()
    detail = f"enrichment job abandoned after {deliveries} deliveries (replicas died or the store failed)"
    statuses = [
        replace(s, state=CollectionState.FAILED, detail=detail, collected_at=at)
        if s.state is CollectionState.PENDING
        else s
        for s in context.statuses
    ]
    return replace(context, statuses=statuses)


class JetStreamEnrichmentQueue(EnrichmentQueue):
    def __init__(
        self,
        store: Store,
        collectors: Sequence[Collector],
        nc: NatsClient,
        nats_settings: NatsSettings,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, collectors, **kwargs)
        self._nc = nc
        self._js = nc.jetstream()
        self._nats = nats_settings
        self._outbox: deque[str] = deque()
        self._outbox_ready = asyncio.Event()
        # Jobs pulled and not yet acknowledged, by error id.
        self._held: dict[str, Msg] = {}
        self._slot_free = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._done_sub: Any = None
        self._stopping = False
        self.redelivered = 0
        self.abandoned = 0

    @classmethod
    def from_nats_settings(
        cls,
        store: Store,
        collectors: Sequence[Collector],
        settings: CollectorSettings,
        nc: NatsClient,
        nats_settings: NatsSettings,
        *,
        scrub_text: Callable[[str], str] = _unchanged,
    ) -> JetStreamEnrichmentQueue:
        return cls(store, collectors, nc, nats_settings, scrub_text=scrub_text, **queue_options(settings))

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._outbox)

    async def start(self) -> None:
        if self._tasks:
            return
        await super().start()
        n = self._nats
        await ensure_stream(
            self._js,
            js_api.StreamConfig(
                name=n.jobs_stream,
                subjects=[n.jobs_subject],
                retention=js_api.RetentionPolicy.WORK_QUEUE,
                storage=js_api.StorageType.FILE,
                num_replicas=n.stream_replicas,
                duplicate_window=120.0,
            ),
        )
        self._pull = await self._js.pull_subscribe(
            n.jobs_subject,
            durable=n.jobs_consumer,
            stream=n.jobs_stream,
            config=js_api.ConsumerConfig(
                ack_policy=js_api.AckPolicy.EXPLICIT,
                ack_wait=n.job_ack_wait_seconds,
                max_deliver=n.job_max_deliver,
            ),
        )
        self._done_sub = await self._nc.subscribe(n.done_subject, cb=self._announced)
        self._background = [
            asyncio.create_task(self._pull_jobs(), name="enrichment-jobs-puller"),
            asyncio.create_task(self._publish_jobs(), name="enrichment-jobs-publisher"),
        ]

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop pulling, publish the jobs still waiting (briefly), let held jobs finish within
        `drain_timeout`, and hand the rest back to the work queue at once (nak)."""
        puller, publisher = self._background or (None, None)
        if puller is not None:
            puller.cancel()
            await asyncio.gather(puller, return_exceptions=True)
        if publisher is not None:
            self._stopping = True
            self._outbox_ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(publisher), PUBLISH_TIMEOUT_SECONDS)
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
        self._background = []
        await super().stop(drain_timeout)
        for msg in self._held.values():
            with contextlib.suppress(Exception):
                await msg.nak()
        self._held.clear()
        if self._done_sub is not None:
            with contextlib.suppress(Exception):
                await self._done_sub.unsubscribe()
            self._done_sub = None

    # --- the capture side -------------------------------------------------------------------
    def submit(self, snapshot: ErrorSnapshot) -> bool:
        """Publish the error's job (in the background, retried until JetStream takes it)."""
        if self._closed:
            return False
        self._waiters.setdefault(snapshot.error_id, asyncio.get_running_loop().create_future())
        self._outbox.append(snapshot.error_id)
        self._outbox_ready.set()
        self.counters.queued += 1
        return True

    async def wait_for(self, error_id: str, timeout: float | None) -> bool:
        """True once the error's context is stored, by whichever replica ran its job."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if await self._collected(error_id):
                self._resolve(error_id, True)
                return True
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            future = self._waiters.get(error_id)
            if future is None:
                future = self._waiters[error_id] = loop.create_future()
            wait = STORE_CHECK_SECONDS if left is None else min(STORE_CHECK_SECONDS, left)
            try:
                if await asyncio.wait_for(asyncio.shield(future), wait):
                    return True
            except TimeoutError:
                continue
            # This replica's job could not store the context; another delivery may still do it.

    async def _collected(self, error_id: str) -> bool:
        try:
            snapshot = await self._store.get_error(error_id)
        except DomainError:
            return False
        return not context_pending(snapshot.context)

    async def _announced(self, msg: Msg) -> None:
        self._resolve(msg.data.decode(), True)

    # --- the job stream ---------------------------------------------------------------------
    async def _publish_jobs(self) -> None:
        while True:
            if not self._outbox:
                if self._stopping:
                    return
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            error_id = self._outbox[0]
            attempt = 0
            while True:
                try:
                    await self._js.publish(
                        self._nats.jobs_subject,
                        error_id.encode(),
                        stream=self._nats.jobs_stream,
                        timeout=PUBLISH_TIMEOUT_SECONDS,
                        headers={"Nats-Msg-Id": "job:" + error_id},
                    )
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if attempt == 0:
                        log.warning("enrichment: publishing the job of %s failed (%r); retrying", error_id, exc)
                    await asyncio.sleep(PUBLISH_RETRY_SECONDS[min(attempt, len(PUBLISH_RETRY_SECONDS) - 1)])
                    attempt += 1
            self._outbox.popleft()

    async def _pull_jobs(self) -> None:
        """Pull as many jobs as there are idle workers: a replica never hoards jobs others could run."""
        while True:
            free = self._workers - len(self._held)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                msgs = await self._pull.fetch(batch=free, timeout=1.0)
            except (FetchTimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("enrichment: pulling jobs failed (%r); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self._take(msg)

    async def _take(self, msg: Msg) -> None:
        error_id = msg.data.decode()
        deliveries = msg.metadata.num_delivered
        if deliveries > 1:
            self.redelivered += 1
        try:
            snapshot = await self._store.get_error(error_id)
        except NotFound:
            # Not visible yet (a cluster read from a follower that lags), or deleted: ask again
            # later, and give up only on the last delivery.
            if deliveries >= self._nats.job_max_deliver:
                await msg.ack()
            else:
                await msg.nak(delay=RETRY_DELAY_SECONDS)
            return
        except DomainError as exc:
            log.warning("enrichment: cannot read %s for its job (%s); retrying later", error_id, exc)
            await msg.nak(delay=RETRY_DELAY_SECONDS)
            return
        if not context_pending(snapshot.context):
            await msg.ack()  # done already (a redelivery, or a resumed job)
            await self._announce(error_id)
            return
        if deliveries >= self._nats.job_max_deliver:
            self.abandoned += 1
            if await self._store_context(error_id, abandoned(snapshot.context, deliveries)):
                await msg.ack()
                await self._announce(error_id)
            return
        if error_id in self._held:  # delivered again while this replica still runs it
            return
        self._held[error_id] = msg
        self._queue.put_nowait(snapshot)

    async def _job_done(self, error_id: str, stored: bool) -> None:
        msg = self._held.pop(error_id, None)
        self._slot_free.set()
        if msg is not None:
            with contextlib.suppress(Exception):
                if stored:
                    await msg.ack()
                else:
                    await msg.nak(delay=RETRY_DELAY_SECONDS)
        if stored:
            await self._announce(error_id)
            self._resolve(error_id, True)

    async def _announce(self, error_id: str) -> None:
        with contextlib.suppress(Exception):
            await self._nc.publish(self._nats.done_subject, error_id.encode())

    # --- after a restart ----------------------------------------------------------------------
    async def _resume(self, until: int, cutoff: int) -> None:
        """Errors left PENDING whose job never reached the work queue (a replica died between
        commit and publication) get a job again; older ones are marked FAILED. A job that is
        still queued is deduplicated by JetStream or skipped by the worker once done."""
        after = 0
        resumed = expired = 0
        try:
            while not self._closed:
                page = [s for s in await self._store.pending_context_errors(after, 256) if s.received_at <= until]
                if not page:
                    break
                after = page[-1].received_at
                for snapshot in page:
                    if error_time(snapshot) >= cutoff:
                        self._outbox.append(snapshot.error_id)
                        self._outbox_ready.set()
                        resumed += 1
                    else:
                        expired += await self._store_context(
                            snapshot.error_id, not_collected_before_restart(snapshot.context)
                        )
        except DomainError as exc:
            log.warning("enrichment: resuming pending errors stopped: %s", exc)
        self.counters.resumed += resumed
        self.counters.expired += expired
