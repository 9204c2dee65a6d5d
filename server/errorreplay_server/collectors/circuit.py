"""A circuit breaker per backend, so a dead backend costs one timeout per cool-down, not one
per error.

States: closed (calls pass), open (calls are refused until the cool-down ends), half-open (one
probe passes; its success closes the circuit, its failure opens it for another cool-down).

A refused call is reported as SKIPPED("circuit open ..."), not FAILED: nothing was attempted,
and FAILED is kept for attempts that went wrong. The detail says when the next probe is due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class CircuitState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True, frozen=True)
class Permit:
    probe: bool


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self.times_opened = 0

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.cooldown_seconds:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def seconds_until_probe(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_seconds - self._clock())

    def acquire(self) -> Permit | None:
        """A permit if a call may go ahead, else None. In half-open only the first caller gets
        one (the probe). Every permit must come back through success, failure or release."""
        state = self.state
        if state is CircuitState.CLOSED:
            return Permit(probe=False)
        if state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return Permit(probe=True)
        return None

    def success(self, permit: Permit) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self, permit: Permit) -> None:
        self._failures += 1
        if permit.probe or (self._opened_at is None and self._failures >= self.failure_threshold):
            self._opened_at = self._clock()
            self.times_opened += 1
        if permit.probe:
            self._probing = False

    def release(self, permit: Permit) -> None:
        """The call ended without a verdict on the backend (cancelled, or skipped by the
        collector itself): a probe slot is handed back, nothing else changes."""
        if permit.probe:
            self._probing = False

    def refusal_detail(self) -> str:
        return (
            f"circuit open after {self._failures} consecutive failures; next probe in {self.seconds_until_probe():.1f}s"
        )
