"""A real Prometheus holding hours of generated history, backfilled with promtool.

`promtool tsdb create-blocks-from openmetrics FILE DIR` turns OpenMetrics text into TSDB blocks;
a Prometheus started on DIR (no scrape targets) serves them through the real query API. Samples
are placed relative to now, inside the retention, every STEP_SECONDS.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HAVE_PROMETHEUS = os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)
NEEDS_PROMETHEUS = "needs prometheus and promtool: apt-get install -y prometheus (Debian package `prometheus`)"

STEP_SECONDS = 15
DAY = 86_400
# Latency histogram buckets (seconds), as a typical HTTP middleware exposes them.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUESTS_PER_STEP = 150  # 10 requests/s

Curve = Callable[[int], float]  # seconds relative to the error -> value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wobble(amplitude: float, seed: int = 0) -> Callable[[int], float]:
    """A deterministic wobble in [-amplitude, +amplitude] (relative), like scrape-to-scrape noise."""

    def factor(t: int) -> float:
        x = math.sin(t * 12.9898 + seed * 78.233) * 43758.5453
        return 1.0 + amplitude * (2.0 * (x - math.floor(x)) - 1.0)

    return factor


def ramp(t: int, start: int, end: int, low: float, high: float) -> float:
    """low before `start`, high after `end`, linear between."""
    if t <= start:
        return low
    if t >= end:
        return high
    return low + (high - low) * (t - start) / (end - start)


@dataclass
class History:
    """Series to backfill. Times are seconds relative to `at` (the error's time, a multiple of
    STEP_SECONDS), sampled over `spans` (relative start, end) pairs."""

    at: int
    lines: dict[str, list[str]] = field(default_factory=dict)  # family header -> samples

    def _add(self, family: str, kind: str, sample: str) -> None:
        self.lines.setdefault(f"# TYPE {family} {kind}", []).append(sample)

    def gauge(self, name: str, labels: str, curve: Curve, spans: list[tuple[int, int]]) -> None:
        for t in _times(spans):
            self._add(name, "gauge", f"{name}{{{labels}}} {curve(t):.6g} {self.at + t}")

    def counter(self, name: str, labels: str, per_second: Curve, spans: list[tuple[int, int]]) -> None:
        """A counter whose rate follows `per_second`."""
        for first, last in spans:
            total = 1000.0
            for t in _times([(first, last)]):
                total += per_second(t) * STEP_SECONDS
                self._add(name, "counter", f"{name}_total{{{labels}}} {total:.6f} {self.at + t}")

    def cpu_percent_of_core(self, resource: str, curve: Curve, spans: list[tuple[int, int]]) -> None:
        """process_cpu_seconds_total whose rate × 100 follows `curve`."""
        self.counter("process_cpu_seconds", f'resource_id="{resource}"', lambda t: curve(t) / 100.0, spans)

    def host_cpu_percent(self, resource: str, curve: Curve, spans: list[tuple[int, int]]) -> None:
        """node_cpu_seconds_total{mode="idle"} of a one-CPU host busy `curve` percent."""
        labels = f'resource_id="{resource}",cpu="0",mode="idle"'
        self.counter("node_cpu_seconds", labels, lambda t: 1.0 - curve(t) / 100.0, spans)

    def latency(self, resource: str, typical: Curve, spans: list[tuple[int, int]]) -> None:
        """http_request_duration_seconds: 10 requests/s, latencies spread evenly over
        [0.5, 1.5] × typical(t)."""
        name = "http_request_duration_seconds"
        for first, last in spans:
            counts = [0.0] * (len(BUCKETS) + 1)
            total = 0.0
            for t in _times([(first, last)]):
                low, high = 0.5 * typical(t), 1.5 * typical(t)
                for i, bound in enumerate(BUCKETS):
                    counts[i] += REQUESTS_PER_STEP * min(1.0, max(0.0, (bound - low) / (high - low)))
                counts[-1] += REQUESTS_PER_STEP
                total += REQUESTS_PER_STEP * typical(t)
                stamp = self.at + t
                for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                    self._add(
                        name, "histogram", f'{name}_bucket{{resource_id="{resource}",le="{bound}"}} {count:.3f} {stamp}'
                    )
                self._add(name, "histogram", f'{name}_count{{resource_id="{resource}"}} {counts[-1]:.3f} {stamp}')
                self._add(name, "histogram", f'{name}_sum{{resource_id="{resource}"}} {total:.3f} {stamp}')

    def openmetrics(self) -> str:
        out: list[str] = []
        for header, samples in self.lines.items():
            out.append(header)
            out.extend(samples)
        out.append("# EOF")
        return "\n".join(out) + "\n"


def _times(spans: list[tuple[int, int]]) -> Iterator[int]:
    for first, last in spans:
        yield from range(first, last + 1, STEP_SECONDS)


@contextmanager
def backfilled_prometheus(history: History, workdir: Path) -> Iterator[str]:
    """A Prometheus serving `history`; yields its URL."""
    source = workdir / "history.om"
    source.write_text(history.openmetrics())
    data = workdir / "data"
    made = subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise RuntimeError(f"promtool failed: {made.stderr[-2000:]}")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                "--storage.tsdb.retention.time=30d",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=2) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/-/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prometheus did not become ready:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
