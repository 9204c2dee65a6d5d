"""A `logging.Handler`: records with `exc_info`, or at or above `level`, are captured; every record at
or above `breadcrumb_level` becomes a breadcrumb that the next captured errors carry as context logs.

    import logging
    from errorreplay.integrations.logging import ErrorReplayHandler
    logging.getLogger().addHandler(ErrorReplayHandler())
"""

from __future__ import annotations

import logging

from errorreplay import sdk
from errorreplay.v1 import message_pb2 as m

__all__ = ["ErrorReplayHandler", "install", "severity_for"]


def severity_for(levelno: int) -> m.Severity.ValueType:
    if levelno >= logging.CRITICAL:
        return m.SEVERITY_CRITICAL
    if levelno >= logging.ERROR:
        return m.SEVERITY_HIGH
    if levelno >= logging.WARNING:
        return m.SEVERITY_MEDIUM
    if levelno >= logging.INFO:
        return m.SEVERITY_LOW
    return m.SEVERITY_INFO


class ErrorReplayHandler(logging.Handler):
    """See the module docstring. The SDK's own records (logger "errorreplay") are never captured."""

    def __init__(self, level: int = logging.ERROR, breadcrumb_level: int = logging.INFO) -> None:
        super().__init__(level=min(level, breadcrumb_level))
        self.event_level = level
        self.breadcrumb_level = breadcrumb_level

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "errorreplay" or record.name.startswith("errorreplay."):
            return
        try:
            message = record.getMessage()
            exc = record.exc_info[1] if record.exc_info else None
            fields = {"tags": {"logger.name": record.name}}
            if exc is not None:
                text = f"{message}: {exc}" if str(exc) and message != str(exc) else message
                sdk.capture_exception(exc, severity=severity_for(record.levelno), message=text, **fields)
            elif record.levelno >= self.event_level:
                where = f'File "{record.pathname}", line {record.lineno}, in {record.funcName}\n'
                sdk.capture_message(message, severity=severity_for(record.levelno), stack_trace=where, **fields)
            if record.levelno >= self.breadcrumb_level:
                sdk.add_breadcrumb(
                    message, level=record.levelname, time=record.created, labels={"logger.name": record.name}
                )
        except Exception:
            self.handleError(record)


_installed: ErrorReplayHandler | None = None


def install(level: int = logging.ERROR, breadcrumb_level: int = logging.INFO) -> ErrorReplayHandler:
    """Add the handler to the root logger once. Breadcrumbs are the records that reach the root
    logger, so its level (WARNING unless the application sets it) also bounds them."""
    global _installed
    root = logging.getLogger()
    if _installed is not None and _installed in root.handlers:
        _installed.event_level = level
        _installed.breadcrumb_level = breadcrumb_level
        _installed.setLevel(min(level, breadcrumb_level))
        return _installed
    _installed = ErrorReplayHandler(level, breadcrumb_level)
    root.addHandler(_installed)
    return _installed
