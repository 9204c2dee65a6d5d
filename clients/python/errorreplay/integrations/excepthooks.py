"""`sys.excepthook` and `threading.excepthook`: an uncaught exception is captured (CRITICAL), the
queue is flushed within the SDK's `shutdown_timeout`, and the previous hook then runs as before.

    from errorreplay.integrations import excepthooks
    excepthooks.install()
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any

from errorreplay import sdk
from errorreplay.v1 import message_pb2 as m

__all__ = ["install"]

_installed = False


def _capture_uncaught(exc: BaseException | None, thread: str | None) -> None:
    if exc is None or isinstance(exc, KeyboardInterrupt):
        return
    tags = {"mechanism": "excepthook"} if thread is None else {"mechanism": "threading.excepthook", "thread": thread}
    sdk.capture_exception(exc, severity=m.SEVERITY_CRITICAL, tags=tags)
    hub = sdk.current_hub()
    if hub is not None:
        sdk.flush(hub.options.shutdown_timeout)


def install() -> None:
    """Install both hooks once; they chain to the hooks installed before them."""
    global _installed
    if _installed:
        return
    _installed = True
    previous_sys = sys.excepthook
    previous_threading = threading.excepthook

    def sys_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        try:
            _capture_uncaught(exc, None)
        finally:
            previous_sys(exc_type, exc, tb)

    def threading_hook(args: Any) -> None:
        try:
            thread = args.thread.name if args.thread is not None else ""
            _capture_uncaught(args.exc_value, thread)
        finally:
            previous_threading(args)

    sys.excepthook = sys_hook
    threading.excepthook = threading_hook
