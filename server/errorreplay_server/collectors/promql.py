"""PromQL templates per resource type, and how a template becomes a query.

A template is PromQL with four placeholders (Python `string.Template` syntax):
- `$selector`: the label matcher that picks the error's resource, e.g. `resource_id="api-1"`.
  It is the only place a user value enters the query, and it is escaped (escaping.py).
- `$group`: the name of that label, for `sum by ($group)`.
- `$status_label`: the label holding the HTTP status code (default `code`).
- `$rate`: the range of `rate()` (default `5m`).

The file named by ERRORREPLAY_PROMQL_TEMPLATES (TOML, or JSON when it ends in `.json`) may
rename the labels and override templates per resource type:

    rate_interval = "2m"
    [labels]
    resource = "instance_id"      # label matched against ErrorReport.resource_id
    service = "job"               # used when the error has no resource_id
    status = "status_code"
    [templates.default]
    cpu = "100 * sum by ($group) (rate(my_cpu_seconds_total{$selector}[$rate]))"
    memory = { query = "sum by ($group) (my_rss_bytes{$selector})", unit = "bytes" }
    latency_p99 = ""              # an empty query turns a metric off

Built-in types: `default` (process and HTTP metrics), `kubernetes_pod` (cAdvisor; aliases pod,
container) and `host` (node_exporter; aliases node, vm). A type takes the kinds it leaves out
from its built-in templates, then from `default` (after the file's overrides of `default`).
Resource types match case-insensitively; an unknown type uses `default`.
"""

from __future__ import annotations

import json
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errorreplay_server.collectors.escaping import check_label_name, label_matcher

CPU = "cpu"
MEMORY = "memory"
LATENCY_P95 = "latency_p95"
LATENCY_P99 = "latency_p99"
REQUEST_RATE = "request_rate"
ERROR_RATE = "error_rate"
METRIC_KINDS = (CPU, MEMORY, LATENCY_P95, LATENCY_P99, REQUEST_RATE, ERROR_RATE)

# Fixed limits (settings.py) apply to a series only in this unit: a share of a capacity.
PERCENT = "percent"

DEFAULT_TYPE = "default"
_PROMQL_DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")


@dataclass(slots=True, frozen=True)
class MetricTemplate:
    kind: str
    query: str
    unit: str


def _t(kind: str, query: str, unit: str) -> MetricTemplate:
    return MetricTemplate(kind, query, unit)


# Process and HTTP metrics, as exposed by prometheus_client and most HTTP middlewares. CPU is
# in percent of one core, so a busy multi-core process may pass 100, and no fixed limit
# applies to it (its unit is not "percent").
_DEFAULT = (
    _t(CPU, "100 * sum by ($group) (rate(process_cpu_seconds_total{$selector}[$rate]))", "percent_of_core"),
    _t(MEMORY, "sum by ($group) (process_resident_memory_bytes{$selector})", "bytes"),
    _t(
        LATENCY_P95,
        "histogram_quantile(0.95, sum by ($group, le) (rate(http_request_duration_seconds_bucket{$selector}[$rate])))",
        "seconds",
    ),
    _t(
        LATENCY_P99,
        "histogram_quantile(0.99, sum by ($group, le) (rate(http_request_duration_seconds_bucket{$selector}[$rate])))",
        "seconds",
    ),
    _t(REQUEST_RATE, "sum by ($group) (rate(http_requests_total{$selector}[$rate]))", "requests/s"),
    _t(
        ERROR_RATE,
        '100 * sum by ($group) (rate(http_requests_total{$selector,$status_label=~"5.."}[$rate])) '
        "/ sum by ($group) (rate(http_requests_total{$selector}[$rate]))",
        PERCENT,
    ),
)

# Types other than `default` list only what differs; the rest comes from `default`.
_BUILTIN_SPECIFIC: Mapping[str, tuple[MetricTemplate, ...]] = {
    # cAdvisor: memory against the container limit.
    "kubernetes_pod": (
        _t(
            CPU,
            '100 * sum by ($group) (rate(container_cpu_usage_seconds_total{$selector,container!=""}[$rate]))',
            "percent_of_core",
        ),
        _t(
            MEMORY,
            '100 * sum by ($group) (container_memory_working_set_bytes{$selector,container!=""}) '
            '/ sum by ($group) (container_spec_memory_limit_bytes{$selector,container!=""} > 0)',
            PERCENT,
        ),
    ),
    # node_exporter: shares of the whole host.
    "host": (
        _t(
            CPU,
            '100 * (1 - avg by ($group) (rate(node_cpu_seconds_total{$selector,mode="idle"}[$rate])))',
            PERCENT,
        ),
        _t(
            MEMORY,
            "100 * (1 - sum by ($group) (node_memory_MemAvailable_bytes{$selector}) "
            "/ sum by ($group) (node_memory_MemTotal_bytes{$selector}))",
            PERCENT,
        ),
    ),
}

