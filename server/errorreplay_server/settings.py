"""The settings model: frozen pydantic models, each setting one field declared with its variable,
default and meaning (settings_types.setting); settings_schema.py loads them, settings_doc.py
writes the README table from them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.http.settings import HttpSettings
from errorreplay_server.notify.config import NotifySettings
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.settings_types import (
    Address,
    Count,
    EventLoop,
    LogLevel,
    Names,
    OptionalAddress,
    OptionalPath,
    Seconds,
    SettingsModel,
    Store,
    Switch,
    setting,
)
from errorreplay_server.store.base import SEARCH_COUNT_LIMIT, TopologyBounds
from errorreplay_server.streaming.hub import HubSettings
from errorreplay_server.streaming.nats_settings import NatsSettings

DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_METRICS_PORT = 9464


def _limit(default: int, variable: str) -> Any:
    return setting(default, variable, "per-item input limit; a breach is INVALID_ARGUMENT naming the field")


class Limits(SettingsModel):
    """Input limits. A breach is INVALID_ARGUMENT naming the field (README: Limits)."""

    max_receive_message_bytes: Count = _limit(8 * 1024 * 1024, "MAX_RECEIVE_MESSAGE_BYTES")
    max_message_chars: Count = _limit(16 * 1024, "MAX_MESSAGE_CHARS")
    max_stack_trace_chars: Count = _limit(64 * 1024, "MAX_STACK_TRACE_CHARS")
    max_id_chars: Count = _limit(256, "MAX_ID_CHARS")
    max_tags: Count = _limit(64, "MAX_TAGS")
    max_tag_key_chars: Count = _limit(128, "MAX_TAG_KEY_CHARS")
    max_tag_value_chars: Count = _limit(1024, "MAX_TAG_VALUE_CHARS")
    max_attributes_bytes: Count = _limit(16 * 1024, "MAX_ATTRIBUTES_BYTES")
    max_attributes_depth: Count = _limit(10, "MAX_ATTRIBUTES_DEPTH")
    max_fingerprint_parts: Count = _limit(16, "MAX_FINGERPRINT_PARTS")
    max_breadcrumbs: Count = _limit(100, "MAX_BREADCRUMBS")
    max_breadcrumb_chars: Count = _limit(4096, "MAX_BREADCRUMB_CHARS")
    max_batch_size: Count = _limit(1000, "MAX_BATCH_SIZE")
    max_search_text_chars: Count = _limit(1024, "MAX_SEARCH_TEXT_CHARS")
    # Not an input limit: SearchErrors counts its matches up to this many, then says "more".
    search_count_limit: Count = setting(
        SEARCH_COUNT_LIMIT,
        "SEARCH_COUNT_LIMIT",
        "SearchErrors counts matches up to this many; beyond, total_size_capped is true",
    )
    max_future_skew_seconds: Count = _limit(24 * 3600, "MAX_FUTURE_SKEW_SECONDS")
    # Topology input, per UpsertResources call. Label keys and values, and change metadata, share
    # the tag limits (max_tag_key_chars, max_tag_value_chars).
    max_resources_per_call: Count = _limit(1000, "MAX_RESOURCES_PER_CALL")
    max_dependencies_per_call: Count = _limit(5000, "MAX_DEPENDENCIES_PER_CALL")
    max_resource_name_chars: Count = _limit(256, "MAX_RESOURCE_NAME_CHARS")
    max_labels: Count = _limit(64, "MAX_LABELS")
    max_change_metadata: Count = _limit(64, "MAX_CHANGE_METADATA")
    # A topology neighbourhood beyond either is marked truncated.
    max_neighbours_per_hop: Count = setting(100, "MAX_NEIGHBOURS_PER_HOP", "topology: new resources per hop")
    max_topology_edges: Count = setting(2000, "MAX_TOPOLOGY_EDGES", "topology: edges per neighbourhood")

    @property
    def topology_bounds(self) -> TopologyBounds:
        return TopologyBounds(self.max_neighbours_per_hop, self.max_topology_edges)


OTLP_SEVERITY_NAMES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21}
"""The first OTLP severity_number of each range (opentelemetry/proto/logs/v1/logs.proto SeverityNumber)."""


def _severity(raw: Any) -> Any:
    if not isinstance(raw, str) or raw.strip().lstrip("-").isdigit():
        return int(raw) if isinstance(raw, str) else raw
    if (number := OTLP_SEVERITY_NAMES.get(raw.strip().upper())) is None:
        raise ValueError(f'"{raw}" is not a severity number 1-24 or one of {", ".join(OTLP_SEVERITY_NAMES)}')
    return number


class OtlpSettings(SettingsModel):
    """What the OTLP receiver (ingest/otlp.py) turns into errors, and how it maps them (README: OpenTelemetry)."""

    min_log_severity: Annotated[int, BeforeValidator(_severity)] = setting(
        17, "OTLP_MIN_LOG_SEVERITY", "log records at or above are errors", ge=1, le=24
    )
    error_spans: Switch = setting(False, "OTLP_ERROR_SPANS", "spans with status ERROR become errors (on/off)")
    resource_id_attribute: str = setting(
        "service.name", "OTLP_RESOURCE_ID_ATTRIBUTE", "resource attribute giving resource_id"
    )
    # Looked up on the event or log record, then the span, then the resource.
    tag_attributes: Names = setting(
        ("service.namespace", "service.instance.id", "host.name", "k8s.namespace.name", "k8s.pod.name", "cloud.region"),
        "OTLP_TAG_ATTRIBUTES",
        "attributes copied into tags (empty: none)",
        empty_means_none=True,
    )


class Neo4jSettings(SettingsModel):
    uri: str = setting("", "NEO4J_URI", "Bolt URI, e.g. bolt://db:7687", old=True)
    username: str = setting("neo4j", "NEO4J_USERNAME", "Bolt user", old=True)
    password: str = setting("", "NEO4J_PASSWORD", "Bolt password", old=True, secret=True)
    database: str = setting("", "NEO4J_DATABASE", "database name (server default when empty)", old=True)


class ScrubSettings(SettingsModel):
    """Secret scrubbing beyond the built-in patterns (capture/scrubbing.py)."""

    extra_patterns_file: OptionalPath = setting(None, "SCRUB_EXTRA_PATTERNS", "file of `kind<TAB>regex` lines")
    disabled_kinds: Names = setting((), "SCRUB_DISABLED_KINDS", "secret kinds not to mask, comma-separated")
    pii: Switch = setting(True, "SCRUB_PII", "also mask emails and national ids (on/off)")


class Settings(SettingsModel):
    """Server settings; the sections are in the README's order (Configuration)."""

    listen_address: Address = setting(
        "localhost:50051", "LISTEN_ADDRESS", "gRPC listen host:port (port 0 picks one) or unix:PATH"
    )
    data_dir: Path = setting(Path("data"), "DATA_DIR", "directory of the embedded SQLite store")
    store: Store = setting("sqlite", "STORE", "sqlite (embedded) or neo4j (Bolt)")
    metrics_address: OptionalAddress = setting(
        f"{DEFAULT_METRICS_HOST}:{DEFAULT_METRICS_PORT}",
        "METRICS_ADDRESS",
        "Prometheus /metrics listener, host:port, or off",
    )
    shutdown_grace_seconds: Seconds = setting(10.0, "SHUTDOWN_GRACE_SECONDS", "time in-flight calls get at stop")
    log_level: LogLevel = setting("INFO", "LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR")
    enrichment_enabled: Switch = setting(True, "ENRICHMENT", "collect context for each error (on/off)")
    workers: Count = setting(0, "WORKERS", "gRPC worker processes plus a writer process (0 = one process)")
    event_loop: EventLoop = setting("auto", "EVENT_LOOP", "auto uses uvloop when installed")
    limits: Limits = Field(default_factory=Limits)
    neo4j: Neo4jSettings = Field(default_factory=Neo4jSettings)
    hub: HubSettings = Field(default_factory=HubSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    scrub: ScrubSettings = Field(default_factory=ScrubSettings)
    otlp: OtlpSettings = Field(default_factory=OtlpSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    nats: NatsSettings = Field(default_factory=NatsSettings)
    collectors: CollectorSettings = Field(default_factory=CollectorSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "errorreplay.db"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        """The effective settings: defaults, the TOML file (`config_file` or ERRORREPLAY_CONFIG),
        then variables (settings_schema.py). Raises settings_schema.ConfigError (a ValueError)."""
        from errorreplay_server.settings_schema import load

        return load(os.environ if env is None else env, config_file).settings
