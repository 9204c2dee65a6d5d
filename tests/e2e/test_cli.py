"""The `errorreplay` console script against `errorreplay serve`: capture, get, search, stats, errors,
replay, watch and the demo."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.server_process import VENV_BIN, ServerProcess

ERRORREPLAY = str(VENV_BIN / "errorreplay")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("cli")).start()
    yield proc
    proc.stop()


def cli(server: ServerProcess, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ERRORREPLAY, "--address", server.address, *args], capture_output=True, text=True, timeout=timeout
    )


def ok(server: ServerProcess, *args: str) -> str:
    done = cli(server, *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def skip_if_unimplemented(done: subprocess.CompletedProcess[str], rpc: str) -> None:
    if done.returncode == 1 and done.stderr.startswith("errorreplay: UNIMPLEMENTED"):
        pytest.skip(f"{rpc} answers UNIMPLEMENTED on this server; this test runs once it lands")


def test_capture_get_search_stats(server: ServerProcess) -> None:
    run = uuid.uuid4().hex
    capture = [
        "capture",
        "-m",
        f"connection refused to db-1:5432 ({run})",
        "--severity",
        "high",
        "--source",
        "application",
        "--resource",
        "api-cli",
        "--correlation-id",
        f"cli-{run}",
        "--tag",
        f"run={run}",
        "--tag",
        "team=payments",
        "--request-id",
        f"req-{run}",
    ]
    error_id = ok(server, *capture).strip()
    assert re.fullmatch(r"err_\w+", error_id)
    again = json.loads(ok(server, *capture, "--json"))
    assert again["error_id"] == error_id and again["duplicate"] is True

    shown = ok(server, "get", error_id)
    assert shown.startswith(f"{error_id}  HIGH  connection refused to db-1:5432 ({run})\n")
    assert re.search(r"tags\s+run=\w+, team=payments", shown)
    assert re.search(rf"correlation\s+cli-{run}", shown)
    got = json.loads(ok(server, "get", error_id, "--json"))
    assert got["report"]["tags"] == {"run": run, "team": "payments"}
    assert got["report"]["severity"] == "SEVERITY_HIGH"

    found = json.loads(ok(server, "search", "--tag", f"run={run}", "--min-severity", "medium", "--json"))
    assert [e["error_id"] for e in found["errors"]] == [error_id]
    assert int(found["total_size"]) == 1  # int64 is a string in proto JSON
    lines = ok(server, "search", "--text", run, "--since", "1h").splitlines()
    assert len(lines) == 1 and error_id in lines[0] and "api-cli" in lines[0]
    assert ok(server, "search", "--tag", f"run=none-{run}") == "(no errors match)\n"

    stats = json.loads(ok(server, "stats", "--tag", f"run={run}", "--json"))
    assert int(stats["total_count"]) == 1
    assert stats["by_severity"] == {"SEVERITY_HIGH": "1"}
    assert ok(server, "stats", "--tag", f"run={run}").startswith("Errors  1\n")


def test_not_found_is_one_line_and_exit_1(server: ServerProcess) -> None:
    done = cli(server, "get", "err_doesnotexist")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "errorreplay: NOT_FOUND: error 'err_doesnotexist' not found\n"


def test_invalid_argument_is_one_line_and_exit_1(server: ServerProcess) -> None:
    done = cli(server, "capture", "-m", "")
    assert done.returncode == 1
    assert done.stderr.startswith("errorreplay: INVALID_ARGUMENT: ")
    assert done.stderr.count("\n") == 1


def test_usage_errors_exit_2(server: ServerProcess) -> None:
    done = cli(server, "get")
    assert done.returncode == 2
    assert "the following arguments are required: ID" in done.stderr
    assert cli(server, "search", "--min-severity", "loud").returncode == 2


def test_demo_then_replay(server: ServerProcess) -> None:
    done = cli(server, "demo", timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    errors = re.findall(r"^  error\s+(err_\w+)\s+(\S+)", out, re.MULTILINE)
    assert [resource for _, resource in errors] == ["db-orders", "api-orders", "web-frontend"]
    correlation = re.search(r"correlation id (demo-checkout-\w+)", out)
    assert correlation is not None
    found = json.loads(ok(server, "search", "--correlation-id", correlation.group(1), "--json"))
    assert sorted(e["error_id"] for e in found["errors"]) == sorted(error_id for error_id, _ in errors)
    if "UNIMPLEMENTED" in out:
        pytest.skip("ReplayError answers UNIMPLEMENTED on this server; the demo printed the captured ids")
    assert "\x1b" not in out  # stdout is a pipe: no colour
    web_error = errors[-1][0]
    assert f"$ errorreplay replay {web_error}" in out

    replay = cli(server, "replay", web_error)
    skip_if_unimplemented(replay, "ReplayError")
    assert replay.returncode == 0, replay.stderr
    text = replay.stdout
    assert text.startswith(f"Replay of {web_error}  HIGH  web-frontend")
    for section in ("Timeline (", "Propagation", "Root cause", "Recommendations", "Related changes"):
        assert section in text
    assert "  db-orders -> api-orders -> web-frontend\n" in text
    assert re.search(r"Root cause  \w+  confidence [01]\.\d\d", text)
    assert "why: " in text
    assert re.search(r"DEPLOYMENT\s+db-orders\s+v2\.1\.0", text)
    assert text in out  # the demo printed the same rendering

    data = json.loads(ok(server, "replay", web_error, "--json"))
    assert data["error"]["error_id"] == web_error
    assert data["propagation"]["origin_resource_id"] == "db-orders"
    assert "\x1b[" in ok(server, "replay", web_error, "--color", "always")


def test_watch_prints_one_line_per_error_and_exits_0_on_ctrl_c(server: ServerProcess) -> None:
    run = uuid.uuid4().hex
    proc = subprocess.Popen(
        [ERRORREPLAY, "--address", server.address, "watch", "--tag", f"run={run}", "--min-severity", "low"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None and proc.stderr is not None

    def read_lines() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        # The subscription starts asynchronously: capture until the watch shows one, then one more.
        def capture() -> None:
            captured.append(ok(server, "capture", "-m", f"watched {run}", "--tag", f"run={run}").strip())

        seen: list[str] = []
        captured: list[str] = []
        capture()
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            if proc.poll() is not None:
                done = subprocess.CompletedProcess(proc.args, proc.returncode, "", proc.stderr.read())
                skip_if_unimplemented(done, "SubscribeErrors")
                pytest.fail(f"watch exited with {proc.returncode}: {done.stderr}")
            try:
                seen.append(lines.get(timeout=1.0))
            except queue.Empty:
                capture()  # the earlier one may have gone out before the subscription started
                continue
            if len(seen) == 1:
                capture()
        assert len(seen) >= 2, f"watch printed {seen}"
        assert all(f"watched {run}" in line for line in seen)
        assert {re.search(r"err_\w+", line).group(0) for line in seen} <= set(captured)  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
