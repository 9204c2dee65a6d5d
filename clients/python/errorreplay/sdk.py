"""The one-line set-up: `errorreplay.init(...)`, then `errorreplay.capture_exception()` inside `except`.

Nothing here raises into the application: a report is built on the calling thread (under 0.1 ms
of CPU, half of it formatting the traceback: bench/client_cost.py), passed through `before_send`
and the sample rate, and queued for the background transport (errorreplay.transport). Every `init` argument has an
`ERRORREPLAY_*` variable, read when the argument is not given (clients/python/README.md lists them).
"""

from __future__ import annotations

import atexit
import logging
import os
import platform
import random
import socket
import sys
import threading
import time as _time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from errorreplay.client import RetryPolicy, new_request_id, report_from_exception, timestamp
from errorreplay.transport import BackgroundTransport, TransportOptions, TransportStats
from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr

__all__ = [
    "BeforeSend",
    "Options",
    "add_breadcrumb",
    "capture_exception",
    "capture_message",
    "close",
    "flush",
    "init",
    "is_enabled",
    "stats",
]

log = logging.getLogger("errorreplay")

BeforeSend = Callable[[m.ErrorReport], "m.ErrorReport | None"]
"""Called with each report before it is queued: return it (changed or not), or None to drop it."""

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Options:
    """What `init` was given, after the environment filled the gaps (defaults in clients/python/README.md)."""

    address: str = ""
    service: str = ""
    release: str = ""
    environment: str = ""
    resource_id: str = ""
    token: str | None = None
    tls: bool = False
    root_certificates: str | None = None
    sample_rate: float = 1.0
    max_breadcrumbs: int = 50
    queue_size: int = 1000
    batch_size: int = 100
    timeout: float = 5.0
    shutdown_timeout: float = 2.0
    max_backoff: float = 30.0
    give_up_after: float = 600.0
    tags: Mapping[str, str] = field(default_factory=dict)
    before_send: BeforeSend | None = None
    default_integrations: bool = True


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        log.warning("errorreplay: %s=%r is not a number; using %s", name, raw, default)
        return default


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    return default if not raw else raw in ("1", "true", "yes", "on")


def options_from(env: Mapping[str, str], **given: Any) -> Options:
    """Options from the arguments given, then from `ERRORREPLAY_*` variables, then the defaults."""
    d = Options()

    def pick(name: str, variable: str, parse: Callable[[Mapping[str, str], str, Any], Any] | None = None) -> Any:
        value = given.get(name, _UNSET)
        if value is not _UNSET and value is not None:
            return value
        default = getattr(d, name)
        if parse is not None:
            return parse(env, variable, default)
        return env.get(variable) or default

    def as_int(e: Mapping[str, str], variable: str, default: int) -> int:
        return int(_env_float(e, variable, default))

    return Options(
        address=pick("address", "ERRORREPLAY_ADDRESS"),
        service=pick("service", "ERRORREPLAY_SERVICE"),
        release=pick("release", "ERRORREPLAY_RELEASE"),
        environment=pick("environment", "ERRORREPLAY_ENVIRONMENT"),
        resource_id=pick("resource_id", "ERRORREPLAY_RESOURCE_ID"),
        token=pick("token", "ERRORREPLAY_TOKEN") or None,
        tls=pick("tls", "ERRORREPLAY_TLS", _env_bool),
        root_certificates=pick("root_certificates", "ERRORREPLAY_ROOT_CERTIFICATES") or None,
        sample_rate=pick("sample_rate", "ERRORREPLAY_SAMPLE_RATE", _env_float),
        max_breadcrumbs=pick("max_breadcrumbs", "ERRORREPLAY_BREADCRUMBS", as_int),
        queue_size=pick("queue_size", "ERRORREPLAY_QUEUE_SIZE", as_int),
        batch_size=pick("batch_size", "ERRORREPLAY_BATCH_SIZE", as_int),
        timeout=pick("timeout", "ERRORREPLAY_TIMEOUT", _env_float),
        shutdown_timeout=pick("shutdown_timeout", "ERRORREPLAY_SHUTDOWN_TIMEOUT", _env_float),
        max_backoff=pick("max_backoff", "ERRORREPLAY_MAX_BACKOFF", _env_float),
        give_up_after=pick("give_up_after", "ERRORREPLAY_GIVE_UP_AFTER", _env_float),
        tags=dict(given["tags"]) if given.get("tags") is not None else _env_tags(env.get("ERRORREPLAY_TAGS", "")),
        before_send=given.get("before_send"),
        default_integrations=pick("default_integrations", "ERRORREPLAY_DEFAULT_INTEGRATIONS", _env_bool),
    )


