"""Counters of the HTTP listener, in the server's registry (served with the gRPC ones)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "errorreplay_http_requests",
            "HTTP requests by route template and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.sentry_items = Counter(
            "errorreplay_sentry_items",
            "Sentry envelope items (and store events) by type and outcome: captured, duplicate, "
            "rejected, or dropped (item types other than event).",
            ["type", "outcome"],
            registry=registry,
        )
        self.alerts = Counter(
            "errorreplay_alertmanager_alerts",
            "Alertmanager alerts by status (firing, resolved) and outcome: captured, duplicate, rejected, "
            "resolved, or unknown_group (a resolve for an alert never captured).",
            ["status", "outcome"],
            registry=registry,
        )
