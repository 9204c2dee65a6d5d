"""errorreplay client.

Set up once, then capture inside `except`; nothing raises into the application::

    import errorreplay
    errorreplay.init(address="errorreplay:50051", service="checkout", release="1.4.2")
    try:
        ...
    except Exception:
        errorreplay.capture_exception()

Integrations live in `errorreplay.integrations` (logging, excepthooks, asyncio, gRPC servers, ASGI).
For direct calls there are `ErrorReplayClient` (asyncio) and `SyncErrorReplayClient` over the generated
stubs in `errorreplay.v1`; their failures are the typed errors of `errorreplay.errors`.
"""

from errorreplay.client import DEFAULT_TIMEOUT, ErrorReplayClient, RetryPolicy, report_from_exception
from errorreplay.errors import ErrorReplayError, FieldViolation, InvalidArgumentError
from errorreplay.sdk import (
    Options,
    add_breadcrumb,
    capture_exception,
    capture_message,
    close,
    flush,
    init,
    is_enabled,
    stats,
)
from errorreplay.sync_client import SyncErrorReplayClient

__version__ = "0.2.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "ErrorReplayClient",
    "ErrorReplayError",
    "FieldViolation",
    "InvalidArgumentError",
    "Options",
    "RetryPolicy",
    "SyncErrorReplayClient",
    "__version__",
    "add_breadcrumb",
    "capture_exception",
    "capture_message",
    "close",
    "flush",
    "init",
    "is_enabled",
    "report_from_exception",
    "stats",
]
