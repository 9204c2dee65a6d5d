"""Where `errorreplay replay` says the console shows the replay (cli.console_link)."""

from __future__ import annotations

from errorreplay_server.console.links import console_line, console_link


def test_a_local_server_links_to_its_http_address() -> None:
    assert console_link("err_1", "localhost:50051", {}) == "http://localhost:8080/errors/err_1"
    assert console_link("err_1", "127.0.0.1:50051", {"ERRORREPLAY_HTTP_ADDRESS": "0.0.0.0:9000"}) == (
        "http://localhost:9000/errors/err_1"
    )


def test_the_public_url_wins_and_ids_are_quoted() -> None:
    env = {"ERRORREPLAY_CONSOLE_URL": "https://errors.example.com/"}
    assert console_link("a/b c", "prod:443", env) == "https://errors.example.com/errors/a%2Fb%20c"


def test_no_link_when_the_console_is_off_or_unknown() -> None:
    assert console_link("err_1", "localhost:50051", {"ERRORREPLAY_CONSOLE": "off"}) == ""
    assert console_link("err_1", "localhost:50051", {"ERRORREPLAY_HTTP_ADDRESS": "off"}) == ""
    assert console_link("err_1", "prod.example.com:443", {}) == ""


def test_the_replay_ends_with_a_console_line_only_when_there_is_a_link() -> None:
    assert console_line("err_1", "localhost:50051", {}) == "\nConsole: http://localhost:8080/errors/err_1\n"
    assert console_line("err_1", "prod:443", {}) == ""
