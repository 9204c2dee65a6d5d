"""A real Alertmanager (Debian's `prometheus-alertmanager`) notifies errorreplay through its webhook.

The test posts an alert to Alertmanager's v2 API and lets Alertmanager do the rest: the firing
notification (repeated every few seconds), the resolved one, and a re-fire. Needs
/usr/bin/prometheus-alertmanager (`.ci/run` installs it); skipped with that reason without it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.security_settings import SecuritySettings
from tests.e2e.server_process import free_port
from tests.http.conftest import Http, http_server, http_settings

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
pytestmark = pytest.mark.skipif(
    not Path(ALERTMANAGER).exists(), reason="needs prometheus-alertmanager (apt install prometheus-alertmanager)"
)
WRITER_TOKEN = "am-writer-7f3a9c"
WAIT = 120.0  # an upper bound for Alertmanager to act, not a timing assertion

CONFIG = """
route:
  receiver: errorreplay
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: errorreplay
    webhook_configs:
      - url: http://127.0.0.1:{port}/alertmanager/webhook
        send_resolved: true
        http_config:
          authorization:
            credentials: {token}
"""


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def start_alertmanager(tmp_path: Path, webhook_port: int, port: int) -> subprocess.Popen[bytes]:
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(port=webhook_port, token=WRITER_TOKEN))
    with open(tmp_path / "alertmanager.log", "wb") as log:
        return subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip port: one instance
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@asynccontextmanager
async def alertmanager(tmp_path: Path, webhook_port: int) -> AsyncIterator[str]:
    port = free_port()
    process = start_alertmanager(tmp_path, webhook_port, port)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
                try:
                    async with session.get(f"{url}/-/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 10)


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"Alertmanager never got there: {what}")
        await asyncio.sleep(0.2)


def alerts_counted(h: Http, status: str, outcome: str) -> float:
    return (
        h.running.metrics.get_sample_value(
            "errorreplay_alertmanager_alerts_total", {"status": status, "outcome": outcome}
        )
        or 0
    )


async def post_alert(url: str, starts_at: datetime, ends_at: datetime | None = None) -> None:
    alert: dict[str, object] = {
        "labels": {"alertname": "CheckoutErrors", "service": "checkout-api", "severity": "critical", "team": "pay"},
        "annotations": {"summary": "checkout 5xx above 5% for 2m", "description": "see the dashboard"},
        "startsAt": rfc3339(starts_at),
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rate",
    }
    if ends_at is not None:
        alert["endsAt"] = rfc3339(ends_at)
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/v2/alerts", json=[alert]) as r:
        assert r.status == 200, await r.text()


async def the_group(h: Http) -> m.ErrorGroup:
    groups = (await h.errors.ListErrorGroups(rr.ListErrorGroupsRequest(), timeout=10)).groups
    (group,) = [g for g in groups if g.error_type == "CheckoutErrors"]
    return group


async def test_a_real_alertmanager_fires_repeats_resolves_and_refires(tmp_path: Path) -> None:
    security = SecuritySettings(tokens=(TokenGrant(Role.WRITER, WRITER_TOKEN),))
    async with (
        http_server(http_settings(tmp_path / "errorreplay", security)) as h,
        alertmanager(tmp_path, h.port) as url,
    ):
        started = datetime.now(UTC)
        await post_alert(url, started)
        # Alertmanager repeats the firing notification; the episode is stored once.
        await until(lambda: _at_least(alerts_counted(h, "firing", "duplicate"), 1), "a repeated notification")
        assert alerts_counted(h, "firing", "captured") == 1
        found = await h.errors.SearchErrors(rr.SearchErrorsRequest(filter={"sources": [m.SOURCE_PROMETHEUS]}))
        (error,) = found.errors
        r = error.report
        assert (r.message, r.resource_id, r.severity) == (
            "checkout 5xx above 5% for 2m",
            "checkout-api",
            m.SEVERITY_CRITICAL,
        )
        assert r.tags["team"] == "pay" and r.attributes["generator_url"].startswith("http://prometheus.example")
        assert abs(r.occurred_at.ToMicroseconds() - int(started.timestamp() * 1_000_000)) < 1000

        # Resolved: the group goes RESOLVED.
        await post_alert(url, started, ends_at=datetime.now(UTC))
        await until(lambda: _at_least(alerts_counted(h, "resolved", "resolved"), 1), "the resolved notification")
        assert (await the_group(h)).status == m.ERROR_GROUP_STATUS_RESOLVED

        # Fires again (a new startsAt): a second error, and the group reopens as a regression.
        await post_alert(url, datetime.now(UTC))
        await until(lambda: _at_least(alerts_counted(h, "firing", "captured"), 2), "the re-fire")
        group = await the_group(h)
        assert group.status == m.ERROR_GROUP_STATUS_OPEN and group.regression and group.count == 2


async def _at_least(value: float, minimum: float) -> bool:
    return value >= minimum


async def test_the_webhook_needs_a_writer_token(tmp_path: Path) -> None:
    security = SecuritySettings(tokens=(TokenGrant(Role.WRITER, WRITER_TOKEN), TokenGrant(Role.READER, "reader-only")))
    body = {"version": "4", "alerts": []}
    async with http_server(http_settings(tmp_path, security)) as h:
        hook = h.url("/alertmanager/webhook")
        for headers, status in (
            ({}, 401),
            ({"Authorization": "Bearer wrong"}, 401),
            ({"Authorization": "Bearer reader-only"}, 403),
            ({"Authorization": f"Bearer {WRITER_TOKEN}"}, 200),
        ):
            async with h.session.post(hook, json=body, headers=headers) as r:
                assert r.status == status, await r.text()
        async with h.session.post(hook, data=b"{bad json", headers={"Authorization": f"Bearer {WRITER_TOKEN}"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "INVALID_ARGUMENT"
