"""`errorreplay serve --workers N`: a supervisor, one writer process and N worker processes.

- The writer owns the store's writes, enrichment and notifications (engine/writer.py).
- The workers serve gRPC (and HTTP) on one port with SO_REUSEPORT, read the store on their own
  connections, and send their writes to the writer (engine/link.py).
- The supervisor checks the ports are free (a port another process holds fails start-up naming
  the address, as in one process), starts the writer, then the workers, and watches them:
  a worker that dies is restarted; a writer that dies is restarted (calls in flight got
  UNAVAILABLE, never an acknowledgement without a commit) and the workers reconnect. A process
  that keeps dying stops the server. SIGTERM or SIGINT drains every worker, then the writer.

docs/ARCHITECTURE.md §5 gives the design and README: Performance the figures.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from errorreplay_server.domain.addresses import split_host_port
from errorreplay_server.engine.processes import STOP_SIGNAL, worker_main, writer_main
from errorreplay_server.server import log_listening
from errorreplay_server.settings import Settings

log = logging.getLogger("errorreplay")

START_TIMEOUT_SECONDS = 60.0
# Beyond this many restarts of one process within the window, the server stops instead.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
# Beyond the shutdown grace, how long a process may take to exit before it is killed.
EXIT_MARGIN_SECONDS = 5.0


class SupervisorError(RuntimeError):
    """The server could not start, or could not keep running; the message names the part."""


@dataclass
class Child:
    name: str
    process: BaseProcess
    restarts: deque[float] = field(default_factory=deque)


class Supervisor:
    def __init__(self, settings: Settings, workers: int) -> None:
        self._settings = settings
        self._workers = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._runtime = ""
        self._socket = ""
        self._wake_r, self._wake_w = -1, -1
        self._writer: Child | None = None
        self._children: list[Child] = []

    # --- running ---------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (0), or until a part cannot run (SupervisorError)."""
        self._settings = claim_ports(self._settings)
        # Only this user can reach the writer's socket (tempfile.mkdtemp makes the directory 0700).
        self._runtime = tempfile.mkdtemp(prefix="errorreplay-")
        self._socket = os.path.join(self._runtime, "writer.sock")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if not self._start_all():
                return 0
            return self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)
            shutil.rmtree(self._runtime, ignore_errors=True)

    def _on_signal(self, signum: int, frame: Any) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, bytes([signum]))

    def _start_all(self) -> bool:
        """The writer, then the workers; False when a signal came first."""
        self._writer = self._start("writer")
        if self._writer is None:
            return False
        self._children.append(self._writer)
        for index in range(self._workers):
            worker = self._start(f"worker-{index}")
            if worker is None:
                return False
            self._children.append(worker)
        s = self._settings
        log_listening(
            s,
            split_host_port(s.listen_address, "")[1],
            split_host_port(s.http.address, "")[1] if s.http.enabled else None,
            f"http://{s.metrics_address}/metrics (writer process)" if s.metrics_address else "off",
            f", workers={self._workers} and a writer",
        )
        return True

    def _start(self, name: str, restarts: deque[float] | None = None) -> Child | None:
        """Start one process and wait until it serves. None when a signal came first; raises
        SupervisorError naming the process and what failed."""
        receive, send = self._ctx.Pipe(duplex=False)
        if name == "writer":
            target: Any = writer_main
            args: tuple[Any, ...] = (self._settings, self._socket, send, os.getpid())
        else:
            target = worker_main
            args = (self._settings, int(name.rsplit("-", 1)[1]), self._socket, send, os.getpid())
        process = self._ctx.Process(target=target, args=args, name=f"errorreplay-{name}")
        process.start()
        send.close()
        try:
            ready = wait([receive, process.sentinel, self._wake_r], START_TIMEOUT_SECONDS)
            if self._wake_r in ready:
                _terminate([process], EXIT_MARGIN_SECONDS)
                return None
            message = _first_message(receive, process) if ready else ("failed", "did not start in time")
        finally:
            receive.close()
        if message[0] != "ready":
            if process.is_alive():
                process.kill()
            process.join()
            raise SupervisorError(f"{name} process failed to start: {message[1]}")
        log.info("started %s process (pid %d)", name, process.pid)
        return Child(name, process, restarts if restarts is not None else deque())

    def _watch(self) -> int:
        while True:
            sentinels = {c.process.sentinel: c for c in self._children}
            ready = wait([self._wake_r, *sentinels])
            if self._wake_r in ready:
                signum = os.read(self._wake_r, 16)[-1]
                log.info("%s: stopping the workers, then the writer", signal.Signals(signum).name)
                return 0
            for sentinel in ready:
                child = sentinels[sentinel]  # type: ignore[index]
                child.process.join()
                self._restart(child)

    def _restart(self, child: Child) -> None:
        code = child.process.exitcode
        if child is self._writer:
            log.error(
                "writer process (pid %d) exited with code %s: calls in flight got UNAVAILABLE; restarting it",
                child.process.pid,
                code,
            )
        else:
            log.warning("%s process (pid %d) exited with code %s; restarting it", child.name, child.process.pid, code)
        now = time.monotonic()
        while child.restarts and now - child.restarts[0] > RESTART_WINDOW_SECONDS:
            child.restarts.popleft()
        if len(child.restarts) >= MAX_RESTARTS:
            raise SupervisorError(
                f"{child.name} process exited {MAX_RESTARTS + 1} times within {RESTART_WINDOW_SECONDS:.0f} s;"
                " stopping the server"
            )
        child.restarts.append(now)
        fresh = self._start(child.name, child.restarts)
        if fresh is None:
            raise _Stopping
        self._children[self._children.index(child)] = fresh
        if child is self._writer:
            self._writer = fresh

    # --- stopping --------------------------------------------------------------------------------
    def _stop_all(self) -> None:
        """Stop the workers and wait for them to drain; then the writer, which finishes the
        writes in hand. A process that outlives the grace is killed."""
        workers = [c for c in self._children if c is not self._writer]
        _terminate([c.process for c in workers], self._settings.shutdown_grace_seconds + EXIT_MARGIN_SECONDS)
        if self._writer is not None:
            _terminate([self._writer.process], self._settings.shutdown_grace_seconds + EXIT_MARGIN_SECONDS)
        self._children.clear()
        log.info("stopped")


