"""Errors as HTTP replies: every failure is a JSON body `{"error": ..., "detail": ...}`.

Domain errors get their status from the one table (api/errors.py: status_for), translated to HTTP
by HTTP_STATUS; anything unexpected is 500 without internals (the server logs it)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from google.rpc import code_pb2

from errorreplay_server.api.errors import INTERNAL_MESSAGE, status_for
from errorreplay_server.domain.errors import DomainError, InvalidArgument, ResourceExhausted

log = logging.getLogger(__name__)

HTTP_STATUS: Mapping[int, int] = {
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.NOT_FOUND: 404,
    code_pb2.FAILED_PRECONDITION: 409,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.INTERNAL: 500,
}


class HttpProblem(Exception):
    """A refusal that exists only over HTTP (body too large, unsupported encoding)."""

    def __init__(self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


def problem_response(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None, **extra: object
) -> web.Response:
    return web.json_response({"error": error, "detail": detail, **extra}, status=status, headers=headers)


def retry_after_seconds(exc: ResourceExhausted) -> int:
    return max(1, math.ceil(exc.retry_after_seconds))


def domain_response(exc: BaseException, headers: Mapping[str, str] | None = None) -> web.Response:
    status = status_for(exc)
    http_status = HTTP_STATUS.get(status.code, 500)
    extra: dict[str, object] = {}
    all_headers = dict(headers or {})
    if isinstance(exc, InvalidArgument):
        extra["violations"] = [{"field": v.field, "description": v.description} for v in exc.violations]
    if isinstance(exc, ResourceExhausted):
        all_headers.setdefault("Retry-After", str(retry_after_seconds(exc)))
    if status.code == code_pb2.UNAVAILABLE:
        all_headers.setdefault("Retry-After", "1")
    return problem_response(http_status, code_pb2.Code.Name(status.code), status.message, all_headers, **extra)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpProblem as exc:
        return problem_response(exc.status, exc.error, exc.detail, exc.headers)
    except DomainError as exc:
        return domain_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (no such route, wrong method): the same JSON shape.
        error = exc.reason.upper().replace(" ", "_")
        detail = f"{request.method} {request.path}: {exc.reason.lower()}"
        return problem_response(exc.status, error, detail, {k: v for k, v in exc.headers.items() if k == "Allow"})
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error in HTTP %s %s", request.method, request.path)
        return problem_response(500, "INTERNAL", INTERNAL_MESSAGE)
