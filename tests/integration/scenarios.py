"""The saturation scenarios backfilled into one Prometheus: resource id -> how its metrics move.

Times are seconds relative to the error (`at`). Every resource has three hours of history
before the error and five minutes after; `daily-peak` also has the same hours a day earlier.
"""

from __future__ import annotations

from tests.integration.backfill import DAY, Curve, History, ramp, wobble

HOURS = [(-3 * 3600, 300)]
YESTERDAY = [(-DAY - 3600, -DAY + 900)]
MIN = 60
MB = 1e6

LEAK = "leak"
POD_LEAK = "pod-leak"
CPU_CLIMB = "cpu-climb"
LATENCY_CREEP = "latency-creep"
DAILY_PEAK = "daily-peak"
FIRST_PEAK = "first-peak"
SPIKE_1M = "cpu-spike-1m"
SPIKE_5M = "cpu-spike-5m"
MEMORY_STEP = "memory-step"
P99_JUMP = "p99-jump"
DB_HOST = "db-host"
DB_CALLER = "api-of-db"
ALWAYS_BUSY = "always-busy"
NOISE = "noise"
FLAT = "flat"
SPIKE_AFTER = "spike-after"


def _daily_peak(t: int) -> float:
    """20% most of the day; 20 -> 70% from 10 to 5 minutes before the error's time of day, then
    70% until 15 minutes after it."""
    tt = t + DAY if t < -DAY // 2 else t
    return ramp(tt, -10 * MIN, -5 * MIN, 20.0, 70.0) if tt < 15 * MIN else 20.0


def build(at: int) -> History:
    h = History(at)
    calm = wobble(0.02, seed=1)

    def step(before: float, after: float, from_t: int, noise: float = 0.02) -> Curve:
        w = wobble(noise, seed=int(before))
        return lambda t: after if t >= from_t else before * w(t)

    def leak_memory(t: int) -> float:
        return 210 * MB * calm(t) if t < -15 * MIN else ramp(t, -15 * MIN, 0, 210 * MB, 1050 * MB)

    h.gauge("process_resident_memory_bytes", f'resource_id="{LEAK}"', leak_memory, HOURS)
    h.cpu_percent_of_core(LEAK, lambda t: 20 * calm(t), HOURS)

    # A container leaking towards its 1 GB memory limit: 300 MB, then 300 MB -> 950 MB.
    pod = f'resource_id="{POD_LEAK}",container="app"'
    h.gauge(
        "container_memory_working_set_bytes",
        pod,
        lambda t: 300 * MB * calm(t) if t < -15 * MIN else ramp(t, -15 * MIN, 0, 300 * MB, 950 * MB),
        HOURS,
    )
    h.gauge("container_spec_memory_limit_bytes", pod, lambda t: 1000 * MB, HOURS)

    h.cpu_percent_of_core(
        CPU_CLIMB, lambda t: 20 * calm(t) if t < -15 * MIN else ramp(t, -15 * MIN, 0, 20.0, 80.0), HOURS
    )
    h.latency(LATENCY_CREEP, lambda t: 0.2 * calm(t) if t < -15 * MIN else ramp(t, -15 * MIN, 0, 0.2, 1.0), HOURS)
    h.cpu_percent_of_core(DAILY_PEAK, lambda t: _daily_peak(t) * calm(t), HOURS + YESTERDAY)
    h.cpu_percent_of_core(FIRST_PEAK, lambda t: _daily_peak(t) * calm(t), HOURS)

    h.cpu_percent_of_core(SPIKE_1M, step(15.0, 95.0, -1 * MIN), HOURS)
    h.cpu_percent_of_core(SPIKE_5M, step(15.0, 95.0, -5 * MIN), HOURS)
    h.gauge("process_resident_memory_bytes", f'resource_id="{MEMORY_STEP}"', step(300 * MB, 900 * MB, -3 * MIN), HOURS)
    h.latency(P99_JUMP, step(0.1, 1.5, -2 * MIN), HOURS)
    h.host_cpu_percent(DB_HOST, step(35.0, 99.0, -3 * MIN), HOURS)

    h.cpu_percent_of_core(ALWAYS_BUSY, lambda t: 85 * calm(t), HOURS)
    noisy = wobble(0.10, seed=7)
    h.cpu_percent_of_core(NOISE, lambda t: 50 * noisy(t), HOURS)
    h.gauge("process_resident_memory_bytes", f'resource_id="{NOISE}"', lambda t: 500 * MB * noisy(t), HOURS)
    h.cpu_percent_of_core(FLAT, lambda t: 30.0, HOURS)
    h.gauge("process_resident_memory_bytes", f'resource_id="{FLAT}"', lambda t: 400 * MB, HOURS)
    h.cpu_percent_of_core(SPIKE_AFTER, step(15.0, 95.0, 2 * MIN), HOURS)
    return h
