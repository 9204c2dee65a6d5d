"""Every window, weight and threshold of the analysis, as one typed object (DESIGN §4).

Scores live in [0, 1]: each rule multiplies its weight by factors in [0, 1], and the result is
clamped, so weights say directly how much one rule is trusted against another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from errorreplay_server.domain.durations import parse_duration_micros
from errorreplay_server.domain.model import MICROS_PER_HOUR, MICROS_PER_MINUTE, Micros

# How from_env parses each variable.
_DURATION_KIND = "duration"
_INT_KIND = "int"
_FLOAT_KIND = "float"
_NAMES_KIND = "names"


def _env(name: str, kind: str) -> dict[str, str]:
    return {"env": name, "kind": kind}


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    """Knobs of the analysis. Defaults and variables are listed in `from_env`."""

    # --- correlation and windows ---
    related_window_us: Micros = 10 * MICROS_PER_MINUTE
    related_hops: int = 2
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
        for name in ("fingerprint_frames", "group_title_max_chars", "summary_max_chars", "external_full_signals"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.change_regression_factor < 1.0:
            problems.append("change_regression_factor must be at least 1")
        if not 1 <= self.burst_min_errors <= self.burst_full_errors:
            problems.append("burst_min_errors must be at least 1 and at most burst_full_errors")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AnalysisSettings:
        """Settings from ERRORREPLAY_* variables; an unset or empty variable keeps the default.

        Durations accept `500ms`, `2s`, `5m`, `24h` or plain seconds; lists are comma-separated.

        Correlation and windows:
        - ERRORREPLAY_RELATED_WINDOW (10m): errors this close in time may be related (either side),
          in replays and in SubscribeErrors' correlation alike (analysis/correlation.py RelationRule).
        - ERRORREPLAY_RELATED_HOPS (2): DEPENDS_ON hops that still relate two errors (in replays and
          streams alike), that bound
          one propagation step, and that bound the affected resources. Within a cascade it bounds
          only the resources with no error one step may cross.
        - ERRORREPLAY_MAX_CASCADE_DEPTH (10): a cascade (each resource failing within the related
          window after its dependency) is followed at most this many DEPENDS_ON hops from the
          error's resource (0 turns cascade following off: related errors are then only those
          within related hops).
        - ERRORREPLAY_CASCADE_MAX_RESOURCES (100): resources whose topology a replay reads while
          it follows a cascade.
        - ERRORREPLAY_CHANGES_WINDOW_BEFORE (24h): changes this long before the error are related.
          The collectors read the same variable.
        - ERRORREPLAY_EVIDENCE_LAG (1m): anomalies, spans and logs this long after the error still
          count as its causes.

        Grouping and text:
        - ERRORREPLAY_FINGERPRINT_FRAMES (5): innermost stack frames in the fingerprint.
        - ERRORREPLAY_GROUP_TITLE_MAX_CHARS (120): longer group titles are cut.
        - ERRORREPLAY_TIMELINE_SUMMARY_MAX_CHARS (200): longer timeline summaries are cut.
        - ERRORREPLAY_LOG_RESOURCE_LABELS (resource_id,service,service_name,app): log labels
          that name the resource a line came from, first match wins.

        Root cause (every score is in [0, 1]):
        - ERRORREPLAY_CAUSE_CASCADE_WEIGHT (0.9): a dependency failed earlier and the failure
          reached this error along DEPENDS_ON.
        - ERRORREPLAY_CAUSE_CASCADE_SILENT_HOP_FACTOR (0.8): times this for each hop of the path
          through a resource with no error in the cascade.
        - ERRORREPLAY_CAUSE_CHANGE_WEIGHT (0.8): a change shortly before the error.
        - ERRORREPLAY_CAUSE_CHANGE_HALF_LIFE (2h): a change's score halves with each half-life.
        - ERRORREPLAY_CAUSE_CHANGE_REGRESSION_FACTOR (1.25): times this when the error group was
          first seen at or after the change (the change introduced it).
        - ERRORREPLAY_CAUSE_CHANGE_DEPENDENCY_FACTOR (0.6): times this per hop when the change is
          on a dependency rather than on the error's own resource.
        - ERRORREPLAY_CAUSE_SATURATION_WEIGHT (0.7): a metric rose above its baseline.
        - ERRORREPLAY_CAUSE_SATURATION_FULL_EXCESS (1.0): the rise over the baseline, relative to
          it, that earns the full weight (1.0 = double the baseline); less scales linearly.
        - ERRORREPLAY_CAUSE_SATURATION_FULL_DURATION (5m): how long the excess must have lasted
          before the error to earn the full weight.
        - ERRORREPLAY_CAUSE_SATURATION_BRIEF_FACTOR (0.5): the share of the weight an excess that
          began at the error keeps; it grows linearly to 1 at the full duration. Anomalies stored
          before their start was recorded count as lasting the full duration.
        - ERRORREPLAY_CAUSE_SATURATION_METRICS (cpu,memory,latency,error_rate): series whose
          name starts with one of these count as saturation.
        - ERRORREPLAY_CAUSE_BURST_WEIGHT (0.5): many errors on the error's resource.
        - ERRORREPLAY_CAUSE_BURST_WINDOW (5m): how far back the burst is counted.
        - ERRORREPLAY_CAUSE_BURST_MIN_ERRORS (3): fewer errors (this one included) is no burst.
        - ERRORREPLAY_CAUSE_BURST_FULL_ERRORS (10): errors that earn the full weight.
        - ERRORREPLAY_CAUSE_EXTERNAL_WEIGHT (0.6): failing spans or error logs point at another
          service.
        - ERRORREPLAY_CAUSE_EXTERNAL_FULL_SIGNALS (3): spans and log lines that earn the full
          weight.
        - ERRORREPLAY_CAUSE_MIN_SCORE (0.05): weaker candidates are dropped as noise.
        - ERRORREPLAY_CAUSE_AMBIGUITY_PENALTY (0.25): confidence = best score minus this times
          the best rival's score (a candidate on another resource, or of the same category).

        Context coverage:
        - ERRORREPLAY_LIMITED_CONTEXT_SHARE (0.5): when more than this share of the error's
          context sources were SKIPPED, FAILED or still PENDING, the replay says its diagnosis
          had little to go on (context_coverage.limited, a GATHER_CONTEXT recommendation).
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            name, kind = ENV_VARIABLES[f.name]["env"], ENV_VARIABLES[f.name]["kind"]
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            try:
                values[f.name] = _parse(kind, raw)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from exc
        return cls(**values)


