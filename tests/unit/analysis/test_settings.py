import pytest

from errorreplay_server.analysis.settings import DEFAULT_SETTINGS, AnalysisSettings
from errorreplay_server.domain.durations import parse_duration_micros
from errorreplay_server.domain.model import MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND
from errorreplay_server.settings import Settings


def analysis_settings(env: dict[str, str]) -> AnalysisSettings:
    return Settings.from_env(env).analysis


def test_defaults_follow_the_design() -> None:
    s = DEFAULT_SETTINGS
    assert s.related_window_us == 10 * MICROS_PER_MINUTE
    assert s.related_hops == 2
    assert s.change_window_us == 24 * MICROS_PER_HOUR
    assert s.fingerprint_frames == 5


def test_empty_environment_gives_the_defaults() -> None:
    assert analysis_settings({}) == DEFAULT_SETTINGS
    assert analysis_settings({"ERRORREPLAY_CAUSE_CHANGE_WEIGHT": "  "}) == DEFAULT_SETTINGS


def test_from_env_reads_each_kind() -> None:
    s = analysis_settings(
        {
            "ERRORREPLAY_RELATED_WINDOW": "5m",
            "ERRORREPLAY_CHANGES_WINDOW_BEFORE": "48h",
            "ERRORREPLAY_CAUSE_CHANGE_HALF_LIFE": "90",
            "ERRORREPLAY_RELATED_HOPS": "3",
            "ERRORREPLAY_CAUSE_CHANGE_WEIGHT": "0.5",
            "ERRORREPLAY_CAUSE_SATURATION_METRICS": "cpu, disk ,",
        }
    )
    assert s.related_window_us == 5 * MICROS_PER_MINUTE
    assert s.change_window_us == 48 * MICROS_PER_HOUR
    assert s.change_half_life_us == 90 * MICROS_PER_SECOND
    assert s.related_hops == 3
    assert s.change_weight == 0.5
    assert s.saturation_metrics == ("cpu", "disk")


@pytest.mark.parametrize(
    ("text", "micros"),
    [("500ms", 500_000), ("2s", 2_000_000), ("5m", 300_000_000), ("24h", 86_400_000_000), ("1.5", 1_500_000)],
)
def test_durations(text: str, micros: int) -> None:
    assert parse_duration_micros(text) == micros


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(ValueError, match="ERRORREPLAY_CAUSE_BURST_MIN_ERRORS"):
        analysis_settings({"ERRORREPLAY_CAUSE_BURST_MIN_ERRORS": "many"})
    with pytest.raises(ValueError, match="ERRORREPLAY_RELATED_WINDOW"):
        analysis_settings({"ERRORREPLAY_RELATED_WINDOW": "soon"})
    with pytest.raises(ValueError, match="ERRORREPLAY_LOG_RESOURCE_LABELS"):
        analysis_settings({"ERRORREPLAY_LOG_RESOURCE_LABELS": ","})


@pytest.mark.parametrize(
    "override",
    [
        {"cascade_weight": 1.5},
        {"change_weight": -0.1},
        {"ambiguity_penalty": 2.0},
        {"change_half_life_us": 0},
        {"saturation_full_excess": 0.0},
        {"change_regression_factor": 0.5},
        {"burst_min_errors": 11, "burst_full_errors": 10},
        {"fingerprint_frames": 0},
        {"related_window_us": -1},
    ],
)
def test_invalid_settings_are_refused(override: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AnalysisSettings(**override)  # type: ignore[arg-type]
