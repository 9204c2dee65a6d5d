"""A real server (gRPC and the HTTP listener with the console, port 0) running on its own event
loop in a thread, so that synchronous Selenium can drive headless Debian Chromium against it."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from errorreplay.sync_client import SyncErrorReplayClient
from errorreplay_server.grants import Role, TokenGrant
from errorreplay_server.http.settings import HttpSettings
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.server import RunningServer, start_server
from tests.grpc.conftest import server_settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "output" / "screenshots"


@dataclass(frozen=True)
class Tokens:
    reader: str
    writer: str  # writer only: may act, may not read
    read_write: str
    admin: str

    @classmethod
    def new(cls) -> Tokens:
        return cls(*(secrets.token_urlsafe(24) for _ in range(4)))

    def security(self) -> SecuritySettings:
        return SecuritySettings(
            tokens=(
                TokenGrant(Role.READER, self.reader),
                TokenGrant(Role.WRITER, self.writer),
                TokenGrant(Role.READER, self.read_write),
                TokenGrant(Role.WRITER, self.read_write),
                TokenGrant(Role.ADMIN, self.admin),
            )
        )


class ServerThread:
    """start_server on a private loop; the test thread stays free to block on a browser."""

    def __init__(self, settings: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.running: RunningServer = self._call(start_server(settings))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    @property
    def base(self) -> str:
        assert self.running.http is not None
        return f"http://127.0.0.1:{self.running.http.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def client(self, token: str | None) -> SyncErrorReplayClient:
        return SyncErrorReplayClient(self.grpc_target, token=token)

    def stop(self) -> None:
        try:
            self._call(self.running.stop(grace=None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def console_settings(data_dir: Path, security: SecuritySettings | None = None) -> Any:
    return server_settings(data_dir, http=HttpSettings(address="127.0.0.1:0"), security=security or SecuritySettings())


@pytest.fixture(scope="module")
def tokens() -> Tokens:
    return Tokens.new()


@pytest.fixture(scope="module")
def server(tokens: Tokens) -> Iterator[ServerThread]:
    data_dir = Path(tempfile.mkdtemp(prefix="console-"))
    running = ServerThread(console_settings(data_dir, tokens.security()))
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def have_browser() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not have_browser():
        # CI installs both (.ci/run); a developer machine without them cannot run these tests.
        pytest.fail(f"the console's browser tests need {CHROMIUM} and {CHROMEDRIVER} (Debian chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a driver
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # The whole page, not only the window: the replay is long.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(1000, int(height)), 4000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    return path
