"""The SIGKILL durability loop against `serve --workers 2`: each cycle kills one worker, the
writer, or the whole server (tests/e2e/test_kill_loop.py for the loop and its checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_kill_loop import Backend, arcadedb, bolt_env, check, kill_loop

__all__ = ["arcadedb"]  # the fixture, for the Bolt variant

TARGETS = ("worker-0", "writer", "server", "worker-1", "writer")


@pytest.mark.timeout(300)
def test_no_acknowledged_capture_is_lost_when_a_worker_the_writer_or_the_server_is_killed(tmp_path: Path) -> None:
    summary = kill_loop(tmp_path, Backend(env={"ERRORREPLAY_STORE": "sqlite"}), targets=TARGETS, workers=2)
    assert [c["killed"] for c in summary["cycles"]] == list(TARGETS)
    check(summary)


@pytest.mark.bolt
@pytest.mark.timeout(300)
def test_the_same_on_the_bolt_store(tmp_path: Path, arcadedb: Any) -> None:
    summary = kill_loop(tmp_path, Backend(env=bolt_env(arcadedb)), targets=TARGETS, workers=2)
    assert [c["killed"] for c in summary["cycles"]] == list(TARGETS)
    check(summary)
