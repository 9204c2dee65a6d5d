"""A local HTTP receiver standing in for Slack, Teams and a generic webhook (aiohttp on port 0).

Each path answers from its own script of statuses (then 200), and every request is recorded.
Like a careful receiver it dedups on X-Errorreplay-Message-Id: `accepted` holds each message
once, the first time it was answered 2xx."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def message_id(self) -> str:
        return self.headers.get("X-Errorreplay-Message-Id", "")


@dataclass
class Sink:
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    # path -> statuses (or (status, headers)) to answer before answering 200.
    script: dict[str, deque[tuple[int, dict[str, str]]]] = field(default_factory=lambda: defaultdict(deque))
    accepted: dict[str, Received] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # When set to an unset event, every request hangs until it is set (a receiver that never answers).
    hold: asyncio.Event | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        self.script[path].append((status, headers or {}))

    def accepted_at(self, path: str) -> list[Received]:
        return [r for r in self.accepted.values() if r.path == path]

    async def wait_for(self, count: int, path: str | None = None, timeout: float = 60.0) -> list[Received]:
        """Until `count` distinct messages were accepted (on `path`); the timeout only bounds a hang."""

        def got() -> list[Received]:
            return self.accepted_at(path) if path else list(self.accepted.values())

        async with asyncio.timeout(timeout):
            while len(got()) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return got()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hold is not None:
            await self.hold.wait()
        queued = self.script[request.path]
        status, headers = queued.popleft() if queued else (200, {})
        received = Received(request.path, dict(request.headers), body, status)
        self.requests.append(received)
        if 200 <= status < 300 and received.message_id not in self.accepted:
            self.accepted[received.message_id] = received
        self.arrived.set()
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")


async def start_sink() -> tuple[Sink, web.AppRunner]:
    sink = Sink()
    app = web.Application()
    app.router.add_post("/{tail:.*}", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sink.port = runner.addresses[0][1]
    return sink, runner


class ThreadedSink:
    """The sink on its own event loop thread, for tests that drive subprocesses synchronously."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="notify-sink", daemon=True)
        self._thread.start()
        self.sink, self._runner = asyncio.run_coroutine_threadsafe(start_sink(), self._loop).result(10)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the sink's loop (its lists and events belong to that loop)."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def wait_for(self, count: int, path: str | None = None, timeout: float = 60.0) -> list[Received]:
        return asyncio.run_coroutine_threadsafe(self.sink.wait_for(count, path, timeout), self._loop).result()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
