"""Collector and enrichment settings. A backend without a URL is SKIPPED, never FAILED. Windows
around the error: docs/ARCHITECTURE.md §1. Durations are seconds here (the windows: microseconds).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from errorreplay_server.collectors.base import Windows, WindowSpec
from errorreplay_server.collectors.escaping import check_kql_identifier, check_label_name
from errorreplay_server.collectors.promql import PromQLTemplates
from errorreplay_server.domain.model import MICROS_PER_MINUTE
from errorreplay_server.settings_types import Count, Micros, Positive, Seconds, SettingsModel, Share, from_file, setting

LabelName = Annotated[str, AfterValidator(check_label_name)]
# Table and column names only: a setting must not smuggle query text.
KqlName = Annotated[str, AfterValidator(check_kql_identifier)]


_UNSET_SKIPS = "(unset: skipped)"


class CollectorSettings(SettingsModel):
    # Prometheus
    prometheus_url: str = setting("", "PROMETHEUS_URL", f"Prometheus base URL {_UNSET_SKIPS}", old=True)
    promql_templates: Annotated[PromQLTemplates, from_file(PromQLTemplates.load, PromQLTemplates)] = setting(
        PromQLTemplates(), "PROMQL_TEMPLATES", "TOML/JSON file of PromQL templates", show_raw=True
    )
    prometheus_step_seconds: Seconds = setting(15.0, "PROMETHEUS_STEP", "range query step", gt=0)
    prometheus_max_series: Count = setting(5, "PROMETHEUS_MAX_SERIES", "series kept per query")
    prometheus_max_points: Positive = setting(240, "PROMETHEUS_MAX_POINTS", "points per series (the step grows)")
    metrics_baseline_lookback_seconds: Seconds = setting(
        3600.0, "METRICS_BASELINE_LOOKBACK", "baseline range before the window (0 = off)"
    )
    metrics_baseline_step_seconds: Seconds = setting(60.0, "METRICS_BASELINE_STEP", "baseline query step", gt=0)
    metrics_seasonal_offset_seconds: Seconds = setting(
        86_400.0, "METRICS_SEASONAL_OFFSET", "same window this long earlier (0 = off)"
    )
    anomaly_seasonal_margin: float = setting(0.2, "ANOMALY_SEASONAL_MARGIN", "share above the seasonal peak", ge=0)
    anomaly_mad_k: float = setting(5.0, "ANOMALY_MAD_K", "anomalous above median + k x MAD", gt=0)
    anomaly_min_baseline_points: Count = setting(5, "ANOMALY_MIN_BASELINE_POINTS", "fewer points: no baseline test")
    trend_min_points: Positive = setting(8, "TREND_MIN_POINTS", "points a trend needs")
    trend_min_r2: Share = setting(0.8, "TREND_MIN_R2", "variance share a trend must explain")
    trend_min_rise: float = setting(1.5, "TREND_MIN_RISE", "multiple of its start a trend must reach", gt=0)
    anomaly_lead_seconds: Seconds = setting(60.0, "ANOMALY_LEAD", "points from this long before the error are judged")
    cpu_limit_percent: float = setting(90.0, "CPU_LIMIT_PERCENT", "fixed limit for percent CPU series")
    memory_limit_percent: float = setting(90.0, "MEMORY_LIMIT_PERCENT", "fixed limit for percent memory series")
    error_rate_limit_percent: float = setting(5.0, "ERROR_RATE_LIMIT_PERCENT", "fixed limit for error-rate series")
    # Loki
    loki_url: str = setting("", "LOKI_URL", f"Loki base URL {_UNSET_SKIPS}", old=True)
    loki_tenant: str = setting("", "LOKI_TENANT", "sent as X-Scope-OrgID")
    loki_resource_label: LabelName = setting("resource_id", "LOKI_RESOURCE_LABEL", "label matched with resource_id")
    loki_service_label: LabelName = setting("service", "LOKI_SERVICE_LABEL", "label matched with the service")
    # Tempo
    tempo_url: str = setting("", "TEMPO_URL", f"Tempo base URL {_UNSET_SKIPS}", old=True)
    tempo_tenant: str = setting("", "TEMPO_TENANT", "sent as X-Scope-OrgID")
    # Elasticsearch
    elasticsearch_url: str = setting("", "ELASTICSEARCH_URL", f"Elasticsearch base URL {_UNSET_SKIPS}", old=True)
    elasticsearch_api_key: str = setting("", "ELASTICSEARCH_API_KEY", "API key", old=True, secret=True)
    elasticsearch_username: str = setting("", "ELASTICSEARCH_USERNAME", "basic auth user", old=True)
    elasticsearch_password: str = setting("", "ELASTICSEARCH_PASSWORD", "basic auth password", old=True, secret=True)
    elasticsearch_index: str = setting("logs-*", "ELASTICSEARCH_INDEX", "index pattern searched")
    elasticsearch_timestamp_field: str = setting("@timestamp", "ELASTICSEARCH_TIMESTAMP_FIELD", "timestamp field")
    elasticsearch_message_field: str = setting("message", "ELASTICSEARCH_MESSAGE_FIELD", "message field")
    elasticsearch_level_field: str = setting("log.level", "ELASTICSEARCH_LEVEL_FIELD", "level field")
    elasticsearch_resource_field: str = setting("resource_id", "ELASTICSEARCH_RESOURCE_FIELD", "resource keyword field")
    elasticsearch_service_field: str = setting("service.name", "ELASTICSEARCH_SERVICE_FIELD", "service keyword field")
    # Azure Log Analytics
    azure_workspace_id: str = setting(
        "", "AZURE_WORKSPACE_ID", f"Log Analytics workspace {_UNSET_SKIPS}", old="AZURE_LOG_ANALYTICS_WORKSPACE_ID"
    )
    azure_token: str = setting("", "AZURE_TOKEN", "bearer token (else DefaultAzureCredential)", secret=True)
    azure_endpoint: str = setting("https://api.loganalytics.io", "AZURE_ENDPOINT", "Log Analytics API endpoint")
    azure_table: KqlName = setting("AppTraces", "AZURE_TABLE", "table queried")
    azure_time_column: KqlName = setting("TimeGenerated", "AZURE_TIME_COLUMN", "time column")
    azure_message_column: KqlName = setting("Message", "AZURE_MESSAGE_COLUMN", "message column")
    azure_level_column: KqlName = setting("SeverityLevel", "AZURE_LEVEL_COLUMN", "level column")
    azure_resource_column: KqlName = setting("AppRoleInstance", "AZURE_RESOURCE_COLUMN", "resource column")
    azure_service_column: KqlName = setting("AppRoleName", "AZURE_SERVICE_COLUMN", "service column")
    # Windows around the error. Topology is the graph as it is now (no window); nothing after the
    # error is a change that caused it.
    logs_window_before: Micros = setting(5 * MICROS_PER_MINUTE, "LOGS_WINDOW_BEFORE", "logs read before the error")
    logs_window_after: Micros = setting(5 * MICROS_PER_MINUTE, "LOGS_WINDOW_AFTER", "logs read after the error")
    metrics_window_before: Micros = setting(
        15 * MICROS_PER_MINUTE, "METRICS_WINDOW_BEFORE", "metrics read before the error"
    )
    metrics_window_after: Micros = setting(
        5 * MICROS_PER_MINUTE, "METRICS_WINDOW_AFTER", "metrics read after the error"
    )
    changes_window_before: Micros = setting(
        24 * 60 * MICROS_PER_MINUTE,
        "CHANGES_WINDOW_BEFORE",
        "changes this long before the error are collected and may be causes",
        also="analysis.change_window_us",
    )
    # Caps
    log_lines_before: Count = setting(150, "LOG_LINES_BEFORE", "log lines kept before the error, per source")
    log_lines_after: Count = setting(50, "LOG_LINES_AFTER", "log lines kept after the error, per source")
    log_line_max_chars: Count = setting(2000, "LOG_LINE_MAX_CHARS", "longer log lines are cut")
    max_spans: Count = setting(500, "MAX_SPANS", "spans kept per trace (failing first)")
    max_changes: Count = setting(100, "MAX_CHANGES", "changes kept per error")
    topology_depth: Count = setting(2, "TOPOLOGY_DEPTH", "topology hops frozen with the error")
    # Running
    timeout_seconds: Seconds = setting(2.0, "COLLECTOR_TIMEOUT", "per collector and per job", gt=0)
    breaker_failures: Positive = setting(5, "BREAKER_FAILURES", "consecutive failures that open a breaker")
    breaker_cooldown_seconds: Seconds = setting(30.0, "BREAKER_COOLDOWN", "how long a breaker stays open")
    enrichment_workers: Positive = setting(16, "ENRICHMENT_WORKERS", "concurrent enrichment jobs")
    enrichment_queue_size: Positive = setting(10_000, "ENRICHMENT_QUEUE_SIZE", "queued enrichment jobs")
    enrichment_resume_horizon_seconds: Seconds = setting(
        86_400.0, "ENRICHMENT_RESUME_HORIZON", "PENDING errors this recent resume at start", gt=0
    )

    @property
    def windows(self) -> Windows:
        return Windows(
            WindowSpec(self.logs_window_before, self.logs_window_after),
            WindowSpec(self.metrics_window_before, self.metrics_window_after),
            WindowSpec(self.changes_window_before, 0),
            WindowSpec(0, 0),
        )

    @property
    def log_lines_cap(self) -> int:
        return self.log_lines_before + self.log_lines_after
