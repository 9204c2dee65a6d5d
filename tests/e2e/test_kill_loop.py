"""Durability under repeated SIGKILL: several clients capture while the server is killed and restarted.

Clients retry with the same request_id on UNAVAILABLE (or a deadline) until they are acknowledged,
and record every acknowledged error_id. The server is SIGKILLed at random moments, CYCLES times,
and restarted on the same data. When the clients stop, each first finishes its call in flight, so
every request_id sent is acknowledged in the end. Then every acknowledged id must be stored exactly
once: the ids found under the run's tag equal the ids acknowledged, and no request_id or error_id
appears twice.

The figures (acknowledged, found, retries, duplicates answered after a kill) are written to
`kill_loop.json` under the test's tmp directory, to ERRORREPLAY_KILL_REPORT when that is set, and
into the assertion messages. ERRORREPLAY_KILL_SEED replays a run's kill timings.

Variants: the embedded store (sqlite) always; the Bolt store (ArcadeDB through arcadedb-embedded)
under the `bolt` marker, where both errorreplay and, every other cycle, ArcadeDB itself are killed.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay.v1 import request_response_pb2 as rr
from errorreplay.v1 import service_pb2_grpc
from tests.e2e import server_process
from tests.e2e.server_process import ServerProcess, free_port

CYCLES = 5
UNARY_CLIENTS = 3
BATCH_CLIENTS = 1
BATCH_SIZE = 10
UP_SECONDS = (0.3, 1.5)
"""How long the server runs before each SIGKILL: uniform in this range."""
CALL_TIMEOUT_SECONDS = 5.0
RETRY_PAUSE_SECONDS = 0.05
DRAIN_SECONDS = 60.0
"""After the last restart, how long clients may take to get their last call acknowledged."""
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
CHANNEL_OPTIONS = [
    # The server is back within a second or two; the default reconnect backoff starts at 1 s.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 300),
]


@dataclass
class Ledger:
    """One client's record: request_id -> error_id for every acknowledged capture."""

    acknowledged: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    duplicates: int = 0
    """Acknowledgements that came back duplicate=True: a retry of a call committed before a kill."""
    failures: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


def _report(run: str, request_id: str) -> m.ErrorReport:
    return m.ErrorReport(
        message=f"kill loop {request_id}",
        severity=m.SEVERITY_MEDIUM,
        source=m.SOURCE_APPLICATION,
        resource_id="kill-loop",
        tags={"run": run},
    )


class CaptureClient(threading.Thread):
    def __init__(self, name: str, address: str, run: str, stop: threading.Event, batch_size: int) -> None:
        super().__init__(name=name, daemon=True)
        self.address = address
        self.run_tag = run
        self.stop = stop
        self.batch_size = batch_size
        self.ledger = Ledger()
        self.give_up_at = float("inf")

    def run(self) -> None:
        with grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
            seq = 0
            while not self.stop.is_set() and not self.ledger.failures:
                ids = [f"{self.run_tag}-{self.name}-{seq + i}" for i in range(self.batch_size)]
                seq += self.batch_size
                self.ledger.pending = ids
                self._until_acknowledged(stub, ids)
                self.ledger.pending = []

    def _until_acknowledged(self, stub: service_pb2_grpc.ErrorReplayServiceStub, ids: list[str]) -> None:
        while True:
            try:
                self._send(stub, ids)
                return
            except grpc.RpcError as err:
                code = err.code()  # type: ignore[attr-defined]
                if code not in RETRYABLE:
                    self.ledger.failures.append(f"{ids[0]}: {code.name}: {err.details()}")  # type: ignore[attr-defined]
                    return
                if time.monotonic() > self.give_up_at:
                    self.ledger.failures.append(f"{ids[0]}: still {code.name} after the drain period")
                    return
                self.ledger.retries += 1
                time.sleep(RETRY_PAUSE_SECONDS)

    def _send(self, stub: service_pb2_grpc.ErrorReplayServiceStub, ids: list[str]) -> None:
        requests = [rr.CaptureErrorRequest(error=_report(self.run_tag, i), request_id=i) for i in ids]
        if self.batch_size == 1:
            reply = stub.CaptureError(requests[0], timeout=CALL_TIMEOUT_SECONDS)
            self._acknowledge(ids[0], reply)
            return
        batch = stub.BatchCaptureErrors(rr.BatchCaptureErrorsRequest(requests=requests), timeout=CALL_TIMEOUT_SECONDS)
        for result in batch.results:
            if result.HasField("error"):
                self.ledger.failures.append(f"{ids[result.index]}: item failed: {result.error.message}")
        for result in batch.results:
            self._acknowledge(ids[result.index], result.response)

    def _acknowledge(self, request_id: str, reply: rr.CaptureErrorResponse) -> None:
        previous = self.ledger.acknowledged.get(request_id)
        if previous is not None and previous != reply.error_id:
            self.ledger.failures.append(f"{request_id}: acknowledged as {previous}, then as {reply.error_id}")
        self.ledger.acknowledged[request_id] = reply.error_id
        self.ledger.duplicates += reply.duplicate


