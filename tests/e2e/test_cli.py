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
from pathlib import Path

import pytest

from tests.e2e.server_process import VENV_BIN, ServerProcess

ERRORREPLAY = str(VENV_BIN / "errorreplay")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Iterator[ServerProcess]:
    """One server per process model (tests/e2e/conftest.py)."""
    proc = ServerProcess(tmp_path_factory.mktemp("cli"), workers=server_workers).start()
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
    text = ok(server, "stats", "--tag", f"run={run}", "--since", "6h", "--bucket", "1h")
    assert text.startswith("Errors  1\n")
    assert re.search(r"^  from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d to .* UTC \(6h\)$", text, re.MULTILINE)
    over_time = text[text.index("Over time (1h buckets)") :]
    assert re.search(r"^  \d\d:\d\d\s+1\s+#+$", over_time, re.MULTILINE)  # the hour of the capture has a bar


def test_not_found_is_one_line_and_exit_3(server: ServerProcess) -> None:
    done = cli(server, "get", "err_doesnotexist")
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr == "errorreplay: NOT_FOUND: error 'err_doesnotexist' not found\n"


def test_invalid_argument_is_one_line_and_exit_2(server: ServerProcess) -> None:
    done = cli(server, "capture", "-m", "")
    assert done.returncode == 2
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
    assert "\x1b" not in out  # stdout is a pipe: no colour
    web_error = errors[-1][0]
    assert f"$ errorreplay replay {web_error}" in out

    replay = cli(server, "replay", web_error)
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
    # The CLI talks to a server on this machine: the replay ends with its web console page.
    assert re.search(rf"\nConsole: https?://\S+/errors/{web_error}\n$", text)

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
        # As from a terminal: a test run started in the background inherits SIGINT ignored (POSIX
        # shells ignore it for `cmd &`), and Python then keeps it ignored, so Ctrl-C would do nothing.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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


def test_groups_list_show_and_triage(server: ServerProcess) -> None:
    run = uuid.uuid4().hex
    for _ in range(2):
        ok(server, "capture", "-m", f"pool exhausted {run}", "--error-type", f"Pool{run}", "--severity", "critical")
    groups = json.loads(ok(server, "groups", "list", "--order", "last-seen", "--json"))["groups"]
    (group,) = [g for g in groups if g.get("error_type") == f"Pool{run}"]
    group_id = group["group_id"]
    assert int(group["count"]) == 2 and group["status"] == "ERROR_GROUP_STATUS_OPEN"
    listed = ok(server, "groups", "list", "--status", "open")
    assert re.search(rf"^2\s+OPEN\s+CRITICAL\s+.*{group_id}\s+Pool{run}", listed, re.MULTILINE)

    shown = ok(server, "groups", "show", group_id)
    assert shown.startswith(f"{group_id}  OPEN  Pool{run}")
    assert re.search(r"count\s+2", shown) and "Latest errors" in shown
    assert shown.count(f"pool exhausted {run}") == 2
    assert json.loads(ok(server, "groups", "show", group_id, "--json"))["group_id"] == group_id

    for action, status in (("ack", "ACKNOWLEDGED"), ("mute", "MUTED"), ("resolve", "RESOLVED")):
        assert json.loads(ok(server, "groups", action, group_id, "--json"))["status"] == f"ERROR_GROUP_STATUS_{status}"
    assert re.search(rf"RESOLVED.*{group_id}", ok(server, "groups", "list", "--status", "resolved", "--limit", "500"))

    for args in (["groups", "show", "grp_nope"], ["groups", "resolve", "grp_nope"]):
        done = cli(server, *args)
        assert done.returncode == 3, done.stderr
        assert done.stderr.startswith("errorreplay: NOT_FOUND: ") and "grp_nope" in done.stderr


def test_topology_apply_yaml_and_json_then_show(server: ServerProcess, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    web, api, db = f"web-{run}", f"api-{run}", f"db-{run}"
    (tmp_path / "topology.yaml").write_text(
        f"""resources:
  - id: {api}
    type: service
    name: Orders API
    labels: {{team: orders}}
    depends_on: [{db}]
  - {web}
dependencies:
  - {web} -> {api}
"""
    )
    assert ok(server, "topology", "apply", str(tmp_path / "topology.yaml")) == (
        f"applied 2 resources and 2 dependencies from {tmp_path / 'topology.yaml'}\n"
    )
    (tmp_path / "more.json").write_text(
        json.dumps(
            {"resources": [{"id": db, "type": "postgres"}], "dependencies": [{"dependent": api, "dependency": db}]}
        )
    )
    applied = json.loads(ok(server, "topology", "apply", str(tmp_path / "more.json"), "--json"))
    assert applied == {"resources_upserted": 1, "dependencies_upserted": 1}

    shown = ok(server, "topology", "show", api)
    assert shown.startswith(f"Topology of {api}  3 resources, 2 dependencies\n")
    assert re.search(rf"^  {api}\s+service\s+Orders API\s+team=orders$", shown, re.MULTILINE)
    assert re.search(rf"^  {db}\s+postgres", shown, re.MULTILINE)
    assert re.search(rf"^  {api}\s+->\s+{db}$", shown, re.MULTILINE)
    assert re.search(rf"^  {web}\s+->\s+{api}$", shown, re.MULTILINE)
    data = json.loads(ok(server, "topology", "show", web, "--depth", "1", "--json"))
    assert {r["id"] for r in data["resources"]} == {web, api}

    done = cli(server, "topology", "show", f"nope-{run}")
    assert done.returncode == 3 and "NOT_FOUND" in done.stderr
    (tmp_path / "bad.yaml").write_text("resources:\n  - type: service\n")
    done = cli(server, "topology", "apply", str(tmp_path / "bad.yaml"))
    assert done.returncode == 2
    assert done.stderr == f"errorreplay: {tmp_path / 'bad.yaml'}: resources[0].id: is required\n"


def test_changes_record_and_list(server: ServerProcess) -> None:
    resource = f"db-{uuid.uuid4().hex[:8]}"
    change_id = ok(
        server,
        "changes",
        "record",
        "--resource",
        resource,
        "--version",
        "v2.1.0",
        "-d",
        "pool 100 -> 20",
        "--author",
        "ci",
        "--ago",
        "20m",
        "--meta",
        "sha=abc",
    ).strip()
    assert change_id.startswith("chg_")
    config = json.loads(
        ok(server, "changes", "record", "--resource", resource, "--kind", "config", "--version", "cfg-7", "--json")
    )
    assert config["kind"] == "CHANGE_KIND_CONFIG"
    listed = ok(server, "changes", "list", "--resource", resource)
    rows = listed.splitlines()
    assert len(rows) == 2 and "CONFIG" in rows[0]  # newest first
    assert re.search(rf"DEPLOYMENT\s+{resource}\s+v2\.1\.0\s+{change_id}\s+pool 100 -> 20 by ci", rows[1])
    deployments = json.loads(ok(server, "changes", "list", "--resource", resource, "--kind", "deployment", "--json"))
    assert [c["change_id"] for c in deployments["changes"]] == [change_id]
    assert deployments["changes"][0]["metadata"] == {"sha": "abc"}
    assert ok(server, "changes", "list", "--resource", f"none-{resource}") == "(no changes)\n"
