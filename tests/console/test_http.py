"""The console's auth, cookie, CSRF and header rules over plain HTTP (aiohttp client, no browser)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay_server.console.session import TOKEN_COOKIE
from errorreplay_server.server import RunningServer, start_server
from tests.console.conftest import Tokens, console_settings

XSS = "<script>alert(1)</script><img src=x onerror=alert(1)>"


@pytest.fixture
def tokens() -> Tokens:
    return Tokens.new()


@pytest.fixture
async def running(tmp_path: Path, tokens: Tokens) -> AsyncIterator[RunningServer]:
    server = await start_server(console_settings(tmp_path, tokens.security()))
    try:
        yield server
    finally:
        await server.stop(grace=None)


def base(server: RunningServer) -> str:
    assert server.http is not None
    return f"http://127.0.0.1:{server.http.port}"


async def csrf_of(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url, allow_redirects=False) as r:
        html = await r.text()
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def signed_in(url: str, token: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    csrf = await csrf_of(session, url + "/signin")
    async with session.post(
        url + "/signin", data={"token": token, "csrf_token": csrf, "next": "/"}, allow_redirects=False
    ) as r:
        assert r.status == 303
    return session


async def test_pages_need_a_reader_token(running: RunningServer, tokens: Tokens) -> None:
    url = base(running)
    async with aiohttp.ClientSession() as anonymous:
        for path in ("/", "/errors/x", "/live", "/statistics"):
            async with anonymous.get(url + path, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"].startswith("/signin?next=")
        async with anonymous.get(url + "/live/events") as r:
            assert r.status == 401
        async with anonymous.get(url + "/healthz") as r:
            assert r.status == 200  # the listener's other routes keep their own rules
    writer_only = await signed_in(url, tokens.writer)
    async with writer_only, writer_only.get(url + "/") as r:
        assert r.status == 403 and "reader role" in await r.text()
    reader = await signed_in(url, tokens.reader)
    async with reader, reader.get(url + "/") as r:
        assert r.status == 200


async def test_sign_in_sets_an_httponly_samesite_strict_cookie_and_refuses_bad_tokens(
    running: RunningServer, tokens: Tokens
) -> None:
    url = base(running)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        csrf = await csrf_of(session, url + "/signin")
        async with session.post(
            url + "/signin", data={"token": "wrong", "csrf_token": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 401 and "wrong" not in await r.text()
        async with session.post(
            url + "/signin", data={"token": tokens.reader, "csrf_token": "forged"}, allow_redirects=False
        ) as r:
            assert r.status == 403 and TOKEN_COOKIE not in r.cookies
        async with session.post(
            url + "/signin",
            data={"token": tokens.reader, "csrf_token": csrf, "next": "//evil.example/"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
            cookie = r.cookies[TOKEN_COOKIE]
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
            assert not cookie["secure"]  # no TLS on this listener
        async with session.get(url + "/") as r:
            html = await r.text()
            assert r.status == 200 and tokens.reader not in html
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        csrf = await csrf_of(session, url + "/")
        async with session.post(url + "/signout", data={"csrf_token": csrf}, allow_redirects=False) as r:
            assert r.status == 303
        async with session.get(url + "/", allow_redirects=False) as r:
            assert r.status == 303


async def test_group_actions_need_the_writer_role_and_the_csrf_token(running: RunningServer, tokens: Tokens) -> None:
    url = base(running)
    from errorreplay.client import ErrorReplayClient

    async with ErrorReplayClient(f"127.0.0.1:{running.port}", token=tokens.admin) as client:
        captured = await client.capture(
            m.ErrorReport(message="act", severity=m.SEVERITY_HIGH, source=m.SOURCE_APPLICATION)
        )
        group_id = captured.group_id

        async def status() -> int:
            groups = (await client.list_groups(page_size=100)).groups
            return next(g.status for g in groups if g.group_id == group_id)

        action = url + f"/groups/{group_id}/status"
        reader = await signed_in(url, tokens.reader)
        async with reader:
            csrf = await csrf_of(reader, url + "/")
            async with reader.post(action, data={"action": "resolve", "csrf_token": csrf}, allow_redirects=False) as r:
                assert r.status == 403 and "writer role" in await r.text()
        assert await status() == m.ERROR_GROUP_STATUS_OPEN

        writer = await signed_in(url, tokens.read_write)
        async with writer:
            async with writer.post(action, data={"action": "resolve"}, allow_redirects=False) as r:
                assert r.status == 403 and "CSRF" in await r.text()
            async with writer.post(
                action, data={"action": "resolve", "csrf_token": "forged"}, allow_redirects=False
            ) as r:
                assert r.status == 403
            assert await status() == m.ERROR_GROUP_STATUS_OPEN
            csrf = await csrf_of(writer, url + "/")
            async with writer.get(action) as r:
                assert r.status == 405  # actions are POST only
            async with writer.post(
                action, data={"action": "mute", "csrf_token": csrf, "next": "/?status=muted"}, allow_redirects=False
            ) as r:
                assert r.status == 303 and r.headers["Location"] == "/?status=muted"
        assert await status() == m.ERROR_GROUP_STATUS_MUTED


async def test_hostile_values_are_escaped_in_the_html(running: RunningServer, tokens: Tokens) -> None:
    url = base(running)
    from errorreplay.client import ErrorReplayClient

    async with ErrorReplayClient(f"127.0.0.1:{running.port}", token=tokens.admin) as client:
        captured = await client.capture(
            m.ErrorReport(
                message=XSS,
                severity=m.SEVERITY_HIGH,
                source=m.SOURCE_APPLICATION,
                stack_trace=XSS,
                tags={"k": XSS},
                service="svc",
            )
        )
    reader = await signed_in(url, tokens.reader)
    async with reader:
        for path in (f"/errors/{captured.error_id}", "/?service=svc", "/live?service=svc", "/?text=" + XSS):
            async with reader.get(url + path) as r:
                html = await r.text()
                assert r.status == 200
                assert "<script>alert" not in html and "<img src=x" not in html
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_groups_page_follows_the_api_page_tokens(running: RunningServer, tokens: Tokens) -> None:
    url = base(running)
    from errorreplay.client import ErrorReplayClient

    async with ErrorReplayClient(f"127.0.0.1:{running.port}", token=tokens.admin) as client:
        for i in range(30):
            await client.capture(
                m.ErrorReport(
                    message="page", error_type=f"Kind{i}", severity=m.SEVERITY_LOW, source=m.SOURCE_APPLICATION
                )
            )
    reader = await signed_in(url, tokens.reader)
    async with reader:
        async with reader.get(url + "/") as r:
            first = await r.text()
        assert first.count('class="group-row"') == 25
        found = re.search(r'href="\?([^"]+)" id="next-page"', first)
        assert found, "a second page is linked"
        async with reader.get(url + "/?" + found.group(1).replace("&amp;", "&")) as r:
            second = await r.text()
        assert second.count('class="group-row"') == 5 and 'id="next-page"' not in second
        kinds = set(re.findall(r"Kind\d+", first)) | set(re.findall(r"Kind\d+", second))
        assert len(kinds) == 30
        async with reader.get(url + "/?status=resolved") as r:
            assert 'class="group-row"' not in await r.text()
        async with reader.get(url + "/?status=bogus") as r:
            assert r.status == 400 and "status" in await r.text()


async def test_a_search_says_more_than_the_count_limit(tmp_path: Path, tokens: Tokens) -> None:

    from errorreplay.client import ErrorReplayClient
    from errorreplay_server.settings import Limits

    settings = console_settings(tmp_path, tokens.security())
    server = await start_server(settings.model_copy(update={"limits": Limits(search_count_limit=3)}))
    try:
        async with ErrorReplayClient(f"127.0.0.1:{server.port}", token=tokens.admin) as client:
            for i in range(30):
                await client.capture(
                    m.ErrorReport(message=f"overflow {i % 2}", severity=m.SEVERITY_LOW, source=m.SOURCE_APPLICATION)
                )
        reader = await signed_in(base(server), tokens.reader)
        async with reader:
            async with reader.get(base(server) + "/?text=overflow") as r:
                assert '<span class="total">more than 3 in all</span>' in await r.text()
            async with reader.get(base(server) + "/?text=overflow+1") as r:  # one page holds all 15
                assert '<span class="total">15 in all</span>' in await r.text()
            async with reader.get(base(server) + "/?text=nothing+like+it") as r:
                assert '<span class="total">0 in all</span>' in await r.text()
    finally:
        await server.stop(grace=None)


async def test_sparklines_are_svg_images_for_readers_only(running: RunningServer, tokens: Tokens) -> None:
    url = base(running)
    from errorreplay.client import ErrorReplayClient

    async with ErrorReplayClient(f"127.0.0.1:{running.port}", token=tokens.admin) as client:
        captured = await client.capture(
            m.ErrorReport(message="spark", severity=m.SEVERITY_LOW, source=m.SOURCE_APPLICATION)
        )
    path = f"/groups/{captured.group_id}/sparkline.svg"
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url + path) as r:
        assert r.status == 401
    reader = await signed_in(url, tokens.reader)
    async with reader, reader.get(url + path) as r:
        svg = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
        assert "<polyline points=" in svg and "1 errors in the last 24 h" in svg


async def test_statistics_chart_counts_each_severity_and_leaves_muted_groups_out(
    running: RunningServer, tokens: Tokens
) -> None:
    url = base(running)
    from errorreplay.client import ErrorReplayClient

    async with ErrorReplayClient(f"127.0.0.1:{running.port}", token=tokens.admin) as client:
        for message, severity in (
            ("disk full", m.SEVERITY_HIGH),
            ("disk full", m.SEVERITY_HIGH),
            ("slow query", m.SEVERITY_LOW),
        ):
            await client.capture(m.ErrorReport(message=message, severity=severity, source=m.SOURCE_APPLICATION))
        noisy = await client.capture(
            m.ErrorReport(
                message="noisy", error_type="Noisy", severity=m.SEVERITY_CRITICAL, source=m.SOURCE_APPLICATION
            )
        )
        await client.update_group(noisy.group_id, m.ERROR_GROUP_STATUS_MUTED)
    reader = await signed_in(url, tokens.reader)
    async with reader:
        for window in ("1h", "24h"):  # rows (5-minute buckets), then hourly rollups and edge rows
            async with reader.get(url + f"/statistics?window={window}") as r:
                html = await r.text()
                assert r.status == 200
            chart = html[html.index('id="severity-chart"') : html.index("</svg>")]
            drawn: dict[str, int] = {}
            for count, name in re.findall(r": (\d+) (\w+)</title>", chart):
                drawn[name] = drawn.get(name, 0) + int(count)
            assert drawn == {"high": 2, "low": 1}, window
