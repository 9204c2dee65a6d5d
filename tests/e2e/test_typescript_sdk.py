"""The TypeScript SDK (clients/typescript/src/sdk.ts) against a real `errorreplay serve`: captures while
the server is down neither throw nor block and arrive later; an uncaught exception is stored before
the Node process exits. Built and run like the interop test (test_typescript_interop.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from errorreplay import SyncErrorReplayClient
from errorreplay.v1 import message_pb2 as m
from tests.e2e.server_process import ServerProcess

TS_DIR = Path(__file__).resolve().parents[2] / "clients" / "typescript"
# The documented bound (clients/typescript/README.md): a capture never waits on the network.
PER_CALL_BOUND_MS = 250.0

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not installed"
)


@pytest.fixture(scope="module")
def built() -> None:
    build = subprocess.run(["make", "-s", "-C", str(TS_DIR), "build"], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr


def stored(address: str, service: str) -> list[m.ErrorSnapshot]:
    with SyncErrorReplayClient(address) as client:
        return list(client.search_all(m.ErrorFilter(service=service), page_size=500))


def test_node_server_down_captures_neither_throw_nor_block_and_arrive_later(built: None, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")  # the port is chosen; nothing listens on it yet
    service = f"node-down-{uuid.uuid4().hex[:8]}"
    script = TS_DIR / "dist" / "test" / "sdk_server_down.js"
    node = subprocess.Popen(
        ["node", str(script), server.address, service], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        first = node.stdout.readline().split()
        assert first[:2] == ["captured", "1000"], first
        assert float(first[2]) < PER_CALL_BOUND_MS
        server.start()
        out, err = node.communicate(timeout=120)
        assert node.returncode == 0, out + err
        assert out.startswith("flushed true"), out + err
        assert len(stored(server.address, service)) == 1000
    finally:
        if node.poll() is None:
            node.kill()
        server.stop()


@pytest.mark.parametrize("mode", ["exception", "rejection"])
def test_node_uncaught_error_is_stored_before_exit(built: None, tmp_path: Path, mode: str) -> None:
    server = ServerProcess(tmp_path / "data").start()
    service = f"node-uncaught-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ERRORREPLAY_ADDRESS": server.address, "ERRORREPLAY_SERVICE": service}
    try:
        done = subprocess.run(
            ["node", str(TS_DIR / "dist" / "test" / "sdk_uncaught.js"), mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        expected = "card processor returned HTTP 502" if mode == "exception" else "inventory lookup rejected"
        assert done.returncode == 1, done.stdout + done.stderr  # Node's default: print and exit 1
        assert expected in done.stderr
        (error,) = stored(server.address, service)
        assert error.report.message == expected and error.report.severity == m.SEVERITY_CRITICAL
        assert error.report.tags["process.runtime.name"] == "nodejs"
        assert error.report.tags["mechanism"] == ("uncaughtException" if mode == "exception" else "unhandledRejection")
        assert "sdk_uncaught" in error.report.stack_trace
    finally:
        server.stop()


def test_npm_pack_ships_the_built_sdk_with_types(built: None) -> None:
    done = subprocess.run(
        ["npm", "pack", "--dry-run", "--json", "--ignore-scripts"],
        cwd=TS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (package,) = json.loads(done.stdout)
    files = {entry["path"] for entry in package["files"]}
    assert {"dist/src/index.js", "dist/src/index.d.ts", "dist/src/sdk.js", "dist/src/sdk.d.ts", "LICENSE"} <= files
    assert not [f for f in files if f.startswith(("src/", "test/", "dist/test/", "node_modules/"))]


def test_node_context_before_send_and_breadcrumbs(built: None, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    service = f"node-ctx-{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run(
            ["node", str(TS_DIR / "dist" / "test" / "sdk_context.js"), server.address, service],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        ids, flushed = done.stdout.splitlines()[:2]
        assert flushed == "flushed true"
        _, kept, *dropped = ids.split(" ")
        assert kept and dropped == [""]
        (found,) = stored(server.address, service)
        with SyncErrorReplayClient(server.address) as client:
            error = client.get(found.error_id)
    finally:
        server.stop()
    r = error.report
    assert error.request_id == kept and r.error_type == "SyntaxError"
    assert (r.service, r.release, r.environment, r.resource_id) == (service, "3.1.0", "staging", service)
    assert r.tags["team"] == "payments" and r.tags["customer"] == "[removed]"
    assert r.tags["process.pid"].isdigit() and r.tags["host.name"] and r.tags["process.runtime.name"] == "nodejs"
    logs = [(x.level, x.message, x.collector) for x in error.context.logs]
    assert logs == [
        ("INFO", "cart loaded", "client"),
        ("WARN", "calling bank with password=[REDACTED:password]", "client"),
    ]
