"""The notifier: decides inline after each capture, then writes, composes and delivers in the background.

Capture pays only for the in-memory decision (notify/rules.py). Decisions are written to the
durable outbox (notify/outbox.py) by a background task; a dispatcher hands due outbox rows to
at most `concurrency` deliveries. A delivery composes the message once (waiting, within a bound,
for the error's context so the verdict uses it), stores the body, then POSTs it. Failures retry
with exponential backoff and jitter, a 429's Retry-After is honoured, and after `max_attempts`
the message becomes a dead letter. Every attempt of one message carries the same
X-Errorreplay-Message-Id, so a receiver that dedups on it sees each message once even when a
crash lands between its 2xx and our write of "sent".
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from errorreplay_server.analysis.model import ReplayAnalysis
from errorreplay_server.domain.errors import DomainError
from errorreplay_server.domain.model import (
    MICROS_PER_SECOND,
    CaptureOutcome,
    ErrorGroup,
    ErrorSnapshot,
    now_micros,
)
from errorreplay_server.notify import targets
from errorreplay_server.notify.config import NotifySettings, Rule, Target
from errorreplay_server.notify.message import compose
from errorreplay_server.notify.outbox import Outbox, OutboxEntry, OutboxState
from errorreplay_server.notify.rules import Decision, RuleEngine

log = logging.getLogger(__name__)

# Outbox rows read per dispatcher pass beyond the free delivery slots (cheap; avoids re-reading).
DUE_BATCH = 64
# The dispatcher looks at the outbox at least this often even when nothing wakes it.
IDLE_POLL_SECONDS = 5.0
# Quiet-period memory is pruned this often.
PRUNE_INTERVAL_SECONDS = 60.0
# The outbox state gauge is refreshed at most this often.
COUNT_INTERVAL_SECONDS = 1.0
# How long stop waits for cancelled background tasks.
STOP_TIMEOUT_SECONDS = 5.0
# Statuses worth retrying besides 5xx: timeouts and rate limits. Other 4xx mean the request
# itself is wrong (a revoked webhook, a refused payload): retrying would not change the answer.
RETRYABLE_4XX = frozenset({408, 425, 429})


class HideTargetUrls(logging.Filter):
    """httpx logs every request's URL at INFO; a webhook URL is a credential (Slack's and Teams'
    carry their token in the path), so those records are dropped. Collectors' requests still log."""

    def __init__(self, urls: Iterable[str]) -> None:
        super().__init__()
        self._urls = tuple(urls)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(str(arg).startswith(self._urls) for arg in args)


def hide_target_urls(targets_: Iterable[Target]) -> HideTargetUrls:
    hider = HideTargetUrls(t.url for t in targets_)
    logging.getLogger("httpx").addFilter(hider)
    return hider


class ReplaySource(Protocol):
    """What composing needs from the service (DataPlane and the store)."""

    async def replay(self, error_id: str, refresh_context: bool) -> tuple[ErrorSnapshot, ReplayAnalysis]: ...

    async def get_group(self, group_id: str) -> ErrorGroup: ...


