"""The stream hub on NATS JetStream, for several replicas over one store (README: Deployment).

Each replica publishes its own committed captures once to one stream, on the subject
`<prefix>.<environment>.<severity>.<resource>`; every replica consumes the whole stream with an
ordered consumer and fans each message out to its own subscribers, as the in-process hub does.
The JetStream sequence is the position a cursor carries, so a cursor (signed with the store's
key, which the Neo4j store shares through the database) resumes on any replica: `resume_after`
reads the stream again from the next sequence with an ordered consumer of its own, then the
subscription switches to the live fan-out with no gap and no duplicate.

A capture is acknowledged once it is committed to the store; its publication is retried until
JetStream accepts it (in capture order, with the error id as the message id, so a retry that
JetStream had already stored is dropped as a duplicate). While nats-server is down, streams stay
open and pause; they resume where they were once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.domain.errors import InvalidArgument, OutOfRange, StoreUnavailable
from errorreplay_server.domain.model import ErrorSnapshot, idempotency_key
from errorreplay_server.store.base import Store
from errorreplay_server.store.codec import context_to_json, report_details_json, snapshot_from_row
from errorreplay_server.store.pagination import StreamCursors
from errorreplay_server.streaming.hub import HubSettings, InProcessHub, RecentErrors, StreamItem, Subscription
from errorreplay_server.streaming.nats_settings import NatsSettings

log = logging.getLogger(__name__)

# Waits between attempts to publish a capture while JetStream does not answer.
PUBLISH_RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0)
PUBLISH_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 10.0
# How long the duplicate window of the errors stream is: a retried publication within it is dropped.
DUPLICATE_WINDOW_SECONDS = 120.0
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def subject_token(value: str) -> str:
    """One subject token for any text: bytes outside [A-Za-z0-9_-] become %XX, so dots, `*`, `>`
    and spaces in a resource id can never split or widen a subject. Empty text is `_`."""
    if not value:
        return "_"
    return "".join(ch if ch in _SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in value)


def error_subject(prefix: str, snapshot: ErrorSnapshot) -> str:
    r = snapshot.report
    return ".".join((prefix, subject_token(r.environment), r.severity.name.lower(), subject_token(r.resource_id)))


def encode_snapshot(s: ErrorSnapshot) -> bytes:
    """A committed snapshot as JSON, in the stores' row order (store/codec.py snapshot_from_row)."""
    r = s.report
    row = [
        s.error_id,
        idempotency_key(s),
        s.group_id,
        s.fingerprint,
        s.received_at,
        r.occurred_at,
        int(r.severity),
        int(r.source),
        r.resource_id,
        r.resource_type,
        r.service,
        r.environment,
        r.error_type,
        r.correlation_id,
        r.trace_id,
        r.message,
        report_details_json(r),
        context_to_json(s.context),
    ]
    return json.dumps(row, separators=(",", ":")).encode()


def decode_snapshot(data: bytes) -> ErrorSnapshot:
    return snapshot_from_row(json.loads(data))


