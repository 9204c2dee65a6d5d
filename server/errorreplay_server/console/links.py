"""Links to the web console from the command line: `errorreplay replay` and `errorreplay demo`
end with the replay's page (README "Web console")."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def console_link(error_id: str, grpc_address: str, env: Mapping[str, str]) -> str:
    """The replay's page in the web console: under ERRORREPLAY_CONSOLE_URL when set; otherwise,
    for a server on this machine, at its HTTP address (http/settings.py). "" when the console
    is off or where it is cannot be known (a remote server without ERRORREPLAY_CONSOLE_URL)."""
    from errorreplay_server.settings import Settings  # pydantic only when a link is asked for

    try:
        http = Settings.from_env(env).http
    except ValueError:
        return ""
    if not http.console_enabled:
        return ""
    if not http.console_url:
        host = grpc_address.rpartition(":")[0].strip("[]").lower()
        if host not in LOCAL_HOSTS:
            return ""
    return f"{http.console_base_url()}/errors/{quote(error_id, safe='')}"


def console_line(error_id: str, grpc_address: str, env: Mapping[str, str]) -> str:
    """The `Console: <link>` line that ends a replay, or "" when there is no link."""
    link = console_link(error_id, grpc_address, env)
    return f"\nConsole: {link}\n" if link else ""
