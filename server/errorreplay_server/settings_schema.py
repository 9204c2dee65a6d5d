"""The one settings schema: every setting's variable, config-file key, parser and meaning.

The typed model is the frozen dataclasses hung on `Settings` (settings.py and the section modules):
they give each field its type, its default and the checks across fields. This module says how a
field is set from outside, in one table (`SPECS`), and loads it:

- Variables: one `ERRORREPLAY_` name per setting, flat (the names the README always documented).
  Older spellings (`PROMETHEUS_URL`, `NEO4J_URI`, ...) still work, with a one-line warning.
- File: an optional TOML file (`--config FILE` or `ERRORREPLAY_CONFIG`). Its sections are the
  attribute names on `Settings` (`[server]` for the top-level ones); its keys are the variable names
  without `ERRORREPLAY_` and without the section name, lower case: `ERRORREPLAY_RELATED_WINDOW` is
  `[analysis] related_window`, `ERRORREPLAY_NEO4J_URI` is `[neo4j] uri`. Unknown keys are errors.
- Order: defaults, then the file, then variables, then command-line flags.
- Durations everywhere use domain/durations.py (`500ms`, `30s`, `5m`, `2h`, `7d`, or seconds).

Errors are `ConfigError`, one line naming the variable (or file key, or flag) and the accepted form.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from errorreplay_server.domain.durations import DURATION_FORMS, format_duration, parse_duration
from errorreplay_server.domain.model import MICROS_PER_SECOND
from errorreplay_server.http.settings import DEFAULT_ADDRESS as DEFAULT_HTTP_ADDRESS
from errorreplay_server.http.settings import SentryKey, parse_sentry_keys
from errorreplay_server.security_settings import TokenGrant, parse_inline_tokens, parse_token_lines
from errorreplay_server.settings import (
    DEFAULT_METRICS_HOST,
    DEFAULT_METRICS_PORT,
    OTLP_SEVERITY_NAMES,
    Settings,
    split_host_port,
)

logger = logging.getLogger("errorreplay.settings")

PREFIX = "ERRORREPLAY_"
CONFIG_VARIABLE = "ERRORREPLAY_CONFIG"
SERVER_SECTION = "server"
MASK = "********"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and the accepted form."""


# --- parsers: each takes the raw value (a string from a variable or flag, or a TOML value) ---


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not text")
    return raw.strip()