def stored_under(address: str, run: str) -> list[Any]:
    """Every snapshot tagged with `run`, walking all pages."""
    found: list[Any] = []
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.ErrorReplayServiceStub(channel)
        token = ""
        while True:
            page = stub.SearchErrors(
                rr.SearchErrorsRequest(filter=m.ErrorFilter(tags={"run": run}), page_size=1000, page_token=token),
                timeout=60,
            )
            found.extend(page.errors)
            token = page.next_page_token
            if not token:
                return found


@dataclass
class Backend:
    """What the errorreplay server stores into, and how to kill that too (None: nothing else to kill)."""

    env: dict[str, str]
    kill_store: Callable[[], None] | None = None


def kill_loop(
    tmp_path: Path, backend: Backend, targets: tuple[str, ...] = ("server",), workers: int | None = None
) -> dict[str, Any]:
    """Cycle i kills targets[i % len(targets)]: "server" (the whole server, then started again),
    or a child process of a --workers server ("writer", "worker-0", ...), which its supervisor
    restarts."""
    seed = int(os.environ.get("ERRORREPLAY_KILL_SEED", "") or time.time_ns() % 2**32)
    rng = random.Random(seed)
    run = uuid.uuid4().hex
    data_dir = tmp_path / "data"
    port = free_port()
    started = time.monotonic()
    if workers is None:
        workers = server_process.DEFAULT_WORKERS
    server = ServerProcess(data_dir, port=port, extra_env=backend.env, workers=workers).start()
    stop = threading.Event()
    clients = [
        CaptureClient(f"c{i}", server.address, run, stop, BATCH_SIZE if i >= UNARY_CLIENTS else 1)
        for i in range(UNARY_CLIENTS + BATCH_CLIENTS)
    ]
    cycles: list[dict[str, Any]] = []
    logs: list[str] = []
    try:
        for client in clients:
            client.start()
        for cycle in range(CYCLES):
            up = rng.uniform(*UP_SECONDS)
            time.sleep(up)
            acked_before = sum(len(c.ledger.acknowledged) for c in clients)
            target = targets[cycle % len(targets)]
            down_at = time.monotonic()
            store_killed = False
            if target == "server":
                server.kill()
                logs.append(server.output())
                store_killed = backend.kill_store is not None and cycle % 2 == 1
                if store_killed:
                    assert backend.kill_store is not None
                    backend.kill_store()
                server = ServerProcess(data_dir, port=port, extra_env=backend.env, workers=workers).start()
            else:
                killed = server.kill_child(target)
                _until_restarted(server, target, killed)
            cycles.append(
                {
                    "killed": target,
                    "up_seconds": round(up, 3),
                    "acknowledged_at_kill": acked_before,
                    "restart_seconds": round(time.monotonic() - down_at, 3),
                    "store_killed": store_killed,
                }
            )
        time.sleep(0.5)  # some acknowledgements after the last restart
        for client in clients:
            client.give_up_at = time.monotonic() + DRAIN_SECONDS
        stop.set()
        for client in clients:
            client.join(DRAIN_SECONDS + 10)
        assert not any(c.is_alive() for c in clients), "a client did not finish"
        snapshots = stored_under(server.address, run)
        logs.append(server.output())
    finally:
        stop.set()
        server.stop()

    acknowledged: dict[str, str] = {}
    for client in clients:
        acknowledged.update(client.ledger.acknowledged)
    ids = Counter(s.error_id for s in snapshots)
    request_ids = Counter(s.request_id for s in snapshots)
    found_by_request = {s.request_id: s.error_id for s in snapshots}
    summary = {
        "store": backend.env.get("ERRORREPLAY_STORE", "sqlite"),
        "seed": seed,
        "cycles": cycles,
        "clients": len(clients),
        "acknowledged": len(acknowledged),
        "found": len(snapshots),
        "acknowledged_missing": sorted(set(acknowledged.values()) - set(ids))[:20],
        "found_not_acknowledged": sorted(set(ids) - set(acknowledged.values()))[:20],
        "error_ids_twice": sorted(i for i, n in ids.items() if n > 1)[:20],
        "request_ids_twice": sorted(r for r, n in request_ids.items() if n > 1)[:20],
        "acknowledged_other_id": sorted(r for r, e in acknowledged.items() if found_by_request.get(r, e) != e)[:20],
        "retries": sum(c.ledger.retries for c in clients),
        "duplicate_acknowledgements": sum(c.ledger.duplicates for c in clients),
        "client_failures": [f for c in clients for f in c.ledger.failures][:20],
        "unacknowledged_in_flight": [p for c in clients for p in c.ledger.pending][:20],
        "seconds": round(time.monotonic() - started, 1),
    }
    text = json.dumps(summary, indent=2)
    (tmp_path / "kill_loop.json").write_text(text)
    target = os.environ.get("ERRORREPLAY_KILL_REPORT")
    if target:
        Path(target).write_text(text)
    if summary["client_failures"] or summary["unacknowledged_in_flight"]:
        summary["server_logs_tail"] = "\n---\n".join(log[-3000:] for log in logs)
    return summary


