"""Collector and enrichment settings: one typed object, read once from the environment.

Their variables, file keys, defaults and meanings are in settings_schema.py and the README
(Configuration). A backend without a URL is SKIPPED, never FAILED. Windows around the error:
docs/ARCHITECTURE.md §1; related errors are not collected but computed when an error is read.
Durations are seconds here (the windows: microseconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from errorreplay_server.collectors.base import WindowSpec
from errorreplay_server.collectors.escaping import check_kql_identifier, check_label_name
from errorreplay_server.collectors.promql import PromQLTemplates
from errorreplay_server.domain.model import MICROS_PER_SECOND, Micros


def _micros(seconds: float) -> Micros:
    return round(seconds * MICROS_PER_SECOND)


LOGS_WINDOW = WindowSpec(_micros(300), _micros(300))
METRICS_WINDOW = WindowSpec(_micros(900), _micros(300))
CHANGES_WINDOW = WindowSpec(_micros(86_400), 0)
# Topology is the graph as it is now; its window is unused.
TOPOLOGY_WINDOW = WindowSpec(0, 0)


@dataclass(slots=True, frozen=True)
class Windows:
    logs: WindowSpec = LOGS_WINDOW
    metrics: WindowSpec = METRICS_WINDOW
    changes: WindowSpec = CHANGES_WINDOW
    topology: WindowSpec = TOPOLOGY_WINDOW


@dataclass(slots=True, frozen=True)
class CollectorSettings:
    # Prometheus
    prometheus_url: str = ""
    promql_templates: PromQLTemplates = field(default_factory=PromQLTemplates)
    prometheus_step_seconds: float = 15.0
    prometheus_max_series: int = 5
    prometheus_max_points: int = 240
    metrics_baseline_lookback_seconds: float = 3600.0
    metrics_baseline_step_seconds: float = 60.0
    metrics_seasonal_offset_seconds: float = 86_400.0
    anomaly_seasonal_margin: float = 0.2
    anomaly_mad_k: float = 5.0
    anomaly_min_baseline_points: int = 5
    trend_min_points: int = 8
    trend_min_r2: float = 0.8
    trend_min_rise: float = 1.5
    anomaly_lead_seconds: float = 60.0
    cpu_limit_percent: float = 90.0
    memory_limit_percent: float = 90.0
    error_rate_limit_percent: float = 5.0
    # Loki
    loki_url: str = ""
    loki_tenant: str = ""
    loki_resource_label: str = "resource_id"
    loki_service_label: str = "service"
    # Tempo
    tempo_url: str = ""
    tempo_tenant: str = ""
    # Elasticsearch
    elasticsearch_url: str = ""
    elasticsearch_api_key: str = field(default="", repr=False)
    elasticsearch_username: str = ""
    elasticsearch_password: str = field(default="", repr=False)
    elasticsearch_index: str = "logs-*"
    elasticsearch_timestamp_field: str = "@timestamp"
    elasticsearch_message_field: str = "message"
    elasticsearch_level_field: str = "log.level"
    elasticsearch_resource_field: str = "resource_id"
    elasticsearch_service_field: str = "service.name"
    # Azure Log Analytics
    azure_workspace_id: str = ""
    azure_token: str = field(default="", repr=False)
    azure_endpoint: str = "https://api.loganalytics.io"
    azure_table: str = "AppTraces"
    azure_time_column: str = "TimeGenerated"
    azure_message_column: str = "Message"
    azure_level_column: str = "SeverityLevel"
    azure_resource_column: str = "AppRoleInstance"
    azure_service_column: str = "AppRoleName"
    # Windows and caps
    windows: Windows = field(default_factory=Windows)
    log_lines_before: int = 150
    log_lines_after: int = 50
    log_line_max_chars: int = 2000
    max_spans: int = 500
    max_changes: int = 100
    topology_depth: int = 2
    # Running
    timeout_seconds: float = 2.0
    breaker_failures: int = 5
    breaker_cooldown_seconds: float = 30.0
    enrichment_workers: int = 16
    enrichment_queue_size: int = 10_000
    enrichment_resume_horizon_seconds: float = 86_400.0

    def __post_init__(self) -> None:
        check_label_name(self.loki_resource_label)
        check_label_name(self.loki_service_label)
        for column in (
            self.azure_table,
            self.azure_time_column,
            self.azure_message_column,
            self.azure_level_column,
            self.azure_resource_column,
            self.azure_service_column,
        ):
            check_kql_identifier(column)
        positive = {
            "timeout_seconds": self.timeout_seconds,
            "breaker_failures": self.breaker_failures,
            "enrichment_workers": self.enrichment_workers,
            "enrichment_queue_size": self.enrichment_queue_size,
            "enrichment_resume_horizon_seconds": self.enrichment_resume_horizon_seconds,
            "prometheus_step_seconds": self.prometheus_step_seconds,
            "prometheus_max_points": self.prometheus_max_points,
            "anomaly_mad_k": self.anomaly_mad_k,
            "metrics_baseline_step_seconds": self.metrics_baseline_step_seconds,
            "trend_min_points": self.trend_min_points,
            "trend_min_rise": self.trend_min_rise,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("metrics_baseline_lookback_seconds", "metrics_seasonal_offset_seconds", "anomaly_seasonal_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.trend_min_r2 <= 1.0:
            raise ValueError(f"trend_min_r2 must be within [0, 1], got {self.trend_min_r2}")
        if self.log_lines_before < 0 or self.log_lines_after < 0:
            raise ValueError("log line caps must not be negative")

    @property
    def log_lines_cap(self) -> int:
        return self.log_lines_before + self.log_lines_after
