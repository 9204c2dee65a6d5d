"""Domain exceptions. The api layer maps each to one gRPC status code, in one table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    """Base of every error the api layer knows how to report."""


class InvalidArgument(DomainError):
    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def single(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(DomainError):
    def __init__(self, kind: str, identifier: str) -> None:
        self.kind = kind
        self.identifier = identifier
        super().__init__(f"{kind} {identifier!r} not found")


class ResourceExhausted(DomainError):
    def __init__(self, message: str, retry_after_seconds: float = 1.0, resume_after: str = "") -> None:
        self.retry_after_seconds = retry_after_seconds
        # A stream that ended this way resumes from this cursor without gap or duplicate.
        self.resume_after = resume_after
        super().__init__(message)


class OutOfRange(DomainError):
    """A position past the end of what exists, such as a stream cursor newer than the newest error."""

    def __init__(self, field: str, description: str) -> None:
        self.field = field
        self.description = description
        super().__init__(f"{field}: {description}")


class StoreUnavailable(DomainError):
    """The store cannot be reached; the client may retry with the same request_id."""


class StampTaken(StoreUnavailable):
    """Another server sharing the store committed a capture with the same received_at (replicas
    stamp with their own clocks): the capture layer stamps again and retries. Left over after
    its retries, it is UNAVAILABLE like any store failure."""


class ShuttingDown(DomainError):
    """The server is draining; the client should reconnect (to this or another replica)."""


class FailedPrecondition(DomainError):
    pass


class Unimplemented(DomainError):
    pass


class DeadlineExceeded(DomainError):
    pass


class Unauthenticated(DomainError):
    """No valid credentials: missing or malformed authorization metadata, or an unknown token."""


class PermissionDenied(DomainError):
    """Valid credentials whose role does not allow the call."""
