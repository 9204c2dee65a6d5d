"""The errorreplay command's argument handling and error line, without a server."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay_server import cli
from errorreplay_server.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_options_work_before_and_after_the_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRORREPLAY_ADDRESS", "env-host:1")
    parser = cli.build_parser()
    assert parser.parse_args(["get", "err_1"]).address == "env-host:1"
    assert parser.parse_args(["--address", "a:1", "get", "err_1"]).address == "a:1"
    assert parser.parse_args(["get", "err_1", "--address", "b:2", "--timeout", "3"]).address == "b:2"
    assert parser.parse_args(["--timeout", "2.5", "get", "err_1"]).timeout == 2.5


def test_default_address_and_serve_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERRORREPLAY_ADDRESS", raising=False)
    args = cli.build_parser().parse_args(["serve"])
    assert args.address == "localhost:50051" and not args.address_given
    assert args.run is cli._serve


def serve_settings(monkeypatch: pytest.MonkeyPatch, *argv: str, **env: str) -> Settings:
    for name in (
        "ERRORREPLAY_LISTEN_ADDRESS",
        "ERRORREPLAY_DATA_DIR",
        "ERRORREPLAY_METRICS_ADDRESS",
        "ERRORREPLAY_ADDRESS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cli._serve_settings(cli.build_parser().parse_args(list(argv)))


def test_serve_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "ERRORREPLAY_LISTEN_ADDRESS": "0.0.0.0:7000",
        "ERRORREPLAY_DATA_DIR": "/env",
        "ERRORREPLAY_METRICS_ADDRESS": "0.0.0.0:9100",
        "ERRORREPLAY_ADDRESS": "client-only:1",  # a client setting: never what serve listens on
    }
    s = serve_settings(monkeypatch, "serve", **env)
    assert (s.listen_address, str(s.data_dir), s.metrics_address) == ("0.0.0.0:7000", "/env", "0.0.0.0:9100")
    s = serve_settings(
        monkeypatch,
        "serve",
        "--address",
        "[::]:7001",
        "--data-dir",
        "/flag",
        "--metrics-address",
        "0.0.0.0:9200",
        **env,
    )
    assert (s.listen_address, str(s.data_dir), s.metrics_address) == ("[::]:7001", "/flag", "0.0.0.0:9200")
    assert serve_settings(monkeypatch, "serve", "--metrics-address", "off", **env).metrics_address == ""
    with pytest.raises(ValueError, match="--metrics-address"):
        serve_settings(monkeypatch, "serve", "--metrics-address", "9464")


def test_the_global_address_applies_to_serve_and_serves_own_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert serve_settings(monkeypatch, "--address", "h:1", "serve").listen_address == "h:1"
    assert serve_settings(monkeypatch, "--address", "h:1", "serve", "--address", "h:2").listen_address == "h:2"
    assert serve_settings(monkeypatch, "serve").listen_address == "localhost:50051"


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        (grpc.StatusCode.NOT_FOUND, 3),
        (grpc.StatusCode.INVALID_ARGUMENT, 2),
        (grpc.StatusCode.UNAVAILABLE, 1),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 1),
        (grpc.StatusCode.INTERNAL, 1),
        (grpc.StatusCode.PERMISSION_DENIED, 1),
    ],
)
def test_exit_codes(code: grpc.StatusCode, exit_code: int) -> None:
    assert cli.exit_code_for(code) == exit_code


def test_subcommands_parse() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["groups", "list", "--status", "open", "--status", "muted", "--order", "count"])
    assert args.status == [m.ERROR_GROUP_STATUS_OPEN, m.ERROR_GROUP_STATUS_MUTED] and args.order == "count"
    assert parser.parse_args(["groups", "mute", "grp_1"]).action == "mute"
    args = parser.parse_args(["changes", "record", "--resource", "db", "--kind", "config", "--ago", "20m"])
    assert (args.kind, args.ago) == (m.CHANGE_KIND_CONFIG, timedelta(minutes=20))
    assert parser.parse_args(["topology", "show", "api", "--depth", "3"]).depth == 3


def test_topology_file_forms(tmp_path: Path) -> None:
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text(
        "resources:\n"
        "  - id: api\n    type: service\n    labels: {team: x, tier: 1}\n    depends_on: [db, cache]\n"
        "  - web\n"
        "dependencies:\n  - web -> api\n  - {dependent_id: api, dependency_id: queue}\n"
    )
    resources, dependencies = cli.load_topology_file(str(yaml_file))
    assert [(r.id, r.type, dict(r.labels)) for r in resources] == [
        ("api", "service", {"team": "x", "tier": "1"}),
        ("web", "", {}),
    ]
    assert [(d.dependent_id, d.dependency_id) for d in dependencies] == [
        ("api", "db"),
        ("api", "cache"),
        ("web", "api"),
        ("api", "queue"),
    ]
    json_file = tmp_path / "t.json"
    json_file.write_text(json.dumps({"dependencies": [{"dependent": "a", "dependency": "b"}]}))
    assert cli.load_topology_file(str(json_file)) == ([], [m.Dependency(dependent_id="a", dependency_id="b")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[a, b]", "expected a mapping with `resources` and/or `dependencies`"),
        ("resource: []", "expected a mapping with `resources` and/or `dependencies`"),
        ("resources: {api: {}}", "resources: expected a list"),
        ("resources: [{type: db}]", r"resources\[0\].id: is required"),
        ("resources: [{id: a, owner: me}]", r"resources\[0\]: unknown key\(s\) owner"),
        ("resources: [{id: a, depends_on: b}]", r"resources\[0\].depends_on: expected a list of resource ids"),
        ("resources: [{id: a, labels: [x]}]", r"resources\[0\].labels: expected a mapping"),
        ("resources: [{id: [a]}]", r"resources\[0\].id: expected a string"),
        ("dependencies: [a]", r"dependencies\[0\]: expected `dependent -> dependency`"),
        ("dependencies: ['a ->']", r"dependencies\[0\]: both the dependent and its dependency are required"),
        ("resources: [", "not valid YAML"),
    ],
)
def test_bad_topology_files_name_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(cli.UsageError, match=message):
        cli.load_topology_file(str(path))
    with pytest.raises(cli.UsageError, match="cannot read"):
        cli.load_topology_file(str(tmp_path / "missing.yaml"))


def test_a_bad_topology_file_exits_2_before_calling_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    path.write_text("{not json")
    code = cli.main(["--address", f"127.0.0.1:{free_port()}", "topology", "apply", str(path)])
    assert code == 2
    assert capsys.readouterr().err.startswith(f"errorreplay: {path}: not valid JSON")


def test_capture_flags() -> None:
    args = cli.build_parser().parse_args(
        ["capture", "-m", "boom", "--severity", "critical", "--source", "application", "--tag", "a=b", "--tag", "c=d=e"]
    )
    assert (args.message, args.severity, args.source) == ("boom", m.SEVERITY_CRITICAL, m.SOURCE_APPLICATION)
    assert dict(args.tag) == {"a": "b", "c": "d=e"}
    defaults = cli.build_parser().parse_args(["capture", "-m", "x"])
    assert (defaults.severity, defaults.source, defaults.request_id) == (m.SEVERITY_MEDIUM, m.SOURCE_MANUAL, None)


def test_filters_become_an_error_filter() -> None:
    args = cli.build_parser().parse_args(
        [
            "search",
            "--resource",
            "db",
            "--resource",
            "api",
            "--min-severity",
            "HIGH",
            "--tag",
            "team=x",
            "--text",
            "pool",
        ]
    )
    flt = cli._filter(args)
    assert list(flt.resource_ids) == ["db", "api"]
    assert flt.min_severity == m.SEVERITY_HIGH
    assert dict(flt.tags) == {"team": "x"}
    assert flt.text == "pool"
    assert cli.build_parser().parse_args(["stats", "--since", "90m"]).since == timedelta(minutes=90)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["capture"],
        ["capture", "-m", "x", "--severity", "urgent"],
        ["capture", "-m", "x", "--tag", "novalue"],
        ["search", "--since", "5 minutes"],
        ["get"],
        ["get", "x", "--timeout", "0"],
        ["nonsense"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: errorreplay" in capsys.readouterr().err


def test_unreachable_server_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--address", f"127.0.0.1:{free_port()}", "--timeout", "2", "get", "err_1"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith("errorreplay: UNAVAILABLE: ")
    assert err.count("\n") == 1
