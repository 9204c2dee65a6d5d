"""Integrations: each captures errors from one place in a few lines of set-up.

- `errorreplay.integrations.logging`: a `logging.Handler` (captures, and keeps breadcrumbs);
- `errorreplay.integrations.excepthooks`: `sys.excepthook` and `threading.excepthook`;
- `errorreplay.integrations.asyncio`: the event loop's exception handler;
- `errorreplay.integrations.grpc`: `grpc.aio` and sync server interceptors;
- `errorreplay.integrations.asgi`: an ASGI middleware (the `asgi` extra).

`errorreplay.init()` installs the logging handler and the excepthooks unless `default_integrations=False`.
"""
