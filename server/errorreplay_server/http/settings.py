"""Settings of the HTTP listener (Sentry ingestion, the Alertmanager webhook, /healthz, the console).
It is off in code (a server built in tests opens no port it was not asked for) and on at
DEFAULT_ADDRESS once loaded; port 0 picks a free port. TLS, bearer tokens and the per-caller rate
limit are the gRPC ones (security_settings.py).
"""

from __future__ import annotations

from typing import Annotated

from errorreplay_server.domain.addresses import split_host_port
from errorreplay_server.http.sentry_keys import SentryKey, parse_inline_keys, parse_key_lines
from errorreplay_server.settings_types import (
    Count,
    OptionalAddress,
    RequiredNames,
    Seconds,
    SettingsModel,
    Switch,
    listed,
    setting,
)

DEFAULT_ADDRESS = "localhost:8080"


class HttpSettings(SettingsModel):
    """The HTTP listener; address "" is off. Keys from the file and the inline list add up."""

    address: OptionalAddress = setting("", "HTTP_ADDRESS", "HTTP listener host:port, or off", loaded=DEFAULT_ADDRESS)
    max_body_bytes: Count = setting(8 * 1024 * 1024, "HTTP_MAX_BODY_BYTES", "request body as sent; more is 413")
    max_decompressed_bytes: Count = setting(
        8 * 1024 * 1024, "HTTP_MAX_DECOMPRESSED_BYTES", "body once inflated; more is 413"
    )
    file_sentry_keys: Annotated[tuple[SentryKey, ...], listed(parse_key_lines, "key", in_file=True)] = setting(
        (), "SENTRY_KEYS_FILE", "file of `project key` lines", show_raw=True
    )
    sentry_keys: Annotated[tuple[SentryKey, ...], listed(parse_inline_keys, "key")] = setting(
        (), "SENTRY_KEYS", "DSN public keys `project:key,...`", show_raw=True, secret=True
    )
    alertmanager_resource_labels: RequiredNames = setting(
        ("service", "job", "instance"), "ALERTMANAGER_RESOURCE_LABELS", "alert labels giving resource_id, first wins"
    )
    console: Switch = setting(True, "CONSOLE", "the web console on the HTTP listener (on/off)")
    console_url: str = setting(
        "",
        "CONSOLE_URL",
        "console base URL for CLI and notification links (unset: the CLI uses the HTTP address)",
        also="notify.console_url",
    )
    console_cache_seconds: Seconds = setting(
        30.0, "CONSOLE_CACHE_SECONDS", "reuse of a statistics page or sparkline (0: none)"
    )

    @property
    def all_sentry_keys(self) -> tuple[SentryKey, ...]:
        return self.file_sentry_keys + self.sentry_keys

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def console_enabled(self) -> bool:
        return self.enabled and self.console

    def console_base_url(self, tls: bool = False, bound_port: int | None = None) -> str:
        """Where the console is, for links: ERRORREPLAY_CONSOLE_URL, or the listener's address
        (with `bound_port` when the address asked for port 0)."""
        if self.console_url:
            return self.console_url.rstrip("/")
        host, port = self.host_port
        port = bound_port or port
        if host in ("0.0.0.0", "::", ""):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"{'https' if tls else 'http'}://{host}:{port}"

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.address, "ERRORREPLAY_HTTP_ADDRESS")