def _parse(kind: str, raw: str) -> Any:
    if kind == _DURATION_KIND:
        return parse_duration_micros(raw)
    if kind == _INT_KIND:
        return int(raw)
    if kind == _FLOAT_KIND:
        return float(raw)
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not names:
        raise ValueError("needs at least one name")
    return names


# Field name -> its variable and kind; a test checks every field has one.
ENV_VARIABLES: dict[str, dict[str, str]] = {
    "related_window_us": _env("ERRORREPLAY_RELATED_WINDOW", _DURATION_KIND),
    "related_hops": _env("ERRORREPLAY_RELATED_HOPS", _INT_KIND),
    "max_cascade_depth": _env("ERRORREPLAY_MAX_CASCADE_DEPTH", _INT_KIND),
    "cascade_max_resources": _env("ERRORREPLAY_CASCADE_MAX_RESOURCES", _INT_KIND),
    "change_window_us": _env("ERRORREPLAY_CHANGES_WINDOW_BEFORE", _DURATION_KIND),
    "evidence_lag_us": _env("ERRORREPLAY_EVIDENCE_LAG", _DURATION_KIND),
    "fingerprint_frames": _env("ERRORREPLAY_FINGERPRINT_FRAMES", _INT_KIND),
    "group_title_max_chars": _env("ERRORREPLAY_GROUP_TITLE_MAX_CHARS", _INT_KIND),
    "summary_max_chars": _env("ERRORREPLAY_TIMELINE_SUMMARY_MAX_CHARS", _INT_KIND),
    "log_resource_labels": _env("ERRORREPLAY_LOG_RESOURCE_LABELS", _NAMES_KIND),
    "cascade_weight": _env("ERRORREPLAY_CAUSE_CASCADE_WEIGHT", _FLOAT_KIND),
    "cascade_silent_hop_factor": _env("ERRORREPLAY_CAUSE_CASCADE_SILENT_HOP_FACTOR", _FLOAT_KIND),
    "change_weight": _env("ERRORREPLAY_CAUSE_CHANGE_WEIGHT", _FLOAT_KIND),
    "change_half_life_us": _env("ERRORREPLAY_CAUSE_CHANGE_HALF_LIFE", _DURATION_KIND),
    "change_regression_factor": _env("ERRORREPLAY_CAUSE_CHANGE_REGRESSION_FACTOR", _FLOAT_KIND),
    "change_dependency_factor": _env("ERRORREPLAY_CAUSE_CHANGE_DEPENDENCY_FACTOR", _FLOAT_KIND),
    "saturation_weight": _env("ERRORREPLAY_CAUSE_SATURATION_WEIGHT", _FLOAT_KIND),
    "saturation_full_excess": _env("ERRORREPLAY_CAUSE_SATURATION_FULL_EXCESS", _FLOAT_KIND),
    "saturation_full_duration_us": _env("ERRORREPLAY_CAUSE_SATURATION_FULL_DURATION", _DURATION_KIND),
    "saturation_brief_factor": _env("ERRORREPLAY_CAUSE_SATURATION_BRIEF_FACTOR", _FLOAT_KIND),
    "saturation_metrics": _env("ERRORREPLAY_CAUSE_SATURATION_METRICS", _NAMES_KIND),
    "burst_weight": _env("ERRORREPLAY_CAUSE_BURST_WEIGHT", _FLOAT_KIND),
    "burst_window_us": _env("ERRORREPLAY_CAUSE_BURST_WINDOW", _DURATION_KIND),
    "burst_min_errors": _env("ERRORREPLAY_CAUSE_BURST_MIN_ERRORS", _INT_KIND),
    "burst_full_errors": _env("ERRORREPLAY_CAUSE_BURST_FULL_ERRORS", _INT_KIND),
    "external_weight": _env("ERRORREPLAY_CAUSE_EXTERNAL_WEIGHT", _FLOAT_KIND),
    "external_full_signals": _env("ERRORREPLAY_CAUSE_EXTERNAL_FULL_SIGNALS", _INT_KIND),
    "min_cause_score": _env("ERRORREPLAY_CAUSE_MIN_SCORE", _FLOAT_KIND),
    "ambiguity_penalty": _env("ERRORREPLAY_CAUSE_AMBIGUITY_PENALTY", _FLOAT_KIND),
    "limited_context_share": _env("ERRORREPLAY_LIMITED_CONTEXT_SHARE", _FLOAT_KIND),
}

DEFAULT_SETTINGS = AnalysisSettings()