class ContextWaiter(Protocol):
    async def wait_for(self, error_id: str, timeout: float | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class AttemptResult:
    ok: bool
    # When to try again (None: do not retry; a dead letter if not ok).
    retry_after_seconds: float | None
    detail: str


class NotifyCounters:
    """Counts per (rule, target, outcome), read by the metrics collector at scrape time."""

    OUTCOMES = ("decided", "sent", "failed", "dead_letter", "suppressed", "dropped")

    def __init__(self) -> None:
        self.by_rule: Counter[tuple[str, str, str]] = Counter()
        self.outbox: dict[OutboxState, int] = dict.fromkeys(OutboxState, 0)

    def add(self, rule: str, target: str, outcome: str, n: int = 1) -> None:
        self.by_rule[(rule, target, outcome)] += n


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        outbox: Outbox,
        context: ContextWaiter | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._source: ReplaySource | None = None
        self._context = context
        self._engine = RuleEngine(settings.rules)
        self._rules: Mapping[str, Rule] = {rule.name: rule for rule in settings.rules}
        self._decisions: deque[Decision] = deque()
        self._decided = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._url_hider = hide_target_urls(settings.targets.values())
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.request_timeout_seconds), follow_redirects=False, transport=transport
        )
        self.counters = NotifyCounters()
        self._suppressed_seen: dict[str, int] = {}
        self._dropped_logged = False
        self._counted_at = 0.0

    # --- inline, on the capture path ----------------------------------------------------------
    def captured(self, outcome: CaptureOutcome) -> None:
        """CaptureObserver: decide now (in memory), write and deliver later."""
        decisions = self._engine.decide(outcome, now_micros())
        self._count_suppressed()
        for decision in decisions:
            target = decision.rule.target
            if len(self._decisions) >= self._settings.max_pending_decisions:
                self.counters.add(decision.rule.name, target, "dropped")
                if not self._dropped_logged:
                    log.warning("notifications: outbox writer is behind; dropping decisions (counted in metrics)")
                    self._dropped_logged = True
                continue
            self.counters.add(decision.rule.name, target, "decided")
            self._decisions.append(decision)
        if decisions:
            self._decided.set()

    def _count_suppressed(self) -> None:
        for name, n in self._engine.suppressed.items():
            seen = self._suppressed_seen.get(name, 0)
            if n != seen:
                self.counters.add(name, self._rules[name].target, "suppressed", n - seen)
                self._suppressed_seen[name] = n

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self, source: ReplaySource) -> None:
        """`source` reads errors and replays them (the DataPlane, built after capture, which
        needs this notifier first)."""
        self._source = source
        await self._outbox.start()
        longest = max((rule.quiet_period_seconds for rule in self._settings.rules), default=0.0)
        since = now_micros() - round(longest * MICROS_PER_SECOND)
        self._engine.remember(await self._outbox.recent_decisions(since))
        self.counters.outbox = await self._outbox.counts()
        self._tasks = [
            asyncio.create_task(self._write_decisions(), name="notify-outbox-writer"),
            asyncio.create_task(self._dispatch(), name="notify-dispatcher"),
        ]

    @property
    def background_tasks(self) -> list[asyncio.Task[None]]:
        """The writer, the dispatcher and the deliveries in flight."""
        return [*self._tasks, *self._in_flight.values()]

    async def stop(self) -> None:
        """Write the decisions still in memory, then stop; unsent messages stay in the outbox."""
        tasks = [*self._tasks, *self._in_flight.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: shutdown must not hang on a delivery that ignores cancellation.
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
        with contextlib.suppress(Exception):
            await self._flush_decisions()
        await self._client.aclose()
        await self._outbox.close()
        logging.getLogger("httpx").removeFilter(self._url_hider)

    # --- background: decisions -> outbox -------------------------------------------------------
    async def _write_decisions(self) -> None:
        last_prune = time.monotonic()
        while True:
            await self._decided.wait()
            self._decided.clear()
            try:
                await self._flush_decisions()
            except Exception:
                log.exception("notifications: writing decisions to the outbox failed; retrying")
                await asyncio.sleep(1.0)
                self._decided.set()
            if time.monotonic() - last_prune > PRUNE_INTERVAL_SECONDS:
                last_prune = time.monotonic()
                now = now_micros()
                self._engine.prune(now)
                retention = round(self._settings.outbox_retention_seconds * MICROS_PER_SECOND)
                try:
                    await self._outbox.forget_before(now - retention)
                except Exception:
                    log.exception("notifications: pruning the outbox failed; trying again later")

    async def _flush_decisions(self) -> None:
        if not self._decisions:
            return
        batch = list(self._decisions)
        entries = [
            OutboxEntry(
                message_id=d.message_id,
                rule=d.rule.name,
                target=d.rule.target,
                trigger=d.rule.trigger.describe(),
                error_id=d.snapshot.error_id,
                group_id=d.snapshot.group_id,
                decided_at=d.decided_at,
                next_attempt_at=d.decided_at,
            )
            for d in batch
        ]
        await self._outbox.add(entries)
        for _ in batch:
            self._decisions.popleft()
        self._wake.set()

    # --- background: outbox -> deliveries ------------------------------------------------------
    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._dispatch_due()
                wait = await self._idle_seconds()
            except Exception:
                log.exception("notifications: reading the outbox failed; retrying")
                wait = 1.0
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # lands as the event is set, and stop sets it (each cancelled delivery wakes this loop),
            # so the dispatcher would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _dispatch_due(self) -> None:
        free = self._settings.concurrency - len(self._in_flight)
        if free <= 0:
            return
        for entry in await self._outbox.due(now_micros(), free, list(self._in_flight)):
            task = asyncio.create_task(self._deliver(entry), name=f"notify-{entry.message_id}")
            self._in_flight[entry.message_id] = task
            task.add_done_callback(functools.partial(self._done, entry.message_id))
        # The state gauge is read at most once per COUNT_INTERVAL_SECONDS (it scans the table).
        if time.monotonic() - self._counted_at > COUNT_INTERVAL_SECONDS:
            self._counted_at = time.monotonic()
            self.counters.outbox = await self._outbox.counts()

    def _done(self, message_id: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(message_id, None)
        self._wake.set()

    async def _idle_seconds(self) -> float:
        if len(self._in_flight) >= self._settings.concurrency:
            return IDLE_POLL_SECONDS
        due = await self._outbox.next_due_at()
        if due is None:
            return IDLE_POLL_SECONDS
        return min(IDLE_POLL_SECONDS, max(0.0, (due - now_micros()) / MICROS_PER_SECOND))

    async def _deliver(self, entry: OutboxEntry) -> None:
        target = self._settings.targets.get(entry.target)
        if target is None:
            # The rule or target was removed from the config since the decision: nothing to send to.
            await self._outbox.mark_dead(entry.message_id, entry.attempts, "target no longer configured")
            self.counters.add(entry.rule, entry.target, "dead_letter")
            return
        try:
            if not entry.payload:
                entry.payload = await self._compose(entry, target)
                await self._outbox.set_payload(entry.message_id, entry.payload)
            result = await send(self._client, target, entry.message_id, entry.payload.encode())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or the store: the message stays pending and is retried
            log.exception("notifications: message %s for rule %s failed unexpectedly", entry.message_id, entry.rule)
            result = AttemptResult(False, self._backoff(entry.attempts + 1), f"internal: {type(exc).__name__}")
        attempts = entry.attempts + 1
        if result.ok:
            await self._outbox.mark_sent(entry.message_id, attempts, now_micros())
            self.counters.add(entry.rule, entry.target, "sent")
            return
        self.counters.add(entry.rule, entry.target, "failed")
        if result.retry_after_seconds is None or attempts >= self._settings.max_attempts:
            await self._outbox.mark_dead(entry.message_id, attempts, result.detail)
            self.counters.add(entry.rule, entry.target, "dead_letter")
            log.warning(
                "notifications: message %s for rule %s to target %s is a dead letter after %d attempts: %s",
                entry.message_id,
                entry.rule,
                entry.target,
                attempts,
                result.detail,
            )
            return
        delay = min(self._settings.backoff_max_seconds, result.retry_after_seconds or self._backoff(attempts))
        at = now_micros() + round(delay * MICROS_PER_SECOND)
        await self._outbox.retry_later(entry.message_id, attempts, at, result.detail)

    def _backoff(self, attempts: int) -> float:
        """Exponential, capped, with equal jitter: half the delay fixed, half random."""
        s = self._settings
        delay = min(s.backoff_max_seconds, s.backoff_base_seconds * 2 ** (attempts - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    async def _compose(self, entry: OutboxEntry, target: Target) -> str:
        # Wait for the context only for what is left of the bound since the decision: after a
        # restart the message is composed with what was stored.
        waited = (now_micros() - entry.decided_at) / MICROS_PER_SECOND
        remaining = self._settings.context_wait_seconds - waited
        if self._context is not None and remaining > 0:
            await self._context.wait_for(entry.error_id, remaining)
        assert self._source is not None, "started"
        try:
            snapshot, analysis = await self._source.replay(entry.error_id, False)
        except DomainError as exc:
            raise RuntimeError(f"error {entry.error_id} cannot be read: {exc}") from exc
        try:
            group = await self._source.get_group(entry.group_id)
            title, count = group.title, group.count
        except DomainError:
            title, count = snapshot.report.message, 1
        message = compose(
            entry.message_id,
            entry.rule,
            entry.trigger,
            snapshot,
            title,
            count,
            analysis,
            self._settings.console_url,
        )
        return json.dumps(targets.payload(target.kind, message), ensure_ascii=False, separators=(",", ":"))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds or an HTTP date (RFC 9110 10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def send(client: httpx.AsyncClient, target: Target, message_id: str, body: bytes) -> AttemptResult:
    """One POST. The URL is a credential: it appears in no log line or error detail."""
    headers = targets.headers(target, message_id, body)
    try:
        response = await client.post(target.url, content=body, headers=headers)
    except httpx.TimeoutException:
        return AttemptResult(False, 0.0, "timed out")
    except httpx.HTTPError as exc:
        return AttemptResult(False, 0.0, f"request failed: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return AttemptResult(True, None, f"HTTP {status}")
    if status >= 500 or status in RETRYABLE_4XX:
        # 0.0 means "the usual backoff"; a Retry-After replaces it.
        return AttemptResult(False, retry_after_seconds(response.headers.get("Retry-After")) or 0.0, f"HTTP {status}")
    return AttemptResult(False, None, f"HTTP {status}")
