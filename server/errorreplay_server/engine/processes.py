"""The entry points of the writer and worker processes (started by engine/supervisor.py with
multiprocessing's spawn: gRPC must not be forked).

Each process reports once on its `ready` pipe: ("ready", detail) once serving, or ("failed",
message naming what failed). Each stops on STOP_SIGNAL, which the supervisor sends in order
(workers, then the writer). SIGTERM and SIGINT are ignored here: a terminal's Ctrl-C or a service
manager that signals the whole group reaches the supervisor too, and it must decide the order. A
process whose supervisor dies is killed by the kernel (PR_SET_PDEATHSIG), so no orphan keeps the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from multiprocessing.connection import Connection

from errorreplay_server.settings import Settings

PR_SET_PDEATHSIG = 1
STOP_SIGNAL = signal.SIGUSR1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[{role}]: %(message)s"


def _as_child(role: str, settings: Settings, supervisor_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor_pid:
        os._exit(1)  # the supervisor died before the line above took effect
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT.format(role=role))


def _stop_requested() -> asyncio.Event:
    """Set by STOP_SIGNAL. Installed before the process starts serving: a stop that comes while it
    starts, or the moment it reports ready, waits for it instead of killing it (SIGUSR1's default)."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(STOP_SIGNAL, stop.set)
    return stop


def writer_main(settings: Settings, socket_path: str, ready: Connection, supervisor_pid: int) -> None:
    _as_child("writer", settings, supervisor_pid)
    from errorreplay_server.cli import run_event_loop

    run_event_loop(_writer(settings, socket_path, ready), settings.event_loop)


async def _writer(settings: Settings, socket_path: str, ready: Connection) -> None:
    from errorreplay_server.engine.writer import start_writer
    from errorreplay_server.server import start_metrics_listener

    log = logging.getLogger("errorreplay")
    stop = _stop_requested()
    async with contextlib.AsyncExitStack() as started:
        try:
            engine = await start_writer(settings, socket_path, started)
            if settings.metrics_address:
                started.callback(start_metrics_listener(settings.metrics_address, engine.metrics()).close)
        except Exception as exc:
            ready.send(("failed", str(exc) or type(exc).__name__))
            raise SystemExit(1) from None
        ready.send(("ready", os.getpid()))
        log.info("writer: store=%s, enrichment=%s", settings.store, "on" if engine.enrichment else "off")
        await stop.wait()
        log.info("writer: stopping after the calls in hand")
    log.info("writer: stopped")


def worker_main(settings: Settings, index: int, socket_path: str, ready: Connection, supervisor_pid: int) -> None:
    _as_child(f"worker-{index}", settings, supervisor_pid)
    from errorreplay_server.cli import run_event_loop

    run_event_loop(_worker(settings, index, socket_path, ready), settings.event_loop)


async def _worker(settings: Settings, index: int, socket_path: str, ready: Connection) -> None:
    from errorreplay_server.api.auth import build_interceptors
    from errorreplay_server.api.tls import server_credentials
    from errorreplay_server.server import StartupError, WorkerRole, settle_heap, start_server

    log = logging.getLogger("errorreplay")
    stop = _stop_requested()
    try:
        running = await start_server(
            settings,
            extra_interceptors=build_interceptors(settings.security, settings.otlp),
            credentials=server_credentials(settings.security),
            worker=WorkerRole(index, socket_path),
        )
    except StartupError as exc:
        ready.send(("failed", str(exc)))
        raise SystemExit(1) from None
    except Exception as exc:
        ready.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    settle_heap()
    ready.send(("ready", (running.port, running.http.port if running.http else 0)))
    await stop.wait()
    log.info("draining in-flight calls for up to %.1f s", settings.shutdown_grace_seconds)
    await running.stop(settings.shutdown_grace_seconds)
    log.info("stopped")
