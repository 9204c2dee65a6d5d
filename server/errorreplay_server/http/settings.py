"""Settings of the HTTP listener (Sentry ingestion, the Alertmanager webhook, /healthz).

Variables and defaults: settings_schema.py (README: Configuration). The listener is off in
code (a server built in tests opens no port it was not asked for) and on at DEFAULT_ADDRESS when
the settings are loaded; port 0 picks a free port.

TLS, bearer tokens and the per-caller rate limit are the gRPC ones (security_settings.py).
A Sentry key allows ingestion into its project and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_ADDRESS = "localhost:8080"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_RESOURCE_LABELS = ("service", "job", "instance")
DEFAULT_CONSOLE_CACHE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class SentryKey:
    project_id: str
    key: str = field(repr=False)

    def __post_init__(self) -> None:
        # Messages never quote the key: it is a credential.
        if not self.project_id.isdigit() or len(self.project_id) > 20:
            raise ValueError("a Sentry project id must be a number (the last part of the DSN)")
        if not self.key or not self.key.isascii() or not self.key.isalnum() or len(self.key) > 128:
            raise ValueError("a Sentry public key must be 1-128 ASCII letters and digits")


def parse_sentry_keys(items: Iterable[str], where: str, sep: str | None) -> list[SentryKey]:
    keys = []
    for number, item in enumerate(items, start=1):
        text = item.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(sep) if sep else text.split()
        if len(parts) != 2:
            raise ValueError(f"{where} item {number}: expected 'project{sep or ' '}key'")
        try:
            keys.append(SentryKey(parts[0].strip(), parts[1].strip()))
        except ValueError as exc:
            raise ValueError(f"{where} item {number}: {exc}") from None
    return keys


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP listener; address "" is off."""

    address: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_decompressed_bytes: int = DEFAULT_MAX_BODY_BYTES
    sentry_keys: tuple[SentryKey, ...] = ()
    alertmanager_resource_labels: tuple[str, ...] = DEFAULT_RESOURCE_LABELS
    console: bool = True
    console_url: str = ""
    console_cache_seconds: float = DEFAULT_CONSOLE_CACHE_SECONDS

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
        host, sep, port = self.address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"ERRORREPLAY_HTTP_ADDRESS must be host:port, got {self.address!r}")
        return host.strip("[]") or "0.0.0.0", int(port)
