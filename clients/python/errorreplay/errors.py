"""Typed errors for the direct-call clients, decoded from the server's google.rpc.Status details.

The server puts a `google.rpc.Status` in the `grpc-status-details-bin` trailer (BadRequest field
violations for INVALID_ARGUMENT, RetryInfo for RESOURCE_EXHAUSTED, ResourceInfo for NOT_FOUND). The
errors here are decoded with grpcio-status's `rpc_status.from_call`, not by parsing trailers by hand.

Every error is a `grpc.aio.AioRpcError` and a finished `grpc.Call` (so also a `grpc.RpcError`): code that
catches or inspects those keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "AlreadyExistsError",
    "DeadlineExceededError",
    "ErrorReplayError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "from_rpc_error",
    "retry_delay_of",
]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: `error.message` and why."""

    field: str
    description: str


class ErrorReplayError(grpc.aio.AioRpcError, grpc.Call):
    """A failed call, with what the server said about it.

    `field_violations` come from a BadRequest detail, `retry_delay` (seconds) from a RetryInfo
    detail, `resource_type`/`resource_name` from a ResourceInfo detail; `status` is the whole
    google.rpc.Status (None when the server sent no details).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str | None,
        initial_metadata: grpc.aio.Metadata,
        trailing_metadata: grpc.aio.Metadata,
        debug_error_string: str | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(code, initial_metadata, trailing_metadata, details, debug_error_string)
        self.status = status
        self.field_violations: list[FieldViolation] = []
        self.retry_delay: float | None = None
        self.resource_type = ""
        self.resource_name = ""
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                self.field_violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                self.retry_delay = info.retry_delay.ToTimedelta().total_seconds()
            elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
                resource = error_details_pb2.ResourceInfo()
                detail.Unpack(resource)
                self.resource_type = resource.resource_type
                self.resource_name = resource.resource_name

    # grpc.Call, for code written against the sync client's errors: the call has ended.
    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def __str__(self) -> str:
        text = f"{self.code().name}: {self.details()}"
        if self.field_violations:
            text += " (" + "; ".join(f"{v.field} {v.description}" for v in self.field_violations) + ")"
        return text


class InvalidArgumentError(ErrorReplayError):
    pass


class NotFoundError(ErrorReplayError):
    pass


class AlreadyExistsError(ErrorReplayError):
    pass


class FailedPreconditionError(ErrorReplayError):
    pass


class ResourceExhaustedError(ErrorReplayError):
    pass


class UnavailableError(ErrorReplayError):
    pass


class DeadlineExceededError(ErrorReplayError):
    pass


class UnauthenticatedError(ErrorReplayError):
    pass


class PermissionDeniedError(ErrorReplayError):
    pass


class InternalError(ErrorReplayError):
    pass


_BY_CODE: dict[grpc.StatusCode, type[ErrorReplayError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def _rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)
    except (ValueError, AttributeError):  # details inconsistent with the status, or not a grpc.Call
        return None
    return status


def _metadata(value: object) -> grpc.aio.Metadata:
    if isinstance(value, grpc.aio.Metadata):
        return value
    if value is None:
        return grpc.aio.Metadata()
    return grpc.aio.Metadata(*value)  # type: ignore[misc]


def from_rpc_error(error: grpc.RpcError) -> ErrorReplayError:
    """The typed error for a failed call (from a sync `grpc.RpcError` or a `grpc.aio.AioRpcError`)."""
    if isinstance(error, ErrorReplayError):
        return error
    code: grpc.StatusCode = error.code()
    details: str | None = error.details()
    initial = _metadata(error.initial_metadata()) if hasattr(error, "initial_metadata") else grpc.aio.Metadata()
    trailing = _metadata(error.trailing_metadata())
    debug = error.debug_error_string() if hasattr(error, "debug_error_string") else None
    cls = _BY_CODE.get(code, ErrorReplayError)
    return cls(code, details, initial, trailing, debug, _rich_status(error))


def retry_delay_of(error: grpc.RpcError) -> float | None:
    """The server's RetryInfo delay in seconds, if the error carries one."""
    return from_rpc_error(error).retry_delay
