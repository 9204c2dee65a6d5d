"""The settings model: frozen dataclasses with typed fields and documented defaults. How each field
is set (variable, config-file key, parser) is settings_schema.py; the README table comes from it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.http.settings import HttpSettings
from errorreplay_server.notify.config import NotifySettings
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.store.base import SEARCH_COUNT_LIMIT, TopologyBounds
from errorreplay_server.streaming.hub import HubSettings
from errorreplay_server.streaming.nats_settings import NatsSettings

DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_METRICS_PORT = 9464


def split_host_port(address: str, name: str) -> tuple[str, int]:
    """`host:port` (IPv6 hosts in brackets) -> (host, port); ValueError naming `name` otherwise."""
    host, sep, port = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{name} must be host:port, such as 127.0.0.1:9464 or 0.0.0.0:9464, got {address!r}")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits. A breach is INVALID_ARGUMENT naming the field (README: Limits)."""

    max_receive_message_bytes: int = 8 * 1024 * 1024
    max_message_chars: int = 16 * 1024
    max_stack_trace_chars: int = 64 * 1024
    max_id_chars: int = 256
    max_tags: int = 64
    max_tag_key_chars: int = 128
    max_tag_value_chars: int = 1024
    max_attributes_bytes: int = 16 * 1024
    max_attributes_depth: int = 10
    max_fingerprint_parts: int = 16
    max_breadcrumbs: int = 100
    max_breadcrumb_chars: int = 4096
    max_batch_size: int = 1000
    max_search_text_chars: int = 1024
    # Not an input limit: SearchErrors counts its matches up to this many, then says "more".
    search_count_limit: int = SEARCH_COUNT_LIMIT
    max_future_skew_seconds: int = 24 * 3600
    # Topology: a neighbourhood lists at most this many new resources per hop and direction, and
    # at most max_topology_edges edges; beyond either it is marked truncated.
    max_neighbours_per_hop: int = 100
    max_topology_edges: int = 2000
    # Topology input, per UpsertResources call. Label keys and values, and change metadata, share
    # the tag limits (max_tag_key_chars, max_tag_value_chars).
    max_resources_per_call: int = 1000
    max_dependencies_per_call: int = 5000
    max_resource_name_chars: int = 256
    max_labels: int = 64
    max_change_metadata: int = 64

    @property
    def topology_bounds(self) -> TopologyBounds:
        return TopologyBounds(self.max_neighbours_per_hop, self.max_topology_edges)


OTLP_SEVERITY_NAMES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21}
"""The first OTLP severity_number of each range (opentelemetry/proto/logs/v1/logs.proto SeverityNumber)."""


@dataclass(frozen=True, slots=True)
class OtlpSettings:
    """What the OTLP receiver (ingest/otlp.py) turns into errors, and how it maps them (README: OpenTelemetry)."""

    # Log records at or above this severity_number are errors even without exception.* attributes.
    min_log_severity: int = 17  # ERROR
    # Spans with status ERROR but no `exception` event become errors too.
    error_spans: bool = False
    # The resource attribute whose value becomes resource_id (e.g. k8s.deployment.name).
    resource_id_attribute: str = "service.name"
    # Attributes copied into tags (looked up on the event or log record, then the span, then the resource).
    tag_attributes: tuple[str, ...] = (
        "service.namespace",
        "service.instance.id",
        "host.name",
        "k8s.namespace.name",
        "k8s.pod.name",
        "cloud.region",
    )


@dataclass(frozen=True, slots=True)
class Neo4jSettings:
    uri: str = ""
    username: str = "neo4j"
    password: str = field(default="", repr=False)
    database: str = ""


@dataclass(frozen=True, slots=True)
class ScrubSettings:
    """Secret scrubbing beyond the built-in patterns (capture/scrubbing.py)."""

    extra_patterns_file: Path | None = None
    disabled_kinds: tuple[str, ...] = ()
    pii: bool = True


@dataclass(frozen=True, slots=True)
class Settings:
    """Server settings. Variables and file keys: settings_schema.py, README (Configuration)."""

    listen_address: str = "localhost:50051"
    data_dir: Path = Path("data")
    store: str = "sqlite"
    # host:port of the Prometheus metrics listener; "" disables it. Local by default.
    metrics_address: str = f"{DEFAULT_METRICS_HOST}:{DEFAULT_METRICS_PORT}"
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    limits: Limits = field(default_factory=Limits)
    neo4j: Neo4jSettings = field(default_factory=Neo4jSettings)
    hub: HubSettings = field(default_factory=HubSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    collectors: CollectorSettings = field(default_factory=CollectorSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    otlp: OtlpSettings = field(default_factory=OtlpSettings)
    scrub: ScrubSettings = field(default_factory=ScrubSettings)
    # The HTTP listener (http/settings.py); off in code, on at localhost:8080 when loaded.
    http: HttpSettings = field(default_factory=HttpSettings)
    # Notification rules and targets (notify/config.py); no rules, no notifier.
    notify: NotifySettings = field(default_factory=NotifySettings)
    # Streams and enrichment jobs on NATS JetStream (several replicas); off unless a URL is set.
    nats: NatsSettings = field(default_factory=NatsSettings)
    enrichment_enabled: bool = True
    # gRPC worker processes sharing the port, with one writer process (engine/supervisor.py); 0
    # serves everything from one process.
    workers: int = 0
    # auto (uvloop when installed), uvloop, or asyncio.
    event_loop: str = "auto"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "errorreplay.db"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
        """The effective settings: defaults, the TOML file (`config_file` or ERRORREPLAY_CONFIG),
        then variables (settings_schema.py). Raises settings_schema.ConfigError (a ValueError)."""
        from errorreplay_server.settings_schema import load

        return load(os.environ if env is None else env, config_file).settings
