"""A real Bolt server for tests: ArcadeDB (arcadedb-embedded) in a process of its own.

`start_arcadedb(tmp_dir)` launches tests/contract/arcadedb_launcher.py with this interpreter,
waits until the Bolt port accepts connections and returns a `BoltServer`; `stop()` ends it by
its PID. The session fixture `bolt_server` shares one server between all the tests of a run:
every test uses its own ids and tags, so they do not need a fresh database.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).resolve().parent / "contract" / "arcadedb_launcher.py"
# The JVM starts in about 2 s on the reference machine; a loaded CI runner can be much slower.
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
DATABASE = "errorreplay"
USERNAME = "root"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@dataclass
class BoltServer:
    """A running ArcadeDB with its Bolt endpoint. `restart()` reuses the ports and the data."""

    uri: str
    username: str
    password: str
    database: str
    pid: int
    root: Path
    http_port: int
    bolt_port: int
    log_path: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Stops the server by its PID: SIGTERM for a clean stop, SIGKILL if it lingers."""
        proc = self._process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)

    def restart(self) -> None:
        """Starts the server again on the same ports and data directory (after `stop()`)."""
        self.stop()
        proc = _launch(self.root, self.http_port, self.bolt_port, self.password, self.database, self.log_path)
        self._process = proc
        self.pid = proc.pid

    def __enter__(self) -> BoltServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _launch(
    root: Path, http_port: int, bolt_port: int, password: str, database: str, log_path: Path
) -> subprocess.Popen[bytes]:
    # restart() appends to the same log: only what this launch prints counts.
    offset = log_path.stat().st_size if log_path.exists() else 0
    log = log_path.open("ab")
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(LAUNCHER),
                "--root",
                str(root),
                "--http-port",
                str(http_port),
                "--bolt-port",
                str(bolt_port),
                "--password",
                password,
                "--database",
                database,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        # READY comes after create_database; the open port alone can precede it.
        if proc.poll() is not None:
            raise RuntimeError(
                f"the ArcadeDB launcher exited with code {proc.returncode} before it was ready:\n{_tail(log_path)}"
            )
        if b"READY" in log_path.read_bytes()[offset:] and _accepts(bolt_port):
            return proc
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"ArcadeDB did not open its Bolt port {bolt_port} within {START_TIMEOUT_SECONDS:.0f} s:\n"
                f"{_tail(log_path)}"
            )
        time.sleep(0.1)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def start_arcadedb(tmp_dir: Path) -> BoltServer:
    """Starts ArcadeDB with Bolt on free ports under `tmp_dir`; the caller stops it."""
    root = Path(tmp_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    http_port, bolt_port = free_port(), free_port()
    while bolt_port == http_port:
        bolt_port = free_port()
    # ArcadeDB requires a root password of at least 8 characters.
    password = "pw-" + secrets.token_hex(8)
    log_path = root / "launcher.log"
    proc = _launch(root, http_port, bolt_port, password, DATABASE, log_path)
    return BoltServer(
        uri=f"bolt://127.0.0.1:{bolt_port}",
        username=USERNAME,
        password=password,
        database=DATABASE,
        pid=proc.pid,
        root=root,
        http_port=http_port,
        bolt_port=bolt_port,
        log_path=log_path,
        _process=proc,
    )


@pytest.fixture(scope="session")
def bolt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoltServer]:
    server = start_arcadedb(tmp_path_factory.mktemp("arcadedb"))
    try:
        yield server
    finally:
        server.stop()
