"""The errorreplay command's argument handling and error line, without a server."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from errorreplay.v1 import message_pb2 as m
from errorreplay_server import cli


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
    assert args.address == "localhost:50051"
    assert args.run is cli._serve


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
