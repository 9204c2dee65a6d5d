"""`errorreplay serve` as a subprocess, as `make run` starts it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

VENV_BIN = Path(sys.executable).parent

DEFAULT_WORKERS = 0
"""`serve --workers N` for every ServerProcess that does not say (tests/e2e/conftest.py runs the
e2e suite with 0, one process, and with 2); 0 serves from one process."""

_STARTED = re.compile(r"started (writer|worker-\d+) process \(pid (\d+)\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    serve_args: list[str] = field(default_factory=list)
    workers: int = field(default_factory=lambda: DEFAULT_WORKERS)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        env = {
            **os.environ,
            "ERRORREPLAY_LISTEN_ADDRESS": self.address,
            "ERRORREPLAY_DATA_DIR": str(self.data_dir),
            "ERRORREPLAY_METRICS_PORT": "0",
            # Off unless a test asks: the default (localhost:8080) is shared by every run on the machine.
            "ERRORREPLAY_HTTP_ADDRESS": "off",
            **self.extra_env,
        }
        self.log_path = self.data_dir / f"server-{self.port}-{time.monotonic_ns()}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(VENV_BIN / "errorreplay"),
                    "serve",
                    *(["--workers", str(self.workers)] if self.workers else []),
                    *self.serve_args,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_serving(timeout)
        return self

    def _wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                with grpc.insecure_channel(self.address) as channel:
                    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                    # With workers, the first worker serves before the others have started.
                    if reply.status == health_pb2.HealthCheckResponse.SERVING and (
                        not self.workers or "errorreplay listening on" in self.output()
                    ):
                        return
            except grpc.RpcError:
                time.sleep(0.1)
        raise RuntimeError(f"server not serving after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def wait_for_output(self, text: str, timeout: float = 10.0) -> None:
        """Waits until the log holds `text`: a process serving may still be logging its start-up."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged after {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def children(self) -> dict[str, int]:
        """With workers: the pid of each child process ("writer", "worker-0", ...), the latest
        started of each, from the supervisor's log."""
        return {name: int(pid) for name, pid in _STARTED.findall(self.output())}

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs. With workers, the supervisor's children die with it
        (PR_SET_PDEATHSIG); this waits until they are gone, so the port is free again."""
        children = self.children()
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        deadline = time.monotonic() + 10
        for pid in children.values():
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)

    def kill_child(self, name: str) -> int:
        """SIGKILL one child process (with workers); returns its pid."""
        pid = self.children()[name]
        os.kill(pid, signal.SIGKILL)
        return pid

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its dead parent's reaper) holds no port.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
