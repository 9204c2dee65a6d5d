"""An ASGI middleware: an exception that escapes the application is captured with the HTTP method
and path, then re-raised so the server answers as it would without it. It needs no package beyond the client
(the ASGI types are spelled out here), so it is opt-in by import rather than by a pip extra.

    from errorreplay.integrations.asgi import ErrorReplayMiddleware
    app = ErrorReplayMiddleware(app)                    # any ASGI app
    app.add_middleware(ErrorReplayMiddleware)           # Starlette / FastAPI
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from errorreplay import sdk
from errorreplay.v1 import message_pb2 as m

__all__ = ["ErrorReplayMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ErrorReplayMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            tags = {
                "mechanism": "asgi",
                "http.method": str(scope.get("method", "")),
                "url.path": str(scope.get("path", "")),
            }
            sdk.capture_exception(exc, severity=m.SEVERITY_HIGH, tags=tags)
            raise