class _Stopping(Exception):
    """A signal came while a process was being restarted."""


def _first_message(receive: Connection, process: BaseProcess) -> tuple[str, Any]:
    try:
        if receive.poll():
            message: tuple[str, Any] = receive.recv()
            return message
    except (EOFError, OSError):
        pass
    process.join(5)
    return ("failed", f"exited with code {process.exitcode} before it was ready (see its log lines above)")


def _terminate(processes: list[BaseProcess], timeout: float) -> None:
    for p in processes:
        if p.is_alive() and p.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, STOP_SIGNAL)
    deadline = time.monotonic() + timeout
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            log.error("%s (pid %s) did not stop within %.0f s; killing it", p.name, p.pid, timeout)
            p.kill()
            p.join()


def claim_ports(settings: Settings) -> Settings:
    """The settings with port 0 resolved to a free port, once for every worker. A port that
    another process holds raises SupervisorError naming the address, as one process would."""
    listen = _free_address(settings.listen_address, "gRPC server", "ERRORREPLAY_LISTEN_ADDRESS or serve --address")
    settings = settings.model_copy(update={"listen_address": listen})
    if settings.http.enabled:
        http = _free_address(settings.http.address, "HTTP listener", "ERRORREPLAY_HTTP_ADDRESS")
        settings = settings.model_copy(update={"http": settings.http.model_copy(update={"address": http})})
    return settings


def _free_address(address: str, what: str, setting: str) -> str:
    if address.startswith("unix:"):
        raise SupervisorError(f"{what} address {address} ({setting}): --workers needs a TCP host:port")
    try:
        host, port = split_host_port(address, setting)
    except ValueError as exc:
        raise SupervisorError(str(exc)) from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SupervisorError(f"{what} cannot listen on {address} ({setting}): {exc.strerror}") from None
    probes: list[socket.socket] = []
    try:
        for family, kind, proto, _, sockaddr in infos:
            probe = socket.socket(family, kind, proto)
            probes.append(probe)
            # No SO_REUSEPORT: a port that any listener holds, even another server's workers, fails.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((sockaddr[0], port, *sockaddr[2:]))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    continue  # e.g. ::1 on a host without IPv6: the server skips it too
                raise SupervisorError(
                    f"{what} cannot listen on {address} ({setting}): the address is in use by another process"
                ) from None
            port = port or probe.getsockname()[1]
    finally:
        for probe in probes:
            probe.close()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def supervise(settings: Settings, workers: int) -> int:
    try:
        return Supervisor(settings, workers).run()
    except _Stopping:
        return 0
    except SupervisorError as exc:
        log.error("cannot run: %s", exc)
        return 1
