"""The one host:port grammar of the listeners' addresses (settings, the server, the supervisor)."""

from __future__ import annotations


def split_host_port(address: str, name: str) -> tuple[str, int]:
    """`host:port` (IPv6 hosts in brackets) -> (host, port); ValueError naming `name` otherwise."""
    host, sep, port = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{name} must be host:port, such as 127.0.0.1:9464 or 0.0.0.0:9464, got {address!r}")
    return host, int(port)