def _integer(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    try:
        return int(_text(raw))
    except ValueError:
        raise ValueError(f'"{raw}" is not an integer such as 100') from None


def _count(raw: Any) -> int:
    value = _integer(raw)
    if value < 0:
        raise ValueError(f'"{raw}" is not an integer >= 0')
    return value


def _number(raw: Any) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        try:
            value = float(_text(raw))
        except ValueError:
            raise ValueError(f'"{raw}" is not a number such as 0.5') from None
    if not math.isfinite(value):
        raise ValueError(f'"{raw}" is not a finite number')
    return value


def _non_negative(raw: Any) -> float:
    value = _number(raw)
    if value < 0:
        raise ValueError(f'"{raw}" is not a number >= 0')
    return value


def _switch(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = _text(raw).lower()
    if word in ("on", "true", "1", "yes"):
        return True
    if word in ("off", "false", "0", "no"):
        return False
    raise ValueError(f'"{raw}" is not on or off')


def _seconds(raw: Any) -> float:
    return parse_duration(raw if isinstance(raw, int | float) else _text(raw))


def _micros(raw: Any) -> int:
    return round(_seconds(raw) * MICROS_PER_SECOND)


def _names(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else _text(raw).split(",")
    return tuple(_text(item) for item in items if _text(item))


def _required_names(raw: Any) -> tuple[str, ...]:
    names = _names(raw)
    if not names:
        raise ValueError("needs at least one name, comma-separated")
    return names


def _optional_path(raw: Any) -> Path | None:
    text = _text(raw)
    return Path(text) if text else None


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        word = _text(raw).lower()
        if word not in choices:
            raise ValueError(f'"{raw}" is not one of {", ".join(choices)}')
        return word

    return parse


def _log_level(raw: Any) -> str:
    level = _text(raw).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f'"{raw}" is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL')
    return level


def _host_port(text: str) -> str:
    try:
        split_host_port(text, "address")
    except ValueError:
        raise ValueError(f'"{text}" is not host:port such as 127.0.0.1:9464 or 0.0.0.0:9464') from None
    return text


def _address(raw: Any) -> str:
    text = _text(raw)
    return text if text.startswith(("unix:", "unix-abstract:")) else _host_port(text)


def _optional_address(raw: Any) -> str:
    """host:port, or `off` (stored as "")."""
    text = _text(raw)
    if text.lower() in ("off", "none", "disabled", ""):
        return ""
    return _host_port(text)


def _metrics_port(raw: Any) -> str:
    port = _integer(raw)
    if not 0 <= port <= 65535:
        raise ValueError(f'"{raw}" is not a port number 0-65535')
    return f"{DEFAULT_METRICS_HOST}:{port}" if port else ""


def _otlp_severity(raw: Any) -> int:
    number = OTLP_SEVERITY_NAMES.get(str(raw).strip().upper())
    if number is None:
        try:
            number = _integer(raw)
        except ValueError:
            names = ", ".join(OTLP_SEVERITY_NAMES)
            raise ValueError(f'"{raw}" is not a severity number 1-24 or one of {names}') from None
    if not 1 <= number <= 24:
        raise ValueError(f'"{raw}" is not between 1 and 24')
    return number


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def _tokens_inline(raw: Any) -> tuple[TokenGrant, ...]:
    text = _text(raw)
    grants = tuple(parse_inline_tokens(text, "grant list")) if text else ()
    if text and not grants:
        raise ValueError("holds no token")
    return grants


def _tokens_file(raw: Any) -> tuple[TokenGrant, ...]:
    path = _optional_path(raw)
    if path is None:
        return ()
    grants = tuple(parse_token_lines(_read(path).splitlines(), str(path)))
    if not grants:
        raise ValueError(f"{path} holds no token")
    return grants


def _sentry_inline(raw: Any) -> tuple[SentryKey, ...]:
    return tuple(parse_sentry_keys(_text(raw).split(","), "key list", ":"))


def _sentry_file(raw: Any) -> tuple[SentryKey, ...]:
    path = _optional_path(raw)
    if path is None:
        return ()
    keys = tuple(parse_sentry_keys(_read(path).splitlines(), str(path), None))
    if not keys:
        raise ValueError(f"{path} holds no key")
    return keys


def _promql_templates(raw: Any) -> Any:
    from errorreplay_server.collectors.promql import PromQLTemplates

    path = _optional_path(raw)
    return PromQLTemplates.load(path) if path else PromQLTemplates()


# --- how a value is written back (README defaults, `errorreplay config`) ---


def _show_plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _show_seconds(value: Any) -> Any:
    return format_duration(value)


def _show_micros(value: Any) -> Any:
    return format_duration(value / MICROS_PER_SECOND)


def _show_optional(value: Any) -> Any:
    return "" if value is None else str(value)


def _show_address(value: Any) -> Any:
    return value or "off"


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its variable, the attribute path(s) it sets on Settings, and how it is read."""

    variable: str
    paths: tuple[tuple[str, ...], ...]
    parse: Callable[[Any], Any]
    meaning: str
    show: Callable[[Any], Any] = _show_plain
    deprecated: tuple[str, ...] = ()
    secret: bool = False
    # Several specs may fill one tuple field (tokens from a file and inline): their values add up.
    adds_up: bool = False
    # The default when it is not the dataclass's (text as a user writes it); shown as written.
    default: str | None = None
    # When the value is read from a file or inline list, `config` shows what was given, not the result.
    show_raw: bool = False
    # The default as documented, when it is not the value's own rendering.
    doc_default: str | None = None
    # A set but empty variable means "none" rather than "the default".
    empty_means_none: bool = False

    @property
    def section(self) -> str:
        return self.paths[0][0] if len(self.paths[0]) > 1 else SERVER_SECTION

    @property
    def key(self) -> str:
        name = self.variable.removeprefix(PREFIX).lower()
        return name.removeprefix(f"{self.section}_") if self.section != SERVER_SECTION else name


def _path(raw: Any) -> Path:
    return Path(_text(raw))


_SHOW_FOR: dict[Callable[[Any], Any], Callable[[Any], Any]] = {
    _micros: _show_micros,
    _seconds: _show_seconds,
    _optional_path: _show_optional,
    _optional_address: _show_address,
    _metrics_port: _show_address,
}


def _spec(variable: str, path: str, parse: Callable[[Any], Any], meaning: str, *, old: bool = False, **kw: Any) -> Spec:
    """`path` is the attribute path on Settings (comma-separated when one setting feeds two);
    `old=True` keeps the variable's unprefixed name working."""
    paths = tuple(tuple(p.split(".")) for p in path.split(","))
    kw.setdefault("show", _SHOW_FOR.get(parse, _show_plain))
    kw.setdefault("show_raw", kw.get("adds_up", False))
    if old:
        kw["deprecated"] = (variable,)
    return Spec(PREFIX + variable, paths, parse, meaning, **kw)


_LIMIT = "per-item input limit; a breach is INVALID_ARGUMENT naming the field"

SPECS: tuple[Spec, ...] = (
    # --- server ---
    _spec("LISTEN_ADDRESS", "listen_address", _address, "gRPC listen host:port (port 0 picks one) or unix:PATH"),
    _spec("DATA_DIR", "data_dir", _path, "directory of the embedded SQLite store"),
    _spec("STORE", "store", _choice("sqlite", "neo4j"), "sqlite (embedded) or neo4j (Bolt)"),
    _spec("METRICS_ADDRESS", "metrics_address", _optional_address, "Prometheus /metrics listener, host:port, or off"),
    _spec(
        "METRICS_PORT",
        "metrics_address",
        _metrics_port,
        "older form: a port on 127.0.0.1 (0 = off); ERRORREPLAY_METRICS_ADDRESS wins",
        doc_default=str(DEFAULT_METRICS_PORT),
    ),
    _spec("SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds", _seconds, "time in-flight calls get at stop"),
    _spec("LOG_LEVEL", "log_level", _log_level, "DEBUG, INFO, WARNING or ERROR"),
    _spec("ENRICHMENT", "enrichment_enabled", _switch, "collect context for each error (on/off)"),
    _spec("WORKERS", "workers", _count, "gRPC worker processes plus a writer process (0 = one process)"),
    _spec("EVENT_LOOP", "event_loop", _choice("auto", "uvloop", "asyncio"), "auto uses uvloop when installed"),
    # --- limits ---
    _spec("MAX_RECEIVE_MESSAGE_BYTES", "limits.max_receive_message_bytes", _count, _LIMIT),
    _spec("MAX_MESSAGE_CHARS", "limits.max_message_chars", _count, _LIMIT),
    _spec("MAX_STACK_TRACE_CHARS", "limits.max_stack_trace_chars", _count, _LIMIT),
    _spec("MAX_ID_CHARS", "limits.max_id_chars", _count, _LIMIT),
    _spec("MAX_TAGS", "limits.max_tags", _count, _LIMIT),
    _spec("MAX_TAG_KEY_CHARS", "limits.max_tag_key_chars", _count, _LIMIT),
    _spec("MAX_TAG_VALUE_CHARS", "limits.max_tag_value_chars", _count, _LIMIT),
    _spec("MAX_ATTRIBUTES_BYTES", "limits.max_attributes_bytes", _count, _LIMIT),
    _spec("MAX_ATTRIBUTES_DEPTH", "limits.max_attributes_depth", _count, _LIMIT),
    _spec("MAX_FINGERPRINT_PARTS", "limits.max_fingerprint_parts", _count, _LIMIT),
    _spec("MAX_BREADCRUMBS", "limits.max_breadcrumbs", _count, _LIMIT),
    _spec("MAX_BREADCRUMB_CHARS", "limits.max_breadcrumb_chars", _count, _LIMIT),
    _spec("MAX_BATCH_SIZE", "limits.max_batch_size", _count, _LIMIT),
    _spec("MAX_SEARCH_TEXT_CHARS", "limits.max_search_text_chars", _count, _LIMIT),
    _spec(
        "SEARCH_COUNT_LIMIT",
        "limits.search_count_limit",
        _count,
        "SearchErrors counts matches up to this many; beyond, total_size_capped is true",
    ),
    _spec("MAX_FUTURE_SKEW_SECONDS", "limits.max_future_skew_seconds", _count, _LIMIT),
    _spec("MAX_RESOURCES_PER_CALL", "limits.max_resources_per_call", _count, _LIMIT),
    _spec("MAX_DEPENDENCIES_PER_CALL", "limits.max_dependencies_per_call", _count, _LIMIT),
    _spec("MAX_RESOURCE_NAME_CHARS", "limits.max_resource_name_chars", _count, _LIMIT),
    _spec("MAX_LABELS", "limits.max_labels", _count, _LIMIT),
    _spec("MAX_CHANGE_METADATA", "limits.max_change_metadata", _count, _LIMIT),
    _spec("MAX_NEIGHBOURS_PER_HOP", "limits.max_neighbours_per_hop", _count, "topology: new resources per hop"),
    _spec("MAX_TOPOLOGY_EDGES", "limits.max_topology_edges", _count, "topology: edges per neighbourhood"),
    # --- neo4j ---
    _spec("NEO4J_URI", "neo4j.uri", _text, "Bolt URI, e.g. bolt://db:7687", old=True),
    _spec("NEO4J_USERNAME", "neo4j.username", _text, "Bolt user", old=True),
    _spec("NEO4J_PASSWORD", "neo4j.password", _text, "Bolt password", old=True, secret=True),
    _spec("NEO4J_DATABASE", "neo4j.database", _text, "database name (server default when empty)", old=True),
    # --- hub ---
    _spec("STREAM_QUEUE_SIZE", "hub.queue_size", _count, "messages buffered per subscriber before overflow"),
    _spec("STREAM_MEMORY_SIZE", "hub.memory_size", _count, "errors each subscription remembers"),
    _spec("STREAM_RECENT_SIZE", "hub.recent_size", _count, "recent errors the hub indexes"),
    _spec("STREAM_TOPOLOGY_TTL", "hub.topology_ttl_seconds", _seconds, "how long the hub caches topology"),
    _spec("STREAM_TOPOLOGY_CACHE_SIZE", "hub.topology_cache_size", _count, "resources in the hub's topology cache"),
    _spec("STREAM_BACKFILL_PAGE", "hub.backfill_page", _count, "stored errors read per page when resuming"),
    _spec("MAX_SUBSCRIPTIONS", "hub.max_subscriptions", _count, "concurrent streams, all callers"),
    # --- security ---
    _spec(
        "AUTH_TOKENS_FILE",
        "security.tokens",
        _tokens_file,
        "file of `role token` lines; auth is on when set",
        adds_up=True,
    ),
    _spec(
        "AUTH_TOKENS", "security.tokens", _tokens_inline, "inline grants `role:token,...`", secret=True, adds_up=True
    ),
    _spec("TLS_CERT_FILE", "security.tls_cert_file", _optional_path, "PEM certificate chain; TLS is on when set"),
    _spec("TLS_KEY_FILE", "security.tls_key_file", _optional_path, "PEM private key of that certificate"),
    _spec("TLS_CLIENT_CA_FILE", "security.tls_client_ca_file", _optional_path, "PEM CA bundle; set means mTLS"),
    _spec(
        "RATE_LIMIT_PER_SECOND",
        "security.rate_limit_per_second",
        _non_negative,
        "calls per second per caller (0 = off)",
    ),
    _spec("RATE_LIMIT_BURST", "security.rate_limit_burst", _count, "bucket size (0 = the rate rounded up)"),
    _spec("MAX_STREAMS_PER_TOKEN", "security.max_streams_per_token", _count, "streams per caller (0 = no cap)"),
    # --- scrub ---
    _spec("SCRUB_EXTRA_PATTERNS", "scrub.extra_patterns_file", _optional_path, "file of `kind<TAB>regex` lines"),
    _spec("SCRUB_DISABLED_KINDS", "scrub.disabled_kinds", _names, "secret kinds not to mask, comma-separated"),
    _spec("SCRUB_PII", "scrub.pii", _switch, "also mask emails and national ids (on/off)"),
    # --- otlp ---
    _spec("OTLP_MIN_LOG_SEVERITY", "otlp.min_log_severity", _otlp_severity, "log records at or above are errors"),
    _spec("OTLP_ERROR_SPANS", "otlp.error_spans", _switch, "spans with status ERROR become errors (on/off)"),
    _spec("OTLP_RESOURCE_ID_ATTRIBUTE", "otlp.resource_id_attribute", _text, "resource attribute giving resource_id"),
    _spec(
        "OTLP_TAG_ATTRIBUTES",
        "otlp.tag_attributes",
        _names,
        "attributes copied into tags (empty: none)",
        empty_means_none=True,
    ),
    # --- http ---
    _spec(
        "HTTP_ADDRESS",
        "http.address",
        _optional_address,
        "HTTP listener host:port, or off",
        default=DEFAULT_HTTP_ADDRESS,
    ),
    _spec("HTTP_MAX_BODY_BYTES", "http.max_body_bytes", _count, "request body as sent; more is 413"),
    _spec("HTTP_MAX_DECOMPRESSED_BYTES", "http.max_decompressed_bytes", _count, "body once inflated; more is 413"),
    _spec("SENTRY_KEYS_FILE", "http.sentry_keys", _sentry_file, "file of `project key` lines", adds_up=True),
    _spec(
        "SENTRY_KEYS",
        "http.sentry_keys",
        _sentry_inline,
        "DSN public keys `project:key,...`",
        secret=True,
        adds_up=True,
    ),
    _spec(
        "ALERTMANAGER_RESOURCE_LABELS",
        "http.alertmanager_resource_labels",
        _required_names,
        "alert labels giving resource_id, first wins",
    ),
    _spec("CONSOLE", "http.console", _switch, "the web console on the HTTP listener (on/off)"),
    _spec(
        "CONSOLE_URL",
        "http.console_url,notify.console_url",
        _text,
        "console base URL for CLI and notification links (unset: the CLI uses the HTTP address)",
    ),
    _spec(
        "CONSOLE_CACHE_SECONDS",
        "http.console_cache_seconds",
        _seconds,
        "reuse of a statistics page or sparkline (0: none)",
    ),
    # --- notify (rules and targets: the [notifications] table, notify/config.py) ---
    _spec("NOTIFY_MAX_ATTEMPTS", "notify.max_attempts", _count, "deliveries tried before a dead letter"),
    _spec("NOTIFY_BACKOFF_BASE", "notify.backoff_base_seconds", _seconds, "first retry delay (doubles, with jitter)"),
    _spec("NOTIFY_BACKOFF_MAX", "notify.backoff_max_seconds", _seconds, "longest retry delay"),
    _spec("NOTIFY_CONTEXT_WAIT", "notify.context_wait_seconds", _seconds, "wait for the error's context"),
    _spec("NOTIFY_REQUEST_TIMEOUT", "notify.request_timeout_seconds", _seconds, "timeout of one delivery"),
    _spec("NOTIFY_CONCURRENCY", "notify.concurrency", _count, "messages composed and sent at once"),
    _spec("NOTIFY_MAX_PENDING_DECISIONS", "notify.max_pending_decisions", _count, "decisions queued for the outbox"),
    _spec("NOTIFY_OUTBOX_RETENTION", "notify.outbox_retention_seconds", _seconds, "sent and dead rows kept"),
    # --- nats (several replicas: streams and enrichment jobs on JetStream) ---
    _spec("NATS_URL", "nats.url", _text, "nats://host:port[,...]; unset keeps streams and jobs in process"),
    _spec("NATS_STREAM", "nats.stream", _text, "the JetStream stream of committed captures"),
    _spec("NATS_SUBJECT_PREFIX", "nats.subject_prefix", _text, "subject prefix of that stream"),
    _spec("NATS_STREAM_MAX_AGE_SECONDS", "nats.stream_max_age_seconds", _seconds, "stream retention by age"),
    _spec("NATS_STREAM_MAX_BYTES", "nats.stream_max_bytes", _count, "stream retention by size"),
    _spec("NATS_STREAM_REPLICAS", "nats.stream_replicas", _count, "copies of each stream in a NATS cluster"),
    _spec("NATS_JOBS_STREAM", "nats.jobs_stream", _text, "the work-queue stream of enrichment jobs"),
    _spec("NATS_JOBS_SUBJECT", "nats.jobs_subject", _text, "subject of enrichment jobs"),
    _spec("NATS_JOBS_CONSUMER", "nats.jobs_consumer", _text, "durable consumer every replica pulls jobs from"),
    _spec("NATS_JOB_ACK_WAIT_SECONDS", "nats.job_ack_wait_seconds", _seconds, "an unacknowledged job is redelivered"),
    _spec("NATS_JOB_MAX_DELIVER", "nats.job_max_deliver", _count, "deliveries before a job is marked FAILED"),
    _spec("NATS_DONE_SUBJECT", "nats.done_subject", _text, "where a replica announces a finished job"),
    # --- collectors ---
    _spec("PROMETHEUS_URL", "collectors.prometheus_url", _text, "Prometheus base URL (unset: skipped)", old=True),
    _spec(
        "PROMQL_TEMPLATES",
        "collectors.promql_templates",
        _promql_templates,
        "TOML/JSON file of PromQL templates",
        show_raw=True,
    ),
    _spec("PROMETHEUS_STEP", "collectors.prometheus_step_seconds", _seconds, "range query step"),
    _spec("PROMETHEUS_MAX_SERIES", "collectors.prometheus_max_series", _count, "series kept per query"),
    _spec("PROMETHEUS_MAX_POINTS", "collectors.prometheus_max_points", _count, "points per series (the step grows)"),
    _spec(
        "METRICS_BASELINE_LOOKBACK",
        "collectors.metrics_baseline_lookback_seconds",
        _seconds,
        "baseline range before the window (0 = off)",
    ),
    _spec("METRICS_BASELINE_STEP", "collectors.metrics_baseline_step_seconds", _seconds, "baseline query step"),
    _spec(
        "METRICS_SEASONAL_OFFSET",
        "collectors.metrics_seasonal_offset_seconds",
        _seconds,
        "same window this long earlier (0 = off)",
    ),
    _spec("ANOMALY_SEASONAL_MARGIN", "collectors.anomaly_seasonal_margin", _number, "share above the seasonal peak"),
    _spec("ANOMALY_MAD_K", "collectors.anomaly_mad_k", _number, "anomalous above median + k x MAD"),
    _spec(
        "ANOMALY_MIN_BASELINE_POINTS",
        "collectors.anomaly_min_baseline_points",
        _count,
        "fewer points: no baseline test",
    ),
    _spec("TREND_MIN_POINTS", "collectors.trend_min_points", _count, "points a trend needs"),
    _spec("TREND_MIN_R2", "collectors.trend_min_r2", _number, "variance share a trend must explain"),
    _spec("TREND_MIN_RISE", "collectors.trend_min_rise", _number, "multiple of its start a trend must reach"),
    _spec(
        "ANOMALY_LEAD", "collectors.anomaly_lead_seconds", _seconds, "points from this long before the error are judged"
    ),
    _spec("CPU_LIMIT_PERCENT", "collectors.cpu_limit_percent", _number, "fixed limit for percent CPU series"),
    _spec("MEMORY_LIMIT_PERCENT", "collectors.memory_limit_percent", _number, "fixed limit for percent memory series"),
    _spec(
        "ERROR_RATE_LIMIT_PERCENT", "collectors.error_rate_limit_percent", _number, "fixed limit for error-rate series"
    ),
    _spec("LOKI_URL", "collectors.loki_url", _text, "Loki base URL (unset: skipped)", old=True),
    _spec("LOKI_TENANT", "collectors.loki_tenant", _text, "sent as X-Scope-OrgID"),
    _spec("LOKI_RESOURCE_LABEL", "collectors.loki_resource_label", _text, "label matched with resource_id"),
    _spec("LOKI_SERVICE_LABEL", "collectors.loki_service_label", _text, "label matched with the service"),
    _spec("TEMPO_URL", "collectors.tempo_url", _text, "Tempo base URL (unset: skipped)", old=True),
    _spec("TEMPO_TENANT", "collectors.tempo_tenant", _text, "sent as X-Scope-OrgID"),
    _spec(
        "ELASTICSEARCH_URL", "collectors.elasticsearch_url", _text, "Elasticsearch base URL (unset: skipped)", old=True
    ),
    _spec("ELASTICSEARCH_API_KEY", "collectors.elasticsearch_api_key", _text, "API key", old=True, secret=True),
    _spec("ELASTICSEARCH_USERNAME", "collectors.elasticsearch_username", _text, "basic auth user", old=True),
    _spec(
        "ELASTICSEARCH_PASSWORD",
        "collectors.elasticsearch_password",
        _text,
        "basic auth password",
        old=True,
        secret=True,
    ),
    _spec("ELASTICSEARCH_INDEX", "collectors.elasticsearch_index", _text, "index pattern searched"),
    _spec("ELASTICSEARCH_TIMESTAMP_FIELD", "collectors.elasticsearch_timestamp_field", _text, "timestamp field"),
    _spec("ELASTICSEARCH_MESSAGE_FIELD", "collectors.elasticsearch_message_field", _text, "message field"),
    _spec("ELASTICSEARCH_LEVEL_FIELD", "collectors.elasticsearch_level_field", _text, "level field"),
    _spec("ELASTICSEARCH_RESOURCE_FIELD", "collectors.elasticsearch_resource_field", _text, "resource keyword field"),
    _spec("ELASTICSEARCH_SERVICE_FIELD", "collectors.elasticsearch_service_field", _text, "service keyword field"),
    _spec(
        "AZURE_WORKSPACE_ID",
        "collectors.azure_workspace_id",
        _text,
        "Log Analytics workspace (unset: skipped)",
        deprecated=("AZURE_LOG_ANALYTICS_WORKSPACE_ID",),
    ),
    _spec("AZURE_TOKEN", "collectors.azure_token", _text, "bearer token (else DefaultAzureCredential)", secret=True),
    _spec("AZURE_ENDPOINT", "collectors.azure_endpoint", _text, "Log Analytics API endpoint"),
    _spec("AZURE_TABLE", "collectors.azure_table", _text, "table queried"),
    _spec("AZURE_TIME_COLUMN", "collectors.azure_time_column", _text, "time column"),
    _spec("AZURE_MESSAGE_COLUMN", "collectors.azure_message_column", _text, "message column"),
    _spec("AZURE_LEVEL_COLUMN", "collectors.azure_level_column", _text, "level column"),
    _spec("AZURE_RESOURCE_COLUMN", "collectors.azure_resource_column", _text, "resource column"),
    _spec("AZURE_SERVICE_COLUMN", "collectors.azure_service_column", _text, "service column"),
    _spec("LOGS_WINDOW_BEFORE", "collectors.windows.logs.before", _micros, "logs read before the error"),
    _spec("LOGS_WINDOW_AFTER", "collectors.windows.logs.after", _micros, "logs read after the error"),
    _spec("METRICS_WINDOW_BEFORE", "collectors.windows.metrics.before", _micros, "metrics read before the error"),
    _spec("METRICS_WINDOW_AFTER", "collectors.windows.metrics.after", _micros, "metrics read after the error"),
    _spec(
        "CHANGES_WINDOW_BEFORE",
        "collectors.windows.changes.before,analysis.change_window_us",
        _micros,
        "changes this long before the error are collected and may be causes",
    ),
    _spec("LOG_LINES_BEFORE", "collectors.log_lines_before", _count, "log lines kept before the error, per source"),
    _spec("LOG_LINES_AFTER", "collectors.log_lines_after", _count, "log lines kept after the error, per source"),
    _spec("LOG_LINE_MAX_CHARS", "collectors.log_line_max_chars", _count, "longer log lines are cut"),
    _spec("MAX_SPANS", "collectors.max_spans", _count, "spans kept per trace (failing first)"),
    _spec("MAX_CHANGES", "collectors.max_changes", _count, "changes kept per error"),
    _spec("TOPOLOGY_DEPTH", "collectors.topology_depth", _count, "topology hops frozen with the error"),
    _spec("COLLECTOR_TIMEOUT", "collectors.timeout_seconds", _seconds, "per collector and per job"),
    _spec("BREAKER_FAILURES", "collectors.breaker_failures", _count, "consecutive failures that open a breaker"),
    _spec("BREAKER_COOLDOWN", "collectors.breaker_cooldown_seconds", _seconds, "how long a breaker stays open"),
    _spec("ENRICHMENT_WORKERS", "collectors.enrichment_workers", _count, "concurrent enrichment jobs"),
    _spec("ENRICHMENT_QUEUE_SIZE", "collectors.enrichment_queue_size", _count, "queued enrichment jobs"),
    _spec(
        "ENRICHMENT_RESUME_HORIZON",
        "collectors.enrichment_resume_horizon_seconds",
        _seconds,
        "PENDING errors this recent resume at start",
    ),
    # --- analysis ---
    _spec(
        "RELATED_WINDOW",
        "analysis.related_window_us",
        _micros,
        "errors this close in time may be related, in replays and streams alike",
    ),
    _spec(
        "RELATED_HOPS",
        "analysis.related_hops",
        _count,
        "DEPENDS_ON hops that relate two errors, in replays and streams alike",
    ),
    _spec(
        "RELATED_LIMIT",
        "analysis.related_limit",
        _count,
        "related errors a replay, GetError or stream message names at most, the nearest in time",
    ),
    _spec("MAX_CASCADE_DEPTH", "analysis.max_cascade_depth", _count, "cascade hops followed (0 = off)"),
    _spec(
        "CASCADE_MAX_RESOURCES",
        "analysis.cascade_max_resources",
        _count,
        "resources a replay reads following a cascade",
    ),
    _spec("EVIDENCE_LAG", "analysis.evidence_lag_us", _micros, "evidence this long after the error still counts"),
    _spec("FINGERPRINT_FRAMES", "analysis.fingerprint_frames", _count, "innermost frames in the fingerprint"),
    _spec("GROUP_TITLE_MAX_CHARS", "analysis.group_title_max_chars", _count, "longer group titles are cut"),
    _spec("TIMELINE_SUMMARY_MAX_CHARS", "analysis.summary_max_chars", _count, "longer timeline summaries are cut"),
    _spec(
        "LOG_RESOURCE_LABELS", "analysis.log_resource_labels", _required_names, "log labels naming a line's resource"
    ),
    _spec("CAUSE_CASCADE_WEIGHT", "analysis.cascade_weight", _number, "a dependency failed first"),
    _spec("CAUSE_CASCADE_SILENT_HOP_FACTOR", "analysis.cascade_silent_hop_factor", _number, "per hop without error"),
    _spec("CAUSE_CHANGE_WEIGHT", "analysis.change_weight", _number, "a change shortly before"),
    _spec("CAUSE_CHANGE_HALF_LIFE", "analysis.change_half_life_us", _micros, "a change's score halves each"),
    _spec(
        "CAUSE_CHANGE_REGRESSION_FACTOR",
        "analysis.change_regression_factor",
        _number,
        "group first seen after the change",
    ),
    _spec(
        "CAUSE_CHANGE_DEPENDENCY_FACTOR",
        "analysis.change_dependency_factor",
        _number,
        "per hop to a changed dependency",
    ),
    _spec("CAUSE_SATURATION_WEIGHT", "analysis.saturation_weight", _number, "a metric rose above its baseline"),
    _spec("CAUSE_SATURATION_FULL_EXCESS", "analysis.saturation_full_excess", _number, "rise earning the full weight"),
    _spec(
        "CAUSE_SATURATION_FULL_DURATION",
        "analysis.saturation_full_duration_us",
        _micros,
        "duration earning the full weight",
    ),
    _spec(
        "CAUSE_SATURATION_BRIEF_FACTOR",
        "analysis.saturation_brief_factor",
        _number,
        "weight share of an excess that began at the error",
    ),
    _spec(
        "CAUSE_SATURATION_METRICS",
        "analysis.saturation_metrics",
        _required_names,
        "series name prefixes that are saturation",
    ),
    _spec("CAUSE_BURST_WEIGHT", "analysis.burst_weight", _number, "many errors on the resource"),
    _spec("CAUSE_BURST_WINDOW", "analysis.burst_window_us", _micros, "how far back a burst is counted"),
    _spec("CAUSE_BURST_MIN_ERRORS", "analysis.burst_min_errors", _count, "fewer is no burst"),
    _spec("CAUSE_BURST_FULL_ERRORS", "analysis.burst_full_errors", _count, "errors earning the full weight"),
    _spec("CAUSE_EXTERNAL_WEIGHT", "analysis.external_weight", _number, "spans or logs point at another service"),
    _spec("CAUSE_EXTERNAL_FULL_SIGNALS", "analysis.external_full_signals", _count, "signals earning the full weight"),
    _spec("CAUSE_MIN_SCORE", "analysis.min_cause_score", _number, "weaker candidates are dropped"),
    _spec("CAUSE_AMBIGUITY_PENALTY", "analysis.ambiguity_penalty", _number, "confidence = best - this x best rival"),
    _spec(
        "LIMITED_CONTEXT_SHARE",
        "analysis.limited_context_share",
        _number,
        "above this share of missing context, say so",
    ),
)

# Fields set by no variable, with the reason (a test checks every other field has a spec).
FIXED_FIELDS = {
    ("collectors", "windows", "topology", "before"): "topology is the graph as it is now",
    ("collectors", "windows", "topology", "after"): "topology is the graph as it is now",
    ("collectors", "windows", "changes", "after"): "a change after the error cannot have caused it",
    ("notify", "rules"): "the [[notifications.rules]] of the config file (notify/config.py)",
    ("notify", "targets"): "the [notifications.targets.NAME] tables; URL and secret also from "
    "ERRORREPLAY_NOTIFY_TARGET_<NAME>_URL / _SECRET",
}

SPECS_BY_VARIABLE = {spec.variable: spec for spec in SPECS}


def spec_for_key(section: str, key: str) -> Spec | None:
    for spec in SPECS:
        if spec.section == section and spec.key == key:
            return spec
    return None


# --- reading and writing nested dataclass attributes ---


def get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _set_paths(obj: Any, values: Mapping[tuple[str, ...], Any]) -> Any:
    """A copy of the dataclass tree `obj` with the values at their paths; each level's own checks run."""
    direct = {path[0]: value for path, value in values.items() if len(path) == 1}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in values.items():
        if len(path) > 1:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, inner in nested.items():
        direct[name] = _set_paths(getattr(obj, name), inner)
    return dataclasses.replace(obj, **direct) if direct else obj


def default_value(spec: Spec) -> Any:
    if spec.default is not None:
        return spec.parse(spec.default)
    return get_path(Settings(), spec.paths[0])


def default_text(spec: Spec) -> str:
    """The default as a user would write it."""
    if spec.doc_default is not None:
        return spec.doc_default
    if spec.default is not None:
        return spec.default
    if spec.show_raw:
        return ""
    shown = spec.show(default_value(spec))
    if isinstance(shown, bool):
        return "on" if shown else "off"
    if isinstance(shown, list):
        return ",".join(str(item) for item in shown)
    return str(shown)


# --- loading ---

_warned: set[str] = set()


def _warn_deprecated(old: str, new: str) -> None:
    if old in _warned:
        return
    _warned.add(old)
    logger.warning("%s is deprecated; use %s (it still works for now)", old, new)


NOTIFICATIONS_SECTION = "notifications"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None


def read_config_file(path: Path) -> dict[tuple[str, str], Any]:
    """(section, key) -> TOML value; ConfigError naming the file and an unknown key."""
    doc = _read_toml(path)
    values: dict[tuple[str, str], Any] = {}
    for section, table in doc.items():
        if section == NOTIFICATIONS_SECTION:
            continue  # rules and targets: notify/config.py reads and checks them
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: {section!r} must be a [section]; settings live in sections")
        for key, value in table.items():
            if spec_for_key(section, key) is None:
                raise ConfigError(f"config file {path}: unknown key [{section}] {key}")
            values[(section, key)] = value
    return values


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """The effective settings and, per variable, the raw value that set it (None: the default)."""

    settings: Settings
    given: Mapping[str, Any]


def load(
    environ: Mapping[str, str],
    config_file: Path | None = None,
    flags: Mapping[str, tuple[str, Any]] | None = None,
) -> Loaded:
    """Settings from defaults, then the TOML file, then `environ`, then `flags` (variable ->
    (flag name, raw value)). ConfigError, one line naming what is wrong, otherwise."""
    if config_file is None and environ.get(CONFIG_VARIABLE, "").strip():
        config_file = Path(environ[CONFIG_VARIABLE].strip())
    from_file = read_config_file(config_file) if config_file is not None else {}
    given: dict[str, Any] = {}
    where: dict[str, str] = {}
    for spec in SPECS:
        if (spec.section, spec.key) in from_file:
            given[spec.variable] = from_file[(spec.section, spec.key)]
            where[spec.variable] = f"config file {config_file}: [{spec.section}] {spec.key}"
        for name in (spec.variable, *spec.deprecated):
            raw = environ.get(name)
            if raw is not None and (raw.strip() or spec.empty_means_none):
                if name != spec.variable:
                    _warn_deprecated(name, spec.variable)
                given[spec.variable] = raw
                where[spec.variable] = name
                break
        if flags and spec.variable in flags:
            flag, raw = flags[spec.variable]
            given[spec.variable] = raw
            where[spec.variable] = flag
    # The older metrics port only counts when the address is not set.
    if "ERRORREPLAY_METRICS_ADDRESS" in given:
        given.pop("ERRORREPLAY_METRICS_PORT", None)
    values: dict[tuple[str, ...], Any] = {}
    for spec in SPECS:
        if spec.variable in given:
            try:
                value = spec.parse(given[spec.variable])
            except ValueError as exc:
                raise ConfigError(f"{where[spec.variable]}: {exc}") from None
        elif spec.default is not None:
            value = spec.parse(spec.default)
        else:
            continue
        for path in spec.paths:
            if spec.adds_up and path in values:
                values[path] = values[path] + value
            else:
                values[path] = value
    try:
        settings = _set_paths(Settings(), values)
    except ValueError as exc:
        raise ConfigError(_name_the_setting(str(exc), where)) from None
    return Loaded(_with_notifications(settings, config_file, environ), given)


def _with_notifications(settings: Settings, config_file: Path | None, environ: Mapping[str, str]) -> Settings:
    """Notification rules and targets from the file's [notifications] table (target URLs and
    secrets may come from ERRORREPLAY_NOTIFY_TARGET_<NAME>_URL / _SECRET instead)."""
    from errorreplay_server.notify import config as notify_config

    try:
        table = _read_toml(config_file).get(NOTIFICATIONS_SECTION, {}) if config_file is not None else {}
        if not isinstance(table, dict):
            raise ValueError(f"config file {config_file}: [{NOTIFICATIONS_SECTION}] must be a table")
        targets = notify_config.parse_targets(table.get("targets", {}), environ)
        rules = notify_config.parse_rules(table.get("rules", []), targets)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    notify = dataclasses.replace(
        settings.notify, rules=rules, targets=targets, console_url=settings.notify.console_url.rstrip("/")
    )
    return dataclasses.replace(settings, notify=notify)


def _name_the_setting(message: str, where: Mapping[str, str]) -> str:
    """A check across fields names attributes (`timeout_seconds must be positive`); put in front
    the variable (or key, or flag) that set the attribute it names, when one did."""
    for spec in SPECS:
        if spec.variable in where and any(re.search(rf"\b{path[-1]}\b", message) for path in spec.paths):
            return f"{where[spec.variable]}: {message}"
    return message


def effective(loaded: Loaded) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} in the file's form, secrets masked; for `errorreplay config`."""
    out: dict[str, dict[str, Any]] = {}
    for spec in SPECS:
        if spec.variable == "ERRORREPLAY_METRICS_PORT":
            continue  # folded into metrics_address
        raw = loaded.given.get(spec.variable)
        if spec.secret:
            value: Any = MASK if raw is not None and str(raw).strip() else ""
        elif spec.show_raw:
            value = "" if raw is None else str(raw).strip()
        else:
            value = spec.show(get_path(loaded.settings, spec.paths[0]))
        out.setdefault(spec.section, {})[spec.key] = value
    return out


def to_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A config file; a masked secret is a comment, so the file loads and keeps the other settings."""
    lines: list[str] = []
    for section, table in sections.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            comment = "# " if value == MASK else ""
            lines.append(f"{comment}{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Iterable) and not isinstance(value, str):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


__all__ = ["DURATION_FORMS", "SPECS", "ConfigError", "Loaded", "Spec", "effective", "load", "to_toml"]
