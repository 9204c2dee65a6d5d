"""Every window, weight and threshold of the analysis, as one typed object (docs/ARCHITECTURE.md §4).
Their variables, file keys and meanings are in settings_schema.py (README: Configuration).

Scores live in [0, 1]: each rule multiplies its weight by factors in [0, 1], and the result is
clamped, so weights say directly how much one rule is trusted against another.
"""

from __future__ import annotations

from dataclasses import dataclass

from errorreplay_server.domain.model import MICROS_PER_HOUR, MICROS_PER_MINUTE, Micros


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    """Knobs of the analysis; durations are microseconds."""

    # --- correlation and windows ---
    related_window_us: Micros = 10 * MICROS_PER_MINUTE
    related_hops: int = 2
    # Related errors a replay, GetError or a stream message names at most: the nearest in time.
    related_limit: int = 100
    # A cascade is followed this many DEPENDS_ON hops from the error's resource at most (see
    # analysis/correlation.py); a replay reads the topology of at most cascade_max_resources.
    max_cascade_depth: int = 10
    cascade_max_resources: int = 100
    change_window_us: Micros = 24 * MICROS_PER_HOUR
    # Evidence (anomalies, spans, logs) this long after the error still counts: scrape intervals
    # and clock skew put the sign of a cause slightly after the error it caused.
    evidence_lag_us: Micros = MICROS_PER_MINUTE

    # --- grouping and text ---
    fingerprint_frames: int = 5
    group_title_max_chars: int = 120
    summary_max_chars: int = 200
    log_resource_labels: tuple[str, ...] = ("resource_id", "service", "service_name", "app")

    # --- root cause: cascade ---
    cascade_weight: float = 0.9
    cascade_silent_hop_factor: float = 0.8

    # --- root cause: change ---
    change_weight: float = 0.8
    change_half_life_us: Micros = 2 * MICROS_PER_HOUR
    change_regression_factor: float = 1.25
    change_dependency_factor: float = 0.6

    # --- root cause: saturation ---
    saturation_weight: float = 0.7
    saturation_full_excess: float = 1.0
    saturation_full_duration_us: Micros = 5 * MICROS_PER_MINUTE
    saturation_brief_factor: float = 0.5
    saturation_metrics: tuple[str, ...] = ("cpu", "memory", "latency", "error_rate")

    # --- root cause: error burst ---
    burst_weight: float = 0.5
    burst_window_us: Micros = 5 * MICROS_PER_MINUTE
    burst_min_errors: int = 3
    burst_full_errors: int = 10

    # --- root cause: failing spans and error logs elsewhere ---
    external_weight: float = 0.6
    external_full_signals: int = 3

    # --- ranking ---
    min_cause_score: float = 0.05
    ambiguity_penalty: float = 0.25

    # --- context coverage (analysis/coverage.py) ---
    limited_context_share: float = 0.5

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in (
            "cascade_weight",
            "cascade_silent_hop_factor",
            "change_weight",
            "change_dependency_factor",
            "saturation_weight",
            "saturation_brief_factor",
            "burst_weight",
            "external_weight",
            "min_cause_score",
            "ambiguity_penalty",
            "limited_context_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be within [0, 1], got {value}")
        for name in ("change_half_life_us", "saturation_full_excess", "saturation_full_duration_us"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        for name in (
            "related_window_us",
            "change_window_us",
            "evidence_lag_us",
            "burst_window_us",
            "related_hops",
            "max_cascade_depth",
            "cascade_max_resources",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        for name in (
            "related_limit",
            "fingerprint_frames",
            "group_title_max_chars",
            "summary_max_chars",
            "external_full_signals",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.change_regression_factor < 1.0:
            problems.append("change_regression_factor must be at least 1")
        if not 1 <= self.burst_min_errors <= self.burst_full_errors:
            problems.append("burst_min_errors must be at least 1 and at most burst_full_errors")
        if problems:
            raise ValueError("; ".join(problems))


DEFAULT_SETTINGS = AnalysisSettings()
