"""`errorreplay serve` as a subprocess: a start-up that fails says which listener failed, on which
address, without a traceback, and exits non-zero; the metrics listener's address is a setting."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server_process import VENV_BIN, ServerProcess, free_port

ERRORREPLAY = str(VENV_BIN / "errorreplay")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "ERRORREPLAY_DATA_DIR": str(tmp_path),
        "ERRORREPLAY_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}",
        "ERRORREPLAY_METRICS_PORT": "0",
        **env,
    }
    return subprocess.run([ERRORREPLAY, *args], env=environ, capture_output=True, text=True, timeout=60)


def assert_clean_failure(done: subprocess.CompletedProcess[str], names: str) -> None:
    assert done.returncode == 1, done.stderr
    assert names in done.stderr
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr, done.stderr
    assert "never awaited" not in done.stderr, done.stderr


def test_a_taken_grpc_port_is_named(tmp_path: Path, taken_port: int) -> None:
    done = serve(tmp_path, "serve", ERRORREPLAY_LISTEN_ADDRESS=f"127.0.0.1:{taken_port}")
    assert_clean_failure(done, f"cannot start: gRPC server cannot listen on 127.0.0.1:{taken_port}")


def test_a_taken_grpc_port_given_as_a_flag_is_named(tmp_path: Path, taken_port: int) -> None:
    done = serve(tmp_path, "serve", "--address", f"127.0.0.1:{taken_port}")
    assert_clean_failure(done, f"gRPC server cannot listen on 127.0.0.1:{taken_port}")
    # The global --address means the same for serve (it used to be ignored).
    done = serve(tmp_path, "--address", f"127.0.0.1:{taken_port}", "serve")
    assert_clean_failure(done, f"gRPC server cannot listen on 127.0.0.1:{taken_port}")


def test_a_taken_metrics_port_is_named(tmp_path: Path, taken_port: int) -> None:
    done = serve(tmp_path, "serve", ERRORREPLAY_METRICS_PORT=str(taken_port))
    assert_clean_failure(done, f"cannot start: metrics server cannot listen on 127.0.0.1:{taken_port}")
    assert "Address already in use" in done.stderr
    done = serve(tmp_path, "serve", "--metrics-address", f"127.0.0.1:{taken_port}")
    assert_clean_failure(done, f"metrics server cannot listen on 127.0.0.1:{taken_port}")


def test_a_bad_metrics_address_is_a_configuration_error(tmp_path: Path) -> None:
    done = serve(tmp_path, "serve", ERRORREPLAY_METRICS_ADDRESS="9464")
    assert done.returncode == 2
    assert 'ERRORREPLAY_METRICS_ADDRESS: "9464" is not host:port' in done.stderr


def test_serve_flags_set_the_address_data_dir_and_metrics_address(tmp_path: Path) -> None:
    grpc_port, metrics_port = free_port(), free_port()
    data_dir = tmp_path / "flag-data"
    server = ServerProcess(tmp_path / "env-data", port=grpc_port)
    # The environment says otherwise; the flags win.
    server.extra_env = {"ERRORREPLAY_LISTEN_ADDRESS": "127.0.0.1:1", "ERRORREPLAY_METRICS_ADDRESS": "127.0.0.1:2"}
    server.serve_args = [
        "--address",
        f"127.0.0.1:{grpc_port}",
        "--data-dir",
        str(data_dir),
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
    ]
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            assert b"errorreplay_captures_total" in response.read()
        assert (data_dir / "errorreplay.db").exists()
        assert not (tmp_path / "env-data" / "errorreplay.db").exists()
    finally:
        server.stop()
