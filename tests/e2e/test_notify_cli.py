"""`errorreplay notifications rules|test|list` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from errorreplay_server.notify.outbox import OutboxEntry, SqliteOutbox
from tests.e2e.server_process import VENV_BIN
from tests.notify_sink import ThreadedSink

SLACK_PATH = "/services/T000/B000/very-secret-token"


@pytest.fixture
def sink() -> Iterator[ThreadedSink]:
    sink = ThreadedSink()
    yield sink
    sink.close()


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "errorreplay"), "notifications", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(tmp_path: Path, sink: ThreadedSink) -> Path:
    path = tmp_path / "errorreplay.toml"
    path.write_text(
        f"""
[notifications.targets.oncall]
kind = "slack"
url = "{sink.sink.url(SLACK_PATH)}"

[[notifications.rules]]
name = "new-in-prod"
filter = {{ environment = "production", min_severity = "high" }}
trigger = "new_group"
target = "oncall"
quiet_period = "30m"
"""
    )
    return path


def test_rules_lists_without_credentials(tmp_path: Path, sink: ThreadedSink) -> None:
    done = run("rules", env={"ERRORREPLAY_CONFIG": str(write_config(tmp_path, sink))})
    assert done.returncode == 0, done.stderr
    assert " ".join(done.stdout.split()) == (
        "new-in-prod new_group -> oncall (slack) quiet 1800s filter: min_severity=HIGH environment=production"
    )
    assert "very-secret-token" not in done.stdout + done.stderr


def test_test_sends_a_block_kit_message(tmp_path: Path, sink: ThreadedSink) -> None:
    config = write_config(tmp_path, sink)
    done = run("test", "new-in-prod", env={"ERRORREPLAY_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr
    assert "sent test message ntf_" in done.stdout and "very-secret-token" not in done.stdout
    (received,) = sink.wait_for(1, SLACK_PATH)
    body = received.json
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Test notification"}}
    assert received.message_id in done.stdout
    # A receiver that refuses: exit 1, the status named, the URL not.
    sink.call(lambda: sink.sink.answer(SLACK_PATH, 403))
    refused = run("test", "new-in-prod", env={"ERRORREPLAY_CONFIG": str(config)})
    assert refused.returncode == 1
    assert "failed: HTTP 403" in refused.stderr and "very-secret-token" not in refused.stderr
    missing = run("test", "nope", env={"ERRORREPLAY_CONFIG": str(config)})
    assert missing.returncode == 3 and "no rule named 'nope'" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[notifications\n")
    assert run("rules", env={"ERRORREPLAY_CONFIG": str(broken)}).returncode == 2


def test_list_shows_dead_letters(tmp_path: Path) -> None:
    outbox = SqliteOutbox(tmp_path / "errorreplay.db")

    async def seed() -> None:
        await outbox.start()
        await outbox.add(
            [
                OutboxEntry("ntf_dead", "new-in-prod", "oncall", "new_group", "err_1", "grp_1", 1_780_000_000_000_000),
                OutboxEntry("ntf_sent", "new-in-prod", "oncall", "new_group", "err_2", "grp_2", 1_780_000_001_000_000),
            ]
        )
        await outbox.mark_dead("ntf_dead", 8, "HTTP 503")
        await outbox.mark_sent("ntf_sent", 1, 1_780_000_002_000_000)
        await outbox.close()

    asyncio.run(seed())
    done = run("list", "--data-dir", str(tmp_path), "--state", "dead", env={})
    assert done.returncode == 0, done.stderr
    assert " ".join(done.stdout.split()) == (
        "ntf_dead dead 2026-05-28 20:26:40 rule new-in-prod -> oncall error err_1 attempts 8 last: HTTP 503"
    )
    every = json.loads(run("list", "--data-dir", str(tmp_path), "--json", env={}).stdout)
    assert [(e["message_id"], e["state"]) for e in every] == [("ntf_sent", "sent"), ("ntf_dead", "dead")]
    assert run("list", "--data-dir", str(tmp_path / "nowhere"), env={}).returncode == 2
    broken = tmp_path / "broken.toml"
    broken.write_text("[notifications\n")
    refused = run("list", env={"ERRORREPLAY_CONFIG": str(broken)})
    assert refused.returncode == 2 and refused.stderr.startswith("errorreplay: configuration error: ")
