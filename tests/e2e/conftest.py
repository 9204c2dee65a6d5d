"""The e2e suite runs against `errorreplay serve` in both process models: one process, and
`--workers 2` (a supervisor, a writer process and two gRPC worker processes).

The mode is a session-scoped parameter, so pytest runs the suite once per mode and module-scoped
servers that take `server_workers` are started once per mode. A module that never starts a server
runs once."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from tests.e2e import server_process

MODES = {0: "one-process", 2: "workers-2"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_workers" not in metafunc.fixturenames:
        return
    starts_servers = "ServerProcess" in inspect.getsource(metafunc.module)
    modes = list(MODES) if starts_servers else [0]
    metafunc.parametrize("server_workers", modes, ids=[MODES[m] for m in modes], indirect=True, scope="session")


@pytest.fixture(scope="session", autouse=True)
def server_workers(request: pytest.FixtureRequest) -> Iterator[int]:
    """`serve --workers N` for every ServerProcess that does not say (0: one process)."""
    previous = server_process.DEFAULT_WORKERS
    server_process.DEFAULT_WORKERS = request.param
    yield request.param
    server_process.DEFAULT_WORKERS = previous
