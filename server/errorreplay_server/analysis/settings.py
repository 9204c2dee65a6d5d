"""Every window, weight and threshold of the analysis, as one typed object (docs/ARCHITECTURE.md §4).

Scores live in [0, 1]: each rule multiplies its weight by factors in [0, 1], and the result is
clamped, so weights say directly how much one rule is trusted against another.
"""

from __future__ import annotations

from pydantic import model_validator

from errorreplay_server.domain.model import MICROS_PER_HOUR, MICROS_PER_MINUTE
from errorreplay_server.settings_types import Count, Micros, Positive, RequiredNames, SettingsModel, Share, setting

_IN_BOTH = "in replays and streams alike"


class AnalysisSettings(SettingsModel):
    """Knobs of the analysis; durations are microseconds."""

    # --- correlation and windows ---
    related_window_us: Micros = setting(
        10 * MICROS_PER_MINUTE, "RELATED_WINDOW", f"errors this close in time may be related, {_IN_BOTH}"
    )
    related_hops: Count = setting(2, "RELATED_HOPS", f"DEPENDS_ON hops that relate two errors, {_IN_BOTH}")
    related_limit: Positive = setting(
        100, "RELATED_LIMIT", "related errors a replay, GetError or stream message names at most, the nearest in time"
    )
    max_cascade_depth: Count = setting(10, "MAX_CASCADE_DEPTH", "cascade hops followed (0 = off)")
    cascade_max_resources: Count = setting(100, "CASCADE_MAX_RESOURCES", "resources a replay reads following a cascade")
    # Set by ERRORREPLAY_CHANGES_WINDOW_BEFORE, with the collectors' window (collectors/settings.py).
    change_window_us: Micros = 24 * MICROS_PER_HOUR
    # Scrape intervals and clock skew put the sign of a cause slightly after the error it caused.
    evidence_lag_us: Micros = setting(
        MICROS_PER_MINUTE, "EVIDENCE_LAG", "evidence this long after the error still counts"
    )
    # --- grouping and text ---
    fingerprint_frames: Positive = setting(5, "FINGERPRINT_FRAMES", "innermost frames in the fingerprint")
    group_title_max_chars: Positive = setting(120, "GROUP_TITLE_MAX_CHARS", "longer group titles are cut")
    summary_max_chars: Positive = setting(200, "TIMELINE_SUMMARY_MAX_CHARS", "longer timeline summaries are cut")
    log_resource_labels: RequiredNames = setting(
        ("resource_id", "service", "service_name", "app"), "LOG_RESOURCE_LABELS", "log labels naming a line's resource"
    )
    # --- root cause: cascade ---
    cascade_weight: Share = setting(0.9, "CAUSE_CASCADE_WEIGHT", "a dependency failed first")
    cascade_silent_hop_factor: Share = setting(0.8, "CAUSE_CASCADE_SILENT_HOP_FACTOR", "per hop without error")
    # --- root cause: change ---
    change_weight: Share = setting(0.8, "CAUSE_CHANGE_WEIGHT", "a change shortly before")
    change_half_life_us: Micros = setting(
        2 * MICROS_PER_HOUR, "CAUSE_CHANGE_HALF_LIFE", "a change's score halves each", gt=0
    )
    change_regression_factor: float = setting(
        1.25, "CAUSE_CHANGE_REGRESSION_FACTOR", "group first seen after the change", ge=1
    )
    change_dependency_factor: Share = setting(0.6, "CAUSE_CHANGE_DEPENDENCY_FACTOR", "per hop to a changed dependency")
    # --- root cause: saturation ---
    saturation_weight: Share = setting(0.7, "CAUSE_SATURATION_WEIGHT", "a metric rose above its baseline")
    saturation_full_excess: float = setting(1.0, "CAUSE_SATURATION_FULL_EXCESS", "rise earning the full weight", gt=0)
    saturation_full_duration_us: Micros = setting(
        5 * MICROS_PER_MINUTE, "CAUSE_SATURATION_FULL_DURATION", "duration earning the full weight", gt=0
    )
    saturation_brief_factor: Share = setting(
        0.5, "CAUSE_SATURATION_BRIEF_FACTOR", "weight share of an excess that began at the error"
    )
    saturation_metrics: RequiredNames = setting(
        ("cpu", "memory", "latency", "error_rate"),
        "CAUSE_SATURATION_METRICS",
        "series name prefixes that are saturation",
    )
    # --- root cause: error burst ---
    burst_weight: Share = setting(0.5, "CAUSE_BURST_WEIGHT", "many errors on the resource")
    burst_window_us: Micros = setting(5 * MICROS_PER_MINUTE, "CAUSE_BURST_WINDOW", "how far back a burst is counted")
    burst_min_errors: Positive = setting(3, "CAUSE_BURST_MIN_ERRORS", "fewer is no burst")
    burst_full_errors: Count = setting(10, "CAUSE_BURST_FULL_ERRORS", "errors earning the full weight")
    # --- root cause: failing spans and error logs elsewhere ---
    external_weight: Share = setting(0.6, "CAUSE_EXTERNAL_WEIGHT", "spans or logs point at another service")
    external_full_signals: Positive = setting(3, "CAUSE_EXTERNAL_FULL_SIGNALS", "signals earning the full weight")
    # --- ranking ---
    min_cause_score: Share = setting(0.05, "CAUSE_MIN_SCORE", "weaker candidates are dropped")
    ambiguity_penalty: Share = setting(0.25, "CAUSE_AMBIGUITY_PENALTY", "confidence = best - this x best rival")
    # --- context coverage (analysis/coverage.py) ---
    limited_context_share: Share = setting(0.5, "LIMITED_CONTEXT_SHARE", "above this share of missing context, say so")

    @model_validator(mode="after")
    def _burst_range(self) -> AnalysisSettings:
        if self.burst_min_errors > self.burst_full_errors:
            raise ValueError("ERRORREPLAY_CAUSE_BURST_MIN_ERRORS must be at most ERRORREPLAY_CAUSE_BURST_FULL_ERRORS")
        return self


DEFAULT_SETTINGS = AnalysisSettings()