# Common spellings of the built-in types, used when the file does not define them itself.
TYPE_ALIASES: Mapping[str, str] = {
    "pod": "kubernetes_pod",
    "container": "kubernetes_pod",
    "k8s_pod": "kubernetes_pod",
    "node": "host",
    "vm": "host",
}


def _builtin_by_type() -> dict[str, tuple[MetricTemplate, ...]]:
    return _resolve({})


def _resolve(overrides: Mapping[str, Any]) -> dict[str, tuple[MetricTemplate, ...]]:
    types = {str(k).strip().lower(): v for k, v in overrides.items()}
    default = _apply({t.kind: t for t in _DEFAULT}, types.get(DEFAULT_TYPE, {}), DEFAULT_TYPE)
    resolved = {DEFAULT_TYPE: default}
    for rtype in set(_BUILTIN_SPECIFIC) | set(types):
        if rtype == DEFAULT_TYPE:
            continue
        base = dict(default)
        base.update({t.kind: t for t in _BUILTIN_SPECIFIC.get(rtype, ())})
        resolved[rtype] = _apply(base, types.get(rtype, {}), rtype)
    return {k: tuple(v.values()) for k, v in resolved.items()}


def _apply(base: dict[str, MetricTemplate], kinds: Any, rtype: str) -> dict[str, MetricTemplate]:
    if not isinstance(kinds, Mapping):
        raise ValueError(f"templates.{rtype} must be a table of kind = query")
    merged = dict(base)
    for kind, spec in kinds.items():
        inherited = merged.get(kind)
        unit = inherited.unit if inherited else ""
        if isinstance(spec, str):
            query = spec
        elif isinstance(spec, Mapping) and isinstance(spec.get("query"), str):
            query, unit = spec["query"], str(spec.get("unit", unit))
        else:
            raise ValueError(f"templates.{rtype}.{kind} must be a query or {{query, unit}}")
        if query.strip():
            merged[kind] = MetricTemplate(kind, query, unit)
        else:
            merged.pop(kind, None)
    return merged


@dataclass(slots=True, frozen=True)
class PromQLTemplates:
    resource_label: str = "resource_id"
    service_label: str = "service"
    status_label: str = "code"
    rate_interval: str = "5m"
    by_type: Mapping[str, tuple[MetricTemplate, ...]] = field(default_factory=_builtin_by_type)

    def __post_init__(self) -> None:
        for name in (self.resource_label, self.service_label, self.status_label):
            check_label_name(name)
        if not _PROMQL_DURATION.fullmatch(self.rate_interval):
            raise ValueError(f"rate_interval is not a PromQL duration: {self.rate_interval!r}")
        if DEFAULT_TYPE not in self.by_type:
            raise ValueError("PromQL templates need a 'default' resource type")
        for rtype, templates in self.by_type.items():
            for template in templates:
                try:
                    self.render(template, "resource_id", "probe")
                except (KeyError, ValueError) as exc:
                    raise ValueError(f"templates.{rtype}.{template.kind}: bad placeholder {exc}") from None

    def for_resource_type(self, resource_type: str) -> tuple[MetricTemplate, ...]:
        key = resource_type.strip().lower()
        if key not in self.by_type:
            key = TYPE_ALIASES.get(key, DEFAULT_TYPE)
        return self.by_type.get(key, self.by_type[DEFAULT_TYPE])

    def render(self, template: MetricTemplate, label: str, value: str) -> str:
        return string.Template(template.query).substitute(
            selector=label_matcher(label, value),
            group=check_label_name(label),
            status_label=self.status_label,
            rate=self.rate_interval,
        )

    @classmethod
    def load(cls, path: str | Path) -> PromQLTemplates:
        """Read a TOML (or `.json`) templates file; see the module docstring for its shape."""
        path = Path(path)
        raw = path.read_bytes()
        data: dict[str, Any] = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw.decode())
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PromQLTemplates:
        labels = data.get("labels", {})
        overrides = data.get("templates", {})
        if not isinstance(labels, Mapping) or not isinstance(overrides, Mapping):
            raise ValueError("'labels' and 'templates' must be tables")
        return cls(
            resource_label=str(labels.get("resource", "resource_id")),
            service_label=str(labels.get("service", "service")),
            status_label=str(labels.get("status", "code")),
            rate_interval=str(data.get("rate_interval", "5m")),
            by_type=_resolve(overrides),
        )
