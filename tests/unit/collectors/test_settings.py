from __future__ import annotations

import json
from pathlib import Path

import pytest

from errorreplay_server.collectors.base import WindowSpec
from errorreplay_server.collectors.promql import PERCENT, PromQLTemplates
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.domain.durations import parse_duration
from errorreplay_server.domain.model import MICROS_PER_MINUTE, MICROS_PER_SECOND
from errorreplay_server.settings import Settings


def collector_settings(env: dict[str, str]) -> CollectorSettings:
    return Settings.from_env(env).collectors


def test_defaults_follow_the_design() -> None:
    s = collector_settings({})
    assert s.prometheus_url == s.loki_url == s.tempo_url == s.elasticsearch_url == s.azure_workspace_id == ""
    assert s.windows.logs == WindowSpec(5 * MICROS_PER_MINUTE, 5 * MICROS_PER_MINUTE)
    assert s.windows.metrics == WindowSpec(15 * MICROS_PER_MINUTE, 5 * MICROS_PER_MINUTE)
    assert s.windows.changes == WindowSpec(24 * 60 * MICROS_PER_MINUTE, 0)
    assert s.timeout_seconds == 2.0
    assert s.log_lines_cap == 200
    assert (s.cpu_limit_percent, s.memory_limit_percent, s.error_rate_limit_percent) == (90, 90, 5)
    assert s.loki_resource_label == "resource_id" and s.loki_service_label == "service"


def test_baseline_and_trend_settings() -> None:
    d = collector_settings({})
    assert (d.metrics_baseline_lookback_seconds, d.metrics_baseline_step_seconds) == (3600, 60)
    assert (d.metrics_seasonal_offset_seconds, d.anomaly_seasonal_margin) == (86_400, 0.2)
    assert (d.trend_min_points, d.trend_min_r2, d.trend_min_rise) == (8, 0.8, 1.5)
    s = collector_settings(
        {
            "ERRORREPLAY_METRICS_BASELINE_LOOKBACK": "2h",
            "ERRORREPLAY_METRICS_BASELINE_STEP": "30s",
            "ERRORREPLAY_METRICS_SEASONAL_OFFSET": "0",
            "ERRORREPLAY_ANOMALY_SEASONAL_MARGIN": "0.5",
            "ERRORREPLAY_TREND_MIN_POINTS": "12",
            "ERRORREPLAY_TREND_MIN_R2": "0.9",
            "ERRORREPLAY_TREND_MIN_RISE": "2",
        }
    )
    assert (s.metrics_baseline_lookback_seconds, s.metrics_baseline_step_seconds) == (7200, 30)
    assert (s.metrics_seasonal_offset_seconds, s.anomaly_seasonal_margin) == (0, 0.5)
    assert (s.trend_min_points, s.trend_min_r2, s.trend_min_rise) == (12, 0.9, 2)