def _until_restarted(server: ServerProcess, name: str, killed: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.children().get(name, killed) != killed:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} (pid {killed}) was not restarted:\n{server.output()}")


def check(summary: dict[str, Any]) -> None:
    line = (
        f"{summary['store']}: acknowledged {summary['acknowledged']}, found {summary['found']}, "
        f"{len(summary['cycles'])} SIGKILLs, {summary['retries']} retries, "
        f"{summary['duplicate_acknowledgements']} duplicate acknowledgements, seed {summary['seed']}, "
        f"{summary['seconds']} s"
    )
    details = json.dumps(summary, indent=2)
    assert not summary["client_failures"], f"{line}\n{details}"
    assert not summary["unacknowledged_in_flight"], f"{line}\n{details}"
    assert summary["acknowledged"] > 0 and len(summary["cycles"]) == CYCLES, line
    assert not summary["acknowledged_missing"], f"{line}: acknowledged but not stored\n{details}"
    assert not summary["error_ids_twice"] and not summary["request_ids_twice"], f"{line}: stored twice\n{details}"
    assert not summary["acknowledged_other_id"], f"{line}: a retry got another error_id\n{details}"
    assert not summary["found_not_acknowledged"], f"{line}: stored but never acknowledged\n{details}"
    assert summary["found"] == summary["acknowledged"], line
    print(line)


@pytest.mark.timeout(180)
def test_every_acknowledged_capture_survives_repeated_sigkill(tmp_path: Path) -> None:
    check(kill_loop(tmp_path, Backend(env={"ERRORREPLAY_STORE": "sqlite"})))


@pytest.fixture
def arcadedb(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("arcadedb_embedded")
    from tests.bolt_server import start_arcadedb

    server = start_arcadedb(tmp_path / "arcadedb")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.bolt
@pytest.mark.timeout(300)
def test_every_acknowledged_capture_survives_repeated_sigkill_on_bolt(tmp_path: Path, arcadedb: Any) -> None:
    import signal

    def kill_arcadedb() -> None:
        os.kill(arcadedb.pid, signal.SIGKILL)
        arcadedb.restart()

    check(kill_loop(tmp_path, Backend(env=bolt_env(arcadedb), kill_store=kill_arcadedb)))


def bolt_env(arcadedb: Any) -> dict[str, str]:
    """The variables that point errorreplay at the ArcadeDB Bolt server."""
    return {
        "ERRORREPLAY_STORE": "neo4j",
        "ERRORREPLAY_NEO4J_URI": arcadedb.uri,
        "ERRORREPLAY_NEO4J_USERNAME": arcadedb.username,
        "ERRORREPLAY_NEO4J_PASSWORD": arcadedb.password,
        "ERRORREPLAY_NEO4J_DATABASE": arcadedb.database,
    }
