"""The SDK's background transport against a real `errorreplay serve`: captures never raise or wait for
the network while the server is down, and what was queued arrives once it is up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import errorreplay
from errorreplay import SyncErrorReplayClient
from errorreplay.v1 import message_pb2 as m
from tests.e2e.server_process import ServerProcess

# The documented bound (clients/python/README.md): a capture never waits on the network; this is
# far above its cost (about 0.1 ms) and far below any network timeout, so a noisy machine cannot fail it.
PER_CALL_BOUND_SECONDS = 0.25


@pytest.fixture(autouse=True)
def sdk_closed() -> Iterator[None]:
    yield
    errorreplay.close(timeout=1)


def stored(address: str, service: str) -> list[m.ErrorSnapshot]:
    with SyncErrorReplayClient(address) as client:
        return list(client.search_all(m.ErrorFilter(service=service), page_size=500))


def test_server_down_captures_neither_raise_nor_block_and_arrive_later(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")  # its port is chosen now; nothing listens on it yet
    errorreplay.init(server.address, service="down-app", release="1.0", max_backoff=0.5, timeout=1.0)
    slowest = 0.0
    ids = []
    for i in range(1000):
        try:
            raise ConnectionError(f"payment gateway refused request {i}")
        except ConnectionError:
            started = time.perf_counter()
            ids.append(errorreplay.capture_exception())
            slowest = max(slowest, time.perf_counter() - started)
    assert slowest < PER_CALL_BOUND_SECONDS
    assert all(ids) and len(set(ids)) == 1000
    assert errorreplay.flush(timeout=0.5) is False  # nothing can be sent yet
    server.start()
    try:
        assert errorreplay.flush(timeout=60)
        snapshots = stored(server.address, "down-app")
        assert len(snapshots) == 1000
        assert {s.request_id for s in snapshots} == set(ids)
        stats = errorreplay.stats()
        assert stats is not None and stats.sent == 1000 and stats.dropped_queue_full == 0
    finally:
        server.stop()


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    errorreplay.init(server.address, service="full-app", queue_size=10, max_backoff=0.5, timeout=1.0)
    ids = [errorreplay.capture_message(f"event {i}") for i in range(25)]
    # At most ten queued plus the one batch (at most ten) the worker holds while it retries.
    stats = errorreplay.stats()
    assert stats is not None and stats.dropped_queue_full == ids.count("") >= 5
    server.start()
    try:
        assert errorreplay.flush(timeout=60)
        assert {s.request_id for s in stored(server.address, "full-app")} == {i for i in ids if i}
    finally:
        server.stop()


def test_without_an_address_capture_is_a_no_op() -> None:
    errorreplay.init(env={})
    assert not errorreplay.is_enabled()
    try:
        raise ValueError("nobody listens")
    except ValueError:
        assert errorreplay.capture_exception() == ""
    assert errorreplay.flush(1)
