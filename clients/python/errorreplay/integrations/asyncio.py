"""The event loop's exception handler: exceptions asyncio reports (a task's exception never
retrieved, a failing callback) are captured, then handled as before.

    import asyncio
    from errorreplay.integrations.asyncio import install
    install(asyncio.get_running_loop())
"""

from __future__ import annotations

import asyncio
from typing import Any

from errorreplay import sdk
from errorreplay.v1 import message_pb2 as m

__all__ = ["install"]


def install(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Wrap `loop`'s exception handler (default: the running loop's)."""
    loop = loop or asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        try:
            exc = context.get("exception")
            tags = {"mechanism": "asyncio"}
            if isinstance(exc, BaseException):
                sdk.capture_exception(exc, severity=m.SEVERITY_HIGH, tags=tags)
            else:
                sdk.capture_message(str(context.get("message", "asyncio error")), severity=m.SEVERITY_HIGH, tags=tags)
        finally:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