def test_from_env_reads_every_backend() -> None:
    s = collector_settings(
        {
            "PROMETHEUS_URL": "http://prom:9090",
            "LOKI_URL": "http://loki:3100",
            "ERRORREPLAY_LOKI_TENANT": "team-a",
            "ERRORREPLAY_LOKI_RESOURCE_LABEL": "instance",
            "TEMPO_URL": "http://tempo:3200",
            "ELASTICSEARCH_URL": "http://es:9200",
            "ELASTICSEARCH_API_KEY": "k",
            "ERRORREPLAY_ELASTICSEARCH_INDEX": "app-*",
            "AZURE_LOG_ANALYTICS_WORKSPACE_ID": "ws",
            "ERRORREPLAY_AZURE_TOKEN": "tok",
            "ERRORREPLAY_COLLECTOR_TIMEOUT": "750ms",
            "ERRORREPLAY_LOGS_WINDOW_BEFORE": "2m",
            "ERRORREPLAY_CHANGES_WINDOW_BEFORE": "48h",
            "ERRORREPLAY_ANOMALY_MAD_K": "3.5",
            "ERRORREPLAY_BREAKER_FAILURES": "2",
        }
    )
    assert s.prometheus_url == "http://prom:9090" and s.loki_tenant == "team-a"
    assert s.loki_resource_label == "instance"
    assert s.elasticsearch_api_key == "k" and s.elasticsearch_index == "app-*"
    assert s.azure_workspace_id == "ws" and s.azure_token == "tok"
    assert s.timeout_seconds == 0.75
    assert s.windows.logs.before == 2 * MICROS_PER_MINUTE
    assert s.windows.changes.before == 48 * 60 * MICROS_PER_MINUTE
    assert s.anomaly_mad_k == 3.5 and s.breaker_failures == 2
    assert "tok" not in repr(s) and "'k'" not in repr(s)  # secrets stay out of logs


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ERRORREPLAY_COLLECTOR_TIMEOUT": "soon"}, "ERRORREPLAY_COLLECTOR_TIMEOUT"),
        ({"ERRORREPLAY_MAX_SPANS": "many"}, "ERRORREPLAY_MAX_SPANS"),
        ({"ERRORREPLAY_LOKI_RESOURCE_LABEL": 'a"} or {b'}, "label name"),
        ({"ERRORREPLAY_AZURE_TABLE": "T | take 1"}, "KQL identifier"),
        ({"ERRORREPLAY_COLLECTOR_TIMEOUT": "0"}, 'ERRORREPLAY_COLLECTOR_TIMEOUT: "0" is not a duration > 0'),
        ({"ERRORREPLAY_ANOMALY_SEASONAL_MARGIN": "-0.1"}, 'MARGIN: "-0.1" is not a number >= 0'),
        ({"ERRORREPLAY_METRICS_BASELINE_STEP": "0"}, 'STEP: "0" is not a duration > 0'),
        ({"ERRORREPLAY_TREND_MIN_R2": "1.5"}, 'R2: "1.5" is not a number between 0 and 1'),
        ({"ERRORREPLAY_TREND_MIN_RISE": "soon"}, "ERRORREPLAY_TREND_MIN_RISE"),
    ],
)
def test_bad_values_name_the_problem(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        collector_settings(env)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2", 2.0), ("1.5", 1.5), ("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("24h", 86_400.0), ("7d", 604_800.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_templates_file_renames_labels_and_overrides_kinds(tmp_path: Path) -> None:
    path = tmp_path / "promql.toml"
    path.write_text(
        """
rate_interval = "2m"
[labels]
resource = "instance_id"
service = "job"
status = "status_code"
[templates.default]
cpu = { query = "my_cpu{$selector}", unit = "percent" }
latency_p99 = ""
[templates.database]
memory = "pg_memory_bytes{$selector}"
"""
    )
    s = collector_settings({"ERRORREPLAY_PROMQL_TEMPLATES": str(path)})
    t = s.promql_templates
    assert (t.resource_label, t.service_label, t.status_label, t.rate_interval) == (
        "instance_id",
        "job",
        "status_code",
        "2m",
    )
    default = {m.kind: m for m in t.for_resource_type("anything")}
    assert default["cpu"].query == "my_cpu{$selector}" and default["cpu"].unit == PERCENT
    assert "latency_p99" not in default
    error_rate = t.render(default["error_rate"], "instance_id", "db-1")
    assert 'status_code=~"5.."' in error_rate and "[2m]" in error_rate
    database = {m.kind: m for m in t.for_resource_type("Database")}
    # A new type inherits the overridden default, and its memory unit from it.
    assert database["cpu"].query == "my_cpu{$selector}"
    assert database["memory"].query == "pg_memory_bytes{$selector}" and database["memory"].unit == "bytes"


def test_templates_file_may_be_json(tmp_path: Path) -> None:
    path = tmp_path / "promql.json"
    path.write_text(json.dumps({"templates": {"host": {"cpu": "node_cpu_busy{$selector}"}}}))
    t = PromQLTemplates.load(path)
    assert {m.kind: m for m in t.for_resource_type("vm")}["cpu"].query == "node_cpu_busy{$selector}"


def test_builtin_types_and_aliases() -> None:
    t = PromQLTemplates()
    pod = {m.kind: m for m in t.for_resource_type("pod")}
    assert "container_memory_working_set_bytes" in pod["memory"].query and pod["memory"].unit == PERCENT
    assert "http_requests_total" in pod["request_rate"].query  # inherited from default
    assert len(t.for_resource_type("")) == 6


@pytest.mark.parametrize(
    "data",
    [
        {"templates": {"default": {"cpu": "rate(x{$selecter}[5m])"}}},  # unknown placeholder
        {"templates": {"default": {"cpu": 3}}},
        {"labels": {"resource": "bad-label"}},
        {"rate_interval": "5 minutes"},
    ],
)
def test_bad_templates_fail_at_start(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PromQLTemplates.from_mapping(data)


def test_seconds_helper_is_exact() -> None:
    assert CollectorSettings().windows.metrics.around(10 * MICROS_PER_SECOND).end == 310 * MICROS_PER_SECOND
