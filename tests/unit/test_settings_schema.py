"""The one settings schema: every field has one variable, one file key and a documented default;
env overrides the file; one duration grammar; old names warn once and still work; errors name the
setting and the accepted form; `errorreplay config` masks secrets; the README cannot drift."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from errorreplay_server import cli, settings_doc, settings_schema
from errorreplay_server.domain.durations import format_duration, parse_duration
from errorreplay_server.domain.model import MICROS_PER_MINUTE
from errorreplay_server.settings import Settings
from errorreplay_server.settings_schema import FIXED_FIELDS, SPECS, ConfigError, default_text, load

README = Path(__file__).resolve().parents[2] / "README.md"

# Variables the README names that are not server settings: the CLI's client side, and test harnesses.
NOT_SERVER_SETTINGS = {
    "ERRORREPLAY_ADDRESS": "the CLI's target",
    "ERRORREPLAY_TOKEN": "the CLI's bearer token",
    "ERRORREPLAY_CONFIG": "the config file itself",
    "ERRORREPLAY_FUZZ_EXAMPLES": "fuzz test harness",
    "ERRORREPLAY_FUZZ_REPORT": "fuzz test harness",
    "ERRORREPLAY_KILL_REPORT": "crash test harness",
    "ERRORREPLAY_KILL_SEED": "crash test harness",
    "ERRORREPLAY_ERRORS": "a JetStream stream name (the default of ERRORREPLAY_NATS_STREAM)",
    "ERRORREPLAY_JOBS": "a JetStream stream name (the default of ERRORREPLAY_NATS_JOBS_STREAM)",
}


def leaf_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Attribute paths of every field that is not itself a settings model."""
    paths: set[tuple[str, ...]] = set()
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            paths |= leaf_paths(info.annotation, (*prefix, name))
        else:
            paths.add((*prefix, name))
    return paths


def test_every_field_has_exactly_one_setting() -> None:
    covered: dict[tuple[str, ...], list[str]] = {}
    for spec in SPECS:
        for path in spec.paths:
            covered.setdefault(path, []).append(spec.variable)
    fields = leaf_paths(Settings)
    assert set(covered) | set(FIXED_FIELDS) == fields
    assert not set(covered) & set(FIXED_FIELDS)
    # Two specs fill one field only for the deprecated metrics port.
    for path, variables in covered.items():
        if len(variables) > 1:
            assert variables == ["ERRORREPLAY_METRICS_ADDRESS", "ERRORREPLAY_METRICS_PORT"], path


def test_every_setting_has_one_variable_one_file_key_and_a_documented_default() -> None:
    variables = [spec.variable for spec in SPECS]
    assert len(set(variables)) == len(variables)
    keys = [(spec.section, spec.key) for spec in SPECS]
    assert len(set(keys)) == len(keys)
    table = settings_doc.table()
    for spec in SPECS:
        assert re.fullmatch(r"ERRORREPLAY_[A-Z0-9_]+", spec.variable)
        assert re.fullmatch(r"[a-z0-9_]+", spec.key) and spec.meaning
        row = next(line for line in table.splitlines() if line.startswith(f"| `{spec.variable}` |"))
        default = default_text(spec)
        assert (f"`{default}`" if default else "unset") in row
        # The documented default, set as the variable, gives the default in effect.
        if default and not spec.show_raw:
            for path in spec.paths:
                expected = settings_schema.get_path(load({}).settings, path)
                assert settings_schema.get_path(load({spec.variable: default}).settings, path) == expected


def test_the_readme_table_is_generated_from_the_schema() -> None:
    text = README.read_text(encoding="utf-8")
    assert settings_doc.render(text) == text, "run python -m errorreplay_server.settings_doc"


