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
