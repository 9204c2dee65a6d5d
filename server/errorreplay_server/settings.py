"""Core settings, read once from the environment at start-up. Every knob has a documented default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from errorreplay_server.analysis.settings import AnalysisSettings
from errorreplay_server.collectors.settings import CollectorSettings
from errorreplay_server.http.settings import HttpSettings
from errorreplay_server.security_settings import SecuritySettings
from errorreplay_server.store.base import TopologyBounds
from errorreplay_server.streaming.hub import HubSettings
from errorreplay_server.streaming.nats_settings import NatsSettings

DEFAULT_HUB = HubSettings()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_METRICS_PORT = 9464


def split_host_port(address: str, name: str) -> tuple[str, int]:
    """`host:port` (IPv6 hosts in brackets) -> (host, port); ValueError naming `name` otherwise."""
    host, sep, port = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{name} must be host:port, such as 127.0.0.1:9464 or 0.0.0.0:9464, got {address!r}")
    return host, int(port)


def _metrics_address(env: Mapping[str, str]) -> str:
    """ERRORREPLAY_METRICS_ADDRESS (host:port, or `off`) wins over the older ERRORREPLAY_METRICS_PORT
    (a port on 127.0.0.1, 0 disables). An empty result means no metrics listener."""
    raw = env.get("ERRORREPLAY_METRICS_ADDRESS", "").strip()
    if raw.lower() in ("off", "none", "disabled"):
        return ""
    if raw:
        split_host_port(raw, "ERRORREPLAY_METRICS_ADDRESS")
        return raw
    port = _int(env, "ERRORREPLAY_METRICS_PORT", DEFAULT_METRICS_PORT)
    if not 0 <= port <= 65535:
        raise ValueError(f"ERRORREPLAY_METRICS_PORT must be a port number, got {port}")
    return f"{DEFAULT_METRICS_HOST}:{port}" if port else ""


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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        d = cls()
        return cls(
            max_receive_message_bytes=_int(env, "ERRORREPLAY_MAX_RECEIVE_MESSAGE_BYTES", d.max_receive_message_bytes),
            max_message_chars=_int(env, "ERRORREPLAY_MAX_MESSAGE_CHARS", d.max_message_chars),
            max_stack_trace_chars=_int(env, "ERRORREPLAY_MAX_STACK_TRACE_CHARS", d.max_stack_trace_chars),
            max_id_chars=_int(env, "ERRORREPLAY_MAX_ID_CHARS", d.max_id_chars),
            max_tags=_int(env, "ERRORREPLAY_MAX_TAGS", d.max_tags),
            max_tag_key_chars=_int(env, "ERRORREPLAY_MAX_TAG_KEY_CHARS", d.max_tag_key_chars),
            max_tag_value_chars=_int(env, "ERRORREPLAY_MAX_TAG_VALUE_CHARS", d.max_tag_value_chars),
            max_attributes_bytes=_int(env, "ERRORREPLAY_MAX_ATTRIBUTES_BYTES", d.max_attributes_bytes),
            max_attributes_depth=_int(env, "ERRORREPLAY_MAX_ATTRIBUTES_DEPTH", d.max_attributes_depth),
            max_fingerprint_parts=_int(env, "ERRORREPLAY_MAX_FINGERPRINT_PARTS", d.max_fingerprint_parts),
            max_breadcrumbs=_int(env, "ERRORREPLAY_MAX_BREADCRUMBS", d.max_breadcrumbs),
            max_breadcrumb_chars=_int(env, "ERRORREPLAY_MAX_BREADCRUMB_CHARS", d.max_breadcrumb_chars),
            max_batch_size=_int(env, "ERRORREPLAY_MAX_BATCH_SIZE", d.max_batch_size),
            max_neighbours_per_hop=_int(env, "ERRORREPLAY_MAX_NEIGHBOURS_PER_HOP", d.max_neighbours_per_hop),
            max_topology_edges=_int(env, "ERRORREPLAY_MAX_TOPOLOGY_EDGES", d.max_topology_edges),
            max_resources_per_call=_int(env, "ERRORREPLAY_MAX_RESOURCES_PER_CALL", d.max_resources_per_call),
            max_dependencies_per_call=_int(env, "ERRORREPLAY_MAX_DEPENDENCIES_PER_CALL", d.max_dependencies_per_call),
            max_resource_name_chars=_int(env, "ERRORREPLAY_MAX_RESOURCE_NAME_CHARS", d.max_resource_name_chars),
            max_labels=_int(env, "ERRORREPLAY_MAX_LABELS", d.max_labels),
            max_change_metadata=_int(env, "ERRORREPLAY_MAX_CHANGE_METADATA", d.max_change_metadata),
        )

    @property
    def topology_bounds(self) -> TopologyBounds:
        return TopologyBounds(self.max_neighbours_per_hop, self.max_topology_edges)


OTLP_SEVERITY_NAMES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21}
"""The first OTLP severity_number of each range (opentelemetry/proto/logs/v1/logs.proto SeverityNumber)."""


def _otlp_severity(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    number = OTLP_SEVERITY_NAMES.get(raw.upper())
    if number is None:
        try:
            number = int(raw)
        except ValueError as exc:
            names = ", ".join(OTLP_SEVERITY_NAMES)
            raise ValueError(f"{name} must be a severity number 1-24 or one of {names}, got {raw!r}") from exc
    if not 1 <= number <= 24:
        raise ValueError(f"{name} must be between 1 and 24, got {number}")
    return number


def _names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OtlpSettings:
        d = cls()
        return cls(
            min_log_severity=_otlp_severity(env, "ERRORREPLAY_OTLP_MIN_LOG_SEVERITY", d.min_log_severity),
            error_spans=env.get("ERRORREPLAY_OTLP_ERROR_SPANS", "off").strip().lower() in ("on", "1", "true"),
            resource_id_attribute=env.get("ERRORREPLAY_OTLP_RESOURCE_ID_ATTRIBUTE", "").strip()
            or d.resource_id_attribute,
            tag_attributes=_names(env, "ERRORREPLAY_OTLP_TAG_ATTRIBUTES", d.tag_attributes),
        )


@dataclass(frozen=True, slots=True)
class Neo4jSettings:
    uri: str = ""
    username: str = "neo4j"
    password: str = ""
    database: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Neo4jSettings:
        return cls(
            uri=env.get("NEO4J_URI", ""),
            username=env.get("NEO4J_USERNAME", "neo4j"),
            password=env.get("NEO4J_PASSWORD", ""),
            database=env.get("NEO4J_DATABASE", ""),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Server settings. Environment variables are listed in the README (Configuration)."""

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
    # The HTTP listener (http/settings.py); off unless configured, from_env turns it on.
    http: HttpSettings = field(default_factory=HttpSettings)
    # Streams and enrichment jobs on NATS JetStream (several replicas); off unless a URL is set.
    nats: NatsSettings = field(default_factory=NatsSettings)
    enrichment_enabled: bool = True
    # auto (uvloop when installed), uvloop, or asyncio.
    event_loop: str = "auto"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "errorreplay.db"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        store = _choice(env, "ERRORREPLAY_STORE", ("sqlite", "neo4j"))
        return cls(
            listen_address=env.get("ERRORREPLAY_LISTEN_ADDRESS", "localhost:50051"),
            data_dir=Path(env.get("ERRORREPLAY_DATA_DIR", "data")),
            store=store,
            metrics_address=_metrics_address(env),
            shutdown_grace_seconds=_float(env, "ERRORREPLAY_SHUTDOWN_GRACE_SECONDS", 10.0),
            log_level=env.get("ERRORREPLAY_LOG_LEVEL", "INFO").upper(),
            limits=Limits.from_env(env),
            neo4j=Neo4jSettings.from_env(env),
            analysis=AnalysisSettings.from_env(env),
            collectors=CollectorSettings.from_env(env),
            security=SecuritySettings.from_env(env),
            otlp=OtlpSettings.from_env(env),
            http=HttpSettings.from_env(env),
            nats=NatsSettings.from_env(env),
            enrichment_enabled=env.get("ERRORREPLAY_ENRICHMENT", "on").strip().lower() not in ("off", "0", "false"),
            event_loop=_choice(env, "ERRORREPLAY_EVENT_LOOP", ("auto", "uvloop", "asyncio")),
            hub=HubSettings(
                queue_size=_int(env, "ERRORREPLAY_STREAM_QUEUE_SIZE", DEFAULT_HUB.queue_size),
                max_subscriptions=_int(env, "ERRORREPLAY_MAX_SUBSCRIPTIONS", DEFAULT_HUB.max_subscriptions),
            ),
        )