async def connect(settings: NatsSettings, name: str = "errorreplay") -> NatsClient:
    """A connection that reconnects for ever: a replica outlives a nats-server restart."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    connected: list[NatsClient] = []

    async def on_disconnect() -> None:
        if connected and connected[0].is_closed:
            return  # our own close
        log.warning("nats: disconnected from %s; reconnecting", settings.url)

    async def on_reconnect() -> None:
        log.info("nats: reconnected")

    try:
        # nats-py retries a first connection as often as a lost one (for ever here): start-up
        # gives up after CONNECT_TIMEOUT_SECONDS instead, naming the setting.
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            nc = await nats.connect(
                servers=settings.servers,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=5,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
    except Exception as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else str(exc)
        raise StoreUnavailable(f"cannot connect to NATS at {settings.url} (ERRORREPLAY_NATS_URL): {reason}") from exc
    connected.append(nc)
    return nc


async def ensure_stream(js: JetStreamContext, config: js_api.StreamConfig) -> None:
    """Create the stream, or bring an existing one to `config` (limits may change between releases)."""
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


class JetStreamHub(InProcessHub):
    def __init__(
        self,
        store: Store,
        nc: NatsClient,
        nats_settings: NatsSettings,
        settings: HubSettings | None = None,
        analysis: AnalysisSettings = DEFAULT_SETTINGS,
    ) -> None:
        super().__init__(store, settings, analysis)
        self._nc = nc
        self._js = nc.jetstream()
        self._nats = nats_settings
        self._all = f"{nats_settings.subject_prefix}.>"
        self._outbox: deque[ErrorSnapshot] = deque()
        self._outbox_ready = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._closing = False
        # Captures this replica published to JetStream (the rest of `published` waits in the outbox).
        self.acknowledged = 0

    @property
    def backlog(self) -> int:
        """Committed captures not yet accepted by JetStream."""
        return len(self._outbox)

    async def start(self) -> None:
        # The base hub's dispatcher is not started: the stream feeds the fan-out.
        self._cursors = StreamCursors(self._store.token_key())
        n = self._nats
        await ensure_stream(
            self._js,
            js_api.StreamConfig(
                name=n.stream,
                subjects=[self._all],
                retention=js_api.RetentionPolicy.LIMITS,
                max_age=n.stream_max_age_seconds,
                max_bytes=n.stream_max_bytes,
                discard=js_api.DiscardPolicy.OLD,
                storage=js_api.StorageType.FILE,
                num_replicas=n.stream_replicas,
                duplicate_window=DUPLICATE_WINDOW_SECONDS,
            ),
        )
        self._dispatched_through = (await self._js.stream_info(n.stream)).state.last_seq
        self._consumer = asyncio.create_task(self._consume(), name="jetstream-hub-consumer")
        self._publisher = asyncio.create_task(self._publish_loop(), name="jetstream-hub-publisher")

    async def close(self) -> None:
        """Stop consuming, then end every stream. Publishing goes on: captures still in flight
        commit after this, and finish_publishing hands them to JetStream."""
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            self._consumer = None
        await super().close()

    async def finish_publishing(self) -> None:
        """Publish what is committed (for up to PUBLISH_TIMEOUT_SECONDS), then stop publishing."""
        self._closing = True
        if self._publisher is not None:
            self._outbox_ready.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._publisher), PUBLISH_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("jetstream: %d captures not published at shutdown", len(self._outbox))
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None

    def publish(self, snapshot: ErrorSnapshot) -> None:
        self.published += 1
        self._outbox.append(snapshot)
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        while True:
            if not self._outbox:
                if self._closing:
                    return
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            snapshot = self._outbox[0]
            await self._publish_one(snapshot)
            self._outbox.popleft()
            self.acknowledged += 1

    async def _publish_one(self, snapshot: ErrorSnapshot) -> None:
        """Retried until JetStream stores it: a capture is never left out of the stream while
        this process lives."""
        subject = error_subject(self._nats.subject_prefix, snapshot)
        data = encode_snapshot(snapshot)
        attempt = 0
        while True:
            try:
                await self._js.publish(
                    subject,
                    data,
                    stream=self._nats.stream,
                    timeout=PUBLISH_TIMEOUT_SECONDS,
                    headers={"Nats-Msg-Id": snapshot.error_id},
                )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = PUBLISH_RETRY_SECONDS[min(attempt, len(PUBLISH_RETRY_SECONDS) - 1)]
                if attempt == 0:
                    log.warning("jetstream: publishing %s failed (%r); retrying", snapshot.error_id, exc)
                attempt += 1
                await asyncio.sleep(delay)

    async def _consume(self) -> None:
        """Fan out every message of the stream, in sequence order, from the sequence after the
        last one dispatched. The ordered consumer recreates itself after a gap or a reconnect;
        a failure here starts it again from the same place."""
        while True:
            try:
                sub = await self._js.subscribe(
                    self._all,
                    stream=self._nats.stream,
                    ordered_consumer=True,
                    config=js_api.ConsumerConfig(
                        deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                        opt_start_seq=self._dispatched_through + 1,
                    ),
                )
                try:
                    async for msg in sub.messages:
                        seq = msg.metadata.sequence.stream
                        if seq <= self._dispatched_through:
                            continue
                        await self._dispatch_message(seq, msg.data)
                finally:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("jetstream: the stream consumer stopped (%r); starting it again", exc)
                await asyncio.sleep(0.5)

    async def _dispatch_message(self, seq: int, data: bytes) -> None:
        try:
            snapshot = decode_snapshot(data)
        except Exception:
            log.exception("jetstream: message %d of the stream cannot be read; skipped", seq)
        else:
            try:
                await self._fan_out(snapshot, seq, self._recent, self._subscriptions)
            except Exception:
                log.exception("dispatch of %s failed", snapshot.error_id)
        self._dispatched_through = max(self._dispatched_through, seq)

    async def _resume_point(self, resume_after: str) -> int:
        """The stream sequence a resumed stream starts after. Only cursors resume here: an error
        id names no position of the stream."""
        position = self._cursors.decode(resume_after)
        if position is None:
            raise InvalidArgument.single(
                "resume_after", "is not a cursor of this deployment (with NATS, resume from a stream cursor)"
            )
        state = await self._stream_state()
        if position > state.last_seq:
            raise OutOfRange("resume_after", "is past the newest message of the stream")
        if position + 1 < state.first_seq:
            raise OutOfRange(
                "resume_after",
                "is older than the stream keeps (ERRORREPLAY_NATS_STREAM_MAX_AGE_SECONDS and _MAX_BYTES): "
                "errors after it were discarded; subscribe without resume_after, and use SearchErrors "
                "for the missed ones",
            )
        return position

    async def _stream_state(self) -> js_api.StreamState:
        """The stream's first and last sequence; UNAVAILABLE (retry) while NATS does not answer."""
        try:
            return (await self._js.stream_info(self._nats.stream)).state
        except Exception as exc:
            raise StoreUnavailable(f"the errors stream on NATS is unavailable; resubscribe ({exc!r})") from exc

    async def _backfill(self, sub: Subscription, after: int) -> AsyncIterator[tuple[int, StreamItem]]:
        """The stream from `after` + 1 up to its last message when the subscription registered
        (later ones reach it live), or to where its live queue starts."""
        through = (await self._stream_state()).last_seq
        if through <= after:
            return
        recent = RecentErrors(self._settings.recent_size)
        try:
            reader = await self._js.subscribe(
                self._all,
                stream=self._nats.stream,
                ordered_consumer=True,
                config=js_api.ConsumerConfig(
                    deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
                ),
            )
        except Exception as exc:
            raise StoreUnavailable(f"the errors stream on NATS cannot be read now; resubscribe ({exc!r})") from exc
        try:
            async for msg in reader.messages:
                seq = msg.metadata.sequence.stream
                live_from = sub.first_queued()
                if live_from is not None and seq >= live_from:
                    return
                s = decode_snapshot(msg.data)
                neighbours = await self._topology.neighbours(s.report.resource_id)
                await self._current_filter(sub)
                deliver, reason, matched = sub.decide(s, neighbours)
                if deliver:
                    yield seq, self._backfill_item(s, neighbours, recent, reason, matched, seq)
                recent.add(s)
                if seq >= through:
                    return
        finally:
            with contextlib.suppress(Exception):
                await reader.unsubscribe()