def _env_tags(raw: str) -> dict[str, str]:
    """`team=payments,region=eu` as tags."""
    pairs = (part.split("=", 1) for part in raw.split(",") if "=" in part)
    return {key.strip(): value.strip() for key, value in pairs if key.strip()}


def runtime_tags() -> dict[str, str]:
    """Host, process and runtime, named as OpenTelemetry's resource conventions name them."""
    return {
        "host.name": socket.gethostname(),
        "process.pid": str(os.getpid()),
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": platform.python_version(),
    }


_otel_trace: Any = _UNSET


def _otel_ids() -> tuple[str, str]:
    """The active OpenTelemetry span's trace and span ids, when opentelemetry-api is installed."""
    global _otel_trace
    if _otel_trace is _UNSET:  # looked up once: a failed import scans sys.path every time
        try:
            from opentelemetry import trace

            _otel_trace = trace
        except ImportError:
            _otel_trace = None
    if _otel_trace is None:
        return "", ""
    span_context = _otel_trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return "", ""
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


class Hub:
    """The state `init` sets up: options, transport, breadcrumbs. One per process (`_hub`)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.tags = {**runtime_tags(), **options.tags}
        self.breadcrumbs: deque[m.LogLine] = deque(maxlen=max(options.max_breadcrumbs, 0))
        self._breadcrumb_lock = threading.Lock()
        self.sampled_out = 0
        self.filtered_out = 0
        # The last exception captured and its id: two integrations seeing one exception (the asyncio
        # handler, then asyncio's own log record of it) store it once.
        # Held strongly (exceptions take no weak references), like sentry-python's dedupe; only one.
        self.last_exception: BaseException | None = None
        self.last_exception_id = ""
        self.transport = BackgroundTransport(
            options.address,
            options=TransportOptions(
                queue_size=options.queue_size,
                batch_size=options.batch_size,
                timeout=options.timeout,
                retry=RetryPolicy(max_attempts=1_000_000, initial_backoff=0.5, max_backoff=options.max_backoff),
                give_up_after=options.give_up_after,
            ),
            token=options.token,
            tls=options.tls,
            root_certificates=options.root_certificates,
        )

    def add_breadcrumb(self, message: str, level: str, time: float | None, labels: Mapping[str, str]) -> None:
        line = m.LogLine(level=level, message=message, labels=labels)
        line.time.FromNanoseconds(int((time if time is not None else _time.time()) * 1e9))
        with self._breadcrumb_lock:
            self.breadcrumbs.append(line)

    def capture(self, report: m.ErrorReport) -> str:
        """Fill in the automatic context, filter, sample and queue; the request id, or "" when dropped."""
        o = self.options
        report.service = report.service or o.service
        report.release = report.release or o.release
        report.environment = report.environment or o.environment
        report.resource_id = report.resource_id or o.resource_id or o.service
        if not report.source:
            report.source = m.SOURCE_APPLICATION
        if not report.HasField("occurred_at"):
            report.occurred_at.CopyFrom(timestamp(datetime.now(UTC)))
        for key, value in self.tags.items():
            if key not in report.tags:
                report.tags[key] = value
        if not report.trace_id:
            report.trace_id, span_id = _otel_ids()
            report.span_id = report.span_id or span_id
        with self._breadcrumb_lock:
            report.breadcrumbs.extend(self.breadcrumbs)
        if o.sample_rate < 1.0 and random.random() >= o.sample_rate:
            self.sampled_out += 1
            return ""
        if o.before_send is not None:
            try:
                kept = o.before_send(report)
            except Exception:
                log.exception("errorreplay: before_send raised; the report is dropped")
                kept = None
            if kept is None:
                self.filtered_out += 1
                return ""
            report = kept
        request_id = new_request_id()
        if not self.transport.submit(rr.CaptureErrorRequest(error=report, request_id=request_id)):
            return ""
        return request_id


_hub: Hub | None = None
_hub_lock = threading.Lock()
_said_disabled = False


def init(
    address: str | None = None,
    *,
    service: str | None = None,
    release: str | None = None,
    environment: str | None = None,
    resource_id: str | None = None,
    token: str | None = None,
    tls: bool | None = None,
    root_certificates: str | None = None,
    sample_rate: float | None = None,
    max_breadcrumbs: int | None = None,
    queue_size: int | None = None,
    batch_size: int | None = None,
    timeout: float | None = None,
    shutdown_timeout: float | None = None,
    max_backoff: float | None = None,
    give_up_after: float | None = None,
    tags: Mapping[str, str] | None = None,
    before_send: BeforeSend | None = None,
    default_integrations: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> Options:
    """Set up the SDK for this process; a second call replaces the first (flushing it).

    Each argument left out is read from its `ERRORREPLAY_*` variable (`env`, default os.environ).
    Without an address the SDK is disabled: every capture is a no-op, and this is logged once.
    The queue is flushed at interpreter exit for at most `shutdown_timeout` seconds. With
    `default_integrations` (the default) the excepthooks and the root logger's handler are installed
    (errorreplay.integrations).
    """
    global _hub, _said_disabled
    options = options_from(
        os.environ if env is None else env,
        address=address,
        service=service,
        release=release,
        environment=environment,
        resource_id=resource_id,
        token=token,
        tls=tls,
        root_certificates=root_certificates,
        sample_rate=sample_rate,
        max_breadcrumbs=max_breadcrumbs,
        queue_size=queue_size,
        batch_size=batch_size,
        timeout=timeout,
        shutdown_timeout=shutdown_timeout,
        max_backoff=max_backoff,
        give_up_after=give_up_after,
        tags=tags,
        before_send=before_send,
        default_integrations=default_integrations,
    )
    close()
    with _hub_lock:
        if not options.address:
            if not _said_disabled:
                _said_disabled = True
                log.info("errorreplay: no address given (init(address=...) or ERRORREPLAY_ADDRESS); capturing is off")
            return options
        _hub = Hub(options)
    if options.default_integrations:
        from errorreplay.integrations import excepthooks
        from errorreplay.integrations import logging as logging_integration

        excepthooks.install()
        logging_integration.install()
    return options


def is_enabled() -> bool:
    return _hub is not None


def capture_exception(
    exc: BaseException | None = None,
    *,
    severity: m.Severity.ValueType = m.SEVERITY_HIGH,
    **fields: Any,
) -> str:
    """Queue a report of `exc` (default: the exception being handled) and return its request id.

    Never raises and never waits for the network. Returns "" when nothing was queued: the SDK is not
    initialised, there is no exception, or the report was sampled out, filtered or dropped (queue full).
    Keyword arguments are ErrorReport fields (correlation_id, tags, attributes, ...).
    """
    hub = _hub
    if hub is None:
        return ""
    if exc is None:
        exc = sys.exc_info()[1]
        if exc is None:
            return ""
    try:
        last = hub.last_exception
        if last is not None and last is exc:
            return hub.last_exception_id
        request_id = hub.capture(report_from_exception(exc, severity=severity, **fields))
        hub.last_exception, hub.last_exception_id = exc, request_id
        return request_id
    except Exception:
        log.exception("errorreplay: could not capture an exception")
        return ""


def capture_message(message: str, *, severity: m.Severity.ValueType = m.SEVERITY_MEDIUM, **fields: Any) -> str:
    """Queue a report without an exception (its stack is where this was called); see capture_exception."""
    hub = _hub
    if hub is None:
        return ""
    try:
        stack = fields.pop("stack_trace", None)
        if stack is None:
            stack = "".join(traceback.format_stack()[:-1])
        report = m.ErrorReport(message=message, severity=severity, stack_trace=stack, **fields)
        return hub.capture(report)
    except Exception:
        log.exception("errorreplay: could not capture a message")
        return ""


def add_breadcrumb(
    message: str, *, level: str = "INFO", time: float | None = None, labels: Mapping[str, str] | None = None
) -> None:
    """Remember a line that the next captured errors carry as context logs (the last `max_breadcrumbs`)."""
    hub = _hub
    if hub is not None:
        hub.add_breadcrumb(message, level, time, labels or {})


def flush(timeout: float | None = 2.0) -> bool:
    """Wait up to `timeout` seconds for the queued reports to be sent; False if some are still queued."""
    hub = _hub
    return True if hub is None else hub.transport.flush(timeout)


def close(timeout: float | None = None) -> bool:
    """Flush (for at most `timeout`, default `shutdown_timeout`) and shut the SDK down."""
    global _hub
    with _hub_lock:
        hub, _hub = _hub, None
    if hub is None:
        return True
    return hub.transport.close(hub.options.shutdown_timeout if timeout is None else timeout)


def stats() -> TransportStats | None:
    """The transport's counters (sent, dropped, ...), or None when the SDK is not initialised."""
    hub = _hub
    return None if hub is None else hub.transport.stats


def current_hub() -> Hub | None:
    return _hub


atexit.register(close)
