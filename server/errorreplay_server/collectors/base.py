"""The one interface every context collector implements, and the value it returns."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar

from errorreplay_server.domain.model import (
    Change,
    CollectionState,
    ErrorSnapshot,
    LogLine,
    MetricSeries,
    Micros,
    Span,
    Topology,
)


@dataclass(slots=True, frozen=True)
class Window:
    """A closed time range [start, end] in epoch microseconds."""

    start: Micros
    end: Micros

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends before it starts: {self.start} > {self.end}")


@dataclass(slots=True, frozen=True)
class WindowSpec:
    """How far a source looks before and after the moment of the error (docs/ARCHITECTURE.md §1)."""

    before: Micros
    after: Micros

    def around(self, at: Micros) -> Window:
        return Window(at - self.before, at + self.after)


class Windows(NamedTuple):
    """The window of each source (CollectorSettings.windows)."""

    logs: WindowSpec
    metrics: WindowSpec
    changes: WindowSpec
    topology: WindowSpec


@dataclass(slots=True)
class CollectorResult:
    """One collector's part of the context, with its outcome.

    `detail` explains FAILED and SKIPPED, and notes partial failures on OK."""

    state: CollectionState
    detail: str = ""
    logs: list[LogLine] = field(default_factory=list)
    metrics: list[MetricSeries] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    topology: Topology | None = None
    changes: list[Change] = field(default_factory=list)

    @classmethod
    def failed(cls, reason: str) -> CollectorResult:
        return cls(CollectionState.FAILED, reason)

    @classmethod
    def skipped(cls, reason: str) -> CollectorResult:
        return cls(CollectionState.SKIPPED, reason)

    @classmethod
    def empty(cls, detail: str = "") -> CollectorResult:
        return cls(CollectionState.EMPTY, detail)


class Collector(Protocol):
    """Collects one source's context around an error.

    `collect` does not raise for backend trouble: it returns FAILED with a reason. The enrichment
    queue applies the timeout and the circuit breaker around it, so collectors stay simple."""

    name: str
    window_spec: WindowSpec

    async def collect(self, error: ErrorSnapshot, window: Window) -> CollectorResult: ...

    async def aclose(self) -> None:
        """Release the collector's HTTP client; the store is closed by its owner."""


class CollectorFailure(Exception):
    """Raised inside a collector to end it as FAILED(str(exc))."""


def error_time(error: ErrorSnapshot) -> Micros:
    """The moment the context is centred on: when it happened, else when we heard of it."""
    return error.report.occurred_at or error.received_at


_C = TypeVar("_C")
_P = ParamSpec("_P")


def reports_failures(
    collect: Callable[Concatenate[_C, _P], Coroutine[Any, Any, CollectorResult]],
) -> Callable[Concatenate[_C, _P], Coroutine[Any, Any, CollectorResult]]:
    """Turn a CollectorFailure raised anywhere inside `collect` into FAILED(reason)."""

    @functools.wraps(collect)
    async def wrapper(self: _C, /, *args: _P.args, **kwargs: _P.kwargs) -> CollectorResult:
        try:
            return await collect(self, *args, **kwargs)
        except CollectorFailure as exc:
            return CollectorResult.failed(str(exc))

    return wrapper
