"""The Prometheus collector against a real Prometheus scraping a tiny exporter served here.

Needs /usr/bin/prometheus (Debian package `prometheus`); skipped with that reason without it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from errorreplay_server.capture.enrichment import EnrichmentQueue
from errorreplay_server.collectors.factory import build_collectors, close_collectors
from errorreplay_server.collectors.prometheus import PrometheusCollector
from errorreplay_server.collectors.promql import PromQLTemplates
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.model import MICROS_PER_SECOND, CollectionState, now_micros
from errorreplay_server.store.sqlite import SqliteStore
from tests.factories import new_error, uid

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(
    not os.access(PROMETHEUS, os.X_OK),
    reason="needs the Prometheus binary: apt-get install -y prometheus (Debian package `prometheus`)",
)

METRIC = "errorreplay_test_cpu_percent"
BASELINE_SECONDS = 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def exporter() -> Iterator[tuple[Gauge, int]]:
    registry = CollectorRegistry()
    gauge = Gauge(METRIC, "CPU of a resource, in percent", ["resource_id"], registry=registry)
    httpd, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield gauge, httpd.server_port
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
async def prometheus(tmp_path: Path, exporter: tuple[Gauge, int]) -> AsyncIterator[str]:
    _, exporter_port = exporter
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: exporter\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter_port}']\n"
    )
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=1) as client:
            deadline = time.monotonic() + 15
            while True:
                try:
                    if (await client.get("/-/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.returncode is not None or time.monotonic() > deadline:
                    pytest.fail(f"prometheus did not become ready:\n{log_path.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_for_value(url: str, selector: str, value: float, timeout: float = 10) -> None:
    """Until Prometheus has scraped `value` for the series."""
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = (await client.get("/api/v1/query", params={"query": f"{METRIC}{{{selector}}}"})).json()
            if any(float(r["value"][1]) == value for r in body["data"]["result"]):
                return
            await asyncio.sleep(0.2)
    pytest.fail(f"{METRIC}{{{selector}}} never reached {value}")


def settings(url: str) -> CollectorSettings:
    off = {kind: "" for kind in ("memory", "latency_p95", "latency_p99", "request_rate", "error_rate")}
    templates = PromQLTemplates.from_mapping(
        {
            "templates": {
                "default": {"cpu": {"query": f"max by ($group) ({METRIC}{{$selector}})", "unit": "percent"}, **off}
            }
        }
    )
    return CollectorSettings(
        prometheus_url=url,
        promql_templates=templates,
        prometheus_step_seconds=1,
        metrics_window_before=30 * MICROS_PER_SECOND,
        metrics_window_after=5 * MICROS_PER_SECOND,
        anomaly_lead_seconds=0,
        timeout_seconds=5,
    )


async def test_real_series_and_an_anomaly_when_the_gauge_jumps(
    prometheus: str, exporter: tuple[Gauge, int], tmp_path: Path
) -> None:
    gauge, _ = exporter
    # A resource id that would break out of a PromQL string if it were not escaped.
    resource_id = uid("api-") + "\"}|\\\n'"
    gauge.labels(resource_id).set(10)
    gauge.labels("other").set(99)
    escaped = 'resource_id="' + resource_id.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    await wait_for_value(prometheus, escaped, 10)
    await asyncio.sleep(BASELINE_SECONDS)
    gauge.labels(resource_id).set(95)
    at = now_micros()
    await wait_for_value(prometheus, escaped, 95)
    await asyncio.sleep(1.5)

    s = settings(prometheus)
    collector = PrometheusCollector(s)
    try:
        error = new_error(resource_id=resource_id, occurred_at=at).snapshot
        result = await collector.collect(error, s.windows.metrics.around(at))
    finally:
        await collector.aclose()
    assert result.state is CollectionState.OK, result.detail
    (series,) = result.metrics  # the other resource is not selected
    assert series.name == "cpu" and series.labels == {"resource_id": resource_id}
    values = [p.value for p in series.points]
    assert len(values) >= BASELINE_SECONDS + 2 and values[0] == 10 and values[-1] == 95
    baseline, fixed = series.anomalies
    assert baseline.value == 95 and baseline.baseline == 10 and "above its baseline" in baseline.reason
    assert fixed.value == 95 and fixed.threshold == 90 and "fixed limit" in fixed.reason
    assert baseline.time >= at

    # The same through enrichment and the store: what GetError would show.
    store = SqliteStore(tmp_path / "store.db")
    await store.start()
    collectors = build_collectors(s, store)
    queue = EnrichmentQueue.from_settings(store, collectors, s)
    await queue.start()
    try:
        captured = new_error(resource_id=resource_id, occurred_at=at)
        await store.capture([captured])
        assert queue.submit(captured.snapshot)
        assert await queue.wait_for(captured.snapshot.error_id, timeout=10)
        stored = await store.get_error(captured.snapshot.error_id)
    finally:
        await queue.stop()
        await close_collectors(collectors)
        await store.close()
    states = {st.collector: st.state for st in stored.context.statuses}
    assert states["prometheus"] is CollectionState.OK and states["loki"] is CollectionState.SKIPPED
    (stored_series,) = stored.context.metrics
    assert [a.value for a in stored_series.anomalies] == [95, 95]
