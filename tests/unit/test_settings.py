"""Settings come from the environment once, with documented defaults, and bad values fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from errorreplay_server.settings import Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.listen_address, s.data_dir, s.store) == ("localhost:50051", Path("data"), "sqlite")
    assert s.metrics_address == "127.0.0.1:9464"  # metrics are on by default, and local
    assert s.enrichment_enabled and s.event_loop == "auto"
    assert s.limits.max_batch_size == 1000 and s.hub.queue_size == 1000


def test_values_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "ERRORREPLAY_LISTEN_ADDRESS": "0.0.0.0:6000",
            "ERRORREPLAY_DATA_DIR": "/var/lib/errorreplay",
            "ERRORREPLAY_STORE": "NEO4J",
            "NEO4J_URI": "bolt://db:7687",
            "ERRORREPLAY_ENRICHMENT": "off",
            "ERRORREPLAY_EVENT_LOOP": "asyncio",
            "ERRORREPLAY_STREAM_QUEUE_SIZE": "50",
            "ERRORREPLAY_MAX_BATCH_SIZE": "10",
        }
    )
    assert s.listen_address == "0.0.0.0:6000" and s.sqlite_path == Path("/var/lib/errorreplay/errorreplay.db")
    assert s.store == "neo4j" and s.neo4j.uri == "bolt://db:7687"
    assert not s.enrichment_enabled and s.event_loop == "asyncio"
    assert s.hub.queue_size == 50 and s.limits.max_batch_size == 10


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ERRORREPLAY_STORE", "postgres"),
        ("ERRORREPLAY_EVENT_LOOP", "trio"),
        ("ERRORREPLAY_METRICS_PORT", "nine"),
        ("ERRORREPLAY_METRICS_PORT", "70000"),
        ("ERRORREPLAY_METRICS_ADDRESS", "9464"),
        ("ERRORREPLAY_METRICS_ADDRESS", "0.0.0.0:http"),
        ("ERRORREPLAY_SHUTDOWN_GRACE_SECONDS", "soon"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_otlp_defaults_and_values() -> None:
    d = Settings.from_env({}).otlp
    assert (d.min_log_severity, d.error_spans, d.resource_id_attribute) == (17, False, "service.name")
    assert "host.name" in d.tag_attributes and "k8s.namespace.name" in d.tag_attributes
    s = Settings.from_env(
        {
            "ERRORREPLAY_OTLP_MIN_LOG_SEVERITY": "warn",
            "ERRORREPLAY_OTLP_ERROR_SPANS": "on",
            "ERRORREPLAY_OTLP_RESOURCE_ID_ATTRIBUTE": "k8s.deployment.name",
            "ERRORREPLAY_OTLP_TAG_ATTRIBUTES": "http.route, k8s.pod.name,",
        }
    ).otlp
    assert (s.min_log_severity, s.error_spans, s.resource_id_attribute) == (13, True, "k8s.deployment.name")
    assert s.tag_attributes == ("http.route", "k8s.pod.name")
    assert Settings.from_env({"ERRORREPLAY_OTLP_MIN_LOG_SEVERITY": "21"}).otlp.min_log_severity == 21
    assert Settings.from_env({"ERRORREPLAY_OTLP_TAG_ATTRIBUTES": ""}).otlp.tag_attributes == ()


@pytest.mark.parametrize("value", ["loud", "0", "25"])
def test_bad_otlp_severity_names_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="ERRORREPLAY_OTLP_MIN_LOG_SEVERITY"):
        Settings.from_env({"ERRORREPLAY_OTLP_MIN_LOG_SEVERITY": value})


def test_topology_limits_come_from_the_environment() -> None:
    from errorreplay_server.store.base import TopologyBounds

    limits = Settings.from_env(
        {
            "ERRORREPLAY_MAX_NEIGHBOURS_PER_HOP": "7",
            "ERRORREPLAY_MAX_TOPOLOGY_EDGES": "70",
            "ERRORREPLAY_MAX_RESOURCES_PER_CALL": "10",
            "ERRORREPLAY_MAX_DEPENDENCIES_PER_CALL": "20",
            "ERRORREPLAY_MAX_RESOURCE_NAME_CHARS": "30",
            "ERRORREPLAY_MAX_LABELS": "4",
            "ERRORREPLAY_MAX_CHANGE_METADATA": "5",
        }
    ).limits
    assert (
        limits.max_resources_per_call,
        limits.max_dependencies_per_call,
        limits.max_resource_name_chars,
        limits.max_labels,
        limits.max_change_metadata,
    ) == (10, 20, 30, 4, 5)
    assert limits.topology_bounds == TopologyBounds(max_neighbours_per_hop=7, max_edges=70)
    assert Settings.from_env({}).limits.topology_bounds == TopologyBounds(100, 2000)


@pytest.mark.parametrize(
    ("env", "address"),
    [
        ({"ERRORREPLAY_METRICS_ADDRESS": "0.0.0.0:9100"}, "0.0.0.0:9100"),
        ({"ERRORREPLAY_METRICS_ADDRESS": "[::]:9100"}, "[::]:9100"),
        ({"ERRORREPLAY_METRICS_ADDRESS": "off"}, ""),
        ({"ERRORREPLAY_METRICS_PORT": "9100"}, "127.0.0.1:9100"),
        ({"ERRORREPLAY_METRICS_PORT": "0"}, ""),
        ({"ERRORREPLAY_METRICS_ADDRESS": "10.0.0.5:9200", "ERRORREPLAY_METRICS_PORT": "9100"}, "10.0.0.5:9200"),
    ],
)
def test_metrics_address(env: dict[str, str], address: str) -> None:
    assert Settings.from_env(env).metrics_address == address


def test_enrichment_resume_horizon() -> None:
    assert Settings.from_env({}).collectors.enrichment_resume_horizon_seconds == 86_400
    env = {"ERRORREPLAY_ENRICHMENT_RESUME_HORIZON": "6h"}
    assert Settings.from_env(env).collectors.enrichment_resume_horizon_seconds == 6 * 3600
