"""Security settings: bearer-token auth, TLS/mTLS, the per-caller rate limit and the stream cap.

Everything is off by default except the stream cap, so a development server needs no
configuration; each feature is one variable away (settings_schema.py, README: Security).

Token file format: one grant per line, `role token`, separated by white space. Blank lines and lines
starting with `#` are ignored. Roles are `reader`, `writer` and `admin`. A token listed on several
lines (or in both sources) holds the union of its roles, so `reader` and `writer` lines for the same
token make a read-write client. Tokens are opaque: any printable ASCII without white space, commas
or colons (they travel in the `authorization: Bearer <token>` header). Both sources may be set; their
grants add up. A configured source that yields no grant is a start-up error, not an open server.

A "caller" is the token when auth is on, and the client's address (without its port) when it is off.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_STREAMS_PER_TOKEN = 100
_FORBIDDEN_TOKEN_CHARS = frozenset(",:")


class Role(enum.StrEnum):
    """What a token may do. `admin` implies the others; `writer` and `reader` are independent."""

    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class TokenGrant:
    role: Role
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_token(self.token)


def _check_token(token: str) -> None:
    # The messages never quote the token: it is a secret even when it is malformed.
    if not token:
        raise ValueError("an auth token is empty")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError("an auth token must be printable ASCII without white space")
    if _FORBIDDEN_TOKEN_CHARS & set(token):
        raise ValueError("an auth token must not contain ',' or ':'")


def _checked(token: str, where: str) -> str:
    try:
        _check_token(token)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return token


def _role(text: str, where: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        # Not quoted: with the columns swapped by mistake, the "role" is the token.
        raise ValueError(f"{where}: unknown role; use reader, writer or admin") from None


def parse_token_lines(lines: Iterable[str], where: str) -> list[TokenGrant]:
    """Grants from `role token` lines (the token file format)."""
    grants = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 2:
            raise ValueError(f"{where} line {number}: expected 'role token'")
        grants.append(
            TokenGrant(_role(parts[0], f"{where} line {number}"), _checked(parts[1], f"{where} line {number}"))
        )
    return grants


def parse_inline_tokens(text: str, where: str = "ERRORREPLAY_AUTH_TOKENS") -> list[TokenGrant]:
    """Grants from `role:token,role:token`."""
    grants = []
    for number, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        role, sep, token = item.partition(":")
        if not sep:
            raise ValueError(f"{where} item {number}: expected 'role:token'")
        grants.append(
            TokenGrant(_role(role, f"{where} item {number}"), _checked(token.strip(), f"{where} item {number}"))
        )
    return grants


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """Auth, TLS and per-caller limits. The defaults give an open, plaintext server with a stream cap."""

    tokens: tuple[TokenGrant, ...] = ()
    """Role grants. Empty means auth is off."""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    """When set, clients must present a certificate signed by this CA (mTLS)."""
    rate_limit_per_second: float = 0.0
    """Token-bucket refill rate per caller; 0 turns the rate limit off."""
    rate_limit_burst: int = 0
    """Bucket capacity; 0 means the rate rounded up (at least 1)."""
    max_streams_per_token: int = DEFAULT_MAX_STREAMS_PER_TOKEN
    """Concurrent server streams per caller; 0 means no cap."""

    def __post_init__(self) -> None:
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("ERRORREPLAY_TLS_KEY_FILE is set without ERRORREPLAY_TLS_CERT_FILE")
        if self.tls_cert_file is not None and self.tls_key_file is None:
            raise ValueError("ERRORREPLAY_TLS_CERT_FILE is set without ERRORREPLAY_TLS_KEY_FILE")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("ERRORREPLAY_TLS_CLIENT_CA_FILE (mTLS) needs ERRORREPLAY_TLS_CERT_FILE and _KEY_FILE")
        if not math.isfinite(self.rate_limit_per_second) or self.rate_limit_per_second < 0:
            raise ValueError("rate_limit_per_second must be a finite number >= 0")
        for name in ("rate_limit_burst", "max_streams_per_token"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.tokens)

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def mtls_enabled(self) -> bool:
        return self.tls_client_ca_file is not None

    @property
    def rate_limit_enabled(self) -> bool:
        return self.rate_limit_per_second > 0

    @property
    def effective_burst(self) -> int:
        if self.rate_limit_burst:
            return self.rate_limit_burst
        return max(1, math.ceil(self.rate_limit_per_second))

    def describe(self) -> str:
        """One line for the start-up log; it names roles and counts, never a token or a key."""
        tls = "mtls" if self.mtls_enabled else "on" if self.tls_enabled else "off"
        if self.auth_enabled:
            distinct = {grant.token for grant in self.tokens}
            roles = ", ".join(f"{role}" for role in sorted({grant.role for grant in self.tokens}))
            auth = f"on ({len(distinct)} tokens; roles {roles})"
        else:
            auth = "off"
        rate = f"{self.rate_limit_per_second:g}/s burst {self.effective_burst}" if self.rate_limit_enabled else "off"
        streams = self.max_streams_per_token or "unlimited"
        return f"tls={tls} auth={auth} rate_limit={rate} max_streams_per_caller={streams}"