def test_every_variable_the_readme_names_exists() -> None:
    text = README.read_text(encoding="utf-8")
    known = set(settings_schema.SPECS_BY_VARIABLE) | set(NOT_SERVER_SETTINGS)
    known |= {old for spec in SPECS for old in spec.deprecated}
    named = set(re.findall(r"\bERRORREPLAY_[A-Z0-9_]*[A-Z0-9]\b", text))
    named |= set(re.findall(r"\b(?:NEO4J|ELASTICSEARCH|AZURE_LOG_ANALYTICS)_[A-Z_]*[A-Z]\b|\b[A-Z]+_URL\b", text))
    named -= {"ERRORREPLAY_OTLP"}  # the family `ERRORREPLAY_OTLP_*`
    # A notification target's URL and secret: one variable per target name (notify/config.py).
    named = {n for n in named if not re.fullmatch(r"ERRORREPLAY_NOTIFY_TARGET_[A-Z0-9_]+_(URL|SECRET)", n)}
    assert named - known == set()
    assert "ERRORREPLAY_CHANGE_WINDOW" not in named


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604_800.0),
        ("90", 90.0),
        ("1.5", 1.5),
        (" 10m ", 600.0),
        (45, 45.0),
        (0.25, 0.25),
    ],
)
def test_the_duration_grammar(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10x", "", "m", "-5s", "5 minutes", "1e3", "7w", "ms5"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration such as 500ms, 30s, 5m, 2h or 7d"):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(600, "10m"), (0.5, "500ms"), (86_400, "1d"), (90, "90s"), (0, "0s")])
def test_durations_are_written_back_in_the_grammar(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_env_and_file_share_the_grammar(tmp_path: Path) -> None:
    config = tmp_path / "errorreplay.toml"
    config.write_text('[analysis]\nrelated_window = "7d"\n[collectors]\ncollector_timeout = 1.5\n')
    from_file = load({}, config).settings
    assert from_file.analysis.related_window_us == 7 * 24 * 60 * MICROS_PER_MINUTE
    assert from_file.collectors.timeout_seconds == 1.5
    from_env = load({"ERRORREPLAY_RELATED_WINDOW": "500ms"}).settings
    assert from_env.analysis.related_window_us == 500_000


def test_env_overrides_the_file_and_the_file_overrides_the_default(tmp_path: Path) -> None:
    config = tmp_path / "errorreplay.toml"
    config.write_text(
        "[server]\nlisten_address = '0.0.0.0:7000'\nstore = 'sqlite'\n"
        "[limits]\nmax_tags = 10\nmax_search_text_chars = 99\n"
        "[hub]\nstream_queue_size = 5\n"
        "[otlp]\ntag_attributes = ['a', 'b']\n"
    )
    env = {"ERRORREPLAY_CONFIG": str(config), "ERRORREPLAY_MAX_TAGS": "20"}
    s = load(env).settings
    assert s.listen_address == "0.0.0.0:7000"
    assert s.limits.max_tags == 20  # env wins
    assert s.limits.max_search_text_chars == 99 and s.hub.queue_size == 5
    assert s.otlp.tag_attributes == ("a", "b")
    assert s.limits.max_batch_size == Settings().limits.max_batch_size  # neither: the default


def test_flags_override_env(tmp_path: Path) -> None:
    env = {"ERRORREPLAY_DATA_DIR": "/from/env", "ERRORREPLAY_STORE": "neo4j"}
    s = load(env, None, {"ERRORREPLAY_DATA_DIR": ("--data-dir", str(tmp_path))}).settings
    assert s.data_dir == tmp_path and s.store == "neo4j"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[limits]\nmax_tagz = 3\n", r"unknown key \[limits\] max_tagz"),
        ("[limitz]\nmax_tags = 3\n", r"unknown key \[limitz\] max_tags"),
        ("max_tags = 3\n", "must be a \\[section\\]"),
        ("[limits\n", "not valid TOML"),
        ('[analysis]\nrelated_window = "10x"\n', r"\[analysis\] related_window: \"10x\" is not a duration"),
        ('[limits]\nmax_tags = "many"\n', r"\[limits\] max_tags: \"many\" is not an integer"),
        # pydantic alone would read `true` as 1: a switch where a number belongs is an error.
        ("[limits]\nmax_tags = true\n", r"\[limits\] max_tags: \"true\" is not an integer >= 0"),
        ("[analysis]\nrelated_window = true\n", r"\[analysis\] related_window: \"true\" is not a duration"),
        ("[security]\nrate_limit_per_second = false\n", r"rate_limit_per_second: \"false\" is not a number >= 0"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, body: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(body)
    with pytest.raises(ConfigError, match=message):
        load({}, config)


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load({"ERRORREPLAY_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.parametrize(
    ("variable", "value", "form"),
    [
        ("ERRORREPLAY_RELATED_WINDOW", "10x", "is not a duration such as 500ms, 30s, 5m, 2h or 7d"),
        ("ERRORREPLAY_COLLECTOR_TIMEOUT", "soon", "is not a duration"),
        ("ERRORREPLAY_MAX_SEARCH_TEXT_CHARS", "lots", "is not an integer"),
        ("ERRORREPLAY_STREAM_RECENT_SIZE", "-1", "is not an integer >= 0"),
        ("ERRORREPLAY_CAUSE_CHANGE_WEIGHT", "heavy", "is not a number"),
        ("ERRORREPLAY_STORE", "postgres", "is not one of sqlite, neo4j"),
        ("ERRORREPLAY_OTLP_ERROR_SPANS", "maybe", "is not on or off"),
        ("ERRORREPLAY_METRICS_ADDRESS", "9464", "host:port"),
        ("ERRORREPLAY_LOG_LEVEL", "chatty", "is not one of DEBUG"),
        ("ERRORREPLAY_COLLECTOR_TIMEOUT", "0", '"0" is not a duration > 0'),
        ("ERRORREPLAY_RELATED_LIMIT", "0", '"0" is not an integer >= 1'),
        ("ERRORREPLAY_CAUSE_CHANGE_WEIGHT", "1.5", '"1.5" is not a number between 0 and 1'),
    ],
)
def test_bad_values_name_the_variable_and_the_form(variable: str, value: str, form: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({variable: value})
    message = str(info.value)
    assert message.startswith(f"{variable}: ") and form in message and "\n" not in message


def test_every_setting_can_be_set_from_the_environment() -> None:
    """Some limits (max_search_text_chars, the hub's) could not be set before the schema."""
    s = load(
        {
            "ERRORREPLAY_MAX_SEARCH_TEXT_CHARS": "77",
            "ERRORREPLAY_STREAM_MEMORY_SIZE": "11",
            "ERRORREPLAY_STREAM_RECENT_SIZE": "12",
            "ERRORREPLAY_STREAM_TOPOLOGY_TTL": "1m",
            "ERRORREPLAY_STREAM_TOPOLOGY_CACHE_SIZE": "13",
            "ERRORREPLAY_STREAM_BACKFILL_PAGE": "14",
            "ERRORREPLAY_SCRUB_PII": "off",
            "ERRORREPLAY_SCRUB_DISABLED_KINDS": "jwt, credit_card",
        }
    ).settings
    assert s.limits.max_search_text_chars == 77
    assert (s.hub.memory_size, s.hub.recent_size, s.hub.topology_ttl_seconds) == (11, 12, 60.0)
    assert (s.hub.topology_cache_size, s.hub.backfill_page) == (13, 14)
    assert not s.scrub.pii and s.scrub.disabled_kinds == ("jwt", "credit_card")


@pytest.mark.parametrize(
    ("old", "new", "value", "path"),
    [
        ("PROMETHEUS_URL", "ERRORREPLAY_PROMETHEUS_URL", "http://prom:9090", ("collectors", "prometheus_url")),
        ("NEO4J_URI", "ERRORREPLAY_NEO4J_URI", "bolt://db:7687", ("neo4j", "uri")),
        (
            "AZURE_LOG_ANALYTICS_WORKSPACE_ID",
            "ERRORREPLAY_AZURE_WORKSPACE_ID",
            "ws-1",
            ("collectors", "azure_workspace_id"),
        ),
    ],
)
def test_deprecated_names_warn_once_and_still_work(
    old: str,
    new: str,
    value: str,
    path: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings_schema, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="errorreplay.settings"):
        first = load({old: value}).settings
        second = load({old: value}).settings
    assert settings_schema.get_path(first, path) == settings_schema.get_path(second, path) == value
    warnings = [r.getMessage() for r in caplog.records if old in r.getMessage()]
    assert warnings == [f"{old} is deprecated; use {new} (it still works for now)"]
    # The new name wins over the old one.
    assert settings_schema.get_path(load({old: "old", new: value}).settings, path) == value


def test_metrics_port_is_the_older_form_of_the_metrics_address() -> None:
    assert load({"ERRORREPLAY_METRICS_PORT": "9100"}).settings.metrics_address == "127.0.0.1:9100"
    both = {"ERRORREPLAY_METRICS_PORT": "9100", "ERRORREPLAY_METRICS_ADDRESS": "0.0.0.0:9200"}
    assert load(both).settings.metrics_address == "0.0.0.0:9200"


SECRETS = {
    "ERRORREPLAY_AUTH_TOKENS": "admin:tok-admin-1234",
    "ERRORREPLAY_NEO4J_PASSWORD": "neo-pass-5678",
    "ELASTICSEARCH_API_KEY": "es-key-9999",
    "ERRORREPLAY_ELASTICSEARCH_PASSWORD": "es-pass-4321",
    "ERRORREPLAY_AZURE_TOKEN": "azure-token-8765",
    "ERRORREPLAY_SENTRY_KEYS": "42:abcdef0123456789",
}


def _run_config(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    for name in list(__import__("os").environ):
        if name.startswith(("ERRORREPLAY_", "NEO4J_", "ELASTICSEARCH_", "PROMETHEUS_", "LOKI_", "TEMPO_")):
            monkeypatch.delenv(name)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ERRORREPLAY_RELATED_WINDOW", "15m")
    assert cli.main(["config", *argv]) == 0
    return capsys.readouterr().out


def test_config_prints_the_effective_settings_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = _run_config(monkeypatch, capsys)
    for secret in ("tok-admin-1234", "neo-pass-5678", "es-key-9999", "es-pass-4321", "azure-token-8765", "abcdef0123"):
        assert secret not in out
    assert out.count(settings_schema.MASK) == len(SECRETS)
    assert 'related_window = "15m"' in out
    # The output is a config file that gives the same settings (secrets aside).
    config = tmp_path / "effective.toml"
    config.write_text(out)
    monkeypatch.delenv("ERRORREPLAY_RELATED_WINDOW")
    reloaded = load({}, config).settings
    assert reloaded.analysis == load({"ERRORREPLAY_RELATED_WINDOW": "15m"}).settings.analysis
    assert reloaded.limits == Settings().limits and reloaded.collectors.windows == Settings().collectors.windows


def test_config_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(_run_config(monkeypatch, capsys, "--json"))
    assert doc["security"]["auth_tokens"] == settings_schema.MASK
    assert doc["neo4j"]["password"] == settings_schema.MASK
    assert doc["analysis"]["related_window"] == "15m"
    assert doc["collectors"]["elasticsearch_api_key"] == settings_schema.MASK


def test_a_bad_setting_stops_serve_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ERRORREPLAY_RELATED_WINDOW", "10x")
    assert cli.main(["serve"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        "errorreplay: configuration error: ERRORREPLAY_RELATED_WINDOW: "
        '"10x" is not a duration such as 500ms, 30s, 5m, 2h or 7d\n'
    )


def test_serve_flags_go_through_the_schema(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--metrics-address", "nowhere"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("errorreplay: configuration error: --metrics-address: ")
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for flag in ("--address", "--data-dir", "--store", "--metrics-address", "--config"):
        assert flag in help_text
