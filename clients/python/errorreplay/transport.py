"""The background transport: a bounded queue drained by one worker thread through BatchCaptureErrors.

The application thread only appends to a deque under a lock (`submit` never raises and never waits for
the network). The worker takes up to `batch_size` reports at a time and sends them with:

- gRPC's own retry policy (the channel's service config) for quick UNAVAILABLE retries of one call;
- around it, exponential backoff with jitter between attempts while the server stays down, waiting at
  least the server's RetryInfo delay when it sends one (RESOURCE_EXHAUSTED from rate limiting);
- the same request ids on every attempt, so a retry never stores a second copy.

Reports are dropped, counted in `stats` and logged once per cause, when the queue is full, when a batch
has been retried for `give_up_after` seconds, or when the server refuses them (INVALID_ARGUMENT, ...).
The design follows OpenTelemetry's BatchSpanProcessor (a deque, a condition, one daemon thread) and
sentry-python's background worker (drop rather than block, flush with a deadline at exit).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from errorreplay.client import RetryPolicy, auth_metadata, channel_credentials
from errorreplay.errors import ErrorReplayError, from_rpc_error
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc

__all__ = ["BackgroundTransport", "TransportOptions", "TransportStats"]

log = logging.getLogger("errorreplay")

# Codes after which the same batch is sent again: nothing was stored, or the request ids make a repeat safe.
_RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


@dataclass(frozen=True, slots=True)
class TransportOptions:
    queue_size: int = 1000
    """Reports held while the server is slow or down; more are dropped (counted)."""
    batch_size: int = 100
    """Reports per BatchCaptureErrors call."""
    timeout: float = 5.0
    """Deadline of one BatchCaptureErrors attempt, in seconds."""
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(max_attempts=1_000_000, initial_backoff=0.5, max_backoff=30.0)
    )
    """Backoff between attempts of one batch while the server is down (max_attempts is not used:
    `give_up_after` bounds the attempts)."""
    give_up_after: float = 600.0
    """A batch still unsent after this many seconds of retries is dropped (counted)."""


@dataclass(slots=True)
class TransportStats:
    """What happened to the reports given to `submit`; read it for metrics."""

    queued: int = 0
    sent: int = 0
    dropped_queue_full: int = 0
    dropped_gave_up: int = 0
    dropped_rejected: int = 0
    """Refused by the server (INVALID_ARGUMENT for one item or the batch, UNAUTHENTICATED, ...)."""


def service_config(options: TransportOptions) -> str:
    """gRPC's own retry policy for BatchCaptureErrors: quick retries inside one attempt's deadline."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": "errorreplay.v1.ErrorReplayService", "method": "BatchCaptureErrors"}],
                    "retryPolicy": {
                        "maxAttempts": 3,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "0.5s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


class BackgroundTransport:
    """Sends capture requests from a worker thread; see the module docstring."""

    def __init__(
        self,
        target: str,
        *,
        options: TransportOptions | None = None,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        root_certificates: str | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.options = options or TransportOptions()
        self.stats = TransportStats()
        max_backoff_ms = int(self.options.retry.max_backoff * 1000)
        grpc_options: list[tuple[str, Any]] = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config(self.options)),
            # Reconnect soon after the server comes back, not after gRPC's default 120 s ceiling.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", max(max_backoff_ms, 100)),
            *channel_options,
        ]
        credentials = channel_credentials(tls, root_certificates)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=grpc_options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=grpc_options)
        self._stub = service_pb2_grpc.ErrorReplayServiceStub(self._channel)
        self._metadata = auth_metadata(token)
        self._queue: deque[rr.CaptureErrorRequest] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._closing = False
        self._close_deadline = float("inf")
        self._nudge = threading.Event()  # cuts a backoff short: flush() and close() want an attempt now
        self._logged: set[str] = set()
        self._worker = threading.Thread(target=self._run, name="errorreplay-transport", daemon=True)
        self._worker.start()

    # --- the application side ---------------------------------------------------------------

    def submit(self, request: rr.CaptureErrorRequest) -> bool:
        """Queue one request; False (counted, logged once) when the queue is full or the transport closed."""
        with self._cond:
            if self._closing or len(self._queue) >= self.options.queue_size:
                self.stats.dropped_queue_full += 1
                full = True
            else:
                self._queue.append(request)
                self.stats.queued += 1
                self._cond.notify()
                full = False
        if full:
            self._log_once("queue_full", "errorreplay: the report queue is full; reports are dropped and counted")
        return not full

    def pending(self) -> int:
        """Reports queued or being sent."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every report queued so far is sent or dropped; False if `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._nudge.set()
        with self._cond:
            while self._queue or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float = 2.0) -> bool:
        """Flush for at most `timeout` seconds, then stop the worker and close the channel. What is
        still queued then is dropped (counted as given up). True when everything was sent."""
        with self._cond:
            if self._closing:
                return not self._queue and not self._in_flight
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._nudge.set()
        # The worker is a daemon: an attempt still running after `timeout` is abandoned with the process.
        self._worker.join(timeout)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self.stats.dropped_gave_up += left
            done = left == 0 and self._in_flight == 0
        self._channel.close()
        return done

    # --- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(self.options.batch_size, len(self._queue)))]
                self._in_flight = len(batch)
            try:
                self._send(batch)
            except Exception:  # the worker must survive anything; nothing here may reach the app
                log.exception("errorreplay: unexpected error sending %d reports; they are dropped", len(batch))
                self.stats.dropped_gave_up += len(batch)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _send(self, batch: list[rr.CaptureErrorRequest]) -> None:
        request = rr.BatchCaptureErrorsRequest(requests=batch)
        started = time.monotonic()
        attempt = 1
        while True:
            timeout = min(self.options.timeout, max(self._close_deadline - time.monotonic(), 0.05))
            try:
                response = self._stub.BatchCaptureErrors(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                wait = self._retry_wait(error, attempt, started)
                if wait is None:
                    return
                self._nudge.wait(wait)
                self._nudge.clear()
                attempt += 1
                continue
            self._account(response, len(batch))
            return

    def _retry_wait(self, error: ErrorReplayError, attempt: int, started: float) -> float | None:
        """Seconds to wait before the next attempt of a batch, or None after dropping it."""
        if error.code() not in _RETRY_CODES:
            with self._cond:
                self.stats.dropped_rejected += self._in_flight
            self._log_once(f"refused:{error.code().name}", f"errorreplay: the server refused reports: {error}")
            return None
        wait = max(self.options.retry.backoff(attempt), error.retry_delay or 0.0)
        now = time.monotonic()
        if now + wait - started > self.options.give_up_after or (self._closing and now + wait > self._close_deadline):
            with self._cond:
                self.stats.dropped_gave_up += self._in_flight
            self._log_once("gave_up", f"errorreplay: server unreachable ({error.code().name}); reports are dropped")
            return None
        if attempt == 1:
            log.debug("errorreplay: sending %d reports failed (%s); retrying", self._in_flight, error)
        return wait

    def _account(self, response: rr.BatchCaptureErrorsResponse, size: int) -> None:
        rejected = [r for r in response.results if r.HasField("error")]
        with self._cond:
            self.stats.sent += size - len(rejected)
            self.stats.dropped_rejected += len(rejected)
        if rejected:
            first = rejected[0].error
            why = "; ".join(f"{v.field} {v.description}" for v in first.field_violations) or first.message
            self._log_once("item_rejected", f"errorreplay: the server refused a report: {why}")

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message)
