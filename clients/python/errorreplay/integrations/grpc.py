"""gRPC server interceptors: an exception that escapes a servicer method is captured with the
method, the peer and the status code the caller receives; the caller's call ends exactly as without
the interceptor. A deliberate status (`context.abort(...)`, `context.set_code(...)`) is not an error here.

    server = grpc.aio.server(interceptors=[AioServerInterceptor()])      # grpc.aio
    server = grpc.server(executor, interceptors=[ServerInterceptor()])    # sync grpc
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from errorreplay import sdk
from errorreplay.v1 import message_pb2 as m

__all__ = ["AioServerInterceptor", "ServerInterceptor"]


def _deliberate(exc: BaseException, context: Any) -> bool:
    if isinstance(exc, grpc.aio.AbortError):
        return True
    try:
        code = context.code()
    except Exception:
        return False
    return code is not None and code != grpc.StatusCode.OK and code != 0


def _report(exc: BaseException, method: str, context: Any) -> None:
    if _deliberate(exc, context):
        return
    try:
        peer = str(context.peer())
    except Exception:
        peer = ""
    service, _, name = method.lstrip("/").rpartition("/")
    tags = {
        "mechanism": "grpc.server",
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": name,
        "rpc.grpc.status_code": grpc.StatusCode.UNKNOWN.name,
        "net.peer": peer,
    }
    sdk.capture_exception(exc, severity=m.SEVERITY_HIGH, tags=tags, attributes={"grpc_method": method})


def _rebuild(handler: grpc.RpcMethodHandler, **behaviour: Any) -> grpc.RpcMethodHandler:
    if handler.unary_unary is not None:
        factory = grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream is not None:
        factory = grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary is not None:
        factory = grpc.stream_unary_rpc_method_handler
    else:
        factory = grpc.stream_stream_rpc_method_handler
    (inner,) = behaviour.values()
    return factory(
        inner, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


def _which(handler: grpc.RpcMethodHandler) -> tuple[str, Callable[..., Any]]:
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return kind, behaviour
    raise ValueError("a method handler without a behaviour")


class AioServerInterceptor(grpc.aio.ServerInterceptor):
    """For `grpc.aio.server(interceptors=[...])`."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        kind, inner = _which(handler)
        if inspect.isasyncgenfunction(inner):

            async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
                try:
                    async for response in inner(request, context):
                        yield response
                except Exception as exc:
                    _report(exc, method, context)
                    raise

            return _rebuild(handler, **{kind: streaming})

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await inner(request, context)
            except Exception as exc:
                _report(exc, method, context)
                raise

        return _rebuild(handler, **{kind: call})


class ServerInterceptor(grpc.ServerInterceptor):
    """For `grpc.server(executor, interceptors=[...])`."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        kind, inner = _which(handler)
        if kind in ("unary_stream", "stream_stream"):

            def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    yield from inner(request, context)
                except Exception as exc:
                    _report(exc, method, context)
                    raise

            return _rebuild(handler, **{kind: streaming})

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return inner(request, context)
            except Exception as exc:
                _report(exc, method, context)
                raise

        return _rebuild(handler, **{kind: call})
