"""The Node client (clients/typescript) against a running server: capture, get, search, subscribe."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server_process import ServerProcess

TS_DIR = Path(__file__).resolve().parents[2] / "clients" / "typescript"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Iterator[ServerProcess]:
    """One server per process model (tests/e2e/conftest.py)."""
    proc = ServerProcess(tmp_path_factory.mktemp("interop"), workers=server_workers).start()
    yield proc
    proc.stop()


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not installed")
def test_node_client_interop(server: ServerProcess) -> None:
    build = subprocess.run(["make", "-s", "-C", str(TS_DIR), "build"], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    done = subprocess.run(
        ["node", str(TS_DIR / "dist" / "test" / "interop.js"), server.address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr + server.output()
    assert "0 failed" in done.stdout
