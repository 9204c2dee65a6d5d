"""Collector and enrichment settings: one typed object, read once from the environment.

Every knob, its variable and its default (durations accept `500ms`, `2s`, `5m`, `24h` or plain
seconds):

Backends (a backend without a URL is SKIPPED, never FAILED):
- PROMETHEUS_URL; ERRORREPLAY_PROMQL_TEMPLATES (a TOML/JSON file, see promql.py);
  ERRORREPLAY_PROMETHEUS_STEP (15s); ERRORREPLAY_PROMETHEUS_MAX_SERIES (5 series per query).
- LOKI_URL; ERRORREPLAY_LOKI_TENANT (sent as X-Scope-OrgID); ERRORREPLAY_LOKI_RESOURCE_LABEL
  (resource_id) and ERRORREPLAY_LOKI_SERVICE_LABEL (service, used when the error has no
  resource_id).
- TEMPO_URL; ERRORREPLAY_TEMPO_TENANT (X-Scope-OrgID).
- ELASTICSEARCH_URL; ELASTICSEARCH_API_KEY, or ELASTICSEARCH_USERNAME + ELASTICSEARCH_PASSWORD
  (ERRORREPLAY_-prefixed names win); ERRORREPLAY_ELASTICSEARCH_INDEX (logs-*);
  ERRORREPLAY_ELASTICSEARCH_{TIMESTAMP,MESSAGE,LEVEL,RESOURCE,SERVICE}_FIELD
  (@timestamp, message, log.level, resource_id, service.name; resource and service must be
  keyword fields, since they are matched with `term`).
- AZURE_LOG_ANALYTICS_WORKSPACE_ID; ERRORREPLAY_AZURE_TOKEN (a bearer token; without it
  azure-identity's DefaultAzureCredential is used if installed); ERRORREPLAY_AZURE_ENDPOINT
  (https://api.loganalytics.io); ERRORREPLAY_AZURE_TABLE (AppTraces);
  ERRORREPLAY_AZURE_{TIME,MESSAGE,LEVEL,RESOURCE,SERVICE}_COLUMN
  (TimeGenerated, Message, SeverityLevel, AppRoleInstance, AppRoleName).

Windows around the error (DESIGN §1):
- ERRORREPLAY_LOGS_WINDOW_BEFORE / _AFTER (5m / 5m); traces are fetched whole, by id;
- ERRORREPLAY_METRICS_WINDOW_BEFORE / _AFTER (15m / 5m);
- ERRORREPLAY_CHANGES_WINDOW_BEFORE (24h; nothing after).
Related errors are not collected: they are computed when an error is read (AnalysisSettings).

Caps on what is stored per source:
- ERRORREPLAY_LOG_LINES_BEFORE (150) and ERRORREPLAY_LOG_LINES_AFTER (50): the lines nearest the
  error on each side, so at most 200 lines per log source;
- ERRORREPLAY_LOG_LINE_MAX_CHARS (2000): longer lines are cut;
- ERRORREPLAY_PROMETHEUS_MAX_SERIES (5 per query, 6 queries) and at most
  ERRORREPLAY_PROMETHEUS_MAX_POINTS (240) per series (the step grows to fit);
- ERRORREPLAY_MAX_SPANS (500; failing spans are kept first);
- ERRORREPLAY_MAX_CHANGES (100);
- ERRORREPLAY_TOPOLOGY_DEPTH (2 hops).

Anomalies (prometheus.py):
- ERRORREPLAY_METRICS_BASELINE_LOOKBACK (1h): the baseline is this range just before the metrics
  window, one extra range query per template; 0 turns it off. With fewer than
  ERRORREPLAY_ANOMALY_MIN_BASELINE_POINTS points there, the window's own points before the
  error are the baseline (as when it is off).
- ERRORREPLAY_METRICS_BASELINE_STEP (1m): the lookback's step (coarser than the window's; it
  grows to keep at most ERRORREPLAY_PROMETHEUS_MAX_POINTS points).
- ERRORREPLAY_METRICS_SEASONAL_OFFSET (24h): the metrics window this long earlier is queried
  too (same step as the lookback); a point must also pass its peak by the seasonal margin, so a
  peak that happens every day at that time is not an anomaly. 0 turns it off. Empty when
  Prometheus no longer holds that day.
- ERRORREPLAY_ANOMALY_SEASONAL_MARGIN (0.2): how far above that peak, relative to it, a point
  must be.
- ERRORREPLAY_ANOMALY_MAD_K (5.0): a point is anomalous above median + k × MAD of the baseline.
  With raw MAD, k = 5 is close to the usual modified z-score cut-off of 3.5.
- ERRORREPLAY_ANOMALY_MIN_BASELINE_POINTS (5): fewer baseline points, no baseline or trend test.
- ERRORREPLAY_TREND_MIN_POINTS (8), ERRORREPLAY_TREND_MIN_R2 (0.8), ERRORREPLAY_TREND_MIN_RISE
  (1.5): a trend anomaly is a least-squares line over the window's points up to the error, with
  at least that many points, explaining at least that share of their variance (R²), rising to at
  least that multiple of its start and ending above the baseline threshold.
- ERRORREPLAY_ANOMALY_LEAD (1m): points from this long before the error on are judged, since
  saturation often shows a scrape or two before the error it causes.
- ERRORREPLAY_CPU_LIMIT_PERCENT (90), ERRORREPLAY_MEMORY_LIMIT_PERCENT (90),
  ERRORREPLAY_ERROR_RATE_LIMIT_PERCENT (5): fixed limits, for series whose unit is "percent".

Running (capture/enrichment.py):
- ERRORREPLAY_COLLECTOR_TIMEOUT (2s), per collector and per job;
- ERRORREPLAY_BREAKER_FAILURES (5 consecutive) and ERRORREPLAY_BREAKER_COOLDOWN (30s);
- ERRORREPLAY_ENRICHMENT_WORKERS (16: jobs wait on backends, not on the CPU) and
  ERRORREPLAY_ENRICHMENT_QUEUE_SIZE (10000);
- ERRORREPLAY_ENRICHMENT_RESUME_HORIZON (24h, the backends' usual retention): at start, errors
  whose context is still PENDING (the server stopped before collecting it) are queued again if
  they occurred within this horizon; older ones are marked FAILED("not collected before restart").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from errorreplay_server.collectors.base import WindowSpec
from errorreplay_server.collectors.escaping import check_kql_identifier, check_label_name
from errorreplay_server.collectors.promql import PromQLTemplates
from errorreplay_server.domain.durations import parse_duration
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CollectorSettings:
        """Raises ValueError naming the variable when a value does not parse."""
        env = _Env(environ)
        templates_path = env.text("ERRORREPLAY_PROMQL_TEMPLATES")
        templates = PromQLTemplates.load(templates_path) if templates_path else PromQLTemplates()
        d = cls()  # defaults
        logs_before = env.duration("ERRORREPLAY_LOGS_WINDOW_BEFORE", 300)
        logs_after = env.duration("ERRORREPLAY_LOGS_WINDOW_AFTER", 300)
        windows = Windows(
            logs=WindowSpec(_micros(logs_before), _micros(logs_after)),
            metrics=WindowSpec(
                _micros(env.duration("ERRORREPLAY_METRICS_WINDOW_BEFORE", 900)),
                _micros(env.duration("ERRORREPLAY_METRICS_WINDOW_AFTER", 300)),
            ),
            changes=WindowSpec(_micros(env.duration("ERRORREPLAY_CHANGES_WINDOW_BEFORE", 86_400)), 0),
        )
        es = "ELASTICSEARCH_"
        return cls(
            prometheus_url=env.text("PROMETHEUS_URL"),
            promql_templates=templates,
            prometheus_step_seconds=env.duration("ERRORREPLAY_PROMETHEUS_STEP", d.prometheus_step_seconds),
            prometheus_max_series=env.integer("ERRORREPLAY_PROMETHEUS_MAX_SERIES", d.prometheus_max_series),
            prometheus_max_points=env.integer("ERRORREPLAY_PROMETHEUS_MAX_POINTS", d.prometheus_max_points),
            metrics_baseline_lookback_seconds=env.duration(
                "ERRORREPLAY_METRICS_BASELINE_LOOKBACK", d.metrics_baseline_lookback_seconds
            ),
            metrics_baseline_step_seconds=env.duration(
                "ERRORREPLAY_METRICS_BASELINE_STEP", d.metrics_baseline_step_seconds
            ),
            metrics_seasonal_offset_seconds=env.duration(
                "ERRORREPLAY_METRICS_SEASONAL_OFFSET", d.metrics_seasonal_offset_seconds
            ),
            anomaly_seasonal_margin=env.number("ERRORREPLAY_ANOMALY_SEASONAL_MARGIN", d.anomaly_seasonal_margin),
            anomaly_mad_k=env.number("ERRORREPLAY_ANOMALY_MAD_K", d.anomaly_mad_k),
            trend_min_points=env.integer("ERRORREPLAY_TREND_MIN_POINTS", d.trend_min_points),
            trend_min_r2=env.number("ERRORREPLAY_TREND_MIN_R2", d.trend_min_r2),
            trend_min_rise=env.number("ERRORREPLAY_TREND_MIN_RISE", d.trend_min_rise),
            anomaly_min_baseline_points=env.integer(
                "ERRORREPLAY_ANOMALY_MIN_BASELINE_POINTS", d.anomaly_min_baseline_points
            ),
            anomaly_lead_seconds=env.duration("ERRORREPLAY_ANOMALY_LEAD", d.anomaly_lead_seconds),
            cpu_limit_percent=env.number("ERRORREPLAY_CPU_LIMIT_PERCENT", d.cpu_limit_percent),
            memory_limit_percent=env.number("ERRORREPLAY_MEMORY_LIMIT_PERCENT", d.memory_limit_percent),
            error_rate_limit_percent=env.number("ERRORREPLAY_ERROR_RATE_LIMIT_PERCENT", d.error_rate_limit_percent),
            loki_url=env.text("LOKI_URL"),
            loki_tenant=env.text("ERRORREPLAY_LOKI_TENANT"),
            loki_resource_label=env.text("ERRORREPLAY_LOKI_RESOURCE_LABEL", d.loki_resource_label),
            loki_service_label=env.text("ERRORREPLAY_LOKI_SERVICE_LABEL", d.loki_service_label),
            tempo_url=env.text("TEMPO_URL"),
            tempo_tenant=env.text("ERRORREPLAY_TEMPO_TENANT"),
            elasticsearch_url=env.text("ELASTICSEARCH_URL"),
            elasticsearch_api_key=env.first("ERRORREPLAY_" + es + "API_KEY", es + "API_KEY"),
            elasticsearch_username=env.first("ERRORREPLAY_" + es + "USERNAME", es + "USERNAME"),
            elasticsearch_password=env.first("ERRORREPLAY_" + es + "PASSWORD", es + "PASSWORD"),
            elasticsearch_index=env.text("ERRORREPLAY_ELASTICSEARCH_INDEX", d.elasticsearch_index),
            elasticsearch_timestamp_field=env.text(
                "ERRORREPLAY_ELASTICSEARCH_TIMESTAMP_FIELD", d.elasticsearch_timestamp_field
            ),
            elasticsearch_message_field=env.text(
                "ERRORREPLAY_ELASTICSEARCH_MESSAGE_FIELD", d.elasticsearch_message_field
            ),
            elasticsearch_level_field=env.text("ERRORREPLAY_ELASTICSEARCH_LEVEL_FIELD", d.elasticsearch_level_field),
            elasticsearch_resource_field=env.text(
                "ERRORREPLAY_ELASTICSEARCH_RESOURCE_FIELD", d.elasticsearch_resource_field
            ),
            elasticsearch_service_field=env.text(
                "ERRORREPLAY_ELASTICSEARCH_SERVICE_FIELD", d.elasticsearch_service_field
            ),
            azure_workspace_id=env.first("ERRORREPLAY_AZURE_WORKSPACE_ID", "AZURE_LOG_ANALYTICS_WORKSPACE_ID"),
            azure_token=env.text("ERRORREPLAY_AZURE_TOKEN"),
            azure_endpoint=env.text("ERRORREPLAY_AZURE_ENDPOINT", d.azure_endpoint),
            azure_table=env.text("ERRORREPLAY_AZURE_TABLE", d.azure_table),
            azure_time_column=env.text("ERRORREPLAY_AZURE_TIME_COLUMN", d.azure_time_column),
            azure_message_column=env.text("ERRORREPLAY_AZURE_MESSAGE_COLUMN", d.azure_message_column),
            azure_level_column=env.text("ERRORREPLAY_AZURE_LEVEL_COLUMN", d.azure_level_column),
            azure_resource_column=env.text("ERRORREPLAY_AZURE_RESOURCE_COLUMN", d.azure_resource_column),
            azure_service_column=env.text("ERRORREPLAY_AZURE_SERVICE_COLUMN", d.azure_service_column),
            windows=windows,
            log_lines_before=env.integer("ERRORREPLAY_LOG_LINES_BEFORE", d.log_lines_before),
            log_lines_after=env.integer("ERRORREPLAY_LOG_LINES_AFTER", d.log_lines_after),
            log_line_max_chars=env.integer("ERRORREPLAY_LOG_LINE_MAX_CHARS", d.log_line_max_chars),
            max_spans=env.integer("ERRORREPLAY_MAX_SPANS", d.max_spans),
            max_changes=env.integer("ERRORREPLAY_MAX_CHANGES", d.max_changes),
            topology_depth=env.integer("ERRORREPLAY_TOPOLOGY_DEPTH", d.topology_depth),
            timeout_seconds=env.duration("ERRORREPLAY_COLLECTOR_TIMEOUT", d.timeout_seconds),
            breaker_failures=env.integer("ERRORREPLAY_BREAKER_FAILURES", d.breaker_failures),
            breaker_cooldown_seconds=env.duration("ERRORREPLAY_BREAKER_COOLDOWN", d.breaker_cooldown_seconds),
            enrichment_workers=env.integer("ERRORREPLAY_ENRICHMENT_WORKERS", d.enrichment_workers),
            enrichment_queue_size=env.integer("ERRORREPLAY_ENRICHMENT_QUEUE_SIZE", d.enrichment_queue_size),
            enrichment_resume_horizon_seconds=env.duration(
                "ERRORREPLAY_ENRICHMENT_RESUME_HORIZON", d.enrichment_resume_horizon_seconds
            ),
        )


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str = "") -> str:
        value = self._environ.get(name, "").strip()
        return value or default

    def first(self, *names: str) -> str:
        for name in names:
            if value := self.text(name):
                return value
        return ""

    def _parse(self, name: str, default: float, parse: Callable[[str], float]) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise ValueError(f"{name}: not a number: {raw!r}") from None

    def integer(self, name: str, default: int) -> int:
        return int(self._parse(name, default, int))

    def number(self, name: str, default: float) -> float:
        return self._parse(name, default, float)

    def duration(self, name: str, default: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            return parse_duration(raw)
        except ValueError:
            raise ValueError(f"{name}: not a duration: {raw!r}") from None
