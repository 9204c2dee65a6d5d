"""Settings of the HTTP listener (Sentry ingestion, the Alertmanager webhook, /healthz).

- `ERRORREPLAY_HTTP_ADDRESS` (`localhost:8080`): `host:port` of the listener; `off` turns it off;
  port 0 picks a free port.
- `ERRORREPLAY_HTTP_MAX_BODY_BYTES` (8 MiB): a request body as sent (compressed); more is 413.
- `ERRORREPLAY_HTTP_MAX_DECOMPRESSED_BYTES` (8 MiB): a body once decompressed; more is 413, found
  while inflating, so a compression bomb is never inflated whole.
- `ERRORREPLAY_SENTRY_KEYS` (unset): DSN public keys, `project:key,project:key`.
- `ERRORREPLAY_SENTRY_KEYS_FILE` (unset): a file of `project key` lines (`#` comments ignored).
- `ERRORREPLAY_ALERTMANAGER_RESOURCE_LABELS` (`service,job,instance`): the first of these alert
  labels present gives the resource id.
- `ERRORREPLAY_CONSOLE` (`on`): the read-only web console (console/) on this listener; `off` turns
  it off.
- `ERRORREPLAY_CONSOLE_CACHE_SECONDS` (`30`): how long the console reuses a computed statistics
  page and group sparkline (each is a full statistics query; at 100,000 errors one takes 40-300 ms);
  0 computes them on every view.
- `ERRORREPLAY_CONSOLE_URL` (unset): the console's public base URL, used in the links `errorreplay
  replay` prints; unset, it is `http://<HTTP address>` (`localhost` for a wildcard host).

TLS, bearer tokens and the per-caller rate limit are the gRPC ones (security_settings.py).
A Sentry key allows ingestion into its project and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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


def _size(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {raw!r}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 3600:
        raise ValueError(f"{name} must be between 0 and 3600, got {raw!r}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{name} must be on or off, got {raw!r}")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP listener. In code the default address is "" (off), so a server built in tests or
    embedded elsewhere opens no port it was not asked for; `from_env` defaults to DEFAULT_ADDRESS."""

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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HttpSettings:
        address = env.get("ERRORREPLAY_HTTP_ADDRESS", "").strip() or DEFAULT_ADDRESS
        keys: list[SentryKey] = []
        keys_file = env.get("ERRORREPLAY_SENTRY_KEYS_FILE", "").strip()
        if keys_file:
            try:
                text = Path(keys_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"ERRORREPLAY_SENTRY_KEYS_FILE: cannot read {keys_file}: {exc}") from None
            from_file = parse_sentry_keys(text.splitlines(), f"ERRORREPLAY_SENTRY_KEYS_FILE {keys_file}", None)
            if not from_file:
                raise ValueError(f"ERRORREPLAY_SENTRY_KEYS_FILE {keys_file} holds no key")
            keys += from_file
        inline = env.get("ERRORREPLAY_SENTRY_KEYS", "")
        if inline.strip():
            keys += parse_sentry_keys(inline.split(","), "ERRORREPLAY_SENTRY_KEYS", ":")
        labels = tuple(
            label.strip()
            for label in env.get("ERRORREPLAY_ALERTMANAGER_RESOURCE_LABELS", ",".join(DEFAULT_RESOURCE_LABELS)).split(
                ","
            )
            if label.strip()
        )
        settings = cls(
            address="" if address.lower() == "off" else address,
            max_body_bytes=_size(env, "ERRORREPLAY_HTTP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_decompressed_bytes=_size(env, "ERRORREPLAY_HTTP_MAX_DECOMPRESSED_BYTES", DEFAULT_MAX_BODY_BYTES),
            sentry_keys=tuple(keys),
            alertmanager_resource_labels=labels or DEFAULT_RESOURCE_LABELS,
            console=_switch(env, "ERRORREPLAY_CONSOLE", True),
            console_url=env.get("ERRORREPLAY_CONSOLE_URL", "").strip(),
            console_cache_seconds=_seconds(env, "ERRORREPLAY_CONSOLE_CACHE_SECONDS", DEFAULT_CONSOLE_CACHE_SECONDS),
        )
        if settings.console_url and not settings.console_url.startswith(("http://", "https://")):
            raise ValueError(
                f"ERRORREPLAY_CONSOLE_URL must start with http:// or https://, got {settings.console_url!r}"
            )
        if settings.enabled:
            settings.host_port  # noqa: B018  (validates the address at start-up)
        return settings
