"""The one table from domain exceptions to gRPC status codes, applied by one interceptor."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from errorreplay.v1 import message_pb2
from errorreplay_server.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    ShuttingDown,
    StoreUnavailable,
    Unauthenticated,
    Unimplemented,
)
from errorreplay_server.metrics import RpcMetrics

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error; the server logged the details"
ERROR_DOMAIN = "errorreplay.v1"
# google.rpc.ErrorInfo reason of a stream ended for a slow reader; metadata["resume_after"] is the cursor.
SUBSCRIBER_TOO_SLOW = "SUBSCRIBER_TOO_SLOW"


def status_for(exc: BaseException) -> status_pb2.Status:
    """The google.rpc.Status for an exception. Anything unexpected is INTERNAL, with no internals."""
    if isinstance(exc, InvalidArgument):
        bad = error_details_pb2.BadRequest()
        for v in exc.violations:
            bad.field_violations.add(field=v.field, description=v.description)
        return _status(code_pb2.INVALID_ARGUMENT, f"invalid argument: {exc}", bad)
    if isinstance(exc, NotFound):
        info = error_details_pb2.ResourceInfo(resource_type=exc.kind, resource_name=exc.identifier)
        return _status(code_pb2.NOT_FOUND, str(exc), info)
    if isinstance(exc, ResourceExhausted):
        retry = error_details_pb2.RetryInfo(retry_delay=_duration(exc.retry_after_seconds))
        if not exc.resume_after:
            return _status(code_pb2.RESOURCE_EXHAUSTED, str(exc), retry)
        resume = error_details_pb2.ErrorInfo(
            reason=SUBSCRIBER_TOO_SLOW, domain=ERROR_DOMAIN, metadata={"resume_after": exc.resume_after}
        )
        return _status(code_pb2.RESOURCE_EXHAUSTED, str(exc), retry, resume)
    if isinstance(exc, OutOfRange):
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field=exc.field, description=exc.description)
        return _status(code_pb2.OUT_OF_RANGE, str(exc), bad)
    if isinstance(exc, StoreUnavailable):
        return _status(code_pb2.UNAVAILABLE, f"store unavailable, retry with the same request_id: {exc}")
    if isinstance(exc, ShuttingDown):
        return _status(code_pb2.UNAVAILABLE, str(exc))
    if isinstance(exc, FailedPrecondition):
        return _status(code_pb2.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, Unimplemented):
        return _status(code_pb2.UNIMPLEMENTED, str(exc))
    if isinstance(exc, DeadlineExceeded):
        return _status(code_pb2.DEADLINE_EXCEEDED, str(exc))
    if isinstance(exc, Unauthenticated):
        return _status(code_pb2.UNAUTHENTICATED, str(exc))
    if isinstance(exc, PermissionDenied):
        return _status(code_pb2.PERMISSION_DENIED, str(exc))
    return _status(code_pb2.INTERNAL, INTERNAL_MESSAGE)


def fill_item_error(exc: BaseException, out: message_pb2.ItemError) -> None:
    """One failed item of a batch: the status a single call would have ended with (`status_for`),
    its details, and the BadRequest field violations repeated as `field_violations`."""
    if not isinstance(exc, DomainError):
        log.error("unexpected error in a batch item", exc_info=exc)
    status = status_for(exc)
    out.code = status.code
    out.message = status.message
    out.details.extend(status.details)
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            for v in bad.field_violations:
                out.field_violations.add(field=v.field, description=v.description)


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def _status(code: int, message: str, *details: Any) -> status_pb2.Status:
    st = status_pb2.Status(code=code, message=message)
    for detail in details:
        st.details.add().Pack(detail)
    return st


async def abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> NoReturn:
    if not isinstance(exc, DomainError):
        log.error("unexpected error in %s", method, exc_info=exc)
    await context.abort_with_status(rpc_status.to_status(status_for(exc)))
    raise AssertionError("grpc.aio abort_with_status raises")  # unreachable; its stub is untyped


def _code_name(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    if isinstance(exc, grpc.aio.AbortError):
        return "ABORTED_BY_HANDLER"
    return code_pb2.Code.Name(status_for(exc).code)


MALFORMED_REQUEST = "the request is not a valid protobuf message of this method's request type"


class MalformedRequest:
    """Stands in for request bytes that do not parse, so that the call ends INVALID_ARGUMENT.

    gRPC parses the request before any handler runs; left alone, a parse failure ends the call
    UNKNOWN with the parser's exception text, and is logged as a server error."""

    __slots__ = ()


_MALFORMED = MalformedRequest()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:  # DecodeError, including nesting deeper than the parser's recursion limit
            return _MALFORMED

    return parse


async def _abort_malformed(context: grpc.aio.ServicerContext, method: str) -> None:
    await abort_for(InvalidArgument.single("request", MALFORMED_REQUEST), context, method)


def _parse_guarded(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """Another service's handler (health), with only the parse guard: its errors are its own to map."""
    inner = handler.unary_unary or handler.unary_stream
    if inner is None or handler.request_deserializer is None:
        return handler

    if inspect.isasyncgenfunction(inner):

        async def guarded_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if request is _MALFORMED:
                await _abort_malformed(context, method)
            async for item in inner(request, context):
                yield item

        guarded: Callable[..., Any] = guarded_stream
    else:

        async def guarded_call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request is _MALFORMED:
                await _abort_malformed(context, method)
            return await inner(request, context)

        guarded = guarded_call
    make = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.unary_stream_rpc_method_handler
    return make(
        guarded,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def _passes_through(exc: BaseException) -> bool:
    # Aborts already carry their status; cancellation must propagate.
    return isinstance(exc, grpc.aio.AbortError | asyncio.CancelledError)


MAPPED_PREFIXES = ("/errorreplay.", "/opentelemetry.proto.collector.")
"""errorreplay's own services and the OTLP receiver (api/otlp.py): their errors map via `status_for`."""


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every errorreplay and OTLP handler so that exceptions become statuses via `status_for`."""

    def __init__(self, metrics: RpcMetrics | None = None, prefixes: tuple[str, ...] = MAPPED_PREFIXES) -> None:
        self._metrics = metrics
        self._prefixes = prefixes
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        # Other services (health) get only the parse guard: their errors are theirs to map.
        guard = self._wrap if method.startswith(self._prefixes) else _parse_guarded
        wrapped = guard(handler, method)
        self._wrapped[method] = wrapped
        return wrapped

    def _awaited(self, inner: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        """Wraps a handler that returns its result (unary) or writes with context.write (stream)."""

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request is _MALFORMED:
                await _abort_malformed(context, method)
            started = time.perf_counter()
            try:
                result = await inner(request, context)
            except BaseException as exc:
                # Counted before aborting: the abort sends the status, so a client may read the
                # metrics the moment its call ends.
                self._observe(method, _code_name(exc), started)
                if _passes_through(exc):
                    raise
                await abort_for(exc, context, method)
            self._observe(method, "OK", started)
            return result

        return handle

    def _observe(self, method: str, code: str, started: float) -> None:
        if self._metrics is not None:
            self._metrics.observe(method, code, time.perf_counter() - started)

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._awaited(handler.unary_unary, method),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            # errorreplay's streaming handlers write with context.write() (so a blocked write can be
            # abandoned) and may write pre-encoded bytes (convert.StreamEncoder), passed through.
            serialize = handler.response_serializer

            def serialize_or_pass(message: Any) -> bytes:
                return message if type(message) is bytes else serialize(message)

            return grpc.unary_stream_rpc_method_handler(
                self._awaited(handler.unary_stream, method),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=serialize_or_pass,
            )
        return handler
