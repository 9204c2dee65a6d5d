from __future__ import annotations

from errorreplay_server.collectors.circuit import CircuitBreaker, CircuitState


def fail(breaker: CircuitBreaker) -> None:
    permit = breaker.acquire()
    assert permit is not None
    breaker.failure(permit)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=30, clock=clock)
    for _ in range(2):
        fail(breaker)
    permit = breaker.acquire()
    assert permit is not None
    breaker.success(permit)
    assert breaker.consecutive_failures == 0 and breaker.state is CircuitState.CLOSED
    for _ in range(3):
        permit = breaker.acquire()
        assert permit is not None
        breaker.failure(permit)
    assert breaker.state is CircuitState.OPEN and breaker.times_opened == 1
    assert breaker.acquire() is None
    assert breaker.refusal_detail() == "circuit open after 3 consecutive failures; next probe in 30.0s"


def test_half_open_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=10, clock=clock)
    fail(breaker)
    clock.now += 9.9
    assert breaker.acquire() is None
    clock.now += 0.1
    assert breaker.state is CircuitState.HALF_OPEN
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    assert breaker.acquire() is None  # one probe at a time
    breaker.success(probe)
    assert breaker.state is CircuitState.CLOSED and breaker.acquire() is not None


def test_a_failed_probe_opens_for_another_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=clock)
    for _ in range(2):
        fail(breaker)
    clock.now += 10
    probe = breaker.acquire()
    assert probe is not None
    breaker.failure(probe)
    assert breaker.state is CircuitState.OPEN and breaker.times_opened == 2
    assert breaker.seconds_until_probe() == 10
    clock.now += 10
    assert breaker.acquire() is not None


def test_a_released_probe_hands_the_slot_back() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=1, clock=clock)
    fail(breaker)
    clock.now += 1
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.acquire() is not None


def test_late_failures_of_calls_started_before_opening_do_not_extend_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=10, clock=clock)
    in_flight = [breaker.acquire() for _ in range(4)]
    permits = [p for p in in_flight if p is not None]
    assert len(permits) == 4
    breaker.failure(permits[0])
    breaker.failure(permits[1])
    clock.now += 5
    breaker.failure(permits[2])
    breaker.failure(permits[3])
    assert breaker.times_opened == 1 and breaker.seconds_until_probe() == 5
