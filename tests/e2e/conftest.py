"""The e2e suite runs against `errorreplay serve` in both process models: one process, and
`--workers 2` (a supervisor, a writer process and two gRPC worker processes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e import server_process


@pytest.fixture(autouse=True, params=[0, 2], ids=["one-process", "workers-2"])
def server_workers(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = server_process.DEFAULT_WORKERS
    server_process.DEFAULT_WORKERS = request.param
    yield request.param
    server_process.DEFAULT_WORKERS = previous
